//! DDL capture (sql/capture/ddl.sql): the settings its event triggers read, from the library
//! so that calling them loads it.

use crate::gucs;
use pgrx::prelude::*;

/// Whether DDL capture is on. Read here rather than with `current_setting()` in PL/pgSQL:
/// calling into the library loads it, and loading turns any `audit_ext.capture_ddl`
/// placeholder an unprivileged role set beforehand into the real, superuser-only setting
/// (PostgreSQL discards the unprivileged value). So no role but a superuser can switch capture off.
#[pg_extern(stable, parallel_safe, strict, schema = "audit_internal")]
fn capture_ddl_enabled() -> bool {
    gucs::capturing_ddl()
}

/// Whether a dump is being restored (`audit_ext.restore`): the DDL guards of tracked tables
/// and the upkeep of their capture triggers stand aside while pg_restore rebuilds them.
#[pg_extern(stable, parallel_safe, strict, schema = "audit_internal", name = "_restoring")]
fn restoring() -> bool {
    gucs::restoring()
}

//! Capture of schema changes: the event triggers live in sql/capture.sql; this module gives
//! them the one thing PL/pgSQL must not read itself.

use crate::gucs;
use pgrx::prelude::*;

/// Whether DDL capture is on. Read here rather than with `current_setting()` in PL/pgSQL:
/// calling into the library loads it, and loading turns any `audit_ext.capture_ddl`
/// placeholder an unprivileged role set beforehand into the real, superuser-only setting
/// (PostgreSQL discards the unprivileged value). So no role but a superuser can switch capture off.
#[pg_extern(stable, parallel_safe, strict)]
fn capture_ddl_enabled() -> bool {
    gucs::CAPTURE_DDL.get()
}

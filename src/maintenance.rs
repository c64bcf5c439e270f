//! Maintenance: the backend state in which audit_ext's own partition and retention functions
//! work past the guards (sql/maintenance.sql, sql/retention/). Not a setting: only
//! `audit_internal._begin_maintenance()`, called inside audit_ext's SECURITY DEFINER functions, enters
//! it, so no placeholder can be set before the library loads and no session can enter it.

use crate::error::raise;
use crate::pg::{backend, locks};
use pgrx::pg_sys;
use pgrx::prelude::*;

#[derive(thiserror::Error, Debug)]
pub enum MaintenanceError {
    #[error("audit_internal._begin_maintenance() is internal to audit_ext")]
    NotInternal,
}

impl crate::error::SqlError for MaintenanceError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE
    }
    fn hint(&self) -> Option<String> {
        Some("audit_ext's own retention and partition functions enter maintenance; call those (audit.apply_retention(), audit.ensure_partitions(), ...).".into())
    }
}

thread_local! {
    /// Set by `audit_internal._begin_maintenance()` for the rest of the transaction (or until the
    /// subtransaction it began in aborts): the subtransaction id it began in.
    static MAINTENANCE: std::cell::Cell<Option<pg_sys::SubTransactionId>> = const { std::cell::Cell::new(None) };
}

/// The end of the transaction ends maintenance (called by src/chain.rs's transaction callback).
pub fn xact_end() {
    MAINTENANCE.set(None);
}

/// An aborted subtransaction ends a maintenance begun inside it.
pub fn subxact_abort(subid: pg_sys::SubTransactionId) {
    if MAINTENANCE.get().is_some_and(|m| m >= subid) {
        MAINTENANCE.set(None);
    }
}

/// Whether this transaction is in audit_ext's maintenance (retention, partition upkeep): the
/// one state in which the guards let partitions be created, attached, dropped and events be
/// moved out of the default partition. Not a setting: only [`begin_maintenance`] enters it.
pub fn active() -> bool {
    MAINTENANCE.get().is_some()
}

/// `audit_internal._begin_maintenance()`: one maintenance at a time (waits for the maintenance lock,
/// as bounded by lock_timeout), and the guards stand aside for audit_ext's own partition work
/// until the transaction ends or `audit_internal._end_maintenance()`. Only from inside a SECURITY
/// DEFINER function run by the extension's owner (audit_ext's retention and partition
/// functions): a session calling it directly, a superuser's included, is refused.
#[pg_extern(volatile, parallel_unsafe, schema = "audit_internal", name = "_begin_maintenance")]
#[search_path(pg_catalog, pg_temp)]
fn begin_maintenance() {
    if !backend::switched_to(crate::pg::elevate::extension_owner()) {
        raise(MaintenanceError::NotInternal);
    }
    locks::maintenance(true);
    if MAINTENANCE.get().is_none() {
        MAINTENANCE.set(Some(backend::subtransaction_id()));
    }
}

/// `audit_internal._try_maintenance()`: like `_begin_maintenance()` without waiting; false when
/// another maintenance is running (the partition worker then has nothing to do).
#[pg_extern(volatile, parallel_unsafe, schema = "audit_internal", name = "_try_maintenance")]
#[search_path(pg_catalog, pg_temp)]
fn try_maintenance() -> bool {
    let (user, _) = backend::user_and_context();
    if user != crate::pg::elevate::extension_owner() && !backend::is_superuser() {
        raise(MaintenanceError::NotInternal);
    }
    locks::maintenance(false)
}

/// `audit_internal._end_maintenance()`: the guards apply again (the lock is kept to the end of the
/// transaction).
#[pg_extern(volatile, parallel_unsafe, schema = "audit_internal", name = "_end_maintenance")]
fn end_maintenance() {
    MAINTENANCE.set(None);
}

/// `audit_internal._in_maintenance()`: for the guards in SQL (sql/guards.sql, sql/capture/ddl.sql).
#[pg_extern(stable, parallel_safe, schema = "audit_internal", name = "_in_maintenance")]
fn in_maintenance_sql() -> bool {
    active()
}

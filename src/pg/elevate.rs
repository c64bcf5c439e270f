//! Running audit_ext's own statements with elevated rights, safely.
//!
//! The rule for every elevated entry point (SECURITY DEFINER functions, triggers, event
//! triggers, the role-capture hook, the partition worker): **no code that a caller controls
//! ever runs with elevated rights.** Concretely:
//! - the search path is `pg_catalog, pg_temp` (pg_temp listed last, so that no temporary
//!   table, type, function or operator of the session shadows a name) and every name of
//!   audit_ext's own is schema-qualified;
//! - values reach SQL as typed `$n` parameters, never as text that a type name or cast in the
//!   caller's path would interpret;
//! - row images (`to_jsonb` of a user's row, which calls the output functions and casts of its
//!   column types) are built in the caller's own security context, before any switch;
//! - no temporary table, prepared statement or other session-visible name is used;
//! - the switch is a security-restricted operation, as PostgreSQL's own maintenance commands
//!   make it, so that nothing reached meanwhile can change session state.
//!
//! [`as_owner`] is the one place where audit_ext switches user from C.

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;

/// The search path of every elevated statement (pg_temp last, so nothing of the session's
/// shadows a name).
const PINNED: &std::ffi::CStr = c"pg_catalog, pg_temp";

thread_local! {
    static OWNER: Cell<(pg_sys::Oid, pg_sys::Oid)> = const { Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid)) };
}

/// The role that owns the extension in this database (the one `CREATE EXTENSION` ran as):
/// audit_ext's SECURITY DEFINER functions run as it. Read once per backend and database.
pub fn extension_owner() -> pg_sys::Oid {
    let db = super::backend::database_id();
    let (cached_db, owner) = OWNER.get();
    if cached_db == db && owner != pg_sys::InvalidOid {
        return owner;
    }
    // (qualified to the operator: this runs under the caller's search path)
    let owner = Spi::connect(|client| {
        client
            .select(
                "SELECT extowner FROM pg_catalog.pg_extension \
                 WHERE extname OPERATOR(pg_catalog.=) 'audit_ext'::pg_catalog.name",
                Some(1),
                &[],
            )
            .ok()?
            .first()
            .get_one::<pg_sys::Oid>()
            .ok()
            .flatten()
    })
    .unwrap_or(pg_sys::InvalidOid);
    OWNER.set((db, owner));
    owner
}

/// Runs `f` as the extension's owner, as a security-restricted operation, with
/// `search_path = pg_catalog, pg_temp`; restores user, security context and search path
/// after. On an error, transaction (or subtransaction) abort restores them, as it does for
/// PostgreSQL's own SECURITY DEFINER calls.
///
/// **Security:** `f` must not run code that the caller controls: it may only execute
/// audit_ext's own schema-qualified statements with typed parameters (the rule above). This is
/// not a memory-safety condition, so the function is not `unsafe`; every caller says in its
/// doc comment how it keeps the rule.
pub fn as_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = extension_owner();
    if owner == pg_sys::InvalidOid {
        pgrx::error!("audit_ext: the extension's owner is unknown in this database");
    }
    let (user, sec) = super::backend::user_and_context();
    with_pinned_path(|| {
        // SAFETY: switching the user id and security context is what SECURITY DEFINER calls
        // do; both are restored below, or by (sub)transaction abort on an error.
        unsafe {
            pg_sys::SetUserIdAndSecContext(
                owner,
                sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            )
        };
        let r = f();
        // SAFETY: as above.
        unsafe { pg_sys::SetUserIdAndSecContext(user, sec) };
        r
    })
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`, then restores the caller's. For the SPI
/// work of audit_ext's triggers (chain head, partitions, policies, alert counts), which a
/// privileged role's direct INSERT would otherwise run under that session's path: kept plans
/// are re-analysed under the current path whenever it changes. A GUC nest level costs a few
/// microseconds; these paths run once per transaction or per matching alert, not per event.
pub fn with_pinned_path<R>(f: impl FnOnce() -> R) -> R {
    // Already pinned (inside audit_ext's own functions, whose SET clause pinned it): nothing to
    // do. Setting it again costs a GUC nest level and a recomputation of the search path.
    // SAFETY: namespace_search_path is the GUC's string variable, NULL or NUL-terminated.
    let current = unsafe { pg_sys::namespace_search_path };
    if !current.is_null() && unsafe { std::ffi::CStr::from_ptr(current) }.to_bytes() == PINNED.to_bytes() {
        return f();
    }
    // SAFETY: a GUC nest level saved here and closed below (or by abort on an error), the way
    // PostgreSQL's own SET clauses of functions do it.
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            PINNED.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    let r = f();
    // SAFETY: closes the nest level opened above.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    r
}

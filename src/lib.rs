//! audit_ext: a tamper-evident, hash-chained, append-only audit trail for PostgreSQL.
//! This file is glue: the SQL surface lives in `record`, `verify`, `diff`, `capture`, `search`
//! `alerts` and `retention` (with sql/*.sql), the guards in `append`, internals in `chain`, `event`
//! and `spi` (kept plans), settings in `gucs`, errors in `error`.
//! The code with no PostgreSQL in it is the `audit_core` crate (crates/audit_core): the hash
//! encoding (`audit_core::hash`) and the search language (`audit_core::query`).

use pgrx::prelude::*;

/// Declares `pg_finfo_<name>` for a hand-written fmgr V1 function (those declared in
/// sql/*.sql with `LANGUAGE c ... AS 'MODULE_PATHNAME', '<name>'`).
macro_rules! finfo_v1 {
    ($finfo:ident) => {
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pgrx::pg_sys::Pg_finfo_record {
            const V1: pgrx::pg_sys::Pg_finfo_record = pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}

mod alerts;
mod append;
mod capture;
mod chain;
mod diff;
mod elevate;
mod error;
mod event;
mod gucs;
mod record;
mod retention;
mod search;
mod spi;
mod verify;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../sql/triggers.sql", name = "triggers", requires = [append::chain_event, append::refuse_change]);
extension_sql_file!("../sql/api.sql", name = "api", requires = ["triggers", retention::retention_class]);
extension_sql_file!("../sql/diff.sql", name = "diff", requires = [diff::diff_jsonb, diff::diff_rows]);
extension_sql_file!("../sql/views.sql", name = "views", requires = ["api", "diff"]);
extension_sql_file!("../sql/capture_rows.sql", name = "capture_rows", requires = ["api", "diff"]);
extension_sql_file!(
    "../sql/capture.sql",
    name = "capture",
    requires = ["capture_rows", capture::capture_ddl_enabled, capture::restoring, chain::in_maintenance_sql]
);
extension_sql_file!("../sql/search.sql", name = "search", requires = ["api", search::translate]);
extension_sql_file!(
    "../sql/alerts.sql",
    name = "alerts",
    requires = ["api", alerts::check_alert, alerts::rules_changed, alerts::group_name]
);
extension_sql_file!(
    "../sql/retention.sql",
    name = "retention",
    requires = [
        "capture",
        "alerts",
        retention::retention_class,
        retention::check_pattern,
        retention::retention_changed,
        retention::partition_period,
        chain::begin_maintenance,
        chain::end_maintenance,
        chain::try_maintenance
    ]
);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Never a Rust backtrace in a client-visible message: pgrx puts a captured backtrace into
    // the DETAIL of errors, and captures one whenever RUST_BACKTRACE is set in the server's
    // environment (a systemd unit may set it). RUST_LIB_BACKTRACE=0 turns capturing off (it
    // takes precedence); panics still print to the server log as RUST_BACKTRACE says.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    gucs::init();
    chain::init();
    capture::init();
    alerts::init();
    retention::init();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}

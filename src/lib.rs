//! audit_ext: a tamper-evident, hash-chained, append-only audit trail for PostgreSQL.
//! This file is glue: each feature is a module with the SQL file of the same name (README
//! "Where things are"); `pg` is the raw PostgreSQL layer. The code with no PostgreSQL in it is
//! the `audit_core` crate (crates/audit_core): the hash encoding and the search language.

use pgrx::prelude::*;

// Features, each with the SQL file of the same name (README "Where things are").
mod alerts;
mod capture;
mod checkpoint;
mod diff;
mod export;
mod forward;
mod guards;
mod maintenance;
mod mirror;
mod reads;
mod record;
mod retention;
mod search;
mod side_channel;
mod status;
mod verify;

// Internals: the insert path and its chains, the event row, the vocabulary, settings, errors,
// and the raw PostgreSQL layer.
mod append;
mod chain;
mod error;
mod event;
mod gucs;
mod pg;
mod vocab;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!(name, version);

/// audit_ext's internal functions (helpers, trigger and event-trigger functions) live in a
/// schema of their own, so that `\df audit.*` lists only what users call; the internal
/// `#[pg_extern]`s name it (`schema = "audit_internal"`), the SQL files qualify it.
#[pg_schema]
mod audit_internal {}

// Hand-written SQL, in the order it loads. Functions declared with #[pg_extern] are placed by
// pgrx wherever a file `requires` them.
extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "../sql/record.sql",
    name = "record",
    requires = [retention::policies::retention_class, vocab::own_action]
);
extension_sql_file!(
    "../sql/reads.sql",
    name = "reads",
    requires = ["record", reads::read_unless_committed, reads::read_arguments]
);
extension_sql_file!("../sql/verify.sql", name = "verify", requires = ["reads"]);
extension_sql_file!("../sql/diff.sql", name = "diff", requires = ["record", diff::diff_jsonb, diff::diff_rows]);
extension_sql_file!("../sql/capture/rows.sql", name = "capture_rows", requires = ["diff", "reads"]);
extension_sql_file!(
    "../sql/capture/ddl.sql",
    name = "capture_ddl",
    requires =
        ["capture_rows", capture::ddl::capture_ddl_enabled, capture::ddl::restoring, maintenance::in_maintenance_sql]
);
extension_sql_file!("../sql/search.sql", name = "search", requires = ["reads", search::translate]);
extension_sql_file!(
    "../sql/export.sql",
    name = "export",
    requires = ["verify", search::translate, export::export_header]
);
extension_sql_file!(
    "../sql/forward.sql",
    name = "forward",
    requires = ["export", "record", forward::forwarder_check, forward::forwarders_changed]
);
extension_sql_file!(
    "../sql/alerts.sql",
    name = "alerts",
    requires = ["record", alerts::check_alert, alerts::rules_changed, alerts::group_name]
);
extension_sql_file!(
    "../sql/guards.sql",
    name = "guards",
    requires = ["capture_ddl", "alerts", append::chain_event, guards::refuse_change]
);
extension_sql_file!("../sql/views.sql", name = "views", requires = ["guards", "diff"]);
extension_sql_file!("../sql/visibility.sql", name = "visibility", requires = ["views", "record"]);
extension_sql_file!(
    "../sql/side_channel.sql",
    name = "side_channel",
    requires = ["record", side_channel::side_channel_attach]
);
extension_sql_file!("../sql/reports.sql", name = "reports", requires = ["visibility", "verify", "capture_rows"]);
extension_sql_file!(
    "../sql/checkpoint.sql",
    name = "checkpoint",
    requires = ["verify", checkpoint::new_signing_key, checkpoint::make_checkpoint, checkpoint::signing_key]
);
extension_sql_file!(
    "../sql/maintenance.sql",
    name = "maintenance",
    requires = ["guards", maintenance::begin_maintenance, maintenance::end_maintenance, maintenance::try_maintenance]
);
extension_sql_file!(
    "../sql/retention/partitions.sql",
    name = "retention_partitions",
    requires = ["maintenance", retention::partitions::partition_period]
);
extension_sql_file!(
    "../sql/retention/policies.sql",
    name = "retention_policies",
    requires = ["retention_partitions", retention::policies::check_pattern, retention::policies::retention_changed]
);
extension_sql_file!("../sql/retention/tiers.sql", name = "retention_tiers", requires = ["retention_partitions"]);
extension_sql_file!(
    "../sql/retention/apply.sql",
    name = "retention_apply",
    requires = ["retention_policies", "retention_tiers", retention::anchor::retention_applied]
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
    mirror::init();
    reads::init();
    retention::init();
    side_channel::init();
    forward::init();
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

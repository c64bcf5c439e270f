//! Every `audit_ext.*` setting, in one place.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use std::ffi::CString;

/// Number of hash chains that writers spread over. A transaction takes the first free chain
/// and stays on it, so concurrent writers do not queue on one tail. Default from the
/// side-by-side benchmark in BENCHMARKS.md. Superuser-only: it decides how the log is laid out.
pub static CHAINS: GucSetting<i32> = GucSetting::<i32>::new(4);

/// Largest encoded size of one event (all fields, as hashed). Superuser-only so that a writer
/// cannot lift the limit that protects the log from being flooded.
pub static MAX_EVENT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);

/// Record DDL and GRANT/REVOKE through event triggers. Superuser-only: turning capture off
/// must not be in the hands of the roles whose changes it records.
pub static CAPTURE_DDL: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Restore mode, for loading a dump (`PGOPTIONS='-c audit_ext.restore=on' pg_restore ...`):
/// rows of `audit.events` that arrive complete (id, chain, seq, hash) are kept as they are,
/// after their hash is checked, instead of being refused; and nothing is captured or alerted
/// meanwhile (the restore's own DDL and data loads are not new events). Superuser-only: it lets
/// the caller write chain columns.
pub static RESTORE: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Length of the time range of each partition of `audit.events` (`day`, `week` or `month`,
/// in UTC). Read when a partition is created, so a change applies to partitions created from
/// then on; existing ones keep their ranges (a new range is clipped to fit between them).
/// Superuser-only: it shapes the log. Set it in postgresql.conf or with ALTER DATABASE, since
/// partitions are also created by a background worker that does not see a session's SET.
pub static PARTITION_PERIOD: GucSetting<PartitionPeriod> = GucSetting::<PartitionPeriod>::new(PartitionPeriod::Month);

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum PartitionPeriod {
    #[name = c"day"]
    Day,
    #[name = c"week"]
    Week,
    #[name = c"month"]
    Month,
}

impl PartitionPeriod {
    /// The setting's value, which is also date_trunc's name of the period.
    pub fn name(self) -> &'static str {
        match self {
            PartitionPeriod::Day => "day",
            PartitionPeriod::Week => "week",
            PartitionPeriod::Month => "month",
        }
    }

    /// An upper bound of one period's length, in microseconds: how far ahead partitions must
    /// reach before the writer asks for more.
    pub fn lead_us(self) -> i64 {
        const DAY: i64 = 86_400_000_000;
        match self {
            PartitionPeriod::Day => DAY,
            PartitionPeriod::Week => 7 * DAY,
            PartitionPeriod::Month => 31 * DAY,
        }
    }
}

/// Whether a writer may start the background worker that creates partitions ahead of need
/// (src/retention/partitions.rs). Off: partitions come only from `audit.ensure_partitions()` (say from
/// cron) and `apply_retention`; events without a partition wait in the default partition.
/// Superuser-only: the worker runs as the bootstrap superuser.
pub static PARTITION_WORKER: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Mirror every committed event into the server log as one `AUDIT:` line (src/mirror.rs), so
/// that existing log shipping (syslog, csvlog, jsonlog) receives it. In postgresql.conf (or
/// ALTER SYSTEM), applied on reload: no session can switch it off for itself.
pub static LOG_EVENTS: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Record every top-level statement that reads `audit.events` (directly, or through a view
/// over it) as one `audit.read` event (src/reads.rs). Superuser-only, so that an auditor
/// cannot read unrecorded; needs the library preloaded (the executor hooks are installed only
/// then, and `audit.status()` says when the setting is on but not in effect).
pub static AUDIT_READS: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Whether DDL, role and row capture are on now: on, and not restoring a dump.
pub fn capturing_ddl() -> bool {
    CAPTURE_DDL.get() && !restoring()
}

/// Whether a dump is being restored: `audit_ext.restore = on`, or a superuser's `pg_restore`
/// (which names itself in application_name). So a plain `pg_restore` of a database with
/// audit_ext, as DBAs run it every day, restores the log completely and verifiably instead of
/// failing on every event and leaving a log that holds only the restore's own DDL (which then
/// verified as intact). The same as the superuser setting `audit_ext.restore`: a non-superuser
/// who names its session pg_restore gets nothing from it.
pub fn restoring() -> bool {
    RESTORE.get() || superuser_pg_restore()
}

fn superuser_pg_restore() -> bool {
    use crate::pg::backend;
    backend::application_name().as_deref() == Some("pg_restore") && backend::in_transaction() && backend::is_superuser()
}

/// How the side channel (src/side_channel/) audits what a transaction cannot write itself:
/// logins, logouts, denied statements. `on` (best effort: an event the channel cannot take
/// is counted in `audit.status()` and warned about), `required` (fail closed: a login whose
/// event cannot be handed over is refused, `audit.record_autonomous` raises 53000), `off`
/// (no session events). Superuser-only; set it in postgresql.conf, since logins read it
/// before any per-role or per-database setting applies. Needs the library preloaded.
pub static LEVEL: GucSetting<Level> = GucSetting::<Level>::new(Level::On);

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    #[name = c"off"]
    Off,
    #[name = c"on"]
    On,
    #[name = c"required"]
    Required,
}

/// The database whose log receives the side channel's events about databases without
/// audit_ext, or that do not exist (a failed login to `no_such_db`). Read by the background
/// workers: postgresql.conf, applied on reload.
pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));

/// The CA certificates (PEM) that a `tls://` forwarder's receiver is checked against
/// (src/forward/transport.rs). Read by the forwarder workers: postgresql.conf, applied on
/// reload (superuser-only, as every setting of that context).
pub static TLS_CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The SQLSTATEs of failing statements that are recorded as `statement.denied`, comma
/// separated (`42501` by default: insufficient privilege). Superuser-only.
pub static RECORD_ERRORS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"42501"));

/// Who is acting, as set by `audit.set_context` (these are its storage: GUCs give us SET LOCAL
/// semantics, savepoint rollback and DISCARD ALL for connection pools). Superuser-only, so that
/// `SET audit_ext.context_actor = ...` by any other role is refused: only `audit.set_context`
/// (granted to audit_writer), which sets them from C with superuser context, asserts a context.
/// A value a non-superuser set as a placeholder before the library loaded is discarded when it
/// loads (PostgreSQL re-applies placeholders with the privileges of the role that set them).
pub static CONTEXT_ACTOR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CONTEXT_ACTOR_IP: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CONTEXT_SESSION_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CONTEXT_APPLICATION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CONTEXT_METADATA: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn init() {
    GucRegistry::define_int_guc(
        c"audit_ext.chains",
        c"Number of hash chains concurrent writers spread over.",
        c"A transaction appends to one chain only. More chains let more writers append at once; verify reports each chain.",
        &CHAINS,
        1,
        999,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"audit_ext.max_event_bytes",
        c"Largest encoded size of one audit event, in bytes.",
        c"Counts every field as hashed (see docs/hash-format.md). Larger events are refused with SQLSTATE 54000.",
        &MAX_EVENT_BYTES,
        1024,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"audit_ext.capture_ddl",
        c"Record DDL and GRANT/REVOKE as audit events.",
        c"Event triggers record CREATE, ALTER and DROP of schema objects and GRANT/REVOKE on them. Superuser-only.",
        &CAPTURE_DDL,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"audit_ext.restore",
        c"Load a dump: keep complete audit events as they are, and capture nothing meanwhile.",
        c"Set by the superuser running pg_restore (PGOPTIONS='-c audit_ext.restore=on'). Each restored event's hash is checked; run audit.verify() afterwards.",
        &RESTORE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"audit_ext.partition_period",
        c"Time range of each partition of audit.events: day, week or month (UTC).",
        c"Applies to partitions created from then on. Set it in postgresql.conf or with ALTER DATABASE: partitions are also created by a background worker.",
        &PARTITION_PERIOD,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"audit_ext.partition_worker",
        c"Start a background worker that creates partitions of audit.events ahead of need.",
        c"Off: partitions come only from audit.ensure_partitions() and audit.apply_retention().",
        &PARTITION_WORKER,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"audit_ext.log_events",
        c"Also write every committed audit event to the server log, one AUDIT: line each.",
        c"key=value form (README \"Mirror into the server log\"); for log shipping to syslog or a SIEM. Set in postgresql.conf or with ALTER SYSTEM.",
        &LOG_EVENTS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"audit_ext.audit_reads",
        c"Record every statement that reads audit.events or its views as an audit.read event.",
        c"One event per statement (its text and the rows it returned), never per row. Needs shared_preload_libraries = 'audit_ext'. Superuser-only.",
        &AUDIT_READS,
        GucContext::Suset,
        GucFlags::default(),
    );
    let ctx = |name, short, setting| {
        GucRegistry::define_string_guc(
            name,
            short,
            c"Set through audit.set_context(); read when an event is recorded.",
            setting,
            GucContext::Suset,
            GucFlags::NO_SHOW_ALL,
        )
    };
    ctx(c"audit_ext.context_actor", c"Actor recorded for events (audit.set_context).", &CONTEXT_ACTOR);
    ctx(c"audit_ext.context_actor_ip", c"Actor IP recorded for events (audit.set_context).", &CONTEXT_ACTOR_IP);
    ctx(c"audit_ext.context_session_id", c"Session id recorded for events (audit.set_context).", &CONTEXT_SESSION_ID);
    ctx(
        c"audit_ext.context_application",
        c"Application recorded for events (audit.set_context).",
        &CONTEXT_APPLICATION,
    );
    ctx(c"audit_ext.context_metadata", c"Metadata merged into events (audit.set_context).", &CONTEXT_METADATA);
    GucRegistry::define_enum_guc(
        c"audit_ext.level",
        c"Side-channel auditing of logins, logouts and denied statements: off, on (best effort) or required (fail closed).",
        c"required refuses a login whose event cannot be handed over. Needs shared_preload_libraries = 'audit_ext'. Superuser-only; set it in postgresql.conf.",
        &LEVEL,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"audit_ext.database",
        c"Database whose audit log receives events about databases without audit_ext (or that do not exist).",
        c"Without audit_ext there, such events only reach the server log. Applied on reload.",
        &DATABASE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"audit_ext.tls_ca_file",
        c"CA certificates (PEM file) that tls:// forwarders check their receiver against.",
        c"Read by the forwarder workers; applied on reload.",
        &TLS_CA_FILE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"audit_ext.record_errors",
        c"SQLSTATEs of failing statements recorded as statement.denied events, comma separated.",
        c"Default 42501 (insufficient privilege); for example '42501,28000,P0001'. Empty: none. Superuser-only.",
        &RECORD_ERRORS,
        GucContext::Suset,
        GucFlags::default(),
    );
    crate::pg::backend::reserve_setting_prefix(c"audit_ext");
}

/// The value of a context setting, `None` when unset or empty.
pub fn context(setting: &GucSetting<Option<CString>>) -> Option<CString> {
    setting.get().filter(|v| !v.as_bytes().is_empty())
}

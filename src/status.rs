//! `audit.status()`: what is active in this session, for operators and auditors.

use crate::gucs;
use pgrx::prelude::*;

/// `audit.status()`: what is active in this session, for operators and auditors.
#[pg_extern(stable, parallel_restricted, strict)]
#[search_path(pg_catalog, pg_temp)]
fn status() -> TableIterator<'static, (name!(feature, String), name!(active, bool), name!(detail, String))> {
    let preload = crate::capture::roles::role_capture_active();
    let ddl = gucs::capturing_ddl();
    let tracked: i64 =
        read_text("SELECT count(*)::text FROM audit.tracked_tables").and_then(|n| n.parse().ok()).unwrap_or(0);
    let partitions = read_text(
        "SELECT format('%s partition(s) in %s retention class(es), the last ending %s; %s event(s) waiting in the default partition', \
                (SELECT count(*) FROM audit.partitions WHERE dropped_at IS NULL), \
                (SELECT count(*) FROM audit.retention_policies), \
                coalesce((SELECT to_char(min(m) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' \
                          FROM (SELECT max(to_at) AS m FROM audit.partitions WHERE dropped_at IS NULL GROUP BY class) c), 'never'), \
                (SELECT count(*) FROM ONLY audit.events_default))",
    )
    .unwrap_or_default();
    let worker = gucs::PARTITION_WORKER.get();
    let reads_in_effect = gucs::AUDIT_READS.get() && crate::pg::executor::installed();
    let rows = vec![
        ("chain".to_string(), true, format!("{} chain(s) (audit_ext.chains)", gucs::CHAINS.get())),
        (
            "partitions".to_string(),
            worker,
            format!(
                "{partitions}; {}",
                if worker {
                    "writers start the partition worker when needed"
                } else {
                    "worker off (audit_ext.partition_worker): run audit.ensure_partitions() regularly"
                }
            ),
        ),
        ("row_capture".to_string(), tracked > 0, format!("{tracked} tracked table(s); see audit.tracked_tables")),
        (
            "ddl_capture".to_string(),
            ddl,
            if ddl {
                "event triggers record DDL and GRANT/REVOKE"
            } else {
                "off (audit_ext.capture_ddl = off, or audit_ext.restore = on)"
            }
            .to_string(),
        ),
        (
            "role_capture".to_string(),
            preload && ddl,
            if !preload {
                "inactive: add audit_ext to shared_preload_libraries and restart to record CREATE/ALTER/DROP ROLE and GRANT role".to_string()
            } else if !ddl {
                "off (audit_ext.capture_ddl = off, or audit_ext.restore = on)".to_string()
            } else {
                "utility hook records CREATE/ALTER/DROP ROLE and GRANT/REVOKE role".to_string()
            },
        ),
        (
            "log_mirror".to_string(),
            gucs::LOG_EVENTS.get(),
            if gucs::LOG_EVENTS.get() {
                "every committed event is also an AUDIT: line in the server log (audit_ext.log_events)"
            } else {
                "off: set audit_ext.log_events = on in postgresql.conf (or ALTER SYSTEM) and reload to mirror events into the server log"
            }
            .to_string(),
        ),
        (
            // (the hooks are src/reads.rs's)
            "read_audit".to_string(),
            reads_in_effect,
            match (gucs::AUDIT_READS.get(), reads_in_effect) {
                (_, true) => "every statement that reads audit.events or its views is recorded as an audit.read event (audit_ext.audit_reads); calls of search, export, verify, row_history, explain_query, summary and the reports are recorded always",
                (true, false) => "audit_ext.audit_reads is on but not in effect: add audit_ext to shared_preload_libraries and restart; calls of search, export, verify, row_history, explain_query, summary and the reports are recorded always",
                (false, _) => "statements reading audit.events are not recorded (audit_ext.audit_reads = off); calls of search, export, verify, row_history, explain_query, summary and the reports are recorded always",
            }
            .to_string(),
        ),
        {
            let (active, detail) = crate::side_channel::status();
            ("side_channel".to_string(), active, detail)
        },
        {
            // (read-only, as every row here: it runs on a hot standby too)
            let summary = read_text(crate::forward::STATUS_SQL).unwrap_or_default();
            match crate::forward::worker_running() {
                None => ("forwarders".to_string(), false, format!("inactive: forwarders need audit_ext in shared_preload_libraries; {summary}")),
                Some(running) => (
                    "forwarders".to_string(),
                    running,
                    format!("{summary}; worker {}", if running { "running" } else { "not running" }),
                ),
            }
        },
    ];
    TableIterator::new(rows)
}

/// The first column of the first row of a read-only query (it runs on a hot standby too).
pub fn read_text(sql: &str) -> Option<String> {
    Spi::connect(|client| client.select(sql, Some(1), &[]).ok()?.first().get_one::<String>().ok().flatten())
}

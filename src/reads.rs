//! The audit of the audit (README "The audit of the audit"): reads of the log become events.
//!
//! - `audit.search`, `audit.export`, `audit.verify`, `audit.row_history`, `audit.explain_query`,
//!   `audit.summary` and the reports record one event each call (module `audit`, action `audit.<function>`),
//!   with the arguments and the number of rows returned, through `audit_internal._read_event`
//!   (sql/reads.sql), which mirrors it to the server log where nothing can be written (a hot
//!   standby, a read-only transaction).
//! - With the library preloaded and `audit_ext.audit_reads = on`, every statement at the top
//!   of the executor that reads `audit.events` (or a partition of it, or a view over it) records
//!   one `audit.read` event with its text and the rows it returned, once the statement ended
//!   (src/pg/executor.rs), or a `COPY audit.events TO` that reads the table directly, without
//!   row level security (src/pg/utility.rs). One event per statement, never per row.
//! - A read event that rolls back is not lost without a trace: its line goes to the server log.

use crate::pg::backend;
use crate::pg::callbacks::{self, SubXact, XactEnd};
use crate::pg::value::Value;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

/// Statement texts and arguments kept in an event, at most (bytes, cut at a character): a read
/// must never fail because the event recording it would pass `audit_ext.max_event_bytes`.
pub const MAX_TEXT_BYTES: usize = 8192;

thread_local! {
    /// Set while this backend records a read: the recording's own statements are not reads.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    /// (subtransaction that recorded a read, its server-log line), until the transaction ends.
    static KEPT: RefCell<Vec<(pg_sys::SubTransactionId, String)>> = const { RefCell::new(Vec::new()) };
}

pub fn init() {
    crate::pg::executor::install(crate::pg::executor::Hooks { active, watch, done });
    crate::pg::utility::install_copy_reads(crate::pg::utility::CopyReads {
        active,
        watch: |relid| watch(&[relid]),
        done,
    });
    callbacks::on_transaction_end(transaction_end);
    callbacks::on_subtransaction(subtransaction);
}

/// `audit_internal._read_unless_committed(line)`: holds the server-log line of a read event just
/// recorded (sql/reads.sql) until its transaction ends. A read event that rolls back, with its
/// transaction or its savepoint (`BEGIN; SELECT * FROM audit.search(...); ROLLBACK`), would
/// leave no trace: its line is then written to the server log, marked
/// `(not recorded: rolled back)`. At commit the event is kept and the line dropped.
#[pg_extern(volatile, strict, parallel_unsafe, schema = "audit_internal", name = "_read_unless_committed")]
#[search_path(pg_catalog, pg_temp)]
fn read_unless_committed(line: &str) {
    let sub = backend::subtransaction_id();
    KEPT.with(|k| k.borrow_mut().push((sub, line.to_string())));
}

fn write_rolled_back(lines: Vec<String>) {
    for line in lines {
        // LOG: reaches the server log whatever log_min_messages, never the client
        pgrx::log!("{line} (not recorded: rolled back)");
    }
}

fn transaction_end(end: XactEnd) {
    let lines: Vec<String> = KEPT.with(|k| std::mem::take(&mut *k.borrow_mut())).into_iter().map(|(_, l)| l).collect();
    if matches!(end, XactEnd::Abort | XactEnd::ParallelAbort) {
        write_rolled_back(lines);
    }
}

fn subtransaction(event: SubXact, my_subid: pg_sys::SubTransactionId) {
    // Subtransaction ids grow within a transaction, and a subtransaction ends before any
    // later sibling starts: the lines at or after my_subid are its own or its children's.
    if event == SubXact::Abort {
        let gone = KEPT.with(|k| {
            let mut k = k.borrow_mut();
            let (gone, kept): (Vec<_>, Vec<_>) =
                std::mem::take(&mut *k).into_iter().partition(|(sub, _)| *sub >= my_subid);
            *k = kept;
            gone
        });
        write_rolled_back(gone.into_iter().map(|(_, l)| l).collect());
    }
}

/// Records one call of a reading function: `action` (`audit.search`, ...), its arguments and
/// the rows it returned. Runs `audit_internal._read_event` as the extension's owner: it is audit_ext's
/// own statement with typed parameters only (src/pg/elevate.rs), and readers and viewers may
/// not insert into the log themselves.
pub fn record(action: &str, arguments: serde_json::Value, rows: i64) {
    if RECORDING.get() {
        return;
    }
    RECORDING.set(true);
    let _reset = Reset;
    // Between installing this library and `ALTER EXTENSION audit_ext UPDATE`, a database has
    // the previous version's SQL objects, without the recorder (and without the schema
    // audit_internal, which came with it): the read goes to the server log rather than fail
    // (verify says in its guards row that the update is due). A catalog lookup by name, not a
    // query: a query's type names would resolve in the caller's pg_temp first, where a
    // temporary type named `text` could make the recorder look missing.
    if backend::namespace_oid(c"audit_internal").is_none() {
        pgrx::log!(
            "AUDIT: action={action} actor={} rows={rows} arguments={arguments} (not recorded: audit_ext's SQL objects are older than its library; run ALTER EXTENSION audit_ext UPDATE)",
            serde_json::Value::String(backend::session_user_name())
        );
        return;
    }
    crate::pg::elevate::as_owner(|| {
        let spi = crate::pg::spi::Connection::open();
        spi.run(
            c"SELECT audit_internal._read_event($1, $2, $3)",
            &[
                (pg_sys::TEXTOID, Some(Value::from_text(action.as_bytes()))),
                (pg_sys::JSONBOID, Some(Value::parse_jsonb(&json_cstring(&arguments)))),
                (pg_sys::INT8OID, Some(Value::from_int8(rows))),
            ],
            false,
        );
    });
}

/// `v` as text for jsonb's input function (serde_json escapes NUL, so there is none inside).
fn json_cstring(v: &serde_json::Value) -> std::ffi::CString {
    std::ffi::CString::new(v.to_string()).unwrap_or_default()
}

struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        RECORDING.set(false);
    }
}

/// `s` cut to [`MAX_TEXT_BYTES`] at a character boundary.
pub fn cut(s: &str) -> &str {
    cut_to(s, MAX_TEXT_BYTES)
}

fn cut_to(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `audit_internal._read_arguments(arguments)`: the arguments of a read as its event keeps them: as
/// they are when their text fits in 8 kB and a quarter of `audit_ext.max_event_bytes`, else
/// `{"truncated": <the first bytes of their text>}`, so that a read never fails on the size
/// limit (the setting is read here, in the library, where a session cannot shadow it).
#[pg_extern(stable, strict, parallel_safe, schema = "audit_internal", name = "_read_arguments")]
#[search_path(pg_catalog, pg_temp)]
fn read_arguments(arguments: pgrx::JsonB) -> pgrx::JsonB {
    let max = MAX_TEXT_BYTES.min(usize::try_from(crate::gucs::MAX_EVENT_BYTES.get() / 4).unwrap_or(0));
    let text = arguments.0.to_string();
    if text.len() <= max {
        return arguments;
    }
    pgrx::JsonB(serde_json::json!({ "truncated": cut_to(&text, max) }))
}

/// Whether statements may be followed now: reads are recorded, in a client's backend, and this
/// is not audit_ext recording a read. The one check a statement pays with the setting off.
fn active() -> bool {
    crate::gucs::AUDIT_READS.get() && !RECORDING.get() && backend::is_client_backend()
}

/// Follow a top statement (the hooks asked [`active`] first) that reads the log.
fn watch(relids: &[pg_sys::Oid]) -> bool {
    let Some(audit) = backend::namespace_oid(c"audit") else { return false };
    let Some(events) = backend::relid_in(audit, c"events") else { return false };
    // audit.events' partitions are the only partitions in schema audit (sql/bootstrap.sql,
    // and the DDL guard refuses other tables there)
    relids.iter().any(|&r| r == events || backend::rel_namespace_partition(r) == (audit, true))
}

fn done(statement: &str, rows: u64) {
    let truncated = statement.len() > MAX_TEXT_BYTES;
    let mut args = serde_json::json!({ "statement": cut(statement) });
    if truncated {
        args["statement_bytes"] = serde_json::json!(statement.len());
    }
    record("audit.read", args, i64::try_from(rows).unwrap_or(i64::MAX));
}

//! The forwarder workers: one per database with forwarders, started by the side channel's
//! launcher (src/side_channel/worker.rs) when a commit created or dropped a forwarder there,
//! or when the **scout** found the database after a server start. The scout (one per server
//! start) connects to template1 for a moment, lists the databases, and asks for a worker in
//! each; a worker that finds no forwarders (or no audit_ext) exits at once.
//!
//! Each round the worker reads its forwarders, and for each: confirms what the receiver has
//! taken (stored in `audit_internal.forwarders`, one short transaction), then sends the next
//! [`BATCH`] events after what it sent (read in another short transaction, as the extension's
//! owner). Sending happens outside any transaction, so a slow receiver holds no snapshot and
//! no lock. A broken connection rewinds to the stored position: what was sent after it is sent
//! again (duplicates, at most [`MAX_UNCONFIRMED`] batches), never skipped.

use super::transport::{self, Conn};
use crate::event;
use crate::gucs;
use crate::pg::spi;
use crate::pg::value::Value;
use crate::pg::{backend, elevate, os, session, shmem};
use crate::side_channel::queue::{self, F_NONE, F_RUNNING, F_STARTING, F_WANTED, QUEUE};
use audit_core::forward::Target;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_guard;
use pgrx::pg_sys;
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;

/// Events read and sent at a time (per forwarder and round).
const BATCH: i32 = 500;
/// A batch counts as taken this long after the receiver's TCP stack acknowledged its last
/// byte, if the connection is still open then: a receiver that closes at once (a restart)
/// may not have read what its kernel acknowledged, and those lines are sent again.
const CONFIRM_AFTER_US: i64 = 250_000;
/// Batches sent and not yet taken, at most: bounds the duplicates after a failure.
pub const MAX_UNCONFIRMED: usize = 64;
/// Retry after a failure: from 1 s, doubling, to 30 s.
const BACKOFF_MIN_US: i64 = 1_000_000;
const BACKOFF_MAX_US: i64 = 30_000_000;
/// A round's pause when nothing was sent.
const IDLE_MS: i64 = 500;
/// How long a start may take before the launcher tries again; how long after a worker's error.
const START_TIMEOUT_US: i64 = 10_000_000;
const RESTART_AFTER_US: i64 = 5_000_000;
/// How much lower the worker's CPU priority is than the backends' (nice steps).
const NICE: i32 = 19;
/// The scout's key (other keys are database oids).
const SCOUT: u32 = 0;

thread_local! {
    static DB: Cell<u32> = const { Cell::new(0) };
    static CONNECTED: Cell<bool> = const { Cell::new(false) };
    static STOP: Cell<bool> = const { Cell::new(false) };
}

/// Asks for the forwarder worker of `db` (from the commit of a change to its forwarders, or
/// the scout): started by the launcher, or woken to read its forwarders again.
pub fn request(db: u32) {
    if !crate::side_channel::available() {
        return;
    }
    let now = backend::now();
    let mut q = QUEUE.lock();
    let latch = if let Some(f) = q.forwarders.iter_mut().find(|f| f.state != F_NONE && f.db == db) {
        f.requests = f.requests.wrapping_add(1);
        if f.state == F_WANTED {
            f.since = f.since.min(now);
        }
        f.latch
    } else if let Some(f) = q.forwarders.iter_mut().find(|f| f.state == F_NONE) {
        *f = queue::Forwarder { db, state: F_WANTED, requests: 1, pid: 0, latch: 0, since: now };
        q.launcher_latch
    } else {
        drop(q);
        pgrx::log!(
            "audit_ext: no room for the forwarder worker of database {db} ({} databases have one)",
            queue::FORWARDERS
        );
        return;
    };
    let launcher = q.launcher_latch;
    drop(q);
    shmem::set_latch(latch);
    shmem::set_latch(launcher);
}

/// From the launcher's every round: starts the scout once per server start and the workers
/// asked for.
pub fn launch() {
    let now = backend::now();
    let (scout, start) = {
        let mut q = QUEUE.lock();
        let scout = q.scout == 0;
        if scout {
            q.scout = 1;
        }
        let mut start = vec![];
        for f in q.forwarders.iter_mut() {
            if f.state == F_STARTING && now - f.since > START_TIMEOUT_US {
                f.state = F_WANTED;
            }
            if f.state == F_WANTED && f.since <= now {
                f.state = F_STARTING;
                f.since = now;
                start.push(f.db);
            }
        }
        (scout, start)
    };
    if scout && start_worker(SCOUT).is_err() {
        QUEUE.lock().scout = 0;
    }
    for db in start {
        if start_worker(db).is_err() {
            // no free background worker slot: try again in a while
            let mut q = QUEUE.lock();
            if let Some(f) = q.forwarders.iter_mut().find(|f| f.db == db && f.state == F_STARTING) {
                f.state = F_WANTED;
                f.since = now + RESTART_AFTER_US;
            }
        }
    }
}

fn start_worker(db: u32) -> Result<(), ()> {
    BackgroundWorkerBuilder::new(if db == SCOUT { "audit_ext forwarder scout" } else { "audit_ext forwarder" })
        .set_type("audit_ext forwarder")
        .set_function("audit_ext_forwarder")
        .set_library("audit_ext")
        .set_argument(Some(pg_sys::Datum::from(db)))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .load_dynamic()
        .map(|_| ())
        .map_err(|_| ())
}

fn stopping() -> bool {
    if BackgroundWorker::sigterm_received() {
        STOP.set(true);
    }
    STOP.get()
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn audit_ext_forwarder(arg: pg_sys::Datum) {
    let db = arg.value() as u32;
    DB.set(db);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    session::on_exit(worker_exit);
    if db == SCOUT {
        BackgroundWorker::connect_worker_to_spi(Some("template1"), None);
        scout();
        return;
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db)), None);
    CONNECTED.set(true);
    // Forwarding must not slow the writers: on a busy machine the worker runs on the CPU they
    // leave, and catches up when they pause (measured: BENCHMARKS.md "Forwarders").
    os::lower_priority(NICE);
    // as the side channel's writers: the database's own settings must not stop the worker
    for (name, value) in [
        (c"default_transaction_read_only", c"off"),
        (c"statement_timeout", c"0"),
        (c"search_path", c"pg_catalog, pg_temp"),
    ] {
        backend::set_setting(name, value, false);
    }
    let mut seen = {
        let mut q = QUEUE.lock();
        let me = (shmem::my_latch(), backend::pid(), backend::now());
        match q.forwarders.iter_mut().find(|f| f.db == db && f.state != F_NONE) {
            Some(f) => {
                (f.latch, f.pid, f.since) = me;
                f.state = F_RUNNING;
                f.requests
            }
            None => return,
        }
    };
    let mut fwds: BTreeMap<String, Forwarder> = BTreeMap::new();
    while !stopping() {
        if BackgroundWorker::sighup_received() {
            backend::reload_config();
        }
        let requests = QUEUE.lock().forwarders.iter().find(|f| f.db == db).map_or(seen, |f| f.requests);
        let rows = BackgroundWorker::transaction(read_forwarders);
        seen = requests;
        let Some(rows) = rows else { break };
        if rows.is_empty() {
            break;
        }
        fwds.retain(|name, f| rows.iter().any(|r| &r.name == name && r.same(f)));
        for r in rows {
            fwds.entry(r.name.clone()).or_insert_with(|| Forwarder::new(r));
        }
        let mut busy = false;
        for f in fwds.values_mut() {
            busy |= f.round();
        }
        // (with 0 when busy: only to notice a postmaster that died)
        shmem::wait_latch(if busy { 0 } else { IDLE_MS });
    }
    // gone (no forwarders any more, or asked to stop): unless a change came meanwhile
    let mut q = QUEUE.lock();
    if let Some(f) = q.forwarders.iter_mut().find(|f| f.db == db && f.pid == backend::pid()) {
        if f.requests != seen && !STOP.get() {
            f.state = F_WANTED;
            f.since = backend::now();
        } else {
            f.state = F_NONE;
        }
    }
}

/// After an error: the database's worker is started again in a while (unless the database is
/// gone: then it could not connect).
fn worker_exit() {
    let db = DB.get();
    let mut q = QUEUE.lock();
    if db == SCOUT {
        if q.scout == 1 {
            q.scout = 2;
        }
    } else if let Some(f) = q.forwarders.iter_mut().find(|f| f.db == db && f.state != F_NONE && f.state != F_WANTED) {
        if CONNECTED.get() && f.pid == backend::pid() && f.state == F_RUNNING && !STOP.get() {
            f.state = F_WANTED;
            f.since = backend::now() + RESTART_AFTER_US;
        } else if f.state == F_STARTING || f.pid == backend::pid() {
            f.state = F_NONE;
        }
    }
    let launcher = q.launcher_latch;
    drop(q);
    shmem::set_latch(launcher);
}

/// The scout: a worker for every database that may have forwarders.
fn scout() {
    let dbs: Vec<u32> = BackgroundWorker::transaction(|| {
        let c = spi::Connection::open();
        c.run(c"SELECT oid FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate", &[], true);
        (0..c.processed() as usize).filter_map(|i| c.cell(i, 1).map(|v| u32::from(v.oid_value()))).collect()
    });
    for db in dbs {
        request(db);
    }
    QUEUE.lock().scout = 2;
}

/// A forwarder as stored.
struct Row {
    name: String,
    target: String,
    format: String,
    query: Option<String>,
    position: Position,
    last_id: Option<i64>,
    /// When it was created: a forwarder dropped and created again under the same name between
    /// two rounds is a new one, with a new position.
    created: String,
}

impl Row {
    fn same(&self, f: &Forwarder) -> bool {
        self.target == f.row.target
            && self.format == f.row.format
            && self.query == f.row.query
            && self.created == f.row.created
    }
}

/// Per chain, the last seq.
type Position = BTreeMap<i32, i64>;

/// As stored: `{"<chain>": seq, ...}`.
fn position_json(p: &Position) -> String {
    let m: BTreeMap<String, i64> = p.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    serde_json::to_string(&m).unwrap_or_else(|_| "{}".into())
}

fn read_forwarders() -> Option<Vec<Row>> {
    if !backend::extension_installed(c"audit_ext") {
        return None;
    }
    elevate::as_owner(|| {
        let c = spi::Connection::open();
        c.run(
            c"SELECT name, target, format, query, position::text, last_id, created_at::text \
              FROM audit_internal.forwarders ORDER BY name",
            &[],
            false,
        );
        let text = |i: usize, col: i32| c.cell(i, col).map(|v| v.str().into_owned());
        Some(
            (0..c.processed() as usize)
                .map(|i| Row {
                    name: text(i, 1).unwrap_or_default(),
                    target: text(i, 2).unwrap_or_default(),
                    format: text(i, 3).unwrap_or_default(),
                    query: text(i, 4),
                    position: text(i, 5)
                        .and_then(|p| serde_json::from_str::<BTreeMap<String, i64>>(&p).ok())
                        .map_or_else(Position::new, |m| {
                            m.into_iter().filter_map(|(k, v)| Some((k.parse().ok()?, v))).collect()
                        }),
                    last_id: c.cell(i, 6).map(|v| v.int8()),
                    created: text(i, 7).unwrap_or_default(),
                })
                .collect(),
        )
    })
}

/// A batch sent and not yet taken.
struct Sent {
    position: Position,
    last_id: Option<i64>,
    lines: i64,
    /// When the receiver's TCP stack had acknowledged it (None: not yet).
    acked_at: Option<i64>,
}

/// A forwarder's state in its worker.
struct Forwarder {
    row: Row,
    target: Result<Target, String>,
    reader: Result<Reader, String>,
    /// What was sent: `row.position` plus the batches in `unconfirmed`.
    sent: Position,
    sent_last_id: Option<i64>,
    unconfirmed: VecDeque<Sent>,
    conn: Option<Conn>,
    retry_at: i64,
    backoff: i64,
    /// The error stored in the table (so it is written once, and cleared once).
    stored_error: Option<String>,
    resent: i64,
}

impl Forwarder {
    fn new(row: Row) -> Forwarder {
        Forwarder {
            target: Target::parse(&row.target),
            reader: Reader::new(&row.format, row.query.as_deref()),
            sent: row.position.clone(),
            sent_last_id: row.last_id,
            row,
            unconfirmed: VecDeque::new(),
            conn: None,
            retry_at: 0,
            backoff: BACKOFF_MIN_US,
            stored_error: None,
            resent: 0,
        }
    }

    /// One round; true when it sent a full batch (more may be waiting).
    fn round(&mut self) -> bool {
        let now = backend::now();
        if let Some(conn) = self.conn.as_mut() {
            if !conn.alive() {
                self.fail("the receiver closed the connection".into(), now);
            }
        }
        self.confirm(now);
        if self.conn.is_none() {
            if now < self.retry_at {
                return false;
            }
            let target = match &self.target {
                Ok(t) => t.clone(),
                Err(e) => {
                    let e = e.clone();
                    self.fail(e, now);
                    return false;
                }
            };
            let ca = gucs::TLS_CA_FILE.get().map(|c| c.to_string_lossy().into_owned());
            match transport::connect(&target, ca.as_deref()) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.fail(e, now);
                    return false;
                }
            }
        }
        if self.unconfirmed.len() >= MAX_UNCONFIRMED {
            return false;
        }
        let reader = match &self.reader {
            Ok(r) => r,
            Err(e) => {
                let e = format!("query: {e}");
                self.fail(e, now);
                return false;
            }
        };
        let (format, from) = (self.row.format.as_str(), self.sent.clone());
        let reader = std::panic::AssertUnwindSafe(reader);
        let batch = BackgroundWorker::transaction(|| read_batch(format, &reader, &from));
        let Some(last) = batch.last() else { return false };
        let mut position = self.sent.clone();
        for e in &batch {
            position.insert(e.chain, e.seq);
        }
        let last_id = Some(last.id.max(self.sent_last_id.unwrap_or(0)));
        let lines: Vec<&str> = batch.iter().filter_map(|e| e.line.as_deref()).collect();
        let full = batch.len() as i32 == BATCH;
        if !lines.is_empty() {
            let sent = self.conn.as_mut().map(|c| c.send(&lines));
            if let Some(Err(e)) = sent {
                self.fail(e, backend::now());
                return false;
            }
        }
        let acknowledges = self.conn.as_ref().is_some_and(|c| c.acknowledges());
        self.unconfirmed.push_back(Sent {
            position: position.clone(),
            last_id,
            lines: lines.len() as i64,
            acked_at: (lines.is_empty() || !acknowledges).then(|| backend::now() - CONFIRM_AFTER_US),
        });
        self.sent = position;
        self.sent_last_id = last_id;
        self.confirm(backend::now());
        full
    }

    /// Stores as taken the batches the receiver has taken.
    fn confirm(&mut self, now: i64) {
        if self.unconfirmed.is_empty() {
            return;
        }
        if let Some(conn) = self.conn.as_ref() {
            if conn.unacked() == Some(0) {
                for s in self.unconfirmed.iter_mut().filter(|s| s.acked_at.is_none()) {
                    s.acked_at = Some(now);
                }
            }
        }
        let mut taken: Option<Sent> = None;
        let mut lines = 0;
        while self.unconfirmed.front().is_some_and(|s| s.acked_at.is_some_and(|a| now - a >= CONFIRM_AFTER_US)) {
            let s = self.unconfirmed.pop_front().unwrap();
            lines += s.lines;
            taken = Some(s);
        }
        let Some(s) = taken else { return };
        let position = position_json(&s.position);
        let (name, resent, created) =
            (self.row.name.clone(), std::mem::take(&mut self.resent), self.row.created.clone());
        BackgroundWorker::transaction(|| {
            store(
                c"UPDATE audit_internal.forwarders SET position = $2::jsonb, last_id = $3, sent = sent + $4, \
                  resent = resent + $5, last_sent_at = CASE WHEN $4 > 0 THEN pg_catalog.now() ELSE last_sent_at END, \
                  last_error = NULL WHERE name = $1 AND created_at::text = $6",
                &[
                    (pg_sys::TEXTOID, Some(Value::from_text(name.as_bytes()))),
                    (pg_sys::TEXTOID, Some(Value::from_text(position.as_bytes()))),
                    (pg_sys::INT8OID, s.last_id.map(Value::from_int8)),
                    (pg_sys::INT8OID, Some(Value::from_int8(lines))),
                    (pg_sys::INT8OID, Some(Value::from_int8(resent))),
                    (pg_sys::TEXTOID, Some(Value::from_text(created.as_bytes()))),
                ],
            )
        });
        self.row.position = s.position;
        self.row.last_id = s.last_id;
        self.stored_error = None;
        self.backoff = BACKOFF_MIN_US;
    }

    /// A failure: the connection goes, what was not taken will be sent again, the error is
    /// stored, and the next try waits (1 s, doubling, up to 30 s).
    fn fail(&mut self, error: String, now: i64) {
        self.conn = None;
        self.resent += self.unconfirmed.iter().map(|s| s.lines).sum::<i64>();
        self.unconfirmed.clear();
        self.sent = self.row.position.clone();
        self.sent_last_id = self.row.last_id;
        self.retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX_US);
        if self.stored_error.as_deref() != Some(error.as_str()) {
            let (name, created) = (self.row.name.clone(), self.row.created.clone());
            let e = error.clone();
            BackgroundWorker::transaction(|| {
                store(
                    c"UPDATE audit_internal.forwarders SET last_error = $2, last_error_at = pg_catalog.now() \
                      WHERE name = $1 AND created_at::text = $3",
                    &[
                        (pg_sys::TEXTOID, Some(Value::from_text(name.as_bytes()))),
                        (pg_sys::TEXTOID, Some(Value::from_text(e.as_bytes()))),
                        (pg_sys::TEXTOID, Some(Value::from_text(created.as_bytes()))),
                    ],
                )
            });
            pgrx::log!("audit_ext: forwarder {:?} to {}: {error} (retrying)", self.row.name, self.row.target);
            self.stored_error = Some(error);
        }
    }
}

/// Runs one UPDATE of the forwarders' table. Without waiting for its WAL flush: a position
/// lost in a crash only sends some events again (at least once holds), and a flush per
/// confirmation would queue behind the writers' own commits on the disk.
fn store(sql: &std::ffi::CStr, args: &[(pg_sys::Oid, Option<Value>)]) {
    backend::set_setting(c"synchronous_commit", c"off", true);
    elevate::as_owner(|| {
        let c = spi::Connection::open();
        c.run(sql, args, false);
    })
}

/// One event of a batch.
struct Event {
    id: i64,
    chain: i32,
    seq: i64,
    line: Option<String>,
}

/// What reads a forwarder's batches: the statement, and the values of its query.
struct Reader {
    sql: CString,
    values: Vec<String>,
    /// Prepared on the first batch and kept (PostgreSQL re-plans it when the partitions
    /// change): parsing and planning it for every batch showed in the worker's profile.
    plan: std::cell::OnceCell<spi::Plan>,
}

impl Reader {
    /// For a format and a query of the search language (checked when the forwarder was made).
    fn new(format: &str, query: Option<&str>) -> Result<Reader, String> {
        let (filter, values) = match query {
            Some(q) => {
                let t = audit_core::query::translate(&audit_core::query::parse(q).map_err(|e| e.to_string())?);
                (t.sql, t.params)
            }
            None => ("true".to_string(), vec![]),
        };
        // The columns of audit.events in src/event.rs's order; the documents only where the
        // format writes them (csv), so that the others neither detoast nor copy them.
        let cols: Vec<String> = event::COLUMNS
            .iter()
            .enumerate()
            .map(|(i, (name, _))| match i {
                event::OLD | event::NEW | event::METADATA if format != "csv" => "NULL::jsonb".to_string(),
                _ => format!("e.{name}"),
            })
            .collect();
        let json = if format == "jsonl" {
            format!("CASE WHEN ({filter}) THEN audit.export_json(e)::text END")
        } else {
            "NULL::text".to_string()
        };
        // Each chain's (audit.head(): one probe per chain) next events by its (chain, seq)
        // index, then the first of them by id: a
        // prefix of every chain, so the position that follows is exact. The filter (built by
        // the translator from column names, operators and $1[n] only) marks the events sent.
        let sql = format!(
            "SELECT {cols}, ({filter}) AS matched, {json} FROM (SELECT x.* FROM audit.head() c \
             CROSS JOIN LATERAL (SELECT * FROM audit.events x WHERE x.chain = c.chain \
             AND x.seq > coalesce(($2 ->> c.chain::text)::bigint, -1) ORDER BY x.seq LIMIT $3) x \
             ORDER BY x.id LIMIT $3) e ORDER BY e.id",
            cols = cols.join(", ")
        );
        Ok(Reader { sql: CString::new(sql).map_err(|e| e.to_string())?, values, plan: std::cell::OnceCell::new() })
    }
}

/// The next events after `from`, with the lines of those the query matches. Rendered here
/// from the columns (src/export.rs), not by SQL per row (measured: BENCHMARKS.md "Forwarders").
fn read_batch(format: &str, reader: &Reader, from: &Position) -> Vec<Event> {
    let pos = CString::new(position_json(from)).unwrap_or_default();
    elevate::as_owner(|| {
        // a fresh position (seq > -1) otherwise gets a bitmap scan of the whole chain, and JIT
        // (measured: 100 ms for a batch of 500 against 9 ms)
        backend::set_setting(c"enable_bitmapscan", c"off", true);
        backend::set_setting(c"jit", c"off", true);
        let c = spi::Connection::open();
        let plan = reader
            .plan
            .get_or_init(|| c.keep_plan(&reader.sql, &[pg_sys::TEXTARRAYOID, pg_sys::JSONBOID, pg_sys::INT4OID]));
        c.execute(
            plan,
            &[Value::from_pgrx(reader.values.clone()), Some(Value::parse_jsonb(&pos)), Some(Value::from_int4(BATCH))],
            false,
        );
        let matched_col = event::COLUMNS.len() as i32 + 1;
        (0..c.processed() as usize)
            .map(|i| {
                let get = |col: usize| c.cell(i, col as i32 + 1);
                let matched = c.cell(i, matched_col).is_some_and(|v| v.bool());
                let line = match (matched, format) {
                    (false, _) => None,
                    (true, "jsonl") => c.cell(i, matched_col + 1).map(|v| v.str().into_owned()),
                    (true, f) => crate::export::line(f, &get),
                };
                Event {
                    id: get(event::ID).map_or(0, |v| v.int8()),
                    chain: get(event::CHAIN).map_or(0, |v| v.int4()),
                    seq: get(event::SEQ).map_or(0, |v| v.int8()),
                    line,
                }
            })
            .collect()
    })
}

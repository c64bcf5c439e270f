//! The side channel's background workers.
//!
//! The **launcher** (one, registered at server start, connected to no database) starts a
//! **writer** for each database that has events waiting and no writer, and handles what no
//! writer can: events for a fallback database that does not exist.
//!
//! A **writer** is connected to one database (or to `audit_ext.database`, key FALLBACK). It
//! takes up to [`BATCH`] waiting events of its database, writes them in one transaction
//! (each in a subtransaction, so one refused event does not take the others with it) with
//! synchronous_commit on, then wakes their waiters: many logins at once share one commit.
//! A database without audit_ext sends its events on to the fallback database. A writer that
//! was idle for [`IDLE_EXIT_US`] exits, so idle databases hold no worker slot and a
//! `DROP DATABASE` is not kept waiting.
//!
//! Writers never audit themselves: they are not client backends, so neither the login hook
//! nor the error hook records anything of theirs, and their events do not go through the
//! queue again. A writer holds a chain lock only inside its own short transaction and takes
//! chains by trying (src/chain.rs), so it never waits for a backend that waits for it.

use super::queue::{self, FALLBACK, QUEUE, READY, TAKEN, W_NONE, W_NO_EXTENSION, W_RUNNING, W_STARTING};
use super::{field, SideEvent};
use crate::append::Origin;
use crate::gucs;
use crate::pg::value::Value;
use crate::pg::{backend, elevate, session, shmem};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_guard;
use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::CString;
use std::time::Duration;

/// Events a writer takes per transaction.
const BATCH: usize = 64;
/// How long events nobody waits for (logouts, failed logins, denied statements) may wait for
/// company: a writer holds them back this long so that they share a transaction (and its
/// commit) with the next events, which halves the writer's transactions when clients log in
/// and out one after another (measured: BENCHMARKS.md, "The side channel").
const LINGER_US: i64 = 50_000;
/// A writer exits after this long without events: under the 5 s that `DROP DATABASE` waits
/// for the database's other sessions to go (a writer is one), and long enough that logins a
/// few seconds apart find it running (starting one adds a fork and a connection to a login).
const IDLE_EXIT_US: i64 = 4_000_000;
/// A writer that has not started after this long is taken for failed (the launcher tries again).
const START_TIMEOUT_US: i64 = 10_000_000;
/// How long a database found without audit_ext sends its events to the fallback database
/// before it is looked at again.
const NO_EXTENSION_RECHECK_US: i64 = 10_000_000;

thread_local! {
    static KEY: Cell<u32> = const { Cell::new(u32::MAX) };
    /// SIGTERM came (pgrx's flag is cleared by reading it: this one stays).
    static STOP: Cell<bool> = const { Cell::new(false) };
    static CONNECTED: Cell<bool> = const { Cell::new(false) };
}

/// What else the launcher does each round (src/forward/worker.rs: start forwarder workers).
static ALSO: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Has the launcher call `f` each round (from _PG_init, before the launcher starts).
pub fn each_round(f: fn()) {
    let _ = ALSO.set(f);
}

/// Registers the launcher (from _PG_init, while preloading).
pub fn register_launcher() {
    BackgroundWorkerBuilder::new("audit_ext side channel launcher")
        .set_type("audit_ext launcher")
        .set_function("audit_ext_side_launcher")
        .set_library("audit_ext")
        .enable_shmem_access(None)
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

fn fallback_name() -> CString {
    gucs::DATABASE.get().filter(|d| !d.as_bytes().is_empty()).unwrap_or_else(|| c"postgres".into())
}

fn reload_if_asked() {
    if BackgroundWorker::sighup_received() {
        backend::reload_config();
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn audit_ext_side_launcher(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // Connected to no database, and reading no catalog: after a server start the shared
    // relcache init file is missing until a backend completes its start, and the first
    // logins wait for this launcher.
    {
        let mut q = QUEUE.lock();
        q.launcher_latch = shmem::my_latch();
        q.launcher_pid = backend::pid();
    }
    session::on_exit(|| {
        let mut q = QUEUE.lock();
        q.launcher_latch = 0;
        q.launcher_pid = 0;
    });
    loop {
        reload_if_asked();
        tick();
        if let Some(f) = ALSO.get() {
            f();
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(1000))) {
            break;
        }
    }
}

/// One round of the launcher: start the writers that are missing, fail what cannot go anywhere.
fn tick() {
    let now = backend::now();
    let mut start: Vec<u32> = vec![];
    {
        let mut q = QUEUE.lock();
        for w in q.writers.iter_mut() {
            if (w.state == W_STARTING && now - w.since > START_TIMEOUT_US)
                || (w.state == W_NO_EXTENSION && now - w.since > NO_EXTENSION_RECHECK_US)
            {
                w.state = W_NONE;
            }
        }
        let rekey: Vec<usize> = (0..queue::SLOTS)
            .filter(|&i| {
                let s = &q.slots[i];
                s.state == READY
                    && s.key != FALLBACK
                    && q.writers.iter().any(|w| w.state == W_NO_EXTENSION && w.key == s.key)
            })
            .collect();
        for i in rekey {
            q.slots[i].key = FALLBACK;
        }
        for i in 0..queue::SLOTS {
            let s = &q.slots[i];
            if s.state == READY
                && !start.contains(&s.key)
                && q.writers.iter().all(|w| w.state == W_NONE || w.key != s.key)
            {
                start.push(s.key);
            }
        }
        start.retain(|&key| match q.writers.iter_mut().find(|w| w.state == W_NONE) {
            Some(w) => {
                *w = queue::Writer { key, state: W_STARTING, latch: 0, pid: 0, since: now };
                true
            }
            None => false, // all writer entries in use: next round
        });
    }
    for key in start {
        if key == FALLBACK {
            // a writer found the fallback database missing a moment ago: fail its events
            // rather than start a writer a second that cannot connect
            let missing = {
                let q = QUEUE.lock();
                q.fallback_problem == queue::FALLBACK_NO_DATABASE && now - q.fallback_since < NO_EXTENSION_RECHECK_US
            };
            if missing {
                forget_writer(key);
                let why =
                    format!("database {:?} (audit_ext.database) does not exist", fallback_name().to_string_lossy());
                fail_waiting(key, &why, NO_LOG);
                continue;
            }
        }
        let started = BackgroundWorkerBuilder::new("audit_ext side channel writer")
            .set_type("audit_ext writer")
            .set_function("audit_ext_side_writer")
            .set_library("audit_ext")
            .set_argument(Some(pg_sys::Datum::from(key)))
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .load_dynamic();
        if started.is_err() {
            forget_writer(key);
            fail_waiting(
                key,
                "no background worker slot was free (raise max_worker_processes)",
                pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            );
        }
    }
}

fn forget_writer(key: u32) {
    let mut q = QUEUE.lock();
    if let Some(w) = q.writer(key) {
        w.state = W_NONE;
    }
}

/// The code of an event that had no log to go to (no audit_ext there, no such database):
/// what `audit_ext.level = on` accepts without a warning (README "Side channel").
pub const NO_LOG: pgrx::PgSqlErrorCode = pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT;

/// Ends every waiting event of `key` as refused with `code`, each mirrored to the server log.
fn fail_waiting(key: u32, why: &str, code: pgrx::PgSqlErrorCode) {
    let taken = take(key, queue::SLOTS);
    for (_, _, e) in &taken {
        match e {
            Some(e) => pgrx::log!("{}", e.log_line(why)),
            None => pgrx::log!("AUDIT: an event that could not be decoded (not recorded: {why})"),
        }
    }
    let mut latches = vec![];
    {
        let mut q = QUEUE.lock();
        for (i, t, _) in &taken {
            q.counters.unlogged += 1;
            latches.push(q.finish(*i, *t, Err((code as i32, why))));
        }
    }
    latches.into_iter().for_each(shmem::set_latch);
}

/// Whether the writer of `key` should hold its waiting events back a little longer (and
/// for how long): when none of them has a caller waiting, and the oldest is younger than
/// [`LINGER_US`], and the server is not shutting down.
fn linger(key: u32) -> Option<i64> {
    if stopping() {
        return None;
    }
    let now = backend::now();
    let q = QUEUE.lock();
    let mut oldest = None::<i64>;
    for s in q.slots.iter().filter(|s| s.state == READY && s.key == key) {
        if s.waiter != 0 {
            return None;
        }
        oldest = Some(oldest.map_or(s.since, |o| o.min(s.since)));
    }
    let age = now - oldest?;
    (age < LINGER_US).then_some(LINGER_US - age)
}

/// Whether the server asked this writer to stop (SIGTERM: a shutdown, or `pg_terminate_backend`,
/// or `DROP DATABASE ... WITH (FORCE)`).
fn stopping() -> bool {
    if BackgroundWorker::sigterm_received() {
        STOP.set(true);
    }
    STOP.get()
}

/// Takes up to `n` waiting events of `key` (they become TAKEN).
fn take(key: u32, n: usize) -> Vec<(usize, u64, Option<SideEvent>)> {
    let raw: Vec<(usize, u64, Vec<u8>)> = {
        let mut q = QUEUE.lock();
        let mut out = vec![];
        for (i, s) in q.slots.iter_mut().enumerate() {
            if out.len() == n {
                break;
            }
            if s.state == READY && s.key == key {
                s.state = TAKEN;
                out.push((i, s.ticket, s.data[..s.len as usize].to_vec()));
            }
        }
        out
    };
    raw.into_iter().map(|(i, t, d)| (i, t, SideEvent::decode(&d))).collect()
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn audit_ext_side_writer(arg: pg_sys::Datum) {
    let key = arg.value() as u32;
    KEY.set(key);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    session::on_exit(writer_exit);
    let connected_to = fallback_name();
    if key == FALLBACK {
        BackgroundWorker::connect_worker_to_spi(Some(&connected_to.to_string_lossy()), None);
    } else {
        BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(key)), None);
    }
    CONNECTED.set(true);
    // The writer runs as the bootstrap superuser, with the settings of its database (ALTER
    // DATABASE ... SET, which the database's owner may change): its own session values win
    // over those that would make every event fail, and the search path is pinned before any
    // name is resolved.
    for (name, value) in [
        (c"default_transaction_read_only", c"off"),
        (c"statement_timeout", c"0"),
        (c"search_path", c"pg_catalog, pg_temp"),
    ] {
        backend::set_setting(name, value, false);
    }
    {
        let mut q = QUEUE.lock();
        let me = queue::Writer {
            key,
            state: W_RUNNING,
            latch: shmem::my_latch(),
            pid: backend::pid(),
            since: backend::now(),
        };
        match q.writer(key) {
            Some(w) => *w = me,
            None => {
                if let Some(w) = q.writers.iter_mut().find(|w| w.state == W_NONE) {
                    *w = me;
                }
            }
        }
    }
    let mut idle_since = backend::now();
    let mut last_call = false;
    loop {
        reload_if_asked();
        if key == FALLBACK && fallback_name() != connected_to {
            // audit_ext.database names another database now: a new writer connects there
            let mut q = QUEUE.lock();
            if let Some(w) = q.writer(key) {
                w.state = W_NONE;
            }
            let launcher = q.launcher_latch;
            drop(q);
            shmem::set_latch(launcher);
            return;
        }
        if let Some(wait_us) = linger(key) {
            shmem::wait_latch((wait_us / 1000).max(1));
            continue;
        }
        let batch = take(key, BATCH);
        if !batch.is_empty() {
            if !write(key, batch) {
                return; // no audit_ext here: its events went on to the fallback database
            }
            idle_since = backend::now();
            continue;
        }
        // Stop when asked, after one last look a moment later (a fast shutdown signals the
        // backends and the writers at once, and the backends' logouts follow within moments),
        // or when idle long enough; either way only if nothing came in meanwhile.
        if stopping() && !last_call {
            last_call = true;
            shmem::wait_latch(200);
            continue;
        }
        if last_call || backend::now() - idle_since > IDLE_EXIT_US {
            let mut q = QUEUE.lock();
            if !q.slots.iter().any(|s| s.state == READY && s.key == key) {
                if let Some(w) = q.writer(key) {
                    w.state = W_NONE;
                }
                return;
            }
            continue;
        }
        shmem::wait_latch(1000);
    }
}

/// The writer's exit, also by an error: events it had taken go back to the queue, events of
/// a database it could not connect to go to the fallback database, the launcher is woken.
fn writer_exit() {
    let key = KEY.get();
    let connected = CONNECTED.get();
    let mut q = QUEUE.lock();
    for s in q.slots.iter_mut() {
        if s.key == key && (s.state == TAKEN || s.state == READY) {
            s.state = READY;
            if !connected && key != FALLBACK {
                s.key = FALLBACK; // the database is gone
            }
        }
    }
    if !connected && key == FALLBACK {
        q.fallback_problem = queue::FALLBACK_NO_DATABASE;
        q.fallback_since = backend::now();
    }
    let pid = backend::pid();
    for w in q.writers.iter_mut() {
        if w.key == key && w.state != W_NO_EXTENSION && (w.pid == pid || (!connected && w.state == W_STARTING)) {
            w.state = W_NONE;
        }
    }
    let launcher = q.launcher_latch;
    drop(q);
    shmem::set_latch(launcher);
}

/// What became of one event.
enum Outcome {
    Written(i64),
    Refused(i32, String),
}

/// Writes a batch in one transaction. False when the database has no audit_ext (the batch
/// went on to the fallback database, or to the server log if this is the fallback).
fn write(key: u32, batch: Vec<(usize, u64, Option<SideEvent>)>) -> bool {
    let waited = {
        let q = QUEUE.lock();
        batch.iter().any(|(i, t, _)| q.slots[*i].ticket == *t && q.slots[*i].waiter != 0)
    };
    let outcomes: Option<Vec<Outcome>> = BackgroundWorker::transaction(|| {
        // (search_path is pinned for the writer's session, when it connected.) A commit that
        // a caller waits for is durable before the caller is told; one nobody waits for need
        // not wait for its WAL flush (the window of "Durability" in the README grows by
        // wal_writer_delay).
        backend::set_setting(c"synchronous_commit", if waited { c"on" } else { c"off" }, true);
        if !backend::extension_installed(c"audit_ext") {
            return None;
        }
        Some(batch.iter().map(|(_, _, e)| write_one(e.as_ref())).collect())
    });
    let Some(outcomes) = outcomes else {
        no_extension(key, batch);
        return key == FALLBACK;
    };
    if key == FALLBACK {
        QUEUE.lock().fallback_problem = queue::FALLBACK_OK;
    }
    let mut latches = vec![];
    {
        let mut q = QUEUE.lock();
        for ((i, t, _), o) in batch.iter().zip(&outcomes) {
            let r = match o {
                Outcome::Written(id) => {
                    q.counters.written += 1;
                    Ok(*id)
                }
                Outcome::Refused(code, m) => {
                    q.counters.refused += 1;
                    Err((*code, m.as_str()))
                }
            };
            latches.push(q.finish(*i, *t, r));
        }
    }
    latches.into_iter().for_each(shmem::set_latch);
    for ((_, _, e), o) in batch.iter().zip(&outcomes) {
        if let (Outcome::Refused(_, m), Some(e)) = (o, e) {
            pgrx::log!("{}", e.log_line(&format!("the log refused it: {m}")));
        }
    }
    true
}

/// A database without audit_ext: its events go to the fallback database (or, here in the
/// fallback, only to the server log).
fn no_extension(key: u32, batch: Vec<(usize, u64, Option<SideEvent>)>) {
    if key == FALLBACK {
        QUEUE.lock().fallback_problem = queue::FALLBACK_NO_EXTENSION;
        let mut latches = vec![];
        let why = format!("database {:?} (audit_ext.database) has no audit_ext", fallback_name().to_string_lossy());
        for (_, _, e) in &batch {
            if let Some(e) = e {
                pgrx::log!("{}", e.log_line(&why));
            }
        }
        let mut q = QUEUE.lock();
        for (i, t, _) in &batch {
            q.counters.unlogged += 1;
            latches.push(q.finish(*i, *t, Err((NO_LOG as i32, &why))));
        }
        drop(q);
        latches.into_iter().for_each(shmem::set_latch);
        return;
    }
    let mut q = QUEUE.lock();
    for (i, t, _) in &batch {
        let s = &mut q.slots[*i];
        if s.ticket == *t && s.state == TAKEN {
            s.state = READY;
            s.key = FALLBACK;
        }
    }
    let pid = backend::pid();
    if let Some(w) = q.writers.iter_mut().find(|w| w.key == key && w.pid == pid) {
        w.state = W_NO_EXTENSION;
        w.since = backend::now();
    }
    let launcher = q.launcher_latch;
    drop(q);
    shmem::set_latch(launcher);
}

/// Writes one event as its session would have (src/append.rs, `Origin`), through the insert
/// path of `audit.record` as the extension's owner. Runs only audit_ext's own kept INSERT
/// with typed parameters (the rule of src/pg/elevate.rs); the values are parsed by the
/// built-in input functions of text, jsonb and inet.
fn write_one(e: Option<&SideEvent>) -> Outcome {
    let Some(e) = e else {
        return Outcome::Refused(pgrx::PgSqlErrorCode::ERRCODE_DATA_CORRUPTED as i32, "undecodable event".into());
    };
    let e = e.clone();
    match backend::try_subtransaction(move || {
        elevate::as_owner(|| {
            let cstring = |f: usize| e.get(f).map(|b| CString::new(b.to_vec()).unwrap_or_default());
            let values: Vec<Option<Value>> = (0..11)
                .map(|f| match f {
                    field::OLD | field::NEW | field::METADATA => cstring(f).map(|c| Value::parse_jsonb(&c)),
                    _ => e.get(f).map(Value::from_text),
                })
                .collect();
            let at = e.text(field::AT).and_then(|t| t.parse::<i64>().ok()).unwrap_or_else(backend::now);
            let client_ip = e
                .text(field::CLIENT_IP)
                .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
                .map(|ip| Value::parse_inet(&CString::new(ip).unwrap_or_default()).inet_varlena());
            let origin = Origin {
                session_user: e.text(field::SESSION_USER).unwrap_or_default(),
                client_ip,
                session_id: e.text(field::SESSION_ID).unwrap_or_default(),
                application: e.text(field::APPLICATION),
                context: std::array::from_fn(|i| cstring(field::CONTEXT + i)),
            };
            crate::append::with_origin(origin, || crate::record::insert(values, at))
        })
    }) {
        Ok(id) => Outcome::Written(id),
        Err(c) => Outcome::Refused(c.code as i32, c.message),
    }
}

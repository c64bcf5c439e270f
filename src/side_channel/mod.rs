//! The side channel: events that the acting transaction cannot write itself — a login that
//! has no transaction yet, a statement that is failing, a transaction that will roll back
//! (`audit.record_autonomous`) — are handed over through shared memory to background workers
//! that write them as ordinary chained events of `audit.events` (README "Side channel").
//!
//! - [`queue`]: the slots in shared memory and the table of writers;
//! - [`worker`]: the launcher (one, static) and the writers (one per database with events,
//!   started on demand, gone after 4 s idle);
//! - [`sessions`]: logins, logouts and denied statements (the authentication hook, the
//!   error-report hook, the exit callback);
//! - [`autonomous`]: the SQL function `audit.record_autonomous`.
//!
//! Durability: a caller that is told its event was recorded (a login that completes,
//! `record_autonomous` that returns its id) waits until the writer's transaction committed
//! (synchronous_commit on), so a `kill -9` of the postmaster right after loses nothing. Events
//! nobody waits for (logouts, denied statements, failed logins) sit in shared memory until a
//! writer commits them and its WAL is flushed, within about a quarter of a second (the 50 ms
//! linger of worker.rs, then `wal_writer_delay`): a crash of the server in that window
//! loses them (README "Side channel", durability).

pub mod autonomous;
pub mod queue;
pub mod sessions;
pub mod worker;

use crate::gucs::{self, Level};
use crate::pg::{backend, shmem};
use pgrx::prelude::*;
use queue::{DONE, FAILED, FREE, QUEUE, READY, TAKEN};

/// The fields of an event handed over, in their order in a slot. The first eleven are
/// `audit.record`'s arguments; then when it happened, and the session it comes from
/// (src/append.rs, `Origin`).
pub mod field {
    pub const ACTION: usize = 0;
    pub const OBJECT_TYPE: usize = 1;
    pub const OBJECT_ID: usize = 2;
    pub const OBJECT_NAME: usize = 3;
    pub const OLD: usize = 4;
    pub const NEW: usize = 5;
    pub const STATUS: usize = 6;
    pub const SEVERITY: usize = 7;
    pub const MODULE: usize = 8;
    pub const MESSAGE: usize = 9;
    pub const METADATA: usize = 10;
    /// PostgreSQL-epoch microseconds, as decimal text.
    pub const AT: usize = 11;
    pub const SESSION_USER: usize = 12;
    /// The client address as text (an IP address; anything else is left out).
    pub const CLIENT_IP: usize = 13;
    pub const SESSION_ID: usize = 14;
    pub const APPLICATION: usize = 15;
    /// `audit.set_context`'s actor, actor_ip, session_id, application, metadata.
    pub const CONTEXT: usize = 16;
    pub const COUNT: usize = 21;
}

/// One event handed over: every field as text, or NULL.
#[derive(Clone, Debug)]
pub struct SideEvent {
    pub fields: Vec<Option<Vec<u8>>>,
}

impl SideEvent {
    pub fn new() -> SideEvent {
        SideEvent { fields: vec![None; field::COUNT] }
    }

    pub fn set(&mut self, f: usize, v: impl Into<Vec<u8>>) -> &mut Self {
        self.fields[f] = Some(v.into());
        self
    }

    pub fn get(&self, f: usize) -> Option<&[u8]> {
        self.fields[f].as_deref()
    }

    pub fn text(&self, f: usize) -> Option<String> {
        self.get(f).map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// Length-prefixed fields (u32::MAX for NULL).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in &self.fields {
            match f {
                None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
                Some(b) => {
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
        out
    }

    pub fn decode(mut b: &[u8]) -> Option<SideEvent> {
        let mut fields = Vec::with_capacity(field::COUNT);
        for _ in 0..field::COUNT {
            let (len, rest) = b.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len);
            b = rest;
            if len == u32::MAX {
                fields.push(None);
            } else {
                let (v, rest) = b.split_at_checked(len as usize)?;
                fields.push(Some(v.to_vec()));
                b = rest;
            }
        }
        Some(SideEvent { fields })
    }

    /// The event as one server-log line, for when it cannot be kept in any log.
    pub fn log_line(&self, why: &str) -> String {
        let q = |f: usize| self.text(f).map_or("NULL".into(), |v| format!("{v:?}"));
        format!(
            "AUDIT: action={} module={} actor={} status={} object_type={} object_id={} message={} metadata={} (not recorded: {why})",
            q(field::ACTION),
            q(field::MODULE),
            self.text(field::SESSION_USER).map_or("NULL".into(), |v| format!("{v:?}")),
            q(field::STATUS),
            q(field::OBJECT_TYPE),
            q(field::OBJECT_ID),
            q(field::MESSAGE),
            q(field::METADATA),
        )
    }
}

impl Default for SideEvent {
    fn default() -> Self {
        SideEvent::new()
    }
}

/// Why the channel did not take an event, or what became of it.
#[derive(thiserror::Error, Debug)]
pub enum SideError {
    #[error("the audit side channel is not running (audit_ext is not in shared_preload_libraries)")]
    NotPreloaded,
    #[error("the audit side channel cannot write on a hot standby")]
    Standby,
    #[error("the audit side channel is full ({} events waiting)", queue::SLOTS)]
    Full,
    #[error("the event is {0} bytes, more than a side-channel slot holds ({max} bytes)", max = queue::SLOT_DATA)]
    TooLarge(usize),
    #[error("the audit side channel did not write the event within {0} seconds")]
    Timeout(u64),
    #[error("the event was not recorded: {1}")]
    Refused(i32, String),
}

impl crate::error::SqlError for SideError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        match self {
            SideError::NotPreloaded => pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            SideError::Standby => pgrx::PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            SideError::Full | SideError::Timeout(_) => pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            SideError::TooLarge(_) => pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            SideError::Refused(0, _) => pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            SideError::Refused(code, _) => pgrx::PgSqlErrorCode::from(*code),
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            SideError::NotPreloaded => "Add audit_ext to shared_preload_libraries in postgresql.conf and restart the server.".into(),
            SideError::Standby => "Record on the primary.".into(),
            SideError::Full | SideError::Timeout(_) => "Check audit.status() (row side_channel) and the server log for the writers' errors; the event may still be written. Retry.".into(),
            SideError::TooLarge(_) => "Record a smaller event (store large documents elsewhere and record a reference), or use audit.record.".into(),
            SideError::Refused(..) => "The log refused the event as audit.record would: fix the arguments, or see audit.status() for where events without a log go.".into(),
        })
    }
}

/// How long a caller waits for its event to be committed.
pub const WAIT_SECONDS: u64 = 10;

/// A slot handed over: (index, ticket).
#[derive(Clone, Copy)]
pub struct Ticket(usize, u64);

/// Whether the channel exists in this server (the library was preloaded).
pub fn available() -> bool {
    QUEUE.ready()
}

/// Hands `event` over to the writer of `key` (a database oid, or the fallback database).
/// With `wait`, the caller will [`wait`] for it (its latch is set when the event is written);
/// it then also waits, up to [`WAIT_SECONDS`], for a free slot, and may raise a pending
/// interrupt. Without `wait` it never raises: the error-report hook and the exit callback
/// call it so.
pub fn hand_over(key: u32, event: &SideEvent, wait: bool) -> Result<Ticket, SideError> {
    if !available() {
        return Err(SideError::NotPreloaded);
    }
    if backend::in_recovery() {
        return Err(SideError::Standby);
    }
    let data = event.encode();
    if data.len() > queue::SLOT_DATA {
        return Err(SideError::TooLarge(data.len()));
    }
    let waiter = if wait { shmem::my_latch() } else { 0 };
    let deadline = backend::now() + (WAIT_SECONDS as i64) * 1_000_000;
    loop {
        let (put, latch) = {
            let mut q = QUEUE.lock();
            let put = q.put(key, &data, waiter, backend::now());
            if put.is_none() && !wait {
                q.counters.dropped += 1;
            }
            let latch = q.latch_for(key);
            (put, latch)
        };
        shmem::set_latch(latch);
        if let Some((i, ticket)) = put {
            return Ok(Ticket(i, ticket));
        }
        if !wait || backend::now() > deadline {
            if wait {
                QUEUE.lock().counters.dropped += 1;
            }
            return Err(SideError::Full);
        }
        shmem::wait_latch(10);
        pgrx::check_for_interrupts!();
    }
}

/// Waits until the event of `ticket` is written (its id) or refused, for at most
/// [`WAIT_SECONDS`]. Interrupts (a cancel, a terminate) end the wait with their error; the
/// event may still be written.
pub fn wait(ticket: Ticket) -> Result<i64, SideError> {
    /// Leaves the slot to its writer when the wait ends without the result (a timeout, an
    /// interrupt unwinding): it frees the slot when done.
    struct Abandon(Ticket, bool);
    impl Drop for Abandon {
        fn drop(&mut self) {
            if self.1 {
                return;
            }
            let Ticket(i, t) = self.0;
            let mut q = QUEUE.lock();
            let s = &mut q.slots[i];
            if s.ticket == t {
                if s.state == DONE || s.state == FAILED {
                    s.state = FREE;
                } else {
                    s.waiter = 0;
                }
            }
        }
    }
    let mut guard = Abandon(ticket, false);
    let Ticket(i, t) = ticket;
    let deadline = backend::now() + (WAIT_SECONDS as i64) * 1_000_000;
    loop {
        {
            let mut q = QUEUE.lock();
            let s = &mut q.slots[i];
            if s.ticket == t {
                match s.state {
                    DONE => {
                        let id = s.id;
                        s.state = FREE;
                        guard.1 = true;
                        return Ok(id);
                    }
                    FAILED => {
                        let msg = String::from_utf8_lossy(&s.reply[..s.reply_len as usize]).into_owned();
                        let code = s.code;
                        s.state = FREE;
                        guard.1 = true;
                        return Err(SideError::Refused(code, msg));
                    }
                    READY | TAKEN => {}
                    _ => {
                        guard.1 = true;
                        return Err(SideError::Refused(0, "the event's slot was lost".into()));
                    }
                }
            }
            let key = s.key;
            let latch = q.latch_for(key);
            // a writer that exited meanwhile: the launcher starts another
            if latch == q.launcher_latch {
                shmem::set_latch(latch);
            }
        }
        if backend::now() > deadline {
            return Err(SideError::Timeout(WAIT_SECONDS));
        }
        shmem::wait_latch(100);
        pgrx::check_for_interrupts!();
    }
}

/// Counts an event that was handed over nowhere (level `on`: best effort).
pub fn count_dropped() {
    if available() {
        QUEUE.lock().counters.dropped += 1;
    }
}

/// Counts an event that only reached the server log.
pub fn count_unlogged() {
    if available() {
        QUEUE.lock().counters.unlogged += 1;
    }
}

/// The `side_channel` row of `audit.status()`: (active, detail).
pub fn status() -> (bool, String) {
    if !available() {
        return (
            false,
            "inactive: add audit_ext to shared_preload_libraries and restart to record logins, logouts, denied statements and audit.record_autonomous".into(),
        );
    }
    let level = gucs::LEVEL.get();
    let (c, waiting, writers, launcher, fallback) = {
        let q = QUEUE.lock();
        let waiting = q.slots.iter().filter(|s| s.state == READY || s.state == TAKEN).count();
        let writers = q.writers.iter().filter(|w| w.state == queue::W_RUNNING).count();
        let c = &q.counters;
        (
            (c.handed, c.written, c.dropped, c.refused, c.unlogged),
            waiting,
            writers,
            q.launcher_pid != 0,
            q.fallback_problem,
        )
    };
    let fallback_db = gucs::DATABASE.get().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
    let fallback = match fallback {
        queue::FALLBACK_NO_DATABASE => {
            format!("; database {fallback_db:?} (audit_ext.database) does not exist: events about other databases only reach the server log")
        }
        queue::FALLBACK_NO_EXTENSION => {
            format!("; database {fallback_db:?} (audit_ext.database) lacks audit_ext: events about other databases only reach the server log")
        }
        _ => format!("; events about databases without audit_ext go to {fallback_db:?}"),
    };
    let level_name = match level {
        Level::Off => "off",
        Level::On => "on",
        Level::Required => "required",
    };
    (
        level != Level::Off && launcher,
        format!(
            "level {level_name}; launcher {}; {writers} writer(s); {waiting} event(s) waiting; {} handed over, {} written, {} dropped, {} refused, {} only in the server log{fallback}",
            if launcher { "running" } else { "not running" },
            c.0,
            c.1,
            c.2,
            c.3,
            c.4,
        ),
    )
}

/// `audit_internal._side_channel_attach()`, run by `CREATE EXTENSION audit_ext` (and the
/// update script): a writer that found this database without audit_ext a moment ago sent its
/// events to `audit_ext.database` and would go on doing so for some seconds; from now on they
/// come here again. True when something was to be reset.
#[pg_extern(volatile, parallel_unsafe, schema = "audit_internal", name = "_side_channel_attach")]
#[search_path(pg_catalog, pg_temp)]
fn side_channel_attach() -> bool {
    if !available() {
        return false;
    }
    let me = u32::from(backend::database_id());
    let mut q = QUEUE.lock();
    let mut reset = false;
    for w in q.writers.iter_mut() {
        if w.key == me && w.state == queue::W_NO_EXTENSION {
            w.state = queue::W_NONE;
            reset = true;
        }
    }
    reset
}

/// Sets the side channel up (from _PG_init): shared memory, the launcher, the hooks. Only
/// when the library is preloaded.
pub fn init() {
    if !queue::install() {
        return;
    }
    worker::register_launcher();
    sessions::install();
}

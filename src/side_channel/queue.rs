//! The side channel's queue in shared memory: fixed slots that backends fill and writers
//! empty, and the table of writers (one per database at a time).
//!
//! A slot goes FREE → READY (a backend handed an event over) → TAKEN (a writer is inserting
//! it) → DONE or FAILED (committed, or refused) → FREE (the waiting backend read the result;
//! at once when nobody waits). Every change happens under the one lock; none of the code
//! below raises while it is held.

use crate::pg::shmem::{self, Region};

/// Slots in the queue: events handed over and not yet written.
pub const SLOTS: usize = 128;
/// Bytes of an encoded event a slot holds (README "Side channel": events up to 32 kB).
pub const SLOT_DATA: usize = 32 * 1024 - 384;
/// Writers at once (one per database with events in the queue).
pub const WRITERS: usize = 16;

pub const FREE: u32 = 0;
pub const READY: u32 = 1;
pub const TAKEN: u32 = 2;
pub const DONE: u32 = 3;
pub const FAILED: u32 = 4;

/// Writer states.
pub const W_NONE: u32 = 0;
pub const W_STARTING: u32 = 1;
pub const W_RUNNING: u32 = 2;
/// The database has no audit_ext: its events go to `audit_ext.database` for a while.
pub const W_NO_EXTENSION: u32 = 3;

/// Forwarder workers at once (one per database with forwarders, src/forward/worker.rs).
pub const FORWARDERS: usize = 16;

/// Forwarder worker states.
pub const F_NONE: u32 = 0;
/// Asked for: the launcher starts it (not before `since`).
pub const F_WANTED: u32 = 1;
pub const F_STARTING: u32 = 2;
pub const F_RUNNING: u32 = 3;

/// The key of the writer for `audit_ext.database` (other keys are database oids).
pub const FALLBACK: u32 = 0;

#[repr(C)]
pub struct Slot {
    pub state: u32,
    /// Which writer writes it: a database oid, or FALLBACK.
    pub key: u32,
    pub ticket: u64,
    /// When it was handed over (PostgreSQL-epoch microseconds).
    pub since: i64,
    /// The latch of the backend waiting for the result, 0 when nobody waits.
    pub waiter: usize,
    pub id: i64,
    /// On FAILED: the error's SQLSTATE (PostgreSQL's packed code) and message.
    pub code: i32,
    pub reply_len: u32,
    pub reply: [u8; 320],
    pub len: u32,
    pub data: [u8; SLOT_DATA],
}

#[repr(C)]
pub struct Writer {
    pub key: u32,
    pub state: u32,
    pub latch: usize,
    pub pid: i32,
    /// When the state was set (PostgreSQL-epoch microseconds).
    pub since: i64,
}

/// A database's forwarder worker.
#[repr(C)]
pub struct Forwarder {
    pub db: u32,
    pub state: u32,
    /// Bumped by each commit that changed the database's forwarders (the worker reads them
    /// again, and does not exit while it has a change it has not read).
    pub requests: u32,
    pub pid: i32,
    pub latch: usize,
    /// When the state was set; for F_WANTED, when the launcher may start it.
    pub since: i64,
}

/// Counters since the server started, for `audit.status()`.
#[repr(C)]
pub struct Counters {
    /// Events handed over.
    pub handed: u64,
    /// Events written to a log.
    pub written: u64,
    /// Events the channel could not take (full, not running) and were lost.
    pub dropped: u64,
    /// Events refused by the log (validation, a damaged chain head): server log only.
    pub refused: u64,
    /// Events with no log to go to (`audit_ext.database` missing or without audit_ext):
    /// server log only.
    pub unlogged: u64,
}

#[repr(C)]
pub struct Queue {
    pub launcher_latch: usize,
    pub launcher_pid: i32,
    pub next_ticket: u64,
    pub counters: Counters,
    /// Why the fallback database cannot take events now (0: it can, as far as is known).
    pub fallback_problem: u32,
    /// When the problem was seen (PostgreSQL-epoch microseconds).
    pub fallback_since: i64,
    pub writers: [Writer; WRITERS],
    pub forwarders: [Forwarder; FORWARDERS],
    /// Whether the scout that finds the databases with forwarders ran since the server
    /// started (0: not yet; 1: started; 2: done).
    pub scout: u32,
    pub slots: [Slot; SLOTS],
}

pub const FALLBACK_OK: u32 = 0;
pub const FALLBACK_NO_DATABASE: u32 = 1;
pub const FALLBACK_NO_EXTENSION: u32 = 2;

crate::zeroed_struct!(Slot: u32, u32, u64, i64, usize, i64, i32, u32, [u8; 320], u32, [u8; SLOT_DATA]);
crate::zeroed_struct!(Writer: u32, u32, usize, i32, i64);
crate::zeroed_struct!(Forwarder: u32, u32, u32, i32, usize, i64);
crate::zeroed_struct!(Counters: u64, u64, u64, u64, u64);
crate::zeroed_struct!(Queue: usize, i32, u64, Counters, u32, i64, [Writer; WRITERS], [Forwarder; FORWARDERS], u32, [Slot; SLOTS]);

/// All zeroes is an empty queue (every slot FREE, no writer).
pub static QUEUE: Region<Queue> = Region::new(c"audit_ext side channel");

/// Asks for the queue's shared memory (from _PG_init, while preloading).
pub fn install() -> bool {
    shmem::install(|| QUEUE.request(), || QUEUE.attach())
}

impl Queue {
    pub fn writer(&mut self, key: u32) -> Option<&mut Writer> {
        self.writers.iter_mut().find(|w| w.state != W_NONE && w.key == key)
    }

    /// The latch to set so that the events of `key` get written: its writer's when it runs,
    /// else the launcher's.
    pub fn latch_for(&mut self, key: u32) -> usize {
        let launcher = self.launcher_latch;
        match self.writer(key) {
            Some(w) if w.state == W_RUNNING && w.latch != 0 => w.latch,
            _ => launcher,
        }
    }

    /// Puts one encoded event in a free slot: (slot, ticket), or None when all are taken.
    pub fn put(&mut self, key: u32, data: &[u8], waiter: usize, now: i64) -> Option<(usize, u64)> {
        let i = self.slots.iter().position(|s| s.state == FREE)?;
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let s = &mut self.slots[i];
        s.state = READY;
        s.key = key;
        s.ticket = ticket;
        s.since = now;
        s.waiter = waiter;
        s.id = 0;
        s.code = 0;
        s.reply_len = 0;
        s.len = data.len() as u32;
        s.data[..data.len()].copy_from_slice(data);
        self.counters.handed += 1;
        Some((i, ticket))
    }

    /// Ends a slot's event: DONE with its id, or FAILED with an error; freed at once when
    /// nobody waits for it. Returns the waiter's latch to set.
    pub fn finish(&mut self, i: usize, ticket: u64, result: Result<i64, (i32, &str)>) -> usize {
        let s = &mut self.slots[i];
        if s.ticket != ticket || s.state != TAKEN {
            return 0;
        }
        match result {
            Ok(id) => {
                s.id = id;
                s.state = DONE;
            }
            Err((code, message)) => {
                s.code = code;
                let m = message.as_bytes();
                let n = m.len().min(s.reply.len());
                s.reply[..n].copy_from_slice(&m[..n]);
                s.reply_len = n as u32;
                s.state = FAILED;
            }
        }
        let waiter = s.waiter;
        if waiter == 0 {
            s.state = FREE;
        }
        waiter
    }
}

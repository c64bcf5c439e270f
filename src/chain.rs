//! Chain state: which chain this transaction appends to and the hash of its tail.
//!
//! The design rests on two measurements. An advisory lock followed by reading the head with
//! the *transaction* snapshot forks the chain under REPEATABLE READ (the snapshot predates the
//! previous holder's commit), so the head is read with a fresh `GetLatestSnapshot()` after the
//! lock is granted: locks are released only after the holder's commit is visible, so that read
//! always sees the true tail, at every isolation level. And a head row updated once per event
//! turns quadratic in bulk (1 s for 5,000 events, 277 s for 100,000), so the tail lives in
//! backend memory for the rest of the transaction: one head read per transaction, none per
//! event. Savepoints push the state and a rollback to one pops it, so rolled-back events
//! leave no gap; commit and abort clear it.
//!
//! Each retention class has its own chains (chain = class × 1000 + n, n < `audit_ext.chains`),
//! so that dropping a class's old partitions removes whole stretches of its own chains and
//! never punches holes into another class's: a transaction writing events of two classes
//! holds one chain of each.

use crate::error::raise;
use crate::gucs;
use crate::pg::callbacks::{self, SubXact, XactEnd};
use crate::pg::spi::{self, Plan};
use crate::pg::value::Value;
use crate::pg::{backend, elevate, locks};
use pgrx::pg_sys;
use std::cell::RefCell;

/// Chains of retention class k are k × CLASS_STRIDE + n.
pub const CLASS_STRIDE: i32 = 1000;
/// n of the chain that audit_ext's retention functions record on (sql/retention/): never
/// one a writer holds, so that they cannot deadlock with writers (measured: apply_retention
/// holding a writer's chain while waiting for the table lock that writer held).
pub const MAINTENANCE_CHAIN: i32 = 999;

/// How long a writer waits when every chain of its class is held, before it gives up with
/// 55P03. With chains beyond `audit_ext.chains` taken when those are busy, this happens only
/// when 999 transactions of one class hold a chain each.
const CHAIN_WAIT_US: i64 = 10_000_000;

#[derive(Clone, Copy, Debug)]
pub struct Tail {
    pub chain: i32,
    pub seq: i64,
    pub hash: Option<[u8; 32]>,
}

#[derive(Default)]
struct XactState {
    /// One tail per retention class written in this transaction (rarely more than one).
    tails: Vec<(i32, Tail)>,
    saved: Vec<(pg_sys::SubTransactionId, Vec<(i32, Tail)>)>,
}

thread_local! {
    static STATE: RefCell<XactState> = RefCell::new(XactState::default());
    static HEAD_PLAN: RefCell<Option<Plan>> = const { RefCell::new(None) };
}

/// The tail this transaction appends after in retention class `class`, taking a chain of
/// that class (lock + head read) on first use.
pub fn tail(class: i32) -> Tail {
    if let Some(t) = STATE.with(|s| s.borrow().tails.iter().find(|(c, _)| *c == class).map(|(_, t)| *t)) {
        return t;
    }
    let t = take_chain(class);
    STATE.with(|s| s.borrow_mut().tails.push((class, t)));
    t
}

/// Records that an event with `seq` and `hash` was appended after the class's current tail.
pub fn advance(class: i32, seq: i64, hash: [u8; 32]) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let slot = s.tails.iter_mut().find(|(c, _)| *c == class).expect("advance() without tail()");
        slot.1 = Tail { chain: slot.1.chain, seq, hash: Some(hash) };
    });
}

/// Tries every chain starting from one picked by backend pid, so concurrent writers spread
/// out. When all `audit_ext.chains` are held (by busy writers, or by sessions idle in a
/// transaction), it takes one of the chains beyond them instead of waiting, so that no number
/// of open transactions a role can keep makes other writers queue; only when all 999 chains
/// of the class are held does it wait, for at most [`CHAIN_WAIT_US`], and then fails with
/// 55P03. A transaction holds one chain lock per class it writes.
fn take_chain(class: i32) -> Tail {
    let base = class.saturating_mul(CLASS_STRIDE);
    if crate::maintenance::active() {
        // audit_ext's own retention and partition functions hold strong table locks that
        // writers wait for while holding their chain: they record on a chain of their own.
        let chain = base + MAINTENANCE_CHAIN;
        if !locks::chain(chain, true) {
            raise(ChainError::Busy { class });
        }
        let (seq, hash) = read_head(chain, class);
        return Tail { chain, seq, hash };
    }
    let n = gucs::CHAINS.get().clamp(1, MAINTENANCE_CHAIN);
    let first = (backend::pid() as u32 % n as u32) as i32;
    let chain = (0..n)
        .map(|i| base + (first + i) % n)
        .chain((n..MAINTENANCE_CHAIN).map(|i| base + i))
        .find(|&c| locks::chain(c, false))
        .unwrap_or_else(|| {
            let deadline = backend::now() + CHAIN_WAIT_US;
            loop {
                if let Some(c) = (0..n).map(|i| base + (first + i) % n).find(|&c| locks::chain(c, false)) {
                    break c;
                }
                if backend::now() > deadline {
                    raise(ChainError::Busy { class });
                }
                backend::sleep_us(10_000);
            }
        });
    let (seq, hash) = read_head(chain, class);
    Tail { chain, seq, hash }
}

#[derive(thiserror::Error, Debug)]
pub enum ChainError {
    #[error("every hash chain of retention class {class} is held by another open transaction")]
    Busy { class: i32 },
    #[error("the stored hash {what} of chain {chain} is {len} bytes long, not 32: the log was edited")]
    BadHead { chain: i32, what: &'static str, len: usize },
}

impl crate::error::SqlError for ChainError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        match self {
            ChainError::Busy { .. } => pgrx::PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            ChainError::BadHead { .. } => pgrx::PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            ChainError::Busy { .. } => "Commit or roll back the transactions that recorded events and stay open (see pg_stat_activity, state 'idle in transaction'), then retry.".into(),
            ChainError::BadHead { .. } => "Run audit.verify() to see what was changed; new events cannot be chained to a damaged head.".into(),
        })
    }
}

/// Last (seq, hash) of `chain` as of now, not as of the transaction snapshot: the last event
/// left, or the retention anchor when retention dropped the chain's newest events (its next
/// event then links to the dropped one, as if nothing had been dropped). Read as the
/// extension's owner: row level security (sql/visibility.sql) would show a role that may
/// INSERT but is only a viewer its own events, and its next event would fork the chain.
fn read_head(chain: i32, class: i32) -> (i64, Option<[u8; 32]>) {
    elevate::as_owner(|| read_head_pinned(chain, class))
}

fn read_head_pinned(chain: i32, class: i32) -> (i64, Option<[u8; 32]>) {
    let spi = spi::Connection::open();
    let plan = HEAD_PLAN.with(|p| {
        p.borrow_mut()
            .get_or_insert_with(|| {
                spi.keep_plan(
                    c"SELECT seq, hash FROM ( \
                    (SELECT e.seq, e.hash FROM audit.events e \
                     WHERE e.retention_class = $2 AND e.chain = $1 ORDER BY e.seq DESC LIMIT 1) \
                    UNION ALL \
                    (SELECT a.to_seq, a.to_hash FROM audit.retention_anchors a \
                     WHERE a.chain = $1 ORDER BY a.to_seq DESC LIMIT 1)) h \
                  ORDER BY seq DESC LIMIT 1",
                    &[pg_sys::INT4OID, pg_sys::INT4OID],
                )
            })
            .clone()
    });
    let rc = spi.execute_latest(&plan, &[Some(Value::from_int4(chain)), Some(Value::from_int4(class))], 1);
    if rc != pg_sys::SPI_OK_SELECT as i32 {
        pgrx::error!("audit_ext: reading the chain head failed ({rc})");
    }
    let (Some(seq), Some(hash)) = (spi.cell(0, 1), spi.cell(0, 2)) else {
        return (0, None);
    };
    let b = hash.bytes();
    let h: [u8; 32] = b.try_into().unwrap_or_else(|_| {
        raise(ChainError::BadHead { chain, what: "at its head (an event or a retention anchor)", len: b.len() })
    });
    (seq.int8(), Some(h))
}

fn transaction_end(_: XactEnd) {
    STATE.with(|s| *s.borrow_mut() = XactState::default());
    crate::maintenance::xact_end();
}

fn subtransaction(event: SubXact, my_subid: pg_sys::SubTransactionId) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        match event {
            SubXact::Start => {
                let t = s.tails.clone();
                s.saved.push((my_subid, t));
            }
            SubXact::Commit if s.saved.last().is_some_and(|(id, _)| *id == my_subid) => {
                s.saved.pop();
            }
            SubXact::Abort => {
                crate::maintenance::subxact_abort(my_subid);
                if let Some(pos) = s.saved.iter().rposition(|(id, _)| *id == my_subid) {
                    let t = std::mem::take(&mut s.saved[pos].1);
                    s.saved.truncate(pos);
                    s.tails = t;
                }
            }
            _ => {}
        }
    });
}

pub fn init() {
    callbacks::on_transaction_end(transaction_end);
    callbacks::on_subtransaction(subtransaction);
}

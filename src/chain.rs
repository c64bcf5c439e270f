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
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::c_void;

/// Chains of retention class k are k × CLASS_STRIDE + n.
pub const CLASS_STRIDE: i32 = 1000;
/// n of the chain that audit_ext's retention functions record on (sql/retention.sql): never
/// one a writer holds, so that they cannot deadlock with writers (measured: apply_retention
/// holding a writer's chain while waiting for the table lock that writer held).
pub const MAINTENANCE_CHAIN: i32 = 999;

/// The chain and maintenance locks: advisory lock tags that no SQL function can produce, so
/// that no role (PUBLIC included) can take one and make writers wait. `pg_advisory_*` always
/// set the tag's fourth field to 1 (one bigint key) or 2 (two integer keys); ours is 3. Visible
/// in `pg_locks` as locktype advisory, classid 1096107092 ('AUDT'), objid = chain (4294967295
/// for maintenance), objsubid 3.
pub const LOCK_KEY: i32 = 0x4155_4454;
const LOCK_FIELD4: u16 = 3;
const ALERT_FIELD4: u16 = 4;
/// objid of the maintenance lock: one retention or partition function at a time.
const MAINTENANCE_LOCK: u32 = u32::MAX;
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
    /// Set by `audit._begin_maintenance()` for the rest of the transaction (or until the
    /// subtransaction it began in aborts): the subtransaction id it began in.
    static MAINTENANCE: std::cell::Cell<Option<pg_sys::SubTransactionId>> = const { std::cell::Cell::new(None) };
    static HEAD_PLAN: RefCell<Option<pg_sys::SPIPlanPtr>> = const { RefCell::new(None) };
}

/// The tail this transaction appends after in retention class `class`, taking a chain of
/// that class (lock + head read) on first use.
pub fn tail(class: i32) -> Tail {
    if let Some(t) = STATE.with(|s| s.borrow().tails.iter().find(|(c, _)| *c == class).map(|(_, t)| *t)) {
        return t;
    }
    let t = unsafe { take_chain(class) };
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
unsafe fn take_chain(class: i32) -> Tail {
    let base = class.saturating_mul(CLASS_STRIDE);
    if in_maintenance() {
        // audit_ext's own retention and partition functions hold strong table locks that
        // writers wait for while holding their chain: they record on a chain of their own.
        let chain = base + MAINTENANCE_CHAIN;
        if !lock(chain as u32, true) {
            raise(ChainError::Busy { class });
        }
        let (seq, hash) = read_head(chain, class);
        return Tail { chain, seq, hash };
    }
    let n = gucs::CHAINS.get().clamp(1, MAINTENANCE_CHAIN);
    let first = (pg_sys::MyProcPid as u32 % n as u32) as i32;
    let chain = (0..n)
        .map(|i| base + (first + i) % n)
        .chain((n..MAINTENANCE_CHAIN).map(|i| base + i))
        .find(|&c| lock(c as u32, false))
        .unwrap_or_else(|| {
            let deadline = pg_sys::GetCurrentTimestamp() + CHAIN_WAIT_US;
            loop {
                if let Some(c) = (0..n).map(|i| base + (first + i) % n).find(|&c| lock(c as u32, false)) {
                    break c;
                }
                if pg_sys::GetCurrentTimestamp() > deadline {
                    raise(ChainError::Busy { class });
                }
                pg_sys::pg_usleep(10_000);
                pgrx::check_for_interrupts!();
            }
        });
    let (seq, hash) = read_head(chain, class);
    Tail { chain, seq, hash }
}

/// Takes, without waiting, the transaction-level lock of one alert rule and group (objid: a
/// hash of both; objsubid 4 in pg_locks, again a tag no SQL function produces). False when
/// another open transaction holds it: that one is firing the rule for the group.
pub unsafe fn try_alert_lock(objid: u32) -> bool {
    let mut tag = tag(objid);
    tag.locktag_field4 = ALERT_FIELD4;
    pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, true)
        != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

unsafe fn tag(objid: u32) -> pg_sys::LOCKTAG {
    let mut tag: pg_sys::LOCKTAG = std::mem::zeroed();
    tag.locktag_field1 = pg_sys::MyDatabaseId.to_u32();
    tag.locktag_field2 = LOCK_KEY as u32;
    tag.locktag_field3 = objid;
    tag.locktag_field4 = LOCK_FIELD4;
    tag.locktag_type = pg_sys::LockTagType::LOCKTAG_ADVISORY as u8;
    tag.locktag_lockmethodid = 2; // USER_LOCKMETHOD
    tag
}

/// Takes the transaction-level lock `objid` (a chain, or [`MAINTENANCE_LOCK`]). When `wait`,
/// waits as any lock does (lock_timeout and statement_timeout apply).
unsafe fn lock(objid: u32, wait: bool) -> bool {
    let tag = tag(objid);
    let r = pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, !wait);
    r != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

#[derive(thiserror::Error, Debug)]
pub enum ChainError {
    #[error("every hash chain of retention class {class} is held by another open transaction")]
    Busy { class: i32 },
    #[error("the stored hash {what} of chain {chain} is {len} bytes long, not 32: the log was edited")]
    BadHead { chain: i32, what: &'static str, len: usize },
    #[error("audit._begin_maintenance() is internal to audit_ext")]
    NotInternal,
}

impl crate::error::SqlError for ChainError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        match self {
            ChainError::Busy { .. } => pgrx::PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            ChainError::BadHead { .. } => pgrx::PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            ChainError::NotInternal => pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            ChainError::Busy { .. } => "Commit or roll back the transactions that recorded events and stay open (see pg_stat_activity, state 'idle in transaction'), then retry.".into(),
            ChainError::BadHead { .. } => "Run audit.verify() to see what was changed; new events cannot be chained to a damaged head.".into(),
            ChainError::NotInternal => "audit_ext's own retention and partition functions enter maintenance; call those (audit.apply_retention(), audit.ensure_partitions(), ...).".into(),
        })
    }
}

/// Whether this transaction is in audit_ext's maintenance (retention, partition upkeep): the
/// one state in which the guards let partitions be created, attached, dropped and events be
/// moved out of the default partition. Not a setting: only [`begin_maintenance`] enters it.
pub fn in_maintenance() -> bool {
    MAINTENANCE.get().is_some()
}

/// `audit._begin_maintenance()`: one maintenance at a time (waits for the maintenance lock,
/// as bounded by lock_timeout), and the guards stand aside for audit_ext's own partition work
/// until the transaction ends or `audit._end_maintenance()`. Only from inside a SECURITY
/// DEFINER function run by the extension's owner (audit_ext's retention and partition
/// functions): a session calling it directly, a superuser's included, is refused.
#[pg_extern(volatile, parallel_unsafe, name = "_begin_maintenance")]
#[search_path(pg_catalog, pg_temp)]
fn begin_maintenance() {
    unsafe {
        let (mut user, mut sec) = (pg_sys::InvalidOid, 0);
        pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
        if sec & pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 == 0 || user != crate::elevate::extension_owner() {
            raise(ChainError::NotInternal);
        }
        lock(MAINTENANCE_LOCK, true);
        if MAINTENANCE.get().is_none() {
            MAINTENANCE.set(Some(pg_sys::GetCurrentSubTransactionId()));
        }
    }
}

/// `audit._try_maintenance()`: like `_begin_maintenance()` without waiting; false when
/// another maintenance is running (the partition worker then has nothing to do).
#[pg_extern(volatile, parallel_unsafe, name = "_try_maintenance")]
#[search_path(pg_catalog, pg_temp)]
fn try_maintenance() -> bool {
    unsafe {
        let (mut user, mut sec) = (pg_sys::InvalidOid, 0);
        pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
        if user != crate::elevate::extension_owner() && !pg_sys::superuser() {
            raise(ChainError::NotInternal);
        }
        lock(MAINTENANCE_LOCK, false)
    }
}

/// `audit._end_maintenance()`: the guards apply again (the lock is kept to the end of the
/// transaction).
#[pg_extern(volatile, parallel_unsafe, name = "_end_maintenance")]
fn end_maintenance() {
    MAINTENANCE.set(None);
}

/// `audit._in_maintenance()`: for the guards in SQL (sql/capture.sql).
#[pg_extern(stable, parallel_safe, name = "_in_maintenance")]
fn in_maintenance_sql() -> bool {
    in_maintenance()
}

/// Last (seq, hash) of `chain` as of now, not as of the transaction snapshot: the last event
/// left, or the retention anchor when retention dropped the chain's newest events (its next
/// event then links to the dropped one, as if nothing had been dropped).
unsafe fn read_head(chain: i32, class: i32) -> (i64, Option<[u8; 32]>) {
    crate::elevate::with_pinned_path(|| read_head_pinned(chain, class))
}

unsafe fn read_head_pinned(chain: i32, class: i32) -> (i64, Option<[u8; 32]>) {
    if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
        pgrx::error!("audit_ext: SPI_connect failed");
    }
    let plan = HEAD_PLAN.with(|p| {
        *p.borrow_mut().get_or_insert_with(|| {
            crate::spi::kept_plan(
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
    });
    let mut args = [pg_sys::Datum::from(chain), pg_sys::Datum::from(class)];
    let nulls = [b' ' as std::ffi::c_char; 2];
    let rc = pg_sys::SPI_execute_snapshot(
        plan,
        args.as_mut_ptr(),
        nulls.as_ptr(),
        pg_sys::GetLatestSnapshot(),
        std::ptr::null_mut(),
        true,
        false,
        1,
    );
    if rc != pg_sys::SPI_OK_SELECT as i32 {
        pgrx::error!("audit_ext: reading the chain head failed ({rc})");
    }
    let mut head = (0i64, None);
    if pg_sys::SPI_processed > 0 {
        let tt = *pg_sys::SPI_tuptable;
        let row = *tt.vals;
        let mut isnull = false;
        let seq = pg_sys::SPI_getbinval(row, tt.tupdesc, 1, &mut isnull);
        let hash = pg_sys::SPI_getbinval(row, tt.tupdesc, 2, &mut isnull);
        let b = crate::event::bytes(hash);
        let h: [u8; 32] = b.try_into().unwrap_or_else(|_| {
            raise(ChainError::BadHead { chain, what: "at its head (an event or a retention anchor)", len: b.len() })
        });
        head = (seq.value() as i64, Some(h));
    }
    pg_sys::SPI_finish();
    head
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PREPARE
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_PARALLEL_ABORT
    ) {
        STATE.with(|s| *s.borrow_mut() = XactState::default());
        MAINTENANCE.set(None);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    use pg_sys::SubXactEvent::*;
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        match event {
            SUBXACT_EVENT_START_SUB => {
                let t = s.tails.clone();
                s.saved.push((my_subid, t));
            }
            SUBXACT_EVENT_COMMIT_SUB if s.saved.last().is_some_and(|(id, _)| *id == my_subid) => {
                s.saved.pop();
            }
            SUBXACT_EVENT_ABORT_SUB => {
                if MAINTENANCE.get().is_some_and(|m| m >= my_subid) {
                    MAINTENANCE.set(None);
                }
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
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

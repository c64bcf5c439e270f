//! PostgreSQL's callbacks, for safe Rust functions: relcache invalidation (the per-backend
//! caches of plans, rules, policies and partitions), transaction and subtransaction ends
//! (chain state, the server-log mirror, maintenance). Each kind has one trampoline registered
//! with PostgreSQL, which calls the features' functions in the order PostgreSQL itself would:
//! relcache callbacks in the order registered, (sub)transaction callbacks latest first.

use pgrx::pg_sys;
use std::cell::RefCell;
use std::ffi::c_void;

/// How a transaction ended (the events of `XactEvent` audit_ext acts on).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum XactEnd {
    Commit,
    Abort,
    Prepare,
    ParallelCommit,
    ParallelAbort,
}

/// What happened to a subtransaction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SubXact {
    Start,
    Commit,
    Abort,
}

type SubXactFn = fn(SubXact, pg_sys::SubTransactionId);

thread_local! {
    static RELCACHE: RefCell<Vec<fn(pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
    static XACT: RefCell<Vec<fn(XactEnd)>> = const { RefCell::new(Vec::new()) };
    static SUBXACT: RefCell<Vec<SubXactFn>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f(relid)` whenever this backend drops a relcache entry (InvalidOid: all of them).
/// `f` must not do catalog access or run SQL: it only forgets what it cached.
pub fn on_relcache_invalidation(f: fn(pg_sys::Oid)) {
    let first = RELCACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.push(f);
        c.len() == 1
    });
    if first {
        // SAFETY: registers a function with the signature PostgreSQL calls; called from
        // _PG_init, before any query runs in this backend.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(relcache), pg_sys::Datum::from(0)) };
    }
}

/// Calls `f` when a transaction commits, aborts or is prepared.
pub fn on_transaction_end(f: fn(XactEnd)) {
    let first = XACT.with(|c| {
        let mut c = c.borrow_mut();
        c.push(f);
        c.len() == 1
    });
    if first {
        // SAFETY: as on_relcache_invalidation.
        unsafe { pg_sys::RegisterXactCallback(Some(xact), std::ptr::null_mut()) };
    }
}

/// Calls `f(event, id)` when subtransaction `id` starts, commits or aborts.
pub fn on_subtransaction(f: SubXactFn) {
    let first = SUBXACT.with(|c| {
        let mut c = c.borrow_mut();
        c.push(f);
        c.len() == 1
    });
    if first {
        // SAFETY: as on_relcache_invalidation.
        unsafe { pg_sys::RegisterSubXactCallback(Some(subxact), std::ptr::null_mut()) };
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn relcache(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let fs = RELCACHE.with(|c| c.borrow().clone());
    fs.iter().for_each(|f| f(relid));
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn xact(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    let end = match event {
        XACT_EVENT_COMMIT => XactEnd::Commit,
        XACT_EVENT_ABORT => XactEnd::Abort,
        XACT_EVENT_PREPARE => XactEnd::Prepare,
        XACT_EVENT_PARALLEL_COMMIT => XactEnd::ParallelCommit,
        XACT_EVENT_PARALLEL_ABORT => XactEnd::ParallelAbort,
        _ => return,
    };
    let fs = XACT.with(|c| c.borrow().clone());
    fs.iter().rev().for_each(|f| f(end));
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn subxact(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    use pg_sys::SubXactEvent::*;
    let e = match event {
        SUBXACT_EVENT_START_SUB => SubXact::Start,
        SUBXACT_EVENT_COMMIT_SUB => SubXact::Commit,
        SUBXACT_EVENT_ABORT_SUB => SubXact::Abort,
        _ => return,
    };
    let fs = SUBXACT.with(|c| c.borrow().clone());
    fs.iter().rev().for_each(|f| f(e, my_subid));
}

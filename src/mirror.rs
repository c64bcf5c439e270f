//! The mirror of events into the server log (`audit_ext.log_events`): every event that
//! commits becomes one LOG line `AUDIT: id=... chain=... seq=... action=...`, so that log
//! shipping already in place (syslog, csvlog, jsonlog, a SIEM's agent) receives the audit
//! trail too, as libvirt mirrors its audit records and pgAudit users expect.
//!
//! Lines are prepared while an event is chained (src/append.rs) and held per subtransaction
//! until the transaction commits: an event that rolled back (with its transaction or its
//! savepoint) never reaches the log, and every committed one reaches it once. A prepared
//! transaction's lines are written at PREPARE TRANSACTION (its commit happens in another
//! session). Restored events (audit_ext.restore) are not new and are not mirrored.
//!
//! Format: `AUDIT: ` and the `kv` line of `audit.export` (`audit_core::export::kv`, the one
//! owner of the format, README "Export").

use crate::pg::backend;
use crate::pg::callbacks::{self, SubXact, XactEnd};
use crate::pg::value::Value;
use pgrx::pg_sys;
use std::cell::RefCell;

thread_local! {
    /// (subtransaction that chained the event, its line), in chain order.
    static PENDING: RefCell<Vec<(pg_sys::SubTransactionId, String)>> = const { RefCell::new(Vec::new()) };
}

/// Whether events are mirrored now.
pub fn enabled() -> bool {
    crate::gucs::LOG_EVENTS.get()
}

/// Holds the line of one event just chained (its hash already set), until its transaction
/// commits. `get` reads a column of the event (by the index of `event::COLUMNS`).
pub fn stage(get: impl Fn(usize) -> Option<Value>) {
    let line = format!("AUDIT: {}", audit_core::export::kv(&crate::export::event_text(&get, false)));
    let sub = backend::subtransaction_id();
    PENDING.with(|p| p.borrow_mut().push((sub, line)));
}

fn flush() {
    let lines = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for (_, line) in lines {
        // LOG: reaches the server log whatever log_min_messages, never the client
        pgrx::log!("{line}");
    }
}

fn transaction_end(end: XactEnd) {
    match end {
        XactEnd::Commit | XactEnd::Prepare => flush(),
        XactEnd::Abort | XactEnd::ParallelAbort => PENDING.with(|p| p.borrow_mut().clear()),
        XactEnd::ParallelCommit => {}
    }
}

fn subtransaction(event: SubXact, my_subid: pg_sys::SubTransactionId) {
    // Subtransaction ids grow within a transaction, and a subtransaction ends before any
    // later sibling starts: the lines at or after my_subid are its own or its children's.
    if event == SubXact::Abort {
        PENDING.with(|p| p.borrow_mut().retain(|(sub, _)| *sub < my_subid));
    }
}

/// Registers the transaction callbacks that write (or drop) the lines.
pub fn init() {
    callbacks::on_transaction_end(transaction_end);
    callbacks::on_subtransaction(subtransaction);
}

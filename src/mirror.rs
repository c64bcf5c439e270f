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
//! Format: `key=value` pairs separated by one space, in a fixed order; a NULL field is left
//! out. A value is written bare when it is non-empty and made only of letters, digits and
//! `. _ : / @ + -`; otherwise in double quotes, with `\` and `"` escaped by a backslash,
//! newline, carriage return and tab as `\n`, `\r`, `\t`, other control characters as `\xNN`.
//! A value over 2,000 bytes is cut at a character boundary and marked `truncated=true`.

use crate::event;
use crate::pg::datum;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::ffi::c_void;
use std::fmt::Write;

/// Longest value written whole (a syslog line is often cut at 8 KB; the hash identifies the event).
const MAX_VALUE_BYTES: usize = 2000;

thread_local! {
    /// (subtransaction that chained the event, its line), in chain order.
    static PENDING: RefCell<Vec<(pg_sys::SubTransactionId, String)>> = const { RefCell::new(Vec::new()) };
}

/// Whether events are mirrored now.
pub fn enabled() -> bool {
    crate::gucs::LOG_EVENTS.get()
}

/// Holds the line of one event just chained, until its transaction commits. `get` reads a
/// column of the event (by the index of `event::COLUMNS`), `hash` is its hash.
///
/// # Safety
/// The datums `get` returns must be of the types `event::COLUMNS` gives.
pub unsafe fn stage(get: impl Fn(usize) -> Option<pg_sys::Datum>, hash: &[u8; 32]) {
    let mut line = String::from("AUDIT:");
    let mut cut = false;
    let int = |c: usize| get(c).map(|d| (d.value() as i64).to_string());
    let text = |c: usize| get(c).map(|d| String::from_utf8_lossy(datum::bytes(d)).into_owned());
    let fields: [(&str, Option<String>); 16] = [
        ("id", int(event::ID)),
        ("chain", get(event::CHAIN).map(|d| (d.value() as i32).to_string())),
        ("seq", int(event::SEQ)),
        ("at", get(event::AT).map(|d| event::iso_utc(d.value() as i64 + audit_core::hash::PG_EPOCH_OFFSET_US))),
        ("action", text(event::ACTION)),
        ("status", text(event::STATUS)),
        ("severity", text(event::SEVERITY)),
        ("actor", text(event::ACTOR)),
        (
            "actor_ip",
            get(event::ACTOR_IP)
                .and_then(|d| datum::call(pg_sys::inet_out, &[d]))
                .map(|d| std::ffi::CStr::from_ptr(d.cast_mut_ptr::<std::ffi::c_char>()).to_string_lossy().into_owned()),
        ),
        ("session_id", text(event::SESSION_ID)),
        ("application", text(event::APPLICATION)),
        ("module", text(event::MODULE)),
        ("object_type", text(event::OBJECT_TYPE)),
        ("object_id", text(event::OBJECT_ID)),
        ("object_name", text(event::OBJECT_NAME)),
        ("message", text(event::MESSAGE)),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            line.push(' ');
            line.push_str(key);
            line.push('=');
            cut |= push_value(&mut line, &v);
        }
    }
    let _ = write!(line, " hash={}", audit_core::hash::to_hex(hash));
    if cut {
        line.push_str(" truncated=true");
    }
    let sub = pg_sys::GetCurrentSubTransactionId();
    PENDING.with(|p| p.borrow_mut().push((sub, line)));
}

/// Appends `v` as documented above; true when it was cut.
fn push_value(out: &mut String, v: &str) -> bool {
    let mut end = v.len().min(MAX_VALUE_BYTES);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    let part = &v[..end];
    let bare = !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "._:/@+-".contains(c));
    if bare {
        out.push_str(part);
    } else {
        out.push('"');
        for c in part.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    end < v.len()
}

fn flush() {
    let lines = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for (_, line) in lines {
        // LOG: reaches the server log whatever log_min_messages, never the client
        pgrx::log!("{line}");
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PREPARE => flush(),
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => PENDING.with(|p| p.borrow_mut().clear()),
        _ => {}
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    // Subtransaction ids grow within a transaction, and a subtransaction ends before any
    // later sibling starts: the lines at or after my_subid are its own or its children's.
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        PENDING.with(|p| p.borrow_mut().retain(|(sub, _)| *sub < my_subid));
    }
}

/// Registers the transaction callbacks that write (or drop) the lines.
pub fn init() {
    // SAFETY: called once from _PG_init, before any query runs in this backend.
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::push_value;

    #[test]
    fn values_are_bare_or_quoted_and_escaped() {
        let q = |v: &str| {
            let mut s = String::new();
            let cut = push_value(&mut s, v);
            (s, cut)
        };
        assert_eq!(q("order.update"), ("order.update".into(), false));
        assert_eq!(q("ann@example.com"), ("ann@example.com".into(), false));
        assert_eq!(q(""), ("\"\"".into(), false));
        assert_eq!(q("a b"), ("\"a b\"".into(), false));
        assert_eq!(q("say \"hi\"\\\n"), ("\"say \\\"hi\\\"\\\\\\n\"".into(), false));
        assert_eq!(q("x=1 id=2"), ("\"x=1 id=2\"".into(), false));
        assert_eq!(q("\u{1}"), ("\"\\x01\"".into(), false));
        let (s, cut) = q(&"é".repeat(1500));
        assert!(cut && s.len() <= 2002 && s.starts_with('"') && s.ends_with('"'));
    }
}

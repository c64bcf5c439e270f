//! `audit.export(format, query, since, until)` (sql/export.sql): the events matching a query
//! of the search language and a time range, one line each, in id order. The lines themselves
//! come from `audit_core::export` (pure Rust, unit-tested); this module reads an event's
//! columns into it. `jsonl` is `audit.export_json(e)` (sql/verify.sql), the object
//! tests/tools/verify_export.py verifies.

use crate::event;
use crate::pg::fcinfo::ROW;
use crate::pg::value::Value;
use audit_core::export::{self, Event};
use audit_core::hash::{to_hex, PG_EPOCH_OFFSET_US};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// The columns of one event as text, as `audit_core::export` takes them. `documents`: also
/// `old`, `new` and `metadata` as jsonb text, which only the csv format writes (the others,
/// and the server-log mirror, leave them out: rendering them would cost a whole document's
/// text per event for nothing).
pub fn event_text(get: &dyn Fn(usize) -> Option<Value>, documents: bool) -> Event {
    let text = |c: usize| get(c).map(|v| v.str().into_owned());
    let json = |c: usize| get(c).filter(|_| documents).map(|v| v.jsonb_string());
    let hex = |c: usize| get(c).map(|v| to_hex(v.bytes()));
    let int = |c: usize| get(c).map_or(0, |v| v.int8());
    Event {
        id: int(event::ID),
        at: event::iso_utc(get(event::AT).map_or(0, |v| v.timestamptz()) + PG_EPOCH_OFFSET_US),
        chain: get(event::CHAIN).map_or(0, |v| v.int4()),
        seq: int(event::SEQ),
        actor: text(event::ACTOR),
        actor_ip: get(event::ACTOR_IP).map(|v| v.inet_text()),
        session_id: text(event::SESSION_ID),
        application: text(event::APPLICATION),
        action: text(event::ACTION).unwrap_or_default(),
        status: text(event::STATUS).unwrap_or_default(),
        severity: text(event::SEVERITY).unwrap_or_default(),
        module: text(event::MODULE),
        object_type: text(event::OBJECT_TYPE),
        object_id: text(event::OBJECT_ID),
        object_name: text(event::OBJECT_NAME),
        old: json(event::OLD),
        new: json(event::NEW),
        message: text(event::MESSAGE),
        metadata: json(event::METADATA),
        txid: int(event::TXID),
        prev_hash: hex(event::PREV_HASH),
        hash: hex(event::HASH).unwrap_or_default(),
    }
}

/// The host name in RFC 5424 lines: the server's `cluster_name` (`-` when it is empty).
fn hostname() -> String {
    crate::pg::backend::cluster_name().unwrap_or_default()
}

crate::c_function!(
    /// `audit_internal._export_line(format, e)`: one event as a line of `format` (`kv`, `csv`, `cef` or
    /// `rfc5424`; audit.export checks the name first).
    pg_finfo_audit_export_line,
    audit_export_line,
    &[pg_sys::TEXTOID, ROW],
    |call| {
        let (Some(format), Some(row)) = (call.arg(0), call.arg(1)) else { return None };
        let format = format.str().into_owned();
        let line = event::with_event_row(row, "audit_internal._export_line()", |get| {
            line(&format, get).unwrap_or_else(|| pgrx::error!("audit_internal._export_line(): unknown format {format:?}"))
        });
        Some(Value::from_text(line.as_bytes()))
    }
);

/// One event as a line of `format` (`kv`, `csv`, `cef` or `rfc5424`) from its columns (by
/// the indexes of src/event.rs); None for another format. Also the forwarders' lines
/// (src/forward/worker.rs).
pub fn line(format: &str, get: &dyn Fn(usize) -> Option<Value>) -> Option<String> {
    let e = event_text(get, format == "csv");
    Some(match format {
        "kv" => export::kv(&e),
        "csv" => export::csv(&e),
        "cef" => export::cef(&e, env!("CARGO_PKG_VERSION"), (int_at(get) + PG_EPOCH_OFFSET_US).div_euclid(1000)),
        "rfc5424" => export::rfc5424(&e, &hostname()),
        _ => return None,
    })
}

fn int_at(get: &dyn Fn(usize) -> Option<Value>) -> i64 {
    get(event::AT).map_or(0, |v| v.timestamptz())
}

/// `audit_internal._export_header(format)`: the line that comes before the events (the CSV header),
/// NULL for formats without one.
#[pg_extern(immutable, strict, parallel_safe, schema = "audit_internal", name = "_export_header")]
fn export_header(format: &str) -> Option<&'static str> {
    (format == "csv").then_some(export::CSV_HEADER)
}

//! The columns of `audit.events` that are hashed, in canonical order, and how each
//! PostgreSQL datum is reduced to the bytes the hash sees.

use crate::pg::value::Value as PgValue;
use audit_core::hash::{EventHasher, Value, PG_EPOCH_OFFSET_US};
use pgrx::pg_sys;
use pgrx::PgTupleDesc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int4,
    Int8,
    Timestamptz,
    Text,
    Inet,
    Jsonb,
    Bytea,
}

/// Hashed columns in canonical order, then `hash` itself (index [`HASH`]).
pub const COLUMNS: [(&str, Kind); 22] = [
    ("id", Kind::Int8),
    ("at", Kind::Timestamptz),
    ("chain", Kind::Int4),
    ("seq", Kind::Int8),
    ("actor", Kind::Text),
    ("actor_ip", Kind::Inet),
    ("session_id", Kind::Text),
    ("application", Kind::Text),
    ("action", Kind::Text),
    ("status", Kind::Text),
    ("severity", Kind::Text),
    ("module", Kind::Text),
    ("object_type", Kind::Text),
    ("object_id", Kind::Text),
    ("object_name", Kind::Text),
    ("old", Kind::Jsonb),
    ("new", Kind::Jsonb),
    ("message", Kind::Text),
    ("metadata", Kind::Jsonb),
    ("txid", Kind::Int8),
    ("prev_hash", Kind::Bytea),
    ("hash", Kind::Bytea),
];

pub const ID: usize = 0;
pub const AT: usize = 1;
pub const CHAIN: usize = 2;
pub const SEQ: usize = 3;
pub const ACTOR: usize = 4;
pub const ACTOR_IP: usize = 5;
pub const SESSION_ID: usize = 6;
pub const APPLICATION: usize = 7;
pub const ACTION: usize = 8;
pub const STATUS: usize = 9;
pub const SEVERITY: usize = 10;
pub const MODULE: usize = 11;
pub const OBJECT_TYPE: usize = 12;
pub const OBJECT_ID: usize = 13;
pub const OBJECT_NAME: usize = 14;
pub const OLD: usize = 15;
pub const NEW: usize = 16;
pub const MESSAGE: usize = 17;
pub const METADATA: usize = 18;
pub const TXID: usize = 19;
pub const PREV_HASH: usize = 20;
pub const HASH: usize = 21;
/// Number of hashed columns (all but `hash`).
pub const HASHED: usize = 21;

/// `id, at, chain, ...` in canonical order: the select list `verify` streams.
pub fn select_list() -> String {
    COLUMNS.iter().map(|(n, _)| format!("e.{n}")).collect::<Vec<_>>().join(", ")
}

/// Hashes one event from its datums in canonical order. Returns the digest and the encoded
/// size. Allocates (detoast, jsonb text) in the current memory context: callers reset it.
/// A value of another type than `COLUMNS` gives for its position is an error.
pub fn hash_values(get: impl Fn(usize) -> Option<PgValue>) -> ([u8; 32], usize) {
    thread_local! {
        static BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut h = EventHasher::with_buffer(BUF.take());
    for (i, (_, kind)) in COLUMNS.iter().take(HASHED).enumerate() {
        match get(i) {
            None => h.field(Value::Null),
            Some(v) => with_value(*kind, v, |v| h.field(v)),
        }
    }
    let out = h.finish();
    BUF.set(h.into_buffer());
    out
}

/// Calls `f` with the hashed form of one non-null value of column kind `kind`.
pub fn with_value<R>(kind: Kind, v: PgValue, f: impl FnOnce(Value<'_>) -> R) -> R {
    match kind {
        Kind::Int4 => f(Value::Int4(v.int4())),
        Kind::Int8 => f(Value::Int8(v.int8())),
        Kind::Timestamptz => f(Value::Timestamp(v.timestamptz().saturating_add(PG_EPOCH_OFFSET_US))),
        Kind::Text | Kind::Bytea => f(Value::Bytes(v.bytes())),
        Kind::Inet => {
            let b = v.bytes();
            // inet_struct: family (PGSQL_AF_INET = 2, PGSQL_AF_INET6 = 3), bits, address.
            let family = if b[0] == 2 { 4 } else { 6 };
            f(Value::Inet { family, bits: b[1], addr: &b[2..] })
        }
        Kind::Jsonb => v.with_jsonb_text(|text| f(Value::Bytes(text.to_bytes()))),
    }
}

/// Position of each of `COLUMNS` in `desc`, by name and type (None if one is missing).
pub fn attnos(desc: &PgTupleDesc) -> Option<[usize; COLUMNS.len()]> {
    let mut attno = [0usize; COLUMNS.len()];
    for (k, (name, kind)) in COLUMNS.iter().enumerate() {
        attno[k] = desc
            .iter()
            .position(|att| !att.is_dropped() && att.name() == *name && att.type_oid().value() == type_oid(*kind))?;
    }
    Some(attno)
}

fn type_oid(kind: Kind) -> pg_sys::Oid {
    match kind {
        Kind::Int4 => pg_sys::INT4OID,
        Kind::Int8 => pg_sys::INT8OID,
        Kind::Timestamptz => pg_sys::TIMESTAMPTZOID,
        Kind::Text => pg_sys::TEXTOID,
        Kind::Inet => pg_sys::INETOID,
        Kind::Jsonb => pg_sys::JSONBOID,
        Kind::Bytea => pg_sys::BYTEAOID,
    }
}

/// Deepest nesting of arrays and objects that `old`, `new` and `metadata` may have. serde_json,
/// which alerts, `audit.diff` and the jsonb conversions of the SQL functions use, stops at 128
/// levels; a document past that would be found by `audit.search` but skipped by every alert
/// rule (an attacker could pad an event to evade them) and fail in `audit.changes`. So events
/// deeper than this are refused when they are recorded.
pub const MAX_JSON_DEPTH: usize = 100;

/// `2026-11-26T05:02:31.123456Z` from microseconds since 1970 (proleptic Gregorian, UTC).
pub fn iso_utc(us: i64) -> String {
    let (days, rem) = (us.div_euclid(86_400_000_000), us.rem_euclid(86_400_000_000));
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let secs = rem / 1_000_000;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z", secs / 3600, secs / 60 % 60, secs % 60, rem % 1_000_000)
}

/// Calls `f` with a reader of the columns of the `audit.events` row `arg` (by the index of
/// [`COLUMNS`], `None` for NULL). Raises an error naming `what` when the row is not shaped like
/// `audit.events`.
pub fn with_event_row<R>(arg: PgValue, what: &str, f: impl FnOnce(&dyn Fn(usize) -> Option<PgValue>) -> R) -> R {
    crate::pg::row::with_composite(arg, |row| {
        let attno = attnos(&row.desc()).unwrap_or_else(|| pgrx::error!("{what} needs a row of audit.events"));
        f(&|c| row.get(attno[c]))
    })
}

//! The columns of `audit.events` that are hashed, in canonical order, and how each
//! PostgreSQL datum is reduced to the bytes the hash sees.

use audit_core::hash::{EventHasher, Value, PG_EPOCH_OFFSET_US};
use pgrx::pg_sys;
use pgrx::varlena::{varatt_is_1b_e, varatt_is_4b_c, varlena_to_byte_slice};
use pgrx::PgTupleDesc;
use std::ffi::CStr;

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
///
/// # Safety
/// Each datum must be of the type `COLUMNS` gives for its position.
pub unsafe fn hash_datums(get: impl Fn(usize) -> Option<pg_sys::Datum>) -> ([u8; 32], usize) {
    thread_local! {
        static BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut h = EventHasher::with_buffer(BUF.take());
    for (i, (_, kind)) in COLUMNS.iter().take(HASHED).enumerate() {
        match get(i) {
            None => h.field(Value::Null),
            Some(d) => with_value(*kind, d, |v| h.field(v)),
        }
    }
    let out = h.finish();
    BUF.set(h.into_buffer());
    out
}

/// Calls `f` with the hashed form of one non-null datum.
///
/// # Safety
/// `d` must be a valid datum of type `kind`.
pub unsafe fn with_value<R>(kind: Kind, d: pg_sys::Datum, f: impl FnOnce(Value<'_>) -> R) -> R {
    match kind {
        Kind::Int4 => f(Value::Int4(d.value() as i32)),
        Kind::Int8 => f(Value::Int8(d.value() as i64)),
        Kind::Timestamptz => f(Value::Timestamp((d.value() as i64).saturating_add(PG_EPOCH_OFFSET_US))),
        Kind::Text | Kind::Bytea => f(Value::Bytes(bytes(d))),
        Kind::Inet => {
            let b = bytes(d);
            // inet_struct: family (PGSQL_AF_INET = 2, PGSQL_AF_INET6 = 3), bits, address.
            let family = if b[0] == 2 { 4 } else { 6 };
            f(Value::Inet { family, bits: b[1], addr: &b[2..] })
        }
        Kind::Jsonb => {
            let text = jsonb_text(d);
            f(Value::Bytes(text.to_bytes()))
        }
    }
}

/// Zero-copy bytes of a text/bytea/inet datum (detoasted into the current context if needed).
///
/// # Safety
/// `d` must be a varlena datum.
pub unsafe fn bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    let mut v = d.cast_mut_ptr::<pg_sys::varlena>();
    // Only compressed or out-of-line values need detoasting; skipping the call for the
    // common inline case saves pgrx's setjmp guard on every field (seen in perf).
    if varatt_is_1b_e(v) || varatt_is_4b_c(v) {
        v = pg_sys::pg_detoast_datum_packed(v);
    }
    varlena_to_byte_slice(v)
}

/// PostgreSQL's own jsonb text (`jsonb_out`): keys ordered by length then bytes, ", " and ": "
/// separators, numerics as stored. Independent of every setting.
///
/// The text lives in one buffer reused by every call (a fresh buffer per jsonb was most of
/// verify's allocation churn): it is valid until the next call, so callers copy or consume it
/// at once.
///
/// # Safety
/// `d` must be a jsonb datum.
pub unsafe fn jsonb_text<'a>(d: pg_sys::Datum) -> &'a CStr {
    thread_local! {
        static OUT: std::cell::Cell<*mut pg_sys::StringInfoData> = const { std::cell::Cell::new(std::ptr::null_mut()) };
    }
    let jb = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::Jsonb;
    let size = pgrx::varlena::varsize_any(jb as *const pg_sys::varlena) as i32;
    let mut out = OUT.get();
    if out.is_null() || (*out).maxlen > 8 * 1024 * 1024 {
        // (a buffer grown past 8 MB by one huge document is not kept)
        if !out.is_null() {
            pg_sys::pfree((*out).data.cast());
            pg_sys::pfree(out.cast());
        }
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        out = pg_sys::makeStringInfo();
        pg_sys::MemoryContextSwitchTo(old);
        OUT.set(out);
    }
    pg_sys::resetStringInfo(out);
    let cstr = pg_sys::JsonbToCString(out, &mut (*jb).root, size);
    CStr::from_ptr(cstr)
}

/// True when a jsonb datum's top level is an object.
///
/// # Safety
/// `d` must be a jsonb datum.
pub unsafe fn jsonb_is_object(d: pg_sys::Datum) -> bool {
    const JB_FSCALAR: u32 = 0x1000_0000;
    const JB_FOBJECT: u32 = 0x2000_0000;
    let jb = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::Jsonb;
    let header = (*jb).root.header;
    header & JB_FOBJECT != 0 && header & JB_FSCALAR == 0
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

/// Whether a jsonb datum nests arrays and objects deeper than `limit` levels. Reads only the
/// containers' headers and entries of the binary format (no text, no allocation), so it
/// costs a few nanoseconds per container.
///
/// # Safety
/// `d` must be a jsonb datum.
pub unsafe fn jsonb_deeper_than(d: pg_sys::Datum, limit: usize) -> bool {
    let jb = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::Jsonb;
    let root = std::ptr::addr_of!((*jb).root) as *const u8;
    const JB_FSCALAR: u32 = 0x1000_0000;
    let header = std::ptr::read_unaligned(root as *const u32);
    // a scalar is stored as a one-element array that is not a level of nesting
    let top = if header & JB_FSCALAR != 0 { 0 } else { 1 };
    container_deeper(root, top, limit)
}

/// `c` points at a JsonbContainer at nesting level `level` (PostgreSQL's jsonb.h layout: a
/// u32 header holding the count and kind, then one u32 JEntry per array element or per key
/// and value, then the children's data, containers aligned to 4 bytes).
unsafe fn container_deeper(c: *const u8, level: usize, limit: usize) -> bool {
    const JB_CMASK: u32 = 0x0FFF_FFFF;
    const JB_FOBJECT: u32 = 0x2000_0000;
    const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
    const JENTRY_TYPEMASK: u32 = 0x7000_0000;
    const JENTRY_HAS_OFF: u32 = 0x8000_0000;
    const JENTRY_ISCONTAINER: u32 = 0x5000_0000;
    if level > limit {
        return true;
    }
    let header = std::ptr::read_unaligned(c as *const u32);
    let count = (header & JB_CMASK) as usize;
    let n = if header & JB_FOBJECT != 0 { 2 * count } else { count };
    let entry = |i: usize| std::ptr::read_unaligned(c.add(4 + 4 * i) as *const u32);
    let data = c.add(4 + 4 * n);
    // offsets: the sum of the lengths before i, or an entry's stored end offset
    let mut offset = 0usize;
    for i in 0..n {
        let e = entry(i);
        let end = if e & JENTRY_HAS_OFF != 0 {
            (e & JENTRY_OFFLENMASK) as usize
        } else {
            offset + (e & JENTRY_OFFLENMASK) as usize
        };
        if e & JENTRY_TYPEMASK == JENTRY_ISCONTAINER {
            let aligned = (offset + 3) & !3;
            if container_deeper(data.add(aligned), level + 1, limit) {
                return true;
            }
        }
        offset = end;
    }
    false
}

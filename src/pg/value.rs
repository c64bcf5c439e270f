//! [`Value`]: a datum that knows its type. PostgreSQL's `Datum` is a bare machine word whose
//! meaning (an integer, a pointer to a varlena, ...) only the type says; reading one as the
//! wrong type is undefined behaviour. A `Value` is made only here, from a place whose type is
//! known (a tuple's descriptor, an SPI result's descriptor, a function's declared argument
//! types, or a constructor below), so feature code reads and builds values in safe Rust: every
//! reader checks the type and panics (an ERROR, via pgrx) on a mismatch instead of misreading.
//!
//! Lifetime: the memory a varlena value points to belongs to a PostgreSQL memory context (the
//! tuple's, SPI's, or the current one for constructed values), as with pgrx's own `&str`
//! arguments. Values are used within the call, trigger or SPI connection that produced them.

use pgrx::pg_sys;
use pgrx::varlena::{varatt_is_1b_e, varatt_is_4b_c, varlena_to_byte_slice};
use std::ffi::CStr;

#[derive(Clone, Copy, Debug)]
pub struct Value {
    oid: pg_sys::Oid,
    datum: pg_sys::Datum,
}

/// Types whose datums are varlena pointers that [`Value::bytes`] may read.
fn is_varlena(oid: pg_sys::Oid) -> bool {
    matches!(
        oid,
        pg_sys::TEXTOID | pg_sys::BYTEAOID | pg_sys::INETOID | pg_sys::VARCHAROID | pg_sys::JSONBOID | pg_sys::JSONOID
    ) || oid == pg_sys::TEXTARRAYOID
}

impl Value {
    /// # Safety
    /// `datum` must be a valid, non-NULL datum of type `oid`.
    pub(super) unsafe fn from_raw(oid: pg_sys::Oid, datum: pg_sys::Datum) -> Value {
        Value { oid, datum }
    }

    /// The value's type.
    pub fn oid(&self) -> pg_sys::Oid {
        self.oid
    }

    /// The bare datum, for handing back to PostgreSQL (this layer does that).
    pub(super) fn raw(&self) -> pg_sys::Datum {
        self.datum
    }

    fn expect(&self, oids: &[pg_sys::Oid], what: &str) {
        if !oids.contains(&self.oid) {
            panic!("audit_ext: a value of type {} read as {what}", u32::from(self.oid));
        }
    }

    pub fn bool(&self) -> bool {
        self.expect(&[pg_sys::BOOLOID], "boolean");
        self.datum.value() != 0
    }

    pub fn int4(&self) -> i32 {
        self.expect(&[pg_sys::INT4OID], "integer");
        self.datum.value() as i32
    }

    pub fn int8(&self) -> i64 {
        self.expect(&[pg_sys::INT8OID], "bigint");
        self.datum.value() as i64
    }

    /// A timestamptz as PostgreSQL stores it: microseconds since 2000-01-01 00:00 UTC.
    pub fn timestamptz(&self) -> i64 {
        self.expect(&[pg_sys::TIMESTAMPTZOID], "timestamptz");
        self.datum.value() as i64
    }

    pub fn oid_value(&self) -> pg_sys::Oid {
        self.expect(&[pg_sys::OIDOID, pg_sys::REGCLASSOID], "oid");
        pg_sys::Oid::from(self.datum.value() as u32)
    }

    /// Zero-copy bytes of a text, bytea or inet value (detoasted into the current memory
    /// context if it was compressed or out of line).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the slice borrows the value.
        unsafe { self.bytes_unbounded() }
    }

    /// [`Value::bytes`] for a holder that outlives the `Value` itself (a [`super::tuple::Tuple`]).
    ///
    /// # Safety
    /// The lifetime chosen must not outlast the memory the datum points into.
    pub(super) unsafe fn bytes_unbounded<'a>(&self) -> &'a [u8] {
        if !is_varlena(self.oid) {
            panic!("audit_ext: a value of type {} read as bytes", u32::from(self.oid));
        }
        // SAFETY: the type says the datum is a varlena pointer (checked above; Value is only
        // made from datums of their stated type).
        unsafe {
            let mut v = self.datum.cast_mut_ptr::<pg_sys::varlena>();
            // Only compressed or out-of-line values need detoasting; skipping the call for the
            // common inline case saves pgrx's setjmp guard on every field (seen in perf).
            if varatt_is_1b_e(v) || varatt_is_4b_c(v) {
                v = pg_sys::pg_detoast_datum_packed(v);
            }
            varlena_to_byte_slice(v)
        }
    }

    /// A text value as UTF-8 (the database encoding; lossy for anything else).
    pub fn str(&self) -> std::borrow::Cow<'_, str> {
        self.expect(&[pg_sys::TEXTOID, pg_sys::VARCHAROID], "text");
        String::from_utf8_lossy(self.bytes())
    }

    /// A copy of an inet value's whole varlena, header included (what
    /// [`super::backend::client_addr_bytes`] gives and [`Value::from_inet_bytes`] takes).
    pub fn inet_varlena(&self) -> Vec<u8> {
        self.expect(&[pg_sys::INETOID], "inet");
        // SAFETY: an inet datum (checked) is a varlena pointer; its whole length is copied.
        unsafe {
            let v = pg_sys::pg_detoast_datum_packed(self.datum.cast_mut_ptr());
            let len = pgrx::varlena::varsize_any(v);
            std::slice::from_raw_parts(v as *const u8, len).to_vec()
        }
    }

    /// An inet value as `inet_out` writes it (`10.0.0.1`, `::1/64`).
    pub fn inet_text(&self) -> String {
        self.expect(&[pg_sys::INETOID], "inet");
        // SAFETY: an inet datum, the one argument inet_out takes; it returns a cstring.
        unsafe {
            let s = super::datum::call(pg_sys::inet_out, &[self.datum]).expect("inet_out returned NULL");
            CStr::from_ptr(s.cast_mut_ptr()).to_string_lossy().into_owned()
        }
    }

    /// Calls `f` with PostgreSQL's own text of a jsonb value (`jsonb_out`: keys ordered by
    /// length then bytes, ", " and ": " separators, numerics as stored), from a buffer reused
    /// by every call (a fresh buffer per jsonb was most of verify's allocation churn).
    pub fn with_jsonb_text<R>(&self, f: impl FnOnce(&CStr) -> R) -> R {
        self.expect(&[pg_sys::JSONBOID], "jsonb");
        // SAFETY: a jsonb datum (checked).
        unsafe { super::datum::with_jsonb_text(self.datum, f) }
    }

    /// A jsonb value's text, copied.
    pub fn jsonb_string(&self) -> String {
        self.with_jsonb_text(|s| s.to_string_lossy().into_owned())
    }

    /// True when a jsonb value's top level is an object.
    pub fn jsonb_is_object(&self) -> bool {
        self.expect(&[pg_sys::JSONBOID], "jsonb");
        // SAFETY: a jsonb datum (checked).
        unsafe { super::datum::jsonb_is_object(self.datum) }
    }

    /// Whether a jsonb value nests arrays and objects deeper than `limit` levels.
    pub fn jsonb_deeper_than(&self, limit: usize) -> bool {
        self.expect(&[pg_sys::JSONBOID], "jsonb");
        // SAFETY: a jsonb datum (checked).
        unsafe { super::datum::jsonb_deeper_than(self.datum, limit) }
    }

    // Constructors. Values made here live in the current memory context.

    pub fn from_int4(i: i32) -> Value {
        Value { oid: pg_sys::INT4OID, datum: pg_sys::Datum::from(i) }
    }

    pub fn from_int8(i: i64) -> Value {
        Value { oid: pg_sys::INT8OID, datum: pg_sys::Datum::from(i) }
    }

    /// From microseconds since 2000-01-01 00:00 UTC.
    pub fn from_timestamptz(us: i64) -> Value {
        Value { oid: pg_sys::TIMESTAMPTZOID, datum: pg_sys::Datum::from(us) }
    }

    /// A text value (`b` must be valid in the database encoding, as every `&str` is in UTF-8).
    pub fn from_text(b: &[u8]) -> Value {
        // SAFETY: palloc's a varlena in the current context, as any backend code may.
        Value { oid: pg_sys::TEXTOID, datum: unsafe { super::datum::text(b) } }
    }

    pub fn from_bytea(b: &[u8]) -> Value {
        // SAFETY: as from_text: text and bytea share the varlena layout.
        Value { oid: pg_sys::BYTEAOID, datum: unsafe { super::datum::text(b) } }
    }

    /// A copy of an inet value's varlena bytes (as [`Value::bytes`] gave them).
    pub fn from_inet_bytes(b: &[u8]) -> Value {
        // SAFETY: copies `b`, a whole inet varlena read from an inet value, into palloc'd
        // memory of the current context.
        unsafe {
            let p = pg_sys::palloc(b.len()) as *mut u8;
            std::ptr::copy_nonoverlapping(b.as_ptr(), p, b.len());
            Value { oid: pg_sys::INETOID, datum: pg_sys::Datum::from(p) }
        }
    }

    /// An inet parsed from text (raises inet_in's error on bad input).
    pub fn parse_inet(s: &CStr) -> Value {
        // SAFETY: inet_in takes one cstring.
        let d = unsafe { super::datum::call(pg_sys::inet_in, &[pg_sys::Datum::from(s.as_ptr())]) };
        Value { oid: pg_sys::INETOID, datum: d.expect("inet_in returned NULL") }
    }

    /// A jsonb parsed from text (raises jsonb_in's error on bad JSON).
    pub fn parse_jsonb(s: &CStr) -> Value {
        // SAFETY: jsonb_in takes one cstring.
        Value { oid: pg_sys::JSONBOID, datum: unsafe { super::datum::jsonb(s) } }
    }

    /// `a || b` of two jsonb values.
    pub fn jsonb_concat(a: Value, b: Value) -> Value {
        a.expect(&[pg_sys::JSONBOID], "jsonb");
        b.expect(&[pg_sys::JSONBOID], "jsonb");
        // SAFETY: two jsonb datums (checked).
        Value { oid: pg_sys::JSONBOID, datum: unsafe { super::datum::concat(a.datum, b.datum) } }
    }

    /// Any value pgrx can convert (text arrays, strings, oids, ...); None for NULL.
    pub fn from_pgrx<T: pgrx::IntoDatum>(v: T) -> Option<Value> {
        let oid = T::type_oid();
        v.into_datum().map(|datum| Value { oid, datum })
    }

    /// The result of a function returning `void`, or of a trigger that returns nothing.
    pub fn void() -> Value {
        Value { oid: pg_sys::VOIDOID, datum: pg_sys::Datum::from(0) }
    }
}

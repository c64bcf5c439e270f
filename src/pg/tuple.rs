//! [`Tuple`]: a heap tuple deformed into its columns, read and written as [`Value`]s whose
//! types come from the tuple's descriptor. The insert trigger (src/append.rs), the alert
//! trigger, verify's cursor and the composite arguments of `audit.hash_event(e)` and
//! `audit_internal._export_line(format, e)` all read events through it.

use super::value::Value;
use pgrx::{pg_sys, PgTupleDesc};

pub struct Tuple {
    desc: pg_sys::TupleDesc,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
}

impl Tuple {
    /// # Safety
    /// `desc` must describe `heap`, and both must stay valid while the tuple is used.
    pub(super) unsafe fn deform(desc: pg_sys::TupleDesc, heap: pg_sys::HeapTuple) -> Tuple {
        let natts = (*desc).natts as usize;
        let mut t = Tuple { desc, values: vec![pg_sys::Datum::from(0); natts], nulls: vec![true; natts] };
        pg_sys::heap_deform_tuple(heap, desc, t.values.as_mut_ptr(), t.nulls.as_mut_ptr());
        t
    }

    /// Deforms another tuple into the same buffers.
    ///
    /// # Safety
    /// As [`Tuple::deform`].
    pub(super) unsafe fn refill(&mut self, desc: pg_sys::TupleDesc, heap: pg_sys::HeapTuple) {
        let natts = (*desc).natts as usize;
        self.desc = desc;
        self.values.resize(natts, pg_sys::Datum::from(0));
        self.nulls.resize(natts, true);
        pg_sys::heap_deform_tuple(heap, desc, self.values.as_mut_ptr(), self.nulls.as_mut_ptr());
    }

    /// The descriptor, for looking columns up by name.
    pub fn desc(&self) -> PgTupleDesc<'_> {
        // SAFETY: valid while the tuple is (Tuple::deform's contract); not freed by the wrapper.
        unsafe { PgTupleDesc::from_pg_unchecked(self.desc) }
    }

    fn type_of(&self, i: usize) -> pg_sys::Oid {
        // SAFETY: `i` < natts (callers index values first, which panics otherwise).
        unsafe { (*(*self.desc).attrs.as_ptr().add(i)).atttypid }
    }

    /// Column `i` (0-based), None for NULL.
    #[inline]
    pub fn get(&self, i: usize) -> Option<Value> {
        if self.nulls[i] {
            return None;
        }
        // SAFETY: a non-NULL datum of the column's own type, as heap_deform_tuple gave it.
        Some(unsafe { Value::from_raw(self.type_of(i), self.values[i]) })
    }

    /// The bytes of varlena column `i` (text, bytea, inet), borrowed from the tuple; None for NULL.
    pub fn bytes_at(&self, i: usize) -> Option<&[u8]> {
        // SAFETY: the datum points into memory that lives as long as the tuple's values.
        self.get(i).map(|v| unsafe { v.bytes_unbounded() })
    }

    /// Text column `i` as UTF-8, borrowed from the tuple (text that is not UTF-8 reads as "").
    pub fn str_at(&self, i: usize) -> Option<&str> {
        self.bytes_at(i).map(|b| std::str::from_utf8(b).unwrap_or(""))
    }

    /// Sets column `i` (0-based) to `v`, which must be of the column's type.
    pub fn set(&mut self, i: usize, v: Value) {
        if v.oid() != self.type_of(i) {
            panic!(
                "audit_ext: column {} of type {} set to a value of type {}",
                i + 1,
                u32::from(self.type_of(i)),
                u32::from(v.oid())
            );
        }
        self.values[i] = v.raw();
        self.nulls[i] = false;
    }

    /// A new heap tuple of these values, in the current memory context.
    pub(super) fn form(&mut self) -> pg_sys::HeapTuple {
        // SAFETY: values and nulls have the descriptor's length, each value of its column's
        // type (Tuple::set checks).
        unsafe { pg_sys::heap_form_tuple(self.desc, self.values.as_mut_ptr(), self.nulls.as_mut_ptr()) }
    }
}

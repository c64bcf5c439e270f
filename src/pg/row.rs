//! A composite value passed to a function (a row of `audit.events` as `audit.hash_event(e)`
//! and `audit._export_line(format, e)` take it), deformed into its columns.

use pgrx::{pg_sys, PgTupleDesc};

/// Deforms the composite datum `arg` and calls `f` with its tuple descriptor, values and
/// null flags (by attribute position).
///
/// # Safety
/// `arg` must be a non-NULL composite datum (a function argument of a row type); the datums
/// `f` is given live in the current memory context until it returns.
pub unsafe fn with_composite<R>(arg: pg_sys::Datum, f: impl FnOnce(&PgTupleDesc, &[pg_sys::Datum], &[bool]) -> R) -> R {
    let header = pg_sys::pg_detoast_datum(arg.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
    let typid = (*header).t_choice.t_datum.datum_typeid;
    let typmod = (*header).t_choice.t_datum.datum_typmod;
    let desc = pg_sys::lookup_rowtype_tupdesc(typid, typmod);
    let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
    tuple.t_len = pgrx::varlena::varsize(header as *const pg_sys::varlena) as u32;
    tuple.t_data = header;
    let natts = (*desc).natts as usize;
    let mut values = vec![pg_sys::Datum::from(0); natts];
    let mut nulls = vec![false; natts];
    pg_sys::heap_deform_tuple(&mut tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
    let out = f(&PgTupleDesc::from_pg_unchecked(desc), &values, &nulls);
    pg_sys::DecrTupleDescRefCount(desc);
    out
}

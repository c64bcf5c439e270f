//! A composite value passed to a function (a row of `audit.events` as `audit.hash_event(e)`
//! and `audit_internal._export_line(format, e)` take it), deformed into its columns.

use super::tuple::Tuple;
use super::value::Value;
use pgrx::pg_sys;

/// Deforms the composite value `arg` and calls `f` with it as a [`Tuple`]. Raises an error
/// when `arg` is not of a row type.
pub fn with_composite<R>(arg: Value, f: impl FnOnce(&Tuple) -> R) -> R {
    // SAFETY: type_is_rowtype reads the type cache; a value of a row type is a composite
    // datum (a HeapTupleHeader varlena) carrying its own type and typmod, whose descriptor
    // lookup_rowtype_tupdesc pins until DecrTupleDescRefCount. The tuple points into the
    // detoasted copy, which lives in the current context for the whole call.
    unsafe {
        if !pg_sys::type_is_rowtype(arg.oid()) {
            pgrx::error!("audit_ext: a value of type {} is not a row", u32::from(arg.oid()));
        }
        let header = pg_sys::pg_detoast_datum(arg.raw().cast_mut_ptr()) as pg_sys::HeapTupleHeader;
        let typid = (*header).t_choice.t_datum.datum_typeid;
        let typmod = (*header).t_choice.t_datum.datum_typmod;
        let desc = pg_sys::lookup_rowtype_tupdesc(typid, typmod);
        let mut heap: pg_sys::HeapTupleData = std::mem::zeroed();
        heap.t_len = pgrx::varlena::varsize(header as *const pg_sys::varlena) as u32;
        heap.t_data = header;
        let tuple = Tuple::deform(desc, &mut heap);
        let out = f(&tuple);
        drop(tuple);
        pg_sys::DecrTupleDescRefCount(desc);
        out
    }
}

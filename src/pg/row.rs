//! A row of `audit.events` passed to a function as a composite value (`audit.hash_event(e)`,
//! `audit._export_line(format, e)`), read by column index of `event::COLUMNS`.

use crate::event;
use pgrx::{pg_sys, PgTupleDesc};

/// Deforms the composite datum `arg` and calls `f` with a reader of its columns (by the index
/// of `event::COLUMNS`, `None` for NULL). Raises an error when the row is not shaped like
/// `audit.events`.
///
/// # Safety
/// `arg` must be a non-NULL composite datum (a function argument of a row type); the datums
/// `f` is given live in the current memory context until it returns.
pub unsafe fn with_event_row<R>(
    arg: pg_sys::Datum,
    what: &str,
    f: impl FnOnce(&dyn Fn(usize) -> Option<pg_sys::Datum>) -> R,
) -> R {
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
    let attno = event::attnos(&PgTupleDesc::from_pg_unchecked(desc));
    pg_sys::DecrTupleDescRefCount(desc);
    let attno = attno.unwrap_or_else(|| pgrx::error!("{what} needs a row of audit.events"));
    f(&|c| (!nulls[attno[c]]).then(|| values[attno[c]]))
}

//! [`Trigger`]: what a trigger call is (its event, relation, arguments, row and transition
//! tables), read from PostgreSQL's `TriggerData`, and the row images of a statement's
//! transition tables that row capture records (src/capture/rows.rs).

use super::spi::Connection;
use super::tuple::Tuple;
use pgrx::prelude::*;
use pgrx::{pg_sys, PgMemoryContexts, PgTupleDesc};
use std::ffi::CStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

pub struct Trigger<'a> {
    td: &'a pg_sys::TriggerData,
}

impl<'a> Trigger<'a> {
    /// `td` must be the TriggerData of the current trigger call (fcinfo's context).
    pub(super) fn new(td: &'a pg_sys::TriggerData) -> Trigger<'a> {
        Trigger { td }
    }

    /// The trigger call of a `#[pg_trigger]` function.
    pub fn of(trigger: &'a PgTrigger<'a>) -> Trigger<'a> {
        Trigger { td: trigger.trigger_data() }
    }

    pub fn is_row(&self) -> bool {
        self.td.tg_event & pg_sys::TRIGGER_EVENT_ROW != 0
    }

    pub fn is_after(&self) -> bool {
        self.td.tg_event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_AFTER
    }

    pub fn op(&self) -> Op {
        match self.td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK {
            pg_sys::TRIGGER_EVENT_INSERT => Op::Insert,
            pg_sys::TRIGGER_EVENT_UPDATE => Op::Update,
            pg_sys::TRIGGER_EVENT_DELETE => Op::Delete,
            _ => Op::Truncate,
        }
    }

    pub fn has_old_table(&self) -> bool {
        !self.td.tg_oldtable.is_null()
    }

    pub fn has_new_table(&self) -> bool {
        !self.td.tg_newtable.is_null()
    }

    fn rel(&self) -> &pg_sys::RelationData {
        // SAFETY: a trigger call's relation is open and valid for the whole call.
        unsafe { &*self.td.tg_relation }
    }

    pub fn relid(&self) -> pg_sys::Oid {
        self.rel().rd_id
    }

    /// The schema of the trigger's table.
    pub fn namespace(&self) -> pg_sys::Oid {
        // SAFETY: rd_rel, the pg_class row of an open relation, is valid with it.
        unsafe { (*self.rel().rd_rel).relnamespace }
    }

    /// The descriptor of the table's rows.
    pub fn desc(&self) -> PgTupleDesc<'a> {
        // SAFETY: the relation's descriptor lives as long as the call; the wrapper does not free it.
        unsafe { PgTupleDesc::from_pg_unchecked(self.rel().rd_att) }
    }

    /// The trigger's arguments (as `CREATE TRIGGER ... (args)` gave them).
    pub fn args(&self) -> Vec<String> {
        // SAFETY: tg_trigger and its tgnargs strings are valid for the call.
        unsafe {
            let t = &*self.td.tg_trigger;
            if t.tgnargs <= 0 || t.tgargs.is_null() {
                return vec![];
            }
            std::slice::from_raw_parts(t.tgargs, t.tgnargs as usize)
                .iter()
                .map(|&a| CStr::from_ptr(a).to_string_lossy().into_owned())
                .collect()
        }
    }

    /// The row a row trigger fires for (the new row of an INSERT), deformed.
    pub fn row(&self) -> Tuple {
        assert!(self.is_row() && !self.td.tg_trigtuple.is_null(), "audit_ext: not a row trigger");
        // SAFETY: tg_trigtuple is a tuple of the relation, valid for the call.
        unsafe { Tuple::deform(self.rel().rd_att, self.td.tg_trigtuple) }
    }

    /// Registers `audit_images(o jsonb, n jsonb)` in `spi`: `to_jsonb` of each old row (when
    /// `old`) and each new row (when `new`) of the statement's transition tables, the n-th old
    /// row next to the n-th new one. Runs in the caller's security context: `to_jsonb` runs the
    /// column types' output functions and casts, the only code of others it runs (called
    /// directly: no SQL, no name lookup).
    ///
    /// PostgreSQL appends to both transition tables in one step per row, so reading them in
    /// step pairs each row's images (pairing them in SQL instead, row_number() on each side and
    /// a join, sorted both sides and took 2.1 s for a 100,000-row UPDATE that this captures in
    /// 1.4 s, measured here).
    pub fn register_images<'c>(&self, spi: &'c Connection, old: bool, new: bool) -> Images<'c> {
        let _ = spi; // the ENR is registered in the current (this) connection
        assert!((!old || self.has_old_table()) && (!new || self.has_new_table()), "audit_ext: no transition table");
        // SAFETY: the relation, its row type and its transition tables are valid for the
        // call. The tuplestore and descriptor are made in the current (SPI) context and
        // registered with SPI as an ephemeral named relation; Images ends the store.
        unsafe {
            let rel = self.rel();
            let rowdesc = rel.rd_att;
            let reltype = (*rel.rd_rel).reltype;
            let desc = pg_sys::CreateTemplateTupleDesc(2);
            pg_sys::TupleDescInitEntry(desc, 1, c"o".as_ptr(), pg_sys::JSONBOID, -1, 0);
            pg_sys::TupleDescInitEntry(desc, 2, c"n".as_ptr(), pg_sys::JSONBOID, -1, 0);
            let store = pg_sys::tuplestore_begin_heap(false, false, pg_sys::work_mem);
            // to_jsonb(anyelement) learns its argument's type from the call expression
            let mut flinfo: pg_sys::FmgrInfo = std::mem::zeroed();
            // (its fixed OID: looking the name up scans the table of built-in functions)
            let to_jsonb = pg_sys::Oid::from(pg_sys::F_TO_JSONB);
            pg_sys::fmgr_info(to_jsonb, &mut flinfo);
            let arg = pg_sys::makeNullConst(reltype, -1, pg_sys::InvalidOid);
            let args = pg_sys::lappend(std::ptr::null_mut(), arg.cast());
            flinfo.fn_expr = pg_sys::makeFuncExpr(
                to_jsonb,
                pg_sys::JSONBOID,
                args,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
            )
            .cast();
            let sources = [
                if old { self.td.tg_oldtable } else { std::ptr::null_mut() },
                if new { self.td.tg_newtable } else { std::ptr::null_mut() },
            ];
            let slots = sources.map(|_| pg_sys::MakeSingleTupleTableSlot(rowdesc, &pg_sys::TTSOpsMinimalTuple));
            // Our own read pointers, as NamedTuplestoreScan takes: other readers keep their positions.
            let pointers = sources.map(|ts| {
                if ts.is_null() {
                    return 0;
                }
                let p = pg_sys::tuplestore_alloc_read_pointer(ts, pg_sys::EXEC_FLAG_REWIND as i32);
                pg_sys::tuplestore_select_read_pointer(ts, p);
                pg_sys::tuplestore_rescan(ts);
                p
            });
            // the next image of side i into values/nulls; false when that side is exhausted
            let mut next = |i: usize, values: &mut [pg_sys::Datum; 2], nulls: &mut [bool; 2]| -> bool {
                if sources[i].is_null() {
                    nulls[i] = true;
                    return true;
                }
                pg_sys::tuplestore_select_read_pointer(sources[i], pointers[i]);
                if !pg_sys::tuplestore_gettupleslot(sources[i], true, false, slots[i]) {
                    return false;
                }
                let row = pg_sys::ExecFetchSlotHeapTupleDatum(slots[i]);
                values[i] = pg_sys::FunctionCall1Coll(&mut flinfo, pg_sys::InvalidOid, row);
                nulls[i] = false;
                true
            };
            // Each row's datums are made in a context reset every 1,000 rows (the tuplestore
            // keeps its own copy, spilling to disk past work_mem).
            let mut rows = PgMemoryContexts::new("audit_ext capture images");
            let mut n = 0usize;
            loop {
                let more = rows.switch_to(|_| {
                    let mut values = [pg_sys::Datum::from(0); 2];
                    let mut nulls = [true; 2];
                    if !(next(0, &mut values, &mut nulls) && next(1, &mut values, &mut nulls)) {
                        return false;
                    }
                    pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                    true
                });
                if !more {
                    break;
                }
                n += 1;
                if n.is_multiple_of(1000) {
                    // a tuple read back from a tuplestore spilled to disk is allocated in the
                    // current context, so the slots may point into the one about to be reset:
                    // clear them first
                    for slot in slots {
                        pg_sys::ExecClearTuple(slot);
                    }
                    rows.reset();
                }
            }
            for slot in slots {
                pg_sys::ExecDropSingleTupleTableSlot(slot);
            }
            let enr = pg_sys::palloc0(std::mem::size_of::<pg_sys::EphemeralNamedRelationData>())
                as *mut pg_sys::EphemeralNamedRelationData;
            (*enr).md.name = pg_sys::pstrdup(c"audit_images".as_ptr());
            (*enr).md.reliddesc = pg_sys::InvalidOid;
            (*enr).md.tupdesc = desc;
            (*enr).md.enrtype = pg_sys::EphemeralNameRelationType::ENR_NAMED_TUPLESTORE;
            (*enr).md.enrtuples = n as f64;
            (*enr).reldata = store as *mut std::ffi::c_void;
            if pg_sys::SPI_register_relation(enr) != pg_sys::SPI_OK_REL_REGISTER as i32 {
                pgrx::error!("audit_ext: registering the row images failed");
            }
            Images { store, _spi: std::marker::PhantomData }
        }
    }
}

/// The row images registered by [`Trigger::register_images`]; their store ends when this is
/// dropped (before the SPI connection that reads them closes).
pub struct Images<'c> {
    store: *mut pg_sys::Tuplestorestate,
    _spi: std::marker::PhantomData<&'c ()>,
}

impl Drop for Images<'_> {
    fn drop(&mut self) {
        // SAFETY: the store begun in register_images, ended once.
        unsafe { pg_sys::tuplestore_end(self.store) }
    }
}

/// What a BEFORE row trigger returns: the row as it came, or a new one.
pub enum RowResult {
    Keep,
    Replace(Tuple),
}

/// The result of a `#[pg_trigger]` BEFORE row trigger, as pgrx takes it.
pub fn row_result<'p>(trigger: &'p PgTrigger<'p>, result: RowResult) -> PgHeapTuple<'p, AllocatedByPostgres> {
    let td = trigger.trigger_data();
    // SAFETY: the trigger's own tuple, or one formed from a Tuple of the trigger's relation
    // (Trigger::row), both valid for the rest of the call with the relation's descriptor.
    unsafe {
        let desc = PgTupleDesc::from_pg_unchecked((*td.tg_relation).rd_att);
        let heap = match result {
            RowResult::Keep => td.tg_trigtuple,
            RowResult::Replace(mut t) => t.form(),
        };
        PgHeapTuple::from_heap_tuple(desc, heap)
    }
}

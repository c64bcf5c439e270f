//! Row capture (sql/capture/rows.sql): one SPI statement per captured *statement*, never one per row. The trigger runs a
//! kept `INSERT INTO audit.events ... SELECT ... FROM <transition table>` plan: `to_jsonb` of
//! each row, excluded columns removed, masked columns replaced, UPDATEs that changed nothing
//! skipped; the chain trigger on audit.events then chains and hashes each row in C. Plans are
//! kept per (table, operation) and dropped when the table's relcache entry is invalidated
//! (ALTER TABLE, CREATE INDEX, a new key, track() replacing the triggers).

use super::CaptureError;
use crate::error::raise;
use crate::gucs;
use crate::pg::spi;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{IntoDatum, PgMemoryContexts};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};

//
// Where the time of a captured 100,000-row INSERT goes (measured here, ms): the user's own
// insert 263; the same rows written straight into audit.events 1,584, of which its six
// indexes ~800, the wider heap rows with jsonb ~600 and chaining and hashing ~180. Capture
// itself (transition table, to_jsonb, one SPI statement) adds ~15% on top of that floor.

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    /// The action of the events this operation records (also spelled in `prepare`'s SQL).
    fn action(self) -> &'static str {
        match self {
            Op::Insert => "row.insert",
            Op::Update => "row.update",
            Op::Delete => "row.delete",
            Op::Truncate => "table.truncate",
        }
    }
}

/// What a kept plan needs besides itself: the tracked table the rows are recorded under
/// (the table itself, or the root of the partitioned table it belongs to) and its key columns.
struct Entry {
    plan: pg_sys::SPIPlanPtr,
    root: pg_sys::Oid,
    keys: Vec<String>,
}

thread_local! {
    static PLANS: RefCell<HashMap<(pg_sys::Oid, Op), Entry>> = RefCell::new(HashMap::new());
    /// Plans whose table changed; freed at the next capture (not inside the inval callback).
    static STALE: RefCell<Vec<pg_sys::SPIPlanPtr>> = const { RefCell::new(Vec::new()) };
}

/// The tracked table's settings, as track() wrote them into the trigger's arguments:
/// `exclude_columns` and `mask_columns` as JSON arrays, `skip_unchanged` as true/false.
struct Settings {
    exclude: Vec<String>,
    mask: Vec<String>,
    skip_unchanged: bool,
}

unsafe fn settings(trigger: &pg_sys::Trigger, table: &str) -> Settings {
    let bad = |problem: String| -> ! { raise(CaptureError::BadTriggerArgs { table: table.to_string(), problem }) };
    if trigger.tgnargs != 3 {
        bad(format!("expected 3, found {}; run audit.track() again", trigger.tgnargs));
    }
    let args = std::slice::from_raw_parts(trigger.tgargs, 3);
    let arg = |i: usize| CStr::from_ptr(args[i]).to_string_lossy().into_owned();
    let list = |i: usize| -> Vec<String> {
        serde_json::from_str(&arg(i))
            .unwrap_or_else(|e| bad(format!("argument {} is not a JSON array of names: {e}", i + 1)))
    };
    Settings { exclude: list(0), mask: list(1), skip_unchanged: arg(2) == "true" }
}

finfo_v1!(pg_finfo_audit_capture_rows);

/// `audit.capture_rows()`: the AFTER ... FOR EACH STATEMENT trigger that audit.track() puts on
/// a table (one per operation). Two steps, so that no code of the table's owner or writer
/// runs with elevated rights (src/pg/elevate.rs):
/// 1. as the role whose statement fired it: the row images (`to_jsonb` of each row, which
///    runs the output functions and casts of the column types) into a tuplestore;
/// 2. as the extension's owner, security-restricted: one INSERT ... SELECT of those images
///    into audit.events (the writer of the table needs no privilege on audit.events).
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn audit_capture_rows(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let ctx = (*fcinfo).context;
    if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
        raise(CaptureError::NotCaptureTrigger("it is a trigger function; audit.track() installs it"));
    }
    let td = ctx as *mut pg_sys::TriggerData;
    let event = (*td).tg_event;
    if event & pg_sys::TRIGGER_EVENT_ROW != 0 || event & pg_sys::TRIGGER_EVENT_TIMINGMASK != pg_sys::TRIGGER_EVENT_AFTER
    {
        raise(CaptureError::NotCaptureTrigger("it must be an AFTER ... FOR EACH STATEMENT trigger"));
    }
    let op = match event & pg_sys::TRIGGER_EVENT_OPMASK {
        pg_sys::TRIGGER_EVENT_INSERT => Op::Insert,
        pg_sys::TRIGGER_EVENT_UPDATE => Op::Update,
        pg_sys::TRIGGER_EVENT_DELETE => Op::Delete,
        _ => Op::Truncate,
    };
    let has_tables = match op {
        Op::Insert => !(*td).tg_newtable.is_null(),
        Op::Update => !(*td).tg_newtable.is_null() && !(*td).tg_oldtable.is_null(),
        Op::Delete => !(*td).tg_oldtable.is_null(),
        Op::Truncate => true,
    };
    if !has_tables {
        raise(CaptureError::NotCaptureTrigger("the trigger lacks its transition tables; run audit.track() again"));
    }
    if gucs::restoring() {
        return pg_sys::Datum::from(0); // loading a dump: its rows are not new changes
    }
    let rel = (*td).tg_relation;
    let relid = (*rel).rd_id;
    let settings = settings(&*(*td).tg_trigger, &qualified_name(relid));

    let spi = spi::Connection::open();
    STALE.with(|s| {
        s.borrow_mut().drain(..).for_each(|p| {
            pg_sys::SPI_freeplan(p);
        })
    });
    // step 1, in the caller's security context
    let images = if op == Op::Truncate { std::ptr::null_mut() } else { register_images(td, op) };
    // step 2: audit_ext's own statement over the images (and its reads of audit_ext's
    // tables: key columns, retention policies), as the extension's owner
    let rc = crate::pg::elevate::as_owner(|| {
        let (plan, root, keys) = PLANS.with(|p| {
            if let Some(e) = p.borrow().get(&(relid, op)) {
                return (e.plan, e.root, e.keys.clone());
            }
            let (root, keys) = table_identity(relid);
            let plan = prepare(op, keys.len(), !settings.mask.is_empty(), root != relid);
            p.borrow_mut().insert((relid, op), Entry { plan, root, keys: keys.clone() });
            (plan, root, keys)
        });
        let values = [
            qualified_name(root).into_datum(),
            settings.exclude.into_datum(),
            settings.mask.into_datum(),
            keys.into_datum(),
            settings.skip_unchanged.into_datum(),
            qualified_name(relid).into_datum(),
            Some(pg_sys::Datum::from(crate::retention::policies::class_of(op.action()))),
        ];
        spi.execute(plan, &values, false)
    });
    if rc != pg_sys::SPI_OK_INSERT as i32 {
        pgrx::error!("audit_ext: recording the captured rows failed ({rc})");
    }
    if !images.is_null() {
        pg_sys::tuplestore_end(images);
    }
    drop(spi);
    pg_sys::Datum::from(0)
}

finfo_v1!(pg_finfo_audit_track);

/// `audit.track(tbl, exclude_columns, mask_columns, operations, skip_unchanged)`: checks, for
/// the real caller, that it may read the table (SELECT on it or membership in its owner, and
/// USAGE on its schema): tracking copies the table's rows into the log, which the caller's
/// readers then see. Then runs `audit._track(...)` (sql/capture/rows.sql, executable by the
/// extension's owner only) as the owner. A C function, not SECURITY DEFINER, because only
/// before the switch is the caller known.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn audit_track(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let args = (*fcinfo).args.as_slice(5);
    if !args[0].isnull {
        let user = pg_sys::GetUserId();
        let relid = pg_sys::Oid::from(args[0].value.value() as u32);
        let may = Spi::connect(|client| {
            client
                .select(
                    "SELECT (pg_catalog.has_table_privilege($1, c.oid, 'SELECT') \
                             OR pg_catalog.pg_has_role($1, c.relowner, 'USAGE')) \
                            AND pg_catalog.has_schema_privilege($1, c.relnamespace, 'USAGE') \
                     FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $2",
                    Some(1),
                    &[user.into(), relid.into()],
                )
                .ok()
                .and_then(|r| r.first().get_one::<bool>().ok().flatten())
        });
        if may == Some(false) {
            let role = CStr::from_ptr(pg_sys::GetUserNameFromId(user, false)).to_string_lossy().into_owned();
            raise(CaptureError::MayNotRead { table: qualified_name(relid), role });
        }
    }
    let types =
        [pg_sys::REGCLASSOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::BOOLOID];
    let values: Vec<(pg_sys::Oid, Option<pg_sys::Datum>)> =
        args.iter().zip(types).map(|(a, t)| (t, (!a.isnull).then_some(a.value))).collect();
    crate::pg::elevate::as_owner(|| {
        let spi = spi::Connection::open();
        let rc = spi.run(c"SELECT audit._track($1, $2, $3, $4, $5)", &values, false);
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            pgrx::error!("audit_ext: audit._track failed ({rc})");
        }
    });
    pg_sys::Datum::from(0)
}

/// The plan for one operation. Parameters: $1 object_name, $2 exclude_columns,
/// $3 mask_columns, $4 key columns, $5 skip_unchanged, $6 the partition written (only used
/// for TRUNCATE of a partition, which names it in `new`), $7 the retention class of the
/// operation's action (it picks the partition of audit.events, crate::retention). The text depends only on the
/// operation, the number of key columns, whether anything is masked and whether the table is
/// a partition: no name or value is spliced in.
unsafe fn prepare(op: Op, nkeys: usize, masked: bool, partition: bool) -> pg_sys::SPIPlanPtr {
    // object_id: one key column as its text; several as a JSON array of their values.
    let key = |j: &str| match nkeys {
        0 => "NULL::text".to_string(),
        1 => format!("{j} ->> $4[1]"),
        n => format!(
            "jsonb_build_array({})::text",
            (1..=n).map(|i| format!("{j} -> $4[{i}]")).collect::<Vec<_>>().join(", ")
        ),
    };
    let image = |x: &str| if masked { format!("audit._mask({x}, $3)") } else { x.to_string() };
    let cols =
        "INSERT INTO audit.events (retention_class, action, module, object_type, object_name, object_id, old, new)";
    let sql = match op {
        // audit_images (register_images) holds each row's images: o the old, n the new
        Op::Insert => format!(
            "{cols} SELECT $7, 'row.insert', 'capture', 'table', $1, {}, NULL, {} \
             FROM (SELECT i.n AS j FROM audit_images i OFFSET 0) n",
            key("n.j"),
            image("(n.j - $2)")
        ),
        Op::Delete => format!(
            "{cols} SELECT $7, 'row.delete', 'capture', 'table', $1, {}, {}, NULL \
             FROM (SELECT i.o AS j FROM audit_images i OFFSET 0) o",
            key("o.j"),
            image("(o.j - $2)")
        ),
        Op::Update => format!(
            "{cols} SELECT $7, 'row.update', 'capture', 'table', $1, {}, {}, {} \
             FROM (SELECT i.o - $2 AS ox, i.n - $2 AS nx, i.n AS nj FROM audit_images i OFFSET 0) u \
             WHERE NOT $5 OR u.ox IS DISTINCT FROM u.nx",
            key("u.nj"),
            image("u.ox"),
            image("u.nx")
        ),
        Op::Truncate => format!(
            "{cols} VALUES ($7, 'table.truncate', 'capture', 'table', $1, NULL, NULL, {})",
            if partition { "jsonb_build_object('partition', $6)" } else { "NULL" }
        ),
    };
    let sql = CString::new(sql).unwrap();
    let types = [
        pg_sys::TEXTOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::BOOLOID,
        pg_sys::TEXTOID,
        pg_sys::INT4OID,
    ];
    spi::kept_plan(&sql, &types)
}

/// Step 1 of capture, in the caller's security context: registers `audit_images(o, n)`, two
/// jsonb columns holding `to_jsonb` of each old row (UPDATE, DELETE) and each new row
/// (INSERT, UPDATE), the n-th old row next to the n-th new one. PostgreSQL appends to both
/// transition tables in one step per row, so reading them in step pairs each row's images
/// (pairing them in SQL instead, row_number() on each side and a join, sorted both sides and
/// took 2.1 s for a 100,000-row UPDATE that this captures in 1.4 s, measured here).
/// `to_jsonb` is called directly (no SQL, no name lookup), so the only code of others it runs
/// is the column types' own output functions and casts, as the caller.
unsafe fn register_images(td: *mut pg_sys::TriggerData, op: Op) -> *mut pg_sys::Tuplestorestate {
    let rel = (*td).tg_relation;
    let rowdesc = (*rel).rd_att;
    let reltype = (*(*rel).rd_rel).reltype;
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
        if op == Op::Insert { std::ptr::null_mut() } else { (*td).tg_oldtable },
        if op == Op::Delete { std::ptr::null_mut() } else { (*td).tg_newtable },
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
    // next image of side i: Some(None) when that side is absent, None when it is exhausted
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
    // Each row's datums are made in a context reset every 1,000 rows (the tuplestore keeps
    // its own copy, spilling to disk past work_mem).
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
            // a tuple read back from a tuplestore spilled to disk is allocated in the current
            // context, so the slots may point into the one about to be reset: clear them first
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
    store
}

/// The tracked table the rows of `relid` are recorded under (the root of its partition tree, or
/// itself) and how its rows are identified (its key columns, in index order; none: object_id is
/// NULL). The same SQL functions as audit.tracked_tables and audit.row_history, so the three
/// can never disagree; read once per table and operation, then kept with the plan.
unsafe fn table_identity(relid: pg_sys::Oid) -> (pg_sys::Oid, Vec<String>) {
    Spi::connect(|client| {
        let row = client
            .select(
                "SELECT audit._root($1)::oid, coalesce(audit._key_columns(audit._root($1)), '{}')",
                Some(1),
                &[relid.into()],
            )
            .unwrap_or_else(|e| pgrx::error!("audit_ext: reading the key columns failed: {e}"))
            .first();
        let root = row.get::<pg_sys::Oid>(1).ok().flatten().unwrap_or(relid);
        (root, row.get::<Vec<String>>(2).ok().flatten().unwrap_or_default())
    })
}

/// `"Schema"."Table"` as `format('%I.%I')` writes it: the form DDL events use too. Looked up
/// on every statement (a syscache hit), so a renamed table is recorded under its new name.
unsafe fn qualified_name(relid: pg_sys::Oid) -> String {
    let ns = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
    let q = pg_sys::quote_qualified_identifier(ns, pg_sys::get_rel_name(relid));
    CStr::from_ptr(q).to_string_lossy().into_owned()
}

#[pgrx::pg_guard]
pub(super) unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    PLANS.with(|p| {
        let mut p = p.borrow_mut();
        let gone: Vec<_> = p
            .iter()
            .filter(|((r, _), e)| relid == pg_sys::InvalidOid || *r == relid || e.root == relid)
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(e) = p.remove(&k) {
                STALE.with(|s| s.borrow_mut().push(e.plan));
            }
        }
    });
}

//! Change capture: row changes of tracked tables (statement-level triggers with transition
//! tables), schema changes (event triggers in sql/capture.sql) and, when the library is
//! preloaded, role changes (a utility hook).
//!
//! Rows: one SPI statement per captured *statement*, never one per row. The trigger runs a
//! kept `INSERT INTO audit.events ... SELECT ... FROM <transition table>` plan: `to_jsonb` of
//! each row, excluded columns removed, masked columns replaced, UPDATEs that changed nothing
//! skipped; the chain trigger on audit.events then chains and hashes each row in C. Plans are
//! kept per (table, operation) and dropped when the table's relcache entry is invalidated
//! (ALTER TABLE, CREATE INDEX, a new key, track() replacing the triggers).

use crate::error::raise;
use crate::gucs;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{IntoDatum, PgMemoryContexts};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};

#[derive(thiserror::Error, Debug)]
pub enum CaptureError {
    #[error("audit.capture_rows() fired in the wrong way: {0}")]
    NotCaptureTrigger(&'static str),
    #[error("the capture trigger on {table} has invalid arguments: {problem}")]
    BadTriggerArgs { table: String, problem: String },
    #[error("permission denied to track {table}: {role} may not read it")]
    MayNotRead { table: String, role: String },
}

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for CaptureError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        match self {
            CaptureError::NotCaptureTrigger(_) => pgrx::PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            CaptureError::BadTriggerArgs { .. } => pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            CaptureError::MayNotRead { .. } => pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            CaptureError::NotCaptureTrigger(_) => "Start capture with audit.track(tbl); do not attach audit.capture_rows() by hand.".into(),
            CaptureError::BadTriggerArgs { .. } => "Run audit.track() on the table again to rebuild its capture triggers.".into(),
            CaptureError::MayNotRead { table, role } => format!("Tracking copies the rows into the log. Its owner can GRANT SELECT ON {table} TO {role} (and USAGE on its schema), or call audit.track() itself."),
        })
    }
}

/// Whether DDL capture is on. Read here rather than with `current_setting()` in PL/pgSQL:
/// calling into the library loads it, and loading turns any `audit_ext.capture_ddl`
/// placeholder an unprivileged role set beforehand into the real, superuser-only setting
/// (PostgreSQL discards the unprivileged value). So no role but a superuser can switch capture off.
#[pg_extern(stable, parallel_safe, strict)]
fn capture_ddl_enabled() -> bool {
    gucs::capturing_ddl()
}

/// Whether a dump is being restored (`audit_ext.restore`): the DDL guards of tracked tables
/// and the upkeep of their capture triggers stand aside while pg_restore rebuilds them.
#[pg_extern(stable, parallel_safe, strict, name = "_restoring")]
fn restoring() -> bool {
    gucs::restoring()
}

/// Whether role changes are captured: the utility hook is installed only when the library is
/// loaded through `shared_preload_libraries` (a per-session load would miss every session that
/// never called into it).
pub fn role_capture_active() -> bool {
    ROLE_HOOK_ACTIVE.with(|a| *a.borrow())
}

// ---- rows --------------------------------------------------------------------------------
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
    static ROLE_HOOK_ACTIVE: RefCell<bool> = const { RefCell::new(false) };
    static PREV_UTILITY: RefCell<pg_sys::ProcessUtility_hook_type> = const { RefCell::new(None) };
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
/// runs with elevated rights (src/elevate.rs):
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

    if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
        pgrx::error!("audit_ext: SPI_connect failed");
    }
    STALE.with(|s| {
        s.borrow_mut().drain(..).for_each(|p| {
            pg_sys::SPI_freeplan(p);
        })
    });
    // step 1, in the caller's security context
    let images = if op == Op::Truncate { std::ptr::null_mut() } else { register_images(td, op) };
    // step 2: audit_ext's own statement over the images (and its reads of audit_ext's
    // tables: key columns, retention policies), as the extension's owner
    let rc = crate::elevate::as_owner(|| {
        let (plan, root, keys) = PLANS.with(|p| {
            if let Some(e) = p.borrow().get(&(relid, op)) {
                return (e.plan, e.root, e.keys.clone());
            }
            let (root, keys) = table_identity(relid);
            let plan = prepare(op, keys.len(), !settings.mask.is_empty(), root != relid);
            p.borrow_mut().insert((relid, op), Entry { plan, root, keys: keys.clone() });
            (plan, root, keys)
        });
        let mut values = [
            qualified_name(root).into_datum().unwrap(),
            settings.exclude.into_datum().unwrap(),
            settings.mask.into_datum().unwrap(),
            keys.into_datum().unwrap(),
            settings.skip_unchanged.into_datum().unwrap(),
            qualified_name(relid).into_datum().unwrap(),
            pg_sys::Datum::from(crate::retention::class_of(op.action())),
        ];
        let nulls = [b' ' as c_char; 7];
        pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 0)
    });
    if rc != pg_sys::SPI_OK_INSERT as i32 {
        pgrx::error!("audit_ext: recording the captured rows failed ({rc})");
    }
    if !images.is_null() {
        pg_sys::tuplestore_end(images);
    }
    pg_sys::SPI_finish();
    pg_sys::Datum::from(0)
}

finfo_v1!(pg_finfo_audit_track);

/// `audit.track(tbl, exclude_columns, mask_columns, operations, skip_unchanged)`: checks, for
/// the real caller, that it may read the table (SELECT on it or membership in its owner, and
/// USAGE on its schema): tracking copies the table's rows into the log, which the caller's
/// readers then see. Then runs `audit._track(...)` (sql/capture_rows.sql, executable by the
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
    let mut values: Vec<pg_sys::Datum> = args.iter().map(|a| a.value).collect();
    let nulls: Vec<c_char> = args.iter().map(|a| if a.isnull { b'n' } else { b' ' } as c_char).collect();
    crate::elevate::as_owner(|| {
        if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
            pgrx::error!("audit_ext: SPI_connect failed");
        }
        let mut t = types;
        let rc = pg_sys::SPI_execute_with_args(
            c"SELECT audit._track($1, $2, $3, $4, $5)".as_ptr(),
            5,
            t.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_ptr(),
            false,
            1,
        );
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            pgrx::error!("audit_ext: audit._track failed ({rc})");
        }
        pg_sys::SPI_finish();
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
    crate::spi::kept_plan(&sql, &types)
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
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
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

// ---- roles -------------------------------------------------------------------------------

#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn utility_hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // Described before running: ALTER ROLE ... RENAME and DROP change what the names mean.
    let described = role_events((*pstmt).utilityStmt);
    match PREV_UTILITY.with(|p| *p.borrow()) {
        Some(prev) => prev(pstmt, query, read_only_tree, context, params, env, dest, qc),
        None => pg_sys::standard_ProcessUtility(pstmt, query, read_only_tree, context, params, env, dest, qc),
    }
    if !described.is_empty() {
        record_role_events(described);
    }
}

/// (action, role name, new) for each role a statement changes; empty for other statements.
unsafe fn role_events(node: *mut pg_sys::Node) -> Vec<(String, String, serde_json::Value)> {
    use serde_json::json;
    if node.is_null() {
        return vec![];
    }
    let cstr =
        |p: *const c_char| if p.is_null() { String::new() } else { CStr::from_ptr(p).to_string_lossy().into_owned() };
    let spec = |r: *mut pg_sys::RoleSpec| -> String {
        if r.is_null() {
            return String::new();
        }
        match (*r).roletype {
            pg_sys::RoleSpecType::ROLESPEC_CSTRING => cstr((*r).rolename),
            pg_sys::RoleSpecType::ROLESPEC_CURRENT_ROLE => "CURRENT_ROLE".into(),
            pg_sys::RoleSpecType::ROLESPEC_CURRENT_USER => "CURRENT_USER".into(),
            pg_sys::RoleSpecType::ROLESPEC_SESSION_USER => "SESSION_USER".into(),
            _ => "PUBLIC".into(),
        }
    };
    // Option names only, and the values of those that are not secrets (never a password).
    let options = |l: *mut pg_sys::List| -> serde_json::Value {
        let list = pgrx::PgList::<pg_sys::DefElem>::from_pg(l);
        let mut m = serde_json::Map::new();
        for d in list.iter_ptr() {
            let name = cstr((*d).defname);
            let arg = (*d).arg;
            let v = if name == "password" {
                json!("(set)")
            } else if !arg.is_null() && (*arg).type_ == pg_sys::NodeTag::T_Boolean {
                json!((*(arg as *mut pg_sys::Boolean)).boolval)
            } else if !arg.is_null() && (*arg).type_ == pg_sys::NodeTag::T_Integer {
                json!((*(arg as *mut pg_sys::Integer)).ival)
            } else if !arg.is_null() && (*arg).type_ == pg_sys::NodeTag::T_List {
                let items = pgrx::PgList::<pg_sys::Node>::from_pg(arg as *mut pg_sys::List);
                json!(items
                    .iter_ptr()
                    .map(|n| if (*n).type_ == pg_sys::NodeTag::T_RoleSpec {
                        role_spec_name(n as *mut pg_sys::RoleSpec)
                    } else {
                        "(list)".into()
                    })
                    .collect::<Vec<_>>())
            } else if !arg.is_null() && (*arg).type_ == pg_sys::NodeTag::T_String {
                json!(cstr((*(arg as *mut pg_sys::String)).sval))
            } else {
                json!(true)
            };
            m.insert(name, v);
        }
        serde_json::Value::Object(m)
    };
    match (*node).type_ {
        pg_sys::NodeTag::T_CreateRoleStmt => {
            let s = node as *mut pg_sys::CreateRoleStmt;
            let role = cstr((*s).role);
            let mut out = vec![("role.create".to_string(), role.clone(), json!({"options": options((*s).options)}))];
            // memberships the statement grants: IN ROLE g (role joins g), ROLE/ADMIN u (u joins role)
            for (name, list) in role_lists((*s).options) {
                match name.as_str() {
                    "addroleto" => out.extend(list.iter().map(|g| grant_event(true, &role, g, false))),
                    "rolemembers" | "adminmembers" => {
                        out.extend(list.iter().map(|m| grant_event(true, m, &role, name == "adminmembers")))
                    }
                    _ => {}
                }
            }
            out
        }
        pg_sys::NodeTag::T_AlterRoleStmt => {
            let s = node as *mut pg_sys::AlterRoleStmt;
            let role = spec((*s).role);
            let members: Vec<String> =
                role_lists((*s).options).into_iter().filter(|(n, _)| n == "rolemembers").flat_map(|(_, l)| l).collect();
            if !members.is_empty() {
                // ALTER GROUP role ADD USER / DROP USER members: action +1 adds, -1 drops
                let grant = (*s).action >= 0;
                return members.iter().map(|m| grant_event(grant, m, &role, false)).collect();
            }
            vec![("role.alter".into(), role, json!({"options": options((*s).options)}))]
        }
        pg_sys::NodeTag::T_AlterSystemStmt => {
            let s = node as *mut pg_sys::AlterSystemStmt;
            let set = (*s).setstmt;
            let setting = if set.is_null() || (*set).name.is_null() { "ALL".into() } else { cstr((*set).name) };
            vec![("setting.alter_system".into(), setting.clone(), json!({"setting": setting, "scope": "system"}))]
        }
        pg_sys::NodeTag::T_AlterDatabaseSetStmt => {
            let s = node as *mut pg_sys::AlterDatabaseSetStmt;
            let set = (*s).setstmt;
            let setting = if set.is_null() || (*set).name.is_null() { "ALL".into() } else { cstr((*set).name) };
            vec![(
                "setting.alter_database".into(),
                setting.clone(),
                json!({"setting": setting, "scope": "database", "database": cstr((*s).dbname)}),
            )]
        }
        pg_sys::NodeTag::T_AlterRoleSetStmt => {
            let s = node as *mut pg_sys::AlterRoleSetStmt;
            let set = (*s).setstmt;
            let setting = if set.is_null() { String::new() } else { cstr((*set).name) };
            let db = cstr((*s).database);
            let role = if (*s).role.is_null() { "ALL".into() } else { spec((*s).role) };
            vec![(
                "role.set".into(),
                role,
                json!({"setting": setting, "database": if db.is_empty() { serde_json::Value::Null } else { json!(db) }}),
            )]
        }
        pg_sys::NodeTag::T_DropRoleStmt => {
            let s = node as *mut pg_sys::DropRoleStmt;
            let list = pgrx::PgList::<pg_sys::RoleSpec>::from_pg((*s).roles);
            list.iter_ptr().map(|r| ("role.drop".to_string(), spec(r), json!({}))).collect()
        }
        pg_sys::NodeTag::T_GrantRoleStmt => {
            let s = node as *mut pg_sys::GrantRoleStmt;
            let granted: Vec<String> = pgrx::PgList::<pg_sys::AccessPriv>::from_pg((*s).granted_roles)
                .iter_ptr()
                .map(|p| cstr((*p).priv_name))
                .collect();
            let grantees: Vec<String> =
                pgrx::PgList::<pg_sys::RoleSpec>::from_pg((*s).grantee_roles).iter_ptr().map(spec).collect();
            let action = if (*s).is_grant { "role.grant" } else { "role.revoke" };
            grantees
                .iter()
                .map(|g| (action.to_string(), g.clone(), json!({"roles": granted, "admin_option": (*s).admin_opt})))
                .collect()
        }
        pg_sys::NodeTag::T_RenameStmt => {
            let s = node as *mut pg_sys::RenameStmt;
            if (*s).renameType != pg_sys::ObjectType::OBJECT_ROLE {
                return vec![];
            }
            vec![("role.rename".into(), cstr((*s).subname), json!({"new_name": cstr((*s).newname)}))]
        }
        _ => vec![],
    }
}

/// The role lists among CREATE/ALTER ROLE options (`addroleto`, `rolemembers`,
/// `adminmembers`): (option name, role names).
unsafe fn role_lists(l: *mut pg_sys::List) -> Vec<(String, Vec<String>)> {
    let mut out = vec![];
    for d in pgrx::PgList::<pg_sys::DefElem>::from_pg(l).iter_ptr() {
        let name = CStr::from_ptr((*d).defname).to_string_lossy().into_owned();
        let arg = (*d).arg;
        if matches!(name.as_str(), "addroleto" | "rolemembers" | "adminmembers")
            && !arg.is_null()
            && (*arg).type_ == pg_sys::NodeTag::T_List
        {
            let names = pgrx::PgList::<pg_sys::RoleSpec>::from_pg(arg as *mut pg_sys::List)
                .iter_ptr()
                .map(|r| role_spec_name(r))
                .collect();
            out.push((name, names));
        }
    }
    out
}

unsafe fn role_spec_name(r: *mut pg_sys::RoleSpec) -> String {
    if r.is_null() {
        return String::new();
    }
    match (*r).roletype {
        pg_sys::RoleSpecType::ROLESPEC_CSTRING if !(*r).rolename.is_null() => {
            CStr::from_ptr((*r).rolename).to_string_lossy().into_owned()
        }
        pg_sys::RoleSpecType::ROLESPEC_CURRENT_ROLE => "CURRENT_ROLE".into(),
        pg_sys::RoleSpecType::ROLESPEC_CURRENT_USER => "CURRENT_USER".into(),
        pg_sys::RoleSpecType::ROLESPEC_SESSION_USER => "SESSION_USER".into(),
        _ => "PUBLIC".into(),
    }
}

/// A `role.grant` / `role.revoke` event: `member` gains or loses membership in `group`, in
/// the form GRANT records it (the grantee as the object, the roles granted in `new`).
fn grant_event(grant: bool, member: &str, group: &str, admin: bool) -> (String, String, serde_json::Value) {
    let action = if grant { "role.grant" } else { "role.revoke" };
    (action.into(), member.into(), serde_json::json!({"roles": [group], "admin_option": admin}))
}

/// Records role events in the current database, when audit_ext is installed in it (and not
/// being created: its script creates roles before audit.events exists) and DDL capture is on.
/// Inserted as the extension's owner (the role running CREATE ROLE needs no privilege on
/// audit.events; the actor recorded is still the session user) through [`crate::elevate`]:
/// pinned search path, typed parameters, a security-restricted operation. Any login role can
/// reach this hook (`ALTER ROLE CURRENT_USER PASSWORD ...`), so nothing here may resolve a
/// name through the caller's path or run the caller's code.
unsafe fn record_role_events(events: Vec<(String, String, serde_json::Value)>) {
    if !gucs::capturing_ddl()
        || !pg_sys::IsTransactionState()
        || pg_sys::creating_extension
        || pg_sys::get_extension_oid(c"audit_ext".as_ptr(), true) == pg_sys::InvalidOid
    {
        return;
    }
    crate::elevate::as_owner(|| {
        for (action, role, new) in events {
            let module = if action.starts_with("setting.") { "ddl" } else { "role" };
            let object_type = if action.starts_with("setting.") { "setting" } else { "role" };
            Spi::run_with_args(
                "SELECT audit._event($1, $2, $3, $4, $4, NULL, $5)",
                &[
                    action.as_str().into(),
                    module.into(),
                    object_type.into(),
                    role.as_str().into(),
                    pgrx::JsonB(new).into(),
                ],
            )
            .unwrap_or_else(|e| pgrx::error!("audit_ext: recording a role change failed: {e}"));
        }
    });
}

/// `audit.status()`: what is active in this session, for operators and auditors.
#[pg_extern(stable, parallel_restricted, strict)]
#[search_path(pg_catalog, pg_temp)]
fn status() -> TableIterator<'static, (name!(feature, String), name!(active, bool), name!(detail, String))> {
    let preload = role_capture_active();
    let ddl = gucs::capturing_ddl();
    let tracked: i64 = crate::verify::read_text("SELECT count(*)::text FROM audit.tracked_tables")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let partitions = crate::verify::read_text(
        "SELECT format('%s partition(s) in %s retention class(es), the last ending %s; %s event(s) waiting in the default partition', \
                (SELECT count(*) FROM audit.partitions WHERE dropped_at IS NULL), \
                (SELECT count(*) FROM audit.retention_policies), \
                coalesce((SELECT to_char(min(m) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' \
                          FROM (SELECT max(to_at) AS m FROM audit.partitions WHERE dropped_at IS NULL GROUP BY class) c), 'never'), \
                (SELECT count(*) FROM ONLY audit.events_default))",
    )
    .unwrap_or_default();
    let worker = gucs::PARTITION_WORKER.get();
    let rows = vec![
        ("chain".to_string(), true, format!("{} chain(s) (audit_ext.chains)", gucs::CHAINS.get())),
        (
            "partitions".to_string(),
            worker,
            format!(
                "{partitions}; {}",
                if worker {
                    "writers start the partition worker when needed"
                } else {
                    "worker off (audit_ext.partition_worker): run audit.ensure_partitions() regularly"
                }
            ),
        ),
        ("row_capture".to_string(), tracked > 0, format!("{tracked} tracked table(s); see audit.tracked_tables")),
        (
            "ddl_capture".to_string(),
            ddl,
            if ddl {
                "event triggers record DDL and GRANT/REVOKE"
            } else {
                "off (audit_ext.capture_ddl = off, or audit_ext.restore = on)"
            }
            .to_string(),
        ),
        (
            "role_capture".to_string(),
            preload && ddl,
            if !preload {
                "inactive: add audit_ext to shared_preload_libraries and restart to record CREATE/ALTER/DROP ROLE and GRANT role".to_string()
            } else if !ddl {
                "off (audit_ext.capture_ddl = off, or audit_ext.restore = on)".to_string()
            } else {
                "utility hook records CREATE/ALTER/DROP ROLE and GRANT/REVOKE role".to_string()
            },
        ),
    ];
    TableIterator::new(rows)
}

pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0));
        if pg_sys::process_shared_preload_libraries_in_progress {
            PREV_UTILITY.with(|p| *p.borrow_mut() = pg_sys::ProcessUtility_hook);
            pg_sys::ProcessUtility_hook = Some(utility_hook);
            ROLE_HOOK_ACTIVE.with(|a| *a.borrow_mut() = true);
        }
    }
}

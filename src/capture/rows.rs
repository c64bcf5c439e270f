//! Row capture (sql/capture/rows.sql): one SPI statement per captured *statement*, never one per row. The trigger runs a
//! kept `INSERT INTO audit.events ... SELECT ... FROM <transition table>` plan: `to_jsonb` of
//! each row, excluded columns removed, masked columns replaced, UPDATEs that changed nothing
//! skipped; the chain trigger on audit.events then chains and hashes each row in C. Plans are
//! kept per (table, operation) and dropped when the table's relcache entry is invalidated
//! (ALTER TABLE, CREATE INDEX, a new key, track() replacing the triggers).

use super::CaptureError;
use crate::error::raise;
use crate::gucs;
use crate::pg::backend::{self, qualified_name};
use crate::pg::spi::{self, Plan, PlanBin};
use crate::pg::trigger::{Op, Trigger};
use crate::pg::value::Value;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

//
// Where the time of a captured 100,000-row INSERT goes (measured here, ms): the user's own
// insert 263; the same rows written straight into audit.events 1,584, of which its six
// indexes ~800, the wider heap rows with jsonb ~600 and chaining and hashing ~180. Capture
// itself (transition table, to_jsonb, one SPI statement) adds ~15% on top of that floor.

/// The action of the events an operation records (also spelled in `prepare`'s SQL).
fn action(op: Op) -> &'static str {
    match op {
        Op::Insert => "row.insert",
        Op::Update => "row.update",
        Op::Delete => "row.delete",
        Op::Truncate => "table.truncate",
    }
}

/// What a kept plan needs besides itself: the tracked table the rows are recorded under
/// (the table itself, or the root of the partitioned table it belongs to) and its key columns.
struct Entry {
    plan: Plan,
    root: pg_sys::Oid,
    keys: Vec<String>,
}

thread_local! {
    static PLANS: RefCell<HashMap<(pg_sys::Oid, Op), Entry>> = RefCell::new(HashMap::new());
    /// Plans whose table changed; freed at the next capture (not inside the inval callback).
    static STALE: PlanBin = PlanBin::default();
}

/// The tracked table's settings, as track() wrote them into the trigger's arguments:
/// `exclude_columns` and `mask_columns` as JSON arrays, `skip_unchanged` as true/false.
struct Settings {
    exclude: Vec<String>,
    mask: Vec<String>,
    skip_unchanged: bool,
}

fn settings(args: &[String], table: &str) -> Settings {
    let bad = |problem: String| -> ! { raise(CaptureError::BadTriggerArgs { table: table.to_string(), problem }) };
    if args.len() != 3 {
        bad(format!("expected 3, found {}; run audit.track() again", args.len()));
    }
    let list = |i: usize| -> Vec<String> {
        serde_json::from_str(&args[i])
            .unwrap_or_else(|e| bad(format!("argument {} is not a JSON array of names: {e}", i + 1)))
    };
    Settings { exclude: list(0), mask: list(1), skip_unchanged: args[2] == "true" }
}

crate::c_function!(
    /// `audit_internal.capture_rows()`: the AFTER ... FOR EACH STATEMENT trigger that audit.track() puts on
    /// a table (one per operation). Two steps, so that no code of the table's owner or writer
    /// runs with elevated rights (src/pg/elevate.rs):
    /// 1. as the role whose statement fired it: the row images (`to_jsonb` of each row, which
    ///    runs the output functions and casts of the column types) into a tuplestore;
    /// 2. as the extension's owner, security-restricted: one INSERT ... SELECT of those images
    ///    into audit.events (the writer of the table needs no privilege on audit.events).
    pg_finfo_audit_capture_rows,
    audit_capture_rows,
    &[],
    |call| {
        let Some(trigger) = call.trigger() else {
            raise(CaptureError::NotCaptureTrigger("it is a trigger function; audit.track() installs it"))
        };
        capture(&trigger);
        Some(Value::void())
    }
);

fn capture(trigger: &Trigger) {
    if trigger.is_row() || !trigger.is_after() {
        raise(CaptureError::NotCaptureTrigger("it must be an AFTER ... FOR EACH STATEMENT trigger"));
    }
    let op = trigger.op();
    let has_tables = match op {
        Op::Insert => trigger.has_new_table(),
        Op::Update => trigger.has_new_table() && trigger.has_old_table(),
        Op::Delete => trigger.has_old_table(),
        Op::Truncate => true,
    };
    if !has_tables {
        raise(CaptureError::NotCaptureTrigger("the trigger lacks its transition tables; run audit.track() again"));
    }
    if gucs::restoring() {
        return; // loading a dump: its rows are not new changes
    }
    let relid = trigger.relid();
    let settings = settings(&trigger.args(), &qualified_name(relid));

    let spi = spi::Connection::open();
    STALE.with(PlanBin::empty);
    // step 1, in the caller's security context
    let images = (op != Op::Truncate).then(|| trigger.register_images(&spi, op != Op::Insert, op != Op::Delete));
    // step 2: audit_ext's own statement over the images (and its reads of audit_ext's
    // tables: key columns, retention policies), as the extension's owner
    let rc = crate::pg::elevate::as_owner(|| {
        let (plan, root, keys) = PLANS.with(|p| {
            if let Some(e) = p.borrow().get(&(relid, op)) {
                return (e.plan.clone(), e.root, e.keys.clone());
            }
            let (root, keys) = table_identity(relid);
            let plan = prepare(&spi, op, keys.len(), !settings.mask.is_empty(), root != relid);
            p.borrow_mut().insert((relid, op), Entry { plan: plan.clone(), root, keys: keys.clone() });
            (plan, root, keys)
        });
        let values = [
            Value::from_pgrx(qualified_name(root)),
            Value::from_pgrx(settings.exclude),
            Value::from_pgrx(settings.mask),
            Value::from_pgrx(keys),
            Value::from_pgrx(settings.skip_unchanged),
            Value::from_pgrx(qualified_name(relid)),
            Some(Value::from_int4(crate::retention::policies::class_of(action(op)))),
        ];
        spi.execute(&plan, &values, false)
    });
    if rc != pg_sys::SPI_OK_INSERT as i32 {
        pgrx::error!("audit_ext: recording the captured rows failed ({rc})");
    }
    drop(images);
    drop(spi);
}

crate::c_function!(
    /// `audit.track(tbl, exclude_columns, mask_columns, operations, skip_unchanged)`: checks, for
    /// the real caller, that it may read the table (SELECT on it or membership in its owner, and
    /// USAGE on its schema): tracking copies the table's rows into the log, which the caller's
    /// readers then see. Then runs `audit_internal._track(...)` (sql/capture/rows.sql, executable by the
    /// extension's owner only) as the owner. A C function, not SECURITY DEFINER, because only
    /// before the switch is the caller known.
    pg_finfo_audit_track,
    audit_track,
    &[pg_sys::REGCLASSOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::BOOLOID],
    |call| {
        if let Some(tbl) = call.arg(0) {
            let user = backend::current_user();
            let relid = tbl.oid_value();
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
                raise(CaptureError::MayNotRead { table: qualified_name(relid), role: backend::role_name(user) });
            }
        }
        let types =
            [pg_sys::REGCLASSOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::TEXTARRAYOID, pg_sys::BOOLOID];
        let values: Vec<(pg_sys::Oid, Option<Value>)> = types.iter().enumerate().map(|(i, t)| (*t, call.arg(i))).collect();
        crate::pg::elevate::as_owner(|| {
            let spi = spi::Connection::open();
            let rc = spi.run(&backend::internal_sql("SELECT audit_internal._track($1, $2, $3, $4, $5)"), &values, false);
            if rc != pg_sys::SPI_OK_SELECT as i32 {
                pgrx::error!("audit_ext: audit_internal._track failed ({rc})");
            }
        });
        Some(Value::void())
    }
);

/// The plan for one operation. Parameters: $1 object_name, $2 exclude_columns,
/// $3 mask_columns, $4 key columns, $5 skip_unchanged, $6 the partition written (only used
/// for TRUNCATE of a partition, which names it in `new`), $7 the retention class of the
/// operation's action (it picks the partition of audit.events, crate::retention). The text depends only on the
/// operation, the number of key columns, whether anything is masked and whether the table is
/// a partition: no name or value is spliced in.
fn prepare(spi: &spi::Connection, op: Op, nkeys: usize, masked: bool, partition: bool) -> Plan {
    // object_id: one key column as its text; several as a JSON array of their values.
    let key = |j: &str| match nkeys {
        0 => "NULL::text".to_string(),
        1 => format!("{j} ->> $4[1]"),
        n => format!(
            "jsonb_build_array({})::text",
            (1..=n).map(|i| format!("{j} -> $4[{i}]")).collect::<Vec<_>>().join(", ")
        ),
    };
    let image = |x: &str| if masked { format!("audit_internal._mask({x}, $3)") } else { x.to_string() };
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
    let sql = backend::internal_sql(&sql);
    let types = [
        pg_sys::TEXTOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::TEXTARRAYOID,
        pg_sys::BOOLOID,
        pg_sys::TEXTOID,
        pg_sys::INT4OID,
    ];
    spi.keep_plan(&sql, &types)
}

/// The tracked table the rows of `relid` are recorded under (the root of its partition tree, or
/// itself) and how its rows are identified (its key columns, in index order; none: object_id is
/// NULL). The same SQL functions as audit.tracked_tables and audit.row_history, so the three
/// can never disagree; read once per table and operation, then kept with the plan.
fn table_identity(relid: pg_sys::Oid) -> (pg_sys::Oid, Vec<String>) {
    Spi::connect(|client| {
        let row = client
            .select(
                &backend::internal_sql(
                    "SELECT audit_internal._root($1)::oid, coalesce(audit_internal._key_columns(audit_internal._root($1)), '{}')",
                )
                .into_string()
                .unwrap_or_default(),
                Some(1),
                &[relid.into()],
            )
            .unwrap_or_else(|e| pgrx::error!("audit_ext: reading the key columns failed: {e}"))
            .first();
        let root = row.get::<pg_sys::Oid>(1).ok().flatten().unwrap_or(relid);
        (root, row.get::<Vec<String>>(2).ok().flatten().unwrap_or_default())
    })
}

/// Forgets the plans of a table whose relcache entry was dropped (InvalidOid: of all tables).
/// Object names are looked up on every statement (a syscache hit,
/// [`backend::qualified_name`]), so a renamed table is recorded under its new name.
pub(super) fn relcache_changed(relid: pg_sys::Oid) {
    PLANS.with(|p| {
        let mut p = p.borrow_mut();
        let gone: Vec<_> = p
            .iter()
            .filter(|((r, _), e)| relid == pg_sys::InvalidOid || *r == relid || e.root == relid)
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(e) = p.remove(&k) {
                STALE.with(|s| s.retire(e.plan));
            }
        }
    });
}

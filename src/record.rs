//! `audit.record(...)` and `audit.set_context(...)`.
//!
//! Both are plain fmgr functions declared in sql/record.sql rather than `#[pg_extern]`s: their
//! jsonb arguments must reach the table as the caller's datums. A serde round trip would cost
//! two conversions per argument and turn `12345678901234567890.5` into a float.
//! All validation, context and chaining happens in the insert trigger (append.rs), so a
//! direct INSERT by a privileged role is held to exactly the same rules.

use crate::error::raise;
use crate::pg::backend;
use crate::pg::spi::{self, Plan};
use crate::pg::value::Value;
use crate::vocab;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

#[derive(thiserror::Error, Debug)]
pub enum RecordError {
    #[error("audit.set_context(local => true) outside a transaction block would have no effect")]
    LocalOutsideTransaction,
    #[error("invalid context: {0}")]
    BadContext(String),
    #[error("module {0:?} is reserved for the events audit_ext records itself")]
    ReservedModule(String),
    #[error("action {0:?} is reserved for the events audit_ext records itself")]
    ReservedAction(String),
}

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for RecordError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        match self {
            RecordError::LocalOutsideTransaction => pgrx::PgSqlErrorCode::ERRCODE_NO_ACTIVE_SQL_TRANSACTION,
            RecordError::BadContext(_) | RecordError::ReservedModule(_) | RecordError::ReservedAction(_) => {
                pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            RecordError::LocalOutsideTransaction => "Call it inside BEGIN ... COMMIT, as its first statement: that is safe with every connection pooler. local => false keeps the context for the whole session, so use it only on a connection no other client shares (never under transaction pooling, where the next client would inherit it).".into(),
            RecordError::BadContext(_) => "Pass a JSON object as metadata.".into(),
            RecordError::ReservedModule(_) => format!(
                "Name your own module (e.g. 'billing'); {} mark events audit_ext recorded itself.",
                vocab::reserved_modules_text()
            ),
            RecordError::ReservedAction(_) => format!(
                "Name your own action (e.g. 'order.update'); {} are the names of events audit_ext records itself.",
                vocab::reserved_actions_text()
            ),
        })
    }
}

/// Argument types of `audit.record`, in order.
pub(crate) const RECORD_ARGS: [pg_sys::Oid; 11] = [
    pg_sys::TEXTOID,  // action
    pg_sys::TEXTOID,  // object_type
    pg_sys::TEXTOID,  // object_id
    pg_sys::TEXTOID,  // object_name
    pg_sys::JSONBOID, // old
    pg_sys::JSONBOID, // new
    pg_sys::TEXTOID,  // status
    pg_sys::TEXTOID,  // severity
    pg_sys::TEXTOID,  // module
    pg_sys::TEXTOID,  // message
    pg_sys::JSONBOID, // metadata
];

/// The INSERT of `audit.record`, after `INSERT INTO <table>`: the arguments, then the retention
/// class ($12) and the time ($13), which together pick the partition.
const INSERT_TAIL: &str = "(action, object_type, object_id, object_name, old, new, status, severity, module, \
     message, metadata, retention_class, at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

thread_local! {
    /// Prepared once per backend: ad-hoc SPI costs about 20 µs a call, a kept plan a fraction.
    /// The plan into the partitioned parent, for an event that has no partition yet.
    static INSERT_PLAN: RefCell<Option<Plan>> = const { RefCell::new(None) };
    /// Plans straight into a partition (crate::retention::partitions::partition_for), by relation, with
    /// the partition generation they were made in.
    static PARTITION_PLANS: RefCell<(u64, HashMap<pg_sys::Oid, Plan>)> = RefCell::new((0, HashMap::new()));
    /// Plans of partitions that changed, freed when no frame uses them.
    static STALE: spi::PlanBin = spi::PlanBin::default();
}

/// The kept plan that inserts into `target` (a partition), or into audit.events when None.
fn insert_plan(spi: &spi::Connection, target: Option<pg_sys::Oid>) -> Plan {
    let types = [&RECORD_ARGS[..], &[pg_sys::INT4OID, pg_sys::TIMESTAMPTZOID]].concat();
    let parent = || {
        INSERT_PLAN.with(|p| {
            p.borrow_mut()
                .get_or_insert_with(|| {
                    let sql = CString::new(format!("INSERT INTO audit.events {INSERT_TAIL}")).unwrap();
                    spi.keep_plan(&sql, &types)
                })
                .clone()
        })
    };
    let Some(relid) = target else { return parent() };
    let Some(relname) = backend::rel_name(relid) else {
        return parent(); // dropped meanwhile
    };
    STALE.with(spi::PlanBin::empty);
    PARTITION_PLANS.with(|p| {
        let mut p = p.borrow_mut();
        let generation = crate::retention::partitions::partitions_generation();
        if p.0 != generation {
            // partitions changed: plans for dropped ones must go (their OIDs may come back)
            STALE.with(|s| p.1.drain().for_each(|(_, plan)| s.retire(plan)));
            p.0 = generation;
        }
        p.1.entry(relid)
            .or_insert_with(|| {
                let sql = CString::new(format!("INSERT INTO audit.{} {INSERT_TAIL}", backend::quote_ident(&relname)))
                    .unwrap();
                spi.keep_plan(&sql, &types)
            })
            .clone()
    })
}

crate::c_function!(
    /// `audit.record(action, object_type, ..., metadata) returns bigint`: the new event's id.
    ///
    /// Elevated entry point (SECURITY DEFINER in sql/record.sql, path pinned): follows the rule of
    /// src/pg/elevate.rs. Its one statement is a kept, schema-qualified INSERT whose values are the
    /// caller's datums as typed parameters; nothing of the caller's is resolved or run.
    pg_finfo_audit_record,
    audit_record,
    &RECORD_ARGS,
    |call| {
        const MODULE_ARG: usize = 8;
        let module = call.arg(MODULE_ARG);
        let action = call.arg(0);
        check_names(action.as_ref().map(|a| a.str()).as_deref(), module.as_ref().map(|m| m.str()).as_deref());
        // `at` is the clock time, as the column's default would give
        let values: Vec<Option<Value>> = (0..RECORD_ARGS.len()).map(|i| call.arg(i)).collect();
        Some(Value::from_int8(insert(values, backend::now())))
    }
);

/// Inserts one event of `audit.record`'s arguments (`values`, in the order of RECORD_ARGS),
/// at time `at`, through the kept plans, and returns its id. Also the side channel's writer's
/// way in (src/side_channel/worker.rs), so that both paths are one.
pub(crate) fn insert(mut values: Vec<Option<Value>>, at: i64) -> i64 {
    // The retention class and the time pick the partition, so both are part of the INSERT
    // (crate::retention).
    let class = values[0].as_ref().map_or(0, |a| crate::retention::policies::class_of(&a.str()));
    let target = crate::retention::partitions::partition_for(class, at);
    values.extend([Some(Value::from_int4(class)), Some(Value::from_timestamptz(at))]);
    let spi = spi::Connection::open();
    let plan = insert_plan(&spi, target);
    crate::append::want_id();
    let rc = spi.execute(&plan, &values, false);
    let id = crate::append::take_id();
    if rc != pg_sys::SPI_OK_INSERT as i32 || spi.processed() != 1 {
        pgrx::error!("audit_ext: recording the event failed ({rc})");
    }
    drop(spi);
    id.unwrap_or_else(|| pgrx::error!("audit_ext: the recorded event was given no id"))
}

/// Refuses the module and action names audit_ext keeps for itself, as `audit.record` does.
pub(crate) fn check_names(action: Option<&str>, module: Option<&str>) {
    if let Some(module) = module {
        if vocab::reserved_module(module) {
            raise(RecordError::ReservedModule(module.into()));
        }
    }
    if let Some(action) = action {
        if vocab::reserved_action(action) {
            raise(RecordError::ReservedAction(action.into()));
        }
    }
}

crate::c_function!(
    /// `audit.set_context(actor, actor_ip, session_id, application, metadata, local)`: replaces the
    /// whole context (a NULL argument clears that part) for the transaction or the session.
    pg_finfo_audit_set_context,
    audit_set_context,
    &[pg_sys::TEXTOID, pg_sys::INETOID, pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::JSONBOID, pg_sys::BOOLOID],
    |call| {
        let local = call.arg(5).is_none_or(|v| v.bool());
        if local && !backend::in_transaction_block() {
            raise(RecordError::LocalOutsideTransaction);
        }
        let out = |i: usize, f: fn(Value) -> CString| -> CString { call.arg(i).map(f).unwrap_or_default() };
        fn text(v: Value) -> CString {
            CString::new(v.bytes()).unwrap_or_default()
        }
        fn inet(v: Value) -> CString {
            CString::new(v.inet_text()).unwrap_or_default()
        }
        fn json(v: Value) -> CString {
            if !v.jsonb_is_object() {
                raise(RecordError::BadContext("metadata must be a JSON object".into()));
            }
            v.with_jsonb_text(|t| t.to_owned())
        }
        let settings = [
            (c"audit_ext.context_actor", out(0, text)),
            (c"audit_ext.context_actor_ip", out(1, inet)),
            (c"audit_ext.context_session_id", out(2, text)),
            (c"audit_ext.context_application", out(3, text)),
            (c"audit_ext.context_metadata", out(4, json)),
        ];
        for (name, value) in settings {
            // the settings are superuser-only: this function is the one way others set them
            backend::set_setting(name, &value, local);
        }
        Some(Value::void())
    }
);

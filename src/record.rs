//! `audit.record(...)` and `audit.set_context(...)`.
//!
//! Both are plain fmgr functions declared in sql/record.sql rather than `#[pg_extern]`s: their
//! jsonb arguments must reach the table as the caller's datums. A serde round trip would cost
//! two conversions per argument and turn `12345678901234567890.5` into a float.
//! All validation, context and chaining happens in the insert trigger (append.rs), so a
//! direct INSERT by a privileged role is held to exactly the same rules.

use crate::error::raise;
use crate::vocab;
use pgrx::pg_sys;
use pgrx::prelude::*;
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
const RECORD_ARGS: [pg_sys::Oid; 11] = [
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
    static INSERT_PLAN: RefCell<Option<pg_sys::SPIPlanPtr>> = const { RefCell::new(None) };
    /// Plans straight into a partition (crate::retention::partitions::partition_for), by relation, with
    /// the partition generation they were made in.
    static PARTITION_PLANS: RefCell<(u64, HashMap<pg_sys::Oid, pg_sys::SPIPlanPtr>)> =
        RefCell::new((0, HashMap::new()));
}

/// The kept plan that inserts into `target` (a partition), or into audit.events when None.
/// Must be called inside an SPI connection.
unsafe fn insert_plan(target: Option<pg_sys::Oid>) -> pg_sys::SPIPlanPtr {
    let types = [&RECORD_ARGS[..], &[pg_sys::INT4OID, pg_sys::TIMESTAMPTZOID]].concat();
    let parent = || {
        INSERT_PLAN.with(|p| {
            *p.borrow_mut().get_or_insert_with(|| {
                let sql = CString::new(format!("INSERT INTO audit.events {INSERT_TAIL}")).unwrap();
                crate::pg::spi::kept_plan(&sql, &types)
            })
        })
    };
    let Some(relid) = target else { return parent() };
    let relname = pg_sys::get_rel_name(relid);
    if relname.is_null() {
        return parent(); // dropped meanwhile
    }
    PARTITION_PLANS.with(|p| {
        let mut p = p.borrow_mut();
        let generation = crate::retention::partitions::partitions_generation();
        if p.0 != generation {
            // partitions changed: plans for dropped ones must go (their OIDs may come back)
            for (_, plan) in p.1.drain() {
                pg_sys::SPI_freeplan(plan);
            }
            p.0 = generation;
        }
        *p.1.entry(relid).or_insert_with(|| {
            let name = std::ffi::CStr::from_ptr(pg_sys::quote_identifier(relname));
            let sql = CString::new(format!("INSERT INTO audit.{} {INSERT_TAIL}", name.to_string_lossy())).unwrap();
            crate::pg::spi::kept_plan(&sql, &types)
        })
    })
}

finfo_v1!(pg_finfo_audit_record);

/// `audit.record(action, object_type, ..., metadata) returns bigint`: the new event's id.
///
/// Elevated entry point (SECURITY DEFINER in sql/record.sql, path pinned): follows the rule of
/// src/pg/elevate.rs. Its one statement is a kept, schema-qualified INSERT whose values are the
/// caller's datums as typed parameters; nothing of the caller's is resolved or run.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn audit_record(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let args = (*fcinfo).args.as_slice(RECORD_ARGS.len());
    const MODULE_ARG: usize = 8;
    if !args[MODULE_ARG].isnull {
        let module = String::from_utf8_lossy(crate::pg::datum::bytes(args[MODULE_ARG].value));
        if vocab::reserved_module(&module) {
            raise(RecordError::ReservedModule(module.into_owned()));
        }
    }
    if !args[0].isnull {
        let action = String::from_utf8_lossy(crate::pg::datum::bytes(args[0].value));
        if vocab::reserved_action(&action) {
            raise(RecordError::ReservedAction(action.into_owned()));
        }
    }
    // The retention class and the time pick the partition, so both are part of the INSERT
    // (crate::retention); `at` is the clock time, as the column's default would give.
    let class = if args[0].isnull {
        0
    } else {
        crate::retention::policies::class_of(&String::from_utf8_lossy(crate::pg::datum::bytes(args[0].value)))
    };
    let at = pg_sys::GetCurrentTimestamp();
    let target = crate::retention::partitions::partition_for(class, at);
    let mut values: Vec<Option<pg_sys::Datum>> = args.iter().map(|a| (!a.isnull).then_some(a.value)).collect();
    values.extend([Some(pg_sys::Datum::from(class)), Some(pg_sys::Datum::from(at))]);
    let spi = crate::pg::spi::Connection::open();
    let plan = insert_plan(target);
    crate::append::want_id();
    let rc = spi.execute(plan, &values, false);
    let id = crate::append::take_id();
    if rc != pg_sys::SPI_OK_INSERT as i32 || spi.processed() != 1 {
        pgrx::error!("audit_ext: recording the event failed ({rc})");
    }
    drop(spi);
    pg_sys::Datum::from(id.unwrap_or_else(|| pgrx::error!("audit_ext: the recorded event was given no id")))
}

finfo_v1!(pg_finfo_audit_set_context);

/// `audit.set_context(actor, actor_ip, session_id, application, metadata, local)`: replaces the
/// whole context (a NULL argument clears that part) for the transaction or the session.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn audit_set_context(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let args = (*fcinfo).args.as_slice(6);
    let local = args[5].isnull || args[5].value.value() != 0;
    if local && !pg_sys::IsTransactionBlock() {
        raise(RecordError::LocalOutsideTransaction);
    }
    let out = |i: usize, f: unsafe fn(pg_sys::Datum) -> CString| -> CString {
        if args[i].isnull {
            CString::default()
        } else {
            f(args[i].value)
        }
    };
    unsafe fn text(d: pg_sys::Datum) -> CString {
        CString::new(crate::pg::datum::bytes(d)).unwrap_or_default()
    }
    unsafe fn inet(d: pg_sys::Datum) -> CString {
        let s = crate::pg::datum::call(pg_sys::inet_out, &[d]).expect("inet_out returned NULL");
        std::ffi::CStr::from_ptr(s.cast_mut_ptr()).to_owned()
    }
    unsafe fn json(d: pg_sys::Datum) -> CString {
        if !crate::pg::datum::jsonb_is_object(d) {
            raise(RecordError::BadContext("metadata must be a JSON object".into()));
        }
        crate::pg::datum::jsonb_text(d).to_owned()
    }
    let settings = [
        (c"audit_ext.context_actor", out(0, text)),
        (c"audit_ext.context_actor_ip", out(1, inet)),
        (c"audit_ext.context_session_id", out(2, text)),
        (c"audit_ext.context_application", out(3, text)),
        (c"audit_ext.context_metadata", out(4, json)),
    ];
    for (name, value) in settings {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            // the settings are superuser-only: this function is the one way others set them
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            if local { pg_sys::GucAction::GUC_ACTION_LOCAL } else { pg_sys::GucAction::GUC_ACTION_SET },
            true,
            0,
            false,
        );
    }
    pg_sys::Datum::from(0)
}

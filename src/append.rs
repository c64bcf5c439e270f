//! The insert path of `audit.events` (trigger `zz_chain_event`, sql/guards.sql): every insert
//! is validated, given its context, chained and hashed here, whoever inserts (`audit.record`,
//! change capture, or a privileged role's direct INSERT). UPDATE, DELETE and TRUNCATE are
//! refused by src/guards.rs.

use crate::error::raise;
use crate::event::{self, COLUMNS};
use crate::pg::backend;
use crate::pg::trigger::{row_result, RowResult, Trigger};
use crate::pg::tuple::Tuple;
use crate::pg::value::Value;
use crate::{chain, gucs, vocab};
use audit_core::hash::PG_EPOCH_OFFSET_US;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// 10000-01-01 00:00:00 UTC in PostgreSQL-epoch microseconds: `at` must be before it.
const MAX_AT: i64 = 252_455_616_000_000_000;

#[derive(thiserror::Error, Debug)]
pub enum AppendError {
    #[error("column \"{column}\" of audit.events is assigned by audit_ext and cannot be supplied")]
    Generated { column: &'static str },
    #[error("invalid {field}: {problem}")]
    Invalid { field: &'static str, problem: String, fix: String },
    #[error("invalid metadata: it must be a JSON object")]
    MetadataNotObject,
    #[error("invalid at: an audit event needs a finite time before 10000-01-01 00:00:00 UTC")]
    BadTimestamp,
    #[error("audit event is {size} bytes, over the limit of {limit} bytes (audit_ext.max_event_bytes)")]
    TooLarge { size: usize, limit: i32 },
    #[error("the audit_ext chain trigger only works on audit.events, not on {table}")]
    WrongTable { table: String },
    #[error("restored event {id} does not match its hash: it was changed after it was recorded")]
    RestoredMismatch { id: i64 },
    #[error("restored event lacks column \"{column}\": a restored event must carry id, at, chain, seq, txid and hash")]
    RestoredIncomplete { column: &'static str },
    #[error("module {0:?} is reserved for the events audit_ext records itself")]
    ReservedModule(String),
    #[error("invalid {field}: it nests arrays and objects more than {limit} levels deep")]
    TooDeep { field: &'static str, limit: usize },
}

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for AppendError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        use AppendError::*;
        match self {
            Generated { .. } => pgrx::PgSqlErrorCode::ERRCODE_GENERATED_ALWAYS,
            Invalid { .. } | MetadataNotObject => pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            BadTimestamp => pgrx::PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
            TooLarge { .. } | TooDeep { .. } => pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            WrongTable { .. } => pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            RestoredMismatch { .. } => pgrx::PgSqlErrorCode::ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
            RestoredIncomplete { .. } => pgrx::PgSqlErrorCode::ERRCODE_GENERATED_ALWAYS,
            ReservedModule(_) => pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        }
    }
    fn hint(&self) -> Option<String> {
        use AppendError::*;
        Some(match self {
            Generated { .. } => "Leave id, chain, seq, txid, prev_hash and hash out of the INSERT: the extension assigns them. Restoring a dump? Run pg_restore as a superuser with PGOPTIONS='-c audit_ext.restore=on'.".into(),
            Invalid { fix, .. } => fix.clone(),
            MetadataNotObject => "Pass a JSON object, e.g. '{\"request_id\": \"r1\"}'::jsonb.".into(),
            BadTimestamp => "Leave \"at\" out of the INSERT so that it defaults to clock_timestamp().".into(),
            TooLarge { .. } => "Store large documents elsewhere and record a reference, or raise audit_ext.max_event_bytes (superuser).".into(),
            TooDeep { .. } => "Flatten the document (alerts, search and audit.diff work on documents up to 100 levels deep), or store it elsewhere and record a reference.".into(),
            WrongTable { .. } => return None,
            RestoredMismatch { .. } => "The dump does not hold the events as they were recorded. Restore from an untouched dump, or load it without that event and let audit.verify() show the gap.".into(),
            RestoredIncomplete { .. } => "Restore events only from a pg_dump of audit_ext's own table.".into(),
            ReservedModule(_) => format!(
                "Name your own module (e.g. 'billing'); only audit_ext's own functions record events of {}.",
                vocab::reserved_modules_text()
            ),
        })
    }
}

/// Where each of `COLUMNS` sits in a relation's tuple, and the id sequence.
#[derive(Clone)]
struct Layout {
    attno: [usize; COLUMNS.len()],
    /// `retention_class`: not hashed, but it picks the chain (see `chain`).
    class_attno: usize,
    natts: usize,
    id_seq: pg_sys::Oid,
}

thread_local! {
    /// Armed by `audit.record` just before its INSERT: the next event chained here hands its id
    /// back through it, which spares the INSERT a RETURNING clause (a projection built on every
    /// call). The first row chained after arming is the caller's own: events that alert rules
    /// add come from AFTER triggers, later.
    static ID_FOR_CALLER: std::cell::Cell<Option<Option<i64>>> = const { std::cell::Cell::new(None) };
    static LAYOUTS: RefCell<HashMap<pg_sys::Oid, Layout>> = RefCell::new(HashMap::new());
    /// (session id, client address as an inet varlena) — fixed for the life of the backend.
    static SESSION: RefCell<Option<(String, Option<Vec<u8>>)>> = const { RefCell::new(None) };
    /// The session an event written by the side channel's writer comes from (src/side_channel/).
    static ORIGIN: RefCell<Option<Origin>> = const { RefCell::new(None) };
}

/// The session an event comes from, when it is not this backend's: the side channel's
/// writer (src/side_channel/worker.rs) chains events for other backends, with their session
/// user, connection and `audit.set_context` as those backends saw them, so that such an event
/// gets exactly the context, marks and defaults it would have got in its own session.
pub struct Origin {
    pub session_user: String,
    /// The client address as an inet varlena, None for a Unix socket.
    pub client_ip: Option<Vec<u8>>,
    pub session_id: String,
    pub application: Option<String>,
    /// actor, actor_ip, session_id, application, metadata of its `audit.set_context`.
    pub context: [Option<std::ffi::CString>; 5],
}

/// Runs `f` (which chains events) with `origin` standing in for this backend's session.
pub fn with_origin<R>(origin: Origin, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ORIGIN.with(|o| *o.borrow_mut() = None);
        }
    }
    ORIGIN.with(|o| *o.borrow_mut() = Some(origin));
    let _reset = Reset;
    f()
}

/// A part of the context: the origin's when there is one, else this session's setting.
fn context_part(i: usize) -> Option<std::ffi::CString> {
    if let Some(v) = ORIGIN.with(|o| o.borrow().as_ref().map(|o| o.context[i].clone())) {
        return v.filter(|v| !v.as_bytes().is_empty());
    }
    let setting = [
        &gucs::CONTEXT_ACTOR,
        &gucs::CONTEXT_ACTOR_IP,
        &gucs::CONTEXT_SESSION_ID,
        &gucs::CONTEXT_APPLICATION,
        &gucs::CONTEXT_METADATA,
    ][i];
    gucs::context(setting)
}

fn session_user() -> String {
    ORIGIN.with(|o| o.borrow().as_ref().map(|o| o.session_user.clone())).unwrap_or_else(backend::session_user_name)
}

fn application() -> Option<String> {
    match ORIGIN.with(|o| o.borrow().as_ref().map(|o| o.application.clone())) {
        Some(app) => app,
        None => backend::application_name(),
    }
}

/// The BEFORE INSERT trigger `zz_chain_event`. It runs as whoever inserts, which inside
/// audit_ext's own functions is the extension's owner: it follows the rule of src/pg/elevate.rs
/// (its SPI work, the chain head and the partition map, runs under a pinned search path with
/// qualified names and typed parameters; it calls no function of the caller's).
#[pg_trigger]
fn chain_event<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    let result = append(&Trigger::of(trigger)).unwrap_or_else(|e| raise(e));
    Ok(Some(row_result(trigger, result)))
}

/// A deformed `audit.events` tuple, addressed by canonical column index.
struct Row<'l> {
    layout: &'l Layout,
    tuple: Tuple,
}

impl Row<'_> {
    fn get(&self, c: usize) -> Option<Value> {
        self.tuple.get(self.layout.attno[c])
    }
    fn set(&mut self, c: usize, v: Value) {
        self.tuple.set(self.layout.attno[c], v);
    }
    fn text(&self, c: usize) -> Option<std::borrow::Cow<'_, str>> {
        self.tuple.bytes_at(self.layout.attno[c]).map(String::from_utf8_lossy)
    }
}

fn append(trigger: &Trigger) -> Result<RowResult, AppendError> {
    let layout = layout(trigger)?;
    let mut row = Row { layout: &layout, tuple: trigger.row() };

    let chain_columns = [event::ID, event::CHAIN, event::SEQ, event::TXID, event::PREV_HASH, event::HASH];
    if let Some(&c) = chain_columns.iter().find(|&&c| row.get(c).is_some()) {
        if gucs::restoring() {
            return restored(&row);
        }
        return Err(AppendError::Generated { column: COLUMNS[c].0 });
    }
    fill_context(&mut row)?;
    validate(&row)?;

    let at = match row.get(event::AT) {
        Some(v) => v.timestamptz(),
        None => {
            let now = backend::now();
            row.set(event::AT, Value::from_timestamptz(now));
            now
        }
    };
    // infinity, and times from the year 10000 on: from 294247-01-10 04:00:54.775807 UTC the
    // microseconds since 1970 no longer fit the 8 bytes of the hash encoding, so that times
    // would share one (docs/hash-format.md), and partition arithmetic in microseconds
    // overflows months before that
    if at == i64::MAX || at == i64::MIN || at >= MAX_AT || at.checked_add(PG_EPOCH_OFFSET_US).is_none() {
        return Err(AppendError::BadTimestamp);
    }

    let class = row.tuple.get(layout.class_attno).map_or(0, |v| v.int4());
    crate::retention::partitions::after_route(class);
    let tail = chain::tail(class);
    let seq = tail.seq + 1;
    row.set(event::CHAIN, Value::from_int4(tail.chain));
    row.set(event::SEQ, Value::from_int8(seq));
    row.set(event::TXID, Value::from_int8(backend::top_full_xid()));
    if let Some(prev) = tail.hash {
        row.set(event::PREV_HASH, Value::from_bytea(&prev));
    }
    let id = backend::nextval(layout.id_seq);
    row.set(event::ID, Value::from_int8(id));
    if let Some(None) = ID_FOR_CALLER.get() {
        ID_FOR_CALLER.set(Some(Some(id)));
    }

    for (c, field) in [(event::OLD, "old"), (event::NEW, "new"), (event::METADATA, "metadata")] {
        if row.get(c).is_some_and(|v| v.jsonb_deeper_than(event::MAX_JSON_DEPTH)) {
            return Err(AppendError::TooDeep { field, limit: event::MAX_JSON_DEPTH });
        }
    }
    let (hash, size) = event::hash_values(|c| row.get(c));
    let limit = gucs::MAX_EVENT_BYTES.get();
    if size > limit as usize {
        return Err(AppendError::TooLarge { size, limit });
    }
    row.set(event::HASH, Value::from_bytea(&hash));
    if crate::mirror::enabled() {
        crate::mirror::stage(|c| row.get(c));
    }
    chain::advance(class, seq, hash);
    Ok(RowResult::Replace(row.tuple))
}

/// A complete event from a dump, loaded in restore mode: kept exactly as it is if its hash
/// matches its columns. Its link to the previous event cannot be checked here (pg_dump writes
/// rows in heap order, not chain order): `audit.verify()` checks the restored chains whole.
fn restored(row: &Row) -> Result<RowResult, AppendError> {
    for c in [event::ID, event::AT, event::CHAIN, event::SEQ, event::TXID, event::HASH] {
        if row.get(c).is_none() {
            return Err(AppendError::RestoredIncomplete { column: COLUMNS[c].0 });
        }
    }
    let (hash, _) = event::hash_values(|c| row.get(c));
    let stored = row.tuple.bytes_at(row.layout.attno[event::HASH]).unwrap_or_default();
    if stored != hash.as_slice() {
        let id = row.get(event::ID).map_or(0, |v| v.int8());
        return Err(AppendError::RestoredMismatch { id });
    }
    Ok(RowResult::Keep)
}

/// Actor, IP, session, application and metadata that the caller left NULL come from
/// `audit.set_context`, else from the session (`session_user`, `inet_client_addr()`, the
/// backend's session id as in log_line_prefix `%c`, `application_name`).
///
/// A context is an application's assertion (say, the end user behind a pool), so every field
/// taken from it is marked: `metadata.asserted` lists them, and the session's own values sit
/// next to them (`db_user`, `db_client_ip`, `db_session_id`), so the database role and
/// connection behind an asserted actor are never lost.
fn fill_context(row: &mut Row) -> Result<(), AppendError> {
    let mut asserted: Vec<&str> = vec![];
    // A direct INSERT (not one of audit_ext's own, which run as the extension's owner inside a
    // SECURITY DEFINER function or crate::elevate): who and when it names are the inserter's
    // assertion, marked like a context's, and the modules of audit_ext's own events are not
    // its to use.
    if !internal_insert() {
        // (not `at`: its column default fills it before this trigger, and routing needs it)
        for (c, name) in [
            (event::ACTOR, "actor"),
            (event::ACTOR_IP, "actor_ip"),
            (event::SESSION_ID, "session_id"),
            (event::APPLICATION, "application"),
        ] {
            if row.get(c).is_some() {
                asserted.push(name);
            }
        }
        if let Some(m) = row.text(event::MODULE) {
            if vocab::reserved_module(&m) {
                return Err(AppendError::ReservedModule(m.into_owned()));
            }
        }
    }
    // how many of `asserted` the inserter named itself (the rest come from the context)
    let direct = asserted.len();
    if row.get(event::ACTOR).is_none() {
        let actor = match context_part(0) {
            Some(v) => {
                asserted.push("actor");
                Value::from_text(v.to_bytes())
            }
            None => Value::from_text(session_user().as_bytes()),
        };
        row.set(event::ACTOR, actor);
    }
    let (session_id, client_ip) = session_defaults();
    if row.get(event::ACTOR_IP).is_none() {
        let ip = match context_part(1) {
            Some(v) => {
                asserted.push("actor_ip");
                Some(Value::parse_inet(&v))
            }
            None => client_ip.as_deref().map(Value::from_inet_bytes),
        };
        if let Some(ip) = ip {
            row.set(event::ACTOR_IP, ip);
        }
    }
    if row.get(event::SESSION_ID).is_none() {
        let sid = match context_part(2) {
            Some(v) => {
                asserted.push("session_id");
                Value::from_text(v.to_bytes())
            }
            None => Value::from_text(session_id.as_bytes()),
        };
        row.set(event::SESSION_ID, sid);
    }
    if row.get(event::APPLICATION).is_none() {
        let app = match context_part(3) {
            Some(v) => {
                asserted.push("application");
                Some(Value::from_text(v.to_bytes()))
            }
            None => application().map(|a| Value::from_text(a.as_bytes())),
        };
        if let Some(app) = app {
            row.set(event::APPLICATION, app);
        }
    }
    // Metadata: the context's keys, then the event's own (which win), then the marks of an
    // asserted context (which win over both: nobody can forge them).
    let meta = row.get(event::METADATA);
    if meta.is_some_and(|m| !m.jsonb_is_object()) {
        return Err(AppendError::MetadataNotObject);
    }
    let ctx_meta = context_part(4);
    if ctx_meta.is_some() {
        asserted.push("metadata");
    }
    if !asserted.is_empty() || meta.is_none() {
        let mut merged = Value::parse_jsonb(ctx_meta.as_deref().unwrap_or(c"{}"));
        if !merged.jsonb_is_object() {
            merged = Value::parse_jsonb(c"{}");
        }
        if let Some(m) = meta {
            merged = Value::jsonb_concat(merged, m);
        }
        if !asserted.is_empty() {
            let mut marks = serde_json::json!({
                "asserted": asserted,
                "db_user": session_user(),
            });
            // a context stands in for the connection: keep the connection's own values too
            if asserted.len() > direct {
                let ip = client_ip.as_deref().map(|b| Value::from_inet_bytes(b).inet_text());
                marks["db_client_ip"] = ip.into();
                marks["db_session_id"] = session_id.clone().into();
            }
            let extra = std::ffi::CString::new(marks.to_string()).unwrap();
            merged = Value::jsonb_concat(merged, Value::parse_jsonb(&extra));
        }
        row.set(event::METADATA, merged);
    }
    Ok(())
}

/// Whether this INSERT is audit_ext's own: the current user is the extension's owner inside a
/// SECURITY DEFINER function (audit.record, the SQL functions of retention and alerts) or a
/// switch of [`crate::elevate`] (capture, role capture).
fn internal_insert() -> bool {
    backend::switched_to(crate::pg::elevate::extension_owner())
}

fn validate(row: &Row) -> Result<(), AppendError> {
    let action = row.text(event::ACTION);
    let invalid = |problem: String, fix: &str| Err(AppendError::Invalid { field: "action", problem, fix: fix.into() });
    match action.as_deref() {
        None => {
            return invalid("it is NULL".into(), "Name what happened, e.g. 'authentication.login' or 'VM_POWER_OFF'.")
        }
        Some("") => {
            return invalid("it is empty".into(), "Name what happened, e.g. 'authentication.login' or 'VM_POWER_OFF'.")
        }
        Some(s) if s.chars().count() > vocab::MAX_ACTION_CHARS => {
            return invalid(
                format!("it is {} characters long, the limit is {}", s.chars().count(), vocab::MAX_ACTION_CHARS),
                "Use a short dotted name such as 'resource.modify'; put details in message or metadata.",
            )
        }
        Some(s) if s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            return invalid(
                format!("{s:?} contains white space or control characters"),
                "Use a name without spaces such as 'resource.modify'; put prose in message.",
            )
        }
        _ => {}
    }
    let one_of = |c: usize, field: &'static str, allowed: &[&str]| match row.text(c) {
        Some(v) if allowed.contains(&v.as_ref()) => Ok(()),
        v => Err(AppendError::Invalid {
            field,
            problem: match v {
                Some(v) => format!("{v:?} is not one of {}", allowed.join(", ")),
                None => "it is NULL".into(),
            },
            fix: vocab::one_of_hint(allowed),
        }),
    };
    one_of(event::STATUS, "status", &vocab::STATUSES)?;
    one_of(event::SEVERITY, "severity", &vocab::SEVERITIES)
}

/// Attribute positions of our columns in the trigger's table, checked against the live tuple
/// descriptor so that ALTER TABLE can never make us write into the wrong column.
fn layout(trigger: &Trigger) -> Result<Layout, AppendError> {
    let relid = trigger.relid();
    let desc = trigger.desc();
    let matches = |l: &Layout| {
        l.natts == desc.len()
            && COLUMNS
                .iter()
                .zip(l.attno)
                .all(|((name, _), i)| desc.get(i).is_some_and(|att| !att.is_dropped() && att.name() == *name))
            && desc.get(l.class_attno).is_some_and(|att| !att.is_dropped() && att.name() == "retention_class")
    };
    if let Some(l) = LAYOUTS.with(|m| m.borrow().get(&relid).cloned()).filter(matches) {
        return Ok(l);
    }
    let ns = trigger.namespace();
    let table = || {
        format!("{}.{}", backend::namespace_name(ns).unwrap_or_default(), backend::rel_name(relid).unwrap_or_default())
    };
    let attno = event::attnos(&desc).ok_or_else(|| AppendError::WrongTable { table: table() })?;
    let id_seq = backend::relid_in(ns, c"events_id_seq").ok_or_else(|| AppendError::WrongTable { table: table() })?;
    let class_attno = desc
        .iter()
        .position(|a| !a.is_dropped() && a.name() == "retention_class")
        .ok_or_else(|| AppendError::WrongTable { table: table() })?;
    let l = Layout { attno, class_attno, natts: desc.len(), id_seq };
    LAYOUTS.with(|m| m.borrow_mut().insert(relid, l.clone()));
    Ok(l)
}

/// Session id and client address, computed once per backend (or the origin's).
fn session_defaults() -> (String, Option<Vec<u8>>) {
    if let Some(o) = ORIGIN.with(|o| o.borrow().as_ref().map(|o| (o.session_id.clone(), o.client_ip.clone()))) {
        return o;
    }
    SESSION.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| {
                let sid = format!("{:x}.{:x}", backend::start_time(), backend::pid());
                (sid, backend::client_addr_bytes())
            })
            .clone()
    })
}

/// Arms [`ID_FOR_CALLER`]: the id of the next event chained will be kept for [`take_id`].
pub fn want_id() {
    ID_FOR_CALLER.set(Some(None));
}

/// The id kept since [`want_id`], if an event was chained meanwhile; disarms.
pub fn take_id() -> Option<i64> {
    ID_FOR_CALLER.take().flatten()
}

//! Threshold alerts and live streams.
//!
//! An AFTER INSERT row trigger on `audit.events` (`zz_alerts`) matches every new event in
//! memory against the enabled rules and streams (`query::Query::matches`, no SQL). Only a
//! match costs SQL: a stream sends `pg_notify`; a rule counts its matching events in the
//! window for the event's group with one kept plan and, at the threshold, fires once:
//! `pg_notify(channel, payload)` plus an `alert.fired` event. NOTIFY is transactional, so
//! listeners hear nothing from a transaction that rolls back.
//!
//! Rules and streams are loaded once per backend and reloaded after a relcache invalidation
//! of their tables, which `audit_internal._rules_changed()` sends whenever they change.

use crate::event::{self, COLUMNS};
use crate::pg::backend;
use crate::pg::spi::{self, Plan, PlanBin};
use crate::pg::tuple::Tuple;
use crate::pg::value::Value;
use audit_core::query::{self, Doc, EventView, Field, Query};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, OnceCell, RefCell};
use std::ffi::CString;
use std::rc::Rc;

#[derive(thiserror::Error, Debug)]
pub enum AlertError {
    #[error("invalid group_by {0:?}: not an event field")]
    BadGroup(String),
    #[error("audit_internal.evaluate_alerts() fired in the wrong way: {0}")]
    NotAlertTrigger(&'static str),
}

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for AlertError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        match self {
            AlertError::BadGroup(_) => pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            AlertError::NotAlertTrigger(_) => pgrx::PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            AlertError::BadGroup(_) => "Group by actor, actor_ip, session_id, application, action, status, severity, module, object_type, object_id or object_name.".into(),
            AlertError::NotAlertTrigger(_) => "audit_ext attaches it to audit.events itself; do not attach it by hand.".into(),
        })
    }
}

/// NOTIFY payloads must stay under 8000 bytes: each string field's JSON is cut to this many bytes.
const FIELD_CHARS: usize = 400;

/// A `group_by` field: its column, its SQL type, and where `EventView` finds it.
fn group_column(name: &str) -> Option<(&'static str, &'static str, Field)> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "actor" | "user" | "actor.email" => ("actor", "text", Field::Actor),
        "actor_ip" | "ip" => ("actor_ip", "inet", Field::ActorIp),
        "session_id" => ("session_id", "text", Field::SessionId),
        "application" => ("application", "text", Field::Application),
        "action" | "event_type" => ("action", "text", Field::Action),
        "status" => ("status", "text", Field::Status),
        "severity" => ("severity", "text", Field::Severity),
        "module" => ("module", "text", Field::Module),
        "object_type" => ("object_type", "text", Field::ObjectType),
        "object_id" => ("object_id", "text", Field::ObjectId),
        "object_name" => ("object_name", "text", Field::ObjectName),
        _ => return None,
    })
}

/// Checks a rule's query (42601 with the position) and group_by (22023) before
/// audit.create_alert or audit.stream stores them.
#[pg_extern(immutable, parallel_safe, schema = "audit_internal", name = "_check_alert")]
fn check_alert(query: Option<&str>, group_by: Option<&str>) -> bool {
    if let Some(q) = query {
        query::parse(q).unwrap_or_else(|e| crate::error::raise(e));
    }
    if let Some(g) = group_by {
        if group_column(g).is_none() {
            crate::error::raise(AlertError::BadGroup(g.to_string()));
        }
    }
    true
}

/// `audit_internal._group_name(group_by)`: the column a `group_by` names (its documented aliases
/// included), which is what `audit.create_alert` stores; 22023 for anything else.
#[pg_extern(immutable, strict, parallel_safe, schema = "audit_internal", name = "_group_name")]
fn group_name(group_by: &str) -> &'static str {
    group_column(group_by)
        .map(|g| g.0)
        .unwrap_or_else(|| crate::error::raise(AlertError::BadGroup(group_by.to_string())))
}

/// Tells every backend (at commit) and this one (at the next command) to reload the rules.
#[pg_extern(volatile, parallel_unsafe, schema = "audit_internal", name = "_rules_changed")]
fn rules_changed() {
    for table in [c"alert_rules", c"streams"] {
        if let Some(oid) = backend::audit_relid(table) {
            backend::invalidate_relcache(oid);
        }
    }
}

struct Rule {
    name: String,
    query: Query,
    sql: String,
    params: Vec<String>,
    threshold: i64,
    window_us: i64,
    window_text: String,
    /// When the rule was created (PostgreSQL-epoch µs): events before it never count.
    created_us: i64,
    group: Option<(&'static str, &'static str, Field)>,
    channel: String,
    severity: String,
    /// The count query, prepared on the rule's first match.
    plan: RefCell<Option<Plan>>,
}

struct Stream {
    channel: String,
    query: Option<Query>,
}

#[derive(Default)]
struct Rules {
    rules: Vec<Rule>,
    streams: Vec<Stream>,
}

thread_local! {
    static CACHE: RefCell<Option<Rc<Rules>>> = const { RefCell::new(None) };
    static WATCHED: Cell<[pg_sys::Oid; 2]> = const { Cell::new([pg_sys::InvalidOid; 2]) };
    static STALE: PlanBin = PlanBin::default();
    /// > 0 while an alert fires: the alert.fired event it records is streamed, not evaluated.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

fn load() -> Rc<Rules> {
    if let Some(r) = CACHE.with(|c| c.borrow().clone()) {
        return r;
    }
    let relid = |t| backend::audit_relid(t).unwrap_or(pg_sys::InvalidOid);
    WATCHED.set([relid(c"alert_rules"), relid(c"streams")]);
    let mut out = Rules::default();
    Spi::connect(|client| {
        let rows = client
            .select(
                "SELECT name, query, threshold, (extract(epoch FROM \"window\") * 1000000)::bigint, \
                        ((extract(epoch FROM created_at) - 946684800) * 1000000)::bigint, group_by, channel, severity \
                 FROM audit.alert_rules WHERE enabled ORDER BY name",
                None,
                &[],
            )
            .unwrap_or_else(|e| pgrx::error!("audit_ext: loading alert rules failed: {e}"));
        for r in rows {
            let name: String = r.get(1).ok().flatten().unwrap_or_default();
            let text: String = r.get(2).ok().flatten().unwrap_or_default();
            let Ok(query) = query::parse(&text) else {
                pgrx::warning!("audit_ext: alert {name:?} has a query that no longer parses; skipped");
                continue;
            };
            let t = query::translate(&query);
            out.rules.push(Rule {
                name,
                query,
                sql: t.sql,
                params: t.params,
                threshold: r.get::<i32>(3).ok().flatten().unwrap_or(1) as i64,
                window_us: r.get::<i64>(4).ok().flatten().unwrap_or(0),
                window_text: human_interval(r.get::<i64>(4).ok().flatten().unwrap_or(0)),
                created_us: r.get::<i64>(5).ok().flatten().unwrap_or(i64::MIN),
                group: r.get::<String>(6).ok().flatten().and_then(|g| group_column(&g)),
                channel: r.get::<String>(7).ok().flatten().unwrap_or_default(),
                severity: r.get(8).ok().flatten().unwrap_or_default(),
                plan: RefCell::new(None),
            });
        }
        let rows = client
            .select("SELECT channel, query FROM audit.streams ORDER BY channel", None, &[])
            .unwrap_or_else(|e| pgrx::error!("audit_ext: loading streams failed: {e}"));
        for r in rows {
            let channel: String = r.get(1).ok().flatten().unwrap_or_default();
            let query = match r.get::<String>(2).ok().flatten() {
                None => None,
                Some(q) => match query::parse(&q) {
                    Ok(q) => Some(q),
                    Err(_) => continue,
                },
            };
            out.streams.push(Stream { channel, query });
        }
    });
    let rc = Rc::new(out);
    CACHE.with(|c| *c.borrow_mut() = Some(rc.clone()));
    rc
}

fn relcache_changed(relid: pg_sys::Oid) {
    if relid != pg_sys::InvalidOid && !WATCHED.get().contains(&relid) {
        return;
    }
    if let Some(rules) = CACHE.with(|c| c.borrow_mut().take()) {
        STALE.with(|s| rules.rules.iter().filter_map(|r| r.plan.borrow_mut().take()).for_each(|p| s.retire(p)));
    }
}

/// One inserted event, read lazily from its tuple.
struct TupleEvent {
    row: Tuple,
    attno: [usize; COLUMNS.len()],
    ip: OnceCell<Option<String>>,
    docs: [OnceCell<Option<serde_json::Value>>; 3],
    now: i64,
}

impl TupleEvent {
    fn get(&self, c: usize) -> Option<Value> {
        self.row.get(self.attno[c])
    }
    fn at(&self) -> i64 {
        self.get(event::AT).map(|v| v.timestamptz()).unwrap_or(0)
    }
    fn id(&self) -> i64 {
        self.get(event::ID).map(|v| v.int8()).unwrap_or(0)
    }
    fn str(&self, c: usize) -> Option<&str> {
        // (text in the database encoding, UTF-8 here; anything else reads as empty)
        self.row.str_at(self.attno[c])
    }
}

impl EventView for TupleEvent {
    fn text(&self, field: Field) -> Option<&str> {
        let c = match field {
            Field::Action => event::ACTION,
            Field::Status => event::STATUS,
            Field::Severity => event::SEVERITY,
            Field::Actor => event::ACTOR,
            Field::Module => event::MODULE,
            Field::ObjectType => event::OBJECT_TYPE,
            Field::ObjectId => event::OBJECT_ID,
            Field::ObjectName => event::OBJECT_NAME,
            Field::Application => event::APPLICATION,
            Field::SessionId => event::SESSION_ID,
            Field::Message => event::MESSAGE,
            Field::ActorIp => {
                return self.ip.get_or_init(|| self.get(event::ACTOR_IP).map(|v| v.inet_text())).as_deref()
            }
            _ => return None,
        };
        self.str(c)
    }
    fn at_micros(&self) -> i64 {
        self.at() + audit_core::hash::PG_EPOCH_OFFSET_US
    }
    fn now_micros(&self) -> i64 {
        self.now
    }
    fn int(&self, field: Field) -> Option<i64> {
        let c = match field {
            Field::Id => event::ID,
            Field::Chain => return self.get(event::CHAIN).map(|v| v.int4() as i64),
            Field::Seq => event::SEQ,
            _ => return None,
        };
        self.get(c).map(|v| v.int8())
    }
    fn json(&self, doc: Doc) -> Option<&serde_json::Value> {
        let (slot, c) = match doc {
            Doc::Metadata => (0, event::METADATA),
            Doc::Old => (1, event::OLD),
            Doc::New => (2, event::NEW),
        };
        self.docs[slot]
            .get_or_init(|| self.get(c).and_then(|v| v.with_jsonb_text(|t| serde_json::from_slice(t.to_bytes()).ok())))
            .as_ref()
    }
}

/// Keeps DEPTH raised for as long as it lives (also when an error unwinds through it).
struct Firing;
impl Firing {
    fn enter() -> Firing {
        DEPTH.set(DEPTH.get() + 1);
        Firing
    }
}
impl Drop for Firing {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get().saturating_sub(1));
    }
}

crate::c_function!(
    /// `audit_internal.evaluate_alerts()`: the AFTER INSERT ... FOR EACH ROW trigger `zz_alerts`. It runs
    /// as whoever inserts (the extension's owner inside audit_ext's own functions) and follows the
    /// rule of src/pg/elevate.rs: rules are matched in memory, and the SQL a match costs (kept plans
    /// built from the translator's fixed vocabulary, values as parameters) runs under a pinned path.
    pg_finfo_audit_evaluate_alerts,
    audit_evaluate_alerts,
    &[],
    |call| {
        let Some(trigger) = call.trigger().filter(|t| t.is_row()) else {
            crate::error::raise(AlertError::NotAlertTrigger("it is a trigger function"))
        };
        evaluate_event(&trigger);
        Some(Value::void())
    }
);

fn evaluate_event(trigger: &crate::pg::trigger::Trigger) {
    if crate::gucs::restoring() {
        return; // restored events are not new: no alerts, no streams
    }
    // (loaded once per backend; only the load itself needs the pinned path)
    let rules = match CACHE.with(|c| c.borrow().clone()) {
        Some(r) => r,
        // as the extension's owner: a role that may only INSERT need not read the rules
        None => crate::pg::elevate::as_owner(load),
    };
    let nested = DEPTH.get() > 0;
    if rules.streams.is_empty() && (nested || rules.rules.is_empty()) {
        return;
    }
    STALE.with(PlanBin::empty);
    let Some(attno) = event::attnos(&trigger.desc()) else {
        crate::error::raise(AlertError::NotAlertTrigger("it only works on audit.events"));
    };
    let ev = TupleEvent {
        row: trigger.row(),
        attno,
        ip: OnceCell::new(),
        docs: Default::default(),
        now: backend::now() + audit_core::hash::PG_EPOCH_OFFSET_US,
    };

    for s in &rules.streams {
        if s.query.as_ref().is_none_or(|q| q.matches(&ev)) {
            crate::pg::elevate::with_pinned_path(|| backend::notify(&s.channel, &stream_payload(&ev)));
        }
    }
    if !nested {
        for r in &rules.rules {
            if r.query.matches(&ev) {
                // As the extension's owner: the trigger runs as the inserter, and a role that
                // may INSERT but is only a viewer would count just the events row level
                // security shows it, and miss the alert. The count and the firing are
                // audit_ext's own statements (the rule's condition is the search language's
                // translation: columns, operators of pg_catalog and parameters), the rule of
                // src/pg/elevate.rs.
                crate::pg::elevate::as_owner(|| evaluate(r, &ev));
            }
        }
    }
}

/// `5 minutes`, `1 hour 30 minutes`, `4 seconds`: the window as alert payloads show it,
/// whatever the session's IntervalStyle.
fn human_interval(us: i64) -> String {
    let mut parts = Vec::new();
    let mut rest = us;
    for (unit, size) in
        [("day", 86_400_000_000), ("hour", 3_600_000_000), ("minute", 60_000_000), ("second", 1_000_000)]
    {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
        }
    }
    if rest > 0 || parts.is_empty() {
        parts.push(format!("{} microseconds", rest));
    }
    parts.join(" ")
}

/// A string field of a payload, cut to FIELD_CHARS characters (None: null).
fn cut(s: Option<&str>) -> serde_json::Value {
    s.map_or(serde_json::Value::Null, |s| cut_str(s).into())
}

fn stream_payload(ev: &TupleEvent) -> String {
    serde_json::json!({
        "id": ev.id(),
        "at": event::iso_utc(ev.at_micros()),
        "chain": ev.int(Field::Chain),
        "seq": ev.int(Field::Seq),
        "actor": cut(ev.text(Field::Actor)),
        "actor_ip": cut(ev.text(Field::ActorIp)),
        "action": cut(ev.text(Field::Action)),
        "status": cut(ev.text(Field::Status)),
        "severity": cut(ev.text(Field::Severity)),
        "module": cut(ev.text(Field::Module)),
        "object_type": cut(ev.text(Field::ObjectType)),
        "object_id": cut(ev.text(Field::ObjectId)),
        "object_name": cut(ev.text(Field::ObjectName)),
    })
    .to_string()
}

/// Counts the rule's events in its window for the event's group and fires at the threshold,
/// once per window and group: counting starts after the group's last firing.
fn evaluate(rule: &Rule, ev: &TupleEvent) {
    let spi = spi::Connection::open();
    let group_value: Option<String> = rule.group.and_then(|(_, _, f)| ev.text(f).map(str::to_owned));
    let grp = serde_json::to_string(&group_value).unwrap_or_default();
    let at = ev.at();

    spi.run(
        c"SELECT fired_at FROM audit.alert_state WHERE alert = $1 AND grp = $2",
        &[(pg_sys::TEXTOID, Some(text(&rule.name))), (pg_sys::TEXTOID, Some(text(&grp)))],
        false,
    );
    let last_fired = spi.cell(0, 1);
    let window_start = at - rule.window_us;
    let since = last_fired.map_or(window_start, |v| v.timestamptz().max(window_start)).max(rule.created_us);

    if rule.plan.borrow().is_none() {
        let group_sql = match rule.group {
            Some((col, ty, _)) => format!(" AND e.{col} IS NOT DISTINCT FROM ($4)::{ty}"),
            None => " AND $4::text IS NULL".to_string(),
        };
        let sql = CString::new(format!(
            "SELECT count(*), min(e.id), max(e.id) FROM audit.events e \
             WHERE ({}) AND e.at > $2 AND e.at <= $3{group_sql}",
            rule.sql
        ))
        .unwrap();
        let types = [pg_sys::TEXTARRAYOID, pg_sys::TIMESTAMPTZOID, pg_sys::TIMESTAMPTZOID, pg_sys::TEXTOID];
        *rule.plan.borrow_mut() = Some(spi.keep_plan(&sql, &types));
    }
    let plan = rule.plan.borrow().clone().expect("the rule's plan was just made");
    let args = [
        Value::from_pgrx(rule.params.clone()),
        Some(Value::from_timestamptz(since)),
        Some(Value::from_timestamptz(at)),
        group_value.as_deref().map(text),
    ];
    // read_only = false: a fresh snapshot after a command-counter bump, so the count includes
    // the event that fired this trigger (the statement's own snapshot predates it).
    spi.execute(&plan, &args, false);
    let count = spi.cell(0, 1).map_or(0, |v| v.int8());
    if count < rule.threshold {
        return;
    }
    let first_id = spi.cell(0, 2).map(|v| v.int8());
    let last_id = spi.cell(0, 3).map(|v| v.int8());

    // One firing transaction per rule and group at a time, without waiting: a transaction
    // that fired and stays open holds the group's row in alert_state, and a writer must never
    // wait for it (it would hang behind any open transaction that produced a matching event).
    // The open one fires; if it rolls back, the next matching event counts again and fires.
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (rule.name.as_str(), grp.as_str()).hash(&mut h);
        h.finish() as u32
    };
    if !crate::pg::locks::alert(key) {
        return;
    }
    // Compare-and-set on the group's last firing: of two transactions that reach the
    // threshold one after the other, only the one that moves fired_at fires.
    let rc = spi.run(
        c"INSERT INTO audit.alert_state AS s (alert, grp, fired_at) VALUES ($1, $2, $3) \
          ON CONFLICT (alert, grp) DO UPDATE SET fired_at = excluded.fired_at, fired_count = s.fired_count + 1 \
          WHERE s.fired_at IS NOT DISTINCT FROM $4 RETURNING 1",
        &[
            (pg_sys::TEXTOID, Some(text(&rule.name))),
            (pg_sys::TEXTOID, Some(text(&grp))),
            (pg_sys::TIMESTAMPTZOID, Some(Value::from_timestamptz(at))),
            (pg_sys::TIMESTAMPTZOID, last_fired),
        ],
        false,
    );
    if rc != pg_sys::SPI_OK_INSERT_RETURNING as i32 || spi.processed() == 0 {
        return;
    }
    let payload = serde_json::json!({
        "alert": rule.name,
        "group_by": rule.group.map(|g| g.0),
        "group": group_value.as_deref().map(|g| cut(Some(g))),
        "count": count,
        "threshold": rule.threshold,
        "window": rule.window_text,
        "severity": rule.severity,
        "first_id": first_id,
        "last_id": last_id,
        "event_id": ev.id(),
        "at": event::iso_utc(ev.at_micros()),
    })
    .to_string();
    backend::notify(&rule.channel, &payload);
    {
        let _firing = Firing::enter();
        spi.run(
            &backend::internal_sql(
                "SELECT audit_internal._event('alert.fired', 'alert', 'alert', $2, $1, NULL, $4::jsonb, $5, $3)",
            ),
            &[
                (pg_sys::TEXTOID, Some(text(&rule.name))),
                (pg_sys::TEXTOID, group_value.as_deref().map(|g| text(&cut_str(g)))),
                (pg_sys::TEXTOID, Some(text(&rule.severity))),
                (pg_sys::TEXTOID, Some(text(&payload))),
                (pg_sys::TEXTOID, Some(text(&format!("{count} matching events within {}", rule.window_text)))),
            ],
            false,
        );
    }
}

/// Cut so that the field's JSON text (escapes included: a control character takes 6 bytes)
/// stays within FIELD_CHARS bytes, and the whole payload under NOTIFY's 8000 bytes.
fn cut_str(s: &str) -> String {
    let mut out = String::new();
    let mut bytes = 0;
    for c in s.chars() {
        let n = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if bytes + n > FIELD_CHARS {
            break;
        }
        bytes += n;
        out.push(c);
    }
    out
}

fn text(s: &str) -> Value {
    Value::from_text(s.as_bytes())
}

pub fn init() {
    crate::pg::callbacks::on_relcache_invalidation(relcache_changed);
}

//! `audit.diff(old, new)` and `audit.diff_rows(old, new)`: what changed between two versions
//! of an object, for the side-by-side view auditors expect (NetEye's difference panel).
//!
//! Paths: object keys joined by `.` (`a.b.c`); a key that is empty or contains `.`, `[`, `]`,
//! `"` or white space is written as a JSON string (`a."b.c"`). Array elements that are objects
//! with an `"id"` key are matched by id and addressed as `items[<id as JSON>]` (`items[7]`,
//! `items["sku-1"]`); any other array is compared as a whole value. The whole document is the
//! empty path `""`. Numbers compare by their text as PostgreSQL keeps it (`1.0` vs `1.00` is a
//! change); serde_json runs with `arbitrary_precision`, so no digit is ever lost.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

/// One difference: path, kind, old side, new side.
pub type Entry = (String, Change, Option<Value>, Option<Value>);

/// Every difference between `old` and `new` (None = absent), in path order.
pub fn diff(old: Option<&Value>, new: Option<&Value>) -> Vec<Entry> {
    let mut out = Vec::new();
    walk(String::new(), old, new, &mut out);
    out
}

fn walk(path: String, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Entry>) {
    match (old, new) {
        (None, None) => {}
        (Some(Value::Object(o)), Some(Value::Object(n))) => objects(&path, o, n, out),
        (None, Some(Value::Object(n))) if path.is_empty() => objects(&path, &Map::new(), n, out),
        (Some(Value::Object(o)), None) if path.is_empty() => objects(&path, o, &Map::new(), out),
        (Some(Value::Array(o)), Some(Value::Array(n))) if o != n => match (by_id(o), by_id(n)) {
            (Some(o), Some(n)) => arrays(&path, &o, &n, out),
            _ => out.push((path, Change::Changed, old.cloned(), new.cloned())),
        },
        (Some(o), Some(n)) if o == n => {}
        (Some(o), Some(n)) => out.push((path, Change::Changed, Some(o.clone()), Some(n.clone()))),
        (None, Some(n)) => out.push((path, Change::Added, None, Some(n.clone()))),
        (Some(o), None) => out.push((path, Change::Removed, Some(o.clone()), None)),
    }
}

fn objects(path: &str, o: &Map<String, Value>, n: &Map<String, Value>, out: &mut Vec<Entry>) {
    let mut keys: Vec<&String> = o.keys().chain(n.keys().filter(|k| !o.contains_key(*k))).collect();
    keys.sort();
    for k in keys {
        walk(join(path, &segment(k)), o.get(k), n.get(k), out);
    }
}

/// The elements of `a` by the JSON text of their `id`, in order, when every element is an
/// object with an `id` and no id repeats; None otherwise (the array then compares whole).
fn by_id(a: &[Value]) -> Option<Vec<(String, &Value)>> {
    let mut seen = HashSet::new();
    let elems: Vec<(String, &Value)> = a
        .iter()
        .map(|e| e.as_object()?.get("id").map(|id| (serde_json::to_string(id).unwrap_or_default(), e)))
        .collect::<Option<_>>()?;
    (!elems.is_empty() && elems.iter().all(|(id, _)| seen.insert(id.clone()))).then_some(elems)
}

fn arrays(path: &str, o: &[(String, &Value)], n: &[(String, &Value)], out: &mut Vec<Entry>) {
    let old: HashMap<&str, &Value> = o.iter().map(|(id, e)| (id.as_str(), *e)).collect();
    let new: HashMap<&str, &Value> = n.iter().map(|(id, e)| (id.as_str(), *e)).collect();
    let ids = o.iter().map(|(id, _)| id).chain(n.iter().map(|(id, _)| id).filter(|id| !old.contains_key(id.as_str())));
    for id in ids {
        walk(format!("{path}[{id}]"), old.get(id.as_str()).copied(), new.get(id.as_str()).copied(), out);
    }
}

fn segment(k: &str) -> String {
    if k.is_empty() || k.chars().any(|c| matches!(c, '.' | '[' | ']' | '"') || c.is_whitespace()) {
        serde_json::to_string(k).unwrap_or_default()
    } else {
        k.to_string()
    }
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

/// `{"path": {"old": ..., "new": ...}}` with only what changed; a missing side is null.
#[pg_extern(immutable, parallel_safe, schema = "audit_internal", name = "_diff")]
fn diff_jsonb(old: Option<JsonB>, new: Option<JsonB>) -> JsonB {
    let entries = diff(old.as_ref().map(|j| &j.0), new.as_ref().map(|j| &j.0));
    let mut m = Map::new();
    for (path, _, o, n) in entries {
        let mut side = Map::new();
        side.insert("old".into(), o.unwrap_or(Value::Null));
        side.insert("new".into(), n.unwrap_or(Value::Null));
        m.insert(path, Value::Object(side));
    }
    JsonB(Value::Object(m))
}

/// One row per difference, for a side-by-side view in psql.
#[pg_extern(immutable, parallel_safe, schema = "audit_internal", name = "_diff_rows")]
fn diff_rows(
    old: Option<JsonB>,
    new: Option<JsonB>,
) -> TableIterator<
    'static,
    (
        name!(path, String),
        name!(change, &'static str),
        name!(old_value, Option<JsonB>),
        name!(new_value, Option<JsonB>),
    ),
> {
    let entries = diff(old.as_ref().map(|j| &j.0), new.as_ref().map(|j| &j.0));
    TableIterator::new(entries.into_iter().map(|(p, c, o, n)| (p, c.as_str(), o.map(JsonB), n.map(JsonB))))
}

#[derive(thiserror::Error, Debug)]
pub enum DiffError {
    #[error("the document nests arrays and objects more than {0} levels deep")]
    TooDeep(usize),
}

impl crate::error::SqlError for DiffError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED
    }
    fn hint(&self) -> Option<String> {
        Some("audit.diff compares documents up to 100 levels deep, the most an event may hold.".into())
    }
}

crate::c_function!(
    /// `audit_internal._depth_checked(doc jsonb) returns jsonb`: `doc` itself, or 54000 when it nests more
    /// than [`crate::event::MAX_JSON_DEPTH`] levels. `audit.diff` and `audit.diff_rows` (SQL
    /// wrappers in sql/diff.sql) pass their arguments through it, so that a document deeper than
    /// serde_json's 128 levels is a clear error rather than an internal one; events that deep are
    /// refused when they are recorded, so this only meets documents given by hand.
    pg_finfo_audit_depth_checked,
    audit_depth_checked,
    &[pgrx::pg_sys::JSONBOID],
    |call| {
        let doc = call.arg(0)?;
        if doc.jsonb_deeper_than(crate::event::MAX_JSON_DEPTH) {
            crate::error::raise(DiffError::TooDeep(crate::event::MAX_JSON_DEPTH));
        }
        Some(doc)
    }
);

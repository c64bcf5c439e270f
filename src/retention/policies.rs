//! Retention policies (sql/retention/policies.sql): which class an action belongs to, and the
//! per-backend cache of `audit.retention` that decides it per event.

use super::RetentionError;
use crate::error::raise;
use crate::pg::backend;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

thread_local! {
    /// (pattern, class), most specific first.
    static POLICIES: RefCell<Option<Vec<(String, i32)>>> = const { RefCell::new(None) };
    static POLICY_REL: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

/// A relcache invalidation of `relid` (InvalidOid: of everything).
pub(super) fn relcache_changed(relid: pg_sys::Oid) {
    if relid == pg_sys::InvalidOid || relid == POLICY_REL.get() {
        POLICIES.with(|p| p.borrow_mut().take());
    }
}

/// A policy pattern: `*`, an action name, or a dotted prefix ending in `.*`.
pub fn valid_pattern(p: &str) -> bool {
    let name = p.strip_suffix(".*").unwrap_or(p);
    p == "*"
        || (!name.is_empty()
            && name.len() <= crate::vocab::MAX_ACTION_CHARS
            && !name.contains('*')
            && !name.chars().any(|c| c.is_whitespace() || c.is_control()))
}

fn matches(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => pattern == action,
    }
}

/// Most specific first: an exact name, then longer prefixes, then `*`.
fn specificity(pattern: &str) -> (bool, usize) {
    (!pattern.ends_with('*'), pattern.len())
}

/// The class of the most specific policy matching `action`; 0 (the `*` policy) otherwise.
pub fn class_of(action: &str) -> i32 {
    POLICIES.with(|p| {
        let mut p = p.borrow_mut();
        // as the extension's owner: a role that may only INSERT need not read the policies
        let list = p.get_or_insert_with(|| crate::pg::elevate::as_owner(load_policies));
        list.iter().find(|(pat, _)| matches(pat, action)).map(|(_, c)| *c).unwrap_or(0)
    })
}

fn load_policies() -> Vec<(String, i32)> {
    let mut list: Vec<(String, i32)> = Spi::connect(|client| {
        client
            .select("SELECT pattern, class FROM audit.retention", None, &[])
            .map(|rows| rows.filter_map(|r| Some((r.get::<String>(1).ok()??, r.get::<i32>(2).ok()??))).collect())
            .unwrap_or_default()
    });
    list.sort_by(|a, b| specificity(&b.0).cmp(&specificity(&a.0)).then(a.0.cmp(&b.0)));
    if let Some(ns) = backend::namespace_oid(c"audit") {
        POLICY_REL.set(backend::relid_in(ns, c"retention").unwrap_or(pg_sys::InvalidOid));
    }
    list
}

/// `audit.retention_class(action)`: the retention class an event with this action is stored
/// under (the class of the most specific policy of `audit.retention_policies`).
#[pg_extern(stable, strict, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn retention_class(action: &str) -> i32 {
    class_of(action)
}

/// `audit_internal._check_pattern(pattern)`: raises 22023 unless `pattern` is a valid policy pattern.
#[pg_extern(immutable, strict, parallel_safe, schema = "audit_internal", name = "_check_pattern")]
fn check_pattern(pattern: &str) -> bool {
    if !valid_pattern(pattern) {
        raise(RetentionError::BadPattern(pattern.to_string()));
    }
    true
}

/// `audit_internal._retention_changed()`: makes every backend reload the policies (called by
/// `audit.set_retention` after it changed `audit.retention`).
#[pg_extern(volatile, parallel_unsafe, schema = "audit_internal", name = "_retention_changed")]
fn retention_changed() {
    for t in [c"retention", c"partitions"] {
        if let Some(oid) = backend::audit_relid(t) {
            backend::invalidate_relcache(oid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        for ok in ["*", "authentication.*", "row.insert", "a.b.*", "VM_POWER_OFF"] {
            assert!(valid_pattern(ok), "{ok}");
        }
        for bad in ["", ".*", "a*", "*.login", "a b", "a.*.*", "a.**"] {
            assert!(!valid_pattern(bad), "{bad}");
        }
        assert!(matches("*", "x"));
        assert!(matches("row.*", "row.insert"));
        assert!(!matches("row.*", "rows.insert"));
        assert!(!matches("row.*", "row"));
        assert!(matches("row.insert", "row.insert"));
        assert!(!matches("row.insert", "row.insert2"));
        let mut v = vec!["*", "a.*", "a.b.*", "a.b.c"];
        v.sort_by_key(|p| std::cmp::Reverse(specificity(p)));
        assert_eq!(v, vec!["a.b.c", "a.b.*", "a.*", "*"]);
    }
}

//! The format of a `retention.applied` event's `new`: what `audit.apply_retention` dropped and
//! the anchors that keep every chain verifiable across the gap. The one owner of its keys:
//! apply_retention (sql/retention/apply.sql) builds the event through
//! `audit_internal._retention_applied()`, which refuses a key it does not know, and audit.verify()
//! reads it back through [`Applied::parse`]. docs/hash-format.md "Retention" describes it for
//! outside verifiers (tests/tools/verify_export.py).

use crate::error::raise;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `new` of a retention.applied event.
#[derive(Serialize, Deserialize, Debug)]
pub struct Applied {
    pub partitions: Vec<Dropped>,
    #[serde(default)]
    pub events: i64,
    /// null when retention has never dropped a non-empty partition
    #[serde(default)]
    pub anchors: Option<Vec<Anchor>>,
    #[serde(default)]
    pub archive_dir: Option<String>,
}

/// One dropped partition.
#[derive(Serialize, Deserialize, Debug)]
pub struct Dropped {
    pub partition: String,
    pub retention_class: i32,
    /// Its range, as timestamptz text.
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub events: i64,
    /// chain (as text) → what of it the partition held.
    pub chains: BTreeMap<String, Stretch>,
    /// The keep (interval text) it was dropped under; absent in events of audit_ext before it
    /// was recorded (verify then cannot back anchors on that partition).
    #[serde(default)]
    pub keep: Option<String>,
}

/// One chain's events in one dropped partition.
#[derive(Serialize, Deserialize, Debug)]
pub struct Stretch {
    #[serde(default)]
    pub events: i64,
    #[serde(default)]
    pub first_id: i64,
    #[serde(default)]
    pub last_id: i64,
    pub first_seq: i64,
    pub last_seq: i64,
}

/// A dropped stretch of one chain, seqs `from_seq..=to_seq`, and the hash (hex) of `to_seq`,
/// which the next event left links to.
#[derive(Serialize, Deserialize, Debug)]
pub struct Anchor {
    pub chain: i32,
    pub from_seq: i64,
    pub to_seq: i64,
    pub to_hash: String,
}

impl Applied {
    /// The event's `new`, or None when it is not in this format (a hand-made event: verify
    /// then relies on none of its anchors). Lenient on what verify does not need (counts, the
    /// archive directory), so that a forged event is judged by its anchors and partitions.
    pub fn parse(new: serde_json::Value) -> Option<Applied> {
        serde_json::from_value(new).ok()
    }
}

#[derive(thiserror::Error, Debug)]
#[error("audit_ext built a retention.applied event that src/retention/anchor.rs does not describe: {0}")]
pub struct BadApplied(String);

impl crate::error::SqlError for BadApplied {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
    }
    fn hint(&self) -> Option<String> {
        Some("This is a bug in audit_ext: apply_retention and src/retention/anchor.rs must agree.".into())
    }
}

/// `audit_internal._retention_applied(partitions, events, anchors, archive_dir)`: the `new` of a
/// retention.applied event, checked against [`Applied`] (an internal error, XX000, if
/// apply_retention's JSON has a key it does not know or lacks one).
#[pg_extern(immutable, parallel_safe, schema = "audit_internal", name = "_retention_applied")]
fn retention_applied(partitions: JsonB, events: i64, anchors: Option<JsonB>, archive_dir: Option<&str>) -> JsonB {
    let given_parts = partitions.0;
    let given_anchors = anchors.map(|a| a.0).unwrap_or(serde_json::Value::Null);
    let partitions =
        serde_json::from_value(given_parts.clone()).unwrap_or_else(|e| raise(BadApplied(format!("partitions: {e}"))));
    let anchors =
        serde_json::from_value(given_anchors.clone()).unwrap_or_else(|e| raise(BadApplied(format!("anchors: {e}"))));
    let applied = Applied { partitions, events, anchors, archive_dir: archive_dir.map(str::to_string) };
    let out = serde_json::to_value(&applied).unwrap_or_else(|e| raise(BadApplied(e.to_string())));
    // a key the structs do not know would be dropped silently: refuse it instead
    for (what, given) in [("partitions", &given_parts), ("anchors", &given_anchors)] {
        if out.get(what) != Some(given) {
            raise(BadApplied(format!("{what} has keys that src/retention/anchor.rs does not list")));
        }
    }
    JsonB(out)
}

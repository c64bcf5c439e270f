//! Retention: classes, policies, partitions, tiers and apply_retention. The SQL surface
//! (`set_retention`, `apply_retention`, `ensure_partitions`, `set_tier`) is in sql/retention/
//! (policies, partitions, tiers, apply); [`policies`] and [`partitions`] hold what runs per
//! event, [`anchor`] the format of what apply_retention leaves for audit.verify().
//!
//! - **Class of an event.** `audit.events` is range-partitioned on `(retention_class, at)`, so
//!   each class's months can be dropped whole. The class must be known before PostgreSQL
//!   routes the row (a trigger runs after routing; a default cannot read other columns), so
//!   every INSERT of audit_ext computes it: `audit.retention_class(action)`, the most specific
//!   policy's class, from a per-backend cache of `audit.retention` reloaded on a relcache
//!   invalidation of that table.
//! - **Partitions ahead.** The chain trigger notices when the partitions of an event's class
//!   end within one period, and starts a dynamic background worker that creates the next ones
//!   in its own short transaction. Creating them in the writer's transaction would hold the
//!   default partition's ACCESS EXCLUSIVE lock (which ATTACH takes) until the writer commits,
//!   stalling every other writer's chain-head read meanwhile. No scheduler and no
//!   `shared_preload_libraries` needed.
//! - **Straight into the partition.** `audit.record` inserts into the partition that holds its
//!   event ([`partition_for`]) rather than into the parent.

pub mod anchor;
pub mod partitions;
pub mod policies;

use pgrx::pg_sys;

#[derive(thiserror::Error, Debug)]
pub enum RetentionError {
    #[error("invalid action pattern {0:?}")]
    BadPattern(String),
}

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for RetentionError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        match self {
            RetentionError::BadPattern(_) => pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            RetentionError::BadPattern(_) => "Use '*', an action name such as 'page.view', or a dotted prefix ending in '.*' such as 'authentication.*'.".into(),
        })
    }
}

fn relcache_changed(relid: pg_sys::Oid) {
    policies::relcache_changed(relid);
    partitions::relcache_changed(relid);
}

/// Registers the relcache callback that keeps the per-backend caches of policies and
/// partitions current.
pub fn init() {
    crate::pg::callbacks::on_relcache_invalidation(relcache_changed);
}

//! The guards of the log (sql/guards.sql): the `append_only` trigger that refuses every
//! UPDATE, DELETE and TRUNCATE of audit.events, and the guards row of `audit.verify()`, which
//! asks `audit_internal._guard_problems()` (sql/guards.sql) what is wrong with them.

use crate::error::raise;
use pgrx::prelude::*;

#[derive(thiserror::Error, Debug)]
pub enum GuardError {
    #[error("audit.events is append-only: {op} is not allowed")]
    AppendOnly { op: &'static str },
}

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for GuardError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE
    }
    fn hint(&self) -> Option<String> {
        Some("Audit events can never be changed or removed. Record a corrective event with audit.record(); old events leave only through retention.".into())
    }
}

/// The BEFORE UPDATE OR DELETE OR TRUNCATE statement trigger `append_only` of audit.events
/// and of each of its partitions.
#[pg_trigger]
fn refuse_change<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    let op = match trigger.op() {
        Ok(PgTriggerOperation::Update) => "UPDATE",
        Ok(PgTriggerOperation::Delete) => "DELETE",
        Ok(PgTriggerOperation::Truncate) => "TRUNCATE",
        _ => "this change",
    };
    // audit_ext's own upkeep moving events out of the default partition (sql/retention/partitions.sql)
    if crate::maintenance::active() && op == "DELETE" {
        return Ok(None);
    }
    raise(GuardError::AppendOnly { op })
}

/// What is wrong with the guards of the log, if anything (`audit_internal._guard_problems()`, which
/// lists them). A superuser can switch a guard off (after disabling the event triggers that
/// refuse it); verify then reports a row with chain NULL, so that `bool_and(ok)` fails even
/// before any event was touched.
///
/// One library serves every version of the SQL objects: between installing a new audit_ext
/// and `ALTER EXTENSION audit_ext UPDATE`, a database still has the previous version's. verify
/// then cannot check the guards with the lists of this version, and says so (not ok) rather
/// than vouch for them.
pub fn problems() -> Option<Vec<String>> {
    let current = crate::status::read_text(
        "SELECT (pg_catalog.to_regprocedure('audit_internal._guard_problems()') IS NOT NULL)::text",
    );
    if current.as_deref() == Some("true") {
        let list: Vec<String> = Spi::connect(|client| {
            client
                .select("SELECT p FROM audit_internal._guard_problems() p ORDER BY p", None, &[])
                .map(|rows| rows.filter_map(|r| r.get::<String>(1).ok().flatten()).collect())
                .unwrap_or_else(|e| pgrx::error!("audit_ext: reading the guards failed: {e}"))
        });
        return (!list.is_empty()).then_some(list);
    }
    let sql_version = crate::status::read_text(
        "SELECT x.extversion FROM pg_catalog.pg_extension x WHERE x.extname OPERATOR(pg_catalog.=) 'audit_ext'",
    );
    Some(vec![format!(
        "the SQL objects of audit_ext are version {}, its library {}: run ALTER EXTENSION audit_ext UPDATE",
        sql_version.unwrap_or_default(),
        env!("CARGO_PKG_VERSION")
    )])
}

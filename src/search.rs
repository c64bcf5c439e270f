//! `audit.search(...)` and `audit.explain_query(...)`: the query language of `audit_core::query`
//! (grammar in docs/query-language.md) turned into parameterised SQL over `audit.events`.
//!
//! The translator emits SQL text built only from a fixed vocabulary (column names from a
//! whitelist, operators, casts) and `$1[n]` references; every value the user wrote travels in
//! the one `text[]` parameter `$1`. sql/search.sql runs it with `EXECUTE ... USING`.

use audit_core::query;
use pgrx::prelude::*;

/// `{condition, param 1, param 2, ...}` for `query`: one array, so that PL/pgSQL evaluates the
/// call as a simple expression (no SPI round trip, measured at about a tenth of a millisecond
/// per search) and passes `t[2:]` as the parameter array.
#[pg_extern(immutable, parallel_safe, strict, schema = "audit_internal", name = "_translate")]
fn translate(query: &str) -> Vec<String> {
    let q = query::parse(query).unwrap_or_else(|e| crate::error::raise(e));
    let t = query::translate(&q);
    std::iter::once(t.sql).chain(t.params).collect()
}

/// What `audit.search(query)` runs: the statement and its parameters. Recorded as an
/// `audit.explain_query` event (src/reads.rs): what an auditor looked for is itself a read.
#[pg_extern(volatile, parallel_unsafe, strict)]
#[search_path(pg_catalog, pg_temp)]
fn explain_query(query: &str) -> String {
    let q = query::parse(query).unwrap_or_else(|e| crate::error::raise(e));
    let t = query::translate(&q);
    let params: Vec<String> = t.params.iter().map(|p| serde_json::to_string(p).unwrap_or_default()).collect();
    crate::reads::record("audit.explain_query", serde_json::json!({ "query": crate::reads::cut(query) }), 1);
    format!(
        "SELECT e.* FROM audit.events e\nWHERE ({})\n  AND ($2::bigint IS NULL OR e.id < $2)\nORDER BY e.id DESC\nLIMIT $3\n\n$1 = ARRAY[{}]",
        t.sql,
        params.join(", ")
    )
}

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for query::QueryError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        pgrx::PgSqlErrorCode::ERRCODE_SYNTAX_ERROR
    }
    fn hint(&self) -> Option<String> {
        Some(
            "See docs/query-language.md, e.g. 'action:authentication.login AND status:failure AND at:>now-24h'.".into(),
        )
    }
}

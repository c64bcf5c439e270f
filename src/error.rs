//! How module errors become PostgreSQL errors: one small trait and one function.
//!
//! Each SQL-facing module has its own `thiserror` enum and implements [`SqlError`] for it
//! beside it, mapping every variant to an explicit SQLSTATE and a hint that names the fix;
//! [`raise`] reports it with `ereport`. This file imports no module: it is a leaf.
//! A `#[pg_trigger]` returning `Err` would surface as a generic error, so triggers call
//! [`raise`] too.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// An error that knows its SQLSTATE and how the user fixes it.
pub trait SqlError: std::fmt::Display {
    fn code(&self) -> PgSqlErrorCode;
    fn hint(&self) -> Option<String> {
        None
    }
}

/// Raises `err` as an ERROR with its SQLSTATE, message and hint. Never returns.
pub fn raise<E: SqlError>(err: E) -> ! {
    let mut report = ErrorReport::new(err.code(), err.to_string(), "audit_ext");
    if let Some(hint) = err.hint() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned")
}

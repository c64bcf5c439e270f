//! The one place where module errors become PostgreSQL errors.
//!
//! Each SQL-facing module has its own `thiserror` enum; this file maps every variant to an
//! explicit SQLSTATE and a hint that names the fix, and raises it with `ereport`.
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

// ---- the mapping, module by module -------------------------------------------------------

use crate::alerts::AlertError;
use crate::append::AppendError;
use crate::capture::CaptureError;
use crate::query::QueryError;
use crate::record::RecordError;
use crate::retention::RetentionError;
use crate::verify::VerifyError;

impl SqlError for AppendError {
    fn code(&self) -> PgSqlErrorCode {
        use AppendError::*;
        match self {
            AppendOnly { .. } => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            Generated { .. } => PgSqlErrorCode::ERRCODE_GENERATED_ALWAYS,
            Invalid { .. } | MetadataNotObject => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            BadTimestamp => PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
            TooLarge { .. } | TooDeep { .. } => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            WrongTable { .. } => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            RestoredMismatch { .. } => PgSqlErrorCode::ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
            RestoredIncomplete { .. } => PgSqlErrorCode::ERRCODE_GENERATED_ALWAYS,
            ReservedModule(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        }
    }
    fn hint(&self) -> Option<String> {
        use AppendError::*;
        Some(match self {
            AppendOnly { .. } => "Audit events can never be changed or removed. Record a corrective event with audit.record(); old events leave only through retention.".into(),
            Generated { .. } => "Leave id, chain, seq, txid, prev_hash and hash out of the INSERT: the extension assigns them. Restoring a dump? Run pg_restore as a superuser with PGOPTIONS='-c audit_ext.restore=on'.".into(),
            Invalid { fix, .. } => fix.to_string(),
            MetadataNotObject => "Pass a JSON object, e.g. '{\"request_id\": \"r1\"}'::jsonb.".into(),
            BadTimestamp => "Leave \"at\" out of the INSERT so that it defaults to clock_timestamp().".into(),
            TooLarge { .. } => "Store large documents elsewhere and record a reference, or raise audit_ext.max_event_bytes (superuser).".into(),
            TooDeep { .. } => "Flatten the document (alerts, search and audit.diff work on documents up to 100 levels deep), or store it elsewhere and record a reference.".into(),
            WrongTable { .. } => return None,
            RestoredMismatch { .. } => "The dump does not hold the events as they were recorded. Restore from an untouched dump, or load it without that event and let audit.verify() show the gap.".into(),
            RestoredIncomplete { .. } => "Restore events only from a pg_dump of audit_ext's own table.".into(),
            ReservedModule(_) => "Name your own module (e.g. 'billing'); only audit_ext's own functions record events of capture, ddl, role, alert, retention and audit.".into(),
        })
    }
}

impl SqlError for RecordError {
    fn code(&self) -> PgSqlErrorCode {
        match self {
            RecordError::LocalOutsideTransaction => PgSqlErrorCode::ERRCODE_NO_ACTIVE_SQL_TRANSACTION,
            RecordError::BadContext(_) | RecordError::ReservedModule(_) | RecordError::ReservedAction(_) => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            RecordError::LocalOutsideTransaction => "Call it inside BEGIN ... COMMIT, as its first statement: that is safe with every connection pooler. local => false keeps the context for the whole session, so use it only on a connection no other client shares (never under transaction pooling, where the next client would inherit it).".into(),
            RecordError::BadContext(_) => "Pass a JSON object as metadata.".into(),
            RecordError::ReservedModule(_) => "Name your own module (e.g. 'billing'); capture, ddl, role, alert, retention and audit mark events audit_ext recorded itself.".into(),
            RecordError::ReservedAction(_) => "Name your own action (e.g. 'order.update'); row.*, table.truncate, ddl.*, role.*, capture.*, retention.*, alert.*, stream.*, setting.* and audit.* are the names of events audit_ext records itself.".into(),
        })
    }
}

impl SqlError for RetentionError {
    fn code(&self) -> PgSqlErrorCode {
        match self {
            RetentionError::BadPattern(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            RetentionError::BadPattern(_) => "Use '*', an action name such as 'page.view', or a dotted prefix ending in '.*' such as 'authentication.*'.".into(),
        })
    }
}

impl SqlError for VerifyError {
    fn code(&self) -> PgSqlErrorCode {
        match self {
            VerifyError::BadRange { .. } | VerifyError::BadHeads(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            VerifyError::BadRange { .. } => "Pass from_id <= to_id, or NULL for an open end.".into(),
            VerifyError::BadHeads(_) => "Pass the output of: select jsonb_agg(to_jsonb(h)) from audit.head() h".into(),
        })
    }
}

impl SqlError for CaptureError {
    fn code(&self) -> PgSqlErrorCode {
        match self {
            CaptureError::NotCaptureTrigger(_) => PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            CaptureError::BadTriggerArgs { .. } => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            CaptureError::MayNotRead { .. } => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            CaptureError::NotCaptureTrigger(_) => "Start capture with audit.track(tbl); do not attach audit.capture_rows() by hand.".into(),
            CaptureError::BadTriggerArgs { .. } => "Run audit.track() on the table again to rebuild its capture triggers.".into(),
            CaptureError::MayNotRead { table, role } => format!("Tracking copies the rows into the log. Its owner can GRANT SELECT ON {table} TO {role} (and USAGE on its schema), or call audit.track() itself."),
        })
    }
}

impl SqlError for QueryError {
    fn code(&self) -> PgSqlErrorCode {
        PgSqlErrorCode::ERRCODE_SYNTAX_ERROR
    }
    fn hint(&self) -> Option<String> {
        Some(
            "See docs/query-language.md, e.g. 'action:authentication.login AND status:failure AND at:>now-24h'.".into(),
        )
    }
}

impl SqlError for AlertError {
    fn code(&self) -> PgSqlErrorCode {
        match self {
            AlertError::BadGroup(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            AlertError::NotAlertTrigger(_) => PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            AlertError::BadGroup(_) => "Group by actor, actor_ip, session_id, application, action, status, severity, module, object_type, object_id or object_name.".into(),
            AlertError::NotAlertTrigger(_) => "audit_ext attaches it to audit.events itself; do not attach it by hand.".into(),
        })
    }
}

//! Change capture: row changes of tracked tables ([`rows`], statement-level triggers with
//! transition tables, sql/capture/rows.sql), schema changes ([`ddl`], event triggers in
//! sql/capture/ddl.sql) and, when the library is preloaded, role changes ([`roles`], a
//! utility hook). README "How capture works".

pub mod ddl;
pub mod roles;
pub mod rows;

#[derive(thiserror::Error, Debug)]
pub enum CaptureError {
    #[error("audit_internal.capture_rows() fired in the wrong way: {0}")]
    NotCaptureTrigger(&'static str),
    #[error("the capture trigger on {table} has invalid arguments: {problem}")]
    BadTriggerArgs { table: String, problem: String },
    #[error("permission denied to track {table}: {role} may not read it")]
    MayNotRead { table: String, role: String },
}

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for CaptureError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        match self {
            CaptureError::NotCaptureTrigger(_) => pgrx::PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            CaptureError::BadTriggerArgs { .. } => pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            CaptureError::MayNotRead { .. } => pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            CaptureError::NotCaptureTrigger(_) => "Start capture with audit.track(tbl); do not attach audit_internal.capture_rows() by hand.".into(),
            CaptureError::BadTriggerArgs { .. } => "Run audit.track() on the table again to rebuild its capture triggers.".into(),
            CaptureError::MayNotRead { table, role } => format!("Tracking copies the rows into the log. Its owner can GRANT SELECT ON {table} TO {role} (and USAGE on its schema), or call audit.track() itself."),
        })
    }
}

/// Registers the relcache callback of row capture and, when preloaded, the role hook.
pub fn init() {
    crate::pg::callbacks::on_relcache_invalidation(rows::relcache_changed);
    if crate::pg::utility::install(roles::hook) {
        roles::ROLE_HOOK_ACTIVE.set(true);
    }
}

//! Kept SPI plans: every hot path prepares its statement once per backend (or per table or
//! rule) and keeps it. Ad-hoc SPI costs about 20 µs a call; a kept plan's execution a fraction.

use pgrx::pg_sys;
use std::ffi::CStr;

/// Prepares `sql` with parameter `types` in the current SPI connection and keeps the plan for
/// the life of the backend (until `SPI_freeplan`). Raises an error if it cannot be prepared.
///
/// # Safety
/// Must be called inside an SPI connection.
pub unsafe fn kept_plan(sql: &CStr, types: &[pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    let mut types = types.to_vec();
    let plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
    if plan.is_null() {
        pgrx::error!("audit_ext: preparing {:?} failed", sql);
    }
    pg_sys::SPI_keepplan(plan);
    plan
}

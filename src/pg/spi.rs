//! SPI for the hot paths: a connection that always finishes, kept plans, and typed access to
//! results. Ad-hoc SPI costs about 20 µs a call; a kept plan's execution a fraction, so every
//! hot path prepares its statement once per backend (or per table or rule) and keeps it.
//! pgrx's `Spi` is used where a statement runs once per call (verify, status).

use pgrx::pg_sys;
use std::ffi::{c_char, CStr};

/// An open SPI connection: `SPI_finish` runs when it goes out of scope, also when an error
/// unwinds through it (as pgrx's own `SpiClient` does). Results read through it live in the
/// SPI memory context until then: copy what must outlive it.
pub struct Connection(());

impl Connection {
    /// Connects to SPI (raises an error if SPI cannot connect).
    pub fn open() -> Connection {
        // SAFETY: SPI_connect has no preconditions beyond running inside a transaction, which
        // every caller (triggers, SQL functions) does.
        if unsafe { pg_sys::SPI_connect() } != pg_sys::SPI_OK_CONNECT as i32 {
            pgrx::error!("audit_ext: SPI_connect failed");
        }
        Connection(())
    }

    /// Executes a kept plan with `args` (`None` = SQL NULL); returns SPI's result code.
    ///
    /// # Safety
    /// `plan` must come from [`kept_plan`] and `args` match its parameter types in number and
    /// type.
    pub unsafe fn execute(&self, plan: pg_sys::SPIPlanPtr, args: &[Option<pg_sys::Datum>], read_only: bool) -> i32 {
        let (mut values, nulls) = split(args);
        pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), read_only, 0)
    }

    /// Like [`Connection::execute`], with a snapshot taken now rather than the transaction's,
    /// and at most `count` rows.
    ///
    /// # Safety
    /// As [`Connection::execute`].
    pub unsafe fn execute_latest(&self, plan: pg_sys::SPIPlanPtr, args: &[Option<pg_sys::Datum>], count: i64) -> i32 {
        let (mut values, nulls) = split(args);
        pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            pg_sys::GetLatestSnapshot(),
            std::ptr::null_mut(),
            true,
            false,
            count,
        )
    }

    /// Runs `sql` once with `args` (type, value or NULL); returns SPI's result code.
    ///
    /// # Safety
    /// Each value must be a datum of its stated type.
    pub unsafe fn run(&self, sql: &CStr, args: &[(pg_sys::Oid, Option<pg_sys::Datum>)], read_only: bool) -> i32 {
        let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.0).collect();
        let values: Vec<Option<pg_sys::Datum>> = args.iter().map(|a| a.1).collect();
        let (mut values, nulls) = split(&values);
        pg_sys::SPI_execute_with_args(
            sql.as_ptr(),
            args.len() as i32,
            types.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_ptr(),
            read_only,
            0,
        )
    }

    /// Rows the last statement returned or touched.
    pub fn processed(&self) -> u64 {
        // SAFETY: a plain global of SPI, valid while connected.
        unsafe { pg_sys::SPI_processed }
    }

    /// Column `col` (1-based) of row `row` of the last result; `None` for NULL or no such row.
    /// The datum lives in SPI memory until the connection closes.
    pub fn cell(&self, row: usize, col: i32) -> Option<pg_sys::Datum> {
        // SAFETY: SPI_tuptable and its rows are valid after a statement that returned rows;
        // the bounds are checked first. SPI_getbinval checks `col` itself (NULL when out of range).
        unsafe {
            if row as u64 >= pg_sys::SPI_processed || pg_sys::SPI_tuptable.is_null() {
                return None;
            }
            let tt = *pg_sys::SPI_tuptable;
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(*tt.vals.add(row), tt.tupdesc, col, &mut isnull);
            (!isnull).then_some(d)
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: connections are opened and dropped in nested scopes on one backend's stack
        // (every caller keeps it in a local), so this one is the innermost and SPI_finish
        // closes it and nothing else.
        unsafe {
            pg_sys::SPI_finish();
        }
    }
}

fn split(args: &[Option<pg_sys::Datum>]) -> (Vec<pg_sys::Datum>, Vec<c_char>) {
    let values = args.iter().map(|a| a.unwrap_or(pg_sys::Datum::from(0))).collect();
    let nulls = args.iter().map(|a| if a.is_some() { b' ' } else { b'n' } as c_char).collect();
    (values, nulls)
}

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

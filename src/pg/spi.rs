//! SPI for the hot paths: a connection that always finishes, kept plans, and typed access to
//! results. Ad-hoc SPI costs about 20 µs a call; a kept plan's execution a fraction, so every
//! hot path prepares its statement once per backend (or per table or rule) and keeps it.
//! pgrx's `Spi` is used where a statement runs once per call (verify, status).

use super::tuple::Tuple;
use super::value::Value;
use pgrx::pg_sys;
use std::ffi::{c_char, CStr};
use std::rc::Rc;

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

    /// Prepares `sql` with parameter `types` and keeps the plan for the life of the backend
    /// (until a [`PlanBin`] frees it). Raises an error if it cannot be prepared.
    pub fn keep_plan(&self, sql: &CStr, types: &[pg_sys::Oid]) -> Plan {
        // SAFETY: inside this SPI connection; SPI_keepplan moves the plan out of it.
        unsafe {
            let plan = prepare(sql, types);
            pg_sys::SPI_keepplan(plan);
            Plan(Rc::new(PlanPtr(plan, types.to_vec())))
        }
    }

    /// Prepares `sql` for this connection only (SPI_finish frees it).
    pub fn prepare(&self, sql: &CStr, types: &[pg_sys::Oid]) -> TempPlan<'_> {
        // SAFETY: inside this SPI connection; the plan borrows the connection, so it cannot
        // be used after SPI_finish freed it.
        TempPlan { ptr: unsafe { prepare(sql, types) }, types: types.to_vec(), _spi: std::marker::PhantomData }
    }

    /// Executes a plan with `args` (`None` = SQL NULL); returns SPI's result code.
    /// `read_only = false` takes a fresh snapshot after a command-counter bump (so a trigger's
    /// statement sees the row that fired it).
    pub fn execute(&self, plan: &impl AsPlan, args: &[Option<Value>], read_only: bool) -> i32 {
        let p = plan.ptr();
        let (mut values, nulls) = checked_args(plan.types(), args);
        // SAFETY: a live plan (kept, or of this connection), with arguments of its types.
        unsafe { pg_sys::SPI_execute_plan(p, values.as_mut_ptr(), nulls.as_ptr(), read_only, 0) }
    }

    /// Like [`Connection::execute`], with a snapshot taken now rather than the transaction's,
    /// and at most `count` rows.
    pub fn execute_latest(&self, plan: &impl AsPlan, args: &[Option<Value>], count: i64) -> i32 {
        let p = plan.ptr();
        let (mut values, nulls) = checked_args(plan.types(), args);
        // SAFETY: as execute.
        unsafe {
            pg_sys::SPI_execute_snapshot(
                p,
                values.as_mut_ptr(),
                nulls.as_ptr(),
                pg_sys::GetLatestSnapshot(),
                std::ptr::null_mut(),
                true,
                false,
                count,
            )
        }
    }

    /// Runs `sql` once with `args` (type, then value or NULL); returns SPI's result code.
    pub fn run(&self, sql: &CStr, args: &[(pg_sys::Oid, Option<Value>)], read_only: bool) -> i32 {
        let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.0).collect();
        for (oid, v) in args {
            if let Some(v) = v {
                if v.oid() != *oid {
                    panic!("audit_ext: an SPI argument of type {} passed as {}", u32::from(v.oid()), u32::from(*oid));
                }
            }
        }
        let values: Vec<Option<Value>> = args.iter().map(|a| a.1).collect();
        let (mut values, nulls) = split(&values);
        // SAFETY: each value is of its stated type (checked above).
        unsafe {
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
    }

    /// Opens a cursor on a plan, read-only, with `args`: for statements whose rows are read
    /// in batches (verify).
    pub fn cursor(&self, plan: &impl AsPlan, args: &[Option<Value>]) -> Cursor<'_> {
        let p = plan.ptr();
        let (mut values, nulls) = checked_args(plan.types(), args);
        // SAFETY: as execute; the portal lives until the cursor is dropped (or SPI_finish).
        let portal = unsafe { pg_sys::SPI_cursor_open(std::ptr::null(), p, values.as_mut_ptr(), nulls.as_ptr(), true) };
        Cursor { portal, fetched: 0, row: None, _spi: std::marker::PhantomData }
    }

    /// Rows the last statement returned or touched.
    pub fn processed(&self) -> u64 {
        // SAFETY: a plain global of SPI, valid while connected.
        unsafe { pg_sys::SPI_processed }
    }

    /// Column `col` (1-based) of row `row` of the last result; `None` for NULL or no such row.
    /// The value lives in SPI memory until the connection closes.
    pub fn cell(&self, row: usize, col: i32) -> Option<Value> {
        // SAFETY: SPI_tuptable and its rows are valid after a statement that returned rows;
        // the bounds are checked first. SPI_getbinval checks `col` itself (NULL when out of
        // range), and SPI_gettypeid gives the column's type.
        unsafe {
            if row as u64 >= pg_sys::SPI_processed || pg_sys::SPI_tuptable.is_null() {
                return None;
            }
            let tt = *pg_sys::SPI_tuptable;
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(*tt.vals.add(row), tt.tupdesc, col, &mut isnull);
            (!isnull).then(|| Value::from_raw(pg_sys::SPI_gettypeid(tt.tupdesc, col), d))
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

/// # Safety
/// Inside an SPI connection.
unsafe fn prepare(sql: &CStr, types: &[pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    let mut types = types.to_vec();
    let plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
    if plan.is_null() {
        pgrx::error!("audit_ext: preparing {:?} failed", sql);
    }
    plan
}

/// The datums and null flags of `args`, after checking them against the plan's parameter
/// types (as it was prepared with): a value of another type would be misread by the executor.
/// (Compared in Rust: asking SPI for them costs a guarded FFI call per parameter.)
fn checked_args(types: &[pg_sys::Oid], args: &[Option<Value>]) -> (Vec<pg_sys::Datum>, Vec<c_char>) {
    if types.len() != args.len() {
        panic!("audit_ext: a plan of {} parameters executed with {}", types.len(), args.len());
    }
    for (i, (a, want)) in args.iter().zip(types).enumerate() {
        if let Some(v) = a {
            if v.oid() != *want {
                panic!(
                    "audit_ext: parameter ${} of type {} given a value of type {}",
                    i + 1,
                    u32::from(*want),
                    u32::from(v.oid())
                );
            }
        }
    }
    split(args)
}

fn split(args: &[Option<Value>]) -> (Vec<pg_sys::Datum>, Vec<c_char>) {
    let values = args.iter().map(|a| a.map_or(pg_sys::Datum::from(0), |v| v.raw())).collect();
    let nulls = args.iter().map(|a| if a.is_some() { b' ' } else { b'n' } as c_char).collect();
    (values, nulls)
}

/// Something [`Connection::execute`] can run.
pub trait AsPlan {
    fn ptr(&self) -> pg_sys::SPIPlanPtr;
    /// The parameter types it was prepared with.
    fn types(&self) -> &[pg_sys::Oid];
}

struct PlanPtr(pg_sys::SPIPlanPtr, Vec<pg_sys::Oid>);

/// A kept plan: valid for the life of the backend, until a [`PlanBin`] frees it. Clones share
/// it; the bin frees a plan only when no clone of it is left elsewhere, so a plan that some
/// frame on the stack is executing is never freed under it.
#[derive(Clone)]
pub struct Plan(Rc<PlanPtr>);

impl AsPlan for Plan {
    fn ptr(&self) -> pg_sys::SPIPlanPtr {
        self.0 .0
    }
    fn types(&self) -> &[pg_sys::Oid] {
        &self.0 .1
    }
}

/// A plan of one connection (freed by its SPI_finish).
pub struct TempPlan<'c> {
    ptr: pg_sys::SPIPlanPtr,
    types: Vec<pg_sys::Oid>,
    _spi: std::marker::PhantomData<&'c Connection>,
}

impl AsPlan for TempPlan<'_> {
    fn ptr(&self) -> pg_sys::SPIPlanPtr {
        self.ptr
    }
    fn types(&self) -> &[pg_sys::Oid] {
        &self.types
    }
}

/// Kept plans whose statement went stale (their table or rules changed), to be freed later:
/// not inside the invalidation callback that retires them, and never while in use.
#[derive(Default)]
pub struct PlanBin(std::cell::RefCell<Vec<Plan>>);

impl PlanBin {
    pub fn retire(&self, plan: Plan) {
        self.0.borrow_mut().push(plan);
    }

    /// Frees every retired plan that nothing else holds.
    pub fn empty(&self) {
        let plans = std::mem::take(&mut *self.0.borrow_mut());
        let mut kept = vec![];
        for plan in plans {
            match Rc::try_unwrap(plan.0) {
                // SAFETY: a kept plan that no clone refers to any more: nothing can use it.
                Ok(p) => unsafe {
                    pg_sys::SPI_freeplan(p.0);
                },
                Err(rc) => kept.push(Plan(rc)),
            }
        }
        self.0.borrow_mut().extend(kept);
    }
}

/// A read-only cursor of one connection, read in batches.
pub struct Cursor<'c> {
    portal: pg_sys::Portal,
    fetched: usize,
    row: Option<Tuple>,
    _spi: std::marker::PhantomData<&'c Connection>,
}

impl Cursor<'_> {
    /// Fetches the next `n` rows (freeing the previous batch); returns how many came.
    pub fn fetch(&mut self, n: i64) -> usize {
        // SAFETY: the portal is open (closed only on drop); SPI_tuptable then holds the batch.
        unsafe {
            self.free_batch();
            pg_sys::SPI_cursor_fetch(self.portal, true, n);
            self.fetched = pg_sys::SPI_processed as usize;
        }
        self.fetched
    }

    /// Row `i` (< the last fetch's count) of the current batch, deformed into a buffer reused
    /// for every row (no allocation per row); its values live in the batch.
    pub fn row(&mut self, i: usize) -> &Tuple {
        assert!(i < self.fetched, "audit_ext: cursor row {i} of {}", self.fetched);
        // SAFETY: SPI_tuptable holds the current batch of `fetched` rows (checked above).
        unsafe {
            let tt = *pg_sys::SPI_tuptable;
            let heap = *tt.vals.add(i);
            match &mut self.row {
                Some(t) => t.refill(tt.tupdesc, heap),
                None => self.row = Some(Tuple::deform(tt.tupdesc, heap)),
            }
        }
        self.row.as_ref().unwrap()
    }

    /// # Safety
    /// SPI_tuptable, when set, is this cursor's last batch (no statement ran in this connection
    /// since the fetch; nested connections restore it when they finish).
    unsafe fn free_batch(&mut self) {
        if self.fetched > 0 && !pg_sys::SPI_tuptable.is_null() {
            pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable);
        }
        self.fetched = 0;
    }
}

impl Drop for Cursor<'_> {
    fn drop(&mut self) {
        // SAFETY: the portal was opened by Connection::cursor and is closed once, here.
        unsafe {
            self.free_batch();
            pg_sys::SPI_cursor_close(self.portal);
        }
    }
}

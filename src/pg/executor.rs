//! The executor hooks of `audit_ext.audit_reads` (src/reads.rs): which statements, run at the
//! top of the executor, read given relations, and how many rows each returned.
//!
//! "Top" means no other executor is running in this backend when the statement starts: a
//! client's statement, its `EXECUTE` of a prepared one, a cursor's query (`DECLARE`, psql's
//! `FETCH_COUNT`), `COPY (query)`, `CREATE TABLE AS`, `EXPLAIN ANALYZE`, and the statements of
//! a `DO` block or procedure `CALL`ed at the top. Not the statements functions run from inside
//! a query (`audit.search`, the chain trigger): those run while their caller's executor does.
//! The depth is counted around `ExecutorRun` and `ExecutorFinish`, as pg_stat_statements
//! counts it.

use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::ffi::CStr;

/// What the hooks' user does: `active` says whether any statement may be followed now (checked
/// first, so that with the feature off no plan is walked); `watch` is asked, for each top
/// statement about to run, with the relations it reads (not those it only writes), whether to
/// follow it; `done` is called once
/// a followed statement ended, with its text and the rows it returned or wrote, while its
/// transaction is still open (with an active snapshot).
#[derive(Clone, Copy)]
pub struct Hooks {
    pub active: fn() -> bool,
    pub watch: fn(&[pg_sys::Oid]) -> bool,
    pub done: fn(&str, u64),
}

/// A followed statement: its QueryDesc (an address, compared only), text and rows so far.
struct Followed {
    desc: usize,
    text: String,
    rows: u64,
}

thread_local! {
    static HOOKS: Cell<Option<Hooks>> = const { Cell::new(None) };
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static FOLLOWED: RefCell<Vec<Followed>> = const { RefCell::new(Vec::new()) };
    static PREV_START: Cell<pg_sys::ExecutorStart_hook_type> = const { Cell::new(None) };
    static PREV_RUN: Cell<pg_sys::ExecutorRun_hook_type> = const { Cell::new(None) };
    static PREV_FINISH: Cell<pg_sys::ExecutorFinish_hook_type> = const { Cell::new(None) };
    static PREV_END: Cell<pg_sys::ExecutorEnd_hook_type> = const { Cell::new(None) };
}

/// Installs the hooks (chaining to any installed before). Only from `_PG_init` while
/// `shared_preload_libraries` loads: returns false otherwise.
pub fn install(hooks: Hooks) -> bool {
    if !super::backend::loading_preloaded() {
        return false;
    }
    HOOKS.set(Some(hooks));
    // SAFETY: hooks are plain globals, set once while the library is preloaded, before any
    // statement runs.
    unsafe {
        PREV_START.set(pg_sys::ExecutorStart_hook);
        PREV_RUN.set(pg_sys::ExecutorRun_hook);
        PREV_FINISH.set(pg_sys::ExecutorFinish_hook);
        PREV_END.set(pg_sys::ExecutorEnd_hook);
        pg_sys::ExecutorStart_hook = Some(executor_start);
        pg_sys::ExecutorRun_hook = Some(executor_run);
        pg_sys::ExecutorFinish_hook = Some(executor_finish);
        pg_sys::ExecutorEnd_hook = Some(executor_end);
    }
    super::callbacks::on_transaction_end(|_| FOLLOWED.with(|f| f.borrow_mut().clear()));
    true
}

/// Whether the hooks are installed in this backend.
pub fn installed() -> bool {
    HOOKS.get().is_some()
}

/// Lowers the depth again when the executor call returns, also by an error (the unwinding of
/// pgrx's error boundary drops it).
struct Deeper;

impl Deeper {
    fn enter() -> Deeper {
        DEPTH.set(DEPTH.get() + 1);
        Deeper
    }
}

impl Drop for Deeper {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get().saturating_sub(1));
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn executor_start(desc: *mut pg_sys::QueryDesc, eflags: i32) {
    match PREV_START.get() {
        Some(prev) => prev(desc, eflags),
        None => pg_sys::standard_ExecutorStart(desc, eflags),
    }
    let Some(hooks) = HOOKS.get() else { return };
    // An entry left at this address by a followed statement that failed (its ExecutorEnd never
    // ran) belongs to no statement now: a new one starting here must not inherit it.
    FOLLOWED.with(|f| {
        let mut f = f.borrow_mut();
        if !f.is_empty() {
            f.retain(|e| e.desc != desc as usize);
        }
    });
    if DEPTH.get() != 0 || eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 || !(hooks.active)() {
        return;
    }
    // SAFETY: the executor just started `desc`: its plan and source text are valid.
    let relids = read_relations((*desc).plannedstmt);
    if relids.is_empty() || !(hooks.watch)(&relids) {
        return;
    }
    let text = if (*desc).sourceText.is_null() {
        String::new()
    } else {
        CStr::from_ptr((*desc).sourceText).to_string_lossy().into()
    };
    FOLLOWED.with(|f| f.borrow_mut().push(Followed { desc: desc as usize, text, rows: 0 }));
}

/// The relations a plan reads: those of its range table that need SELECT rights and are not
/// the target of its INSERT (an `INSERT ... RETURNING` into the log reads nothing of it).
///
/// # Safety
/// `stmt` is a valid planned statement.
unsafe fn read_relations(stmt: *mut pg_sys::PlannedStmt) -> Vec<pg_sys::Oid> {
    let mut out = Vec::new();
    let rtable = (*stmt).rtable;
    if rtable.is_null() {
        return out;
    }
    for i in 0..(*rtable).length {
        let rte = pg_sys::list_nth(rtable, i) as *mut pg_sys::RangeTblEntry;
        if (*rte).rtekind != pg_sys::RTEKind::RTE_RELATION || (*rte).requiredPerms & pg_sys::ACL_SELECT == 0 {
            continue;
        }
        // range table indexes count from 1
        if pg_sys::list_member_int((*stmt).resultRelations, i + 1) {
            continue;
        }
        out.push((*rte).relid);
    }
    out
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn executor_run(
    desc: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
    execute_once: bool,
) {
    {
        let _deeper = Deeper::enter();
        match PREV_RUN.get() {
            Some(prev) => prev(desc, direction, count, execute_once),
            None => pg_sys::standard_ExecutorRun(desc, direction, count, execute_once),
        }
    }
    // SAFETY: the run returned normally: the executor state is valid until ExecutorEnd.
    // es_processed counts this run's rows (a cursor runs once per FETCH).
    let rows = (*(*desc).estate).es_processed;
    FOLLOWED.with(|f| {
        if let Some(e) = f.borrow_mut().iter_mut().find(|e| e.desc == desc as usize) {
            e.rows += rows;
        }
    });
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn executor_finish(desc: *mut pg_sys::QueryDesc) {
    let _deeper = Deeper::enter();
    match PREV_FINISH.get() {
        Some(prev) => prev(desc),
        None => pg_sys::standard_ExecutorFinish(desc),
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn executor_end(desc: *mut pg_sys::QueryDesc) {
    let followed = FOLLOWED.with(|f| {
        let mut f = f.borrow_mut();
        let i = f.iter().position(|e| e.desc == desc as usize)?;
        Some(f.remove(i))
    });
    match PREV_END.get() {
        Some(prev) => prev(desc),
        None => pg_sys::standard_ExecutorEnd(desc),
    }
    let (Some(e), Some(hooks)) = (followed, HOOKS.get()) else { return };
    // A portal may end at commit (the extended protocol keeps it until then), where no
    // snapshot is active: SPI needs one.
    // SAFETY: pushed and popped here; an error in between aborts the transaction, which
    // clears the snapshot stack.
    let pushed = !pg_sys::ActiveSnapshotSet();
    if pushed {
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    (hooks.done)(&e.text, e.rows);
    if pushed {
        pg_sys::PopActiveSnapshot();
    }
}

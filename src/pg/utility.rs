//! The utility hook: the statements role capture reads from it (src/capture/roles.rs), and the
//! `COPY <table> TO` of `audit_ext.audit_reads` (src/reads.rs). For role capture:
//! each parse node of interest turned into a [`Statement`] of plain Rust values before the
//! statement runs (ALTER ROLE ... RENAME and DROP change what the names mean). A password
//! given to CREATE/ALTER ROLE never leaves the parse tree: its option reads [`Arg::Secret`].

use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::{c_char, CStr};

/// The value of one option of CREATE/ALTER ROLE (a `DefElem`).
#[derive(Debug, Clone)]
pub enum Arg {
    /// No value (`SUPERUSER`, `LOGIN`, ... parse as booleans; this is an option given alone).
    None,
    Bool(bool),
    Int(i32),
    Str(String),
    /// A list (`IN ROLE`, `ROLE`, `ADMIN`): each item's role name, None for an item that is
    /// not a role.
    List(Vec<Option<String>>),
    /// The password option: its value is not read.
    Secret,
}

/// The statements role capture records.
#[derive(Debug, Clone)]
pub enum Statement {
    CreateRole {
        role: String,
        options: Vec<(String, Arg)>,
    },
    /// `action`: +1 ALTER GROUP ... ADD USER, -1 DROP USER, 0 otherwise.
    AlterRole {
        role: String,
        action: i32,
        options: Vec<(String, Arg)>,
    },
    /// `setting`: None for `ALTER SYSTEM RESET ALL`.
    AlterSystem {
        setting: Option<String>,
    },
    AlterDatabaseSet {
        database: String,
        setting: Option<String>,
    },
    /// `role`: None for `ALTER ROLE ALL`.
    AlterRoleSet {
        role: Option<String>,
        database: Option<String>,
        setting: String,
    },
    DropRole {
        roles: Vec<String>,
    },
    GrantRole {
        granted: Vec<String>,
        grantees: Vec<String>,
        is_grant: bool,
        admin: bool,
    },
    RenameRole {
        from: String,
        to: String,
    },
}

/// What the hook's user does: called with each utility statement before it runs (None for
/// statements of no interest); what it returns is called after the statement ran.
pub type Hook = fn(Option<&Statement>) -> Option<Box<dyn FnOnce()>>;

thread_local! {
    static HOOK: Cell<Option<Hook>> = const { Cell::new(None) };
    static PREV: Cell<pg_sys::ProcessUtility_hook_type> = const { Cell::new(None) };
}

/// The COPY side of `audit_ext.audit_reads` (src/reads.rs): `COPY <table> TO` reads the table
/// without the executor when no row level security applies to the caller (a superuser, the
/// table's owner, pg_dump's way), so the executor hooks (src/pg/executor.rs) do not see it.
/// `watch` is asked with the table; `done` is called after the COPY with the statement's text
/// and the rows it wrote out. With row level security, COPY runs a query, which the executor
/// hooks see.
#[derive(Clone, Copy)]
pub struct CopyReads {
    /// Whether any COPY may be followed now (checked before the table is looked up).
    pub active: fn() -> bool,
    pub watch: fn(pg_sys::Oid) -> bool,
    pub done: fn(&str, u64),
}

thread_local! {
    static COPY_READS: Cell<Option<CopyReads>> = const { Cell::new(None) };
    static INSTALLED: Cell<bool> = const { Cell::new(false) };
}

/// Installs `hook` as audit_ext's utility hook (chaining to any hook installed before).
/// Only from `_PG_init` while `shared_preload_libraries` loads: returns false otherwise.
pub fn install(hook: Hook) -> bool {
    if !super::backend::loading_preloaded() {
        return false;
    }
    HOOK.set(Some(hook));
    install_hook();
    true
}

/// Installs the COPY side of `audit_ext.audit_reads`; the same conditions as [`install`].
pub fn install_copy_reads(reads: CopyReads) -> bool {
    if !super::backend::loading_preloaded() {
        return false;
    }
    COPY_READS.set(Some(reads));
    install_hook();
    true
}

fn install_hook() {
    if INSTALLED.replace(true) {
        return;
    }
    // SAFETY: hooks are plain globals, set once while the library is preloaded, before any
    // statement runs.
    unsafe {
        PREV.set(pg_sys::ProcessUtility_hook);
        pg_sys::ProcessUtility_hook = Some(utility_hook);
    }
}

/// The table a `COPY <table> TO` reads directly, without row level security: None for any other
/// statement, a COPY FROM, a COPY (query), or a table row level security applies to.
///
/// # Safety
/// `node` is NULL or a node of the parse tree.
unsafe fn copy_read(node: *mut pg_sys::Node) -> Option<pg_sys::Oid> {
    if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_CopyStmt {
        return None;
    }
    let s = node as *mut pg_sys::CopyStmt;
    if (*s).is_from || (*s).relation.is_null() {
        return None;
    }
    let relid = pg_sys::RangeVarGetRelidExtended(
        (*s).relation,
        pg_sys::NoLock as i32,
        pg_sys::RVROption::RVR_MISSING_OK,
        None,
        std::ptr::null_mut(),
    );
    let direct = relid != pg_sys::InvalidOid
        && pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, true) == pg_sys::CheckEnableRlsResult::RLS_NONE as i32;
    direct.then_some(relid)
}

#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn utility_hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let statement = if HOOK.get().is_some() { statement((*pstmt).utilityStmt) } else { None };
    let after = HOOK.get().and_then(|h| h(statement.as_ref()));
    let copy = COPY_READS
        .get()
        .filter(|c| (c.active)() && copy_read((*pstmt).utilityStmt).is_some_and(|relid| (c.watch)(relid)));
    match PREV.get() {
        Some(prev) => prev(pstmt, query, read_only_tree, context, params, env, dest, qc),
        None => pg_sys::standard_ProcessUtility(pstmt, query, read_only_tree, context, params, env, dest, qc),
    }
    if let Some(after) = after {
        after();
    }
    if let Some(c) = copy {
        let rows = if qc.is_null() { 0 } else { (*qc).nprocessed };
        // SAFETY: pushed and popped here (an error in between aborts the transaction, which
        // clears the snapshot stack): the recording needs an active snapshot.
        let pushed = !pg_sys::ActiveSnapshotSet();
        if pushed {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        (c.done)(&cstr(query), rows);
        if pushed {
            pg_sys::PopActiveSnapshot();
        }
    }
}

/// # Safety
/// `p` is NULL or a NUL-terminated string of the parse tree.
unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// A role as a statement names it: the name, or CURRENT_ROLE, CURRENT_USER, SESSION_USER, PUBLIC.
///
/// # Safety
/// `r` is NULL or a RoleSpec node of the parse tree.
unsafe fn role_spec(r: *const pg_sys::RoleSpec) -> String {
    if r.is_null() {
        return String::new();
    }
    match (*r).roletype {
        pg_sys::RoleSpecType::ROLESPEC_CSTRING => cstr((*r).rolename),
        pg_sys::RoleSpecType::ROLESPEC_CURRENT_ROLE => "CURRENT_ROLE".into(),
        pg_sys::RoleSpecType::ROLESPEC_CURRENT_USER => "CURRENT_USER".into(),
        pg_sys::RoleSpecType::ROLESPEC_SESSION_USER => "SESSION_USER".into(),
        _ => "PUBLIC".into(),
    }
}

/// # Safety
/// `n` is NULL or a parse node.
unsafe fn is(n: *const pg_sys::Node, tag: pg_sys::NodeTag) -> bool {
    !n.is_null() && (*n).type_ == tag
}

/// # Safety
/// `l` is NULL (an empty list) or a list of DefElem nodes of the parse tree.
unsafe fn options(l: *mut pg_sys::List) -> Vec<(String, Arg)> {
    pgrx::PgList::<pg_sys::DefElem>::from_pg(l)
        .iter_ptr()
        .map(|d| {
            let name = cstr((*d).defname);
            let arg = (*d).arg;
            let v = if name == "password" {
                Arg::Secret
            } else if is(arg, pg_sys::NodeTag::T_Boolean) {
                Arg::Bool((*(arg as *mut pg_sys::Boolean)).boolval)
            } else if is(arg, pg_sys::NodeTag::T_Integer) {
                Arg::Int((*(arg as *mut pg_sys::Integer)).ival)
            } else if is(arg, pg_sys::NodeTag::T_String) {
                Arg::Str(cstr((*(arg as *mut pg_sys::String)).sval))
            } else if is(arg, pg_sys::NodeTag::T_List) {
                let items = pgrx::PgList::<pg_sys::Node>::from_pg(arg as *mut pg_sys::List);
                Arg::List(
                    items
                        .iter_ptr()
                        .map(|n| is(n, pg_sys::NodeTag::T_RoleSpec).then(|| role_spec(n as *const pg_sys::RoleSpec)))
                        .collect(),
                )
            } else {
                Arg::None
            };
            (name, v)
        })
        .collect()
}

/// # Safety
/// `set` is NULL or a VariableSetStmt node of the parse tree.
unsafe fn setting(set: *const pg_sys::VariableSetStmt) -> Option<String> {
    (!set.is_null() && !(*set).name.is_null()).then(|| cstr((*set).name))
}

/// # Safety
/// `node` is NULL or a parse node of the statement being run.
unsafe fn statement(node: *mut pg_sys::Node) -> Option<Statement> {
    if node.is_null() {
        return None;
    }
    Some(match (*node).type_ {
        pg_sys::NodeTag::T_CreateRoleStmt => {
            let s = node as *mut pg_sys::CreateRoleStmt;
            Statement::CreateRole { role: cstr((*s).role), options: options((*s).options) }
        }
        pg_sys::NodeTag::T_AlterRoleStmt => {
            let s = node as *mut pg_sys::AlterRoleStmt;
            Statement::AlterRole { role: role_spec((*s).role), action: (*s).action, options: options((*s).options) }
        }
        pg_sys::NodeTag::T_AlterSystemStmt => {
            let s = node as *mut pg_sys::AlterSystemStmt;
            Statement::AlterSystem { setting: setting((*s).setstmt) }
        }
        pg_sys::NodeTag::T_AlterDatabaseSetStmt => {
            let s = node as *mut pg_sys::AlterDatabaseSetStmt;
            Statement::AlterDatabaseSet { database: cstr((*s).dbname), setting: setting((*s).setstmt) }
        }
        pg_sys::NodeTag::T_AlterRoleSetStmt => {
            let s = node as *mut pg_sys::AlterRoleSetStmt;
            let db = cstr((*s).database);
            Statement::AlterRoleSet {
                role: (!(*s).role.is_null()).then(|| role_spec((*s).role)),
                database: (!db.is_empty()).then_some(db),
                setting: setting((*s).setstmt).unwrap_or_default(),
            }
        }
        pg_sys::NodeTag::T_DropRoleStmt => {
            let s = node as *mut pg_sys::DropRoleStmt;
            let roles =
                pgrx::PgList::<pg_sys::RoleSpec>::from_pg((*s).roles).iter_ptr().map(|r| role_spec(r)).collect();
            Statement::DropRole { roles }
        }
        pg_sys::NodeTag::T_GrantRoleStmt => {
            let s = node as *mut pg_sys::GrantRoleStmt;
            let granted = pgrx::PgList::<pg_sys::AccessPriv>::from_pg((*s).granted_roles)
                .iter_ptr()
                .map(|p| cstr((*p).priv_name))
                .collect();
            let grantees = pgrx::PgList::<pg_sys::RoleSpec>::from_pg((*s).grantee_roles)
                .iter_ptr()
                .map(|r| role_spec(r))
                .collect();
            Statement::GrantRole { granted, grantees, is_grant: (*s).is_grant, admin: (*s).admin_opt }
        }
        pg_sys::NodeTag::T_RenameStmt => {
            let s = node as *mut pg_sys::RenameStmt;
            if (*s).renameType != pg_sys::ObjectType::OBJECT_ROLE {
                return None;
            }
            Statement::RenameRole { from: cstr((*s).subname), to: cstr((*s).newname) }
        }
        _ => return None,
    })
}

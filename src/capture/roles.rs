//! Role capture: CREATE/ALTER/DROP ROLE, role membership, ALTER SYSTEM and ALTER DATABASE SET,
//! from a utility hook installed when the library is preloaded.

use crate::gucs;
use pgrx::pg_sys;
use pgrx::prelude::*;

use std::cell::RefCell;
use std::ffi::{c_char, CStr};

thread_local! {
    pub(super) static ROLE_HOOK_ACTIVE: RefCell<bool> = const { RefCell::new(false) };
    pub(super) static PREV_UTILITY: RefCell<pg_sys::ProcessUtility_hook_type> = const { RefCell::new(None) };
}

/// Whether role changes are captured: the utility hook is installed only when the library is
/// loaded through `shared_preload_libraries` (a per-session load would miss every session that
/// never called into it).
pub fn role_capture_active() -> bool {
    ROLE_HOOK_ACTIVE.with(|a| *a.borrow())
}

#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe extern "C-unwind" fn utility_hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // Described before running: ALTER ROLE ... RENAME and DROP change what the names mean.
    let described = role_events((*pstmt).utilityStmt);
    match PREV_UTILITY.with(|p| *p.borrow()) {
        Some(prev) => prev(pstmt, query, read_only_tree, context, params, env, dest, qc),
        None => pg_sys::standard_ProcessUtility(pstmt, query, read_only_tree, context, params, env, dest, qc),
    }
    if !described.is_empty() {
        record_role_events(described);
    }
}

/// (action, role name, new) for each role a statement changes; empty for other statements.
unsafe fn role_events(node: *mut pg_sys::Node) -> Vec<(String, String, serde_json::Value)> {
    use serde_json::json;
    if node.is_null() {
        return vec![];
    }
    let cstr =
        |p: *const c_char| if p.is_null() { String::new() } else { CStr::from_ptr(p).to_string_lossy().into_owned() };
    let spec = |r: *mut pg_sys::RoleSpec| -> String {
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
    };
    // Option names only, and the values of those that are not secrets (never a password).
    let options = |l: *mut pg_sys::List| -> serde_json::Value {
        let list = pgrx::PgList::<pg_sys::DefElem>::from_pg(l);
        let mut m = serde_json::Map::new();
        for d in list.iter_ptr() {
            let name = cstr((*d).defname);
            let arg = (*d).arg;
            let v = if name == "password" {
                json!("(set)")
            } else if !arg.is_null() && (*arg).type_ == pg_sys::NodeTag::T_Boolean {
                json!((*(arg as *mut pg_sys::Boolean)).boolval)
            } else if !arg.is_null() && (*arg).type_ == pg_sys::NodeTag::T_Integer {
                json!((*(arg as *mut pg_sys::Integer)).ival)
            } else if !arg.is_null() && (*arg).type_ == pg_sys::NodeTag::T_List {
                let items = pgrx::PgList::<pg_sys::Node>::from_pg(arg as *mut pg_sys::List);
                json!(items
                    .iter_ptr()
                    .map(|n| if (*n).type_ == pg_sys::NodeTag::T_RoleSpec {
                        role_spec_name(n as *mut pg_sys::RoleSpec)
                    } else {
                        "(list)".into()
                    })
                    .collect::<Vec<_>>())
            } else if !arg.is_null() && (*arg).type_ == pg_sys::NodeTag::T_String {
                json!(cstr((*(arg as *mut pg_sys::String)).sval))
            } else {
                json!(true)
            };
            m.insert(name, v);
        }
        serde_json::Value::Object(m)
    };
    match (*node).type_ {
        pg_sys::NodeTag::T_CreateRoleStmt => {
            let s = node as *mut pg_sys::CreateRoleStmt;
            let role = cstr((*s).role);
            let mut out = vec![("role.create".to_string(), role.clone(), json!({"options": options((*s).options)}))];
            // memberships the statement grants: IN ROLE g (role joins g), ROLE/ADMIN u (u joins role)
            for (name, list) in role_lists((*s).options) {
                match name.as_str() {
                    "addroleto" => out.extend(list.iter().map(|g| grant_event(true, &role, g, false))),
                    "rolemembers" | "adminmembers" => {
                        out.extend(list.iter().map(|m| grant_event(true, m, &role, name == "adminmembers")))
                    }
                    _ => {}
                }
            }
            out
        }
        pg_sys::NodeTag::T_AlterRoleStmt => {
            let s = node as *mut pg_sys::AlterRoleStmt;
            let role = spec((*s).role);
            let members: Vec<String> =
                role_lists((*s).options).into_iter().filter(|(n, _)| n == "rolemembers").flat_map(|(_, l)| l).collect();
            if !members.is_empty() {
                // ALTER GROUP role ADD USER / DROP USER members: action +1 adds, -1 drops
                let grant = (*s).action >= 0;
                return members.iter().map(|m| grant_event(grant, m, &role, false)).collect();
            }
            vec![("role.alter".into(), role, json!({"options": options((*s).options)}))]
        }
        pg_sys::NodeTag::T_AlterSystemStmt => {
            let s = node as *mut pg_sys::AlterSystemStmt;
            let set = (*s).setstmt;
            let setting = if set.is_null() || (*set).name.is_null() { "ALL".into() } else { cstr((*set).name) };
            vec![("setting.alter_system".into(), setting.clone(), json!({"setting": setting, "scope": "system"}))]
        }
        pg_sys::NodeTag::T_AlterDatabaseSetStmt => {
            let s = node as *mut pg_sys::AlterDatabaseSetStmt;
            let set = (*s).setstmt;
            let setting = if set.is_null() || (*set).name.is_null() { "ALL".into() } else { cstr((*set).name) };
            vec![(
                "setting.alter_database".into(),
                setting.clone(),
                json!({"setting": setting, "scope": "database", "database": cstr((*s).dbname)}),
            )]
        }
        pg_sys::NodeTag::T_AlterRoleSetStmt => {
            let s = node as *mut pg_sys::AlterRoleSetStmt;
            let set = (*s).setstmt;
            let setting = if set.is_null() { String::new() } else { cstr((*set).name) };
            let db = cstr((*s).database);
            let role = if (*s).role.is_null() { "ALL".into() } else { spec((*s).role) };
            vec![(
                "role.set".into(),
                role,
                json!({"setting": setting, "database": if db.is_empty() { serde_json::Value::Null } else { json!(db) }}),
            )]
        }
        pg_sys::NodeTag::T_DropRoleStmt => {
            let s = node as *mut pg_sys::DropRoleStmt;
            let list = pgrx::PgList::<pg_sys::RoleSpec>::from_pg((*s).roles);
            list.iter_ptr().map(|r| ("role.drop".to_string(), spec(r), json!({}))).collect()
        }
        pg_sys::NodeTag::T_GrantRoleStmt => {
            let s = node as *mut pg_sys::GrantRoleStmt;
            let granted: Vec<String> = pgrx::PgList::<pg_sys::AccessPriv>::from_pg((*s).granted_roles)
                .iter_ptr()
                .map(|p| cstr((*p).priv_name))
                .collect();
            let grantees: Vec<String> =
                pgrx::PgList::<pg_sys::RoleSpec>::from_pg((*s).grantee_roles).iter_ptr().map(spec).collect();
            let action = if (*s).is_grant { "role.grant" } else { "role.revoke" };
            grantees
                .iter()
                .map(|g| (action.to_string(), g.clone(), json!({"roles": granted, "admin_option": (*s).admin_opt})))
                .collect()
        }
        pg_sys::NodeTag::T_RenameStmt => {
            let s = node as *mut pg_sys::RenameStmt;
            if (*s).renameType != pg_sys::ObjectType::OBJECT_ROLE {
                return vec![];
            }
            vec![("role.rename".into(), cstr((*s).subname), json!({"new_name": cstr((*s).newname)}))]
        }
        _ => vec![],
    }
}

/// The role lists among CREATE/ALTER ROLE options (`addroleto`, `rolemembers`,
/// `adminmembers`): (option name, role names).
unsafe fn role_lists(l: *mut pg_sys::List) -> Vec<(String, Vec<String>)> {
    let mut out = vec![];
    for d in pgrx::PgList::<pg_sys::DefElem>::from_pg(l).iter_ptr() {
        let name = CStr::from_ptr((*d).defname).to_string_lossy().into_owned();
        let arg = (*d).arg;
        if matches!(name.as_str(), "addroleto" | "rolemembers" | "adminmembers")
            && !arg.is_null()
            && (*arg).type_ == pg_sys::NodeTag::T_List
        {
            let names = pgrx::PgList::<pg_sys::RoleSpec>::from_pg(arg as *mut pg_sys::List)
                .iter_ptr()
                .map(|r| role_spec_name(r))
                .collect();
            out.push((name, names));
        }
    }
    out
}

unsafe fn role_spec_name(r: *mut pg_sys::RoleSpec) -> String {
    if r.is_null() {
        return String::new();
    }
    match (*r).roletype {
        pg_sys::RoleSpecType::ROLESPEC_CSTRING if !(*r).rolename.is_null() => {
            CStr::from_ptr((*r).rolename).to_string_lossy().into_owned()
        }
        pg_sys::RoleSpecType::ROLESPEC_CURRENT_ROLE => "CURRENT_ROLE".into(),
        pg_sys::RoleSpecType::ROLESPEC_CURRENT_USER => "CURRENT_USER".into(),
        pg_sys::RoleSpecType::ROLESPEC_SESSION_USER => "SESSION_USER".into(),
        _ => "PUBLIC".into(),
    }
}

/// A `role.grant` / `role.revoke` event: `member` gains or loses membership in `group`, in
/// the form GRANT records it (the grantee as the object, the roles granted in `new`).
fn grant_event(grant: bool, member: &str, group: &str, admin: bool) -> (String, String, serde_json::Value) {
    let action = if grant { "role.grant" } else { "role.revoke" };
    (action.into(), member.into(), serde_json::json!({"roles": [group], "admin_option": admin}))
}

/// Records role events in the current database, when audit_ext is installed in it (and not
/// being created: its script creates roles before audit.events exists) and DDL capture is on.
/// Inserted as the extension's owner (the role running CREATE ROLE needs no privilege on
/// audit.events; the actor recorded is still the session user) through [`crate::elevate`]:
/// pinned search path, typed parameters, a security-restricted operation. Any login role can
/// reach this hook (`ALTER ROLE CURRENT_USER PASSWORD ...`), so nothing here may resolve a
/// name through the caller's path or run the caller's code.
unsafe fn record_role_events(events: Vec<(String, String, serde_json::Value)>) {
    if !gucs::capturing_ddl()
        || !pg_sys::IsTransactionState()
        || pg_sys::creating_extension
        || pg_sys::get_extension_oid(c"audit_ext".as_ptr(), true) == pg_sys::InvalidOid
    {
        return;
    }
    crate::pg::elevate::as_owner(|| {
        for (action, role, new) in events {
            let module = if action.starts_with("setting.") { "ddl" } else { "role" };
            let object_type = if action.starts_with("setting.") { "setting" } else { "role" };
            Spi::run_with_args(
                "SELECT audit._event($1, $2, $3, $4, $4, NULL, $5)",
                &[
                    action.as_str().into(),
                    module.into(),
                    object_type.into(),
                    role.as_str().into(),
                    pgrx::JsonB(new).into(),
                ],
            )
            .unwrap_or_else(|e| pgrx::error!("audit_ext: recording a role change failed: {e}"));
        }
    });
}

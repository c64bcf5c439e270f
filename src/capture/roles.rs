//! Role capture: CREATE/ALTER/DROP ROLE, role membership, ALTER SYSTEM and ALTER DATABASE SET,
//! from a utility hook installed when the library is preloaded.

use crate::gucs;
use crate::pg::backend;
use crate::pg::utility::{Arg, Statement};
use pgrx::prelude::*;
use serde_json::json;
use std::cell::Cell;

thread_local! {
    pub(super) static ROLE_HOOK_ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Whether role changes are captured: the utility hook is installed only when the library is
/// loaded through `shared_preload_libraries` (a per-session load would miss every session that
/// never called into it).
pub fn role_capture_active() -> bool {
    ROLE_HOOK_ACTIVE.get()
}

/// The utility hook's work: describe the statement before it runs, record after.
pub(super) fn hook(statement: Option<&Statement>) -> Option<Box<dyn FnOnce()>> {
    let described = role_events(statement?);
    (!described.is_empty()).then(|| Box::new(move || record_role_events(described)) as Box<dyn FnOnce()>)
}

type RoleEvent = (String, String, serde_json::Value);

/// Option names only, and the values of those that are not secrets (never a password).
fn options(list: &[(String, Arg)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (name, arg) in list {
        let v = match arg {
            Arg::Secret => json!("(set)"),
            Arg::Bool(b) => json!(b),
            Arg::Int(i) => json!(i),
            Arg::List(items) => {
                json!(items.iter().map(|i| i.clone().unwrap_or_else(|| "(list)".into())).collect::<Vec<_>>())
            }
            Arg::Str(s) => json!(s),
            Arg::None => json!(true),
        };
        m.insert(name.clone(), v);
    }
    serde_json::Value::Object(m)
}

/// The role lists among CREATE/ALTER ROLE options (`addroleto`, `rolemembers`,
/// `adminmembers`): (option name, role names).
fn role_lists(list: &[(String, Arg)]) -> Vec<(String, Vec<String>)> {
    list.iter()
        .filter_map(|(name, arg)| match arg {
            Arg::List(items) if matches!(name.as_str(), "addroleto" | "rolemembers" | "adminmembers") => {
                Some((name.clone(), items.iter().flatten().cloned().collect()))
            }
            _ => None,
        })
        .collect()
}

/// (action, role name, new) for each role a statement changes.
fn role_events(statement: &Statement) -> Vec<RoleEvent> {
    match statement {
        Statement::CreateRole { role, options: opts } => {
            let mut out = vec![("role.create".to_string(), role.clone(), json!({"options": options(opts)}))];
            // memberships the statement grants: IN ROLE g (role joins g), ROLE/ADMIN u (u joins role)
            for (name, list) in role_lists(opts) {
                match name.as_str() {
                    "addroleto" => out.extend(list.iter().map(|g| grant_event(true, role, g, false))),
                    "rolemembers" | "adminmembers" => {
                        out.extend(list.iter().map(|m| grant_event(true, m, role, name == "adminmembers")))
                    }
                    _ => {}
                }
            }
            out
        }
        Statement::AlterRole { role, action, options: opts } => {
            let members: Vec<String> =
                role_lists(opts).into_iter().filter(|(n, _)| n == "rolemembers").flat_map(|(_, l)| l).collect();
            if !members.is_empty() {
                // ALTER GROUP role ADD USER / DROP USER members: action +1 adds, -1 drops
                let grant = *action >= 0;
                return members.iter().map(|m| grant_event(grant, m, role, false)).collect();
            }
            vec![("role.alter".into(), role.clone(), json!({"options": options(opts)}))]
        }
        Statement::AlterSystem { setting } => {
            let setting = setting.clone().unwrap_or_else(|| "ALL".into());
            vec![("setting.alter_system".into(), setting.clone(), json!({"setting": setting, "scope": "system"}))]
        }
        Statement::AlterDatabaseSet { database, setting } => {
            let setting = setting.clone().unwrap_or_else(|| "ALL".into());
            vec![(
                "setting.alter_database".into(),
                setting.clone(),
                json!({"setting": setting, "scope": "database", "database": database}),
            )]
        }
        Statement::AlterRoleSet { role, database, setting } => vec![(
            "role.set".into(),
            role.clone().unwrap_or_else(|| "ALL".into()),
            json!({"setting": setting, "database": database}),
        )],
        Statement::DropRole { roles } => {
            roles.iter().map(|r| ("role.drop".to_string(), r.clone(), json!({}))).collect()
        }
        Statement::GrantRole { granted, grantees, is_grant, admin } => {
            let action = if *is_grant { "role.grant" } else { "role.revoke" };
            grantees
                .iter()
                .map(|g| (action.to_string(), g.clone(), json!({"roles": granted, "admin_option": admin})))
                .collect()
        }
        Statement::RenameRole { from, to } => vec![("role.rename".into(), from.clone(), json!({"new_name": to}))],
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
fn record_role_events(events: Vec<RoleEvent>) {
    if !gucs::capturing_ddl()
        || !backend::in_transaction()
        || backend::creating_extension()
        || !backend::extension_installed(c"audit_ext")
    {
        return;
    }
    crate::pg::elevate::as_owner(|| {
        for (action, role, new) in events {
            let module = if action.starts_with("setting.") { "ddl" } else { "role" };
            let object_type = if action.starts_with("setting.") { "setting" } else { "role" };
            Spi::run_with_args(
                &crate::pg::backend::internal_sql("SELECT audit_internal._event($1, $2, $3, $4, $4, NULL, $5)")
                    .into_string()
                    .unwrap_or_default(),
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

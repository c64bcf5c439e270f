//! The event vocabulary: the values of `status` and `severity`, and every module and action
//! audit_ext writes itself. The one owner of these names: `audit.record` refuses the reserved
//! ones (src/record.rs), direct inserts are checked against them (src/append.rs), and every
//! event audit_ext records through `audit_internal._event` must be listed here (`audit_internal._own_action`
//! refuses any other, so a new event name cannot be added in SQL alone). README "Events
//! audit_ext records itself" lists the same.

use crate::error::raise;
use pgrx::prelude::*;

pub const STATUSES: [&str; 3] = ["success", "failure", "denied"];
pub const SEVERITIES: [&str; 6] = ["debug", "info", "notice", "warning", "high", "critical"];
pub const MAX_ACTION_CHARS: usize = 200;

/// What audit_ext records itself, by module. An entry ending in `.` or `_` is a prefix: the
/// rest comes from a command tag (`ddl.create_table`, `ddl.drop_view`, `permission.grant`).
pub const OWN: [(&str, &[&str]); 7] = [
    // the side channel (src/side_channel/sessions.rs)
    ("server", &["authentication.login", "authentication.logout", "statement.denied"]),
    ("capture", &["row.insert", "row.update", "row.delete", "table.truncate", "capture.track", "capture.untrack"]),
    ("ddl", &["ddl.", "ddl.drop_", "permission.", "setting.alter_system", "setting.alter_database"]),
    ("role", &["role.create", "role.alter", "role.drop", "role.rename", "role.set", "role.grant", "role.revoke"]),
    (
        "alert",
        &["alert.fired", "alert.create", "alert.drop", "alert.enable", "alert.disable", "stream.create", "stream.drop"],
    ),
    ("retention", &["retention.set", "retention.tier", "retention.applied"]),
    (
        "audit",
        &[
            "audit.checkpoint",
            "audit.key_rotated",
            "audit.forwarder_created",
            "audit.forwarder_dropped",
            "audit.view_allowed",
            "audit.view_disallowed",
            "audit.report",
            "audit.search",
            "audit.export",
            "audit.verify",
            "audit.row_history",
            "audit.explain_query",
            "audit.summary",
            "audit.read",
        ],
    ),
];

/// Modules `audit.record` refuses, so that an auditor can trust that an event with module
/// `capture` really is a captured change and not an application's claim: those of [`OWN`].
pub const RESERVED_MODULES: [&str; 7] = ["capture", "ddl", "role", "alert", "retention", "audit", "server"];

/// Action names `audit.record` refuses under any module, so that `audit.row_history`,
/// `audit.changes` and alert rules on these names see only what audit_ext recorded (an
/// application's 'row.update' would pass for a captured change). Every action of [`OWN`] is
/// covered except `permission.*`, a name applications use for their own permission changes
/// (audit_ext's own are told apart by module `ddl`), and the side channel's
/// `authentication.login`, `authentication.logout` and `statement.denied`, which applications
/// record for their own users (CloudPi's event types; told apart by module `server`).
pub const RESERVED_ACTION_PREFIXES: [&str; 10] =
    ["row.", "table.truncate", "ddl.", "role.", "capture.", "retention.", "alert.", "stream.", "setting.", "audit."];

/// Whether `action` is one of the names audit_ext writes itself.
pub fn reserved_action(action: &str) -> bool {
    let a = action.to_ascii_lowercase();
    RESERVED_ACTION_PREFIXES.iter().any(|p| a.starts_with(p))
}

/// Whether `module` is one of audit_ext's own.
pub fn reserved_module(module: &str) -> bool {
    RESERVED_MODULES.iter().any(|m| m.eq_ignore_ascii_case(module))
}

/// Whether audit_ext writes `action` under `module`.
pub fn own(action: &str, module: &str) -> bool {
    OWN.iter().any(|(m, actions)| {
        *m == module
            && actions.iter().any(|a| {
                if a.ends_with('.') || a.ends_with('_') {
                    action.len() > a.len() && action.starts_with(a)
                } else {
                    action == *a
                }
            })
    })
}

/// For the hints of refused names: `capture, ddl, ... and audit`.
pub fn reserved_modules_text() -> String {
    join_and(RESERVED_MODULES.iter().map(|m| m.to_string()).collect())
}

/// For the hints of refused names: `row.*, table.truncate, ... and audit.*`.
pub fn reserved_actions_text() -> String {
    join_and(
        RESERVED_ACTION_PREFIXES
            .iter()
            .map(|p| if p.ends_with('.') { format!("{p}*") } else { p.to_string() })
            .collect(),
    )
}

fn join_and(mut items: Vec<String>) -> String {
    match items.pop() {
        None => String::new(),
        Some(last) if items.is_empty() => last,
        Some(last) => format!("{} and {last}", items.join(", ")),
    }
}

/// `Use a, b or c.`: the hint for a value that must be one of `values`.
pub fn one_of_hint(values: &[&str]) -> String {
    let mut items: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let last = items.pop().unwrap_or_default();
    if items.is_empty() {
        format!("Use {last}.")
    } else {
        format!("Use {} or {last}.", items.join(", "))
    }
}

#[derive(thiserror::Error, Debug)]
#[error("{caller}: invalid severity {quoted}")]
pub struct BadSeverity {
    caller: String,
    quoted: String,
}

impl crate::error::SqlError for BadSeverity {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
    }
    fn hint(&self) -> Option<String> {
        Some(one_of_hint(&SEVERITIES))
    }
}

/// `audit_internal._check_severity(severity, caller)`: true when `severity` is one of [`SEVERITIES`],
/// else 22023 naming `caller`. The SQL functions that take a severity (`audit.create_alert`)
/// check it here, so that the list has one owner.
#[pg_extern(immutable, parallel_safe, schema = "audit_internal", name = "_check_severity")]
fn check_severity(severity: Option<&str>, caller: &str) -> bool {
    match severity {
        Some(s) if SEVERITIES.contains(&s) => true,
        other => raise(BadSeverity {
            caller: caller.into(),
            quoted: other.map_or("NULL".into(), crate::pg::datum::quote_literal),
        }),
    }
}

#[derive(thiserror::Error, Debug)]
#[error("audit_ext tried to record action \"{action}\" under module \"{module}\", which src/vocab.rs does not list")]
pub struct NotInVocabulary {
    action: String,
    module: String,
}

impl crate::error::SqlError for NotInVocabulary {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
    }
    fn hint(&self) -> Option<String> {
        Some("This is a bug in audit_ext: every event it records itself must be listed in src/vocab.rs (OWN).".into())
    }
}

/// `audit_internal._own_action(action, module)`: `action` itself when audit_ext writes it under
/// `module`, else an internal error (XX000). `audit_internal._event` passes every event through it.
#[pg_extern(immutable, strict, parallel_safe, schema = "audit_internal", name = "_own_action")]
fn own_action(action: &str, module: &str) -> String {
    if !own(action, module) {
        raise(NotInVocabulary { action: action.into(), module: module.into() });
    }
    action.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every own action is reserved (but permission.* and the side channel's, module server),
    /// and every reserved prefix names some own action: the two lists cannot drift apart.
    #[test]
    fn reserved_names_cover_own_events() {
        for (module, actions) in OWN {
            assert!(reserved_module(module), "{module}");
            if module == "server" {
                continue;
            }
            for a in actions.iter().filter(|a| !a.starts_with("permission.")) {
                assert!(reserved_action(a), "{a}");
            }
        }
        for p in RESERVED_ACTION_PREFIXES.iter() {
            assert!(OWN.iter().any(|(_, acts)| acts.iter().any(|a| a.starts_with(p))), "{p}");
        }
        assert!(own("ddl.create_table", "ddl") && own("ddl.drop_view", "ddl") && !own("ddl.", "ddl"));
        assert!(own("row.insert", "capture") && !own("row.insert", "ddl") && !own("row.inserted", "capture"));
        assert_eq!(one_of_hint(&STATUSES), "Use success, failure or denied.");
        assert_eq!(one_of_hint(&SEVERITIES), "Use debug, info, notice, warning, high or critical.");
    }
}

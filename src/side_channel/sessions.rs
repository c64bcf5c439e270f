//! Logins, logouts and denied statements, handed to the side channel (module `server`).
//!
//! - `authentication.login`, status `success`: from the authentication hook, once the client
//!   authenticated and InitPostgres's next checks will pass (src/pg/shim.c); the login waits
//!   until the event is committed. With `audit_ext.level = required` a login whose event
//!   cannot be recorded is refused (FATAL 28000).
//! - `authentication.login`, status `failure`: from the error-report hook, for the FATAL
//!   error that ends a backend still starting (wrong password 28P01, no pg_hba.conf entry or
//!   a role that may not log in 28000, no such database 3D000, no CONNECT 42501, too many
//!   connections 53300, ...), with its SQLSTATE and the server's message and log detail.
//! - `authentication.logout`: from the exit callback of a session whose login was recorded,
//!   with the session's duration and, when a FATAL error ended it (`pg_terminate_backend`,
//!   idle timeouts), that error.
//! - `statement.denied`, status `denied`: from the error-report hook, for an ERROR whose
//!   SQLSTATE `audit_ext.record_errors` lists, that reaches the top of a client's statement.
//!
//! The error hook runs inside error reporting: it touches no catalog and raises nothing
//! (src/pg/session.rs); what it needs of the session was noted at login.

use super::{field, SideEvent};
use crate::gucs::{self, Level};
use crate::pg::backend;
use crate::pg::session::{self, Authenticated, ErrorInfo, Login};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

/// The module of the events audit_ext records about sessions.
pub const MODULE: &str = "server";

/// What a recorded login leaves for the session's later events.
struct Session {
    login: Login,
    database_oid: Option<pg_sys::Oid>,
    client_ip: Option<String>,
    session_id: String,
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
    /// The database the login named, noted by the authentication hook for the failure that follows.
    static AUTH_DB: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
    static FAILURE_RECORDED: Cell<bool> = const { Cell::new(false) };
    /// The FATAL error that is ending the session, for its logout event.
    static ENDED_BY: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

pub fn install() {
    session::install_auth_hook(authenticated, auth_failed);
    session::install_error_hook(error_reported);
}

fn key_of(db: Option<pg_sys::Oid>) -> u32 {
    db.map_or(super::queue::FALLBACK, u32::from)
}

/// The session id as events carry it (log_line_prefix `%c`, as src/append.rs makes it).
fn session_id() -> String {
    format!("{:x}.{:x}", backend::start_time(), backend::pid())
}

/// The client address as text: the Port's remote host when it is an IP address.
fn client_ip(login: &Login) -> Option<String> {
    login.remote_host.clone().filter(|h| h.parse::<std::net::IpAddr>().is_ok())
}

fn login_event(login: &Login, status: &str, error: Option<&ErrorInfo>, client: Option<&str>, sid: &str) -> SideEvent {
    let mut meta = serde_json::json!({
        "database": login.database,
        "auth_method": login.auth_method,
        "hba_line": if login.hba_line > 0 { Some(login.hba_line) } else { None },
        "ssl": login.ssl,
        "gss": login.gss,
        "pid": backend::pid(),
    });
    if login.remote_host.is_some() && client.is_none() {
        meta["remote_host"] = login.remote_host.clone().into();
    }
    if let Some(e) = error {
        meta["sqlstate"] = e.sqlstate.clone().into();
        meta["reason"] = e.message.clone().into();
        if let Some(d) = &e.detail_log {
            meta["detail"] = d.clone().into();
        }
    }
    let user = login.user.clone().unwrap_or_default();
    let db = login.database.clone().unwrap_or_default();
    let message = match error {
        None => format!("role {user:?} logged in to database {db:?}"),
        Some(e) => format!("login of role {user:?} to database {db:?} failed: {}", e.message),
    };
    let severity = if status == "success" { "info" } else { "warning" };
    let mut ev = database_event("authentication.login", status, severity, &db, message, &meta);
    ev.set(field::AT, backend::now().to_string()).set(field::SESSION_USER, user).set(field::SESSION_ID, sid);
    if let Some(app) = &login.application {
        ev.set(field::APPLICATION, app.clone());
    }
    if let Some(ip) = client {
        ev.set(field::CLIENT_IP, ip);
    }
    ev
}

/// An event of module `server` about database `db` (a login or a logout).
fn database_event(
    action: &str,
    status: &str,
    severity: &str,
    db: &str,
    message: String,
    meta: &serde_json::Value,
) -> SideEvent {
    let mut ev = SideEvent::new();
    ev.set(field::ACTION, action)
        .set(field::MODULE, MODULE)
        .set(field::OBJECT_TYPE, "database")
        .set(field::OBJECT_ID, db)
        .set(field::OBJECT_NAME, db)
        .set(field::STATUS, status)
        .set(field::SEVERITY, severity)
        .set(field::MESSAGE, message)
        .set(field::METADATA, meta.to_string());
    ev
}

/// The authentication hook, after a client authenticated.
fn authenticated(mut a: Authenticated) {
    // pg_restore (in restore mode by itself: gucs::restoring) loads events with their ids into
    // its database, and an event chained there meanwhile would take an id the dump holds: its
    // sessions' events go to audit_ext.database.
    if a.login.application.as_deref() == Some("pg_restore") {
        a.database_oid = None;
    }
    AUTH_DB.set(a.database_oid);
    let level = gucs::LEVEL.get();
    if level == Level::Off || !a.will_pass {
        return; // a refusal that follows is recorded by the error hook
    }
    let client = client_ip(&a.login);
    let sid = session_id();
    let ev = login_event(&a.login, "success", None, client.as_deref(), &sid);
    let result = super::hand_over(key_of(a.database_oid), &ev, true).and_then(super::wait);
    match result {
        Ok(_) => {
            SESSION.with(|s| {
                *s.borrow_mut() =
                    Some(Session { login: a.login, database_oid: a.database_oid, client_ip: client, session_id: sid })
            });
            session::on_exit(logged_out);
        }
        Err(super::SideError::Standby) => {
            pgrx::log!("{}", ev.log_line("a hot standby cannot write"));
            super::count_unlogged();
        }
        Err(e) if level == Level::Required => {
            if !matches!(e, super::SideError::Refused(..)) {
                pgrx::log!("{}", ev.log_line(&e.to_string()));
            }
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
                format!("login refused: audit_ext could not record it ({e})"),
                "audit_ext",
            )
            .set_detail("audit_ext.level = required refuses what it cannot audit.")
            .set_hint("Check audit.status() (row side_channel) and the server log; the database named by audit_ext.database must have audit_ext for logins to databases without it.")
            .report(PgLogLevel::FATAL);
        }
        // where the event went nowhere but the server log (the writer wrote that line):
        // what audit_ext.level = on means, no warning
        Err(super::SideError::Refused(code, _)) if code == super::worker::NO_LOG as i32 => {}
        Err(e) => {
            // (a refused event was counted and logged by the writer or the launcher, a full
            // queue counted by hand_over)
            if !matches!(e, super::SideError::Refused(..)) {
                pgrx::log!("{}", ev.log_line(&e.to_string()));
            }
            if !matches!(e, super::SideError::Full | super::SideError::Refused(..)) {
                super::count_dropped();
            }
            pgrx::warning!("audit_ext: this login was not recorded: {e}");
        }
    }
}

fn auth_failed(db: Option<pg_sys::Oid>) {
    AUTH_DB.set(db);
}

/// The exit callback of a session whose login was recorded.
fn logged_out() {
    if !session::client_backend() || session::starting() {
        return;
    }
    let Some(s) = SESSION.with(|s| s.borrow_mut().take()) else { return };
    let now = backend::now();
    let seconds = (now - session::session_start()) as f64 / 1e6;
    let ended = ENDED_BY.with(|e| e.borrow_mut().take());
    let mut meta = serde_json::json!({
        "database": s.login.database,
        "duration_s": (seconds * 1000.0).round() / 1000.0,
        "pid": backend::pid(),
    });
    if let Some((code, msg)) = &ended {
        meta["sqlstate"] = code.clone().into();
        meta["reason"] = msg.clone().into();
    }
    let user = s.login.user.clone().unwrap_or_default();
    let db = s.login.database.clone().unwrap_or_default();
    let message = format!(
        "role {user:?} logged out of database {db:?} after {seconds:.3} s{}",
        ended.as_ref().map(|(_, m)| format!(" ({m})")).unwrap_or_default()
    );
    let mut ev = database_event("authentication.logout", "success", "info", &db, message, &meta);
    ev.set(field::AT, now.to_string()).set(field::SESSION_USER, user).set(field::SESSION_ID, s.session_id.clone());
    if let Some(app) = session::setting(c"application_name").filter(|a| !a.is_empty()) {
        ev.set(field::APPLICATION, app);
    }
    if let Some(ip) = &s.client_ip {
        ev.set(field::CLIENT_IP, ip.clone());
    }
    context_into(&mut ev);
    if super::hand_over(key_of(s.database_oid), &ev, false).is_err() {
        pgrx::log!("{}", ev.log_line("the side channel could not take it"));
    }
}

/// The session's `audit.set_context`, read without raising (settings only).
fn context_into(ev: &mut SideEvent) {
    let names = [
        c"audit_ext.context_actor",
        c"audit_ext.context_actor_ip",
        c"audit_ext.context_session_id",
        c"audit_ext.context_application",
        c"audit_ext.context_metadata",
    ];
    for (i, name) in names.iter().enumerate() {
        if let Some(v) = session::setting(name).filter(|v| !v.is_empty()) {
            ev.set(field::CONTEXT + i, v);
        }
    }
}

/// Whether `audit_ext.record_errors` lists `sqlstate`.
fn recorded_error(sqlstate: &str) -> bool {
    gucs::RECORD_ERRORS
        .get()
        .is_some_and(|list| list.to_string_lossy().split(',').any(|c| c.trim().eq_ignore_ascii_case(sqlstate)))
}

/// The error-report hook: raises nothing (see src/pg/session.rs).
fn error_reported(e: &ErrorInfo) {
    // (without a PGPROC the queue's lock could not be waited for: a PANIC)
    if !session::client_backend() || !session::has_proc() || !super::available() || gucs::LEVEL.get() == Level::Off {
        return;
    }
    if e.is_fatal() {
        if session::starting() {
            if FAILURE_RECORDED.replace(true) {
                return;
            }
            let Some(login) = session::login() else { return };
            let client = client_ip(&login);
            let ev = login_event(&login, "failure", Some(e), client.as_deref(), &session_id());
            // (no log line from inside an error report: hand_over counted it as dropped)
            let _ = super::hand_over(key_of(AUTH_DB.get()), &ev, false);
        } else {
            ENDED_BY.with(|x| *x.borrow_mut() = Some((e.sqlstate.clone(), e.message.clone())));
        }
        return;
    }
    if !e.is_error() || session::starting() || !recorded_error(&e.sqlstate) {
        return;
    }
    denied(e);
}

/// `permission denied for table t` and the like: (object type, name) of aclcheck's messages.
fn object_of(e: &ErrorInfo) -> (Option<String>, Option<String>) {
    if let Some(t) = &e.table {
        let name = match &e.schema {
            Some(s) => format!("{s}.{t}"),
            None => t.clone(),
        };
        return (Some("table".into()), Some(name));
    }
    if let Some(rest) = e.message.strip_prefix("permission denied for ") {
        if let Some((kind, name)) = rest.split_once(' ') {
            return (Some(kind.to_string()), Some(name.to_string()));
        }
        return (Some(rest.to_string()), None);
    }
    (None, None)
}

fn denied(e: &ErrorInfo) {
    let here = Some(backend::database_id());
    let (session_user, client, sid, target) = SESSION.with(|s| {
        s.borrow()
            .as_ref()
            .map(|s| {
                (s.login.user.clone().unwrap_or_default(), s.client_ip.clone(), s.session_id.clone(), s.database_oid)
            })
            .unwrap_or_else(|| {
                let login = session::login().unwrap_or_default();
                (login.user.clone().unwrap_or_default(), client_ip(&login), session_id(), here)
            })
    });
    // the statement, cut so that the event fits (audit_ext.max_event_bytes, a slot)
    let limit = (gucs::MAX_EVENT_BYTES.get() as usize / 2).min(super::queue::SLOT_DATA - 4096);
    let statement = session::statement().map(|s| cut(&s, limit));
    let (object_type, object_name) = object_of(e);
    let meta = serde_json::json!({
        "sqlstate": e.sqlstate,
        "statement": statement,
        "pid": backend::pid(),
        "database": session::login().and_then(|l| l.database),
        "column": e.column,
    });
    let mut ev = SideEvent::new();
    ev.set(field::ACTION, "statement.denied")
        .set(field::MODULE, MODULE)
        .set(field::STATUS, "denied")
        .set(field::SEVERITY, "warning")
        .set(field::MESSAGE, e.message.clone())
        .set(field::METADATA, meta.to_string())
        .set(field::AT, backend::now().to_string())
        .set(field::SESSION_USER, session_user)
        .set(field::SESSION_ID, sid);
    if let Some(t) = object_type {
        ev.set(field::OBJECT_TYPE, t);
    }
    if let Some(n) = object_name {
        ev.set(field::OBJECT_ID, n.clone()).set(field::OBJECT_NAME, n);
    }
    if let Some(app) = session::setting(c"application_name").filter(|a| !a.is_empty()) {
        ev.set(field::APPLICATION, app);
    }
    if let Some(ip) = client {
        ev.set(field::CLIENT_IP, ip);
    }
    context_into(&mut ev);
    // (no log line from inside an error report: hand_over counted it as dropped)
    let _ = super::hand_over(key_of(target), &ev, false);
}

/// `s` cut to at most `max` bytes at a character boundary, marked when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

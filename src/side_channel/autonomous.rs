//! `audit.record_autonomous(...)`: `audit.record` whose event survives the caller's rollback
//! (Cockpit's failed actions, an application's "payment denied" whose transaction is rolled
//! back). The event is handed to the side channel with the caller's session and context, a
//! writer commits it in its own transaction, and the call returns its id only then.

use super::{field, SideError, SideEvent};
use crate::error::raise;
use crate::gucs::{self, Level};
use crate::pg::backend;
use crate::pg::value::Value;
use crate::record::{check_names, RECORD_ARGS};

crate::c_function!(
    /// `audit.record_autonomous(action, object_type, ..., metadata) returns bigint`: the id
    /// of the event, committed. Same arguments, defaults and checks as `audit.record` (the
    /// writer inserts through the same path; what the log refuses comes back as the same
    /// error). Needs the library preloaded. When the side channel cannot take the event:
    /// with `audit_ext.level = required` an error (53000), else a WARNING and NULL.
    pg_finfo_audit_record_autonomous,
    audit_record_autonomous,
    &RECORD_ARGS,
    |call| {
        let action = call.arg(field::ACTION);
        let module = call.arg(field::MODULE);
        check_names(action.as_ref().map(|a| a.str()).as_deref(), module.as_ref().map(|m| m.str()).as_deref());
        if !super::available() {
            raise(SideError::NotPreloaded);
        }
        let mut ev = SideEvent::new();
        for i in 0..RECORD_ARGS.len() {
            if let Some(v) = call.arg(i) {
                match i {
                    field::OLD | field::NEW | field::METADATA => ev.set(i, v.jsonb_string()),
                    _ => ev.set(i, v.bytes().to_vec()),
                };
            }
        }
        ev.set(field::AT, backend::now().to_string())
            .set(field::SESSION_USER, backend::session_user_name())
            .set(field::SESSION_ID, format!("{:x}.{:x}", backend::start_time(), backend::pid()));
        if let Some(ip) = backend::client_addr_bytes() {
            ev.set(field::CLIENT_IP, Value::from_inet_bytes(&ip).inet_text());
        }
        if let Some(app) = backend::application_name() {
            ev.set(field::APPLICATION, app);
        }
        let context = [
            &gucs::CONTEXT_ACTOR,
            &gucs::CONTEXT_ACTOR_IP,
            &gucs::CONTEXT_SESSION_ID,
            &gucs::CONTEXT_APPLICATION,
            &gucs::CONTEXT_METADATA,
        ];
        for (i, setting) in context.iter().enumerate() {
            if let Some(v) = gucs::context(setting) {
                ev.set(field::CONTEXT + i, v.into_bytes());
            }
        }
        let key = u32::from(backend::database_id());
        match super::hand_over(key, &ev, true).and_then(super::wait) {
            Ok(id) => Some(Value::from_int8(id)),
            Err(e @ (SideError::Refused(..) | SideError::TooLarge(_) | SideError::Standby)) => raise(e),
            Err(e) if gucs::LEVEL.get() == Level::Required => raise(e),
            Err(e) => {
                pgrx::warning!("audit_ext: audit.record_autonomous did not record the event: {e}");
                None
            }
        }
    }
);

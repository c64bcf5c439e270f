//! Forwarders (sql/forward.sql, README "Forwarders"): background workers that ship the log's
//! events, in a format of `audit.export`, to a syslog receiver or SIEM over UDP, TCP or TLS.
//!
//! - [`transport`]: the connections, framing, and what counts as taken by the receiver;
//! - [`worker`]: the worker of each database with forwarders (started by the side channel's
//!   launcher, src/side_channel/worker.rs), and the scout that finds those databases after a
//!   server start.
//!
//! At least once: each forwarder's position (per chain, the last seq the receiver took) is
//! stored in `audit_internal.forwarders` and advanced only after the receiver took the events;
//! what was sent after it is sent again after a broken connection, a restart or a crash.
//! Forwarding reads the log like any reader: writers never wait for it.

pub mod transport;
pub mod worker;

use crate::pg::{backend, callbacks};
use crate::side_channel::queue::{self, QUEUE};
use audit_core::forward::Target;
use pgrx::prelude::*;
use std::cell::Cell;

/// The formats a forwarder may use (those of `audit.export`).
pub const FORMATS: [&str; 5] = ["rfc5424", "jsonl", "csv", "cef", "kv"];

#[derive(thiserror::Error, Debug)]
pub enum ForwardError {
    #[error("audit.create_forwarder(): {0}")]
    BadTarget(String),
    #[error("audit.create_forwarder(): unknown format {0:?}")]
    BadFormat(String),
    #[error("audit.create_forwarder(): forwarders need audit_ext in shared_preload_libraries")]
    NotPreloaded,
}

impl crate::error::SqlError for ForwardError {
    fn code(&self) -> PgSqlErrorCode {
        match self {
            ForwardError::BadTarget(_) | ForwardError::BadFormat(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            ForwardError::NotPreloaded => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            ForwardError::BadTarget(_) => {
                "A target is udp://host:port, tcp://host:port or tls://host:port ([address] for IPv6).".into()
            }
            ForwardError::BadFormat(_) => format!("Use one of {}.", FORMATS.join(", ")),
            ForwardError::NotPreloaded => {
                "Add audit_ext to shared_preload_libraries in postgresql.conf and restart the server.".into()
            }
        })
    }
}

/// `audit_internal._forwarder_check(target, format)`: raises 22023 for a target or format
/// that cannot work, 55000 when the workers cannot run (not preloaded).
#[pg_extern(stable, parallel_safe, schema = "audit_internal", name = "_forwarder_check")]
#[search_path(pg_catalog, pg_temp)]
fn forwarder_check(target: Option<&str>, format: Option<&str>) -> bool {
    let format = format.unwrap_or("NULL");
    if !FORMATS.contains(&format) {
        crate::error::raise(ForwardError::BadFormat(format.to_string()));
    }
    if let Err(e) = Target::parse(target.unwrap_or("")) {
        crate::error::raise(ForwardError::BadTarget(e));
    }
    if !crate::side_channel::available() {
        crate::error::raise(ForwardError::NotPreloaded);
    }
    true
}

thread_local! {
    /// This transaction changed the forwarders: tell the worker at commit.
    static CHANGED: Cell<bool> = const { Cell::new(false) };
}

/// `audit_internal._forwarders_changed()`: at this transaction's commit the database's
/// forwarder worker is started, or told to read its forwarders again (a worker started
/// before the commit would not see them).
#[pg_extern(volatile, parallel_unsafe, schema = "audit_internal", name = "_forwarders_changed")]
#[search_path(pg_catalog, pg_temp)]
fn forwarders_changed() {
    CHANGED.set(true);
}

fn at_end(end: callbacks::XactEnd) {
    if CHANGED.replace(false) && end == callbacks::XactEnd::Commit {
        worker::request(u32::from(backend::database_id()));
    }
}

/// The `forwarders` row of `audit.status()` (src/status.rs): what it reads, as a sentence.
pub const STATUS_SQL: &str = "SELECT CASE WHEN NOT has_table_privilege('audit.forwarders', 'SELECT') \
     THEN 'forwarders: audit_reader may see them' \
     ELSE (SELECT format('%s forwarder(s), %s event(s) still to send, %s with an error%s', count(*), \
            coalesce(sum(lag_events), 0), count(last_error), \
            coalesce(': ' || string_agg(format('%s: %s', name, last_error), '; ') FILTER (WHERE last_error IS NOT NULL), '')) \
           FROM audit.forwarders) END";

/// Whether this database's forwarder worker runs (None: not preloaded).
pub fn worker_running() -> Option<bool> {
    if !crate::side_channel::available() {
        return None;
    }
    let me = u32::from(backend::database_id());
    Some(QUEUE.lock().forwarders.iter().any(|f| f.db == me && f.state == queue::F_RUNNING))
}

/// From _PG_init: the commit callback (every backend), and the launcher's round (preloaded).
pub fn init() {
    callbacks::on_transaction_end(at_end);
    crate::side_channel::worker::each_round(worker::launch);
}

//! Facts about this backend, its session and transaction, and the catalog lookups and small
//! actions the features need, each a safe function over one or two `pg_sys` calls. All of them
//! run in a backend (every caller is a SQL function, trigger, hook or worker of audit_ext);
//! those that read the catalog need a transaction, as every caller has.

use pgrx::pg_sys;
use std::ffi::{CStr, CString};

fn owned(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: a NULL or NUL-terminated string returned by PostgreSQL, copied at once.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// The clock time now (`clock_timestamp()`), in PostgreSQL-epoch microseconds.
pub fn now() -> i64 {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// The start of the current transaction (`now()`), in PostgreSQL-epoch microseconds.
pub fn transaction_start() -> i64 {
    // SAFETY: a backend global of the current transaction.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// The current top-level transaction's full id (assigning one if it has none yet).
pub fn top_full_xid() -> i64 {
    // SAFETY: inside a transaction, as every caller (the insert trigger) is.
    unsafe { pg_sys::GetTopFullTransactionId().value as i64 }
}

pub fn subtransaction_id() -> pg_sys::SubTransactionId {
    // SAFETY: a backend global of the current transaction.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

pub fn in_transaction_block() -> bool {
    // SAFETY: reads the transaction state.
    unsafe { pg_sys::IsTransactionBlock() }
}

pub fn in_transaction() -> bool {
    // SAFETY: reads the transaction state.
    unsafe { pg_sys::IsTransactionState() }
}

pub fn pid() -> i32 {
    // SAFETY: a backend global set at start.
    unsafe { pg_sys::MyProcPid }
}

/// When this backend started (pg_time_t, seconds since 1970).
pub fn start_time() -> i64 {
    // SAFETY: a backend global set at start.
    unsafe { pg_sys::MyStartTime }
}

pub fn database_id() -> pg_sys::Oid {
    // SAFETY: a backend global set when the backend attached to its database.
    unsafe { pg_sys::MyDatabaseId }
}

pub fn database_name() -> String {
    // SAFETY: get_database_name returns a palloc'd copy or NULL.
    owned(unsafe { pg_sys::get_database_name(database_id()) }).unwrap_or_default()
}

/// The cluster's system identifier (as `pg_control_system()` gives it).
pub fn system_identifier() -> u64 {
    // SAFETY: reads the control file data in shared memory.
    unsafe { pg_sys::GetSystemIdentifier() }
}

/// `application_name`, None when empty.
pub fn application_name() -> Option<String> {
    // SAFETY: a GUC string variable, NULL or NUL-terminated.
    owned(unsafe { pg_sys::application_name }).filter(|s| !s.is_empty())
}

/// `cluster_name`, None when empty.
pub fn cluster_name() -> Option<String> {
    // SAFETY: a GUC string variable, NULL or NUL-terminated.
    owned(unsafe { pg_sys::cluster_name }).filter(|s| !s.is_empty())
}

/// The current user and security context (`GetUserIdAndSecContext`).
pub fn user_and_context() -> (pg_sys::Oid, i32) {
    let (mut user, mut sec) = (pg_sys::InvalidOid, 0);
    // SAFETY: writes the two out-parameters.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut sec) };
    (user, sec)
}

/// Whether the current user was switched for a SECURITY DEFINER function or a switch of
/// src/pg/elevate.rs (SECURITY_LOCAL_USERID_CHANGE), and to `owner`.
pub fn switched_to(owner: pg_sys::Oid) -> bool {
    let (user, sec) = user_and_context();
    sec & pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 != 0 && user == owner
}

pub fn current_user() -> pg_sys::Oid {
    // SAFETY: a backend global.
    unsafe { pg_sys::GetUserId() }
}

pub fn is_superuser() -> bool {
    // SAFETY: checks the current user's pg_authid row (syscache), inside a transaction.
    unsafe { pg_sys::superuser() }
}

/// The name of role `oid` (an error if there is none).
pub fn role_name(oid: pg_sys::Oid) -> String {
    // SAFETY: GetUserNameFromId returns a palloc'd name, or raises an error (noerr = false).
    owned(unsafe { pg_sys::GetUserNameFromId(oid, false) }).unwrap_or_default()
}

/// `session_user`'s name.
pub fn session_user_name() -> String {
    // SAFETY: a backend global.
    role_name(unsafe { pg_sys::GetSessionUserId() })
}

/// The client's address as an inet varlena (`inet_client_addr()`), None for a Unix socket.
pub fn client_addr_bytes() -> Option<Vec<u8>> {
    // SAFETY: inet_client_addr takes no arguments and returns NULL or an inet varlena, whose
    // bytes are copied at once.
    unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::inet_client_addr, &[]).map(|d| {
            let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
            let len = pgrx::varlena::varsize_any(v);
            std::slice::from_raw_parts(v as *const u8, len).to_vec()
        })
    }
}

/// The oid of schema `name`, None when there is none.
pub fn namespace_oid(name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: a syscache lookup (missing_ok).
    let ns = unsafe { pg_sys::get_namespace_oid(name.as_ptr(), true) };
    (ns != pg_sys::InvalidOid).then_some(ns)
}

/// The name of schema `ns`.
pub fn namespace_name(ns: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup returning a palloc'd copy or NULL.
    owned(unsafe { pg_sys::get_namespace_name(ns) })
}

/// The oid of relation `name` in schema `ns`, None when there is none.
pub fn relid_in(ns: pg_sys::Oid, name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: a syscache lookup.
    let oid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), ns) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// `sql` as this database's SQL objects of audit_ext name their internal functions: as written
/// (`audit_internal.<name>`), or `audit.<name>` where the database still has version 0.1.0's
/// objects (one library serves every version until `ALTER EXTENSION audit_ext UPDATE`).
pub fn internal_sql(sql: &str) -> CString {
    let sql = if namespace_oid(c"audit_internal").is_some() {
        std::borrow::Cow::Borrowed(sql)
    } else {
        std::borrow::Cow::Owned(sql.replace("audit_internal.", "audit."))
    };
    CString::new(sql.as_bytes()).expect("audit_ext: NUL in its own SQL")
}

/// The oid of audit_ext's relation `audit.<name>`, None when there is none.
pub fn audit_relid(name: &CStr) -> Option<pg_sys::Oid> {
    namespace_oid(c"audit").and_then(|ns| relid_in(ns, name))
}

/// The schema of relation `relid`, and whether it is a partition (InvalidOid, false when the
/// relation is gone).
pub fn rel_namespace_partition(relid: pg_sys::Oid) -> (pg_sys::Oid, bool) {
    // SAFETY: syscache lookups (InvalidOid and false for a missing relation).
    unsafe { (pg_sys::get_rel_namespace(relid), pg_sys::get_rel_relispartition(relid)) }
}

/// Whether this backend serves a client (not a background worker, autovacuum, a walsender).
pub fn is_client_backend() -> bool {
    // SAFETY: a backend global, set at start.
    unsafe { pg_sys::MyBackendType == pg_sys::BackendType::B_BACKEND }
}

/// The name of relation `relid`, None when it is gone.
pub fn rel_name(relid: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup returning a palloc'd copy or NULL.
    owned(unsafe { pg_sys::get_rel_name(relid) })
}

/// `"Schema"."Table"` as `format('%I.%I')` writes it.
pub fn qualified_name(relid: pg_sys::Oid) -> String {
    // SAFETY: syscache lookups returning palloc'd copies; quote_qualified_identifier takes
    // two NUL-terminated strings (or a NULL schema) and returns a palloc'd one.
    unsafe {
        let ns = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return format!("(relation {})", u32::from(relid));
        }
        owned(pg_sys::quote_qualified_identifier(ns, name)).unwrap_or_default()
    }
}

/// `name` quoted as an identifier where it needs it (`quote_ident`).
pub fn quote_ident(name: &str) -> String {
    let c = CString::new(name.split('\0').next().unwrap_or_default()).unwrap_or_default();
    // SAFETY: quote_identifier takes a NUL-terminated string and returns it or a palloc'd copy.
    owned(unsafe { pg_sys::quote_identifier(c.as_ptr()) }).unwrap_or_default()
}

/// Whether extension `name` is installed in this database.
pub fn extension_installed(name: &CStr) -> bool {
    // SAFETY: a catalog lookup (missing_ok).
    unsafe { pg_sys::get_extension_oid(name.as_ptr(), true) != pg_sys::InvalidOid }
}

/// Whether a `CREATE EXTENSION` or `ALTER EXTENSION UPDATE` script is running.
pub fn creating_extension() -> bool {
    // SAFETY: a backend global.
    unsafe { pg_sys::creating_extension }
}

/// Whether `shared_preload_libraries` is being loaded (only then may hooks be installed).
pub fn loading_preloaded() -> bool {
    // SAFETY: a backend global.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// The next value of sequence `seq` (`nextval`).
pub fn nextval(seq: pg_sys::Oid) -> i64 {
    // SAFETY: nextval_oid takes one oid datum and returns an int8 datum.
    let d = unsafe { super::datum::call(pg_sys::nextval_oid, &[pg_sys::Datum::from(seq)]) };
    d.expect("nextval returned NULL").value() as i64
}

/// Makes every backend (at commit) and this one (at its next command) drop what it cached
/// about relation `relid`: the relcache callbacks of src/pg/callbacks.rs then run.
pub fn invalidate_relcache(relid: pg_sys::Oid) {
    // SAFETY: queues an invalidation message, inside a transaction.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) }
}

/// `pg_notify(channel, payload)`: delivered at commit.
pub fn notify(channel: &str, payload: &str) {
    let (c, p) =
        (super::value::Value::from_text(channel.as_bytes()), super::value::Value::from_text(payload.as_bytes()));
    // SAFETY: pg_notify takes two text datums.
    unsafe { super::datum::call(pg_sys::pg_notify, &[c.raw(), p.raw()]) };
}

/// Sets a GUC as the superuser would (`PGC_SUSET`), for the session or, when `local`, the
/// transaction: for the superuser-only settings audit_ext's own functions set.
pub fn set_setting(name: &CStr, value: &CStr, local: bool) {
    // SAFETY: set_config_option takes NUL-terminated name and value; elevel 0 raises errors.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            if local { pg_sys::GucAction::GUC_ACTION_LOCAL } else { pg_sys::GucAction::GUC_ACTION_SET },
            true,
            0,
            false,
        );
    }
}

/// Reserves the `audit_ext.` prefix of settings (an unknown `audit_ext.x` is then an error).
pub fn reserve_setting_prefix(prefix: &CStr) {
    // SAFETY: takes a NUL-terminated prefix.
    unsafe { pg_sys::MarkGUCPrefixReserved(prefix.as_ptr()) }
}

/// Fills `buf` from the server's strong random source; false if it failed.
pub fn strong_random(buf: &mut [u8]) -> bool {
    // SAFETY: writes exactly buf.len() bytes into buf.
    unsafe { pg_sys::pg_strong_random(buf.as_mut_ptr().cast(), buf.len()) }
}

/// Sleeps `us` microseconds, then serves interrupts (a cancel or terminate raises its error).
pub fn sleep_us(us: i64) {
    // SAFETY: pg_usleep only sleeps.
    unsafe { pg_sys::pg_usleep(us as std::ffi::c_long) };
    pgrx::check_for_interrupts!();
}

/// An error caught by [`try_subtransaction`]: its SQLSTATE and message.
pub struct Caught {
    pub code: pgrx::PgSqlErrorCode,
    pub message: String,
}

/// Runs `f` in an internal subtransaction: its error (and everything `f` did) is rolled back
/// and returned, the surrounding transaction goes on. As PL/Python and PL/Perl do it.
pub fn try_subtransaction<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, Caught> {
    // SAFETY: the subtransaction is begun and then released or rolled back on every path,
    // with the memory context and resource owner restored after, the documented pattern
    // around BeginInternalSubTransaction.
    unsafe {
        let cx = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cx);
        let result = pgrx::PgTryBuilder::new(|| Ok(f()))
            .catch_others(|e| {
                let report = match e {
                    pgrx::pg_sys::panic::CaughtError::PostgresError(r)
                    | pgrx::pg_sys::panic::CaughtError::ErrorReport(r)
                    | pgrx::pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => r,
                };
                Err(Caught { code: report.sql_error_code(), message: report.message().to_string() })
            })
            .execute();
        if result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(cx);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}

/// Whether the server is a standby (or still recovering): nothing can be written.
pub fn in_recovery() -> bool {
    // SAFETY: reads shared recovery state.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// Rereads postgresql.conf, as a background process does on SIGHUP.
pub fn reload_config() {
    // SAFETY: what PostgreSQL's own processes call when ConfigReloadPending is set.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
}

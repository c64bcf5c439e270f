//! The hooks around a session that the side channel (src/side_channel/) listens to: the
//! authentication hook, the hook on every error report, and the exit callback; and what they
//! can read (the login's Port, through src/pg/shim.c, since pgrx leaves Port opaque).
//!
//! The error hook runs while an error is being reported: nothing it calls may raise another
//! one. [`ErrorInfo`] copies plain fields; the hook's user must keep to shared memory, latches
//! and reading settings.

use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::{c_char, c_int, CStr};

#[repr(C)]
struct PortInfo {
    database_name: *const c_char,
    user_name: *const c_char,
    application_name: *const c_char,
    remote_host: *const c_char,
    auth_method: *const c_char,
    hba_line: c_int,
    ssl: bool,
    gss: bool,
}

extern "C-unwind" {
    // src/pg/shim.c: reads plain fields, never raises.
    fn audit_ext_port_info(port: *mut pg_sys::Port, out: *mut PortInfo);
    fn audit_ext_install_client_auth(cb: unsafe extern "C-unwind" fn(*mut pg_sys::Port, c_int));
}

extern "C-unwind" {
    // src/pg/shim.c: catalog reads (shared catalogs), which may raise: called through
    // pg_guard_ffi_boundary, which turns an error into a Rust unwind and back.
    fn audit_ext_login_will_pass(port: *mut pg_sys::Port) -> bool;
    fn audit_ext_login_database(port: *mut pg_sys::Port) -> pg_sys::Oid;
}

fn guarded<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: f calls one C function of the shim, which may longjmp on error.
    unsafe { pgrx::pg_sys::submodules::ffi::pg_guard_ffi_boundary(f) }
}

/// What a connection asked for, from its Port.
#[derive(Clone, Debug, Default)]
pub struct Login {
    pub database: Option<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    pub remote_host: Option<String>,
    pub auth_method: Option<String>,
    pub hba_line: i32,
    pub ssl: bool,
    pub gss: bool,
}

fn text(p: *const c_char) -> Option<String> {
    // SAFETY: NULL or a NUL-terminated string owned by the Port.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn login_of(port: *mut pg_sys::Port) -> Login {
    let mut info = PortInfo {
        database_name: std::ptr::null(),
        user_name: std::ptr::null(),
        application_name: std::ptr::null(),
        remote_host: std::ptr::null(),
        auth_method: std::ptr::null(),
        hba_line: 0,
        ssl: false,
        gss: false,
    };
    // SAFETY: port is NULL or this backend's Port; the shim only copies fields.
    unsafe { audit_ext_port_info(port, &mut info) };
    Login {
        database: text(info.database_name),
        user: text(info.user_name),
        application: text(info.application_name),
        remote_host: text(info.remote_host),
        auth_method: text(info.auth_method),
        hba_line: info.hba_line,
        ssl: info.ssl,
        gss: info.gss,
    }
}

/// The login of this backend (None in a process that serves no client). Never raises.
pub fn login() -> Option<Login> {
    // SAFETY: a process global.
    let port = unsafe { pg_sys::MyProcPort };
    (!port.is_null()).then(|| login_of(port))
}

/// What the authentication hook tells its user.
pub struct Authenticated {
    pub login: Login,
    /// Whether InitPostgres's next checks will pass too (the role may log in, the database
    /// exists and allows connections, CONNECT): src/pg/shim.c.
    pub will_pass: bool,
    /// The database the login names, if it exists.
    pub database_oid: Option<pg_sys::Oid>,
}

/// Told the database a failed login named.
type AuthFailedFn = fn(Option<pg_sys::Oid>);

thread_local! {
    static ON_AUTH: Cell<Option<fn(Authenticated)>> = const { Cell::new(None) };
    static ON_AUTH_FAILED: Cell<Option<AuthFailedFn>> = const { Cell::new(None) };
    static ON_ERROR: Cell<Option<fn(&ErrorInfo)>> = const { Cell::new(None) };
    static PREV_EMIT: Cell<pg_sys::emit_log_hook_type> = const { Cell::new(None) };
}

/// Installs the authentication hook (only while shared_preload_libraries loads): `ok` is
/// called when a client authenticated, `failed` with the named database's oid when it did
/// not (the error report follows).
pub fn install_auth_hook(ok: fn(Authenticated), failed: fn(Option<pg_sys::Oid>)) -> bool {
    if !super::backend::loading_preloaded() {
        return false;
    }
    ON_AUTH.set(Some(ok));
    ON_AUTH_FAILED.set(Some(failed));
    // SAFETY: sets ClientAuthentication_hook (chaining to any installed before) while the
    // library is preloaded, before any client connects.
    unsafe { audit_ext_install_client_auth(client_auth) };
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn client_auth(port: *mut pg_sys::Port, status: c_int) {
    if status == pg_sys::STATUS_OK as c_int {
        if let Some(f) = ON_AUTH.get() {
            // SAFETY: the Port PostgreSQL passed; the shim's catalog reads are guarded.
            let will_pass = guarded(|| unsafe { audit_ext_login_will_pass(port) });
            let db = guarded(|| unsafe { audit_ext_login_database(port) });
            f(Authenticated {
                login: login_of(port),
                will_pass,
                database_oid: (db != pg_sys::InvalidOid).then_some(db),
            });
        }
    } else if status == pg_sys::STATUS_ERROR as c_int {
        if let Some(f) = ON_AUTH_FAILED.get() {
            // SAFETY: as above.
            let db = guarded(|| unsafe { audit_ext_login_database(port) });
            f((db != pg_sys::InvalidOid).then_some(db));
        }
    }
    // STATUS_EOF: the client hung up before answering (psql does so to ask for a password,
    // then connects again), which is not a failed login.
}

/// An error being reported, copied out of its ErrorData.
pub struct ErrorInfo {
    pub elevel: i32,
    pub sqlstate: String,
    pub message: String,
    pub detail_log: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
}

impl ErrorInfo {
    pub fn is_fatal(&self) -> bool {
        self.elevel >= pgrx::PgLogLevel::FATAL as i32
    }
    pub fn is_error(&self) -> bool {
        self.elevel == pgrx::PgLogLevel::ERROR as i32
    }
}

/// The five characters of an error code (PGUNSIXBIT).
pub fn sqlstate_text(code: i32) -> String {
    (0..5).map(|i| (((code >> (6 * i)) & 0x3f) as u8 + b'0') as char).collect()
}

/// Installs the error-report hook (chaining to any installed before). `f` must not raise.
pub fn install_error_hook(f: fn(&ErrorInfo)) {
    ON_ERROR.set(Some(f));
    // SAFETY: emit_log_hook is a plain global, set once from _PG_init.
    unsafe {
        PREV_EMIT.set(pg_sys::emit_log_hook);
        pg_sys::emit_log_hook = Some(emit_log);
    }
}

unsafe extern "C-unwind" fn emit_log(edata: *mut pg_sys::ErrorData) {
    if let Some(prev) = PREV_EMIT.get() {
        // SAFETY: the hook installed before ours, with the same argument.
        unsafe { prev(edata) };
    }
    // SAFETY: edata is the error being reported, valid for this call.
    let e = unsafe { &*edata };
    // Only what the side channel can use: errors and fatal errors reaching the server log.
    if e.elevel < pgrx::PgLogLevel::ERROR as i32 || !e.output_to_server {
        return;
    }
    let Some(f) = ON_ERROR.get() else { return };
    let info = ErrorInfo {
        elevel: e.elevel,
        sqlstate: sqlstate_text(e.sqlerrcode),
        message: text(e.message).unwrap_or_default(),
        detail_log: text(e.detail_log),
        schema: text(e.schema_name),
        table: text(e.table_name),
        column: text(e.column_name),
    };
    // Never an error (or a panic) out of an error report.
    let _ = std::panic::catch_unwind(|| f(&info));
}

/// Whether this backend is still starting (InitPostgres has not finished: the login is not
/// complete).
pub fn starting() -> bool {
    // SAFETY: a process global.
    unsafe { pg_sys::Mode == pg_sys::ProcessingMode::InitProcessing }
}

/// Whether this process has its PGPROC (an LWLock can be waited for): not so while a
/// connection is refused before the backend exists ("too many clients", "the database system
/// is starting up", a bad startup packet).
pub fn has_proc() -> bool {
    // SAFETY: a process global.
    unsafe { !pg_sys::MyProc.is_null() }
}

/// Whether this process is a client backend.
pub fn client_backend() -> bool {
    // SAFETY: a process global.
    unsafe { pg_sys::MyBackendType == pg_sys::BackendType::B_BACKEND }
}

/// The text of the statement being run (debug_query_string), if any.
pub fn statement() -> Option<String> {
    // SAFETY: NULL or the current query string, valid during its execution.
    text(unsafe { pg_sys::debug_query_string })
}

/// When this backend started, in PostgreSQL-epoch microseconds.
pub fn session_start() -> i64 {
    // SAFETY: a process global.
    unsafe { pg_sys::MyStartTimestamp }
}

/// The current value of setting `name` as text, without raising (None if unknown).
pub fn setting(name: &CStr) -> Option<String> {
    // SAFETY: GetConfigOption with missing_ok = true and restrict_privileged = false only
    // looks the name up and returns a pointer to the value string.
    text(unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) })
}

/// Calls `f` when this process exits (before it leaves shared memory), also after FATAL.
pub fn on_exit(f: fn()) {
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn call(_code: c_int, arg: pg_sys::Datum) {
        // SAFETY: arg is the function pointer registered below.
        let f: fn() = unsafe { std::mem::transmute::<usize, fn()>(arg.value()) };
        let _ = std::panic::catch_unwind(f);
    }
    // SAFETY: registers a callback with a function pointer as its argument.
    unsafe { pg_sys::before_shmem_exit(Some(call), pg_sys::Datum::from(f as usize)) };
}

//! Hand-written fmgr V1 functions (those declared in sql/*.sql with `LANGUAGE c ... AS
//! 'MODULE_PATHNAME', '<name>'`, which pass the caller's datums through untouched, as a
//! `#[pg_extern]`'s conversions would not). [`c_function!`](crate::c_function) writes the
//! `extern "C"` entry point and its `pg_finfo_` record; the body is safe Rust that reads its
//! arguments through [`Call`].

use super::trigger::Trigger;
use super::value::Value;
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashSet;

/// In a [`c_function!`](crate::c_function)'s argument types: any row type (`audit.events`).
pub const ROW: pg_sys::Oid = pg_sys::InvalidOid;

/// One call of a C function: its arguments as [`Value`]s of the types its `CREATE FUNCTION`
/// declares, and the trigger it serves, if any.
pub struct Call {
    fcinfo: pg_sys::FunctionCallInfo,
    types: &'static [pg_sys::Oid],
}

thread_local! {
    /// Functions whose argument types were checked against pg_proc (once per backend).
    static CHECKED: RefCell<HashSet<pg_sys::Oid>> = RefCell::new(HashSet::new());
}

impl Call {
    /// # Safety
    /// `fcinfo` must be the one PostgreSQL passed to the function being called.
    #[doc(hidden)]
    pub unsafe fn new(fcinfo: pg_sys::FunctionCallInfo, types: &'static [pg_sys::Oid]) -> Call {
        let call = Call { fcinfo, types };
        call.check_types();
        call
    }

    /// Checks, once per backend and function, that pg_proc declares the argument types the
    /// Rust body was written for: a `CREATE FUNCTION` edited to other types is an error, never
    /// a misread datum.
    fn check_types(&self) {
        let want = self.types;
        // SAFETY: fcinfo and its flinfo are valid for the call (Call::new's contract);
        // get_func_signature reads pg_proc for the function's own oid.
        unsafe {
            let fn_oid = (*(*self.fcinfo).flinfo).fn_oid;
            if CHECKED.with(|c| c.borrow().contains(&fn_oid)) {
                return;
            }
            let mut types: *mut pg_sys::Oid = std::ptr::null_mut();
            let mut n = 0;
            pg_sys::get_func_signature(fn_oid, &mut types, &mut n);
            let declared = if types.is_null() { &[][..] } else { std::slice::from_raw_parts(types, n as usize) };
            // (InvalidOid in `want`: any row type, such as audit.events)
            let fits = declared.len() == want.len()
                && declared.iter().zip(want).all(|(d, w)| {
                    if *w == pg_sys::InvalidOid {
                        pg_sys::type_is_rowtype(*d)
                    } else {
                        d == w
                    }
                });
            if !fits || (*self.fcinfo).nargs as usize != want.len() {
                let name = pg_sys::get_func_name(fn_oid);
                let name = if name.is_null() {
                    u32::from(fn_oid).to_string()
                } else {
                    std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
                };
                pgrx::error!("audit_ext: function {name} is declared with other argument types than its C code takes");
            }
            CHECKED.with(|c| c.borrow_mut().insert(fn_oid));
        }
    }

    /// Argument `i`, None for NULL, of the type the function declares (checked).
    pub fn arg(&self, i: usize) -> Option<Value> {
        // (a row argument is read as a record: with_composite takes its type from the datum)
        let oid = if self.types[i] == pg_sys::InvalidOid { pg_sys::RECORDOID } else { self.types[i] };
        // SAFETY: fcinfo holds as many arguments as `types` (check_types compared nargs), and
        // argument i is of type types[i].
        unsafe {
            let a = *(*self.fcinfo).args.as_ptr().add(i);
            (!a.isnull).then(|| Value::from_raw(oid, a.value))
        }
    }

    /// The trigger this call serves, if it is a trigger call.
    pub fn trigger(&self) -> Option<Trigger<'_>> {
        // SAFETY: a non-NULL context of tag T_TriggerData is the TriggerData of this call.
        unsafe {
            let ctx = (*self.fcinfo).context;
            if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
                return None;
            }
            Some(Trigger::new(&*(ctx as *const pg_sys::TriggerData)))
        }
    }

    /// The function's result: a value, or NULL.
    #[doc(hidden)]
    pub fn finish(&self, out: Option<Value>) -> pg_sys::Datum {
        match out {
            Some(v) => v.raw(),
            None => {
                // SAFETY: fcinfo is valid for the call.
                unsafe { (*self.fcinfo).isnull = true };
                pg_sys::Datum::from(0)
            }
        }
    }
}

/// Writes a hand-written fmgr V1 function: `c_function!(pg_finfo_name, name, &[arg types],
/// |call| body)`, where `body` returns `Option<Value>` (None: NULL). The argument types are
/// checked against the function's `CREATE FUNCTION` on its first call in a backend;
/// [`ROW`](crate::pg::fcinfo::ROW) stands for any row type.
#[macro_export]
macro_rules! c_function {
    ($(#[$m:meta])* $finfo:ident, $name:ident, $types:expr, |$call:ident| $body:block) => {
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pgrx::pg_sys::Pg_finfo_record {
            const V1: pgrx::pg_sys::Pg_finfo_record = pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
        $(#[$m])*
        #[no_mangle]
        #[pgrx::pg_guard]
        // (the body is a closure so that it may `return` or `?` a NULL)
        #[allow(clippy::redundant_closure_call)]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pgrx::pg_sys::FunctionCallInfo) -> pgrx::pg_sys::Datum {
            const TYPES: &[pgrx::pg_sys::Oid] = $types;
            // SAFETY: PostgreSQL calls this with the fcinfo of the call.
            let $call = unsafe { $crate::pg::fcinfo::Call::new(fcinfo, TYPES) };
            let out: Option<$crate::pg::value::Value> = (|| $body)();
            $call.finish(out)
        }
    };
}

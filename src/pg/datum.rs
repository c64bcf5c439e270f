//! Datums in and out: building text, bytea and jsonb values, calling built-in fmgr functions,
//! and reading varlena and jsonb datums without copies. Every function here is `unsafe`
//! because a `Datum` carries no type: each one's safety note says what the caller vouches for.

use pgrx::pg_sys;
use std::ffi::CStr;

/// A text datum (palloc'd in the current context) holding `b`.
///
/// # Safety
/// Inside a transaction with a current memory context (any backend code path); `b` must be
/// valid UTF-8 in the database encoding when the datum is used as text.
#[inline]
pub unsafe fn text(b: &[u8]) -> pg_sys::Datum {
    pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(b.as_ptr() as *const _, b.len() as i32))
}

/// A jsonb datum parsed from `s` (raises the input function's error on bad JSON).
///
/// # Safety
/// As [`text`].
pub unsafe fn jsonb(s: &CStr) -> pg_sys::Datum {
    call(pg_sys::jsonb_in, &[pg_sys::Datum::from(s.as_ptr())]).expect("jsonb_in returned NULL")
}

/// `a || b` of two jsonb datums.
///
/// # Safety
/// `a` and `b` must be jsonb datums.
pub unsafe fn concat(a: pg_sys::Datum, b: pg_sys::Datum) -> pg_sys::Datum {
    call(pg_sys::jsonb_concat, &[a, b]).expect("jsonb_concat returned NULL")
}

/// Calls a built-in fmgr function directly.
///
/// # Safety
/// `args` must be the number and types of datums `f` takes (no NULLs).
pub unsafe fn call(
    f: unsafe fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum,
    args: &[pg_sys::Datum],
) -> Option<pg_sys::Datum> {
    let args: Vec<_> = args.iter().map(|d| Some(*d)).collect();
    pgrx::direct_function_call_as_datum(f, &args)
}

/// Calls `f` with PostgreSQL's own jsonb text of `d` (`jsonb_out`: keys ordered by length then
/// bytes, ", " and ": " separators, numerics as stored), independent of every setting.
///
/// The text is written into one buffer kept for the backend and reused by every call (a fresh
/// buffer per jsonb was most of verify's allocation churn). It is taken out of its slot while
/// `f` runs, so a nested call (or an error unwinding out of `f`) never sees it half-used: the
/// nested call makes a buffer of its own, and the guard puts one back either way.
///
/// # Safety
/// `d` must be a jsonb datum.
pub unsafe fn with_jsonb_text<R>(d: pg_sys::Datum, f: impl FnOnce(&CStr) -> R) -> R {
    thread_local! {
        static OUT: std::cell::Cell<*mut pg_sys::StringInfoData> = const { std::cell::Cell::new(std::ptr::null_mut()) };
    }
    struct Slot(*mut pg_sys::StringInfoData);
    impl Drop for Slot {
        fn drop(&mut self) {
            // SAFETY: both buffers were made in TopMemoryContext by this function; the one
            // not kept is freed.
            unsafe {
                let other = OUT.replace(self.0);
                if !other.is_null() {
                    free(other);
                }
            }
        }
    }
    /// # Safety
    /// `b` is a StringInfo made by this function (makeStringInfo in TopMemoryContext).
    unsafe fn free(b: *mut pg_sys::StringInfoData) {
        pg_sys::pfree((*b).data.cast());
        pg_sys::pfree(b.cast());
    }
    let jb = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::Jsonb;
    let size = pgrx::varlena::varsize_any(jb as *const pg_sys::varlena) as i32;
    let mut out = OUT.replace(std::ptr::null_mut());
    if !out.is_null() && (*out).maxlen > 8 * 1024 * 1024 {
        // (a buffer grown past 8 MB by one huge document is not kept)
        free(out);
        out = std::ptr::null_mut();
    }
    if out.is_null() {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        out = pg_sys::makeStringInfo();
        pg_sys::MemoryContextSwitchTo(old);
    }
    let slot = Slot(out);
    pg_sys::resetStringInfo(out);
    let cstr = pg_sys::JsonbToCString(out, &mut (*jb).root, size);
    let r = f(CStr::from_ptr(cstr));
    drop(slot);
    r
}

/// True when a jsonb datum's top level is an object.
///
/// # Safety
/// `d` must be a jsonb datum.
#[inline]
pub unsafe fn jsonb_is_object(d: pg_sys::Datum) -> bool {
    const JB_FSCALAR: u32 = 0x1000_0000;
    const JB_FOBJECT: u32 = 0x2000_0000;
    let jb = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::Jsonb;
    let header = (*jb).root.header;
    header & JB_FOBJECT != 0 && header & JB_FSCALAR == 0
}

/// Whether a jsonb datum nests arrays and objects deeper than `limit` levels. Reads only the
/// containers' headers and entries of the binary format (no text, no allocation), so it
/// costs a few nanoseconds per container.
///
/// # Safety
/// `d` must be a jsonb datum.
pub unsafe fn jsonb_deeper_than(d: pg_sys::Datum, limit: usize) -> bool {
    let jb = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::Jsonb;
    let root = std::ptr::addr_of!((*jb).root) as *const u8;
    const JB_FSCALAR: u32 = 0x1000_0000;
    let header = std::ptr::read_unaligned(root as *const u32);
    // a scalar is stored as a one-element array that is not a level of nesting
    let top = if header & JB_FSCALAR != 0 { 0 } else { 1 };
    container_deeper(root, top, limit)
}

/// `c` points at a JsonbContainer at nesting level `level` (PostgreSQL's jsonb.h layout: a
/// u32 header holding the count and kind, then one u32 JEntry per array element or per key
/// and value, then the children's data, containers aligned to 4 bytes).
unsafe fn container_deeper(c: *const u8, level: usize, limit: usize) -> bool {
    const JB_CMASK: u32 = 0x0FFF_FFFF;
    const JB_FOBJECT: u32 = 0x2000_0000;
    const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
    const JENTRY_TYPEMASK: u32 = 0x7000_0000;
    const JENTRY_HAS_OFF: u32 = 0x8000_0000;
    const JENTRY_ISCONTAINER: u32 = 0x5000_0000;
    if level > limit {
        return true;
    }
    let header = std::ptr::read_unaligned(c as *const u32);
    let count = (header & JB_CMASK) as usize;
    let n = if header & JB_FOBJECT != 0 { 2 * count } else { count };
    let entry = |i: usize| std::ptr::read_unaligned(c.add(4 + 4 * i) as *const u32);
    let data = c.add(4 + 4 * n);
    // offsets: the sum of the lengths before i, or an entry's stored end offset
    let mut offset = 0usize;
    for i in 0..n {
        let e = entry(i);
        let end = if e & JENTRY_HAS_OFF != 0 {
            (e & JENTRY_OFFLENMASK) as usize
        } else {
            offset + (e & JENTRY_OFFLENMASK) as usize
        };
        if e & JENTRY_TYPEMASK == JENTRY_ISCONTAINER {
            let aligned = (offset + 3) & !3;
            if container_deeper(data.add(aligned), level + 1, limit) {
                return true;
            }
        }
        offset = end;
    }
    false
}

/// `s` as an SQL literal, quoted as `format('%L')` and `quote_literal()` quote it (`'it''s'`,
/// `E'a\\b'` when it holds a backslash): for messages that name a value the caller gave.
pub fn quote_literal(s: &str) -> String {
    // (text cannot hold NUL: a NUL would only come from Rust, so cut there)
    let c = std::ffi::CString::new(s.split('\0').next().unwrap_or_default()).unwrap_or_default();
    // SAFETY: quote_literal_cstr reads a NUL-terminated string and returns a palloc'd one,
    // which is copied before the memory context can go.
    unsafe { CStr::from_ptr(pg_sys::quote_literal_cstr(c.as_ptr())).to_string_lossy().into_owned() }
}

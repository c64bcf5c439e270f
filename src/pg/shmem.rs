//! Shared memory and latches for the side channel (src/side_channel/): one zeroed region of a
//! plain `#[repr(C)]` type, requested in `shmem_request_hook` (PostgreSQL 15) and guarded by
//! one named LWLock, and the latches that wake the processes waiting on it.
//!
//! The region is written in place, never moved through the stack (pgrx's `PgLwLock` passes
//! its value by value, and the queue is a megabyte). Zeroed memory must be a valid, empty
//! value of the type: the side channel's states are numbered so that 0 means free.

use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::CStr;
use std::marker::PhantomData;

/// Types whose all-zero bytes are a valid value: the integers, arrays of them, and
/// `#[repr(C)]` structs of those, declared with [`zeroed_struct!`](crate::zeroed_struct).
///
/// # Safety
/// All-zero bytes must be a valid value of the type.
pub unsafe trait Zeroed {}

// SAFETY: zero is a valid integer.
unsafe impl Zeroed for u8 {}
// SAFETY: as above.
unsafe impl Zeroed for u32 {}
// SAFETY: as above.
unsafe impl Zeroed for i32 {}
// SAFETY: as above.
unsafe impl Zeroed for u64 {}
// SAFETY: as above.
unsafe impl Zeroed for i64 {}
// SAFETY: as above.
unsafe impl Zeroed for usize {}
// SAFETY: an array of zero-valid elements is zero-valid.
unsafe impl<T: Zeroed, const N: usize> Zeroed for [T; N] {}

/// Declares a `#[repr(C)]` struct [`Zeroed`], checking that each field type named is:
/// `zeroed_struct!(Slot: u32, u64, [u8; 8])` lists the types of all of Slot's fields.
#[macro_export]
macro_rules! zeroed_struct {
    ($t:ty: $($f:ty),* $(,)?) => {
        // SAFETY: a repr(C) struct whose fields are all Zeroed (checked below) is zero-valid.
        unsafe impl $crate::pg::shmem::Zeroed for $t {}
        const _: fn() = || {
            fn zeroed<T: $crate::pg::shmem::Zeroed>() {}
            $(zeroed::<$f>();)*
        };
    };
}

/// A region of shared memory holding one `T`, with its lock.
pub struct Region<T: 'static> {
    name: &'static CStr,
    ptr: Cell<*mut T>,
    lock: Cell<*mut pg_sys::LWLock>,
    _t: PhantomData<T>,
}

// SAFETY: a backend is single-threaded; the pointers are set once in shmem_startup_hook.
unsafe impl<T> Sync for Region<T> {}

thread_local! {
    static PREV_REQUEST: Cell<pg_sys::shmem_request_hook_type> = const { Cell::new(None) };
    static PREV_STARTUP: Cell<pg_sys::shmem_startup_hook_type> = const { Cell::new(None) };
    static INIT: Cell<Option<fn()>> = const { Cell::new(None) };
    static REQUEST: Cell<Option<fn()>> = const { Cell::new(None) };
}

impl<T: Zeroed> Region<T> {
    /// A region, created zeroed in shared memory by [`install`]'s hooks.
    pub const fn new(name: &'static CStr) -> Region<T> {
        Region { name, ptr: Cell::new(std::ptr::null_mut()), lock: Cell::new(std::ptr::null_mut()), _t: PhantomData }
    }

    /// Whether the region exists in this process (the library was preloaded).
    pub fn ready(&self) -> bool {
        !self.ptr.get().is_null()
    }

    /// For [`install`]'s `request`: asks for the region's memory and lock.
    pub fn request(&self) {
        // SAFETY: called from shmem_request_hook only (see `install`).
        unsafe {
            pg_sys::RequestAddinShmemSpace(std::mem::size_of::<T>());
            pg_sys::RequestNamedLWLockTranche(self.name.as_ptr(), 1);
        }
    }

    /// For [`install`]'s `init`: creates (zeroed) or finds the region.
    pub fn attach(&self) {
        // SAFETY: called from shmem_startup_hook only, under AddinShmemInitLock as
        // PostgreSQL's own add-ins do; a new region is zeroed before anyone sees it.
        unsafe {
            let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock; // AddinShmemInitLock
            pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
            let mut found = false;
            let p = pg_sys::ShmemInitStruct(self.name.as_ptr(), std::mem::size_of::<T>(), &mut found).cast::<T>();
            if !found {
                std::ptr::write_bytes(p.cast::<u8>(), 0, std::mem::size_of::<T>());
            }
            self.ptr.set(p);
            self.lock.set(&raw mut (*pg_sys::GetNamedLWLockTranche(self.name.as_ptr())).lock);
            pg_sys::LWLockRelease(init_lock);
        }
    }

    /// The value under the exclusive lock, for as long as the guard lives. Nothing that can
    /// raise an error may run while it is held (an error would leave the lock to abort).
    pub fn lock(&self) -> Guard<'_, T> {
        assert!(self.ready(), "audit_ext: shared memory was not set up (shared_preload_libraries)");
        // SAFETY: the lock belongs to the region (set in attach).
        unsafe { pg_sys::LWLockAcquire(self.lock.get(), pg_sys::LWLockMode::LW_EXCLUSIVE) };
        Guard { region: self }
    }
}

/// Exclusive access to a region's value.
pub struct Guard<'a, T: 'static> {
    region: &'a Region<T>,
}

impl<T> std::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the life of the guard.
        unsafe { &*self.region.ptr.get() }
    }
}

impl<T> std::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the lock is held exclusively for the life of the guard.
        unsafe { &mut *self.region.ptr.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: acquired in `lock`.
        unsafe { pg_sys::LWLockRelease(self.region.lock.get()) };
    }
}

/// Installs the shared-memory hooks for one region (only while shared_preload_libraries
/// loads; false otherwise): `install(|| R.request(), || R.attach())` for a static region R.
pub fn install(request: fn(), init: fn()) -> bool {
    if !super::backend::loading_preloaded() {
        return false;
    }
    REQUEST.set(Some(request));
    INIT.set(Some(init));
    // SAFETY: hooks are plain globals, set once while the library is preloaded.
    unsafe {
        PREV_REQUEST.set(pg_sys::shmem_request_hook);
        pg_sys::shmem_request_hook = Some(on_request);
        PREV_STARTUP.set(pg_sys::shmem_startup_hook);
        pg_sys::shmem_startup_hook = Some(on_startup);
    }
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_request() {
    if let Some(prev) = PREV_REQUEST.get() {
        // SAFETY: the hook installed before ours.
        unsafe { prev() };
    }
    if let Some(f) = REQUEST.get() {
        f();
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    if let Some(prev) = PREV_STARTUP.get() {
        // SAFETY: the hook installed before ours.
        unsafe { prev() };
    }
    if let Some(f) = INIT.get() {
        f();
    }
}

/// This process's latch, as an address other processes can set (it lives in shared memory:
/// backends' and workers' latches are their PGPROC's).
pub fn my_latch() -> usize {
    // SAFETY: a process global, set before any extension code runs.
    unsafe { pg_sys::MyLatch as usize }
}

/// Sets the latch at `latch` (an address from [`my_latch`] of a live process); 0 is ignored.
pub fn set_latch(latch: usize) {
    if latch != 0 {
        // SAFETY: latches are in shared memory, mapped at the same address in every process;
        // setting the latch of a process that exited is harmless (PGPROC entries are reused,
        // a spurious wakeup is allowed).
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// Waits on this process's latch for at most `ms` milliseconds, then resets it; exits if the
/// postmaster dies. Interrupts are not processed here (the caller decides when).
pub fn wait_latch(ms: i64) {
    // SAFETY: MyLatch is this process's own latch.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
}

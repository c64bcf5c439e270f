//! [`Scratch`]: a memory context for temporary allocations that a loop resets now and then
//! (verify's detoasted values and jsonb text), so that memory stays flat over any number of rows.

use pgrx::PgMemoryContexts;

pub struct Scratch(PgMemoryContexts);

impl Scratch {
    /// A context that lives until it is dropped (or the transaction ends). A child of the
    /// current transaction's context, not of the current one: made inside an SPI connection,
    /// it would otherwise be deleted by that connection's SPI_finish, and deleted again when
    /// dropped (verify crashed so while its cursor moved into a connection of its own).
    pub fn new(name: &str) -> Scratch {
        // SAFETY: only switches to CurTransactionContext to create the child there, and back.
        Scratch(unsafe { PgMemoryContexts::CurTransactionContext.switch_to(|_| PgMemoryContexts::new(name)) })
    }

    /// Runs `f` with this context current: what PostgreSQL allocates meanwhile lives here
    /// until the next [`Scratch::reset`]. Values made inside ([`super::value::Value`]) must
    /// not be kept past that reset; plain Rust values (copies) may.
    pub fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // SAFETY: switches the current memory context for the duration of `f` and back, also
        // on an error (pgrx's guard).
        unsafe { self.0.switch_to(|_| f()) }
    }

    /// Frees everything allocated in the context.
    pub fn reset(&mut self) {
        // SAFETY: the context is not current (run switched back); what lived in it is dropped
        // with it, which is the point (see `run` for what callers keep).
        unsafe { self.0.reset() }
    }
}

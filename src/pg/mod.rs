//! The raw PostgreSQL layer: everything that works with `pg_sys` pointers, datums, SPI, locks
//! and the security context directly, each function with a safety note. Feature modules are
//! safe Rust over these.
//!
//! - [`value`]: a datum that knows its type, read and built safely;
//! - [`tuple`]: a heap tuple deformed into values, by column;
//! - [`row`]: a composite value (a row of `audit.events` passed to a function);
//! - [`spi`]: an SPI connection that always finishes, kept plans checked against their
//!   parameter types, cursors, result cells;
//! - [`fcinfo`]: hand-written fmgr functions ([`c_function!`](crate::c_function)), their arguments;
//! - [`trigger`]: what a trigger call is, and the row images of its transition tables;
//! - [`callbacks`]: relcache and (sub)transaction callbacks for safe functions;
//! - [`utility`]: the utility hook and the role statements it reads;
//! - [`executor`]: the executor hooks that tell which top statements read the log;
//! - [`backend`]: facts of the backend, session and transaction; catalog lookups;
//! - [`datum`]: the unsafe datum helpers the above are built on;
//! - [`memory`]: a scratch memory context that loops reset;
//! - [`locks`]: audit_ext's own lock tags (chains, maintenance, alerts), the one owner of their keys;
//! - [`elevate`]: running audit_ext's own statements as the extension's owner, safely;
//! - [`shmem`], [`session`]: shared memory and latches; the session hooks of the side channel;
//! - [`os`]: the operating system calls the standard library lacks (a socket's unacknowledged bytes).

pub mod backend;
pub mod callbacks;
pub mod datum;
pub mod elevate;
pub mod executor;
pub mod fcinfo;
pub mod locks;
pub mod memory;
pub mod os;
pub mod row;
pub mod session;
pub mod shmem;
pub mod spi;
pub mod trigger;
pub mod tuple;
pub mod utility;
pub mod value;

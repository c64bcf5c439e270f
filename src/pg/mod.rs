//! The raw PostgreSQL layer: everything that works with `pg_sys` pointers, datums, SPI, locks
//! and the security context directly, each function with a safety note. Feature modules use
//! these instead of calling `pg_sys` for the same things themselves.
//!
//! - [`spi`]: an SPI connection that always finishes, kept plans, result cells;
//! - [`datum`]: building and reading text, bytea and jsonb datums, calling fmgr functions;
//! - [`locks`]: audit_ext's own lock tags (chains, maintenance, alerts), the one owner of their keys;
//! - [`row`]: a composite `audit.events` value, read by column;
//! - [`elevate`]: running audit_ext's own statements as the extension's owner, safely.

pub mod datum;
pub mod elevate;
pub mod locks;
pub mod row;
pub mod spi;

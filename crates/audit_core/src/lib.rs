//! The parts of audit_ext with no PostgreSQL in them: the canonical event encoding and its
//! SHA-256 (`hash`), and the search language (`query`: parser, translation to SQL, in-memory
//! matching). Kept out of the pgrx crate so that nothing here can reach a server, and so that
//! their tests run with a plain `cargo test -p audit_core` in seconds, no cluster needed.

pub mod export;
pub mod forward;
pub mod hash;
pub mod query;

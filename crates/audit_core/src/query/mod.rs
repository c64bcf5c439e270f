//! Search language over audit events (`audit.events`, aliased `e`).
//!
//! ```text
//! query   := or                        keywords AND OR NOT are case-insensitive
//! or      := and ("OR" and)*           AND binds tighter than OR,
//! and     := unary (["AND"] unary)*    adjacent terms are ANDed,
//! unary   := "NOT"* primary            NOT binds tightest
//! primary := "(" or ")" | term         at most 64 levels of parentheses
//! term    := field ":" [op] value | word | "quoted"      (at most 200 terms)
//! field   := action | status | severity | actor | actor_ip | module | object_type | object_id
//!          | object_name | application | session_id | message | at | id | chain | seq
//!          | event_type (=action) | timestamp (=at) | user, actor.email (=actor) | ip (=actor_ip)
//!          | (metadata | old | new) ("." key)+          key: bare, or "quoted" (may hold dots)
//! op      := ">" | ">=" | "<" | "<="    only on at, id, chain, seq and json paths (numbers)
//! value   := bare (up to whitespace or ")") | "quoted" (escapes \" \\ \*)
//! ```
//! `*` is a wildcard (any run of characters) except `\*` inside quotes. Text fields compare
//! case-sensitively (`=` / `LIKE`); bare words and quoted strings without a field are
//! case-insensitive substring searches over action, actor, object_type, object_id, object_name,
//! message, module and application. `status:failed` means `status:failure`.
//! Times (`at`): `now`, `now-24h`, `now+1d` (units s m h d w; d and w are sent as 24/168 hours
//! so DST never matters) need an operator; `2024-01-01` alone means that whole UTC day and, with
//! an operator, is compared at day granularity (`>D` = from the next day, `<=D` = up to the
//! end of D); `2024-01-01T10:00[:00[.ffffff]]` with optional `Z`/`±hh:mm` (default UTC).
//! `actor_ip`: address (equality), CIDR (`<<=`), or `10.1.*` (= 10.1.0.0/16).
//! Json paths: equality is jsonb containment (string, or the JSON number/true/false/null it
//! spells, or an array holding one; the path walks objects only); a wildcard is `LIKE` on `#>>`
//! (integer keys index arrays, `-1` = last) and matches scalar values only (string, number,
//! bool; never arrays or objects); comparisons take plain decimal numbers and are lax-mode
//! jsonpath filters, so arrays along the path or at its end match if any element does.
//! Bare values keep `\` literally. Limits: 100,000 bytes, 64 nesting levels, 200 terms, 32 keys
//! per path; NUL characters are rejected (PostgreSQL text cannot hold them).
//!
//! Design: `parse` builds a small AST with a lazy, non-recursive lexer and a depth-limited
//! recursive-descent parser; it never panics. `translate` emits SQL from fixed fragments only:
//! every user value (and JSON key) becomes an element of the single `text[]` parameter `$1`
//! (`$1[i]` plus a cast). Every leaf under a NOT is wrapped in `coalesce(leaf, false)`, so SQL
//! logic is two-valued like `Query::matches` (elsewhere NULL and false select the same rows,
//! and a bare leaf can use an index), which evaluates the same AST in memory (a NULL/missing
//! field never equals anything, `NOT` of it is true). Free text folds ASCII letters only, as
//! PostgreSQL's `ILIKE` does on the `COLLATE "C"` text columns of audit.events.
//!
//! Layout: `lexer` (tokens), `fields` (field names), `values` (times, addresses, numbers),
//! `parser` (the syntax tree), `sql` (`translate`), `matching` (`Query::matches`).

mod fields;
mod lexer;
mod matching;
mod parser;
mod sql;
mod values;

#[cfg(test)]
mod tests;

pub use parser::parse;
pub use sql::translate;

use serde_json::Value;
use std::net::IpAddr;

const MAX_LEN: usize = 100_000;
const MAX_DEPTH: usize = 64;
const MAX_TERMS: usize = 200;
const MAX_KEYS: usize = 32;
const DAY: i64 = 86_400_000_000;

#[derive(thiserror::Error, Debug, Clone, PartialEq)]
#[error("syntax error at position {position}: {message}")]
pub struct QueryError {
    /// 1-based character position in the input.
    pub position: usize,
    pub message: String,
}

fn qerr(idx: usize, msg: impl Into<String>) -> QueryError {
    QueryError { position: idx + 1, message: msg.into() }
}

/// SQL boolean expression over `e`; `params` are the elements of the `text[]` parameter `$1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub sql: String,
    pub params: Vec<String>,
}

/// One event as seen by [`Query::matches`].
pub trait EventView {
    /// Text columns (and `ActorIp` as PostgreSQL prints an inet); `None` = SQL NULL.
    fn text(&self, field: Field) -> Option<&str>;
    /// Event time, microseconds since 1970-01-01 UTC.
    fn at_micros(&self) -> i64;
    /// "now" for relative times.
    fn now_micros(&self) -> i64;
    /// `Id`, `Chain`, `Seq`.
    fn int(&self, field: Field) -> Option<i64>;
    fn json(&self, doc: Doc) -> Option<&Value>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Doc {
    Metadata,
    Old,
    New,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Action,
    Status,
    Severity,
    Actor,
    ActorIp,
    Module,
    ObjectType,
    ObjectId,
    ObjectName,
    Application,
    SessionId,
    Message,
    At,
    Id,
    Chain,
    Seq,
}

// The syntax tree: `parser` builds it, `sql` and `matching` walk it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

/// Literal segments separated by `*` wildcards (one segment = no wildcard).
#[derive(Debug, Clone, PartialEq)]
struct Pat(Vec<String>);

impl Pat {
    fn wild(&self) -> bool {
        self.0.len() > 1
    }
    fn text(&self) -> String {
        self.0.concat()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Text(Field, Pat),
    /// Free text: pattern with leading/trailing wildcard, and its lower-cased copy.
    Free(Pat, Pat),
    Int(Field, Cmp, i64),
    /// `at <op> now() ± interval`: signed seconds, interval text (empty for plain `now`).
    Rel(Cmp, i64, String),
    Abs(Cmp, i64),
    /// Whole day starting at these micros.
    Day(i64),
    /// Address, prefix length, exact equality (else containment).
    Ip(IpAddr, u8, bool),
    JsonEq(Doc, Vec<String>, Vec<Value>),
    JsonLike(Doc, Vec<String>, Pat),
    JsonCmp(Doc, Vec<String>, Cmp, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Leaf(Term),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    root: Node,
}

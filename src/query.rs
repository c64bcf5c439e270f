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

use serde_json::{Map, Value};
use std::cmp::Ordering;
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

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for QueryError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        pgrx::PgSqlErrorCode::ERRCODE_SYNTAX_ERROR
    }
    fn hint(&self) -> Option<String> {
        Some(
            "See docs/query-language.md, e.g. 'action:authentication.login AND status:failure AND at:>now-24h'.".into(),
        )
    }
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

/// Field names and aliases; the first 16 are the column names, in `Field` order.
const FIELDS: [(&str, Field); 21] = [
    ("action", Field::Action),
    ("status", Field::Status),
    ("severity", Field::Severity),
    ("actor", Field::Actor),
    ("actor_ip", Field::ActorIp),
    ("module", Field::Module),
    ("object_type", Field::ObjectType),
    ("object_id", Field::ObjectId),
    ("object_name", Field::ObjectName),
    ("application", Field::Application),
    ("session_id", Field::SessionId),
    ("message", Field::Message),
    ("at", Field::At),
    ("id", Field::Id),
    ("chain", Field::Chain),
    ("seq", Field::Seq),
    ("event_type", Field::Action),
    ("timestamp", Field::At),
    ("user", Field::Actor),
    ("actor.email", Field::Actor),
    ("ip", Field::ActorIp),
];

const FREE_TEXT: [Field; 8] = [
    Field::Action,
    Field::Actor,
    Field::ObjectType,
    Field::ObjectId,
    Field::ObjectName,
    Field::Message,
    Field::Module,
    Field::Application,
];

impl Field {
    /// Column name (fixed whitelist; the user's spelling never reaches SQL).
    fn col(self) -> &'static str {
        FIELDS[self as usize].0
    }
}

impl Doc {
    fn col(self) -> &'static str {
        match self {
            Doc::Metadata => "metadata",
            Doc::Old => "old",
            Doc::New => "new",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Cmp {
    fn sql(self) -> &'static str {
        ["=", ">", ">=", "<", "<="][self as usize]
    }
    fn test(self, o: Ordering) -> bool {
        match self {
            Cmp::Eq => o.is_eq(),
            Cmp::Gt => o.is_gt(),
            Cmp::Ge => o.is_ge(),
            Cmp::Lt => o.is_lt(),
            Cmp::Le => o.is_le(),
        }
    }
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
    /// LIKE pattern: `%` for wildcards, `%`, `_` and `\` escaped with `\`.
    fn like(&self) -> String {
        let esc = |s: &String| {
            s.chars().fold(String::new(), |mut o, c| {
                if matches!(c, '%' | '_' | '\\') {
                    o.push('\\');
                }
                o.push(c);
                o
            })
        };
        self.0.iter().map(esc).collect::<Vec<_>>().join("%")
    }
    fn is_match(&self, s: &str) -> bool {
        let (Some(first), Some(last)) = (self.0.first(), self.0.last()) else {
            return false;
        };
        if !self.wild() {
            return s == first;
        }
        if s.len() < first.len() + last.len() || !s.starts_with(first.as_str()) || !s.ends_with(last.as_str()) {
            return false;
        }
        let mut rest = &s[first.len()..s.len() - last.len()];
        for mid in &self.0[1..self.0.len() - 1] {
            match rest.find(mid.as_str()) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        true
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

// ---------------------------------------------------------------- lexer

#[derive(Debug)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Term(Box<Term>),
    /// `field:(a OR b ...)`: one field, several values.
    Group(Box<Node>, usize),
    End,
}

impl Tok {
    fn name(&self) -> &'static str {
        match self {
            Tok::LParen => "\"(\"",
            Tok::RParen => "\")\"",
            Tok::And => "\"AND\"",
            Tok::Or => "\"OR\"",
            Tok::Not => "\"NOT\"",
            Tok::Term(_) | Tok::Group(..) => "a term",
            Tok::End => "end of query",
        }
    }
}

#[derive(Clone)]
enum Target {
    Col(Field),
    Json(Doc, Vec<String>),
}

struct Lexer {
    s: Vec<char>,
    i: usize,
}

fn free(p: Pat) -> Tok {
    let mut segs = vec![String::new()];
    segs.extend(p.0);
    segs.push(String::new());
    let lower = Pat(segs.iter().map(|s| s.to_ascii_lowercase()).collect());
    Tok::Term(Box::new(Term::Free(Pat(segs), lower)))
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }
    fn boundary(&self) -> bool {
        !matches!(self.peek(), Some(c) if !c.is_whitespace() && c != '(' && c != ')')
    }
    fn after_quote(&self) -> Result<(), QueryError> {
        if self.boundary() {
            return Ok(());
        }
        Err(qerr(self.i, "expected a space or \")\" after the closing quote"))
    }

    /// Double-quoted string at `self.i`; `\"`, `\\`, `\*` are escapes, `*` a wildcard if `wild`.
    fn quoted(&mut self, wild: bool) -> Result<Pat, QueryError> {
        let start = self.i;
        self.i += 1;
        let (mut segs, mut cur) = (Vec::new(), String::new());
        loop {
            match self.peek() {
                None => return Err(qerr(start, "unterminated quoted string")),
                Some('"') => break,
                Some('\\') if matches!(self.s.get(self.i + 1), Some('"' | '\\' | '*')) => {
                    self.i += 1;
                    cur.extend(self.peek());
                }
                Some('*') if wild => segs.push(std::mem::take(&mut cur)),
                Some(c) => cur.push(c),
            }
            self.i += 1;
        }
        self.i += 1;
        segs.push(cur);
        Ok(Pat(segs))
    }

    fn next(&mut self) -> Result<(Tok, usize), QueryError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
        let start = self.i;
        let tok = match self.peek() {
            None => Tok::End,
            Some('(') => Tok::LParen,
            Some(')') => Tok::RParen,
            Some('"') => {
                let p = self.quoted(true)?;
                self.after_quote()?;
                return Ok((free(p), start));
            }
            Some(_) => return Ok((self.word(start)?, start)),
        };
        self.i += usize::from(!matches!(tok, Tok::End));
        Ok((tok, start))
    }

    /// A bare word, an operator keyword, or `field:value`.
    fn word(&mut self, start: usize) -> Result<Tok, QueryError> {
        let (mut segs, mut cur, mut quoted) = (Vec::new(), String::new(), false);
        let colon = loop {
            match self.peek() {
                Some(':') => break true,
                Some('.') => {
                    segs.push((std::mem::take(&mut cur), quoted));
                    self.i += 1;
                    quoted = self.peek() == Some('"');
                    if quoted {
                        cur = self.quoted(false)?.text();
                        if !matches!(self.peek(), Some('.' | ':')) {
                            return Err(qerr(self.i, "expected \".\" or \":\" after a quoted key"));
                        }
                    }
                    continue;
                }
                Some(c) if !c.is_whitespace() && c != '(' && c != ')' => cur.push(c),
                _ => break false,
            }
            self.i += 1;
        };
        segs.push((cur, quoted));
        let name: String = self.s[start..self.i].iter().collect();
        if !colon {
            if segs.iter().any(|s| s.1) {
                return Err(qerr(self.i, format!("expected \":\" after \"{name}\"")));
            }
            return Ok(match name.to_ascii_uppercase().as_str() {
                "AND" => Tok::And,
                "OR" => Tok::Or,
                "NOT" => Tok::Not,
                _ => free(Pat(name.split('*').map(String::from).collect())),
            });
        }
        self.i += 1;
        let target = resolve(&name, segs, start)?;
        let vpos = self.i;
        let op = [(">=", Cmp::Ge), ("<=", Cmp::Le), (">", Cmp::Gt), ("<", Cmp::Lt)]
            .into_iter()
            .find(|(o, _)| o.chars().enumerate().all(|(k, c)| self.s.get(vpos + k) == Some(&c)));
        self.i += op.map_or(0, |(o, _)| o.len());
        if op.is_none() && self.peek() == Some('(') {
            return self.group(target, &name, vpos);
        }
        let pat = self.value(&name, op.map_or("", |(o, _)| o))?;
        build(target, op.map_or(Cmp::Eq, |(_, c)| c), pat, vpos, &name).map(|t| Tok::Term(Box::new(t)))
    }

    /// `field:(v1 OR v2 ...)` (or AND throughout), as Kibana and Lucene users write it: each
    /// value as after `field:`, quoted or bare. An unclosed or empty group is an error, never a
    /// value (a value that starts with "(" is written quoted).
    fn group(&mut self, target: Target, name: &str, open: usize) -> Result<Tok, QueryError> {
        self.i += 1;
        let (mut terms, mut joint): (Vec<Node>, Option<bool>) = (vec![], None);
        loop {
            while self.peek().is_some_and(char::is_whitespace) {
                self.i += 1;
            }
            let vpos = self.i;
            match self.peek() {
                None => return Err(qerr(open, format!("unterminated \"{name}:(\": expected \")\""))),
                Some(')') if terms.is_empty() => return Err(qerr(vpos, format!("empty group after \"{name}:\""))),
                Some(')') => {
                    self.i += 1;
                    break;
                }
                Some('(') => {
                    return Err(qerr(vpos, "groups of values cannot nest; quote a value that starts with \"(\""))
                }
                _ => {}
            }
            if !terms.is_empty() {
                let word: String = self.s[self.i..].iter().take_while(|c| c.is_ascii_alphabetic()).collect();
                let and = match word.to_ascii_uppercase().as_str() {
                    "OR" => false,
                    "AND" => true,
                    _ => {
                        return Err(qerr(
                            vpos,
                            format!("expected OR, AND or \")\" between the values of \"{name}:(...)\""),
                        ))
                    }
                };
                if joint.is_some_and(|j| j != and) {
                    return Err(qerr(vpos, format!("use either OR or AND inside \"{name}:(...)\", not both")));
                }
                joint = Some(and);
                self.i += word.len();
                while self.peek().is_some_and(char::is_whitespace) {
                    self.i += 1;
                }
            }
            let vpos = self.i;
            if matches!(self.peek(), None | Some(')')) {
                return Err(qerr(vpos, format!("expected a value inside \"{name}:(...)\"")));
            }
            let pat = self.value(name, "")?;
            let t = build(target.clone(), Cmp::Eq, pat, vpos, name)?;
            terms.push(Node::Leaf(t));
        }
        let n = terms.len();
        let node = if n == 1 {
            terms.remove(0)
        } else if joint == Some(true) {
            Node::And(terms)
        } else {
            Node::Or(terms)
        };
        if !self.boundary() {
            return Err(qerr(self.i, "expected a space or \")\" after the group"));
        }
        Ok(Tok::Group(Box::new(node), n))
    }

    /// One value after `field:` (and its operator): quoted, or bare up to a space or ")".
    fn value(&mut self, name: &str, op: &str) -> Result<Pat, QueryError> {
        let pat = if self.peek() == Some('"') {
            let p = self.quoted(true)?;
            self.after_quote()?;
            p
        } else {
            let (mut segs, mut cur, from) = (Vec::new(), String::new(), self.i);
            while let Some(c) = self.peek().filter(|c| !c.is_whitespace() && *c != ')') {
                if c == '*' {
                    segs.push(std::mem::take(&mut cur));
                } else {
                    cur.push(c);
                }
                self.i += 1;
            }
            if self.i == from {
                return Err(qerr(self.i, format!("expected a value after \"{name}:{op}\"")));
            }
            segs.push(cur);
            Pat(segs)
        };
        Ok(pat)
    }
}

fn resolve(name: &str, segs: Vec<(String, bool)>, pos: usize) -> Result<Target, QueryError> {
    let lname = name.to_ascii_lowercase();
    if let Some((_, f)) = FIELDS.iter().find(|(n, _)| *n == lname) {
        return Ok(Target::Col(*f));
    }
    let mut it = segs.into_iter();
    let doc = match it.next().map(|s| s.0.to_ascii_lowercase()).as_deref() {
        Some("metadata") => Some(Doc::Metadata),
        Some("old") => Some(Doc::Old),
        Some("new") => Some(Doc::New),
        _ => None,
    };
    let keys: Vec<(String, bool)> = it.collect();
    match doc {
        Some(_) if keys.iter().any(|(k, q)| k.is_empty() && !q) => {
            Err(qerr(pos, format!("empty key in path \"{name}\" (quote keys that contain dots)")))
        }
        Some(_) if keys.len() > MAX_KEYS => Err(qerr(pos, format!("path deeper than {MAX_KEYS} keys"))),
        Some(d) if !keys.is_empty() => Ok(Target::Json(d, keys.into_iter().map(|k| k.0).collect())),
        _ => {
            let list: Vec<&str> = FIELDS[..16].iter().map(|f| f.0).collect();
            Err(qerr(
                pos,
                format!("unknown field \"{name}\" (fields: {}, metadata.KEY, old.KEY, new.KEY)", list.join(", ")),
            ))
        }
    }
}

fn build(target: Target, op: Cmp, pat: Pat, vpos: usize, name: &str) -> Result<Term, QueryError> {
    let text = (!pat.wild()).then(|| pat.text());
    let no_cmp = || qerr(vpos, format!("comparison needs a number or a time; \"{name}\" is compared as text"));
    Ok(match target {
        Target::Col(f @ (Field::Id | Field::Chain | Field::Seq)) => match text.and_then(|t| t.parse().ok()) {
            Some(n) => Term::Int(f, op, n),
            None => return Err(qerr(vpos, format!("expected an integer after \"{name}:\""))),
        },
        Target::Col(Field::At) => time(op, text, vpos)?,
        Target::Col(Field::ActorIp) if op != Cmp::Eq => return Err(no_cmp()),
        Target::Col(Field::ActorIp) => match ip_value(&pat) {
            Some((a, l, eq)) => Term::Ip(a, l, eq),
            None => return Err(qerr(vpos, "expected an IP address, a CIDR or a prefix like 10.1.*")),
        },
        Target::Col(_) if op != Cmp::Eq => return Err(no_cmp()),
        Target::Col(Field::Status) if text.as_deref() == Some("failed") => {
            Term::Text(Field::Status, Pat(vec!["failure".into()]))
        }
        Target::Col(f) => Term::Text(f, pat),
        Target::Json(d, keys) if op != Cmp::Eq => match text {
            Some(t) if is_decimal(&t) => Term::JsonCmp(d, keys, op, t),
            _ => return Err(qerr(vpos, "comparison needs a number or a time (paths: numbers like -1.5)")),
        },
        Target::Json(d, keys) if pat.wild() => Term::JsonLike(d, keys, pat),
        Target::Json(d, keys) => {
            let t = pat.text();
            let mut cands = vec![Value::String(t.clone())];
            if is_decimal(&t) || matches!(t.as_str(), "true" | "false" | "null") {
                cands.extend(serde_json::from_str::<Value>(&t).ok());
            }
            Term::JsonEq(d, keys, cands)
        }
    })
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`: valid as both a JSON number and a jsonpath literal.
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, "1"));
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    digits(int) && digits(frac) && (int == "0" || !int.starts_with('0'))
}

// ---------------------------------------------------------------- times and addresses

fn time(op: Cmp, text: Option<String>, vpos: usize) -> Result<Term, QueryError> {
    let t = text.ok_or_else(|| qerr(vpos, "wildcards are not allowed in times"))?;
    if let Some(rest) = t.get(..3).filter(|p| p.eq_ignore_ascii_case("now")).map(|_| &t[3..]) {
        let (secs, iv) =
            relative(rest).ok_or_else(|| qerr(vpos, "expected a relative time like now-24h (units s, m, h, d, w)"))?;
        if op == Cmp::Eq {
            return Err(qerr(vpos, "a relative time needs a comparison, e.g. at:>now-24h"));
        }
        return Ok(Term::Rel(op, secs, iv));
    }
    let (t, date) =
        absolute(&t).ok_or_else(|| qerr(vpos, "expected a time like now-24h, 2024-01-01 or 2024-01-01T10:00:00Z"))?;
    Ok(match (op, date) {
        (Cmp::Eq, true) => Term::Day(t),
        (Cmp::Gt, true) => Term::Abs(Cmp::Ge, t + DAY),
        (Cmp::Le, true) => Term::Abs(Cmp::Lt, t + DAY),
        _ => Term::Abs(op, t),
    })
}

/// `""` | `[+-]N[smhdw]` → (signed seconds, interval text).
fn relative(rest: &str) -> Option<(i64, String)> {
    if rest.is_empty() {
        return Some((0, String::new()));
    }
    let sign = match rest.as_bytes().first()? {
        b'-' => -1,
        b'+' => 1,
        _ => return None,
    };
    let body = &rest[1..];
    let unit = body.chars().last()?;
    let num = &body[..body.len() - unit.len_utf8()];
    if num.is_empty() || num.len() > 12 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = num.parse().ok()?;
    let (secs, factor, name) = match unit.to_ascii_lowercase() {
        's' => (1, 1, "seconds"),
        'm' => (60, 1, "minutes"),
        'h' => (3600, 1, "hours"),
        'd' => (86_400, 24, "hours"),
        'w' => (604_800, 168, "hours"),
        _ => return None,
    };
    (n * secs <= 100_000_000_000).then(|| (sign * n * secs, format!("{} {name}", n * factor)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, doy - (153 * mp + 2) / 5 + 1)
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,6}]][Z|±hh:mm]]` → (UTC micros, date only?).
fn absolute(s: &str) -> Option<(i64, bool)> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let x = b.get(from..to)?;
        x.iter().all(u8::is_ascii_digit).then(|| x.iter().fold(0, |a, d| a * 10 + i64::from(d - b'0')))
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let days = days_from_civil(y, mo, d);
    if y < 1 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || civil_from_days(days) != (y, mo, d) {
        return None;
    }
    if b.len() == 10 {
        return Some((days * DAY, true));
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.get(13) != Some(&b':') {
        return None;
    }
    let (h, mi) = (num(11, 13)?, num(14, 16)?);
    let (mut sec, mut us, mut p) = (0, 0, 16);
    if b.get(p) == Some(&b':') {
        sec = num(17, 19)?;
        p = 19;
        if b.get(p) == Some(&b'.') {
            let n = b[p + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 6 {
                return None;
            }
            us = num(p + 1, p + 1 + n)? * 10i64.pow(6 - n as u32);
            p += 1 + n;
        }
    }
    let off = match &b[p.min(b.len())..] {
        b"" | b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(p + 1, p + 3)?, num(p + 4, p + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            (oh * 60 + om) * if *sign == b'-' { -1 } else { 1 }
        }
        _ => return None,
    };
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let t = (days * 86_400 + h * 3600 + mi * 60 + sec - off * 60) * 1_000_000 + us;
    (t >= days_from_civil(1, 1, 1) * DAY).then_some((t, false))
}

/// Micros → `YYYY-MM-DD HH:MM:SS[.ffffff]+00`.
fn fmt_ts(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY));
    let (us, s) = (t.rem_euclid(DAY), t.rem_euclid(DAY) / 1_000_000);
    let mut o = format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if us % 1_000_000 != 0 {
        o += &format!(".{:06}", us % 1_000_000);
    }
    o + "+00"
}

/// inet text (`addr` or `addr/len`) → (address, prefix length).
fn inet(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
    let a: IpAddr = a.parse().ok()?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    match l {
        None => Some((a, max)),
        Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => {
            l.parse().ok().filter(|l| *l <= max).map(|l| (a, l))
        }
        _ => None,
    }
}

/// Query value: address (equality), CIDR, or IPv4 prefix with trailing `*` octets.
fn ip_value(p: &Pat) -> Option<(IpAddr, u8, bool)> {
    if !p.wild() {
        let t = p.text();
        return inet(&t).map(|(a, l)| (a, l, !t.contains('/')));
    }
    let (first, rest) = p.0.split_first()?;
    let octet = |o: &str| {
        let ok =
            !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()) && (o == "0" || !o.starts_with('0'));
        ok.then(|| o.parse::<u8>().ok()).flatten()
    };
    let octs: Vec<u8> = first.strip_suffix('.')?.split('.').map(octet).collect::<Option<_>>()?;
    let (last, mid) = rest.split_last()?;
    if !last.is_empty() || mid.iter().any(|s| s != ".") || octs.len() + rest.len() > 4 {
        return None;
    }
    let mut a = [0u8; 4];
    a[..octs.len()].copy_from_slice(&octs);
    Some((IpAddr::from(a), 8 * octs.len() as u8, false))
}

fn ip_bits(a: IpAddr) -> (u128, u8) {
    match a {
        IpAddr::V4(x) => (u128::from(u32::from(x)), 32),
        IpAddr::V6(x) => (u128::from(x), 128),
    }
}

// ---------------------------------------------------------------- json helpers

fn nest(keys: &[String], leaf: Value) -> String {
    let v = keys.iter().rev().fold(leaf, |v, k| Value::Object(Map::from_iter([(k.clone(), v)])));
    v.to_string()
}

/// PostgreSQL text[] literal `{"a","b"}`.
fn pg_array(keys: &[String]) -> String {
    let el = |k: &String| format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\""));
    format!("{{{}}}", keys.iter().map(el).collect::<Vec<_>>().join(","))
}

/// Exact decimal comparison of JSON number texts (as PostgreSQL's numeric does).
fn num_cmp(a: &str, b: &str) -> Ordering {
    fn dec(s: &str) -> (i8, i64, Vec<u8>) {
        let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
        let (m, e) = s.split_once(['e', 'E']).unwrap_or((s, "0"));
        let inf = if e.starts_with('-') { -(1 << 40) } else { 1 << 40 };
        let e = e.parse::<i64>().unwrap_or(inf).clamp(-(1 << 40), 1 << 40);
        let (int, frac) = m.split_once('.').unwrap_or((m, ""));
        let mut d: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
        let lead = d.iter().take_while(|c| **c == b'0').count();
        d.drain(..lead);
        while d.last() == Some(&b'0') {
            d.pop();
        }
        let point = int.len() as i64 + e - lead as i64;
        if d.is_empty() {
            (0, 0, d)
        } else {
            (if neg { -1 } else { 1 }, point, d)
        }
    }
    let ((sa, pa, da), (sb, pb, db)) = (dec(a), dec(b));
    sa.cmp(&sb).then_with(|| {
        let m = pa.cmp(&pb).then_with(|| da.cmp(&db));
        if sa < 0 {
            m.reverse()
        } else {
            m
        }
    })
}

fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(&x.to_string(), &y.to_string()).is_eq(),
        _ => a == b,
    }
}

/// PostgreSQL `#>` step: object key, or (possibly negative) integer index into an array.
fn pg_step<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(k),
        Value::Array(a) => {
            let i: i32 = k.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']).parse().ok()?;
            let i = if i < 0 { a.len() as i64 + i64::from(i) } else { i64::from(i) };
            a.get(usize::try_from(i).ok()?)
        }
        _ => None,
    }
}

/// Lax-mode jsonpath member accessors: arrays are unwrapped one level at each step.
fn lax<'a>(v: &'a Value, keys: &[String], out: &mut Vec<&'a Value>) {
    let Some((k, rest)) = keys.split_first() else {
        return out.push(v);
    };
    let step = |o: &'a Value| o.as_object().and_then(|m| m.get(k));
    match v {
        Value::Array(a) => a.iter().filter_map(step).for_each(|x| lax(x, rest, out)),
        _ => step(v).into_iter().for_each(|x| lax(x, rest, out)),
    }
}

fn unwrap1(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        _ => vec![v],
    }
}

// ---------------------------------------------------------------- parser

struct Parser {
    lx: Lexer,
    peeked: Option<(Tok, usize)>,
    last: &'static str,
    terms: usize,
}

impl Parser {
    fn peek(&mut self) -> Result<&Tok, QueryError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lx.next()?);
        }
        Ok(self.peeked.as_ref().map_or(&Tok::End, |t| &t.0))
    }
    fn next(&mut self) -> Result<(Tok, usize), QueryError> {
        let t = match self.peeked.take() {
            Some(t) => t,
            None => self.lx.next()?,
        };
        Ok(t)
    }
    fn or(&mut self, depth: usize) -> Result<Node, QueryError> {
        let mut v = vec![self.and(depth)?];
        while matches!(self.peek()?, Tok::Or) {
            self.last = self.next()?.0.name();
            v.push(self.and(depth)?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { Node::Or(v) })
    }
    fn and(&mut self, depth: usize) -> Result<Node, QueryError> {
        let mut v = vec![self.unary(depth)?];
        loop {
            match self.peek()? {
                Tok::And => self.last = self.next()?.0.name(),
                Tok::Not | Tok::LParen | Tok::Term(_) | Tok::Group(..) => {}
                _ => break,
            }
            v.push(self.unary(depth)?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { Node::And(v) })
    }
    fn unary(&mut self, depth: usize) -> Result<Node, QueryError> {
        let mut neg = false;
        while matches!(self.peek()?, Tok::Not) {
            self.last = self.next()?.0.name();
            neg = !neg;
        }
        let n = self.primary(depth)?;
        Ok(if neg { Node::Not(Box::new(n)) } else { n })
    }
    fn primary(&mut self, depth: usize) -> Result<Node, QueryError> {
        let (tok, pos) = self.next()?;
        let prev = std::mem::replace(&mut self.last, tok.name());
        match tok {
            Tok::Term(t) => {
                self.terms += 1;
                if self.terms > MAX_TERMS {
                    return Err(qerr(pos, format!("too many terms (at most {MAX_TERMS})")));
                }
                Ok(Node::Leaf(*t))
            }
            Tok::Group(n, count) => {
                self.terms += count;
                if self.terms > MAX_TERMS {
                    return Err(qerr(pos, format!("too many terms (at most {MAX_TERMS})")));
                }
                Ok(*n)
            }
            Tok::LParen if depth >= MAX_DEPTH => Err(qerr(pos, format!("nested more than {MAX_DEPTH} levels"))),
            Tok::LParen => {
                let n = self.or(depth + 1)?;
                match self.next()? {
                    (Tok::RParen, _) => Ok(n),
                    (t, at) => Err(qerr(
                        at,
                        format!("expected \")\" to close \"(\" at position {}, found {}", pos + 1, t.name()),
                    )),
                }
            }
            Tok::End if prev.is_empty() => Err(qerr(pos, "empty query")),
            Tok::End => Err(qerr(pos, format!("expected a term after {prev}, found end of query"))),
            t => Err(qerr(pos, format!("unexpected {} (expected a term)", t.name()))),
        }
    }
}

/// Parses a query; never panics.
pub fn parse(input: &str) -> Result<Query, QueryError> {
    if input.len() > MAX_LEN {
        return Err(qerr(MAX_LEN, format!("query longer than {MAX_LEN} bytes")));
    }
    if let Some(i) = input.chars().position(|c| c == '\0') {
        return Err(qerr(i, "NUL characters are not allowed"));
    }
    if input.trim().is_empty() {
        return Err(qerr(0, "empty query"));
    }
    let lx = Lexer { s: input.chars().collect(), i: 0 };
    let mut p = Parser { lx, peeked: None, last: "", terms: 0 };
    let root = p.or(0)?;
    match p.next()? {
        (Tok::End, _) => Ok(Query { root }),
        (t, pos) => Err(qerr(pos, format!("unexpected {}", t.name()))),
    }
}

// ---------------------------------------------------------------- SQL translation

/// Translates to a SQL boolean over `e`; values travel only in `params` (`$1[i]`).
pub fn translate(q: &Query) -> Translated {
    let mut t = Translated { sql: String::new(), params: Vec::new() };
    t.node(&q.root, false);
    t
}

impl Translated {
    fn p(&mut self, v: impl Into<String>) -> String {
        self.params.push(v.into());
        format!("$1[{}]", self.params.len())
    }

    /// `neg`: under a NOT. Only there can a NULL leaf differ from a false one (AND and OR are
    /// monotone, and WHERE drops NULL like false), so only there is a leaf wrapped in
    /// `coalesce(leaf, false)`; elsewhere it stays bare so that indexes can serve it.
    fn node(&mut self, n: &Node, neg: bool) {
        match n {
            Node::Or(v) | Node::And(v) => {
                let sep = if matches!(n, Node::Or(_)) { " OR " } else { " AND " };
                self.sql.push('(');
                for (i, c) in v.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(sep);
                    }
                    self.node(c, neg);
                }
                self.sql.push(')');
            }
            Node::Not(c) => {
                self.sql.push_str("NOT ");
                self.node(c, true);
            }
            Node::Leaf(t) => {
                let e = self.leaf(t);
                if neg {
                    self.sql.push_str(&format!("coalesce({e}, false)"));
                } else {
                    self.sql.push_str(&e);
                }
            }
        }
    }

    fn leaf(&mut self, t: &Term) -> String {
        match t {
            Term::Text(f, p) if p.wild() => format!("e.{} LIKE {}", f.col(), self.p(p.like())),
            Term::Text(f, p) => format!("e.{} = {}", f.col(), self.p(p.text())),
            Term::Free(p, _) => {
                let x = self.p(p.like());
                let ors: Vec<String> = FREE_TEXT.iter().map(|f| format!("e.{} ILIKE {x}", f.col())).collect();
                format!("({})", ors.join(" OR "))
            }
            Term::Int(f, op, n) => format!("e.{} {} ({})::bigint", f.col(), op.sql(), self.p(n.to_string())),
            Term::Rel(op, _, iv) if iv.is_empty() => format!("e.at {} now()", op.sql()),
            Term::Rel(op, secs, iv) => {
                let sign = if *secs < 0 { '-' } else { '+' };
                format!("e.at {} now() {sign} ({})::interval", op.sql(), self.p(iv.as_str()))
            }
            Term::Abs(op, t) => format!("e.at {} ({})::timestamptz", op.sql(), self.p(fmt_ts(*t))),
            Term::Day(t) => {
                let (a, b) = (self.p(fmt_ts(*t)), self.p(fmt_ts(t + DAY)));
                format!("(e.at >= ({a})::timestamptz AND e.at < ({b})::timestamptz)")
            }
            Term::Ip(a, _, true) => format!("e.actor_ip = ({})::inet", self.p(a.to_string())),
            Term::Ip(a, l, false) => {
                format!("e.actor_ip <<= ({})::inet", self.p(format!("{a}/{l}")))
            }
            Term::JsonEq(d, keys, cands) => {
                let mut ors = Vec::new();
                for c in cands {
                    for v in [c.clone(), Value::Array(vec![c.clone()])] {
                        ors.push(format!("e.{} @> ({})::jsonb", d.col(), self.p(nest(keys, v))));
                    }
                }
                format!("({})", ors.join(" OR "))
            }
            Term::JsonLike(d, keys, p) => {
                let (c, path) = (d.col(), self.p(pg_array(keys)));
                let (types, pat) = (self.p("{string,number,boolean}"), self.p(p.like()));
                format!(
                    "(jsonb_typeof(e.{c} #> ({path})::text[]) = ANY (({types})::text[]) \
                     AND (e.{c} #>> ({path})::text[]) LIKE {pat})"
                )
            }
            Term::JsonCmp(d, keys, op, n) => {
                let path: String = keys.iter().map(|k| format!(".{}", Value::String(k.clone()))).collect();
                format!("e.{} @? ({})::jsonpath", d.col(), self.p(format!("${path} ? (@ {} {n})", op.sql())))
            }
        }
    }
}

// ---------------------------------------------------------------- in-memory evaluation

impl Query {
    /// Evaluates the query against one event with the same semantics as [`translate`].
    pub fn matches(&self, ev: &dyn EventView) -> bool {
        self.root.eval(ev)
    }
}

impl Node {
    fn eval(&self, ev: &dyn EventView) -> bool {
        match self {
            Node::Or(v) => v.iter().any(|n| n.eval(ev)),
            Node::And(v) => v.iter().all(|n| n.eval(ev)),
            Node::Not(n) => !n.eval(ev),
            Node::Leaf(t) => t.eval(ev),
        }
    }
}

impl Term {
    fn eval(&self, ev: &dyn EventView) -> bool {
        let at = ev.at_micros();
        match self {
            Term::Text(f, p) => ev.text(*f).is_some_and(|s| p.is_match(s)),
            Term::Free(_, lp) => {
                FREE_TEXT.iter().any(|f| ev.text(*f).is_some_and(|s| lp.is_match(&s.to_ascii_lowercase())))
            }
            Term::Int(f, op, n) => ev.int(*f).is_some_and(|v| op.test(v.cmp(n))),
            Term::Rel(op, secs, _) => op.test(at.cmp(&ev.now_micros().saturating_add(secs * 1_000_000))),
            Term::Abs(op, t) => op.test(at.cmp(t)),
            Term::Day(t) => (*t..t + DAY).contains(&at),
            Term::Ip(qa, ql, eq) => ev.text(Field::ActorIp).and_then(inet).is_some_and(|(ea, el)| {
                let ((x, mx), (y, my)) = (ip_bits(ea), ip_bits(*qa));
                if *eq {
                    return ea == *qa && el == *ql;
                }
                mx == my && el >= *ql && (x ^ y).checked_shr(u32::from(mx - ql)).unwrap_or(0) == 0
            }),
            Term::JsonEq(d, keys, cands) => {
                let v = ev.json(*d).and_then(|v| keys.iter().try_fold(v, |v, k| v.as_object()?.get(k)));
                v.is_some_and(|v| {
                    let elems = v.as_array().map_or(&[][..], |a| a.as_slice());
                    cands.iter().any(|c| scalar_eq(v, c) || elems.iter().any(|e| scalar_eq(e, c)))
                })
            }
            Term::JsonLike(d, keys, p) => {
                let v = ev.json(*d).and_then(|v| keys.iter().try_fold(v, |v, k| pg_step(v, k)));
                match v {
                    Some(Value::String(s)) => p.is_match(s),
                    Some(Value::Number(n)) => p.is_match(&n.to_string()),
                    Some(Value::Bool(b)) => p.is_match(&b.to_string()),
                    _ => false,
                }
            }
            Term::JsonCmp(d, keys, op, n) => {
                let mut items = Vec::new();
                if let Some(root) = ev.json(*d) {
                    lax(root, keys, &mut items);
                }
                let mut vals = items.into_iter().flat_map(unwrap1).flat_map(unwrap1);
                vals.any(|v| matches!(v, Value::Number(x) if op.test(num_cmp(&x.to_string(), n))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Default)]
    struct Ev {
        text: Vec<(Field, &'static str)>,
        at: i64,
        now: i64,
        docs: Vec<(Doc, Value)>,
    }

    impl EventView for Ev {
        fn text(&self, f: Field) -> Option<&str> {
            self.text.iter().find(|x| x.0 == f).map(|x| x.1)
        }
        fn at_micros(&self) -> i64 {
            self.at
        }
        fn now_micros(&self) -> i64 {
            self.now
        }
        fn int(&self, f: Field) -> Option<i64> {
            let ints = [(Field::Id, 42), (Field::Chain, 3), (Field::Seq, 7)];
            (!self.text.is_empty()).then(|| ints.iter().find(|x| x.0 == f).map(|x| x.1))?
        }
        fn json(&self, d: Doc) -> Option<&Value> {
            self.docs.iter().find(|x| x.0 == d).map(|x| &x.1)
        }
    }

    fn ts(s: &str) -> i64 {
        absolute(s).unwrap().0
    }

    /// The sample event (session_id is NULL; id 42, chain 3, seq 7).
    fn ev() -> Ev {
        use Field::*;
        let meta = r#"{"tags":["budget","q3"],"request id":"r1","cpu":4,"ratio":0.50,"ok":true,
            "a.b":{"c":"d"},"items":[{"n":5},{"n":1}],"none":null,"deep":{"x":[[7]]}}"#;
        let text = [
            (Action, "authentication.login"),
            (Status, "failure"),
            (Severity, "high"),
            (Actor, "alice@example.com"),
            (ActorIp, "203.0.113.7"),
            (Module, "auth"),
            (ObjectType, "user"),
            (ObjectId, "u-17"),
            (ObjectName, "prod-db-1"),
            (Application, "Console"),
            (Message, "Disk full on /var (100%)"),
        ];
        let docs = [
            (Doc::Metadata, serde_json::from_str(meta).unwrap()),
            (Doc::New, json!({"state": "stopped", "config": {"cpu": 8}})),
            (Doc::Old, json!({"config": {"cpu": 2}})),
        ];
        let (at, now) = (ts("2024-03-10T10:00:00Z"), ts("2024-03-10T12:00:00Z"));
        Ev { text: text.to_vec(), at, now, docs: docs.to_vec() }
    }

    fn q(s: &str) -> Query {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// One case per line: `+ query` must match `ev`, `- query` must not.
    fn check(ev: &Ev, table: &str) {
        for line in table.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (want, s) = line.split_at(2);
            assert_eq!(q(s).matches(ev), want == "+ ", "{s}");
        }
    }

    fn shape(s: &str, sql: &str, params: &[&str]) {
        let t = translate(&q(s));
        assert_eq!((t.sql.as_str(), t.params.iter().map(String::as_str).collect()), (sql, params.to_vec()), "{s}");
    }

    fn perr(s: &str) -> (usize, String) {
        parse(s).map(|_| (0, String::new())).unwrap_or_else(|e| (e.position, e.message))
    }

    #[test]
    fn field_groups() {
        // field:(a OR b) is the same query as (field:a OR field:b)
        for (group, spelled) in [
            ("action:(authentication.login OR policy.modify)", "(action:authentication.login OR action:policy.modify)"),
            ("actor:(alice or \"bob smith\" OR carol*)", "(actor:alice OR actor:\"bob smith\" OR actor:carol*)"),
            ("new.state:(a AND b) status:failure", "(new.state:a AND new.state:b) AND status:failure"),
            ("NOT module:(x OR y)", "NOT (module:x OR module:y)"),
            ("action:(one)", "action:one"),
        ] {
            assert_eq!(parse(group).unwrap(), parse(spelled).unwrap(), "{group}");
        }
        for bad in [
            "action:(",
            "action:()",
            "action:(a b)",
            "action:(a OR b AND c)",
            "action:(a OR (b))",
            "action:(a OR)",
            "action:(a)b",
            "action:(a OR b",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be an error");
        }
        // a value that starts with "(" is written quoted
        assert!(parse("message:\"(x\"").is_ok());
    }

    #[test]
    fn sql_shapes() {
        shape("actor:alice", "e.actor = $1[1]", &["alice"]);
        shape("event_type:policy.*", "e.action LIKE $1[1]", &["policy.%"]);
        shape(r"object_name:*a_b%\*", "e.object_name LIKE $1[1]", &[r"%a\_b\%\\%"]);
        shape("status:failed", "e.status = $1[1]", &["failure"]);
        shape("at:>now-24h", "e.at > now() - ($1[1])::interval", &["24 hours"]);
        shape("at:<=now+2w", "e.at <= now() + ($1[1])::interval", &["336 hours"]);
        shape("at:<now", "e.at < now()", &[]);
        let day = "(e.at >= ($1[1])::timestamptz AND e.at < ($1[2])::timestamptz)";
        shape("at:2024-01-01", day, &["2024-01-01 00:00:00+00", "2024-01-02 00:00:00+00"]);
        let abs = "e.at >= ($1[1])::timestamptz";
        shape("timestamp:>=2024-01-01T10:00:00.5+02:00", abs, &["2024-01-01 08:00:00.500000+00"]);
        shape("at:>2024-12-31", abs, &["2025-01-01 00:00:00+00"]);
        shape("id:>=100", "e.id >= ($1[1])::bigint", &["100"]);
        shape("ip:10.1.2.3", "e.actor_ip = ($1[1])::inet", &["10.1.2.3"]);
        let net = "e.actor_ip <<= ($1[1])::inet";
        shape("actor_ip:10.0.0.0/8", net, &["10.0.0.0/8"]);
        shape("actor_ip:203.0.113.*", net, &["203.0.113.0/24"]);
        shape("actor_ip:2001:DB8::/32", net, &["2001:db8::/32"]);
        let eq2 = "(e.metadata @> ($1[1])::jsonb OR e.metadata @> ($1[2])::jsonb)";
        shape("metadata.tags:budget", eq2, &[r#"{"tags":"budget"}"#, r#"{"tags":["budget"]}"#]);
        let eq4 = "(e.old @> ($1[1])::jsonb OR e.old @> ($1[2])::jsonb \
                   OR e.old @> ($1[3])::jsonb OR e.old @> ($1[4])::jsonb)";
        let p4 = [r#"{"c":{"cpu":"4"}}"#, r#"{"c":{"cpu":["4"]}}"#, r#"{"c":{"cpu":4}}"#, r#"{"c":{"cpu":[4]}}"#];
        shape("old.c.cpu:4", eq4, &p4);
        let like = "(jsonb_typeof(e.metadata #> ($1[1])::text[]) = ANY (($1[2])::text[]) \
                    AND (e.metadata #>> ($1[1])::text[]) LIKE $1[3])";
        shape(r#"metadata."r \"id\"".x\y:a*"#, like, &[r#"{"r \"id\"","x\\y"}"#, "{string,number,boolean}", "a%"]);
        let path = "e.new @? ($1[1])::jsonpath";
        shape(r#"new.config."c\"pu":>-4.5"#, path, &[r#"$."config"."c\"pu" ? (@ > -4.5)"#]);
        let free = "(e.action ILIKE $1[1] OR e.actor ILIKE $1[1] \
                    OR e.object_type ILIKE $1[1] OR e.object_id ILIKE $1[1] \
                    OR e.object_name ILIKE $1[1] OR e.message ILIKE $1[1] \
                    OR e.module ILIKE $1[1] OR e.application ILIKE $1[1])";
        shape("disk", free, &["%disk%"]);
        shape(r#""50%_off""#, free, &[r"%50\%\_off%"]);
        let bool_sql = "(NOT coalesce(e.actor = $1[1], false) OR (e.actor LIKE $1[2] \
                        AND e.message = $1[3]))";
        shape("NOT actor:a OR user:x* message:y", bool_sql, &["a", "x%", "y"]);
        shape(
            "NOT (actor:a OR status:failure)",
            "NOT (coalesce(e.actor = $1[1], false) OR coalesce(e.status = $1[2], false))",
            &["a", "failure"],
        );
        shape(r#"message:"say \"hi\" \\ a*b \* ;'""#, "e.message LIKE $1[1]", &[r#"say "hi" \\ a%b * ;'"#]);
    }

    #[test]
    fn fields_aliases_and_text() {
        check(
            &ev(),
            r#"
            + action:authentication.login
            + event_type:authentication.*
            - ACTION:authentication
            - action:*LOGIN
            + status:failure
            + status:failed
            + status:fail*
            + severity:high
            + actor:alice@example.com
            + user:alice*
            + actor.email:*@example.com
            - actor:bob
            + module:auth
            + object_type:user
            + object_id:u-17
            + object_name:*prod*
            + object_name:prod*db*1
            - object_name:prod*db*1*2
            + application:Console
            - session_id:*
            + NOT session_id:x
            + message:"Disk full on /var (100%)"
            + message:"Disk*"
            - message:"Disk\*"
            - message:Disk
            + id:42
            + id:>41
            - id:<=41
            + chain:3
            - seq:>=8
            - seq:<-1
        "#,
        );
    }

    #[test]
    fn free_text() {
        check(
            &ev(),
            r#"
            + disk
            + DISK
            + "disk full"
            - "disk  full"
            + prod*1
            - d_sk
            + 100%
            + example.com
            + authentication.login
            - nothing
            - high
        "#,
        );
    }

    #[test]
    fn ip_addresses() {
        let mut e = ev();
        check(
            &e,
            "
            + actor_ip:203.0.113.7
            + ip:203.0.113.7/32
            + actor_ip:203.0.113.0/24
            + actor_ip:203.0.113.99/24
            + actor_ip:203.0.113.*
            + actor_ip:203.*
            + actor_ip:203.*.*
            - actor_ip:10.*
            + actor_ip:0.0.0.0/0
            - actor_ip:203.0.113.8
            - actor_ip:::/0
        ",
        );
        e.text[4].1 = "2001:db8::7/128";
        check(
            &e,
            "
            + actor_ip:2001:db8::7
            + actor_ip:2001:0db8:0::7
            + actor_ip:2001:db8::/32
            - actor_ip:2001:db9::/32
            + actor_ip:::/0
            - actor_ip:0.0.0.0/0
        ",
        );
        for bad in "10.*.1.* 1.2.3.4/33 * 10* 1.2.3.4.* 01.* 1.2.3 x 1.0.0.0/ ::1/+8".split(' ') {
            assert!(perr(&format!("actor_ip:{bad}")).1.starts_with("expected an IP address"), "{bad}");
        }
    }

    #[test]
    fn times() {
        check(
            &ev(),
            r#"
            + at:>now-24h
            - at:>now-1h
            - at:>now-120m
            + at:>=now-7200s
            + at:<now
            - at:<NOW-1d
            - at:>now+1w
            + at:2024-03-10
            - at:2024-03-11
            + at:>2024-03-09
            - at:>2024-03-10
            + at:>=2024-03-10
            + at:<=2024-03-10
            - at:<2024-03-10
            + at:<2024-03-11
            + at:2024-03-10T10:00:00Z
            + at:2024-03-10t12:00:00+02:00
            + at:2024-03-10T05:30-04:30
            + at:"2024-03-10 10:00"
            + at:>2024-03-10T09:59:59.999999Z
            - at:>2024-03-10T10:00:00.000001Z
        "#,
        );
        assert_eq!(ts("1970-01-01"), 0);
        assert_eq!(ts("2000-03-01T00:00:01Z"), 951_868_801_000_000);
        assert_eq!(fmt_ts(ts("0001-01-01")), "0001-01-01 00:00:00+00");
        assert_eq!(fmt_ts(ts("2024-02-29T23:59:59.25Z") + DAY), "2024-03-01 23:59:59.250000+00");
        for bad in "yesterday 2024-02-30 2023-02-29 2024-1-01 2024-01-01T24:00 now-5y now-h".split(' ') {
            assert!(perr(&format!("at:>{bad}")).1.starts_with("expected a"), "{bad}");
        }
        let bad_times = "2024-01-01T10:00+2:00 2024-01-01T10:00:00.1234567 2024-01-01Z \
                         0000-01-01 now-9999999999h";
        for bad in bad_times.split(' ') {
            assert!(parse(&format!("at:>{bad}")).is_err(), "{bad}");
        }
        assert!(perr("at:now-24h").1.contains("needs a comparison"));
        assert!(perr("at:2024*").1.contains("wildcards"));
    }

    #[test]
    fn json_paths() {
        check(
            &ev(),
            r#"
            + metadata.tags:budget
            - metadata.tags:q4
            + metadata."request id":r1
            + metadata.cpu:4
            + metadata.cpu:4.0
            + metadata.cpu:"4"
            - metadata.cpu:5
            + metadata.ratio:0.5
            + metadata.ok:true
            - metadata.ok:TRUE
            + metadata.none:null
            + metadata."a.b".c:d
            - metadata.a.b.c:d
            + new.state:stopped
            + new.state:stop*
            + NEW.config.cpu:8
            - metadata.tags:bud*
            + metadata.tags.0:bud*
            + metadata.tags.-1:q*
            - metadata.tags.2:*
            + metadata.cpu:4*
            + metadata.ok:t*
            - metadata.none:*
            - metadata.items:*
            + new.config.cpu:>4
            - old.config.cpu:>4
            + old.config.cpu:<=2
            + metadata.items.n:>4
            - metadata.items.n:>5
            + metadata.deep.x:>=7
            - metadata.tags:>1
            + metadata.ratio:<0.51
            - metadata.ratio:>0.5
            - metadata.missing:x
            + NOT metadata.missing:x
        "#,
        );
        let e = Ev { docs: vec![(Doc::Metadata, json!([{"k": 1}, {"k": 9}]))], ..Ev::default() };
        check(&e, "+ metadata.k:>5\n- metadata.k:9\n+ metadata.0.k:1*\n- id:42\n+ NOT id:42");
        assert_eq!(num_cmp("1e2", "100.0"), Ordering::Equal);
        assert_eq!(num_cmp("-0.5", "-0.25"), Ordering::Less);
        assert_eq!(num_cmp("0", "-0.0"), Ordering::Equal);
        assert_eq!(num_cmp("12", "9"), Ordering::Greater);
        for bad in "new.cpu:>abc new.cpu:>now-1h new.cpu:>1e5 new.cpu:<04".split(' ') {
            assert!(perr(bad).1.starts_with("comparison needs a number"), "{bad}");
        }
        assert!(perr("metadata..a:x").1.starts_with("empty key"));
        assert!(perr("metadata:x").1.starts_with("unknown field \"metadata\""));
        assert!(perr(&format!("metadata{}:x", ".k".repeat(33))).1.contains("deeper"));
    }

    #[test]
    fn boolean_logic() {
        assert_eq!(q("a OR b AND c"), q("a OR (b AND c)"));
        assert_ne!(q("a OR b AND c"), q("(a OR b) AND c"));
        assert_eq!(q("a b"), q("a AND b"));
        assert_eq!(q("a and not b or c"), q("(a AND (NOT b)) OR c"));
        assert_eq!(translate(&q("NOT NOT NOT a")), translate(&q("NOT a")));
        check(
            &ev(),
            "
            + status:failure OR actor:bob AND id:1
            - (status:failure OR actor:bob) AND id:1
            + status:failure actor:alice*
            - status:failure actor:bob
            + NOT actor:bob
            - NOT NOT actor:bob
            - NOT (actor:bob OR id:42)
            + not(actor:bob)id:42
            + ((((id:42))))
        ",
        );
    }

    #[test]
    fn errors() {
        let table = r#"
            17 | unknown field "acter" (fields: action, status, severity | status:fail AND acter:x
            8 | expected a value after "action:" | action:
            8 | expected a value after "status:" | status:  x
            6 | expected a value after "id:>=" | id:>= 3
            9 | expected ")" to close "(" at position 1, found end of query | (actor:x
            8 | unexpected ")" | actor:x)
            2 | unexpected ")" (expected a term) | ()
            9 | unterminated quoted string | message:"abc
            12 | expected a space or ")" after the closing quote | message:"a"b
            13 | expected "." or ":" after a quoted key | metadata."k"x:1
            15 | expected ":" after | metadata."k".x y
            7 | comparison needs a number or a time | actor:>x
            4 | comparison needs a number or a time | ip:<1.2.3.4
            4 | expected an integer | id:abc
            5 | expected an integer | seq:4.5
            6 | expected a term after "AND", found end of query | a AND
            4 | expected a term after "NOT" | NOT
            1 | unexpected "OR" (expected a term) | OR a
            6 | unexpected "AND" | a OR AND b
            4 | unknown field "acter" | éé acter:x
            1 | unknown field "" | :x
        "#;
        for line in table.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let v: Vec<&str> = line.splitn(3, " | ").collect();
            let (p, m) = perr(v[2]);
            assert!(m.starts_with(v[1]) && p.to_string() == v[0], "{line}: got {p} {m:?}");
        }
        assert_eq!(perr(""), (1, "empty query".into()));
        assert_eq!(perr(" \t\n"), (1, "empty query".into()));
        assert_eq!(perr("a\0b"), (2, "NUL characters are not allowed".into()));
        let e = parse("acter:x").unwrap_err().to_string();
        assert!(e.starts_with("syntax error at position 1: unknown field \"acter\""));
    }

    #[test]
    fn limits() {
        assert_eq!(perr(&"a".repeat(100_001)), (100_001, "query longer than 100000 bytes".into()));
        assert!(parse(&"a".repeat(100_000)).is_ok());
        let deep = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&deep(64)).is_ok());
        assert_eq!(perr(&deep(65)), (65, "nested more than 64 levels".into()));
        assert_eq!(perr(&deep(10_000)).0, 65);
        assert_eq!(perr(&"(".repeat(10_000)).0, 65);
        assert_eq!(perr(&")".repeat(10_000)).1, "unexpected \")\" (expected a term)");
        assert!(parse(&"a ".repeat(200)).is_ok());
        assert_eq!(perr(&"a ".repeat(201)), (401, "too many terms (at most 200)".into()));
        assert!(!q(&format!("{}actor:bob", "NOT ".repeat(10_000))).matches(&ev()));
        let long = q(&format!("message:\"{}\"", "x*".repeat(40_000)));
        assert!(!long.matches(&ev()) && translate(&long).params[0].len() > 40_000);
    }

    /// Identifiers the translator may emit; anything else would be leaked user text.
    const VOCAB: &str = "coalesce e action status severity actor actor_ip module object_type \
        object_id object_name application session_id message at id chain seq metadata old new \
        false NOT AND OR LIKE ILIKE now interval timestamptz bigint inet jsonb jsonpath \
        jsonb_typeof ANY text";

    fn assert_safe(input: &str, t: &Translated) {
        let ok = |c: char| c.is_ascii_alphanumeric() || " _().,:$[]=<>@?#%+-".contains(c);
        assert!(t.sql.chars().all(ok) && !t.sql.contains(['\'', ';']), "{input:?} -> {}", t.sql);
        for w in t.sql.split(|c: char| !c.is_ascii_alphanumeric() && c != '_') {
            let known = w.is_empty() || w.bytes().all(|b| b.is_ascii_digit()) || VOCAB.split(' ').any(|v| v == w);
            assert!(known, "{input:?}: {w}");
        }
        for r in t.sql.split("$1[").skip(1) {
            let n: usize = r[..r.find(']').unwrap()].parse().unwrap();
            assert!((1..=t.params.len()).contains(&n), "{input:?}");
        }
        assert!(t.params.iter().all(|p| !p.contains('\0')));
    }

    #[test]
    fn fuzz_never_panics_and_never_leaks() {
        const ALPHA: &str = concat!(
            ":|(|)|\"|*|\\| | |;|'|-|/|$|<|>|=|.|.|a|x|Z|0|7|42|AND|OR|NOT|and|é|日本|\u{202e}|\0|\t",
            "|actor|status|at|id|actor_ip|ip|metadata|new|old|message",
            "|now-1h|2024-01-01|T10:00Z|10.|::|/8|--|/*|$$|failed|%|_|true"
        );
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: usize| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n as u64) as usize
        };
        let (e, empty, mut ok) = (ev(), Ev::default(), 0);
        let alpha: Vec<&str> = ALPHA.split('|').collect();
        for _ in 0..20_000 {
            let input: String = (0..rnd(24)).map(|_| alpha[rnd(alpha.len())]).collect();
            if let Ok(query) = parse(&input) {
                ok += 1;
                assert_safe(&input, &translate(&query));
                query.matches(&e);
                query.matches(&empty);
            }
        }
        assert!(ok > 1_000, "only {ok} inputs parsed");
        let hostile = [
            "actor:'; DROP TABLE audit.events; --",
            r#"metadata."'; --"."$$":"/*" OR new."a'b":>1 OR message:$$x$$ OR '"#,
            r"actor:\' OR 1=1 OR actor_ip:1.2.3.4/8 OR at:>2024-01-01 OR at:>now-1h",
        ];
        for h in hostile {
            assert_safe(h, &translate(&q(h)));
        }
    }
}

//! The depth-limited recursive-descent parser: tokens into the syntax tree, each `field:value` built into a term.

use super::fields::Target;
use super::lexer::{Lexer, Tok};
use super::values::{ip_value, is_decimal, time};
use super::{qerr, Cmp, Field, Node, Pat, Query, QueryError, Term, MAX_DEPTH, MAX_LEN, MAX_TERMS};
use serde_json::Value;

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

pub(super) fn build(target: Target, op: Cmp, pat: Pat, vpos: usize, name: &str) -> Result<Term, QueryError> {
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

//! Tokens and the lexer: the query text read lazily into operators, terms and `field:(...)` groups.

use super::fields::{resolve, Target};
use super::parser::build;
use super::{qerr, Cmp, Node, Pat, QueryError, Term};

#[derive(Debug)]
pub(super) enum Tok {
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
    pub(super) fn name(&self) -> &'static str {
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

pub(super) struct Lexer {
    pub(super) s: Vec<char>,
    pub(super) i: usize,
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

    pub(super) fn next(&mut self) -> Result<(Tok, usize), QueryError> {
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

//! Translation to SQL: a boolean over `e` from fixed fragments, every user value a `$1[i]` parameter.

use super::fields::FREE_TEXT;
use super::values::fmt_ts;
use super::{Cmp, Node, Pat, Query, Term, Translated, DAY};
use serde_json::{Map, Value};

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

impl Cmp {
    fn sql(self) -> &'static str {
        ["=", ">", ">=", "<", "<="][self as usize]
    }
}

impl Pat {
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
}

fn nest(keys: &[String], leaf: Value) -> String {
    let v = keys.iter().rev().fold(leaf, |v, k| Value::Object(Map::from_iter([(k.clone(), v)])));
    v.to_string()
}

/// PostgreSQL text[] literal `{"a","b"}`.
fn pg_array(keys: &[String]) -> String {
    let el = |k: &String| format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\""));
    format!("{{{}}}", keys.iter().map(el).collect::<Vec<_>>().join(","))
}

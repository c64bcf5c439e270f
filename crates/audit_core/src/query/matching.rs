//! In-memory evaluation: `Query::matches` decides one event with the same semantics as the SQL.

use super::fields::FREE_TEXT;
use super::values::{inet, ip_bits};
use super::{Cmp, EventView, Field, Node, Pat, Query, Term, DAY};
use serde_json::Value;
use std::cmp::Ordering;

impl Query {
    /// Evaluates the query against one event with the same semantics as [`translate`](super::translate).
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

impl Cmp {
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

impl Pat {
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

/// Exact decimal comparison of JSON number texts (as PostgreSQL's numeric does).
pub(super) fn num_cmp(a: &str, b: &str) -> Ordering {
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

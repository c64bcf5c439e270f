//! `audit.verify(...)`: recomputes every hash and link, chain by chain, streaming.
//!
//! One pass per chain over the `(chain, seq)` index with a server-side cursor: memory stays
//! flat whatever the log's size, and each row's temporary allocations (detoasting, jsonb text)
//! go into a context reset per batch. It reads only, so it also runs on a hot standby; each call
//! is recorded as an `audit.verify` event (src/reads.rs), mirrored to the server log where
//! nothing can be written.

use crate::error::raise;
use crate::event::{self, HASH, HASHED, PREV_HASH, SEQ};
use crate::pg::fcinfo::ROW;
use crate::pg::spi;
use crate::pg::value::Value;
use crate::retention::anchor::{Applied, Dropped};
use audit_core::hash::{from_hex, to_hex};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::JsonB;
use std::collections::BTreeMap;
use std::ffi::CString;

#[derive(thiserror::Error, Debug)]
pub enum VerifyError {
    #[error("from_id {from} is greater than to_id {to}")]
    BadRange { from: i64, to: i64 },
    #[error("invalid heads: {0}")]
    BadHeads(String),
    #[error("since cannot be combined with {0}")]
    SinceWithOthers(&'static str),
}

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for VerifyError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        match self {
            VerifyError::BadRange { .. } | VerifyError::BadHeads(_) | VerifyError::SinceWithOthers(_) => {
                pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            VerifyError::BadRange { .. } => "Pass from_id <= to_id, or NULL for an open end.".into(),
            VerifyError::BadHeads(_) => "Pass the output of: select jsonb_agg(to_jsonb(h)) from audit.head() h".into(),
            VerifyError::SinceWithOthers(_) => "Pass since alone: audit.verify(since => ...) checks the events after the noted heads or checkpoint; audit.verify(heads => ...) checks the whole log against them.".into(),
        })
    }
}

/// A head an auditor noted from `audit.head()`.
#[derive(Clone, Debug)]
struct Noted {
    seq: i64,
    hash: Vec<u8>,
}

/// A stretch of a chain that `audit.apply_retention` dropped: seqs `from..=to`, and the hash
/// of `to`, which the next event left links to. Read from the newest `retention.applied`
/// event: the anchors are themselves in the hash-chained log, not in a table one could edit.
#[derive(Clone, Debug)]
struct Anchor {
    from: i64,
    to: i64,
    hash: Vec<u8>,
    /// Why it cannot be relied on, if it cannot (see [`Piece`]).
    unbacked: Option<String>,
    /// The partitions that held it.
    partitions: Vec<String>,
}

/// One chain's events in one partition that a `retention.applied` event says it dropped. An
/// anchor is relied on only when such pieces cover it exactly, each from a partition that
/// `audit.partitions` records as dropped by that very event (same class, same range, the
/// table gone), whose range ended, by the keep it was dropped under, before the event's time,
/// that keep being no shorter than any policy the log ever set. A hand-made
/// `retention.applied` event with anchors over events deleted from a live partition fails
/// these checks.
#[derive(Clone, Debug)]
struct Piece {
    first: i64,
    last: i64,
    name: String,
    problem: Option<String>,
}

#[derive(Default)]
struct Anchors {
    /// id of the retention.applied event they come from
    event: Option<i64>,
    by_chain: BTreeMap<i32, Vec<Anchor>>,
}

impl Anchors {
    fn of(&self, chain: i32) -> &[Anchor] {
        self.by_chain.get(&chain).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn load_anchors() -> Anchors {
    let events: Vec<(i64, Option<Applied>)> = Spi::connect(|client| {
        client
            .select(
                "SELECT id, new FROM audit.events \
                 WHERE action = 'retention.applied' AND module = 'retention' ORDER BY id",
                None,
                &[],
            )
            .map(|rows| {
                rows.filter_map(|r| {
                    let id = r.get::<i64>(1).ok()??;
                    Some((id, r.get::<JsonB>(2).ok().flatten().and_then(|j| Applied::parse(j.0))))
                })
                .collect()
            })
            .unwrap_or_default()
    });
    let Some((newest, Some(applied))) = events.last() else {
        return Anchors { event: events.last().map(|e| e.0), by_chain: BTreeMap::new() };
    };
    let pieces = load_pieces(&events);
    let mut by_chain: BTreeMap<i32, Vec<Anchor>> = BTreeMap::new();
    for a in applied.anchors.iter().flatten() {
        let Some(hash) = from_hex(&a.to_hash) else { continue };
        let mut anchor = Anchor { from: a.from_seq, to: a.to_seq, hash, unbacked: None, partitions: vec![] };
        back(&mut anchor, pieces.get(&a.chain).map(Vec::as_slice).unwrap_or(&[]));
        by_chain.entry(a.chain).or_default().push(anchor);
    }
    Anchors { event: Some(*newest), by_chain }
}

/// Whether the pieces cover the anchor's seqs exactly, each without a problem.
fn back(anchor: &mut Anchor, pieces: &[Piece]) {
    let mut mine: Vec<&Piece> = pieces.iter().filter(|p| p.last >= anchor.from && p.first <= anchor.to).collect();
    mine.sort_by_key(|p| p.first);
    let mut next = anchor.from;
    for p in &mine {
        if let Some(problem) = &p.problem {
            anchor.unbacked = Some(format!("partition {} {problem}", p.name));
            return;
        }
        // (a partition may hold several stretches of a chain: first..last may reach past the
        // anchor, around seqs kept in other partitions)
        if p.first > next {
            break;
        }
        next = next.max(p.last + 1);
        anchor.partitions.push(p.name.clone());
    }
    if next <= anchor.to {
        anchor.unbacked =
            Some(format!("no partition dropped by retention held seqs {}..{}", next.max(anchor.from), anchor.to));
    }
}

/// Every chain's pieces in every partition that a `retention.applied` event dropped, each
/// checked against `audit.partitions` and the log's retention policies.
fn load_pieces(events: &[(i64, Option<Applied>)]) -> BTreeMap<i32, Vec<Piece>> {
    let mut out: BTreeMap<i32, Vec<Piece>> = BTreeMap::new();
    for (id, applied) in events {
        for d in applied.iter().flat_map(|a| a.partitions.iter()) {
            let problem = match &d.keep {
                None => Some(format!("was not past its retention period when retention.applied event {id} dropped it")),
                Some(keep) => partition_problem(*id, d, keep),
            };
            for (chain, c) in &d.chains {
                let Ok(chain) = chain.parse::<i32>() else { continue };
                let problem = problem.clone().or_else(|| {
                    (chain / crate::chain::CLASS_STRIDE != d.retention_class)
                        .then(|| format!("is of retention class {}, not of chain {chain}'s", d.retention_class))
                });
                out.entry(chain).or_default().push(Piece {
                    first: c.first_seq,
                    last: c.last_seq,
                    name: d.partition.clone(),
                    problem,
                });
            }
        }
    }
    out
}

/// Why partition `d`, which retention.applied event `id` says it dropped under `keep`, cannot
/// back an anchor: not recorded in audit.partitions as dropped by that very event (same class
/// and range), still there, not past that keep at the event's time, or dropped under a keep
/// shorter than any policy the log ever set.
fn partition_problem(id: i64, d: &Dropped, keep: &str) -> Option<String> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT CASE WHEN NOT EXISTS (SELECT FROM audit.partitions p WHERE p.name = $1 AND p.dropped_by = $2 \
                                                 AND p.class = $3 AND p.from_at = $4::timestamptz \
                                                 AND p.to_at = $5::timestamptz) \
                             THEN format('is not recorded in audit.partitions as dropped by retention.applied event %s', $2) \
                             WHEN to_regclass(format('audit.%I', $1)) IS NOT NULL \
                             THEN 'still exists' \
                             WHEN $5::timestamptz + $6::interval > (SELECT e.at FROM audit.events e WHERE e.id = $2) \
                             THEN format('was not past its retention period when retention.applied event %s dropped it', $2) \
                             WHEN $6::interval < (SELECT least(interval '365 days', min((s.new ->> 'keep')::interval)) \
                                                  FROM audit.events s WHERE s.action = 'retention.set' \
                                                  AND s.module = 'retention' AND s.id < $2 \
                                                  AND s.new ->> 'keep' <> 'forever') \
                             THEN format('was dropped under a keep of %s, shorter than any retention policy the log set', $6) \
                        END",
                Some(1),
                &[
                    d.partition.as_str().into(),
                    id.into(),
                    d.retention_class.into(),
                    d.from.as_str().into(),
                    d.to.as_str().into(),
                    keep.into(),
                ],
            )
            .ok()?
            .first()
            .get_one::<String>()
            .ok()
            .flatten()
    })
}

/// What verify says of one chain.
#[derive(Debug, Default)]
struct Report {
    checked: i64,
    bad: Option<(Option<i64>, i64, String)>,
    note: Option<String>,
}

/// Rows per cursor fetch. At 10,000 a fetch allocated a 4 MB batch afresh every time, and page
/// faults took 22.8% of verify's profile; at 500 they take 8.6% (BENCHMARKS.md, "Performance,
/// profiles and scale").
const BATCH: i64 = 500;
/// Rows, and bytes of values, between resets of verify's temporary memory context.
const RESET_ROWS: usize = 500;
const RESET_BYTES: usize = 8 * 1024 * 1024;

type VerifyRow = (Option<i32>, i64, bool, Option<i64>, Option<i64>, Option<String>);

/// Checks every chain (or the events with id in [from_id, to_id]) and, given the heads an
/// auditor noted earlier, that each noted head is still there, unchanged; or, given `since`,
/// only the events after noted heads or a checkpoint ([`verify_since`]).
#[pg_extern(volatile, parallel_unsafe, name = "verify")]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn verify_with_since(
    from_id: default!(Option<i64>, "NULL"),
    to_id: default!(Option<i64>, "NULL"),
    heads: default!(Option<JsonB>, "NULL"),
    since: default!(Option<JsonB>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(chain, Option<i32>),
        name!(events_checked, i64),
        name!(ok, bool),
        name!(first_bad_id, Option<i64>),
        name!(first_bad_seq, Option<i64>),
        name!(reason, Option<String>),
    ),
> {
    if let Some(since) = since {
        let other = [(from_id.is_some(), "from_id"), (to_id.is_some(), "to_id"), (heads.is_some(), "heads")];
        if let Some((_, name)) = other.iter().find(|(given, _)| *given) {
            raise(VerifyError::SinceWithOthers(name));
        }
        return TableIterator::new(verify_since(since.0));
    }
    TableIterator::new(verify_heads(from_id, to_id, heads))
}

/// The entry point of 0.1.0's `audit.verify(from_id, to_id, heads)`, which a database keeps
/// until `ALTER EXTENSION audit_ext UPDATE` (the 0.2.0 SQL declares [`verify_with_since`]).
#[pg_extern(volatile, parallel_unsafe, sql = false)]
#[allow(clippy::type_complexity)]
fn verify(
    from_id: Option<i64>,
    to_id: Option<i64>,
    heads: Option<JsonB>,
) -> TableIterator<'static, (Option<i32>, i64, bool, Option<i64>, Option<i64>, Option<String>)> {
    TableIterator::new(verify_heads(from_id, to_id, heads))
}

fn verify_heads(from_id: Option<i64>, to_id: Option<i64>, heads: Option<JsonB>) -> Vec<VerifyRow> {
    if let (Some(from), Some(to)) = (from_id, to_id) {
        if from > to {
            raise(VerifyError::BadRange { from, to });
        }
    }
    let heads = heads.map(|h| h.0);
    let noted = heads.clone().map(|h| parse_heads(h).unwrap_or_else(|e| raise(e))).unwrap_or_default();
    let rows = verify_rows(from_id, to_id, &noted, false);
    crate::reads::record(
        "audit.verify",
        serde_json::json!({ "from_id": from_id, "to_id": to_id, "heads": heads, "ok": rows.iter().all(|r| r.2) }),
        rows.len() as i64,
    );
    rows
}

/// `audit.verify(since => ...)`: incremental verification. Given the heads an auditor noted
/// (`audit.head()`) or a signed checkpoint, checks each noted head (still there, its stored
/// hash the noted one, its content matching that hash) and then only the events after it,
/// each linking to the one before, the first to the noted head: over the `(chain, seq)` index,
/// in time proportional to the new events, not to the log (BENCHMARKS.md, "Scale": 10,000 new
/// events took 44 ms on an empty log and 66 ms on one of 10,000,000). Chains that are not in the noted heads began later
/// and are checked whole. A checkpoint whose signature fails is not relied on: the whole log is
/// checked, and its row says why.
fn verify_since(since: serde_json::Value) -> Vec<VerifyRow> {
    let (noted, extra, named) = if since.is_object() {
        let named = serde_json::json!({
            "public_key": checkpoint_field(&since, "public_key"),
            "signature": checkpoint_field(&since, "signature"),
        });
        match crate::checkpoint::check(since) {
            Ok((heads, note)) => {
                (Some(parse_heads(heads).unwrap_or_else(|e| raise(e))), (None, 0, true, None, None, Some(note)), named)
            }
            Err(problem) => (
                None,
                (None, 0, false, None, None, Some(format!("checkpoint: {problem}; the whole log was checked instead"))),
                named,
            ),
        }
    } else {
        let noted = parse_heads(since.clone()).unwrap_or_else(|e| raise(e));
        (Some(noted), (None, 0, true, None, None, None), serde_json::json!({ "heads": since }))
    };
    let mut rows = match &noted {
        Some(noted) => verify_rows(None, None, noted, true),
        None => verify_rows(None, None, &BTreeMap::new(), false),
    };
    if extra.5.is_some() {
        rows.push(extra);
    }
    crate::reads::record(
        "audit.verify",
        serde_json::json!({ "since": named, "ok": rows.iter().all(|r| r.2) }),
        rows.len() as i64,
    );
    rows
}

/// `audit_internal._verify_range(from_id, to_id)`: verify as `audit.report` runs it for its integrity
/// section. Not recorded as `audit.verify`: the report records itself. The extension's owner
/// only (the report runs as it).
#[pg_extern(volatile, parallel_unsafe, schema = "audit_internal", name = "_verify_range")]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn verify_range(
    from_id: Option<i64>,
    to_id: Option<i64>,
) -> TableIterator<
    'static,
    (
        name!(chain, Option<i32>),
        name!(events_checked, i64),
        name!(ok, bool),
        name!(first_bad_id, Option<i64>),
        name!(first_bad_seq, Option<i64>),
        name!(reason, Option<String>),
    ),
> {
    TableIterator::new(verify_rows(from_id, to_id, &BTreeMap::new(), false))
}

/// `audit.verify(checkpoint => ...)`: checks a signed checkpoint (src/checkpoint.rs) and then
/// the whole log against the heads it holds, as `audit.verify(heads => ...)` does; one more
/// row (chain NULL) says whether the checkpoint itself can be relied on and why.
#[pg_extern(volatile, parallel_unsafe, name = "verify")]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)]
fn verify_checkpoint(
    checkpoint: JsonB,
) -> TableIterator<
    'static,
    (
        name!(chain, Option<i32>),
        name!(events_checked, i64),
        name!(ok, bool),
        name!(first_bad_id, Option<i64>),
        name!(first_bad_seq, Option<i64>),
        name!(reason, Option<String>),
    ),
> {
    let named = serde_json::json!({
        "public_key": checkpoint_field(&checkpoint.0, "public_key"),
        "signature": checkpoint_field(&checkpoint.0, "signature"),
    });
    let (noted, row) = match crate::checkpoint::check(checkpoint.0) {
        Ok((heads, note)) => (parse_heads(heads).unwrap_or_else(|e| raise(e)), (None, 0, true, None, None, Some(note))),
        Err(problem) => (BTreeMap::new(), (None, 0, false, None, None, Some(format!("checkpoint: {problem}")))),
    };
    let mut rows = verify_rows(None, None, &noted, false);
    rows.push(row);
    crate::reads::record(
        "audit.verify",
        serde_json::json!({ "checkpoint": named, "ok": rows.iter().all(|r| r.2) }),
        rows.len() as i64,
    );
    TableIterator::new(rows)
}

/// A text field of a checkpoint as given, cut (it names the checkpoint in the `audit.verify`
/// event; the payload itself is not kept).
fn checkpoint_field(cp: &serde_json::Value, key: &str) -> Option<String> {
    cp.get(key).and_then(|v| v.as_str()).map(|s| crate::reads::cut(s).to_string())
}

/// Every caller allowed to verify checks every event: a member of audit_viewer sees only some
/// events in audit.events (row level security, sql/visibility.sql), so the chains are read as
/// the extension's owner (src/pg/elevate.rs: only audit_ext's own statements run meanwhile).
/// What verify returns is chain-level (counts, ids, seqs, what kind of damage), never an event's
/// contents; the guards row names its problems to those who may read the whole log, and only
/// counts them for a viewer.
///
/// `since`: the noted heads are where checking starts, not what the end is compared with.
fn verify_rows(from_id: Option<i64>, to_id: Option<i64>, noted: &BTreeMap<i32, Noted>, since: bool) -> Vec<VerifyRow> {
    let sees_all = crate::status::read_text(
        "SELECT (pg_catalog.pg_has_role(CURRENT_USER, 'audit_reader', 'USAGE') \
                 OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER))::pg_catalog.text",
    )
    .as_deref()
        == Some("true");
    let (rows, problems) =
        crate::pg::elevate::as_owner(|| (run(from_id, to_id, noted, since), crate::guards::problems()));
    let mut out: Vec<VerifyRow> = rows
        .into_iter()
        .map(|(chain, r)| {
            let (id, seq, reason) = match r.bad {
                Some((id, seq, reason)) => (Some(id), Some(seq), Some(reason)),
                None => (None, None, r.note),
            };
            (Some(chain), r.checked, seq.is_none(), id.flatten(), seq, reason)
        })
        .collect();
    if let Some(problems) = problems {
        let reason = if sees_all {
            format!("guards: {}", problems.join("; "))
        } else {
            format!("guards: {} problem(s); a member of audit_reader sees which", problems.len())
        };
        out.push((None, 0, false, None, None, Some(reason)));
    }
    out
}

fn parse_heads(v: serde_json::Value) -> Result<BTreeMap<i32, Noted>, VerifyError> {
    let bad = |m: &str| VerifyError::BadHeads(m.to_string());
    let items = match v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Null => vec![],
        _ => return Err(bad("expected a JSON array of {chain, seq, hash}")),
    };
    let mut out = BTreeMap::new();
    for item in items {
        let chain = item.get("chain").and_then(|v| v.as_i64()).ok_or_else(|| bad("a head has no integer \"chain\""))?;
        let seq = item.get("seq").and_then(|v| v.as_i64()).ok_or_else(|| bad("a head has no integer \"seq\""))?;
        let hex = item.get("hash").and_then(|v| v.as_str()).ok_or_else(|| bad("a head has no \"hash\" string"))?;
        let hash = from_hex(hex.trim_start_matches("\\x"))
            .filter(|h| h.len() == 32)
            .ok_or_else(|| bad("a head's \"hash\" is not 32 bytes of hex such as \"\\\\x3f2a...\""))?;
        let chain = i32::try_from(chain).map_err(|_| bad("a head's \"chain\" is out of range"))?;
        if out.insert(chain, Noted { seq, hash }).is_some() {
            return Err(bad(&format!("chain {chain} is noted twice")));
        }
    }
    Ok(out)
}

fn run(from: Option<i64>, to: Option<i64>, noted: &BTreeMap<i32, Noted>, since: bool) -> Vec<(i32, Report)> {
    let anchors = load_anchors();
    let mut chains: Vec<i32> = Spi::connect(|client| {
        client
            .select("SELECT chain FROM audit.head()", None, &[])
            .unwrap_or_else(|e| pgrx::error!("audit_ext: listing chains failed: {e}"))
            .filter_map(|r| r.get::<i32>(1).ok().flatten())
            .collect()
    });
    for c in noted.keys().chain(anchors.by_chain.keys()) {
        if !chains.contains(c) {
            chains.push(*c);
        }
    }
    chains.sort_unstable();
    chains
        .into_iter()
        .map(|c| {
            let mut r = match noted.get(&c) {
                Some(n) if since => check_chain_since(c, n, &anchors),
                n => check_chain(c, from, to, n, None, &anchors),
            };
            if !noted.is_empty() && !noted.contains_key(&c) && r.bad.is_none() {
                // a chain retention emptied before the heads were noted is not new: audit.head()
                // lists no chain without events
                r.note = Some(if anchors.of(c).is_empty() {
                    "not in the noted heads: the chain began after they were noted".into()
                } else {
                    format!(
                        "not in the noted heads (it had no events left when they were noted); {}",
                        r.note.take().unwrap_or_default()
                    )
                });
            }
            (c, r)
        })
        .collect()
}

/// One chain from a noted head on: the head first (see [`noted_start`]), then the events after
/// it, the first of which must link to it.
fn check_chain_since(chain: i32, noted: &Noted, all_anchors: &Anchors) -> Report {
    let (start, note) = match noted_start(chain, noted, all_anchors.of(chain)) {
        Ok(s) => s,
        Err(bad) => return Report { checked: 0, bad: Some(bad), note: None },
    };
    let mut report = check_chain(chain, None, None, None, Some(start), all_anchors);
    if report.bad.is_none() {
        let what = match report.checked {
            0 => format!("no events after noted head seq {}", noted.seq),
            n => format!("checked the {n} event(s) after noted head seq {}", noted.seq),
        };
        report.note = Some(match (note, report.note.take()) {
            (Some(a), Some(b)) => format!("{a}; {what}; {b}"),
            (Some(a), None) => format!("{a}; {what}"),
            (None, Some(b)) => format!("{what}; {b}"),
            (None, None) => what,
        });
    }
    report
}

/// Where incremental checking of `chain` starts: the noted head's (seq, hash) once it is
/// found unchanged (there, with the noted hash, and its content matching it), or, when
/// retention dropped it, the end of the retention anchor that covers it (if that anchor can be
/// relied on). Err: what is wrong, as a Report's `bad`.
#[allow(clippy::type_complexity)]
fn noted_start(
    chain: i32,
    noted: &Noted,
    anchors: &[Anchor],
) -> Result<((i64, Link), Option<String>), (Option<i64>, i64, String)> {
    let seq = noted.seq;
    let noted_link = Link::of(Some(&noted.hash));
    match event_checked_at(chain, seq) {
        Some((id, stored, _)) if stored != noted.hash => Err((
            Some(id),
            seq,
            format!(
                "noted head seq {seq} has changed (noted {}, now {}): the chain was rewritten",
                to_hex(&noted.hash),
                to_hex(&stored)
            ),
        )),
        Some((id, _, false)) => Err((
            Some(id),
            seq,
            format!("hash mismatch at noted head seq {seq}: the event's content differs from what was hashed"),
        )),
        Some(_) => Ok(((seq, noted_link), None)),
        None => match anchors.iter().find(|a| a.from <= seq && seq <= a.to) {
            Some(a) if a.unbacked.is_some() => Err((
                None,
                seq,
                format!(
                    "noted head seq {seq} is gone, and the retention anchor that claims seqs {}..{} cannot be relied on: {}",
                    a.from,
                    a.to,
                    a.unbacked.as_deref().unwrap_or_default()
                ),
            )),
            Some(a) if a.to == seq && a.hash != noted.hash => Err((
                None,
                seq,
                format!(
                    "noted head seq {seq} differs from its retention anchor (noted {}, anchor {}): the chain was rewritten",
                    to_hex(&noted.hash),
                    to_hex(&a.hash)
                ),
            )),
            Some(a) => Ok((
                (a.to, Link::of(Some(&a.hash))),
                Some(format!("noted head seq {seq} was dropped by retention (anchor up to seq {})", a.to)),
            )),
            None => Err((None, seq, format!("noted head seq {seq} is missing: the chain was truncated"))),
        },
    }
}

/// Id, stored hash, and whether the content still gives that hash, of the event at `seq` on
/// `chain` (the first by id, as verify orders them).
fn event_checked_at(chain: i32, seq: i64) -> Option<(i64, Vec<u8>, bool)> {
    Spi::connect(|client| {
        let row = client
            .select(
                "SELECT e.id, e.hash, e.hash IS NOT DISTINCT FROM audit.hash_event(e) FROM audit.events e \
                 WHERE e.chain = $1 AND e.seq = $2 ORDER BY e.id LIMIT 1",
                Some(1),
                &[chain.into(), seq.into()],
            )
            .ok()?
            .first();
        let id = row.get::<i64>(1).ok()??;
        let hash = row.get::<Vec<u8>>(2).ok()?.unwrap_or_default();
        Some((id, hash, row.get::<bool>(3).ok()?.unwrap_or(false)))
    })
}

/// `after`: only the events after this (seq, hash), the first linking to it (incremental
/// verification); None: from the chain's start or, with `from`, from the event before `from`.
fn check_chain(
    chain: i32,
    from: Option<i64>,
    to: Option<i64>,
    noted: Option<&Noted>,
    after: Option<(i64, Link)>,
    all_anchors: &Anchors,
) -> Report {
    let mut report = Report::default();
    let anchors = all_anchors.of(chain);
    // the anchors this chain was checked across
    let mut crossed: Vec<&Anchor> = vec![];
    // Without a range, no id filter: the (chain, seq) index is then the only sensible plan.
    let range = if from.is_some() || to.is_some() { "AND e.id >= $2 AND e.id <= $3" } else { "AND $2 <= $3" };
    // Every partition, whatever the class: an event moved to another retention class (which
    // is not hashed) is found and reported as moved, never missed.
    let query = CString::new(format!(
        "SELECT {}, e.retention_class FROM audit.events e WHERE e.chain = $1 AND e.seq > $4 {range} ORDER BY e.seq, e.id",
        event::select_list(),
    ))
    .unwrap();
    let class_col = event::COLUMNS.len();
    let spi = spi::Connection::open();
    let plan = spi.prepare(&query, &[pg_sys::INT4OID, pg_sys::INT8OID, pg_sys::INT8OID, pg_sys::INT8OID]);
    let mut cursor = spi.cursor(
        &plan,
        &[
            Some(Value::from_int4(chain)),
            Some(Value::from_int8(from.unwrap_or(i64::MIN))),
            Some(Value::from_int8(to.unwrap_or(i64::MAX))),
            // every seq, forged ones below 1 too, unless checking starts after a noted head
            Some(Value::from_int8(after.map_or(i64::MIN, |(seq, _)| seq))),
        ],
    );

    // What the next event must look like: its seq, and what its prev_hash must be.
    let mut expect: Option<(i64, Link)> = after.map(|(seq, link)| (seq + 1, link));
    let mut last_seq = 0i64;
    let mut batch_cx = crate::pg::memory::Scratch::new("audit_ext verify");
    // bytes hashed since the last reset of batch_cx (detoasted values live there until then)
    let mut held = 0usize;
    let mut held_rows = 0usize;
    'fetch: loop {
        let n = cursor.fetch(BATCH);
        if n == 0 {
            break;
        }
        for i in 0..n {
            let outcome = batch_cx.run(|| -> Result<usize, (Option<i64>, i64, String)> {
                let row = cursor.row(i);
                let get = |c: usize| row.get(c);
                let seq = get(SEQ).map_or(0, |v| v.int8());
                let id = get(event::ID).map_or(0, |v| v.int8());
                let stored = Link::of(row.bytes_at(HASH));
                let prev = Link::of(row.bytes_at(PREV_HASH));
                let (mut want_seq, mut want_prev) = match expect.take() {
                    Some(e) => e,
                    None if from.is_none() => (1, Link::Genesis),
                    None => (seq, Link::of(previous_hash(chain, seq, anchors).as_deref())),
                };
                let bad = |r: String| Err((Some(id), seq, r));
                // A gap retention explains: exactly a dropped stretch, which this event links
                // to, backed by partitions that retention dropped (see `Piece`). (No check of
                // the neighbours' times: a privileged direct INSERT may back-date an event.)
                if seq > want_seq {
                    if let Some(a) = anchors.iter().find(|a| a.from == want_seq && a.to == seq - 1) {
                        if let Some(why) = &a.unbacked {
                            return bad(format!(
                                "seq gap: seqs {}..{} are missing, and the retention anchor that claims them cannot be relied on: {why}",
                                a.from, a.to
                            ));
                        }
                        (want_seq, want_prev) = (seq, Link::of(Some(&a.hash)));
                        crossed.push(a);
                    }
                }
                let (hash, size) = event::hash_values(|c| if c < HASHED { get(c) } else { None });
                let class = get(class_col).map(|v| v.int4());
                let reason = if let Some(class) = class.filter(|c| *c != chain / crate::chain::CLASS_STRIDE) {
                    Some(format!(
                        "moved event: stored under retention class {class}, but chain {chain} belongs to class {} \
                         (retention_class was changed)",
                        chain / crate::chain::CLASS_STRIDE
                    ))
                } else if seq > want_seq {
                    // the event that should be here may still exist with a changed seq
                    match event_linking(chain, want_prev, want_seq) {
                        Some((other_id, other_seq)) => {
                            return Err((Some(other_id), other_seq, format!(
                                "changed seq: event {other_id} links after seq {} but has seq {other_seq}, not {want_seq}",
                                want_seq - 1
                            )))
                        }
                        None => Some(format!(
                            "seq gap: expected seq {want_seq}, found seq {seq}: {} event(s) missing, \
                             and no retention anchor explains them",
                            seq - want_seq
                        )),
                    }
                } else if seq < want_seq {
                    Some(format!("duplicate seq {seq}: a forged or copied event"))
                } else if !prev.matches(want_prev) {
                    Some(format!(
                        "broken link: prev_hash does not match the hash of seq {} (that event or this one was rewritten)",
                        seq - 1
                    ))
                } else {
                    (!stored.matches(Link::Hash(hash)))
                        .then(|| "hash mismatch: the event's content differs from what was hashed".to_string())
                };
                if let Some(mut r) = reason {
                    // a copy made beside the original: name the copy, whichever comes first
                    if let Some(original) = (seq == want_seq).then(|| twin(chain, seq, id, want_prev)).flatten() {
                        r = format!("forged copy of seq {seq} (event {original} is the original): {r}");
                    }
                    return bad(r);
                }
                last_seq = seq;
                report.checked += 1;
                expect = Some((seq + 1, stored));
                // what this row detoasted into batch_cx: about its encoded size
                Ok(size)
            });
            match outcome {
                Ok(bytes) => {
                    held += bytes;
                    held_rows += 1;
                }
                Err(b) => {
                    report.bad = Some(b);
                    break 'fetch;
                }
            }
            // Temporary allocations (detoasting, jsonb text) go into one context, reset after
            // RESET_ROWS rows or RESET_BYTES of values, whichever comes first: reset only per
            // 10,000-row batch it grew to megabytes and faulted its pages in anew for every
            // batch (18% of verify's time in a profile); reset per 500 rows only, 600 events of
            // 1 MB took the backend to 617 MB.
            if held_rows >= RESET_ROWS || held >= RESET_BYTES {
                batch_cx.reset();
                held = 0;
                held_rows = 0;
            }
        }
    }
    drop(cursor);
    drop(spi);

    if report.bad.is_none() {
        let event = all_anchors.event.unwrap_or_default();
        if report.checked == 0 && from.is_none() && after.is_none() {
            if let Some(a) = anchors.iter().max_by_key(|a| a.to) {
                report.note = Some(match &a.unbacked {
                    None => format!(
                        "all events up to seq {} were dropped by retention (anchor in retention.applied event {event}, partitions {})",
                        a.to,
                        a.partitions.join(", ")
                    ),
                    Some(why) => {
                        report.bad = Some((None, a.to, format!(
                            "no events left, and the retention anchor that claims seqs {}..{} cannot be relied on: {why}",
                            a.from, a.to
                        )));
                        String::new()
                    }
                });
            }
        } else if !crossed.is_empty() {
            let list: Vec<String> = crossed
                .iter()
                .map(|a| format!("seqs {}..{} (partitions {})", a.from, a.to, a.partitions.join(", ")))
                .collect();
            report.note = Some(format!(
                "verified across retention anchors of retention.applied event {event}: {}",
                list.join("; ")
            ));
        }
        if report.bad.is_some() {
            report.note = None;
        }
    }
    if let (None, Some(n)) = (&report.bad, noted) {
        check_noted_head(chain, n, &mut report, last_seq, anchors);
    }
    report
}

/// An event of `chain` other than `id` that has `seq` and links as that seq must: the
/// original beside a forged copy.
fn twin(chain: i32, seq: i64, id: i64, want_prev: Link) -> Option<i64> {
    let prev = match want_prev {
        Link::Hash(h) => Some(h.to_vec()),
        Link::Genesis => None,
        Link::Invalid => return None,
    };
    Spi::connect(|client| {
        client
            .select(
                "SELECT e.id FROM audit.events e WHERE e.chain = $1 AND e.seq = $2 AND e.id <> $3 \
                   AND e.prev_hash IS NOT DISTINCT FROM $4 AND e.hash = audit.hash_event(e) LIMIT 1",
                Some(1),
                &[chain.into(), seq.into(), id.into(), prev.into()],
            )
            .ok()?
            .first()
            .get_one::<i64>()
            .ok()
            .flatten()
    })
}

/// The event of `chain` that links to `link` (its prev_hash) with a seq other than `seq`: an
/// event whose seq was changed. Only looked for when a gap is found.
fn event_linking(chain: i32, link: Link, seq: i64) -> Option<(i64, i64)> {
    let Link::Hash(h) = link else { return None };
    Spi::connect(|client| {
        client
            .select(
                "SELECT e.id, e.seq FROM audit.events e WHERE e.chain = $1 AND e.prev_hash = $2 AND e.seq <> $3 \
                 ORDER BY e.id LIMIT 1",
                Some(1),
                &[chain.into(), h.to_vec().into(), seq.into()],
            )
            .ok()?
            .first()
            .get_two::<i64, i64>()
            .ok()
    })
    .and_then(|(id, seq)| Some((id?, seq?)))
}

/// A hash as a link: what an event's `prev_hash` must equal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Link {
    /// NULL: the first event of a chain.
    Genesis,
    Hash([u8; 32]),
    /// Not 32 bytes: matches nothing.
    Invalid,
}

impl Link {
    fn of(b: Option<&[u8]>) -> Link {
        match b {
            None => Link::Genesis,
            Some(b) => b.try_into().map(Link::Hash).unwrap_or(Link::Invalid),
        }
    }
    fn matches(self, other: Link) -> bool {
        self == other && self != Link::Invalid
    }
}

/// Id and hash of the event at `seq` on `chain`, if there is one.
fn event_at(chain: i32, seq: i64) -> Option<(i64, Vec<u8>)> {
    // Spi::connect + select, not Spi::get_two_with_args: pgrx runs those through a mutable
    // connection, which takes a transaction id, and a hot standby refuses that.
    Spi::connect(|client| {
        client
            .select(
                "SELECT id, hash FROM audit.events WHERE chain = $1 AND seq = $2 ORDER BY id LIMIT 1",
                Some(1),
                &[chain.into(), seq.into()],
            )
            .ok()?
            .first()
            .get_two::<i64, Vec<u8>>()
            .ok()
    })
    .and_then(|(id, hash)| Some((id?, hash?)))
}

/// Hash of event `seq - 1` on `chain`, for a range that starts mid-chain (None at seq 1),
/// from the event or, when retention dropped it, from its anchor.
fn previous_hash(chain: i32, seq: i64, anchors: &[Anchor]) -> Option<Vec<u8>> {
    if seq <= 1 {
        return None;
    }
    event_at(chain, seq - 1)
        .map(|(_, hash)| hash)
        .or_else(|| anchors.iter().find(|a| a.to == seq - 1).map(|a| a.hash.clone()))
}

fn check_noted_head(chain: i32, noted: &Noted, report: &mut Report, last_seq: i64, anchors: &[Anchor]) {
    let now = event_at(chain, noted.seq);
    if now.is_none() {
        if let Some(a) = anchors.iter().find(|a| a.from <= noted.seq && noted.seq <= a.to) {
            // Dropped by retention: still comparable when it was the last of a dropped stretch.
            report.note = Some(if a.to != noted.seq {
                format!("noted head seq {} was dropped by retention", noted.seq)
            } else if a.hash == noted.hash {
                format!("noted head seq {} was dropped by retention; its anchor matches", noted.seq)
            } else {
                report.bad = Some((None, noted.seq, format!(
                    "noted head seq {} differs from its retention anchor (noted {}, anchor {}): the chain was rewritten",
                    noted.seq, to_hex(&noted.hash), to_hex(&a.hash)
                )));
                return;
            });
            return;
        }
    }
    let reason = match &now {
        None => Some(format!(
            "noted head seq {} is missing: the chain was truncated (it now ends at seq {last_seq})",
            noted.seq
        )),
        Some((_, h)) if *h != noted.hash => Some(format!(
            "noted head seq {} has changed (noted {}, now {}): the chain was rewritten",
            noted.seq,
            to_hex(&noted.hash),
            to_hex(h)
        )),
        Some(_) => None,
    };
    match reason {
        Some(reason) => report.bad = Some((now.map(|(id, _)| id), noted.seq, reason)),
        None => report.note = Some(format!("matches noted head seq {}", noted.seq)),
    }
}

crate::c_function!(
    /// `audit.hash_event(e audit.events) returns bytea`: the hash an event's columns give now,
    /// with the encoding of docs/hash-format.md. `hash = audit.hash_event(e)` holds for every
    /// untouched event; verify uses the same code.
    pg_finfo_audit_hash_event,
    audit_hash_event,
    &[ROW],
    |call| {
        let row = call.arg(0)?;
        let hash = event::with_event_row(row, "audit.hash_event()", |get| event::hash_values(get).0);
        Some(Value::from_bytea(&hash))
    }
);

//! `audit.verify(...)`: recomputes every hash and link, chain by chain, streaming.
//!
//! One pass per chain over the `(chain, seq)` index with a server-side cursor: memory stays
//! flat whatever the log's size, and each row's temporary allocations (detoasting, jsonb text)
//! go into a context reset per batch. Read-only, so it also runs on a hot standby.

use crate::error::raise;
use crate::event::{self, HASH, HASHED, PREV_HASH, SEQ};
use crate::hash::{from_hex, to_hex};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{JsonB, PgMemoryContexts, PgTupleDesc};
use std::collections::BTreeMap;
use std::ffi::CString;

#[derive(thiserror::Error, Debug)]
pub enum VerifyError {
    #[error("from_id {from} is greater than to_id {to}")]
    BadRange { from: i64, to: i64 },
    #[error("invalid heads: {0}")]
    BadHeads(String),
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
    let row = Spi::connect(|client| {
        client
            .select(
                "SELECT id, new -> 'anchors' FROM audit.events \
                 WHERE action = 'retention.applied' AND module = 'retention' ORDER BY id DESC LIMIT 1",
                Some(1),
                &[],
            )
            .ok()?
            .first()
            .get_two::<i64, JsonB>()
            .ok()
    });
    let Some((Some(id), list)) = row else { return Anchors::default() };
    let mut by_chain: BTreeMap<i32, Vec<Anchor>> = BTreeMap::new();
    for a in list.and_then(|j| j.0.as_array().cloned()).unwrap_or_default() {
        let num = |k: &str| a.get(k).and_then(|v| v.as_i64());
        let hash = a.get("to_hash").and_then(|v| v.as_str()).and_then(from_hex);
        if let (Some(chain), Some(from), Some(to), Some(hash)) = (num("chain"), num("from_seq"), num("to_seq"), hash) {
            by_chain.entry(chain as i32).or_default().push(Anchor { from, to, hash });
        }
    }
    Anchors { event: Some(id), by_chain }
}

/// What verify says of one chain.
#[derive(Debug, Default)]
struct Report {
    checked: i64,
    bad: Option<(Option<i64>, i64, String)>,
    note: Option<String>,
}

const BATCH: i64 = 10_000;
/// Rows between resets of verify's temporary memory context.
const RESET_ROWS: usize = 500;


/// Checks every chain (or the events with id in [from_id, to_id]) and, given the heads an
/// auditor noted earlier, that each noted head is still there, unchanged.
#[pg_extern(stable, parallel_restricted)]
fn verify(
    from_id: default!(Option<i64>, "NULL"),
    to_id: default!(Option<i64>, "NULL"),
    heads: default!(Option<JsonB>, "NULL"),
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
    if let (Some(from), Some(to)) = (from_id, to_id) {
        if from > to {
            raise(VerifyError::BadRange { from, to });
        }
    }
    let noted = heads.map(|h| parse_heads(h.0).unwrap_or_else(|e| raise(e))).unwrap_or_default();
    let rows = unsafe { run(from_id, to_id, &noted) };
    let mut out: Vec<_> = rows
        .into_iter()
        .map(|(chain, r)| {
            let (id, seq, reason) = match r.bad {
                Some((id, seq, reason)) => (Some(id), Some(seq), Some(reason)),
                None => (None, None, r.note),
            };
            (Some(chain), r.checked, seq.is_none(), id.flatten(), seq, reason)
        })
        .collect();
    if let Some(problems) = guard_problems() {
        out.push((None, 0, false, None, None, Some(format!("guards: {problems}"))));
    }
    TableIterator::new(out)
}

/// What is wrong with the guards of the log, if anything: a trigger of audit.events (or of one
/// of its partitions) or an event trigger missing or disabled, a rule or row level security on
/// audit.events, a tracked table whose capture is not intact, a partition that left other
/// than through apply_retention. A superuser can switch a guard off (after
/// disabling the event triggers that refuse it); verify then reports a row with chain NULL,
/// so that `bool_and(ok)` fails even before any event was touched.
fn guard_problems() -> Option<String> {
    read_text(
        "SELECT string_agg(p, '; ' ORDER BY p) FROM ( \
           SELECT format('trigger %s on audit.events is %s', t.name, \
                         CASE WHEN tg.oid IS NULL THEN 'missing' ELSE 'disabled' END) AS p \
           FROM unnest(ARRAY['zz_chain_event', 'append_only', 'zz_alerts']) t(name) \
           LEFT JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = 'audit.events'::regclass AND tg.tgname = t.name \
           WHERE tg.oid IS NULL OR tg.tgenabled NOT IN ('O', 'A') \
           UNION ALL \
           SELECT format('event trigger %s is %s', t.name, \
                         CASE WHEN et.oid IS NULL THEN 'missing' ELSE 'disabled' END) \
           FROM unnest(ARRAY['audit_ext_ddl_command', 'audit_ext_ddl_drop']) t(name) \
           LEFT JOIN pg_catalog.pg_event_trigger et ON et.evtname = t.name \
           WHERE et.oid IS NULL OR et.evtenabled NOT IN ('O', 'A') \
           UNION ALL \
           SELECT format('rule %s on audit.events', r.rulename) FROM pg_catalog.pg_rewrite r \
           WHERE r.ev_class = 'audit.events'::regclass \
           UNION ALL \
           SELECT 'row level security is enabled on audit.events' FROM pg_catalog.pg_class c \
           WHERE c.oid = 'audit.events'::regclass AND c.relrowsecurity \
           UNION ALL \
           SELECT format('capture of %s is not intact: %s', t.table_name, audit._capture_problem(t.tbl)) \
           FROM audit.tracked_tables t WHERE NOT t.intact \
           UNION ALL \
           SELECT format('trigger %s on partition %s is %s', t.name, i.inhrelid::regclass, \
                         CASE WHEN tg.oid IS NULL THEN 'missing' ELSE 'disabled' END) \
           FROM pg_catalog.pg_inherits i \
           CROSS JOIN unnest(ARRAY['zz_chain_event', 'append_only']) t(name) \
           LEFT JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = i.inhrelid AND tg.tgname = t.name \
           WHERE i.inhparent = 'audit.events'::regclass AND (tg.oid IS NULL OR tg.tgenabled NOT IN ('O', 'A')) \
           UNION ALL \
           SELECT format('partition audit.%s (class %s, %s to %s UTC) is missing: dropped or detached outside \
                          audit.apply_retention(), its events are gone', p.name, p.class, \
                         to_char(p.from_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), \
                         to_char(p.to_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')) \
           FROM audit.partitions p \
           WHERE p.dropped_at IS NULL AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits i \
               JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
               WHERE i.inhparent = 'audit.events'::regclass AND c.relname = p.name)) s",
    )
}

/// The first column of the first row of a read-only query (it runs on a hot standby too).
pub fn read_text(sql: &str) -> Option<String> {
    Spi::connect(|client| client.select(sql, Some(1), &[]).ok()?.first().get_one::<String>().ok().flatten())
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
        let hash = from_hex(hex.trim_start_matches("\\x")).filter(|h| h.len() == 32).ok_or_else(|| {
            bad("a head's \"hash\" is not 32 bytes of hex such as \"\\\\x3f2a...\"")
        })?;
        let chain = i32::try_from(chain).map_err(|_| bad("a head's \"chain\" is out of range"))?;
        if out.insert(chain, Noted { seq, hash }).is_some() {
            return Err(bad(&format!("chain {chain} is noted twice")));
        }
    }
    Ok(out)
}

unsafe fn run(from: Option<i64>, to: Option<i64>, noted: &BTreeMap<i32, Noted>) -> Vec<(i32, Report)> {
    let anchors = load_anchors();
    Spi::connect(|client| {
        let mut chains: Vec<i32> = client
            .select("SELECT chain FROM audit.head()", None, &[])
            .unwrap_or_else(|e| pgrx::error!("audit_ext: listing chains failed: {e}"))
            .filter_map(|r| r.get::<i32>(1).ok().flatten())
            .collect();
        for c in noted.keys().chain(anchors.by_chain.keys()) {
            if !chains.contains(c) {
                chains.push(*c);
            }
        }
        chains.sort_unstable();
        chains
            .into_iter()
            .map(|c| {
                let mut r = check_chain(c, from, to, noted.get(&c), &anchors);
                if !noted.is_empty() && !noted.contains_key(&c) && r.bad.is_none() {
                    r.note = Some("not in the noted heads: the chain began after they were noted".into());
                }
                (c, r)
            })
            .collect()
    })
}

unsafe fn check_chain(
    chain: i32,
    from: Option<i64>,
    to: Option<i64>,
    noted: Option<&Noted>,
    all_anchors: &Anchors,
) -> Report {
    let mut report = Report::default();
    let anchors = all_anchors.of(chain);
    // the last anchor this chain was checked across
    let mut crossed: Option<&Anchor> = None;
    // Without a range, no id filter: the (chain, seq) index is then the only sensible plan.
    let range = if from.is_some() || to.is_some() { "AND e.id >= $2 AND e.id <= $3" } else { "AND $2 <= $3" };
    let query = CString::new(format!(
        // retention_class = chain / 1000 by construction (crate::chain): it prunes the scan to
        // the partitions of the chain's class
        "SELECT {} FROM audit.events e WHERE e.chain = $1 AND e.retention_class = $1 / {} {range} ORDER BY e.seq",
        event::select_list(),
        crate::chain::CLASS_STRIDE
    ))
    .unwrap();
    let mut types = [pg_sys::INT4OID, pg_sys::INT8OID, pg_sys::INT8OID];
    let plan = pg_sys::SPI_prepare(query.as_ptr(), 3, types.as_mut_ptr());
    let mut args = [
        pg_sys::Datum::from(chain),
        pg_sys::Datum::from(from.unwrap_or(i64::MIN)),
        pg_sys::Datum::from(to.unwrap_or(i64::MAX)),
    ];
    let nulls = [b' ' as std::ffi::c_char; 3];
    let portal = pg_sys::SPI_cursor_open(std::ptr::null(), plan, args.as_mut_ptr(), nulls.as_ptr(), true);

    // What the next event must look like: its seq, and what its prev_hash must be.
    let mut expect: Option<(i64, Link)> = None;
    let mut last_seq = 0i64;
    let mut batch_cx = PgMemoryContexts::new("audit_ext verify");
    let mut values = [pg_sys::Datum::from(0); event::COLUMNS.len()];
    let mut isnull = [false; event::COLUMNS.len()];
    loop {
        pg_sys::SPI_cursor_fetch(portal, true, BATCH);
        let n = pg_sys::SPI_processed as usize;
        if n == 0 {
            break;
        }
        let tt = *pg_sys::SPI_tuptable;
        let rows = std::slice::from_raw_parts(tt.vals, n);
        // Temporary allocations (detoasting) go into one context, reset every RESET_ROWS rows:
        // reset once per 10,000-row batch it grew to megabytes and faulted its pages in anew
        // for every batch (18% of verify's time in a profile).
        let mut bad = None;
        for chunk in rows.chunks(RESET_ROWS) {
        bad = batch_cx.switch_to(|_| {
            for &row in chunk {
                pg_sys::heap_deform_tuple(row, tt.tupdesc, values.as_mut_ptr(), isnull.as_mut_ptr());
                let get = |c: usize| (!isnull[c]).then(|| values[c]);
                let seq = values[SEQ].value() as i64;
                let stored = Link::of(get(HASH).map(|d| event::bytes(d)));
                let prev = Link::of(get(PREV_HASH).map(|d| event::bytes(d)));
                let (mut want_seq, mut want_prev) = match expect.take() {
                    Some(e) => e,
                    None if from.is_none() => (1, Link::Genesis),
                    None => (seq, Link::of(previous_hash(chain, seq, anchors).as_deref())),
                };
                // A gap retention explains: exactly a dropped stretch, which this event links to.
                if seq > want_seq {
                    if let Some(a) = anchors.iter().find(|a| a.from == want_seq && a.to == seq - 1) {
                        (want_seq, want_prev) = (seq, Link::of(Some(&a.hash)));
                        crossed = Some(a);
                    }
                }
                last_seq = seq;
                report.checked += 1;
                let reason = if seq > want_seq {
                    Some(format!(
                        "seq gap: expected seq {want_seq}, found seq {seq}: {} event(s) missing, \
                         and no retention anchor explains them",
                        seq - want_seq
                    ))
                } else if seq < want_seq {
                    Some(format!("duplicate seq {seq}: a forged or copied event"))
                } else if !prev.matches(want_prev) {
                    Some(format!(
                        "broken link: prev_hash does not match the hash of seq {} (that event or this one was rewritten)",
                        seq - 1
                    ))
                } else {
                    let (hash, _) = event::hash_datums(|c| if c < HASHED { get(c) } else { None });
                    (!stored.matches(Link::Hash(hash)))
                        .then(|| "hash mismatch: the event's content differs from what was hashed".to_string())
                };
                if let Some(r) = reason {
                    return Some((Some(values[event::ID].value() as i64), seq, r));
                }
                expect = Some((seq + 1, stored));
            }
            None
        });
        batch_cx.reset();
        if bad.is_some() {
            break;
        }
        }
        pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable);
        if bad.is_some() {
            report.bad = bad;
            break;
        }
    }
    pg_sys::SPI_cursor_close(portal);
    pg_sys::SPI_freeplan(plan);

    if report.bad.is_none() {
        let event = all_anchors.event.unwrap_or_default();
        if report.checked == 0 && from.is_none() {
            if let Some(a) = anchors.iter().max_by_key(|a| a.to) {
                report.note = Some(format!(
                    "all events up to seq {} were dropped by retention (anchor in retention.applied event {event})",
                    a.to
                ));
            }
        } else if let Some(a) = crossed {
            report.note = Some(format!(
                "verified across retention anchor: seqs {}..{} dropped (retention.applied event {event})",
                a.from, a.to
            ));
        }
    }
    if let (None, Some(n)) = (&report.bad, noted) {
        check_noted_head(chain, n, &mut report, last_seq, anchors);
    }
    report
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
                "SELECT id, hash FROM audit.events WHERE chain = $1 AND seq = $2 AND retention_class = $3",
                Some(1),
                &[chain.into(), seq.into(), (chain / crate::chain::CLASS_STRIDE).into()],
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

finfo_v1!(pg_finfo_audit_hash_event);

/// `audit.hash_event(e audit.events) returns bytea`: the hash an event's columns give now,
/// with the encoding of docs/hash-format.md. `hash = audit.hash_event(e)` holds for every
/// untouched event; verify uses the same code.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn audit_hash_event(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let arg = (*fcinfo).args.as_slice(1)[0].value;
    let header = pg_sys::pg_detoast_datum(arg.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
    let typid = (*header).t_choice.t_datum.datum_typeid;
    let typmod = (*header).t_choice.t_datum.datum_typmod;
    let desc = pg_sys::lookup_rowtype_tupdesc(typid, typmod);
    let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
    tuple.t_len = pgrx::varlena::varsize(header as *const pg_sys::varlena) as u32;
    tuple.t_data = header;
    let natts = (*desc).natts as usize;
    let mut values = vec![pg_sys::Datum::from(0); natts];
    let mut nulls = vec![false; natts];
    pg_sys::heap_deform_tuple(&mut tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
    let attno = event::attnos(&PgTupleDesc::from_pg_unchecked(desc));
    pg_sys::DecrTupleDescRefCount(desc);
    let attno = attno.unwrap_or_else(|| pgrx::error!("audit.hash_event() needs a row of audit.events"));
    let (hash, _) = event::hash_datums(|c| (!nulls[attno[c]]).then(|| values[attno[c]]));
    pg_sys::Datum::from(pgrx::varlena::rust_byte_slice_to_bytea(&hash).into_pg())
}

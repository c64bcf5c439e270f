#!/usr/bin/env python3
"""Verify audit_ext events outside the database: an independent implementation of
docs/hash-format.md, standard library only.

Whole log (reads standard input):
    psql -X -c "COPY (SELECT audit.export_json(e) FROM audit.events e ORDER BY chain, seq)
                TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')" > events.jsonl
    python3 tests/tools/verify_export.py < events.jsonl
(COPY writes the bytes as stored; psql's query output drops some code points. export_json
leaves old and new out when they are SQL NULL, so that a jsonb null stays apart.) A stretch
that retention dropped is crossed when the newest retention.applied event in the export
anchors it, as audit.verify() does.
Output: one line per chain, `chain N: M events ok` or the first bad event; exit status 1
if any chain is broken. `--hash-only` prints each event's recomputed hash instead.

Archives (`--segment`): retention drops whole partitions of audit.events, and
`audit.apply_retention(archive_dir => ...)` first writes each dropped partition to a file
(`events_0_20250101.jsonl`: the same JSON lines, ordered by chain, seq), so that the dropped
events stay verifiable outside the database. A partition holds a time range: in an archive a
chain usually starts mid-way (seq > 1) and may have gaps (events of that chain that fall in
other partitions).
    python3 tests/tools/verify_export.py --segment events_0_20250101.jsonl events_0_20250102.jsonl
The events of all files are combined before checking, so consecutive archives verify as one
longer run. Every event's hash is recomputed and consecutive seqs must link (prev_hash = hash
of seq - 1). The first event's prev_hash is taken as given and printed as the chain's anchor:
compare it with the last hash of the previous archive, or with audit.verify()'s anchor. A
missing seq range inside a chain is reported as a gap, not a failure. Files given without
`--segment` must hold whole chains (from seq 1, no gap).
With files or `--segment` the output is, per chain, `chain N: seq F..L, M events checked:
ok | ok with gaps | FAILED` followed by indented details (anchor, gaps, problems), then one
`summary: ...` line. Keys the hash does not cover (`retention_class`) are ignored.

Exit status: 0 no failure, 1 a chain failed, 2 bad input (unparseable line, missing field,
unreadable file). `--self-test` checks the script against the documented test vectors and
synthetic archives written to a temporary directory; no database needed.
"""
import argparse
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from decimal import Decimal

FORMAT_TAG = b"audit_ext:v1"
COLUMNS = [
    ("id", "int8"), ("at", "timestamptz"), ("chain", "int4"), ("seq", "int8"),
    ("actor", "text"), ("actor_ip", "inet"), ("session_id", "text"), ("application", "text"),
    ("action", "text"), ("status", "text"), ("severity", "text"), ("module", "text"),
    ("object_type", "text"), ("object_id", "text"), ("object_name", "text"),
    ("old", "jsonb"), ("new", "jsonb"), ("message", "text"), ("metadata", "jsonb"),
    ("txid", "int8"), ("prev_hash", "bytea"),
]
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def jsonb_text(v):
    """PostgreSQL's jsonb_out: object keys by (byte length, bytes); ', ' and ': '."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, Decimal)):
        return str(v)
    if isinstance(v, str):
        return json_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(jsonb_text(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(json_string(k) + ": " + jsonb_text(v[k]) for k in keys) + "}"
    raise TypeError(type(v))


# escape_json() in PostgreSQL: these seven by name, other control characters as \u00XX.
ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def json_string(s):
    return '"' + "".join(
        ESCAPES.get(ch) or ("\\u%04x" % ord(ch) if ord(ch) < 0x20 else ch) for ch in s
    ) + '"'


def timestamp_us(s):
    # PostgreSQL renders timestamptz in JSON as ISO 8601 with an offset.
    s = s.replace(" ", "T")
    if s[-3] in "+-" and s[-6] != ":" and ":" not in s[-6:]:
        s += ":00"
    dt = datetime.fromisoformat(s)
    delta = dt - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def field(kind, v):
    if v is None and kind != "jsonb":
        return b"\x00"
    if kind == "int4":
        b = int(v).to_bytes(4, "big", signed=True)
    elif kind == "int8":
        b = int(v).to_bytes(8, "big", signed=True)
    elif kind == "timestamptz":
        b = timestamp_us(v).to_bytes(8, "big", signed=True)
    elif kind == "text":
        b = v.encode("utf-8")
    elif kind == "inet":
        net = ipaddress.ip_interface(v)
        b = bytes([net.version, net.network.prefixlen]) + net.ip.packed
    elif kind == "jsonb":
        b = jsonb_text(v).encode("utf-8")   # None here is the jsonb null: "null"
    elif kind == "bytea":
        b = bytes.fromhex(v[2:] if v.startswith("\\x") else v)
    else:
        raise ValueError(kind)
    return b"\x01" + len(b).to_bytes(4, "big") + b


# A jsonb column left out of the object is SQL NULL; present with the value null it is the
# jsonb null, which the hash tells apart (audit.export_json(e) leaves NULL old and new out).
MISSING = object()


def event_hash(e):
    h = hashlib.sha256(FORMAT_TAG)
    for name, kind in COLUMNS:
        v = e.get(name, MISSING)
        if kind == "jsonb":
            h.update(field(kind, v) if v is not MISSING else b"\x00")
        else:
            h.update(field(kind, None if v is MISSING else v))
    return h.hexdigest()


# old and new may be left out (SQL NULL); every other column must be there
REQUIRED = [name for name, _ in COLUMNS if name not in ("old", "new")] + ["hash"]
HASH_RE = re.compile(r"\\x[0-9a-fA-F]{64}")


class BadInput(Exception):
    pass


class Event:
    """What the checks need of one input line; the parsed row itself is not kept."""
    __slots__ = ("id", "chain", "seq", "prev", "stored", "computed", "origin", "anchors")

    def __init__(self, e, origin):
        self.id, self.chain, self.seq = e["id"], e["chain"], e["seq"]
        self.prev = e["prev_hash"][2:].lower() if e["prev_hash"] is not None else None
        self.stored = e["hash"][2:].lower()
        self.computed = event_hash(e)
        self.origin = origin
        # a retention.applied event: the dropped stretches of every chain (docs/hash-format.md)
        self.anchors = None
        if e.get("action") == "retention.applied" and e.get("module") == "retention":
            new = e.get("new") if isinstance(e.get("new"), dict) else {}
            self.anchors = [(int(a["chain"]), int(a["from_seq"]), int(a["to_seq"]), str(a["to_hash"]).lower())
                            for a in new.get("anchors") or [] if isinstance(a, dict)]


def _no_constant(name):
    raise ValueError(f"{name} is not valid in jsonb")


def parse_event(text, origin):
    try:
        e = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except ValueError as x:
        raise BadInput(f"{origin}: not a JSON line: {x}")
    if not isinstance(e, dict):
        raise BadInput(f"{origin}: not a JSON object")
    missing = [k for k in REQUIRED if k not in e]
    if missing:
        raise BadInput(f"{origin}: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for k in ("id", "chain", "seq"):
        if not isinstance(e[k], int) or isinstance(e[k], bool):
            raise BadInput(f"{origin}: {k} is not an integer: {e[k]!r}")
    for k in ("hash", "prev_hash"):
        v = e[k]
        if not (v is None and k == "prev_hash") and not (isinstance(v, str) and HASH_RE.fullmatch(v)):
            raise BadInput(f"{origin}: {k} is not a 32-byte bytea such as \"\\\\x3f2a...\": {v!r}")
    try:
        return Event(e, origin)
    except (ValueError, TypeError, OverflowError, AttributeError, IndexError) as x:
        raise BadInput(f"{origin}: a field cannot be encoded as docs/hash-format.md says: {x!r}")


def load(paths):
    """The events of all files (standard input for none or "-"), in input order. Read line by
    line, keeping only what the checks need, so that memory stays small per event."""
    events = []
    for path in paths or ["-"]:
        name = "<stdin>" if path == "-" else path
        n = 0
        try:
            f = sys.stdin.buffer if path == "-" else open(path, "rb")
            try:
                # Binary lines end at b"\n" only: jsonb text may hold a raw U+2028 and the like,
                # which a text-mode reader or str.splitlines() would take for line ends.
                for n, raw in enumerate(f, 1):
                    line = raw.decode("utf-8")
                    if line.strip():
                        events.append(parse_event(line, f"{name}:{n}"))
            finally:
                if f is not sys.stdin.buffer:
                    f.close()
        except OSError as x:
            raise BadInput(f"{name}: cannot read: {x}")
        except UnicodeDecodeError as x:
            raise BadInput(f"{name}:{n}: not UTF-8: {x}")
    return events


def by_chain(events):
    chains = {}
    for e in events:
        chains.setdefault(e.chain, []).append(e)
    return {c: sorted(evs, key=lambda e: e.seq) for c, evs in sorted(chains.items())}


def retention_anchors(events):
    """The anchors of the newest retention.applied event of the export, {chain: [(from, to,
    to_hash hex)]}: the stretches retention dropped, as audit.verify() reads them. The event
    is itself in a chain that is verified here."""
    newest = max((e for e in events if e.anchors is not None), key=lambda e: e.id, default=None)
    out = {}
    for chain, a, b, h in (newest.anchors if newest else []):
        out.setdefault(chain, []).append((a, b, h))
    return out


def anchored(anchors, chain, want, seq, prev):
    """Whether seqs want..seq-1 of chain are exactly a dropped stretch and seq links to it."""
    return any(a == want and b == seq - 1 and prev == h for a, b, h in anchors.get(chain, []))


def legacy_report(events, from_anchor):
    """The original report for a whole export on standard input (tests grep its lines). A
    stretch that retention dropped (an anchor of the newest retention.applied event) is
    crossed, as audit.verify() crosses it."""
    bad = False
    anchors = retention_anchors(events)
    for chain, evs in by_chain(events).items():
        prev, want = None, evs[0].seq if from_anchor else 1
        problem = None
        crossed = 0
        for e in evs:
            if e.seq > want and anchored(anchors, chain, want, e.seq, e.prev):
                prev, want = e.prev, e.seq
                crossed += 1
            if e.seq != want:
                problem = f"seq gap at id {e.id}: expected seq {want}, found {e.seq}"
            elif prev is not None and (e.prev or "") != prev:
                problem = f"broken link at id {e.id} (seq {e.seq})"
            elif e.computed != e.stored:
                problem = f"hash mismatch at id {e.id} (seq {e.seq})"
            if problem:
                break
            prev, want = e.stored, e.seq + 1
        if problem:
            bad = True
            print(f"chain {chain}: {problem}")
        else:
            print(f"chain {chain}: {len(evs)} events ok"
                  + (f", across {plural(crossed, 'retention anchor')}" if crossed else ""))
    return 1 if bad else 0


def seq_range(a, b):
    return f"seq {a}" if a == b else f"seq {a}..{b}"


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def check_chain(evs, segment, anchors=None):
    """Problems (failures) and gaps (missing seq ranges) of one chain's events, sorted by seq.
    Without --segment, a start past seq 1 or a gap is accepted only as a stretch retention
    dropped (`anchors`, from the export's newest retention.applied event)."""
    problems, gaps = [], []
    anchors = anchors or {}
    chain = evs[0].chain
    if not segment and evs[0].seq != 1 and not anchored(anchors, chain, 1, evs[0].seq, evs[0].prev):
        problems.append(f"starts at seq {evs[0].seq}, not 1 (an archive? check it with --segment)")
    prev = None
    for e in evs:
        at = f"id {e.id} (seq {e.seq}, {e.origin})"
        if prev is not None and e.seq > prev.seq + 1 and not segment \
                and anchored(anchors, chain, prev.seq + 1, e.seq, e.prev):
            gaps.append((prev.seq + 1, e.seq - 1))   # dropped by retention, and linked across
        elif prev is not None and e.seq == prev.seq:
            problems.append(f"duplicate seq {e.seq}: id {prev.id} ({prev.origin}) and id {e.id} ({e.origin})")
        elif prev is not None and e.seq == prev.seq + 1:
            if e.prev != prev.stored:
                problems.append(f"broken link at {at}: prev_hash is not the hash of seq {prev.seq}")
        else:
            # The first event, or the first after a gap: its prev_hash is taken as given.
            if prev is not None:
                if segment:
                    gaps.append((prev.seq + 1, e.seq - 1))
                else:
                    problems.append(f"seq gap: {seq_range(prev.seq + 1, e.seq - 1)} missing before {at}")
            if e.seq == 1 and e.prev is not None:
                problems.append(f"prev_hash set on the first event of the chain, {at}")
            elif e.seq != 1 and e.prev is None:
                problems.append(f"no prev_hash at {at}")
        if e.computed != e.stored:
            problems.append(f"hash mismatch at {at}")
        prev = e
    return problems, gaps


MAX_PROBLEMS = 20


def report(events, segment, nfiles):
    nfailed = ngaps = 0
    chains = by_chain(events)
    anchors = {} if segment else retention_anchors(events)
    for chain, evs in chains.items():
        problems, gaps = check_chain(evs, segment, anchors)
        status = "FAILED" if problems else "ok with gaps" if gaps else "ok"
        print(f"chain {chain}: seq {evs[0].seq}..{evs[-1].seq}, {plural(len(evs), 'event')} checked: {status}")
        if evs[0].prev is not None:
            print(f"  anchor: prev_hash of seq {evs[0].seq} is \\x{evs[0].prev}")
        for a, b in gaps:
            print(f"  gap: {seq_range(a, b)} missing")
        for p in problems[:MAX_PROBLEMS]:
            print(f"  {p}")
        if len(problems) > MAX_PROBLEMS:
            print(f"  ... and {len(problems) - MAX_PROBLEMS} more problems")
        nfailed += bool(problems)
        ngaps += len(gaps)
    print(f"summary: {plural(len(chains), 'chain')}, {plural(len(events), 'event')} checked"
          f" from {plural(nfiles, 'input')}, {plural(ngaps, 'gap')}, {nfailed} failed: "
          + ("FAILED" if nfailed else "ok"))
    return 1 if nfailed else 0


# ---------------------------------------------------------------------------- self-test

VECTORS = [
    ({"id": 42, "at": "2026-03-10 14:30:45.123456+00", "chain": 1, "seq": 7,
      "actor": "admin@company.com", "actor_ip": "203.0.113.45", "session_id": "sess_abcdef123456",
      "application": "cloudpi", "action": "resource.modify", "status": "success",
      "severity": "info", "module": "compute", "object_type": "ec2_instance",
      "object_id": "i-0123456789abcdef", "object_name": "sales-reporting-app \u2603 \U0001F680",
      "old": {"state": "running"}, "new": {"tags": ["a", "b"], "state": "stopped"},
      "message": 'Stopped by policy\n"quoted"',
      "metadata": {"big": Decimal("12345678901234567890.5"), "amount": Decimal("1.10"),
                   "request_id": "req_xyz789"},
      "txid": 1000, "prev_hash": "\\x" + bytes(range(32)).hex()},
     "5874c3a55d8b053c1c2a459d5b77eebdf03381a9f05f4b0ac56be5ae809632b6"),
    ({"id": 1, "at": "2000-01-01 00:00:00+00", "chain": 0, "seq": 1, "actor": "postgres",
      "actor_ip": "2001:db8::1/64", "session_id": None, "application": None,
      "action": "authentication.login", "status": "failure", "severity": "warning",
      "module": None, "object_type": None, "object_id": None, "object_name": None,
      "message": None, "metadata": {}, "txid": 1, "prev_hash": None},   # old, new: SQL NULL (left out)
     "8a2fda3ce5ab38ab0c8ad45a87a6e7ec112c5a612f87c5b15f832d7cefa67260"),
]


def synthetic_log(nchains=2, nseq=12):
    """A whole log as to_jsonb(e) gives it (plus retention_class), hashes and links computed
    with this script's own functions: {(chain, seq): event}."""
    log, prev = {}, {}
    for seq in range(1, nseq + 1):
        for chain in range(nchains):
            i = 1000 + len(log)
            e = {
                "id": i, "at": f"2025-01-01T{seq // 60 % 24:02d}:{seq % 60:02d}:{chain % 60:02d}"
                + (f".{i % 1000000:06d}" if seq % 2 else "") + "-08:00",
                "chain": chain, "seq": seq, "actor": "\u00e4lice",
                "actor_ip": "2001:db8::7/64" if seq % 3 else f"10.0.0.{seq % 256}",
                "session_id": "s-1" if seq % 4 else None, "application": "app",
                "action": "export.e", "status": "success", "severity": "info", "module": None,
                "object_type": "doc", "object_id": str(seq), "object_name": f"name {seq} \U0001F680",
                "old": {"v": seq, "f": Decimal("1.10"), "deep": {"z": 1, "a": 'q"\\\n'}},
                "new": {"v": seq + 1, "big": Decimal("12345678901234567890.5")},
                "message": 'line1\nline2\t"q"\u2028', "metadata": {"k": seq}, "txid": 5000 + i,
                "prev_hash": prev.get(chain), "retention_class": seq % 2,
            }
            e["hash"] = "\\x" + event_hash(e)
            prev[chain] = e["hash"]
            log[(chain, seq)] = e
    return log


def rehash(e):
    e = dict(e)
    e["hash"] = "\\x" + event_hash(e)
    return e


def self_test():
    tmp = tempfile.mkdtemp(prefix="verify_export_")
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print(("ok   - " if ok else "FAIL - ") + name)
        if not ok and detail:
            print("       " + detail.rstrip().replace("\n", "\n       "))

    def write(name, events):
        path = os.path.join(tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            for e in sorted(events, key=lambda e: (e["chain"], e["seq"])):
                f.write(jsonb_text(e) + "\n")   # jsonb_out's text, as psql prints to_jsonb(e)
        return path

    def run(*args, stdin_path=None):
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        try:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), *args], stdin=stdin,
                               capture_output=True)
        finally:
            if stdin_path:
                stdin.close()
        return p.returncode, p.stdout.decode("utf-8") + p.stderr.decode("utf-8")

    def expect(name, want_rc, args, patterns=(), absent=(), stdin_path=None):
        rc, out = run(*args, stdin_path=stdin_path)
        ok = rc == want_rc and all(re.search(p, out, re.M) for p in patterns) \
            and not any(re.search(p, out, re.M) for p in absent)
        check(name, ok, f"exit {rc} (want {want_rc}); output:\n{out}")
        return out

    try:
        for i, (e, want) in enumerate(VECTORS, 1):
            check(f"test vector {i} of docs/hash-format.md", event_hash(e) == want, event_hash(e))
        log = synthetic_log()
        e = log[(0, 3)]
        check("retention_class and other extra keys are not hashed",
              event_hash(e) == event_hash(dict(e, retention_class=7)) == event_hash(
                  {k: v for k, v in e.items() if k != "retention_class"}))
        h = lambda chain, seq: log[(chain, seq)]["hash"].replace("\\", "\\\\")
        pick = lambda chains, seqs: [log[(c, s)] for c in chains for s in seqs]

        full = write("events.jsonl", log.values())
        expect("whole export on stdin: original output and exit 0", 0, [],
               [r"\Achain 0: 12 events ok\nchain 1: 12 events ok\n\Z"], stdin_path=full)
        tampered = dict(log)
        tampered[(1, 7)] = dict(log[(1, 7)], new={"v": 0})
        expect("whole export on stdin, a field changed: exit 1, names the event", 1, [],
               [r"^chain 0: 12 events ok$", rf"^chain 1: hash mismatch at id {log[(1, 7)]['id']} \(seq 7\)$"],
               stdin_path=write("events_tampered.jsonl", tampered.values()))
        expect("whole export as a file: whole chains pass without --segment", 0, [full],
               [r"^chain 0: seq 1\.\.12, 12 events checked: ok$", r"^summary: 2 chains, 24 events checked .*: ok\n\Z"],
               [r"anchor"])

        seg_a = write("events_0_20250101.jsonl", pick([0, 1], range(5, 9)))
        seg_b = write("events_0_20250102.jsonl", pick([0, 1], range(9, 13)))
        expect("clean segment (seq 5..8) passes with --segment, anchor printed", 0, ["--segment", seg_a],
               [r"^chain 0: seq 5\.\.8, 4 events checked: ok$", r"^chain 1: seq 5\.\.8, 4 events checked: ok$",
                rf"^  anchor: prev_hash of seq 5 is {h(0, 4)}$", r"^summary: .*: ok\n\Z"])
        expect("segment starting at seq 5 fails without --segment", 1, [seg_a],
               [r"^chain 0: seq 5\.\.8, 4 events checked: FAILED$", r"^  starts at seq 5, not 1",
                r"^summary: .*2 failed: FAILED\n\Z"])

        bad = pick([0, 1], range(5, 9))
        bad[5] = dict(bad[5], message="changed")          # chain 1, seq 6
        expect("segment with a modified field fails", 1,
               ["--segment", write("events_modified.jsonl", bad)],
               [r"^chain 0: seq 5\.\.8, 4 events checked: ok$", r"^chain 1: seq 5\.\.8, 4 events checked: FAILED$",
                rf"^  hash mismatch at id {bad[5]['id']} \(seq 6, "])
        bad = pick([0], range(5, 9))
        bad[2] = rehash(dict(bad[2], prev_hash="\\x" + "00" * 32))   # seq 7, consistent hash
        expect("segment with a broken link (re-hashed) fails", 1,
               ["--segment", write("events_relinked.jsonl", bad)],
               [rf"^  broken link at id {bad[2]['id']} \(seq 7, .*prev_hash is not the hash of seq 6$"],
               [r"hash mismatch"])

        expect("two consecutive segments combined pass as one run", 0, ["--segment", seg_a, seg_b],
               [r"^chain 0: seq 5\.\.12, 8 events checked: ok$", r"^chain 1: seq 5\.\.12, 8 events checked: ok$",
                rf"^  anchor: prev_hash of seq 5 is {h(1, 4)}$", r"^summary: 2 chains, 16 events checked from 2 inputs, 0 gaps, 0 failed: ok\n\Z"],
               [r"gap:"])
        expect("file order does not matter", 0, ["--segment", seg_b, seg_a],
               [r"^chain 0: seq 5\.\.12, 8 events checked: ok$"])
        # chain 0 from seq 9 on re-written with valid hashes onto another anchor
        relinked_b, prev = pick([0, 1], range(9, 13)), "\\x" + "ab" * 32
        for i in range(4):
            relinked_b[i] = rehash(dict(relinked_b[i], prev_hash=prev))
            prev = relinked_b[i]["hash"]
        seg_b_relinked = write("events_0_20250102_relinked.jsonl", relinked_b)
        expect("alone, a segment's first prev_hash is taken as given", 0, ["--segment", seg_b_relinked],
               [r"^  anchor: prev_hash of seq 9 is \\x(ab){32}$"])
        expect("combined, a broken link across two archives fails", 1, ["--segment", seg_a, seg_b_relinked],
               [rf"^  broken link at id {relinked_b[0]['id']} \(seq 9, "])

        holes = [e for e in pick([0, 1], range(5, 13)) if not (e["chain"] == 0 and e["seq"] in (7, 8, 10))]
        seg_holes = write("events_0_20250103.jsonl", holes)
        expect("seq gaps are reported, not failed, with --segment", 0, ["--segment", seg_holes],
               [r"^chain 0: seq 5\.\.12, 5 events checked: ok with gaps$", r"^  gap: seq 7\.\.8 missing$",
                r"^  gap: seq 10 missing$", r"^chain 1: seq 5\.\.12, 8 events checked: ok$",
                r"^summary: 2 chains, 13 events checked from 1 input, 2 gaps, 0 failed: ok\n\Z"])
        expect("seq gaps fail without --segment", 1, [seg_holes],
               [r"^chain 0: seq 5\.\.12, 5 events checked: FAILED$",
                r"^  seq gap: seq 7\.\.8 missing before id \d+ \(seq 9, ", r"^summary: .*: FAILED\n\Z"],
               [r"^  gap:"])
        expect("the same archive twice: duplicate seqs fail", 1, ["--segment", seg_a, seg_a],
               [r"^  duplicate seq 5: id \d+ \(.*:1\) and id \d+ \(.*:1\)$"])
        gapped_whole = [e for e in log.values() if not (e["chain"] == 1 and e["seq"] == 4)]
        expect("a gap in whole chains without --segment fails", 1,
               [write("events_gap.jsonl", gapped_whole)],
               [r"^  seq gap: seq 4 missing before id \d+ \(seq 5, "])
        first = pick([0], [1])
        first[0] = rehash(dict(first[0], prev_hash="\\x" + "00" * 32))
        expect("seq 1 with a prev_hash fails", 1, ["--segment", write("events_seq1.jsonl", first)],
               [r"^  prev_hash set on the first event of the chain"])

        # SQL NULL (left out) and the jsonb null (present, null) hash differently
        e = {k: v for k, v in log[(0, 2)].items() if k != "old"}
        check("a left-out jsonb column (SQL NULL) and a jsonb null hash differently",
              event_hash(e) != event_hash(dict(e, old=None)))
        # An export after retention: chain 0 seqs 1..4 dropped, anchored by a retention.applied
        # event on chain 1 (its own hash computed like any event's).
        kept = [ev for (c, q), ev in log.items() if not (c == 0 and q <= 4)]
        last1 = log[(1, 12)]
        applied = {k: v for k, v in last1.items() if k not in ("old",)}
        applied.update(id=9999, seq=13, action="retention.applied", module="retention", prev_hash=last1["hash"],
                       new={"anchors": [{"chain": 0, "from_seq": 1, "to_seq": 4, "to_hash": log[(0, 4)]["hash"][2:]}]})
        applied = rehash(applied)
        after = write("events_after_retention.jsonl", kept + [applied])
        expect("an export after retention verifies across the newest retention.applied anchors", 0, [],
               [r"^chain 0: 8 events ok, across 1 retention anchor$", r"^chain 1: 13 events ok$"], stdin_path=after)
        expect("the same as a file", 0, [after], [r"^chain 0: seq 5\.\.12, 8 events checked: ok"])
        wrong = rehash(dict(applied, new={"anchors": [{"chain": 0, "from_seq": 1, "to_seq": 4, "to_hash": "00" * 32}]}))
        expect("an anchor whose hash is not the one the next event links to does not explain the gap", 1, [],
               [r"^chain 0: seq gap at id \d+: expected seq 1, found 5$"],
               stdin_path=write("events_wrong_anchor.jsonl", kept + [wrong]))

        with open(os.path.join(tmp, "garbage.jsonl"), "w") as f:
            f.write(jsonb_text(log[(0, 1)]) + "\n{not json\n")
        expect("unparseable line: exit 2", 2, ["--segment", os.path.join(tmp, "garbage.jsonl")],
               [r"garbage\.jsonl:2: not a JSON line"])
        expect("unparseable line on stdin, original usage: exit 2", 2, [],
               [r"<stdin>:2: not a JSON line"], stdin_path=os.path.join(tmp, "garbage.jsonl"))
        missing = [dict(log[(0, 1)])]
        del missing[0]["txid"]
        expect("missing field: exit 2", 2, [write("missing.jsonl", missing)],
               [r"missing\.jsonl:1: missing field txid"])
        expect("unreadable file: exit 2", 2, [os.path.join(tmp, "no_such_file.jsonl")], [r"cannot read"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = results.count(False)
    print(f"self-test: {len(results) - failed} of {len(results)} checks passed"
          + ("" if not failed else f", {failed} FAILED"))
    return 1 if failed else 0


def check_checkpoint(events, path, public_key):
    """An export against a signed checkpoint (docs/hash-format.md "Checkpoints"): the Ed25519
    signature over the exact payload with the public key the auditor noted, then every chain's
    event at the checkpoint's seq must be in the export, verified, with that hash. Needs the
    `cryptography` package."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    cp = json.load(open(path, encoding="utf-8"))
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        key.verify(bytes.fromhex(cp["signature"]), cp["payload"].encode("utf-8"))
    except (InvalidSignature, ValueError, KeyError, TypeError) as x:
        print(f"checkpoint: the signature does not verify with key {public_key} ({type(x).__name__})")
        return 1
    payload = json.loads(cp["payload"])
    ours = {(e.chain, e.seq): e for e in events}
    failed = 0
    for c in payload["chains"]:
        e = ours.get((c["chain"], c["seq"]))
        if e is None:
            print(f"checkpoint: chain {c['chain']} seq {c['seq']} is not in the export")
            failed += 1
        elif e.computed != c["hash"].lower() or e.stored != c["hash"].lower():
            print(f"checkpoint: chain {c['chain']} seq {c['seq']} has changed since the checkpoint of {payload['at']}: the chain was rewritten")
            failed += 1
    print(f"checkpoint of {payload['at']}: signature valid, {len(payload['chains'])} chain head(s), {failed} failed: "
          + ("FAILED" if failed else "ok"))
    return 1 if failed else 0


def main(argv):
    p = argparse.ArgumentParser(
        description="Verify audit_ext events (JSON lines of to_jsonb(e)) outside the database.",
        epilog="Exit status: 0 ok, 1 a chain failed, 2 bad input.")
    p.add_argument("files", nargs="*", help="JSON-lines files, combined (default: standard input)")
    p.add_argument("--segment", action="store_true",
                   help="archives: chains may start at any seq, the first prev_hash is taken as "
                        "given and printed; seq gaps are reported, not failed")
    p.add_argument("--hash-only", action="store_true", help="print each event's id and recomputed hash")
    p.add_argument("--from-anchor", action="store_true",
                   help="original stdin report only: each chain may start at any seq")
    p.add_argument("--self-test", action="store_true", help="run the built-in checks (no database)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="also check the export against this signed checkpoint (audit.checkpoint()) ...")
    p.add_argument("--public-key", metavar="HEX", help="... with this Ed25519 public key (audit.signing_key())")
    args = p.parse_args(argv)
    if bool(args.checkpoint) != bool(args.public_key):
        p.error("--checkpoint and --public-key go together")
    if args.self_test:
        return self_test()
    if args.from_anchor and (args.files or args.segment):
        p.error("--from-anchor only applies to the original stdin report; use --segment")
    try:
        events = load(args.files)
    except BadInput as x:
        print(f"verify_export: bad input: {x}", file=sys.stderr)
        return 2
    if args.hash_only:
        for e in events:
            print(e.id, e.computed)
        return 0
    if not args.files and not args.segment:
        return legacy_report(events, args.from_anchor)
    rc = report(events, args.segment, len(args.files) or 1)
    if args.checkpoint:
        rc = max(rc, check_checkpoint(events, args.checkpoint, args.public_key))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

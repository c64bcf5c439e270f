#!/usr/bin/env python3
"""Verify audit_ext events outside the database: an independent implementation of
docs/hash-format.md, standard library only.

Input: JSON lines, one event per line, as produced by
    psql -XAt -c "select to_jsonb(e) from audit.events e order by chain, seq"
Output: one line per chain, `chain N: M events ok` or the first bad event; exit status 1
if any chain is broken. `--hash-only` prints each event's recomputed hash instead.
"""
import hashlib
import ipaddress
import json
import sys
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
    if v is None:
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
        b = jsonb_text(v).encode("utf-8")
    elif kind == "bytea":
        b = bytes.fromhex(v[2:] if v.startswith("\\x") else v)
    else:
        raise ValueError(kind)
    return b"\x01" + len(b).to_bytes(4, "big") + b


def event_hash(e):
    h = hashlib.sha256(FORMAT_TAG)
    for name, kind in COLUMNS:
        h.update(field(kind, e.get(name)))
    return h.hexdigest()


def main(argv):
    events = [json.loads(line, parse_float=Decimal) for line in sys.stdin if line.strip()]
    if "--hash-only" in argv:
        for e in events:
            print(e["id"], event_hash(e))
        return 0
    chains = {}
    for e in events:
        chains.setdefault(e["chain"], []).append(e)
    bad = False
    for chain in sorted(chains):
        evs = sorted(chains[chain], key=lambda e: e["seq"])
        prev, want = None, evs[0]["seq"] if "--from-anchor" in argv else 1
        problem = None
        for e in evs:
            stored = (e["hash"] or "")[2:]
            if e["seq"] != want:
                problem = f"seq gap at id {e['id']}: expected seq {want}, found {e['seq']}"
            elif prev is not None and (e["prev_hash"] or "")[2:] != prev:
                problem = f"broken link at id {e['id']} (seq {e['seq']})"
            elif event_hash(e) != stored:
                problem = f"hash mismatch at id {e['id']} (seq {e['seq']})"
            if problem:
                break
            prev, want = stored, e["seq"] + 1
        if problem:
            bad = True
            print(f"chain {chain}: {problem}")
        else:
            print(f"chain {chain}: {len(evs)} events ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

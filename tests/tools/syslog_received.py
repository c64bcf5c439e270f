#!/usr/bin/env python3
"""What a syslog receiver got from audit_ext's forwarders, checked against the log.

    syslog_received.py RECEIVED_FILE EXPECTED_TSV

RECEIVED_FILE: one RFC 5424 message a line, as rsyslog wrote it (template %rawmsg%).
EXPECTED_TSV: id, chain, seq, hash (hex) of each event that must have arrived, a line each.

Every received line is parsed with the published syslog-rfc5424-parser (tests/tools/deps.sh);
its structured data audit_ext@32473 must carry id, chain, seq and hash. Prints one line:
    lines=N parsed=N unparsed=N distinct=N duplicates=N missing=N mismatched=N extra=N
where missing counts expected events never received, mismatched those received with another
chain, seq or hash, extra those received that were not expected.
"""
import collections
import sys

from syslog_rfc5424_parser import SyslogMessage

received, expected = sys.argv[1], sys.argv[2]
want = {}
for row in open(expected, encoding='utf-8'):
    row = row.rstrip('\n')
    if row:
        i, chain, seq, h = row.split('\t')
        want[int(i)] = (int(chain), int(seq), h)

got = collections.Counter()
seen = {}
lines = parsed = unparsed = 0
for line in open(received, encoding='utf-8', errors='replace'):
    line = line.rstrip('\n')
    if not line:
        continue
    lines += 1
    try:
        sd = SyslogMessage.parse(line).as_dict()['sd']['audit_ext@32473']
        i = int(sd['id'])
        seen[i] = (int(sd['chain']), int(sd['seq']), sd['hash'])
        got[i] += 1
        parsed += 1
    except Exception:  # noqa: BLE001 - any line the parser rejects is counted
        unparsed += 1

missing = sum(1 for i in want if i not in got)
mismatched = sum(1 for i, v in want.items() if i in seen and seen[i] != v)
extra = sum(1 for i in got if i not in want)
duplicates = sum(n - 1 for n in got.values())
print(f"lines={lines} parsed={parsed} unparsed={unparsed} distinct={len(got)} duplicates={duplicates} "
      f"missing={missing} mismatched={mismatched} extra={extra}")

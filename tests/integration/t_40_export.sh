# The documented hash format, checked outside the database: the Python reference
# implementation (tests/tools/verify_export.py) verifies an export and spots tampering.
fresh_db audit_export
sql "SELECT audit.set_context('älice', '2001:db8::7/64', 's-1', 'app', '{\"tenant\": \"t\"}', local => false);
     SELECT count(audit.record('export.e', 'doc', i::text, 'name ' || i || ' 🚀',
            old => jsonb_build_object('v', i, 'f', 1.10, 'deep', jsonb_build_object('z', 1, 'a', E'q\"\\\\\\n')),
            new => jsonb_build_object('v', i + 1, 'big', 12345678901234567890.5),
            message => E'line1\nline2\t\"q\"', metadata => jsonb_build_object('k', i)))
     FROM generate_series(1, 200) i" >/dev/null
# the documented byte-exact export (docs/hash-format.md): COPY of audit.export_json(e)
export_events() {
  PGOPTIONS="-c timezone=America/Los_Angeles" psql -Xq -c "COPY (SELECT audit.export_json(e) FROM audit.events e
    ORDER BY chain, seq) TO STDOUT WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')"
}
out=$(export_events | python3 ../tools/verify_export.py) && rc=0 || rc=$?
assert_eq "0" "$rc" "the reference implementation verifies the exported chain"
assert_match "^chain [0-9]+: 200 events ok$" "$out" "it checked all 200 events"
# Code points psql's query output drops, backslashes, and SQL NULL beside jsonb null.
sql "SELECT audit.record('export.special', 'doc', 'x', E'nc \U0001FFFE \U0001FFFF \U000EFFFF \U0010FFFE \U0010FFFF',
            old => 'null'::jsonb, new => NULL, message => 'back\slash \x00 \\' || E'\u2028',
            metadata => jsonb_build_object('nc', E'\U0010FFFF', 'bs', '\'));
     SELECT audit.record('export.special', new => 'null'::jsonb)" >/dev/null
out=$(export_events | python3 ../tools/verify_export.py) && rc=0 || rc=$?
assert_eq "0|" "$rc|$(grep -v 'events ok$' <<<"$out")" \
  "noncharacter code points, backslashes and a jsonb null beside a SQL NULL verify outside, byte for byte"
naive=$(psql -XAtq -c "SELECT to_jsonb(e) FROM audit.events e ORDER BY chain, seq" | python3 ../tools/verify_export.py) && nrc=0 || nrc=$?
assert_eq "1" "$nrc" "(the naive export, psql's output of to_jsonb(e), does not: which is why the docs use COPY and export_json)"
tamper "UPDATE audit.events SET new = new || '{\"v\": 0}' WHERE seq = 77" >/dev/null
out=$(export_events | python3 ../tools/verify_export.py) && rc=0 || rc=$?
assert_eq "1" "$rc" "it fails on a tampered export"
assert_match "hash mismatch at id [0-9]+ \(seq 77\)" "$out" "and names the tampered event"
# Its own checks of archive segments (--segment: chains starting mid-way, gaps, links across
# files), which need no database.
out=$(python3 ../tools/verify_export.py --self-test 2>&1) && rc=0 || rc=$?
assert_eq "0" "$rc" "verify_export.py --self-test passes"
assert_match "self-test: ([0-9]+) of \1 checks passed" "$out" "every self-test check passed"

# The documented hash format, checked outside the database: the Python reference
# implementation (tests/tools/verify_export.py) verifies an export and spots tampering.
fresh_db audit_export
sql "SELECT audit.set_context('älice', '2001:db8::7/64', 's-1', 'app', '{\"tenant\": \"t\"}', local => false);
     SELECT count(audit.record('export.e', 'doc', i::text, 'name ' || i || ' 🚀',
            old => jsonb_build_object('v', i, 'f', 1.10, 'deep', jsonb_build_object('z', 1, 'a', E'q\"\\\\\\n')),
            new => jsonb_build_object('v', i + 1, 'big', 12345678901234567890.5),
            message => E'line1\nline2\t\"q\"', metadata => jsonb_build_object('k', i)))
     FROM generate_series(1, 200) i" >/dev/null
export_events() { PGOPTIONS="-c timezone=America/Los_Angeles" psql -XAtq -c "SELECT to_jsonb(e) FROM audit.events e ORDER BY chain, seq"; }
out=$(export_events | python3 ../tools/verify_export.py) && rc=0 || rc=$?
assert_eq "0" "$rc" "the reference implementation verifies the exported chain"
assert_match "^chain [0-9]+: 200 events ok$" "$out" "it checked all 200 events"
tamper "UPDATE audit.events SET new = new || '{\"v\": 0}' WHERE seq = 77" >/dev/null
out=$(export_events | python3 ../tools/verify_export.py) && rc=0 || rc=$?
assert_eq "1" "$rc" "it fails on a tampered export"
assert_match "hash mismatch at id [0-9]+ \(seq 77\)" "$out" "and names the tampered event"
# Its own checks of archive segments (--segment: chains starting mid-way, gaps, links across
# files), which need no database.
out=$(python3 ../tools/verify_export.py --self-test 2>&1) && rc=0 || rc=$?
assert_eq "0" "$rc" "verify_export.py --self-test passes"
assert_match "self-test: ([0-9]+) of \1 checks passed" "$out" "every self-test check passed"

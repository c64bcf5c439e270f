# The walkthrough `make demo` shows runs without error and ends with the expected verdicts.
fresh_db audit_demo_check --no-extension
out=$(psql -X -v ON_ERROR_STOP=1 -f ../../docs/demo.sql 2>&1) && rc=0 || rc=$?
assert_eq 0 "$rc" "docs/demo.sql runs to the end"
assert_match "hash mismatch: the event's content differs" "$out" "the demo shows verify naming the tampered event"
assert_match "noted head seq [0-9]+ has changed .*the chain was rewritten" "$out" "the demo shows the noted heads catching a rewrite"
assert_eq 3 "$(grep -c 'ERROR:  audit.events is append-only' <<<"$out")" "the demo shows UPDATE, DELETE and TRUNCATE refused"
assert_match "row\.update[ |]+public\.customers[ |]+1 " "$out" "the demo shows a captured update of the tracked table"
assert_match '"card_number": \{"new": "masked:[0-9a-f]{64}", "old": "masked:[0-9a-f]{64}"\}' "$out" "and the masked card number only as a keyed hash"
assert_match "permission\.grant[ |]+success[ |]+high" "$out" "the demo shows a search finding the high-severity grant"
assert_match "all events up to seq [0-9]+ were dropped by retention|verified across retention anchor" "$out" \
  "the demo shows verify passing after retention dropped the old page views"

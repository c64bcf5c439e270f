# Tampering that a superuser commits (the guards switched off) is found by verify, which
# names the first affected event; the chain's noted head catches a truncated tail.
fresh_db audit_tamper
sql "SELECT count(audit.record('t.e', 'obj', i::text, message => 'event ' || i)) FROM generate_series(1, 50) i" >/dev/null
heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")
id_at() { sql "SELECT id FROM audit.events WHERE seq = $1"; }
first_bad() { sql "SELECT first_bad_id FROM audit.verify() WHERE NOT ok"; }

assert_eq "true|50" "$(sql "SELECT bool_and(ok) || '|' || sum(events_checked) FROM audit.verify()")" "verify passes on 50 untouched events"

sql_expect_error 42501 "UPDATE audit.events SET message = 'x' WHERE seq = 10" "UPDATE by the superuser is refused (42501)"
sql_expect_error 42501 "DELETE FROM audit.events WHERE seq = 10" "DELETE by the superuser is refused (42501)"
sql_expect_error 42501 "TRUNCATE audit.events" "TRUNCATE by the superuser is refused (42501)"

# 1. A changed column, the trigger disabled (after the event trigger that refuses that), committed.
id=$(id_at 10)
sql_expect_error 42501 "ALTER TABLE audit.events DISABLE TRIGGER append_only" "disabling the append-only trigger is refused (42501)"
tamper "UPDATE audit.events SET message = 'edited' WHERE seq = 10"
assert_eq "$id" "$(first_bad)" "changed column found at that event"
sql_expect_error 42501 "SET session_replication_role = replica; UPDATE audit.events SET message = 'event 10' WHERE seq = 10" \
  "replica mode does not skip the guards (enabled ALWAYS)"
tamper "UPDATE audit.events SET message = 'event 10' WHERE seq = 10"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "restoring the original value restores integrity"

# 2. Replica mode, then the hash recomputed to cover it: the next link breaks.
tamper "UPDATE audit.events SET actor = 'mallory' WHERE seq = 20;
     UPDATE audit.events e SET hash = audit.hash_event(e) WHERE seq = 20"
assert_eq "$(id_at 21)" "$(first_bad)" "rehashed edit found at the next event's link"
assert_match "^broken link" "$(sql "SELECT reason FROM audit.verify() WHERE NOT ok")" "reason names the broken link"
fresh_db audit_tamper
sql "SELECT count(audit.record('t.e', 'obj', i::text)) FROM generate_series(1, 50) i" >/dev/null
heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")

# 3. Deleted from the middle.
id=$(id_at 31)
tamper "DELETE FROM audit.events WHERE seq = 30"
assert_eq "$id" "$(first_bad)" "deleted event found: the next event reports the gap"
assert_match "^seq gap: expected seq 30, found seq 31" "$(sql "SELECT reason FROM audit.verify() WHERE NOT ok")" "reason names the missing seq"
fresh_db audit_tamper
sql "SELECT count(audit.record('t.e', 'obj', i::text)) FROM generate_series(1, 50) i" >/dev/null
heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")

# 4. Truncated tail: invisible without heads, reported with them.
tamper "DELETE FROM audit.events WHERE seq > 45"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "a truncated tail looks whole without noted heads"
assert_match "^false\|50\|noted head seq 50 is missing" "$(sql "SELECT ok || '|' || first_bad_seq || '|' || reason FROM audit.verify(heads => '$heads')")" \
  "the noted head reveals the truncated tail"

# 5. A forged event with the guards off, hashed and linked correctly: again only heads catch it
#    once the tail is rewritten, but a forged event with a wrong link is caught at once.
tamper "INSERT INTO audit.events (id, at, chain, seq, actor, action, status, severity, metadata, txid, prev_hash, hash)
     SELECT max(id) + 1, now(), min(chain), max(seq) + 1, 'mallory', 'forged', 'success', 'info', '{}', 1, '\\x00', '\\x00' FROM audit.events"
assert_eq "$(sql "SELECT id FROM audit.events WHERE action = 'forged'")" "$(first_bad)" "forged event found"

# 6. Swapped events.
fresh_db audit_tamper
sql "SELECT count(audit.record('t.e', 'obj', i::text)) FROM generate_series(1, 50) i" >/dev/null
tamper "UPDATE audit.events SET seq = -seq WHERE seq IN (12, 13);
     UPDATE audit.events SET seq = CASE seq WHEN -12 THEN 13 ELSE 12 END WHERE seq < 0"
assert_eq "12" "$(sql "SELECT first_bad_seq FROM audit.verify() WHERE NOT ok")" "swapped events found at the first of them"

# Recording still works after all this, and a clean log verifies.
fresh_db audit_tamper
sql "SELECT count(audit.record('t.e')) FROM generate_series(1, 10) i" >/dev/null
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify(heads => (SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h))")" \
  "a clean log verifies against its own heads"

# A guard switched off and left off is itself reported, before any event is touched.
fresh_db audit_guards
sql "SELECT audit.record('g.e')" >/dev/null
sql "ALTER EVENT TRIGGER audit_ext_ddl_drop DISABLE" >/dev/null
assert_eq "false|guards: event trigger audit_ext_ddl_drop is disabled" \
  "$(sql "SELECT bool_and(ok) || '|' || string_agg(reason, '') FILTER (WHERE chain IS NULL) FROM audit.verify()")" \
  "verify reports a disabled event trigger as a row with chain NULL"
sql "ALTER EVENT TRIGGER audit_ext_ddl_drop ENABLE" >/dev/null
assert_match "false\|.*not enabled ALWAYS" "$(sql "SELECT bool_and(ok) || '|' || string_agg(reason, '') FILTER (WHERE chain IS NULL) FROM audit.verify()")" \
  "re-enabled as an ordinary (not ALWAYS) event trigger, verify still reports it: replica mode would skip it"
sql "ALTER EVENT TRIGGER audit_ext_ddl_drop ENABLE ALWAYS" >/dev/null
assert_eq "true|0" "$(sql "SELECT bool_and(ok) || '|' || count(*) FILTER (WHERE chain IS NULL) FROM audit.verify()")" "re-enabled, verify passes again (no guards row)"

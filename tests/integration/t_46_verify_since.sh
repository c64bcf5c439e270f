# Incremental verification (issue 14): audit.verify(since => <noted heads or a checkpoint>)
# checks each noted head and only the events after it. It finds tampering after the heads and
# at them, counts exactly the new events, relies on a checkpoint only when its signature holds,
# follows a noted head that retention dropped, and does not look before the heads (what a full
# audit.verify() is for).
fresh_db audit_since
sql "ALTER DATABASE audit_since SET audit_ext.chains = 1" >/dev/null
sql "SET client_min_messages = warning; DROP ROLE IF EXISTS since_reader; CREATE ROLE since_reader LOGIN IN ROLE audit_reader;
     DROP ROLE IF EXISTS since_viewer; CREATE ROLE since_viewer LOGIN IN ROLE audit_viewer;
     DROP ROLE IF EXISTS since_writer; CREATE ROLE since_writer LOGIN IN ROLE audit_writer" -d postgres >/dev/null
sql "SELECT count(audit.record('s.e', 'obj', i::text, message => 'event ' || i)) FROM generate_series(1, 1000) i" >/dev/null
heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")
noted=$(sql "SELECT max(seq) FROM audit.events")
sql "SELECT count(audit.record('s.e', 'obj', i::text, message => 'new ' || i)) FROM generate_series(1, 25) i" >/dev/null
id_at() { sql "SELECT id FROM audit.events WHERE seq = $1"; }
since() { sql "SELECT ok || '|' || events_checked || '|' || coalesce(first_bad_id::text, '') || '|' || coalesce(reason, '')
               FROM audit.verify(since => '$1') WHERE chain IS NOT NULL"; }

# (each verify is itself recorded, after the noted heads: `after` counts what a call must check)
after() { sql "SELECT count(*) FROM audit.events WHERE chain = (SELECT min(chain) FROM audit.events) AND seq > $noted"; }
assert_eq "true|25" "$(sql "SELECT bool_and(ok) || '|' || sum(events_checked) FROM audit.verify(since => '$heads')")" \
  "verify(since => heads) passes and checks exactly the 25 new events, not the $noted before"
n=$(after)
assert_match "^true\|$n\|\|checked the $n event\(s\) after noted head seq $noted$" "$(since "$heads")" \
  "its reason says how many events after which noted head"
n=$(after)
assert_eq "true|$n" "$(psql -XAtq -U since_reader -c "SELECT bool_and(ok) || '|' || sum(events_checked) FROM audit.verify(since => '$heads')")" \
  "a member of audit_reader verifies incrementally"
n=$(after)
assert_eq "true|$n" "$(psql -XAtq -U since_viewer -c "SELECT bool_and(ok) || '|' || sum(events_checked) FROM audit.verify(since => '$heads')")" \
  "a viewer, who sees only its own events, still checks every new event"
PGUSER=since_writer sql_expect_error 42501 "SELECT * FROM audit.verify(since => '$heads')" "a writer may not verify (42501)"
assert_eq "4" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.verify' AND new->'arguments'->'since' ? 'heads'")" \
  "each call is recorded as an audit.verify event naming the heads it started from"

# Errors: since alone, and well-formed heads.
sql_expect_error 22023 "SELECT * FROM audit.verify(1, since => '$heads')" "since with from_id is refused (22023)"
sql_expect_error 22023 "SELECT * FROM audit.verify(heads => '$heads', since => '$heads')" "since with heads is refused (22023)"
sql_expect_error 22023 "SELECT * FROM audit.verify(since => '[{\"chain\": 0}]')" "a head without seq and hash is refused (22023)"
sql_expect_error 22023 "SELECT * FROM audit.verify(since => '7')" "a number is neither heads nor a checkpoint (22023)"

# A signed checkpoint as the starting point.
cp=$(sql "SELECT audit.checkpoint()")
sql "SELECT count(audit.record('s.e', 'obj', i::text)) FROM generate_series(1, 10) i" >/dev/null
# the checkpoint's own event, then the 10
assert_eq "true|11|true" "$(sql "SELECT bool_and(ok) || '|' || sum(events_checked) FILTER (WHERE chain IS NOT NULL) || '|' || bool_or(chain IS NULL AND reason LIKE 'checkpoint of %signature valid%') FROM audit.verify(since => '$cp')")" \
  "verify(since => checkpoint) checks the signature, then only the 11 events after it"
bad_cp=$(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); c["payload"]=c["payload"].replace("\"seq\":", "\"seq\": ", 1); print(json.dumps(c))' "$cp")
assert_match "^false\|[0-9]+\|checkpoint: its signature does not match" \
  "$(sql "SELECT bool_and(ok) || '|' || sum(events_checked) || '|' || string_agg(reason, '') FILTER (WHERE chain IS NULL) FROM audit.verify(since => '$bad_cp')")" \
  "a checkpoint whose payload was edited is not relied on (not ok)"
total=$(sql "SELECT count(*) FROM audit.events")
assert_eq "$total" "$(sql "SELECT sum(events_checked) FROM audit.verify(since => '$bad_cp') WHERE chain IS NOT NULL")" \
  "and the whole log is checked instead of the events after it"

# 1. An event after the noted heads changed: found, by id.
id=$(id_at $((noted + 5)))
tamper "UPDATE audit.events SET message = 'edited' WHERE seq = $((noted + 5))"
assert_match "^false\|4\|$id\|hash mismatch" "$(since "$heads")" "an edited event after the noted head is found at that event"
tamper "UPDATE audit.events SET message = 'new 5' WHERE seq = $((noted + 5))"
assert_match "^true" "$(since "$heads")" "and the original value restores it"

# 2. Before the noted heads: not read (a full verify finds it).
tamper "UPDATE audit.events SET message = 'edited' WHERE seq = 10"
assert_match "^true\|" "$(since "$heads")" "an event before the noted heads is not read by since"
assert_eq "$(id_at 10)" "$(sql "SELECT first_bad_id FROM audit.verify() WHERE NOT ok")" "a full verify finds it"
tamper "UPDATE audit.events SET message = 'event 10' WHERE seq = 10"

# 3. The noted head itself: its content, its hash, a rehash that keeps the next link, deletion.
hid=$(id_at "$noted")
tamper "UPDATE audit.events SET message = 'edited' WHERE seq = $noted"
assert_match "^false\|0\|$hid\|hash mismatch at noted head seq $noted" "$(since "$heads")" "an edited noted head is found"
tamper "UPDATE audit.events e SET hash = audit.hash_event(e) WHERE seq = $noted"
assert_match "^false\|0\|$hid\|noted head seq $noted has changed" "$(since "$heads")" "a rehashed noted head differs from the noted hash"
tamper "UPDATE audit.events SET message = 'event 1000' WHERE seq = $noted; UPDATE audit.events e SET hash = audit.hash_event(e) WHERE seq = $noted"
assert_match "^true" "$(since "$heads")" "put back, it verifies again"

# 4. A rewritten tail: events after the noted head hashed again and relinked, which a plain
#    verify cannot see, breaks at the link to the noted head.
tamper "UPDATE audit.events SET message = 'forged' WHERE seq = $((noted + 1));
        UPDATE audit.events e SET hash = audit.hash_event(e) WHERE seq = $((noted + 1))"
assert_match "^false\|1\|$(id_at $((noted + 2)))\|broken link" "$(since "$heads")" "a rehashed event after the head breaks the next link"

# 5. Deleted events after the head: a gap; the head deleted: missing.
fresh_db audit_since
sql "ALTER DATABASE audit_since SET audit_ext.chains = 1" >/dev/null
sql "SELECT count(audit.record('s.e', 'obj', i::text)) FROM generate_series(1, 100) i" >/dev/null
heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")
noted=$(sql "SELECT max(seq) FROM audit.events")
sql "SELECT count(audit.record('s.e', 'obj', i::text)) FROM generate_series(1, 10) i" >/dev/null
tamper "DELETE FROM audit.events WHERE seq = $((noted + 3))"
assert_match "^false\|2\|$(id_at $((noted + 4)))\|seq gap: expected seq $((noted + 3))" "$(since "$heads")" "a deleted event after the head is a gap"
tamper "DELETE FROM audit.events WHERE seq = $noted"
assert_match "^false\|0\|\|noted head seq $noted is missing" "$(since "$heads")" "a deleted noted head is missing"
sql_expect_error 22023 "SELECT * FROM audit.verify(since => '[{\"chain\": 0, \"seq\": 1, \"hash\": \"00\"}]')" \
  "a noted hash that is not 32 bytes is refused (22023)"

# 6. A chain that began after the heads were noted is checked whole.
fresh_db audit_since
sql "ALTER DATABASE audit_since SET audit_ext.chains = 1" >/dev/null
sql "SELECT count(audit.record('s.e', 'obj', i::text)) FROM generate_series(1, 30) i" >/dev/null
heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")
sql "SELECT count(*) FROM audit.set_retention('30 days', 'page.*')" >/dev/null
sql "SELECT audit.record('page.view', 'page', 'x')" >/dev/null
assert_eq "1|true" "$(sql "SELECT count(*) FILTER (WHERE chain >= 1000) || '|' || bool_and(ok) FROM audit.verify(since => '$heads')")" \
  "every chain intact: the noted one from its head on, and the new class's chain"
assert_match "^1\|not in the noted heads: the chain began after they were noted" \
  "$(sql "SELECT events_checked || '|' || reason FROM audit.verify(since => '$heads') WHERE chain >= 1000")" \
  "the new class's chain is checked whole (its one event) and says it began after the heads were noted"

# 7. A noted head that retention dropped: checking starts at the retention anchor, which the
#    dropped partition backs.
fresh_db audit_since
sql "ALTER DATABASE audit_since SET audit_ext.chains = 1" >/dev/null
sql "SELECT count(*) FROM audit.set_retention('30 days', 'page.*')" >/dev/null
sql "SET audit_ext.partition_worker = off; INSERT INTO audit.events (action, at, retention_class, object_id)
     SELECT 'page.view', now() - interval '90 days' + g * interval '1 minute', audit.retention_class('page.view'), g::text
     FROM generate_series(1, 40) g" >/dev/null
sql "SELECT count(*) FROM audit.ensure_partitions(interval '0')" >/dev/null
heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")
pchain=$(sql "SELECT chain FROM audit.events WHERE action = 'page.view' LIMIT 1")
sql "SELECT count(audit.record('page.view', 'page', i::text)) FROM generate_series(1, 6) i" >/dev/null
assert_eq "40" "$(sql "SELECT sum(events) FROM audit.apply_retention()")" "retention drops the 40 old page views"
assert_match "^true\|6\|noted head seq 40 was dropped by retention \(anchor up to seq 40\); checked the 6 event\(s\) after noted head seq 40" \
  "$(sql "SELECT ok || '|' || events_checked || '|' || reason FROM audit.verify(since => '$heads') WHERE chain = $pchain")" \
  "a noted head dropped by retention: the anchor matches it, and the 6 later events are checked"
forged=$(python3 -c 'import json,sys; h=json.loads(sys.argv[1]); [x.update(hash="\\x"+"ab"*32) for x in h if x["chain"]==int(sys.argv[2])]; print(json.dumps(h))' "$heads" "$pchain")
assert_match "^false\|noted head seq 40 differs from its retention anchor" \
  "$(sql "SELECT ok || '|' || reason FROM audit.verify(since => '$forged') WHERE chain = $pchain")" \
  "a noted hash that differs from the retention anchor is reported"

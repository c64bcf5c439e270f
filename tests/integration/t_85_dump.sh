# pg_dump / pg_restore (issue 4, section 4): the dump holds every event; restored into a new
# cluster in restore mode, verify passes against the heads noted before the dump, recording
# continues on the same chains, and capture, masking and alert rules carry over.
fresh_db audit_dump
sql "CREATE TABLE orders (id int PRIMARY KEY, card text, total int);
     SELECT audit.track('orders', mask_columns => '{card}');
     INSERT INTO orders VALUES (1, '4111-1111', 10), (2, '5500-0000', 20);
     UPDATE orders SET total = 11 WHERE id = 1;
     SELECT audit.create_alert('three-failures', 'status:failure', threshold => 3)" >/dev/null
cat >"$T_RESULTS.pgb" <<'SQL'
SELECT audit.record('dump.e', 'obj', :client_id::text, metadata => '{"k": "v"}');
SQL
pgbench -n -c 4 -j 2 -t 100 -f "$T_RESULTS.pgb" >/dev/null 2>&1
# Retention before the dump: a second class, old events dropped (anchors), a newer one kept.
sql "SELECT count(*) FROM audit.set_retention('30 days', 'page.*');
     SET audit_ext.partition_worker = off;
     INSERT INTO audit.events (action, at, retention_class)
     SELECT 'page.view', now() - interval '90 days', audit.retention_class('page.view') FROM generate_series(1, 20);
     SELECT count(*) FROM audit.ensure_partitions(interval '0');
     SELECT count(*) FROM audit.apply_retention();
     SELECT audit.record('page.view');" >/dev/null
retention_state="SELECT (SELECT string_agg(name || ':' || class || ':' || (dropped_at IS NOT NULL), ',' ORDER BY name) FROM audit.partitions)
                 || '|' || (SELECT string_agg(pattern || ':' || coalesce(keep::text, 'forever'), ',' ORDER BY class) FROM audit.retention)
                 || '|' || (SELECT string_agg(chain || ':' || to_seq || ':' || encode(to_hash, 'hex'), ',' ORDER BY chain, from_seq) FROM audit.retention_anchors)
                 || '|' || (SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit.events'::regclass)"
retention_before=$(sql "$retention_state")
n=$(sql "SELECT count(*) FROM audit.events")
chains=$(sql "SELECT count(DISTINCT chain) FROM audit.events")
heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")
max_id=$(sql "SELECT max(id) FROM audit.events")
marker=$(sql "SELECT new ->> 'card' FROM audit.events WHERE action = 'row.insert' AND object_id = '1'")
work=$(mktemp -d); chmod 755 "$work"
pg_dump -Fc -f "$work/audit.dump" audit_dump
assert_match "^[0-9]+$" "$n" "the source holds $n events on $chains chain(s)"

tools="$(dirname "$PWD")/tools"
rport=$((${TEST_PORT:-5498} - 30))
"$tools/cluster.sh" start restore "$rport" postgres >/dev/null
trap '"$tools/cluster.sh" stop restore >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
eval "$("$tools/cluster.sh" env restore audit_restored)"

# A superuser's plain pg_restore, with no settings, as DBAs run it every day: pg_restore names
# itself (application_name), and audit_ext restores as in restore mode. Every event comes back
# and verifies against the heads noted before the dump; nothing new is interleaved.
fresh_db audit_restored --no-extension
out=$(pg_restore --exit-on-error -d audit_restored "$work/audit.dump" 2>&1) && rc=0 || rc=$?
assert_eq "0|" "$rc|$out" "a plain pg_restore (no settings) succeeds, without a warning"
assert_eq "$n|true|$((chains))" "$(sql "SELECT (SELECT count(*) FROM audit.events) || '|' || bool_and(ok) || '|' || count(*)
                                        FROM audit.verify(heads => '$heads')")" \
  "it restores every event, and verify passes against the heads noted before the dump"
# Replaying the dump's SQL with psql (not pg_restore) without restore mode refuses the events,
# loudly, with the fix in the hint.
fresh_db audit_restored --no-extension
pg_restore -f "$work/plain.sql" "$work/audit.dump"
out=$(psql -X -q -d audit_restored -f "$work/plain.sql" 2>&1) || true
assert_match "assigned by audit_ext.*audit_ext\.restore=on" "$(tr '\n' ' ' <<<"$out")" \
  "replaying the dump with psql outside restore mode refuses the events, naming the fix (PGOPTIONS='-c audit_ext.restore=on')"

fresh_db audit_restored --no-extension
out=$(PGOPTIONS='-c audit_ext.restore=on' pg_restore --exit-on-error -d audit_restored "$work/audit.dump" 2>&1) && rc=0 || rc=$?
assert_eq "0|" "$rc|$out" "pg_restore in restore mode succeeds, without a warning"
assert_eq "$n" "$(sql "SELECT count(*) FROM audit.events")" "every event is in the restored database"
# (heads first: verify records itself, an audit.verify event that moves a head)
assert_eq "$heads" "$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")" "the chain heads are the same"
assert_eq "true|$((chains))" "$(sql "SELECT bool_and(ok) || '|' || count(*) FROM audit.verify(heads => '$heads')")" \
  "verify passes on every chain, against the heads noted before the dump"
assert_eq "$retention_before" "$(sql "$retention_state")" \
  "partitions (same names and classes), policies and retention anchors are restored"
assert_eq "0" "$(sql "SELECT count(*) FROM pg_inherits i WHERE i.inhparent = 'audit.events'::regclass
                     AND (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = i.inhrelid AND t.tgenabled = 'A'
                          AND t.tgname IN ('zz_chain_event', 'append_only', 'zz_alerts')) <> 3")" \
  "every restored partition has its guards"
assert_eq "0" "$(sql "SELECT count(*) FROM pg_inherits i WHERE i.inhparent = 'audit.events'::regclass
                     AND (SELECT count(*) FROM pg_index x WHERE x.indrelid = i.inhrelid) <> 6")" \
  "and its six indexes"
assert_eq "0" "$(sql "SELECT count(*) FROM audit.events WHERE action LIKE 'ddl.%' AND id > $max_id")" \
  "the restore's own DDL was not recorded as new events"

# Recording continues on the same chains, with ids after the restored ones.
sql "SELECT audit.record('after.restore')" >/dev/null
assert_eq "true|true|true" "$(sql "SELECT (e.id > $max_id) || '|' || (e.seq = h.seq + 1 AND e.prev_hash = h.hash) || '|' ||
                             (SELECT bool_and(ok) FROM audit.verify())
                      FROM audit.events e JOIN jsonb_to_recordset('$heads') h(chain int, seq bigint, hash bytea) USING (chain)
                      WHERE e.action = 'after.restore'")" \
  "a new event continues an existing chain (next seq, linked to the old head) and verify passes"

sql "SELECT audit.record('page.view')" >/dev/null
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "a new event of the retention class continues its chain too"
sql_expect_error 42501 "DROP TABLE audit.$(sql "SELECT name FROM audit.partitions WHERE dropped_at IS NULL ORDER BY from_at LIMIT 1")" \
  "restored partitions are guarded against DROP"

# Capture, masking and alert rules carried over.
sql "UPDATE orders SET card = '4111-1111' WHERE id = 2" >/dev/null
assert_eq "$marker" "$(sql "SELECT new ->> 'card' FROM audit.events WHERE action = 'row.update' AND object_id = '2' ORDER BY id DESC LIMIT 1")" \
  "the restored table is still tracked, with the same mask key (equal values, equal markers)"
assert_eq "public.orders|true" "$(sql "SELECT table_name || '|' || intact FROM audit.tracked_tables")" "its capture is intact"
assert_eq "three-failures" "$(sql "SELECT name FROM audit.alerts")" "alert rules are restored"

# A changed event in the dump is refused at restore time.
pg_restore -f "$work/audit.sql" "$work/audit.dump"
python3 - "$work/audit.sql" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p, encoding="utf-8").read()
s, n = re.subn(r"(\tdump\.e\tsuccess)", "\tdump.x\tsuccess", s, count=1)
assert n == 1, "no dump.e row found in the dump"
open(p, "w", encoding="utf-8").write(s)
PY
fresh_db audit_restored --no-extension
out=$(PGOPTIONS='-c audit_ext.restore=on' psql -X -q -v ON_ERROR_STOP=1 -d audit_restored -f "$work/audit.sql" 2>&1) && rc=0 || rc=$?
assert_match "restored event [0-9]+ does not match its hash" "$out" "a dump with a changed event is refused at restore"
"$tools/cluster.sh" stop restore >/dev/null

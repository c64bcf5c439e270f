# Retention against committed data (issue 4): the partition worker, archives verified outside
# the database, chains whose newest events were all dropped, and retention while writers run.
fresh_db audit_retention
verify_export="$TOOLS/verify_export.py"

# 1. Partitions ahead, by the worker. A database made with daily partitions (7 days ahead)
# switches to monthly ones: the next event finds its class covered for less than a period and
# starts the worker, which creates monthly partitions, clipped around the daily ones, with no
# gap, three months ahead.
sql "DROP DATABASE IF EXISTS audit_retention_worker WITH (FORCE)" -d postgres >/dev/null 2>&1
sql "CREATE DATABASE audit_retention_worker; ALTER DATABASE audit_retention_worker SET audit_ext.partition_period = 'day'" -d postgres
PGDATABASE=audit_retention_worker sql "CREATE EXTENSION audit_ext"
assert_eq "8|true" "$(PGDATABASE=audit_retention_worker sql "SELECT count(*) || '|' || (max(to_at) - now() < interval '9 days') FROM audit.partitions")" \
  "with daily partitions, CREATE EXTENSION makes today and 7 days ahead"
sql "ALTER DATABASE audit_retention_worker SET audit_ext.partition_period = 'month'" -d postgres
PGDATABASE=audit_retention_worker sql "SELECT audit.record('tick')" >/dev/null
ahead=""
for _ in $(seq 1 60); do
  ahead=$(PGDATABASE=audit_retention_worker sql "SELECT max(to_at) > now() + interval '2 months' FROM audit.partitions")
  [ "$ahead" = t ] && break
  sleep 0.25
done
assert_eq "t" "$ahead" "the worker, started by a writer, created partitions more than two months ahead"
assert_eq "0" "$(PGDATABASE=audit_retention_worker sql "SELECT count(*) FROM generate_series(now(), now() + interval '2 months', interval '1 hour') t
                  WHERE NOT EXISTS (SELECT FROM audit.partitions p WHERE p.from_at <= t AND t < p.to_at)")" \
  "without a gap between the daily and the monthly ones"
sql "DROP DATABASE audit_retention_worker WITH (FORCE)" -d postgres

# An event whose month has no partition lands in the default partition and is kept;
# ensure_partitions gives it a partition of its own.
sql "INSERT INTO audit.events (action, at) VALUES ('future.thing', now() + interval '200 days')" >/dev/null
assert_eq "audit.events_default" "$(sql "SELECT tableoid::regclass FROM audit.events WHERE action = 'future.thing'")" \
  "an event without a partition waits in the default partition"
sql "SELECT count(*) FROM audit.ensure_partitions(interval '0')" >/dev/null
assert_match "^audit\.events_0_[0-9]{8}$" "$(sql "SELECT tableoid::regclass FROM audit.events WHERE action = 'future.thing'")" \
  "ensure_partitions moved it into a partition of its own"
assert_eq "0|true" "$(sql "SELECT (SELECT count(*) FROM ONLY audit.events_default) || '|' || (SELECT bool_and(ok) FROM audit.verify())")" \
  "the default partition is empty again and the chain verifies"

# Back-dated writers while ensure_partitions moves their months out of the default partition:
# each waits for the move and routes to the new partition; none fails.
cat >"$T_RESULTS.old" <<'SQL'
INSERT INTO audit.events (action, at) VALUES ('backdated', now() - interval '35 days' - random() * interval '300 days');
SQL
PGOPTIONS='-c audit_ext.partition_worker=off' pgbench -n -c 4 -j 2 -T 4 -f "$T_RESULTS.old" >"$T_RESULTS.pgo" 2>&1 &
bench=$!
for _ in 1 2 3 4 5 6; do sleep 0.5; sql "SELECT count(*) FROM audit.ensure_partitions(interval '0')" >/dev/null; done
wait "$bench" && rc=0 || rc=$?
assert_eq "0" "$rc" "pgbench wrote back-dated events while their partitions were created"
assert_match "number of failed transactions: 0" "$(cat "$T_RESULTS.pgo")" "no back-dated insert failed"
sql "SELECT count(*) FROM audit.ensure_partitions(interval '0')" >/dev/null
assert_eq "0|true" "$(sql "SELECT (SELECT count(*) FROM ONLY audit.events_default) || '|' || (SELECT bool_and(ok) FROM audit.verify())")" \
  "every back-dated event got a partition, and the chains verify"

# Writers never wait for partition upkeep: ensure_partitions runs while 4 clients record.
cat >"$T_RESULTS.rec" <<'SQL'
SELECT audit.record('load.event', 'obj', :client_id::text);
SQL
pgbench -n -c 4 -j 2 -T 4 -f "$T_RESULTS.rec" >"$T_RESULTS.pgb" 2>&1 &
bench=$!
for i in 1 2 3 4 5 6; do sql "SELECT count(*) FROM audit.ensure_partitions(interval '$i months')" >/dev/null; sleep 0.3; done
wait "$bench" && rc=0 || rc=$?
assert_eq "0" "$rc" "pgbench recorded without an error while partitions were created"
assert_match "number of failed transactions: 0" "$(cat "$T_RESULTS.pgb")" "no transaction failed"

# 2. Archive, then drop. Old events on several chains (four sessions at once, so four chains).
sql "SELECT count(*) FROM audit.set_retention('30 days', 'page.*')" >/dev/null
# (the worker is off in these sessions: their months get partitions from ensure_partitions)
for c in 1 2 3 4; do
  sql "SET audit_ext.partition_worker = off; BEGIN;
       INSERT INTO audit.events (action, at, retention_class, object_id)
       SELECT 'page.view', now() - interval '90 days' + g * interval '1 minute', audit.retention_class('page.view'), '$c'
       FROM generate_series(1, 50) g;
       SELECT pg_sleep(1); COMMIT;" >/dev/null &
done
wait
sql "SELECT count(*) FROM audit.ensure_partitions(interval '0')" >/dev/null
assert_eq "200|4" "$(sql "SELECT count(*) || '|' || count(DISTINCT chain) FROM audit.events WHERE action = 'page.view'")" \
  "200 old page views on 4 chains of their class"
arch=$(mktemp -d); chmod 777 "$arch"
trap 'rm -rf "$arch"' EXIT
sql_expect_error 22023 "SELECT audit.apply_retention(archive_dir => 'relative/dir')" "a relative archive_dir is refused"
sql_expect_error 58P01 "SELECT audit.apply_retention(archive_dir => '$arch/missing')" "a missing archive_dir is refused"
sql "SET client_min_messages = warning; DROP ROLE IF EXISTS retention_admin; CREATE ROLE retention_admin LOGIN IN ROLE audit_admin" >/dev/null
PGUSER=retention_admin sql_expect_error 42501 "SELECT audit.apply_retention(archive_dir => '$arch')" \
  "archiving needs superuser or pg_write_server_files"
assert_eq "1|0" "$(PGUSER=retention_admin sql "SELECT count(*) || '|' || count(*) FILTER (WHERE dropped) FROM audit.apply_retention(dry_run => true)")" \
  "audit_admin may run a dry run: it lists the partition, drops nothing"

heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")
out=$(sql "SELECT partition || '|' || events || '|' || archive_file FROM audit.apply_retention(archive_dir => '$arch') ORDER BY from_at")
files=$(cut -d'|' -f3 <<<"$out")
total=$(cut -d'|' -f2 <<<"$out" | awk '{ s += $1 } END { print s }')
assert_eq "200" "$total" "apply_retention dropped the 200 page views, in $(wc -l <<<"$out") partition(s)"
lines=0; for f in $files; do lines=$((lines + $(wc -l <"$f"))); done
assert_eq "200" "$lines" "the archives hold one line per dropped event"
# shellcheck disable=SC2086
vout=$(python3 "$verify_export" --segment $files 2>&1) && vrc=0 || vrc=$?
assert_eq "0" "$vrc" "the archives verify outside the database (verify_export.py --segment)"
assert_match "summary: 4 chains, 200 events checked" "$vout" "all four chains, every event"
# The last hash of each chain in the archives is the anchor apply_retention recorded.
last=$(python3 - $files <<'PY'
import json, sys
last = {}
for p in sys.argv[1:]:
    for line in open(p, encoding="utf-8"):
        e = json.loads(line)
        if e["chain"] not in last or e["seq"] > last[e["chain"]][0]:
            last[e["chain"]] = (e["seq"], e["hash"][2:])
print(",".join(f"{c}:{s}:{h}" for c, (s, h) in sorted(last.items())))
PY
)
anchors=$(sql "SELECT string_agg(format('%s:%s:%s', a ->> 'chain', a ->> 'to_seq', a ->> 'to_hash'), ',' ORDER BY (a ->> 'chain')::int)
               FROM audit.events e, jsonb_array_elements(e.new -> 'anchors') a
               WHERE e.action = 'retention.applied' AND (a ->> 'chain')::int >= 1000")
assert_eq "$last" "$anchors" "each chain's anchor is the hash of its last archived event"
out=$(sql "SELECT count(*) FROM audit.apply_retention(archive_dir => '$arch')")
assert_eq "0" "$out" "nothing is left to drop"

# 3. Those chains lost every event. verify still accounts for them, and the next event of the
# class links to the dropped one.
assert_eq "4|4" "$(sql "SELECT count(*) FILTER (WHERE ok) || '|' || count(*) FILTER (WHERE reason LIKE 'all events up to seq % were dropped by retention%')
                     FROM audit.verify() WHERE chain >= 1000")" \
  "verify reports the 4 emptied chains as ok, dropped by retention"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify(heads => '$heads')")" \
  "verify passes against the heads noted before the drop"
sql "SELECT audit.record('page.view')" >/dev/null
assert_eq "t" "$(sql "SELECT e.seq = a.to_seq + 1 AND e.prev_hash = a.to_hash
                     FROM audit.events e JOIN audit.retention_anchors a USING (chain)
                     WHERE e.action = 'page.view'")" \
  "a new event continues its chain after the dropped stretch (next seq, linked to the anchor)"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "and verify passes"
# What is left, exported whole, verifies outside too: chains start after the dropped stretches,
# exactly where the newest retention.applied event anchors them.
wout=$(psql -Xq -c "COPY (SELECT audit.export_json(e) FROM audit.events e ORDER BY chain, seq)
                     TO STDOUT WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')" | python3 "$verify_export" 2>&1) && wrc=0 || wrc=$?
assert_eq "0|t" "$wrc|$(sql "SELECT bool_and(ok) FROM audit.verify()")" \
  "an export of the log after retention verifies with verify_export.py, as audit.verify() accepts it"
assert_match "across [0-9]+ retention anchor" "$wout" "and crosses the anchored stretches"

# 4. Retention while writers run: both finish, nothing is lost, the chains verify.
sql "SET audit_ext.partition_worker = off;
     INSERT INTO audit.events (action, at, retention_class)
     SELECT 'page.view', now() - interval '60 days', audit.retention_class('page.view') FROM generate_series(1, 1000);
     SELECT count(*) FROM audit.ensure_partitions(interval '0')" >/dev/null
before=$(sql "SELECT count(*) FROM audit.events WHERE action = 'load.event'")
pgbench -n -c 4 -j 2 -T 3 -f "$T_RESULTS.rec" >"$T_RESULTS.pgb" 2>&1 &
bench=$!
sleep 1
dropped=$(sql "SELECT sum(events) FROM audit.apply_retention()")
wait "$bench" && rc=0 || rc=$?
assert_eq "0|1000" "$rc|$dropped" "apply_retention dropped 1,000 events while pgbench recorded, both without error"
done_tx=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$T_RESULTS.pgb")
assert_eq "$done_tx" "$(( $(sql "SELECT count(*) FROM audit.events WHERE action = 'load.event'") - before ))" \
  "every event pgbench committed is there"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "every chain verifies"

# 5. An auditor's open read transaction and apply_retention: the drop waits at most its
#    lock_timeout (2 s) for the reader and fails with 55P03, so writers, which queue behind a
#    waiting ACCESS EXCLUSIVE request, are held up for at most that long, never until the
#    reader commits. Once the reader is gone, retention goes through.
sql "INSERT INTO audit.events (action, at, retention_class)
     SELECT 'page.view', now() - interval '60 days', audit.retention_class('page.view') FROM generate_series(1, 10);
     SELECT count(*) FROM audit.ensure_partitions(interval '0')" >/dev/null
psql -XAtq -c "BEGIN" -c "SELECT count(*) FROM audit.events" -c "SELECT pg_sleep(8)" -c "COMMIT" >/dev/null 2>&1 &
reader=$!
sleep 1
t0=$(date +%s%N)
out=$(psql -Xq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "SELECT sum(events) FROM audit.apply_retention()" 2>&1) || true
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
w0=$(date +%s%N)
sql "SELECT audit.record('load.event')" >/dev/null
wms=$(( ($(date +%s%N) - w0) / 1000000 ))
assert_match "55P03.*could not lock" "$(tr '\n' ' ' <<<"$out")" "apply_retention beside an open read transaction fails with 55P03 ($ms ms)"
assert_eq "t" "$([ "$ms" -lt 5000 ] && [ "$wms" -lt 3000 ] && echo t || echo "f (retention $ms ms, writer $wms ms)")" \
  "within its lock_timeout, and a writer right after is not held up"
wait "$reader" || true
assert_eq "10" "$(sql "SELECT sum(events) FROM audit.apply_retention()")" "once the reader is gone, retention goes through"
sql "DROP ROLE retention_admin" -d postgres >/dev/null 2>&1 || true

# Row capture against committed transactions (issue 3, sections 1 and 2): concurrent
# single-row writers at every isolation level, 100,000-row statements, rollbacks and
# savepoints, and a writer without any audit privilege. Every captured change is an
# ordinary event: counts are exact and verify passes.
fresh_db audit_capture
sql "CREATE TABLE t (id int PRIMARY KEY, a text, b int, c timestamptz);
     INSERT INTO t SELECT i, 'v' || i, 0, now() FROM generate_series(1, 1000) i;
     SELECT audit.track('t')" >/dev/null

cat >"$T_RESULTS.pgb" <<'SQL'
\set id random(1, 1000)
BEGIN;
UPDATE t SET b = b + 1 WHERE id = :id;
SAVEPOINT s;
UPDATE t SET a = 'undone' WHERE id = :id;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SQL
total=0
for iso in 'read committed' 'repeatable read' 'serializable'; do
  out=$(PGOPTIONS="-c default_transaction_isolation=${iso/ /\\ }" \
    pgbench -n -c 4 -j 2 -t 200 --max-tries=50 -f "$T_RESULTS.pgb" 2>&1)
  done_tx=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' <<<"$out")
  failed_tx=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' <<<"$out")
  assert_eq "800 0" "$done_tx ${failed_tx:-0}" "pgbench single-row updates of a tracked table, 4 clients, $iso: all commit"
  total=$((total + ${done_tx:-0}))
done
assert_eq "$total|$total|0" \
  "$(sql "SELECT (SELECT sum(b) FROM t) || '|' || count(*) FILTER (WHERE action = 'row.update') || '|' ||
                 count(*) FILTER (WHERE new ->> 'a' = 'undone')
          FROM audit.events WHERE object_name = 'public.t'")" \
  "one row.update event per committed update ($total), none from rolled-back savepoints"
assert_eq "0" "$(sql "SELECT count(*) FROM (SELECT object_id, (new ->> 'b')::int AS b FROM audit.events
                        WHERE action = 'row.update' AND object_name = 'public.t'
                        GROUP BY 1, 2 HAVING count(*) > 1) s")" \
  "no update of a row is recorded twice"
# The most updated row (a given row may, by chance, never have been picked).
busy=$(sql "SELECT object_id FROM audit.events WHERE action = 'row.update' AND object_name = 'public.t'
            GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
assert_eq "t" "$(sql "SELECT bool_and((h.new ->> 'b')::int = h.n) AND count(*) = (SELECT b FROM t WHERE id = $busy) AND count(*) > 1
                         FROM (SELECT new, row_number() OVER (ORDER BY at, id) AS n FROM audit.row_history('t', '$busy')) h")" \
  "row_history of one row returns every version, in order (b counts 1, 2, 3, ...)"

# Aborted transactions leave nothing.
before=$(sql "SELECT count(*) FROM audit.events")
sql "BEGIN; UPDATE t SET b = -1; INSERT INTO t VALUES (5000, 'x', 0, now()); ROLLBACK" >/dev/null
assert_eq "$before" "$(sql "SELECT count(*) FROM audit.events")" "a rolled-back transaction records nothing"

# 100,000-row statements: one event per row, each chained.
sql "TRUNCATE t" >/dev/null
mark=$(sql "SELECT max(id) FROM audit.events")
sql "INSERT INTO t SELECT i, md5(i::text), i, now() FROM generate_series(1, 100000) i" >/dev/null
sql "UPDATE t SET b = b + 1" >/dev/null
sql "UPDATE t SET b = b WHERE id <= 50000" >/dev/null   # changes nothing: skipped
sql "DELETE FROM t" >/dev/null
assert_eq "100000|100000|100000|1" \
  "$(sql "SELECT count(*) FILTER (WHERE action = 'row.insert') || '|' || count(*) FILTER (WHERE action = 'row.update') || '|' ||
                 count(*) FILTER (WHERE action = 'row.delete') || '|' || count(DISTINCT txid) FILTER (WHERE action = 'row.update')
          FROM audit.events WHERE id > $mark")" \
  "a 100,000-row INSERT, UPDATE and DELETE each record 100,000 events (the no-op UPDATE none)"
assert_eq "0" "$(sql "SELECT count(*) FROM audit.events WHERE id > $mark AND action = 'row.update'
                       AND ((old ->> 'b')::int + 1 <> (new ->> 'b')::int OR old ->> 'id' <> new ->> 'id')")" \
  "each update pairs a row's old image with its own new image"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "verify passes over everything captured"

# A role with no audit privilege at all writes a tracked table; the event names it.
sql "CREATE ROLE capture_clerk LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON t TO capture_clerk" >/dev/null
psql -XAtq -v ON_ERROR_STOP=1 -U capture_clerk -c "INSERT INTO t VALUES (42, 'by clerk', 0, now())" >/dev/null
assert_eq "capture_clerk" "$(sql "SELECT actor FROM audit.events WHERE action = 'row.insert' AND object_id = '42' ORDER BY id DESC LIMIT 1")" \
  "a writer without audit privileges is captured under its own name"
sql_expect_error 42501 "SET ROLE capture_clerk; SELECT count(*) FROM audit.events" "and it cannot read the log"
sql "DROP TABLE t; DROP ROLE capture_clerk" >/dev/null
assert_eq "capture.untrack|the tracked table was dropped|0" \
  "$(sql "SELECT action || '|' || message || '|' || (SELECT count(*) FROM audit.tracked) FROM audit.events
          WHERE object_name = 'public.t' AND action LIKE 'capture.%' ORDER BY id DESC LIMIT 1")" \
  "dropping the tracked table untracks it and records that"

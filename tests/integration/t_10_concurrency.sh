# Concurrent writers at every isolation level: the chains never fork and never have gaps,
# rolled-back savepoints and aborted transactions leave nothing, and every committed event
# is there. (A rolled-back #[pg_test] cannot see any of this.)
fresh_db audit_conc

cat >"$T_RESULTS.pgb" <<'SQL'
\set k random(1, 1000000)
BEGIN;
SELECT audit.record('it.kept', 'obj', :k::text, metadata => '{"n": 1}');
SAVEPOINT s;
SELECT audit.record('it.undone');
ROLLBACK TO SAVEPOINT s;
SELECT audit.record('it.kept2', 'obj', :k::text);
COMMIT;
BEGIN;
SELECT audit.record('it.aborted');
ROLLBACK;
SQL

total=0
for chains in 4 1; do
  for iso in 'read committed' 'repeatable read' 'serializable'; do
    out=$(PGOPTIONS="-c default_transaction_isolation=${iso/ /\\ } -c audit_ext.chains=$chains" \
      pgbench -n -c 6 -j 2 -t 150 --max-tries=20 -f "$T_RESULTS.pgb" 2>&1)
    done_tx=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' <<<"$out")
    failed_tx=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' <<<"$out")
    assert_eq "900 0" "$done_tx ${failed_tx:-0}" "pgbench, 6 clients, $iso, $chains chain(s): all 900 transactions commit, none fails"
    total=$((total + ${done_tx:-0}))
  done
done

assert_eq "$total|$total|0|0" \
  "$(sql "SELECT count(*) FILTER (WHERE action = 'it.kept') || '|' || count(*) FILTER (WHERE action = 'it.kept2') || '|' ||
             count(*) FILTER (WHERE action = 'it.undone') || '|' || count(*) FILTER (WHERE action = 'it.aborted')
          FROM audit.events")" \
  "exactly the committed events are there ($total transactions x 2), none rolled back"
assert_eq "t" "$(sql "SELECT bool_and(ok) AND sum(events_checked) = $((total * 2)) FROM audit.verify()")" \
  "verify passes on every chain and checks every event"
assert_eq "0" "$(sql "SELECT count(*) FROM (SELECT chain FROM audit.events GROUP BY chain
                        HAVING max(seq) <> count(*) OR min(seq) <> 1) s")" \
  "each chain is gapless: seq runs 1..count"
assert_eq "0" "$(sql "SELECT count(*) FROM (SELECT txid FROM audit.events GROUP BY txid
                        HAVING count(DISTINCT chain) > 1) s")" \
  "a transaction stays on one chain"
chains_used=$(sql "SELECT count(DISTINCT chain) FROM audit.events")
if [ "$chains_used" -ge 2 ]; then ok "concurrent writers spread over $chains_used chains"; else
  fail "concurrent writers spread over chains (used $chains_used)"; fi

# The measured failure of hand-written chains: a REPEATABLE READ writer whose snapshot
# predates another writer's commit must still chain after it.
sql "ALTER DATABASE audit_conc SET audit_ext.chains = 1"
# (module audit: the reads recorded meanwhile, verify's own, are not counted)
before=$(sql "SELECT count(*) FROM audit.events WHERE module IS DISTINCT FROM 'audit'")
psql -XAtq -v ON_ERROR_STOP=1 >/dev/null <<'SQL' &
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM audit.events;   -- takes the snapshot
SELECT pg_sleep(1.5);
SELECT audit.record('rr.late');
COMMIT;
SQL
late=$!
sleep 0.5
sql "SELECT audit.record('rr.early')" >/dev/null
wait "$late"
assert_eq "rr.early|rr.late|true" \
  "$(sql "SELECT string_agg(action, '|' ORDER BY seq) || '|' || (SELECT bool_and(ok) FROM audit.verify())
          FROM audit.events WHERE action LIKE 'rr.%'")" \
  "REPEATABLE READ writer with an old snapshot chains after a newer commit (no fork)"

# A writer that holds its chain (an open transaction, idle or busy) never makes the next one
# wait: with every configured chain held, the next takes a chain beyond them (issue 9: no role
# can stall the audit trail by keeping transactions open). Both chains verify, even under
# SERIALIZABLE.
psql -XAtq -v ON_ERROR_STOP=1 >/dev/null <<'SQL' &
BEGIN;
SELECT audit.record('hold.first');
SELECT pg_sleep(2);
SELECT audit.record('hold.first2');
COMMIT;
SQL
first=$!
sleep 0.5
t0=$(date +%s%N)
PGOPTIONS="-c default_transaction_isolation=serializable" sql "SELECT audit.record('hold.second')" >/dev/null
waited=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$first"
assert_eq "t" "$([ "$waited" -lt 1200 ] && echo t || echo "f ($waited ms)")" \
  "a second writer does not wait for the chain an open transaction holds"
assert_eq "hold.first|hold.first2|t" \
  "$(sql "SELECT string_agg(action, '|' ORDER BY seq) FILTER (WHERE action LIKE 'hold.first%') || '|' ||
                 CASE WHEN count(DISTINCT chain) = 2 THEN 't' ELSE 'f' END FROM audit.events WHERE action LIKE 'hold.%'")" \
  "it appends to another chain; the first writer's events stay in order on its own"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "both chains verify"
assert_eq "$((before + 5))|true" "$(sql "SELECT count(*) FILTER (WHERE module IS DISTINCT FROM 'audit') || '|' || (SELECT bool_and(ok) FROM audit.verify()) FROM audit.events")" \
  "verify passes after the lock hand-over"

# Two-phase commit: a prepared transaction keeps its chain until COMMIT PREPARED.
if [ "$(sql "SHOW max_prepared_transactions")" != 0 ]; then
  sql "BEGIN; SELECT audit.record('tpc.one'); PREPARE TRANSACTION 'audit_tpc'" >/dev/null
  sql "COMMIT PREPARED 'audit_tpc'"
  sql "SELECT audit.record('tpc.after')" >/dev/null
  assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "verify passes across a prepared transaction"
fi
rm -f "$T_RESULTS.pgb"

# kill -9 the postmaster (and every backend) under load; after restart and crash recovery,
# every event whose commit was acknowledged is there and every chain verifies.
fresh_db audit_crash
datadir=$("$(dirname "$PWD")/tools/cluster.sh" datadir test)
ack=$(mktemp -d)

cat >"$ack/load.pgb" <<'SQL'
BEGIN;
SELECT audit.record('crash.load', 'obj', 'x');
SELECT audit.record('crash.load2', 'obj', 'y');
COMMIT;
SQL
pgbench -n -c 4 -j 2 -T 30 -f "$ack/load.pgb" >/dev/null 2>&1 &
load=$!

# Writers that note each id only after psql reported its commit.
writer() {
  local n=0
  while [ -f "$ack/run" ]; do
    if id=$(timeout 20 psql -XAtq -c "SELECT audit.record('crash.ack', object_id => '$1-$n')" 2>/dev/null); then
      echo "$id" >>"$ack/acked.$1"
    fi
    n=$((n + 1))
  done
}
touch "$ack/run"
for w in 1 2 3; do writer "$w" & done
sleep 4
kill9_cluster "$datadir"
pm=$KILLED_PM
rm -f "$ack/run"
wait "$load" 2>/dev/null || true
wait 2>/dev/null || true
ok "killed postmaster $pm and its backends with SIGKILL under load"

"$(dirname "$PWD")/tools/cluster.sh" start test "${TEST_PORT:-5498}" >/dev/null
export PGDATABASE=audit_crash
acked=$(cat "$ack"/acked.* | sort -n | uniq)
n_acked=$(wc -l <<<"$acked")
if [ "$n_acked" -ge 10 ]; then ok "writers had $n_acked acknowledged commits before the crash"; else
  fail "too few acknowledged commits before the crash ($n_acked)"; fi
missing=$(sql "SELECT count(*) FROM unnest('{$(paste -sd, <<<"$acked")}'::bigint[]) a(id)
               WHERE NOT EXISTS (SELECT FROM audit.events e WHERE e.id = a.id AND e.action = 'crash.ack')")
assert_eq 0 "$missing" "every acknowledged event survived the crash"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "verify passes after crash recovery"
assert_eq 0 "$(sql "SELECT count(*) FROM (SELECT txid FROM audit.events WHERE action LIKE 'crash.load%'
                    GROUP BY txid HAVING count(*) <> 2) s")" "no half-written transaction: load transactions have both events"
before=$(sql "SELECT count(*) FROM audit.events")
sql "SELECT audit.record('crash.after')" >/dev/null
assert_eq "$((before + 1))|true" "$(sql "SELECT count(*) || '|' || (SELECT bool_and(ok) FROM audit.verify()) FROM audit.events")" \
  "recording continues on the same chains after recovery"
rm -rf "$ack"

#!/usr/bin/env bash
# What the side channel (issue 11) costs, measured side by side in one run on the bench
# cluster with the library preloaded and pg_hba.conf asking for scram-sha-256 over TCP:
#  1. a login: pgbench -C (a new connection per transaction, SELECT 1) over TCP with
#     audit_ext.level = off and on (each login then waits for its authentication.login event
#     to commit, and its logout is written after), 1 client;
#  2. audit.record_autonomous against audit.record, 4 clients, one event per transaction;
#  3. ordinary statements that do not fail (SELECT 1 and a one-row UPDATE), level off and on:
#     the error hook runs only when an error is reported, so the goal is "within noise".
# Rounds alternate the settings; medians at the end.
#   usage: bench/side_channel.sh [ROUNDS] [SECONDS]     (defaults 3 8)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
die() { echo "side_channel.sh: $*" >&2; exit 1; }
LOG=${LOG:-/tmp/audit_ext-bench-side-channel.log}; : >"$LOG"
rounds=${1:-3} secs=${2:-8}
db=audit_side_bench
port=${BENCH_PORT:-5496}
CLUSTER_OPTS="shared_preload_libraries='audit_ext';password_encryption='scram-sha-256'" \
  tests/tools/cluster.sh start bench "$port" postgres >/dev/null
eval "$(tests/tools/cluster.sh env bench postgres)"
data=$(tests/tools/cluster.sh datadir bench)
hba_before=$(mktemp); cp "$data/pg_hba.conf" "$hba_before"
restore() { cp "$hba_before" "$data/pg_hba.conf"; rm -f "$hba_before"; sql postgres -c "ALTER SYSTEM RESET audit_ext.level" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true; }
trap restore EXIT
if [ "$(id -u)" = 0 ]; then
  runuser -u postgres -- sh -c "printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' > '$data/pg_hba.conf'"
else
  printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$data/pg_hba.conf"
fi
sql postgres -c "SELECT pg_reload_conf()" >/dev/null
sql postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
sql postgres -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_login') THEN CREATE ROLE bench_login LOGIN; END IF;
END \$\$" -c "ALTER ROLE bench_login PASSWORD 'bench-pw'" -c "GRANT pg_checkpoint TO bench_login" >/dev/null
sql "$db" -c "CREATE EXTENSION audit_ext" -c "GRANT audit_writer TO bench_login" \
  -c "CREATE TABLE acct (id int PRIMARY KEY, n bigint)" -c "INSERT INTO acct SELECT g, 0 FROM generate_series(1, 1000) g" \
  -c "GRANT SELECT, UPDATE ON acct TO bench_login" >/dev/null
export PGPASSWORD=bench-pw
level() { sql postgres -c "ALTER SYSTEM SET audit_ext.level = '$1'" -c "SELECT pg_reload_conf()" >/dev/null; sleep 0.5; }
f() { local t; t=$(mktemp); chmod 644 "$t"; printf '%s\n' "$1" >"$t"; echo "$t"; }
s_one=$(f "SELECT 1;")
s_rec=$(f "SELECT audit.record('bench.event', 'x', 'y');")
s_auto=$(f "SELECT audit.record_autonomous('bench.event', 'x', 'y');")
s_upd=$(f "\\set id random(1, 1000)
UPDATE acct SET n = n + 1 WHERE id = :id;")
# pgbench -C over TCP: every transaction logs in with scram-sha-256 (run_pgbench has no -C)
logins() {
  local out
  sql "$db" -c CHECKPOINT
  out=$(pgbench -n -C -h 127.0.0.1 -p "$port" -U bench_login -f "$s_one" -c 1 -T "$secs" "$db" 2>&1) \
    || { echo "$out" >&2; die "pgbench -C failed"; }
  printf '%s\n' "$out" >>"$LOG"
  sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out"
}
tcp_pgbench() { PGHOST=127.0.0.1 PGUSER=bench_login run_pgbench "$@"; }
l_off=() l_on=() rec=() auto=() o_off=() o_on=() u_off=() u_on=()
for i in $(seq 1 "$rounds"); do
  level off; a=$(logins); c=$(tcp_pgbench "$db" "$s_one" 1 "$secs"); e=$(tcp_pgbench "$db" "$s_upd" 4 "$secs")
  level on; b=$(logins); d=$(tcp_pgbench "$db" "$s_one" 1 "$secs"); g=$(tcp_pgbench "$db" "$s_upd" 4 "$secs")
  r=$(tcp_pgbench "$db" "$s_rec" 4 "$secs"); x=$(tcp_pgbench "$db" "$s_auto" 4 "$secs")
  l_off+=("$a") l_on+=("$b") o_off+=("$c") o_on+=("$d") u_off+=("$e") u_on+=("$g") rec+=("$r") auto+=("$x")
  echo "round $i: logins/s off $a, on $b (time on/off $(calc %.3f "$a / $b")); record_autonomous $x TPS, record $r (ratio $(calc %.3f "$x / $r")); SELECT 1 off $c, on $d ($(calc %.3f "$d / $c")); UPDATE x4 off $e, on $g ($(calc %.3f "$g / $e"))"
done
ml_off=$(median "${l_off[@]}") ml_on=$(median "${l_on[@]}") mrec=$(median "${rec[@]}") mauto=$(median "${auto[@]}")
mo_off=$(median "${o_off[@]}") mo_on=$(median "${o_on[@]}") mu_off=$(median "${u_off[@]}") mu_on=$(median "${u_on[@]}")
echo "median login (pgbench -C, scram over TCP, 1 client): $ml_off/s with audit_ext.level = off, $ml_on/s with on: a login takes $(calc %.3f "$ml_off / $ml_on")x the time (goal: at most 1.2x: $(met "$ml_off / $ml_on <= 1.2")), $(calc %.2f "1000 / $ml_on - 1000 / $ml_off") ms more"
echo "median audit.record_autonomous at 4 clients: $mauto TPS, audit.record $mrec TPS: $(calc %.3f "$mauto / $mrec")x (goal: at least 0.5x: $(met "$mauto / $mrec >= 0.5"))"
echo "median statements that do not fail, level on/off: SELECT 1 (1 client) $(calc %.3f "$mo_on / $mo_off"), one-row UPDATE (4 clients) $(calc %.3f "$mu_on / $mu_off") (goal: within noise)"
echo "events: $(sql "$db" -c "SELECT string_agg(action || ' ' || n, ', ') FROM (SELECT action, count(*) n FROM audit.events GROUP BY 1 ORDER BY 1) s")"
rm -f "$s_one" "$s_rec" "$s_auto" "$s_upd"

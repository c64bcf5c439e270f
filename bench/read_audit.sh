#!/usr/bin/env bash
# What the audit of the audit (issue 13, section 2) costs: an auditor's
# `SELECT ... FROM audit.events ORDER BY id DESC LIMIT 20` by a member of audit_reader with
# audit_ext.audit_reads off and on (each statement then records one audit.read event),
# alternated round by round in one run on the bench cluster with the library preloaded; and
# the recording of one call of a reading function (audit_internal._read_event, what audit.search,
# audit.export, ... add to each call) against a plain SELECT 1 and against audit.record (one
# event each, with its commit).
#   usage: bench/read_audit.sh [EVENTS] [ROUNDS] [SECONDS]     (defaults 100000 5 8)
#   BENCH_SYNC=off runs every client with synchronous_commit = off: the cost without the
#   commit's WAL flush (which a recorded read adds, and which dominates on a slow disk).
# Prints one line per round and the medians: TPS, and the milliseconds a statement gains.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
die() { echo "read_audit.sh: $*" >&2; exit 1; }
LOG=${LOG:-/tmp/audit_ext-bench-read-audit.log}; : >"$LOG"
events=${1:-100000} rounds=${2:-5} secs=${3:-8}
export PGOPTIONS="-c synchronous_commit=${BENCH_SYNC:-on}"
db=audit_reads_bench
CLUSTER_OPTS="shared_preload_libraries='audit_ext'" tests/tools/cluster.sh start bench "${BENCH_PORT:-5496}" postgres >/dev/null
eval "$(tests/tools/cluster.sh env bench postgres)"
sql postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
sql postgres -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_reader') THEN CREATE ROLE bench_reader LOGIN; END IF;
END \$\$" -c "GRANT pg_checkpoint TO bench_reader" >/dev/null
sql "$db" -c "CREATE EXTENSION audit_ext" -c "GRANT audit_reader TO bench_reader" >/dev/null
sql "$db" -c "SELECT count(audit.record('doc.' || (g % 7), object_id => 'o' || (g % 1000))) FROM generate_series(1, $events) g" >/dev/null
sql "$db" -c "VACUUM ANALYZE audit.events" >/dev/null
q=$(mktemp); chmod 644 "$q"
echo "SELECT id, at, actor, action, object_id FROM audit.events ORDER BY id DESC LIMIT 20;" >"$q"
r=$(mktemp); chmod 644 "$r"
echo "SELECT audit_internal._read_event('audit.search', '{\"query\": \"action\" }', 20);" >"$r"
p=$(mktemp); chmod 644 "$p"
echo "SELECT 1;" >"$p"
w=$(mktemp); chmod 644 "$w"
echo "SELECT audit.record('doc.x');" >"$w"
sql "$db" -c "GRANT audit_writer TO bench_reader" >/dev/null
reads() { sql "$db" -c "ALTER ROLE bench_reader IN DATABASE $db SET audit_ext.audit_reads = $1" >/dev/null; }
on=() off=() rec=() plain=() record=()
for i in $(seq 1 "$rounds"); do
  reads off; b=$(PGUSER=bench_reader run_pgbench "$db" "$q" 1 "$secs")
  reads on; a=$(PGUSER=bench_reader run_pgbench "$db" "$q" 1 "$secs")
  reads off
  c=$(PGUSER=bench_reader run_pgbench "$db" "$r" 1 "$secs")
  d=$(PGUSER=bench_reader run_pgbench "$db" "$p" 1 "$secs")
  e=$(PGUSER=bench_reader run_pgbench "$db" "$w" 1 "$secs")
  on+=("$a") off+=("$b") rec+=("$c") plain+=("$d") record+=("$e")
  echo "round $i: SELECT LIMIT 20 TPS off $b, on $a (on/off $(calc %.3f "$a / $b"), +$(calc %.3f "1000 / $a - 1000 / $b") ms); one recorded read $c TPS, SELECT 1 $d, audit.record $e (read/record $(calc %.3f "$c / $e"))"
done
reads off
mon=$(median "${on[@]}") moff=$(median "${off[@]}") mrec=$(median "${rec[@]}") mplain=$(median "${plain[@]}") mrecord=$(median "${record[@]}")
echo "median SELECT LIMIT 20 TPS: audit_reads off $moff, on $mon: on/off $(calc %.3f "$mon / $moff"), $(calc %.3f "1000 / $mon - 1000 / $moff") ms added (goal: at most 1 ms)"
echo "median recorded read: $mrec TPS against SELECT 1 $mplain: $(calc %.3f "1000 / $mrec - 1000 / $mplain") ms a call; audit.record $mrecord TPS: read/record $(calc %.3f "$mrec / $mrecord")"
echo "events now: $(sql "$db" -c "SELECT count(*) FROM audit.events"), audit.read among them: $(sql "$db" -c "SELECT count(*) FROM audit.events WHERE action = 'audit.read'")"
rm -f "$q" "$r" "$p" "$w"

#!/usr/bin/env bash
# What the row level security of "Who sees what" (issue 13, section 1) costs a reader of all
# events: audit.search and a plain SELECT run by a member of audit_reader with the policies on
# and off, alternated round by round in one run (rounds of pgbench on the bench cluster), and
# the same searches by a member of audit_viewer for comparison.
#   usage: bench/visibility.sh [EVENTS] [ROUNDS] [SECONDS]     (defaults 200000 5 8)
# Prints one line per round and the medians; ratios are "on / off".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
die() { echo "visibility.sh: $*" >&2; exit 1; }
LOG=${LOG:-/tmp/audit_ext-bench-visibility.log}; : >"$LOG"
events=${1:-200000} rounds=${2:-5} secs=${3:-8}
db=audit_vis_bench
tests/tools/cluster.sh start bench "${BENCH_PORT:-5496}" postgres >/dev/null
eval "$(tests/tools/cluster.sh env bench postgres)"
sql postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
sql postgres -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_reader') THEN CREATE ROLE bench_reader LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_viewer') THEN CREATE ROLE bench_viewer LOGIN; END IF;
END \$\$" -c "GRANT pg_checkpoint TO bench_reader, bench_viewer" >/dev/null
sql "$db" -c "CREATE EXTENSION audit_ext" -c "GRANT audit_reader TO bench_reader" -c "GRANT audit_viewer TO bench_viewer" >/dev/null
# events of 50 actors, bench_viewer among them (2%), over the last 10 days
sql "$db" -c "SELECT count(audit.record('doc.' || (g % 7), object_id => 'o' || (g % 1000),
                   metadata => jsonb_build_object('n', g))) FROM generate_series(1, $events) g" >/dev/null
# (the actor is the session user: spread the events over actors with a direct INSERT of the owner)
sql "$db" -c "INSERT INTO audit.events (action, actor, object_id, metadata, at)
              SELECT 'doc.' || (g % 7), CASE WHEN g % 50 = 0 THEN 'bench_viewer' ELSE 'u' || (g % 50) END,
                     'o' || (g % 1000), '{}', clock_timestamp() - (g % 864000) * interval '1 second'
              FROM generate_series(1, $events) g" >/dev/null
sql "$db" -c "VACUUM ANALYZE audit.events" >/dev/null
q=$(mktemp); chmod 644 "$q"
# (chr(58) is ':', which pgbench would read as the start of a variable)
cat >"$q" <<'SQL'
SELECT count(*) FROM audit.search('action' || chr(58) || 'doc.3 AND at' || chr(58) || '>now-1d', 100);
SELECT id FROM audit.events WHERE object_id = 'o42' ORDER BY id DESC LIMIT 20;
SQL
rls() { sql "$db" -c "SET audit_ext.restore = on" -c "ALTER TABLE audit.events $1 ROW LEVEL SECURITY" >/dev/null; }
on=() off=() viewer=()
for r in $(seq 1 "$rounds"); do
  rls ENABLE; a=$(PGUSER=bench_reader run_pgbench "$db" "$q" 1 "$secs")
  rls DISABLE; b=$(PGUSER=bench_reader run_pgbench "$db" "$q" 1 "$secs")
  rls ENABLE; c=$(PGUSER=bench_viewer run_pgbench "$db" "$q" 1 "$secs")
  on+=("$a") off+=("$b") viewer+=("$c")
  echo "round $r: reader TPS with the policies $a, without $b (on/off $(calc %.3f "$a / $b")); viewer $c"
done
rls ENABLE
mon=$(median "${on[@]}") moff=$(median "${off[@]}") mv=$(median "${viewer[@]}")
echo "median reader TPS: policies on $mon, off $moff: on/off $(calc %.3f "$mon / $moff"); viewer $mv ($(calc %.2f "$mv / $moff")x the reader without policies)"
rm -f "$q"

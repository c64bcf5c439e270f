#!/usr/bin/env bash
# A/B of two builds of audit_ext.so on the hot path, measured side by side in one run: for
# each round and each build, that build's .so is copied over the installed one (every new
# connection loads the file anew; the SQL objects stay those installed) and a fresh database
# is made from bench/schema.sql, then pgbench runs
# audit.record and the plain INSERT of bench/schema.sql at 4 clients, and one transaction of
# 100,000 audit.record calls is timed against 100,000 plain rows. Prints, per build, the
# median over rounds of the record / plain TPS ratio and of the bulk ratio.
#   usage: bench/ab.sh OLD.so NEW.so [ROUNDS] [SECONDS]     (on the bench cluster, port 5497)
#   AB_BULK_ONLY=1: only the one-transaction bulk measure (quick, for bisecting);
#   AB_CREATE_SO=FILE: the library CREATE EXTENSION runs with (default NEW)
# The installed SQL must be NEW's; OLD must serve it on these paths (audit.record, the chain
# trigger, the alert trigger).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
old=$1 new=$2 rounds=${3:-3} secs=${4:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH=$PGBIN:$PATH
so="$("$PGBIN/pg_config" --pkglibdir)/audit_ext.so"
cp "$so" "$so.ab-saved"
trap 'cp "$so.ab-saved" "$so"; rm -f "$so.ab-saved"' EXIT
tests/tools/cluster.sh start bench "${BENCH_PORT:-5497}" >/dev/null
eval "$(tests/tools/cluster.sh env bench)"
db=audit_ab
fresh() { # a new database for every measurement, so that neither build runs on a log the other grew
  PGOPTIONS='-c client_min_messages=warning' psql -XAtq -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  psql -XAtq -v ON_ERROR_STOP=1 -d "$db" -f bench/schema.sql >/dev/null
  psql -XAtq -d postgres -c "CHECKPOINT"
}
tps() { pgbench -n -M prepared -f "$1" -c 4 -j 2 -T "$secs" "$db" 2>&1 | sed -nE 's/^tps = ([0-9.]+).*/\1/p'; }
ms() { psql -XAtq -d "$db" -c '\timing on' -c "$1" | sed -nE 's/^Time: ([0-9.]+) ms.*/\1/p'; }
declare -A ratio bulk
for r in $(seq 1 "$rounds"); do
  for build in old new; do
    cp "${AB_CREATE_SO:-$new}" "$so"   # CREATE EXTENSION needs the installed SQL's library
    fresh
    cp "${!build}" "$so"
    if [ -n "${AB_BULK_ONLY:-}" ]; then p=1 a=1; else p=$(tps bench/pgbench_plain.sql); a=$(tps bench/pgbench_record.sql); fi
    psql -XAtq -d postgres -c "CHECKPOINT"
    pb=$(ms "INSERT INTO bench_plain (action, object_type, object_id, metadata) SELECT 'bench.bulk', 'order', g::text, '{}' FROM generate_series(1, 100000) g")
    ab=$(ms "SELECT count(audit.record('bench.bulk', 'order', g::text)) FROM generate_series(1, 100000) g")
    ratio[$build]+="$(awk "BEGIN {printf \"%.3f\", $a / $p}") "
    bulk[$build]+="$(awk "BEGIN {printf \"%.3f\", $ab / $pb}") "
    echo "round $r $build: plain $p TPS, record $a TPS ($(awk "BEGIN {printf \"%.2f\", $a / $p}")x); bulk plain $pb ms, record $ab ms ($(awk "BEGIN {printf \"%.2f\", $ab / $pb}")x)"
  done
done
med() { printf '%s\n' $1 | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
for build in old new; do
  echo "$build (${!build}): record / plain TPS at 4 clients, median $(med "${ratio[$build]}")x; 100,000 in one transaction, median $(med "${bulk[$build]}")x plain"
done

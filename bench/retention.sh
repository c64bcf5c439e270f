#!/usr/bin/env bash
# Retention benchmark (issue 4, section 5; see BENCHMARKS.md). Run by `make bench` after the
# others, or alone with `make bench-retention`; needs the bench cluster up.
#
# One month of BENCH_RETENTION_EVENTS (1,000,000) events, older than the default 365 days, in
# audit.events (one partition of class 0) and the same rows in `plain_copy`, an unpartitioned
# table with the same six indexes; both also hold 10,000 current events. Then, side by side,
# each repetition on freshly filled tables:
#   apply_retention()   drops the month's partition (counting, anchors, event, DROP)
#   DELETE FROM plain_copy WHERE <the month>   the row-by-row way
#   VACUUM plain_copy   what the DELETE leaves to do (info)
# and the size each table keeps. Prints a markdown table, writes bench/results/retention.md
# (raw output: retention.log).   BENCH_REPEAT=3 BENCH_KEEP=0 as in run.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # from the checkout root, PostgreSQL 15 tools first
N=${BENCH_RETENTION_EVENTS:-1000000}
bench_start retention audit_bench_retention
sql "$DB" -c "ALTER DATABASE $DB SET audit_ext.partition_worker = off"
sql "$DB" -c "CREATE TABLE plain_copy (LIKE audit.events INCLUDING DEFAULTS)"
for cols in id "chain, seq" at "actor, at" "object_id, at" "action, at"; do
  sql "$DB" -c "CREATE INDEX ON plain_copy ($cols)"
done
# The month: 14 months ago, in UTC.
M0=$(sql "$DB" -c "SELECT date_trunc('month', timezone('UTC', now()) - interval '14 months')")
RANGE="at >= timezone('UTC', '$M0'::timestamp) AND at < timezone('UTC', '$M0'::timestamp + interval '1 month')"

fill() {
  log "filling: $N events in the month of $M0, 10,000 current ones"
  # the month's partition first (one event moved out of the default partition), then the rest
  sql "$DB" -c "INSERT INTO audit.events (action, at, object_id) VALUES ('bench.old', timezone('UTC', '$M0'::timestamp) + interval '1 hour', '0')" \
            -c "SELECT count(*) FROM audit.ensure_partitions(interval '0')" >/dev/null
  local per=$(((N - 1 + 3) / 4)) i
  for i in 0 1 2 3; do
    sql "$DB" -c "INSERT INTO audit.events (action, at, object_id, message)
                  SELECT 'bench.old', timezone('UTC', '$M0'::timestamp) + interval '1 hour' + g * interval '2 seconds', g::text, 'x'
                  FROM generate_series($((i * per + 1)), least($(((i + 1) * per)), $((N - 1)))) g" &
  done
  wait
  sql "$DB" -c "SELECT count(audit.record('bench.current', 'order', i::text)) FROM generate_series(1, 10000) i" >/dev/null
  sql "$DB" -c "TRUNCATE plain_copy" -c "INSERT INTO plain_copy SELECT * FROM audit.events" \
            -c "VACUUM ANALYZE plain_copy" -c "VACUUM ANALYZE audit.events" >/dev/null
  local got
  got=$(sql "$DB" -c "SELECT count(*) FROM audit.events WHERE $RANGE")
  [ "$got" = "$N" ] || die "expected $N events in the month, found $got"
}
size() { sql "$DB" -c "SELECT $1"; }
EVENTS_SIZE="(SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i WHERE i.inhparent = 'audit.events'::regclass)"

A=() D=() V=()
for ((r = 1; r <= REPEAT; r++)); do
  fill
  s_events_before=$(size "$EVENTS_SIZE"); s_copy_before=$(size "pg_total_relation_size('plain_copy')")
  # alternate which goes first
  if ((r % 2)); then
    A+=("$(time_ms "$DB" "SELECT count(*) FROM audit.apply_retention()")")
    D+=("$(time_ms "$DB" "DELETE FROM plain_copy WHERE $RANGE")")
  else
    D+=("$(time_ms "$DB" "DELETE FROM plain_copy WHERE $RANGE")")
    A+=("$(time_ms "$DB" "SELECT count(*) FROM audit.apply_retention()")")
  fi
  left=$(sql "$DB" -c "SELECT count(*) FROM audit.events WHERE $RANGE")
  [ "$left" = 0 ] || die "apply_retention left $left events of the month"
  s_events_after=$(size "$EVENTS_SIZE"); s_copy_after=$(size "pg_total_relation_size('plain_copy')")
  V+=("$(time_ms "$DB" "VACUUM plain_copy")")
  s_copy_vacuumed=$(size "pg_total_relation_size('plain_copy')")
  ok=$(sql "$DB" -c "SELECT bool_and(ok) FROM audit.verify()")
  [ "$ok" = t ] || die "verify failed after apply_retention"
  log "repetition $r: apply_retention ${A[-1]} ms, DELETE ${D[-1]} ms, VACUUM ${V[-1]} ms"
done
a=$(median "${A[@]}"); d=$(median "${D[@]}"); v=$(median "${V[@]}")
mb() { calc "%.0f" "$1 / 1048576"; }

{
  echo "### Retention: dropping one month of $(int "$N") events (median of $REPEAT)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?'). Both tables also hold 10,000 current events; run took $(($(date +%s) - T0))s including the fills."
  echo
  echo "| statement | time (ms) | ratio | size before (MB) | size after (MB) |"
  echo "|---|--:|--:|--:|--:|"
  echo "| \`SELECT audit.apply_retention()\` (drops the partition) | $(calc "%.0f" "$a") | 1.00x | $(mb "$s_events_before") | $(mb "$s_events_after") |"
  echo "| \`DELETE FROM plain_copy WHERE at in the month\` | $(calc "%.0f" "$d") | $(calc "%.1f" "$d / $a")x | $(mb "$s_copy_before") | $(mb "$s_copy_after") |"
  echo "| then \`VACUUM plain_copy\` (info) | $(calc "%.0f" "$v") | $(calc "%.1f" "$v / $a")x | | $(mb "$s_copy_vacuumed") |"
  echo
  echo "Sizes are of the whole table with its indexes and TOAST (for audit.events, the sum over its partitions)."
} | tee "$OUT/retention.md"

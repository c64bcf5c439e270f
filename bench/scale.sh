#!/usr/bin/env bash
# Scale benchmark (issue 14, "Scale"; see BENCHMARKS.md "Scale"): whether recording stays flat
# as the log grows, and whether incremental verification costs what the new events cost.
# Needs the bench cluster up (make bench-scale starts it).
#
# The log grows 0 -> 1M -> 5M -> 10M events (BENCH_SCALE_LEVELS, in millions), written by
# BENCH_FILL_SESSIONS sessions in bulk. At each size, side by side:
#   1. audit.record TPS, 4 clients, one call per transaction (bench/pgbench_record.sql), and a
#      plain INSERT into the unchained copy bench_plain (bench/pgbench_plain.sql), which stays
#      small: its TPS tracks the machine's drift, so record / plain at each size, divided by the
#      same ratio on the empty log, is what the log's size costs;
#   2. 100,000 audit.record calls in one transaction, and the same plain bulk INSERT;
#   3. incremental verify: heads noted, 10,000 new events, audit.verify(since => heads),
#      against a full audit.verify() of the log (the full verify only up to 1M events: at 10M it
#      takes minutes and proves nothing new).
# Prints a markdown table and writes it to bench/results/scale.md (raw: scale.log).
#   BENCH_SECONDS=15 BENCH_ROUNDS=2 BENCH_WARMUP=3 BENCH_REPEAT=3 BENCH_KEEP=0 as in run.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export BENCH_SECONDS=${BENCH_SECONDS:-15}
LEVELS=${BENCH_SCALE_LEVELS:-"0 1 5 10"}
FILL_SESSIONS=${BENCH_FILL_SESSIONS:-4}
NEW=10000
BULK_N=100000
bench_start scale audit_bench_scale
sql "$DB" -c "DROP EXTENSION audit_ext" -f bench/schema.sql >/dev/null

present() { sql "$DB" -c "SELECT count(*) FROM audit.events"; }
# grow TARGET: writes events until the log holds TARGET, in transactions of 100,000 per session
grow() {
  local target=$1 have per s
  have=$(present)
  while ((have < target)); do
    per=$(((target - have) / FILL_SESSIONS))
    ((per > 100000)) && per=100000
    ((per < 1)) && per=1
    for ((s = 0; s < FILL_SESSIONS; s++)); do
      sql "$DB" -c "SELECT count(audit.record('bench.fill', 'order', i::text,
                      metadata => ('{\"request_id\": \"req-' || i || '\"}')::jsonb)) FROM generate_series(1, $per) i" >/dev/null &
    done
    wait
    have=$(present)
  done
  sql "$DB" -c "VACUUM ANALYZE audit.events" -c "VACUUM ANALYZE bench_plain"
}
bulk_record() { echo "SELECT count(audit.record('bench.bulk', 'order', i::text, message => 'x')) FROM generate_series(1, $BULK_N) i"; }
bulk_insert() { echo "INSERT INTO bench_plain (action, object_type, object_id, message) SELECT 'bench.bulk', 'order', i::text, 'x' FROM generate_series(1, $BULK_N) i"; }

declare -A R=()
for level in $LEVELS; do
  target=$((level * 1000000))
  log "growing the log to $target events"
  grow "$target"
  size=$(present)
  R[$level,size]=$size
  # 1. TPS, alternating, after a warm-up; bench_plain is emptied first so that it stays small
  sql "$DB" -c "TRUNCATE bench_plain" -c "VACUUM ANALYZE bench_plain"
  run_pgbench "$DB" bench/pgbench_record.sql 4 "$WARMUP" >/dev/null
  run_pgbench "$DB" bench/pgbench_plain.sql 4 "$WARMUP" >/dev/null
  for ((r = 1; r <= ROUNDS; r++)); do
    log "size $size: pgbench round $r/$ROUNDS, ${SECS}s each"
    R[$level,rec]="${R[$level,rec]:-} $(run_pgbench "$DB" bench/pgbench_record.sql 4 "$SECS")"
    R[$level,plain]="${R[$level,plain]:-} $(run_pgbench "$DB" bench/pgbench_plain.sql 4 "$SECS")"
  done
  # 2. bulk
  for ((r = 1; r <= REPEAT; r++)); do
    log "size $size: bulk repetition $r/$REPEAT"
    sql "$DB" -c "TRUNCATE bench_plain"
    R[$level,bplain]="${R[$level,bplain]:-} $(time_ms "$DB" "$(bulk_insert)")"
    R[$level,brec]="${R[$level,brec]:-} $(time_ms "$DB" "$(bulk_record)")"
  done
  # 3. incremental verify of NEW events
  for ((r = 1; r <= REPEAT; r++)); do
    heads=$(sql "$DB" -c "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")
    sql "$DB" -c "SELECT count(audit.record('bench.new', 'order', i::text)) FROM generate_series(1, $NEW) i" >/dev/null
    out=$(sql "$DB" -c "SELECT bool_and(ok) || '|' || sum(events_checked) FROM audit.verify(since => '$heads')")
    # exactly the new events (plus the verify events recorded after the heads, none here)
    [ "$out" = "true|$NEW" ] || die "verify(since) at $size events: expected true|$NEW, got $out"
    R[$level,since]="${R[$level,since]:-} $(time_ms "$DB" "SELECT count(*) FROM audit.verify(since => '$heads')")"
  done
  if ((level <= 1)); then
    R[$level,full]=$(time_ms "$DB" "SELECT count(*) FROM audit.verify()")
  fi
done
sql "$DB" -c "SELECT bool_and(ok) FROM audit.verify(since => (SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h))" | grep -qx t \
  || die "verify failed after the benchmark"

# ---- report -----------------------------------------------------------------------------
first=${LEVELS%% *}
base=$(calc "%.6f" "$(mean ${R[$first,rec]}) / $(mean ${R[$first,plain]})")
bbase=$(calc "%.6f" "$(median ${R[$first,brec]}) / $(median ${R[$first,bplain]})")
# shellcheck disable=SC2086
{
  echo "## Scale: recording and incremental verify as the log grows"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, PostgreSQL $(sql "$DB" -c 'SHOW server_version'),"
  echo "git $(git rev-parse --short HEAD 2>/dev/null || echo unknown). Run took $(($(date +%s) - T0))s."
  echo "TPS: 4 clients, mean of $ROUNDS x ${SECS}s; bulk ($(int $BULK_N) in one transaction) and verify: median of $REPEAT, ms."
  echo "\"vs empty\": (audit_ext / plain at this size) / (the same on the smallest log), so that the"
  echo "machine's drift cancels out; the goal is within 10% (0.90x-1.10x)."
  echo
  echo "| events in the log | record TPS | plain TPS | record/plain | vs empty | bulk record | bulk plain | record/plain | vs empty | verify(since) of $(int $NEW) new | full verify |"
  echo "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  for level in $LEVELS; do
    rec=$(mean ${R[$level,rec]}); plain=$(mean ${R[$level,plain]})
    brec=$(median ${R[$level,brec]}); bplain=$(median ${R[$level,bplain]}); since=$(median ${R[$level,since]})
    full=-; [ -n "${R[$level,full]:-}" ] && full="$(int "${R[$level,full]}") ms"
    echo "| $(int ${R[$level,size]}) | $(int "$rec") | $(int "$plain") | $(calc "%.2f" "$rec / $plain") | $(calc "%.2f" "$rec / $plain / $base")x | $(int "$brec") ms | $(int "$bplain") ms | $(calc "%.2f" "$brec / $bplain") | $(calc "%.2f" "$brec / $bplain / $bbase")x | $(int "$since") ms ($(int "$NEW / ($since / 1000)") events/s) | $full |"
  done
} | tee "$OUT/scale.md"

#!/usr/bin/env bash
# Row capture benchmark (issue 3, section 2; see BENCHMARKS.md). Run by `make bench` after
# bench/run.sh, or alone with `make bench-capture`; needs the bench cluster up.
#
# Three copies of t(id int primary key, a text, b int, c timestamptz), side by side:
#   plain    untracked
#   tracked  audit.track('t_tracked'): statement-level capture, hashed and chained
#   plpgsql  the generic PL/pgSQL AFTER ROW trigger of bench/plpgsql_audit.sql
# 1. bulk: INSERT ... SELECT of 100,000 rows, UPDATE of all of them, DELETE of all of them
#    (each its own transaction; median of BENCH_REPEAT; variants alternate);
# 2. pgbench: single-row UPDATE ... WHERE id = random, 4 clients (-c 4 -j 2), -M prepared.
# Prints a markdown table and writes it to bench/results/capture.md (raw: capture.log).
#   BENCH_SECONDS=20 BENCH_ROUNDS=2 BENCH_WARMUP=3 BENCH_REPEAT=3 BENCH_KEEP=0 as in run.sh
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # from the checkout root, PostgreSQL 15 tools first
N=100000
VARIANTS=(plain tracked plpgsql)
bench_start capture audit_bench_capture
sql "$DB" -f bench/plpgsql_audit.sql
for v in "${VARIANTS[@]}"; do
  sql "$DB" -c "CREATE TABLE t_$v (id int PRIMARY KEY, a text, b int, c timestamptz)"
done
sql "$DB" -c "SELECT audit.track('t_tracked')" >/dev/null
sql "$DB" -c "CREATE TRIGGER plpgsql_audit AFTER INSERT OR UPDATE OR DELETE ON t_plpgsql
              FOR EACH ROW EXECUTE FUNCTION plpgsql_audit()"

# ---- 1. bulk ---------------------------------------------------------------------------
declare -A MS=()
for ((r = 1; r <= REPEAT; r++)); do
  order=("${VARIANTS[@]}")
  if ((r % 2 == 0)); then order=(plpgsql tracked plain); fi
  for v in "${order[@]}"; do
    log "bulk $v, repetition $r/$REPEAT"
    MS[insert,$v]="${MS[insert,$v]:-} $(time_ms "$DB" "INSERT INTO t_$v SELECT i, md5(i::text), i, now() FROM generate_series(1, $N) i")"
    MS[update,$v]="${MS[update,$v]:-} $(time_ms "$DB" "UPDATE t_$v SET b = b + 1")"
    MS[delete,$v]="${MS[delete,$v]:-} $(time_ms "$DB" "DELETE FROM t_$v")"
  done
done
captured=$(sql "$DB" -c "SELECT count(*) FROM audit.events WHERE object_name = 'public.t_tracked' AND action LIKE 'row.%'")
[ "$captured" = $((3 * N * REPEAT)) ] || die "expected $((3 * N * REPEAT)) captured events, found $captured"

# ---- 2. pgbench single-row updates ------------------------------------------------------
for v in "${VARIANTS[@]}"; do
  sql "$DB" -c "INSERT INTO t_$v SELECT i, md5(i::text), 0, now() FROM generate_series(1, $N) i" -c "VACUUM ANALYZE t_$v"
done
tps() { # VARIANT SECONDS
  sed "s/TBL/t_$1/" bench/pgbench_update.sql >"$OUT/pgbench_update_$1.sql"
  run_pgbench "$DB" "$OUT/pgbench_update_$1.sql" 4 "$2"
}
declare -A TPS=()
log "pgbench warm-up (${WARMUP}s per variant)"
for v in "${VARIANTS[@]}"; do tps "$v" "$WARMUP" >/dev/null; done
for ((r = 1; r <= ROUNDS; r++)); do
  order=("${VARIANTS[@]}")
  if ((r % 2 == 0)); then order=(plpgsql tracked plain); fi
  for v in "${order[@]}"; do
    log "pgbench $v, round $r/$ROUNDS, ${SECS}s"
    TPS[$v]="${TPS[$v]:-} $(tps "$v" "$SECS")"
  done
done
sql "$DB" -c "SELECT bool_and(ok) FROM audit.verify()" | grep -qx t || die "verify failed after the benchmark"

# ---- report -----------------------------------------------------------------------------
# shellcheck disable=SC2086
{
  echo "## Row capture: tracked vs untracked vs a PL/pgSQL audit trigger"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, PostgreSQL $(sql "$DB" -c 'SHOW server_version'),"
  echo "git $(git rev-parse --short HEAD 2>/dev/null || echo unknown). Run took $(($(date +%s) - T0))s."
  echo "Table \`t(id int primary key, a text, b int, c timestamptz)\`; bulk: median of $REPEAT, ms;"
  echo "pgbench: \`UPDATE t SET b = b + 1 WHERE id = random(1, 100000)\`, 4 clients, mean of $ROUNDS x ${SECS}s."
  echo
  echo "| statement | untracked | tracked (audit_ext) | PL/pgSQL trigger | tracked / untracked | PL/pgSQL / untracked | goal |"
  echo "|---|--:|--:|--:|--:|--:|---|"
  for op in insert update delete; do
    p=$(median ${MS[$op,plain]}); t=$(median ${MS[$op,tracked]}); g=$(median ${MS[$op,plpgsql]})
    case $op in insert) what="INSERT ... SELECT 100,000 rows" ;; update) what="UPDATE 100,000 rows" ;; delete) what="DELETE 100,000 rows" ;; esac
    echo "| $what | $(int "$p") ms | $(int "$t") ms | $(int "$g") ms | $(calc "%.2f" "$t / $p")x | $(calc "%.2f" "$g / $p")x | <= 2.5x and faster than PL/pgSQL: $(met "$t / $p <= 2.5 && $t < $g") |"
  done
  p=$(mean ${TPS[plain]}); t=$(mean ${TPS[tracked]}); g=$(mean ${TPS[plpgsql]})
  echo "| single-row UPDATE, 4 clients (TPS) | $(int "$p") | $(int "$t") | $(int "$g") | $(calc "%.2f" "$t / $p")x | $(calc "%.2f" "$g / $p")x | tracked >= 0.6x: $(met "$t / $p >= 0.6") |"
} | tee "$OUT/capture.md"

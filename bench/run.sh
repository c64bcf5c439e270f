#!/usr/bin/env bash
# audit_ext benchmarks (see BENCHMARKS.md). Run by `make bench`, which installs the extension
# and starts the throwaway cluster `bench` (tests/tools/cluster.sh, port 5497) first; running
# this script by hand needs that cluster up:  tests/tools/cluster.sh start bench 5497
#
# Three side-by-side comparisons, each reported as a ratio:
#   1. pgbench: audit.record vs a plain INSERT of the same row into an unchained copy of
#      audit.events, at 1 and 4 clients, for 1 chain and for the default number of chains;
#   2. bulk: 100,000 audit.record calls in one transaction vs 100,000 plain inserts
#      (and 10,000 vs 100,000 calls, which should be about 10x: appends stay linear);
#   3. audit.verify over 1,000,000 events vs one full scan reading the same columns.
# Prints a markdown table and writes it to bench/results/latest.md (raw output:
# bench/results/latest.log). Uses its own databases audit_bench and audit_bench_verify,
# created fresh and dropped at the end (BENCH_KEEP=1 keeps them).
#
# Settings (environment):
#   BENCH_SECONDS=20         length of each pgbench run
#   BENCH_ROUNDS=2           pgbench rounds; each round runs every variant once, the order
#                            reversed every other round; TPS is the mean over rounds
#   BENCH_WARMUP=3           seconds of warm-up per pgbench variant, not reported
#   BENCH_CHAINS="1 <dflt>"  audit_ext.chains values to run audit.record with
#                            (default: 1 and the extension's default)
#   BENCH_VERIFY_EVENTS=1000000   events audit.verify checks
#   BENCH_FILL_SESSIONS=4    parallel sessions that write those events (a chain each, given 4 chains)
#   BENCH_REPEAT=3           repetitions of each bulk and verify timing (median reported)
#   BENCH_STATEMENT_TIMEOUT=600s  bound on every statement, so nothing can hang
#   BENCH_KEEP=0             1: keep the benchmark databases for inspection
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # sql, time_ms, median, mean, calc, met, int; cd to the root

SECS=${BENCH_SECONDS:-20}
ROUNDS=${BENCH_ROUNDS:-2}
WARMUP=${BENCH_WARMUP:-3}
VERIFY_N=${BENCH_VERIFY_EVENTS:-1000000}
FILL_SESSIONS=${BENCH_FILL_SESSIONS:-4}
REPEAT=${BENCH_REPEAT:-3}
TIMEOUT=${BENCH_STATEMENT_TIMEOUT:-600s}
KEEP=${BENCH_KEEP:-0}
BULK_N=100000
BULK_SMALL=10000
DB=audit_bench
VDB=audit_bench_verify
OUT=bench/results
LOG=$OUT/latest.log
BASE_OPTS="-c statement_timeout=$TIMEOUT -c client_min_messages=warning"

die() { echo "bench/run.sh: $*" >&2; exit 1; }
log() { echo "[bench $(date +%T)] $*" >&2; echo "== $(date +%T) $*" >>"$LOG"; }
for v in SECS ROUNDS WARMUP VERIFY_N FILL_SESSIONS REPEAT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

# Always the bench cluster: this script drops and creates databases.
tests/tools/cluster.sh status bench >/dev/null \
  || die "the bench cluster is not running: use 'make bench', or tests/tools/cluster.sh start bench 5497"
eval "$(tests/tools/cluster.sh env bench "$DB")"
export PGOPTIONS=$BASE_OPTS

mkdir -p "$OUT"
: >"$LOG"

# The library every new backend loads. Others may reinstall it while we run: a debug build
# (cargo pgrx install without --release) is many times slower, and a swap mid-run mixes
# two builds' numbers, so refuse the first and flag the second in the report.
LIB=$("${PG_CONFIG:-$PGBIN/pg_config}" --pkglibdir)/audit_ext.so
[ -f "$LIB" ] || die "$LIB not found: run 'make install' first"
lib_id() { md5sum "$LIB" | cut -c1-12; }
lib_is_debug() { command -v readelf >/dev/null && readelf -S "$LIB" 2>/dev/null | grep -q '\.debug_info'; }
lib_is_debug && die "$LIB is a debug build (has .debug_info): install a release build,
  cargo pgrx install --release --pg-config ${PG_CONFIG:-$PGBIN/pg_config}   (or: make bench)"
LIB_ID=$(lib_id)

# Other load: CPU time of the whole machine (/proc/stat) minus that of the bench cluster
# (postmaster, live and exited children) and of this script's children (psql, pgbench).
# The rest is other processes plus kernel threads (some of it I/O done for us).
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
own_ticks() {
  local pm p; pm=$(tests/tools/cluster.sh pid bench)
  for p in "$pm" $(pgrep -P "$pm") $$; do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk '{sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15} END {print t}'  # utime stime cutime cstime
}
read -r BUSY0 TOTAL0 < <(machine_ticks)
OWN0=$(own_ticks)

drop_dbs() {
  if [ "$KEEP" = 1 ]; then log "keeping databases $DB and $VDB (BENCH_KEEP=1)"; return; fi
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS $VDB WITH (FORCE)" >/dev/null 2>&1 || true
}
cleanup() {
  local rc=$?
  # stop whatever we left running (fill sessions) before dropping the databases
  local j; for j in $(jobs -pr); do kill "$j" 2>/dev/null || true; done
  wait 2>/dev/null || true
  drop_dbs
  [ "$rc" = 0 ] || echo "bench/run.sh: failed (exit $rc); raw output in $LOG" >&2
}
trap cleanup EXIT

T0=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "fresh databases $DB, $VDB"
drop_dbs
sql postgres -c "CREATE DATABASE $DB" -c "CREATE DATABASE $VDB"
sql "$DB" -f bench/schema.sql
sql "$VDB" -c "CREATE EXTENSION audit_ext"

PG_VERSION=$(sql "$DB" -c "SHOW server_version")
EXT_VERSION=$(sql "$DB" -c "SELECT extversion FROM pg_extension WHERE extname = 'audit_ext'")
DEFAULT_CHAINS=$(sql "$DB" -c "LOAD 'audit_ext'" -c "SHOW audit_ext.chains")
read -r -a CHAINS <<<"${BENCH_CHAINS:-1 $DEFAULT_CHAINS}"
SETTINGS=$(sql "$DB" -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
  FROM pg_settings WHERE name IN ('shared_buffers', 'fsync', 'synchronous_commit', 'wal_level',
  'max_wal_size', 'checkpoint_timeout', 'work_mem', 'full_page_writes', 'max_connections')")
GIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- src sql Cargo.toml 2>/dev/null)" ]; then GIT="$GIT + uncommitted changes in src/ or sql/"; fi

# ---------------------------------------------------------------------------------------
# 1. pgbench: one statement per transaction, -M prepared.
#    Variants: plain, then record with each BENCH_CHAINS value; per client count the
#    variants alternate (order reversed every other round) so all see the same machine.
# ---------------------------------------------------------------------------------------
declare -A TPS=()
# pgbench_tps SCRIPT CLIENTS CHAINS SECONDS: prints TPS (CHAINS empty: leave the setting alone)
pgbench_tps() {
  local opts=$BASE_OPTS
  [ -n "$3" ] && opts="$opts -c audit_ext.chains=$3"
  run_pgbench "$DB" "bench/pgbench_$1.sql" "$2" "$4" "$opts"
}

VARIANTS=(plain)
for c in "${CHAINS[@]}"; do VARIANTS+=("record:$c"); done
run_variant() { # VARIANT CLIENTS SECONDS
  case $1 in
    plain) pgbench_tps plain "$2" "" "$3" ;;
    record:*) pgbench_tps record "$2" "${1#record:}" "$3" ;;
  esac
}

log "pgbench warm-up (${WARMUP}s per variant, 4 clients)"
for v in "${VARIANTS[@]}"; do run_variant "$v" 4 "$WARMUP" >/dev/null; done
for clients in 1 4; do
  for ((r = 1; r <= ROUNDS; r++)); do
    order=("${VARIANTS[@]}")
    if ((r % 2 == 0)); then order=(); for ((i = ${#VARIANTS[@]} - 1; i >= 0; i--)); do order+=("${VARIANTS[i]}"); done; fi
    for v in "${order[@]}"; do
      log "pgbench $v, $clients client(s), round $r/$ROUNDS, ${SECS}s"
      t=$(run_variant "$v" "$clients" "$SECS")
      TPS[$clients,$v]="${TPS[$clients,$v]:-} $t"
      log "  tps $t"
    done
  done
done

# ---------------------------------------------------------------------------------------
# 2. Bulk: one statement = one transaction; median of BENCH_REPEAT.
# ---------------------------------------------------------------------------------------
bulk_record() { echo "SELECT count(audit.record('bench.bulk', 'order', i::text, message => 'x')) FROM generate_series(1, $1) i"; }
bulk_insert() { echo "INSERT INTO $2 (action, object_type, object_id, message) SELECT 'bench.bulk', 'order', i::text, 'x' FROM generate_series(1, $1) i"; }
declare -A BULK=()
for ((r = 1; r <= REPEAT; r++)); do
  log "bulk, repetition $r/$REPEAT"
  BULK[plain]="${BULK[plain]:-} $(time_ms "$DB" "$(bulk_insert $BULK_N bench_plain)")"
  BULK[record]="${BULK[record]:-} $(time_ms "$DB" "$(bulk_record $BULK_N)")"
  BULK[plain_small]="${BULK[plain_small]:-} $(time_ms "$DB" "$(bulk_insert $BULK_SMALL bench_plain)")"
  BULK[small]="${BULK[small]:-} $(time_ms "$DB" "$(bulk_record $BULK_SMALL)")"
  BULK[direct]="${BULK[direct]:-} $(time_ms "$DB" "$(bulk_insert $BULK_N audit.events)")"
done

# ---------------------------------------------------------------------------------------
# 3. verify over BENCH_VERIFY_EVENTS events, written by BENCH_FILL_SESSIONS parallel
#    sessions in transactions of at most 100,000 audit.record calls. With the default
#    4 chains each concurrent transaction holds a chain of its own, so the events spread
#    over the chains (verify's output, logged, shows how).
# ---------------------------------------------------------------------------------------
log "verify: writing $VERIFY_N events with $FILL_SESSIONS parallel sessions"
fill_session() { # EVENTS
  local left=$1 b args=()
  while ((left > 0)); do
    b=$((left < 100000 ? left : 100000)); left=$((left - b))
    args+=(-c "SELECT count(audit.record('bench.event', 'order', i::text,
               metadata => ('{\"request_id\": \"req-' || i || '\"}')::jsonb)) FROM generate_series(1, $b) i")
  done
  sql "$VDB" "${args[@]}" >/dev/null
}
fill_start=$(date +%s.%N)
pids=()
for ((s = 0; s < FILL_SESSIONS; s++)); do
  n=$((VERIFY_N / FILL_SESSIONS + (s < VERIFY_N % FILL_SESSIONS ? 1 : 0)))
  fill_session "$n" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || die "a fill session failed"; done
FILL_S=$(calc "%.1f" "$(date +%s.%N) - $fill_start")
sql "$VDB" -c "VACUUM ANALYZE audit.events" -c CHECKPOINT

COLS="id, at, chain, seq, actor, actor_ip, session_id, application, action, status, severity, module, object_type, object_id, object_name, old, new, message, metadata, txid, prev_hash, hash"
SCAN="COPY (SELECT $COLS FROM audit.events ORDER BY chain, seq) TO '/dev/null'"
SEQSCAN="COPY (SELECT $COLS FROM audit.events) TO '/dev/null'"
VERIFY="SELECT * FROM audit.verify()"
SCAN_PLAN=$(sql "$VDB" -c "EXPLAIN (COSTS OFF) SELECT $COLS FROM audit.events ORDER BY chain, seq" | tr '\n' ' ' | sed 's/  */ /g; s/ $//')

# Warm-up, and the check that verify saw every event and found them intact.
sql "$VDB" -c "$SCAN" >/dev/null
vout=$(sql "$VDB" -F ' ' -c "$VERIFY")
printf 'verify:\n%s\n' "$vout" >>"$LOG"
read -r V_CHECKED V_OK V_CHAINS V_DIST < <(awk '{n += $2; if ($3 != "t") bad++; d = d (d ? ", " : "") $2}
  END {print n, (bad ? "f" : "t"), NR, d}' <<<"$vout")
if [ "$V_CHECKED" != "$VERIFY_N" ] || [ "$V_OK" != t ]; then
  die "verify checked $V_CHECKED events (expected $VERIFY_N), all ok: $V_OK"
fi
declare -A VER=()
for ((r = 1; r <= REPEAT; r++)); do
  log "verify vs scan, repetition $r/$REPEAT"
  VER[verify]="${VER[verify]:-} $(time_ms "$VDB" "$VERIFY")"
  VER[scan]="${VER[scan]:-} $(time_ms "$VDB" "$SCAN")"
  VER[seqscan]="${VER[seqscan]:-} $(time_ms "$VDB" "$SEQSCAN")"
done

# ---------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------
ELAPSED=$(($(date +%s) - T0))
read -r BUSY1 TOTAL1 < <(machine_ticks)
OWN1=$(own_ticks)
CPU_OWN=$(calc "%.0f" "100 * ($OWN1 - $OWN0) / ($TOTAL1 - $TOTAL0)")
CPU_OTHER=$(calc "%.0f" "100 * (($BUSY1 - $BUSY0) - ($OWN1 - $OWN0)) / ($TOTAL1 - $TOTAL0)")
if ((CPU_OTHER < 1)); then CPU_OTHER="under 1"; fi  # tick rounding can make it slightly negative
LIB_WARNING=
if [ "$(lib_id)" != "$LIB_ID" ]; then
  LIB_WARNING="WARNING: $LIB was replaced during the run (md5 $LIB_ID, now $(lib_id)): the numbers mix two builds; run again."
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
# shellcheck disable=SC2086
{
  b_plain=$(median ${BULK[plain]}); b_rec=$(median ${BULK[record]})
  b_small=$(median ${BULK[small]}); b_direct=$(median ${BULK[direct]}); b_psmall=$(median ${BULK[plain_small]})
  v_ver=$(median ${VER[verify]}); v_scan=$(median ${VER[scan]}); v_seq=$(median ${VER[seqscan]})
  v_eps=$(calc "%.0f" "$VERIFY_N / ($v_ver / 1000)")

  echo "# audit_ext benchmark results"
  echo
  if [ -n "$LIB_WARNING" ]; then echo "**$LIB_WARNING**"; echo; fi
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo) GiB RAM,"
  echo "PostgreSQL $PG_VERSION, audit_ext $EXT_VERSION (git $GIT; audit_ext.so md5 $LIB_ID, release build)."
  echo "Run took ${ELAPSED}s. CPU time over the run, as a share of all $(nproc) CPUs: this benchmark $CPU_OWN%,"
  echo "everything else $CPU_OTHER% (other processes and kernel threads, including I/O done for us)."
  echo "Load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END."
  echo
  echo "Server: $SETTINGS."
  echo "audit_ext.chains default: $DEFAULT_CHAINS. BENCH_SECONDS=$SECS BENCH_ROUNDS=$ROUNDS BENCH_WARMUP=$WARMUP BENCH_REPEAT=$REPEAT."
  echo
  echo "## audit.record vs plain INSERT (pgbench, 1 statement per transaction, -M prepared)"
  echo
  echo "TPS: mean of $ROUNDS run(s) of ${SECS}s each; 4 clients use \`-c 4 -j 2\`."
  echo
  echo "| clients | audit_ext.chains | plain INSERT TPS | audit.record TPS | record / plain | goal (4 clients: >= 0.7x) |"
  echo "|--:|--:|--:|--:|--:|---|"
  for clients in 1 4; do
    p=$(mean ${TPS[$clients,plain]})
    for c in "${CHAINS[@]}"; do
      t=$(mean ${TPS[$clients,record:$c]})
      label=$c; [ "$c" = "$DEFAULT_CHAINS" ] && label="$c (default)"
      goal="-"
      if [ "$clients" = 4 ]; then
        goal=$(met "$t / $p >= 0.7")
        [ "$c" = "$DEFAULT_CHAINS" ] || goal="$goal (info: goal is for the default)"
      fi
      echo "| $clients | $label | $(int "$p") | $(int "$t") | $(calc "%.2f" "$t / $p")x | $goal |"
    done
  done
  echo
  echo "## Bulk: one transaction (median of $REPEAT)"
  echo
  echo "| statement | events | time (ms) | events/s | ratio | goal |"
  echo "|---|--:|--:|--:|--:|---|"
  echo "| plain \`INSERT INTO bench_plain ... SELECT ... generate_series\` | $(int $BULK_N) | $(calc "%.0f" "$b_plain") | $(int "$BULK_N / ($b_plain / 1000)") | 1.00x | baseline |"
  echo "| \`SELECT count(audit.record(...)) FROM generate_series\` | $(int $BULK_N) | $(calc "%.0f" "$b_rec") | $(int "$BULK_N / ($b_rec / 1000)") | $(calc "%.2f" "$b_rec / $b_plain")x plain | <= 2x plain: $(met "$b_rec / $b_plain <= 2") |"
  echo "| \`SELECT count(audit.record(...)) FROM generate_series\` | $(int $BULK_SMALL) | $(calc "%.0f" "$b_small") | $(int "$BULK_SMALL / ($b_small / 1000)") | 100k takes $(calc "%.1f" "$b_rec / $b_small")x as long as 10k | linear, about 10x (at most 12x): $(met "$b_rec / $b_small <= 12") |"
  echo "| plain \`INSERT INTO bench_plain ... SELECT\` | $(int $BULK_SMALL) | $(calc "%.0f" "$b_psmall") | $(int "$BULK_SMALL / ($b_psmall / 1000)") | 100k takes $(calc "%.1f" "$b_plain / $b_psmall")x as long as 10k | info |"
  echo "| \`INSERT INTO audit.events ... SELECT\` (trigger only, no audit.record) | $(int $BULK_N) | $(calc "%.0f" "$b_direct") | $(int "$BULK_N / ($b_direct / 1000)") | $(calc "%.2f" "$b_direct / $b_plain")x plain | info |"
  echo
  echo "## audit.verify over $(int "$VERIFY_N") events (median of $REPEAT)"
  echo
  echo "Written by $FILL_SESSIONS parallel sessions in ${FILL_S}s ($(int "$VERIFY_N / $FILL_S") events/s); $V_CHAINS chain(s) of $V_DIST events."
  echo "Scan plan: \`$SCAN_PLAN\`."
  echo
  echo "| statement | time (ms) | events/s | ratio | goal |"
  echo "|---|--:|--:|--:|---|"
  echo "| \`SELECT * FROM audit.verify()\` | $(calc "%.0f" "$v_ver") | $(int "$v_eps") | $(calc "%.2f" "$v_ver / $v_scan")x scan | >= 1,000,000 events/s: $(met "$v_eps >= 1000000"); <= 2x scan: $(met "$v_ver / $v_scan <= 2") |"
  echo "| scan: \`COPY (SELECT <all 22 columns> FROM audit.events ORDER BY chain, seq) TO '/dev/null'\` | $(calc "%.0f" "$v_scan") | $(int "$VERIFY_N / ($v_scan / 1000)") | 1.00x | baseline |"
  echo "| same scan without ORDER BY (sequential scan) | $(calc "%.0f" "$v_seq") | $(int "$VERIFY_N / ($v_seq / 1000)") | $(calc "%.2f" "$v_seq / $v_scan")x scan | info |"
} | tee "$OUT/latest.md"
log "done in ${ELAPSED}s; table in $OUT/latest.md, raw output in $LOG"
if [ -n "$LIB_WARNING" ]; then echo "bench/run.sh: $LIB_WARNING" >&2; exit 2; fi

# Helpers shared by the bench scripts (sourced). run.sh defines die, log and LOG itself;
# capture.sh, alerts.sh and retention.sh get them from bench_start.

# Every script runs from the checkout's root, with PostgreSQL 15's client tools first on PATH.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH="$PGBIN:$PATH"

# psql, unaligned, quiet, stopping at the first error.
sql() { local db=$1; shift; psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$db" "$@"; }
# Runs one SQL statement (its own transaction) on a fresh connection and prints its
# duration in ms as measured by psql's \timing (so it includes the commit).
time_ms() {
  local db=$1 q=$2 out
  sql "$db" -c CHECKPOINT
  out=$(sql "$db" -c '\timing on' -c "$q") || { echo "$out" >&2; die "failed: $q"; }
  printf '%s\n' "$out" >>"$LOG"
  sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -n 1
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
mean() { printf '%s\n' "$@" | awk '{s += $1} END {print s / NR}'; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }            # calc FORMAT EXPR
met() { if awk "BEGIN {exit !($1)}"; then echo "met"; else echo "**not met**"; fi; }
int() { # rounds EXPR, with thousands separators
  awk "BEGIN {s = sprintf(\"%.0f\", $1); while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9](,|$)/, \",&\", s); print s}"
}

# run_pgbench DB SCRIPT CLIENTS SECONDS [PGOPTIONS]: TPS of one pgbench run (-n -M prepared,
# -j 2 from 2 clients on), after a CHECKPOINT; dies on any failed transaction.
run_pgbench() {
  local db=$1 script=$2 clients=$3 secs=$4 opts=${5:-${PGOPTIONS:-}} jobs=1 out failed
  [ "$clients" -ge 2 ] && jobs=2
  sql "$db" -c CHECKPOINT
  out=$(PGOPTIONS=$opts pgbench -n -M prepared -f "$script" -c "$clients" -j "$jobs" -T "$secs" "$db" 2>&1) \
    || { echo "$out" >&2; die "pgbench $script failed"; }
  printf '%s\n' "$out" >>"$LOG"
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
  [ "${failed:-0}" = 0 ] || { echo "$out" >&2; die "pgbench $script: $failed failed transactions"; }
  sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out"
}

# bench_start NAME DB: what bench/capture.sh and bench/alerts.sh share. Reads the common
# BENCH_* settings, defines die and log (raw output in bench/results/NAME.log), connects to the
# bench cluster, and creates DB afresh with audit_ext (dropped on exit unless BENCH_KEEP=1).
bench_start() {
  BENCH_NAME=$1 DB=$2
  SECS=${BENCH_SECONDS:-20} ROUNDS=${BENCH_ROUNDS:-2} WARMUP=${BENCH_WARMUP:-3}
  REPEAT=${BENCH_REPEAT:-3} KEEP=${BENCH_KEEP:-0}
  OUT=bench/results LOG=bench/results/$1.log
  die() { echo "bench/$BENCH_NAME.sh: $*" >&2; exit 1; }
  log() { echo "[$BENCH_NAME $(date +%T)] $*" >&2; echo "== $(date +%T) $*" >>"$LOG"; }
  tests/tools/cluster.sh status bench >/dev/null \
    || die "the bench cluster is not running: use 'make bench', or tests/tools/cluster.sh start bench 5497"
  eval "$(tests/tools/cluster.sh env bench "$DB")"
  export PGOPTIONS="-c statement_timeout=${BENCH_STATEMENT_TIMEOUT:-600s} -c client_min_messages=warning"
  mkdir -p "$OUT"
  : >"$LOG"
  drop_db() { [ "$KEEP" = 1 ] || psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; }
  trap drop_db EXIT
  T0=$(date +%s)
  drop_db
  sql postgres -c "CREATE DATABASE $DB"
  sql "$DB" -c "CREATE EXTENSION audit_ext"
}

#!/usr/bin/env bash
# Instructions per audit.record of two builds of audit_ext.so, counted by valgrind's callgrind
# (instruction counts do not drift with the machine's load, unlike times): a single-user
# postgres on the stopped bench cluster's data directory runs N and then 2N audit.record calls
# in one statement with each build; the slope (I(2N) - I(N)) / N is the cost of one call with
# the fixed cost of starting the backend and loading the library taken out.
#   usage: bench/callgrind_record.sh OLD.so NEW.so [N]    (database audit_ab from bench/ab.sh)
#   CG_CASE=record (default): N audit.record calls in one statement;
#   CG_CASE=capture: one INSERT of N rows into a table tracked by audit.track;
#   CG_CASE=verify: audit.verify of the last N events (run after record: it needs 2N events).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
old=$1 new=$2 n=${3:-3000}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
so="$("$PGBIN/pg_config" --pkglibdir)/audit_ext.so"
tests/tools/cluster.sh stop bench >/dev/null 2>&1 || true
d=$(tests/tools/cluster.sh datadir bench)
cp "$so" "$so.cg-saved"; trap 'cp "$so.cg-saved" "$so"; rm -f "$so.cg-saved"' EXIT
tmp=$(mktemp -d); chmod 1777 "$tmp"  # (callgrind writes its output file as the server user)
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
case=${CG_CASE:-record}
count() { # build calls -> instructions
  cp "$1" "$so"
  case $case in
    record) echo "SELECT count(audit.record('cg.e', 'doc', g::text)) FROM generate_series(1, $2) g;" ;;
    capture) printf '%s\n' "CREATE TABLE IF NOT EXISTS cg_rows (id int, v text, n numeric);" \
               "SELECT audit.track('cg_rows');" \
               "INSERT INTO cg_rows SELECT g, 'value ' || g, g * 1.5 FROM generate_series(1, $2) g;" ;;
    verify) echo "SELECT count(*) FROM audit.verify((SELECT max(id) FROM audit.events) - $2, NULL);" ;;
    *) echo "callgrind_record.sh: unknown CG_CASE $case" >&2; exit 2 ;;
  esac >"$tmp/q.sql"
  chmod 644 "$tmp/q.sql"
  as_pg valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$PGBIN/postgres" --single -D "$d" \
    -c shared_buffers=64MB audit_ab <"$tmp/q.sql" 2>&1 | sed -nE 's/.*Collected : ([0-9]+).*/\1/p'
}
for build in old new; do
  a=$(count "${!build}" "$n"); b=$(count "${!build}" $((2 * n)))
  echo "$build (${!build}): $(( (b - a) / n )) instructions per ${case} unit ($n and $((2 * n)): $a, $b)"
done
rm -rf "$tmp"

#!/usr/bin/env bash
# The clock-dependent tests (partitions, retention, tiers) on a cluster whose clock starts at
# awkward moments: a month end, the first seconds of a month, a year end, a leap day, one
# second before midnight UTC. libfaketime (Debian's faketime) moves the server's clock; the
# clock then runs on, so a test that takes a few seconds crosses the boundary while it runs.
#   usage: dates.sh [TIMESTAMP ...]      env: DATES_PORT (default 5495), DATES_TESTS
# Prints one "ok"/"FAIL" line per moment and ends with "N passed, N failed".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=$ROOT/tests/tools/cluster.sh
PORT=${DATES_PORT:-5495}
LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -n 1 || true)
[ -n "$LIB" ] || { echo "dates: libfaketime not found (apt-get install faketime)"; echo "0 passed, 1 failed"; exit 1; }
# every test: a clock-dependent one may depend on what the earlier ones recorded
TESTS=${DATES_TESTS:-$(cd "$ROOT/tests/pg_regress/sql" && ls *.sql | sed "s/\.sql$//" | LC_ALL=C sort | tr "\n" " ")}
if (($#)); then moments=("$@"); else
  moments=("2027-01-31 23:59:40" "2027-03-01 00:00:02" "2027-12-31 23:59:50" "2028-02-29 23:59:45"
           "2026-12-31 23:59:59")
fi

# a regress input directory holding only the clock-dependent tests
work=$(mktemp -d)
mark=$(mktemp)
# libfaketime leaves one semaphore and one shared memory object per process that forked
# under it in /dev/shm: remove those this run made
trap '"$CLUSTER" stop dates >/dev/null 2>&1 || true; rm -rf "$work"
  find /dev/shm -maxdepth 1 -name "*faketime_*" -newer "$mark" -delete 2>/dev/null || true; rm -f "$mark"' EXIT
mkdir -p "$work/sql" "$work/expected"
for t in $TESTS; do
  cp "$ROOT/tests/pg_regress/sql/$t.sql" "$work/sql/"; cp -r "$ROOT/tests/pg_regress/sql/include" "$work/sql/"
  cp "$ROOT/tests/pg_regress/expected/$t.out" "$work/expected/"
done
chmod -R a+rwX "$work"

pass=0 failed=0
for m in "${moments[@]}"; do
  "$CLUSTER" stop dates >/dev/null 2>&1 || true
  # the server (and everything started from here) sees the clock start at $m, in UTC
  # (passed as CLUSTER_ENV: libfaketime preloaded into root's processes would make its shared
  # memory as root, and the server, run as postgres, fails to open it)
  if CLUSTER_ENV=$(printf '%s\n' TZ=UTC "LD_PRELOAD=$LIB" "FAKETIME=@$m" FAKETIME_DONT_RESET=1) \
     "$CLUSTER" start dates "$PORT" >/dev/null \
     && now=$(eval "$("$CLUSTER" env dates)"; psql -XAtq -d postgres -c "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')") \
     && [ "${now:0:10}" = "${m:0:10}" ] \
     && out=$(REGRESS_DIR=$work REGRESS_DB=audit_dates "$ROOT/tests/tools/regress.sh" dates 2>&1); then
    echo "ok   - the regress suite passes with the server's clock starting at $m UTC (server said $now)"
    pass=$((pass + 1))
  else
    echo "FAIL - the regress suite with the server's clock starting at $m UTC (server said ${now:-nothing})"
    printf '%s\n' "${out:-}" | tail -n 60
    failed=$((failed + 1))
  fi
done
"$CLUSTER" stop dates >/dev/null 2>&1 || true
echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]

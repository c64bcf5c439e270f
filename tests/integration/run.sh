#!/usr/bin/env bash
# Integration harness: runs each tests/integration/t_*.sh (sorted) against the `test`
# cluster (started here if needed, port $TEST_PORT, default 5498) with lib.sh's helpers
# loaded, sums the checks and ends with "N passed, N failed[, N skipped]".
#   usage: run.sh [t_name.sh ...]     env: TEST_PORT, INTEGRATION_TIMEOUT (seconds per file)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Under a subreaper, so that servers killed by the crash test are reaped (tests/tools/subreaper.py).
if [ -z "${AUDIT_EXT_SUBREAPER:-}" ]; then
  export AUDIT_EXT_SUBREAPER=1
  exec python3 "$HERE/../tools/subreaper.py" "$0" "$@"
fi
CLUSTER=$HERE/../tools/cluster.sh
export PATH=/usr/lib/postgresql/15/bin:$PATH   # PG15's psql, pgbench, pg_dump

export TEST_PORT=${TEST_PORT:-5498}
"$CLUSTER" start test "$TEST_PORT"
eval "$("$CLUSTER" env test)"

shopt -s nullglob
if (($#)); then tests=("$@"); else
  mapfile -t tests < <(printf '%s\n' "$HERE"/t_*.sh | LC_ALL=C sort | sed '/^$/d')
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0 failed=0 skipped=0
for t in "${tests[@]}"; do
  [ -f "$t" ] || t=$HERE/$t
  name=$(basename "$t")
  echo "=== $name"
  # every file starts on a running cluster, even when the one before left it down
  "$CLUSTER" start test "$TEST_PORT" >/dev/null || true
  results=$work/$name; : >"$results"
  rc=0
  (cd "$HERE" && T_RESULTS=$results timeout "${INTEGRATION_TIMEOUT:-600}" \
     bash -c 'set -euo pipefail; source "$1"; source "$2"' bash "$HERE/lib.sh" "$t") || rc=$?
  if [ "$rc" -ne 0 ]; then echo "FAIL - $name exited with status $rc"; echo fail >>"$results"; fi
  p=$(grep -cx pass "$results" || true); f=$(grep -cx fail "$results" || true)
  s=$(grep -cx skip "$results" || true)
  echo "--- $name: $p ok, $f failed, $s skipped"
  pass=$((pass + p)) failed=$((failed + f)) skipped=$((skipped + s))
done

if ((skipped)); then echo "$pass passed, $failed failed, $skipped skipped"; else echo "$pass passed, $failed failed"; fi
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Run the unit tests: first the plain `cargo test -p audit_core` (the hash encoding and the query
# language, no PostgreSQL), then the #[pg_test]s: `cargo pgrx test pg15` against the system PostgreSQL 15.
# pgrx initdb's a fresh cluster per run in <unit home>/15-<pid>, so the server runs as
# `postgres` when we are root (initdb refuses root), as ourselves otherwise. --runas makes
# pgrx call `sudo -u USER` (initdb, pg_ctl) and `cargo pgrx install --sudo`: sudo is needed.
#   usage: unit.sh [--clean] [extra cargo pgrx test args]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH=$HOME/.cargo/bin:$PATH
cd "$ROOT"

if [ "$(id -u)" = 0 ]; then runas=postgres; else runas=$(id -un); fi
# (from / : the server user may not be allowed into our working directory)
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
dir=$(tests/tools/cluster.sh home unit)

cleanup() { # stop and remove clusters of finished runs (dir 15-PID, PID = the test binary)
  local d
  for d in "$dir"/15-*; do
    [ -d "$d" ] || continue
    if kill -0 "${d##*-}" 2>/dev/null; then continue; fi   # a concurrent run
    if [ -f "$d/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" stop -D "$d" -m immediate >/dev/null 2>&1 || true
    fi
    as_pg rm -rf "$d"
  done
}

cleanup
if [ "${1:-}" = --clean ]; then rmdir "$dir" 2>/dev/null || true; exit 0; fi
rc=0
# (its "test result: ok. N passed; 0 failed" lines are counted by test_all.sh; a failure fails the layer)
cargo test -p audit_core || rc=$?
cargo pgrx test pg15 --runas "$runas" --pgdata "$dir" "$@" || rc=$?
cleanup
exit "$rc"

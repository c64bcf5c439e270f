#!/usr/bin/env bash
# Run every tests/pg_regress/sql/*.sql (sorted by name) with PostgreSQL's own pg_regress
# against the running cluster NAME (default: test), or with --server against whatever server
# PGHOST, PGPORT and PGUSER name (`make installcheck`, as PGXS extensions have it: the
# extension must be installed there, and the role a superuser), in a freshly re-created database.
# `cargo pgrx regress` is not used: it refuses to work as root in pgrx 0.18.
#   usage: regress.sh [NAME | --server]    env: REGRESS_DIR (input dir), REGRESS_DB, PG_REGRESS
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PG_REGRESS=${PG_REGRESS:-/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress}
DIR=${REGRESS_DIR:-$ROOT/tests/pg_regress}
DB=${REGRESS_DB:-audit_regress}

if [ "${1:-}" = --server ]; then
  export PGHOST=${PGHOST:-/var/run/postgresql} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
else
  eval "$("$ROOT/tests/tools/cluster.sh" env "${1:-test}")"
fi

shopt -s nullglob
tests=()
for f in "$DIR"/sql/*.sql; do tests+=("$(basename "$f" .sql)"); done
if ((${#tests[@]} == 0)); then echo "regress: no tests in $DIR/sql"; exit 0; fi
mapfile -t tests < <(printf '%s\n' "${tests[@]}" | LC_ALL=C sort)

# --use-existing makes pg_regress skip creating the database: do it ourselves.
# (pg_regress still sets PGTZ=PST8PDT and PGDATESTYLE='Postgres, MDY' for the sessions.)
PGOPTIONS='-c client_min_messages=warning' "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -d postgres \
  -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" -c "CREATE DATABASE \"$DB\"" \
  -c "ALTER DATABASE \"$DB\" SET lc_messages = 'C'"

for t in "${tests[@]}"; do
  [ -f "$DIR/expected/$t.out" ] || echo "regress: $DIR/expected/$t.out is missing (pg_regress stops there;" \
    "review $DIR/results/$t.out and copy it to expected/)" >&2
done
rm -rf "$DIR/results" "$DIR/regression.diffs" "$DIR/regression.out"
if "$PG_REGRESS" --use-existing --bindir="$PGBIN" --host="$PGHOST" --port="$PGPORT" \
     --user="${PGUSER:-postgres}" --inputdir="$DIR" --outputdir="$DIR" --dbname="$DB" "${tests[@]}"; then
  exit 0
fi
if [ -s "$DIR/regression.diffs" ]; then
  echo "==== $DIR/regression.diffs (first 400 lines) ===="
  head -n 400 "$DIR/regression.diffs"
fi
exit 1

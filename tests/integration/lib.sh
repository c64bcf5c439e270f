# Helpers for tests/integration/t_*.sh; sourced by run.sh before each test, which runs
# under `set -euo pipefail` with PGHOST/PGPORT/PGUSER/PGDATABASE pointing at the test cluster.
#
#   sql "query" [psql args]           run query (several statements allowed), print rows (-XAtq)
#   sql_expect_error SQLSTATE "query" [message [psql args]]   assert the query fails with that SQLSTATE
#   assert_eq EXPECTED ACTUAL message | assert_match REGEX ACTUAL message
#   ok message | fail message | skip message      record one check
#   fresh_db NAME [--no-extension]   drop+create NAME, CREATE EXTENSION audit_ext, and make it
#                                    the current database (exports PGDATABASE=NAME)
#   ext_available                    true when audit_ext is installed in the server
#   as_pg CMD...                     run CMD as the cluster's OS user (postgres when root)
#   grown_mb OUT SQL...              run the SQL statements in one background session, after a
#                                    pg_sleep(1) marker; poll that backend's anonymous resident
#                                    memory (RssAnon: leaves out the shared buffers it reads) while
#                                    they run; print "MB" it grew by, or "f (why)"; output in OUT
#   tamper "SQL" [psql args]         run SQL as a superuser who switched off every guard first
#                                    (event triggers, triggers of audit.events and partitions),
#                                    then switch them back on (ALWAYS), committed
#   kill9_cluster DATADIR            kill -9 the cluster's postmaster and all its children, wait
#                                    until they are gone; sets KILLED_PM to the postmaster's pid
# Tests run in tests/integration; $TOOLS is tests/tools, $TEST_PORT the test cluster's port.
# A test that exits early (an unexpected SQL error under set -e) counts as one failure.

: "${T_RESULTS:?lib.sh must be sourced by tests/integration/run.sh}"
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)

as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }

sql() {
  local q=$1; shift
  psql -XAtq -v ON_ERROR_STOP=1 "$@" <<<"$q"
}

ok()   { echo "ok   - $*"; echo pass >>"$T_RESULTS"; }
fail() { echo "FAIL - $*"; echo fail >>"$T_RESULTS"; }
skip() { echo "skip - $*"; echo skip >>"$T_RESULTS"; }

assert_eq() {
  if [ "$1" == "$2" ]; then ok "$3"; else
    fail "$3"; printf '       expected: %s\n       actual:   %s\n' "$1" "$2"
  fi
}

assert_match() {
  if [[ $2 =~ $1 ]]; then ok "$3"; else
    fail "$3"; printf '       expected to match: %s\n       actual: %s\n' "$1" "$2"
  fi
}

sql_expect_error() {
  local want=$1 q=$2 msg=${3:-"fails with SQLSTATE $1: $2"} out rc=0 got
  out=$(psql -Xq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "${@:4}" <<<"$q" 2>&1) || rc=$?
  # verbose errors look like "ERROR:  23505: duplicate key value ..."
  got=$(sed -nE 's/^(ERROR|FATAL|PANIC):  ([0-9A-Z]{5}): .*/\2/p' <<<"$out" | head -n 1)
  if [ "$rc" -ne 0 ] && [ "$got" == "$want" ]; then ok "$msg"; else
    fail "$msg"
    printf '       expected SQLSTATE %s, got %s (psql exit %s); output:\n' "$want" "${got:-none}" "$rc"
    sed 's/^/         /' <<<"$out" | head -n 20
  fi
}

ext_available() {
  [ "$(sql "SELECT count(*) FROM pg_available_extensions WHERE name = 'audit_ext'" -d postgres)" = 1 ]
}

fresh_db() {
  local db=$1
  PGOPTIONS='-c client_min_messages=warning' sql "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" -d postgres
  sql "CREATE DATABASE \"$db\"" -d postgres
  export PGDATABASE=$db
  if [ "${2:-}" != --no-extension ]; then sql "CREATE EXTENSION audit_ext"; fi
}

tamper() {
  local q=$1; shift
  sql "ALTER EVENT TRIGGER audit_ext_ddl_command DISABLE; ALTER EVENT TRIGGER audit_ext_ddl_drop DISABLE;
       DO \$\$ DECLARE r regclass; BEGIN
         FOR r IN SELECT 'audit.events'::regclass UNION ALL SELECT inhrelid::regclass FROM pg_inherits
                  WHERE inhparent = 'audit.events'::regclass LOOP
           EXECUTE format('ALTER TABLE %s DISABLE TRIGGER USER', r);
         END LOOP; END \$\$;
       $q;
       DO \$\$ DECLARE r regclass; BEGIN
         FOR r IN SELECT 'audit.events'::regclass UNION ALL SELECT inhrelid::regclass FROM pg_inherits
                  WHERE inhparent = 'audit.events'::regclass LOOP
           EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_chain_event, ENABLE ALWAYS TRIGGER append_only, '
                          'ENABLE ALWAYS TRIGGER zz_alerts', r);
         END LOOP; END \$\$;
       ALTER EVENT TRIGGER audit_ext_ddl_command ENABLE ALWAYS; ALTER EVENT TRIGGER audit_ext_ddl_drop ENABLE ALWAYS" "$@"
}

grown_mb() {
  local out=$1; shift
  local args=(-c "SELECT pg_sleep(1) AS grown_mb_marker") q client pid="" base=0 peak=0 kb
  for q in "$@"; do args+=(-c "$q"); done
  psql -XAt "${args[@]}" >"$out" 2>&1 &
  client=$!
  for _ in $(seq 1 40); do
    pid=$(sql "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND backend_type = 'client backend' AND query LIKE 'SELECT pg_sleep(1) AS grown_mb_marker%' LIMIT 1")
    [ -n "$pid" ] && break
    sleep 0.05
  done
  if [ -n "$pid" ]; then
    base=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    while kill -0 "$client" 2>/dev/null; do
      kb=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${kb:-0}" -gt "$peak" ] && peak=$kb
      sleep 0.02
    done
  fi
  wait "$client" || true
  if [ -n "$pid" ] && [ "$peak" -gt 0 ]; then echo $(( (peak - base) / 1024 )); else echo "f (backend ${pid:-not found})"; fi
}

# Alive: a /proc entry that is not a zombie's (read once: it can vanish between two reads).
proc_alive() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; [[ ! $st =~ ^[0-9]+\ \(.*\)\ Z ]]; }

kill9_cluster() {
  local d=$1 pm children p
  pm=$(head -n 1 "$d/postmaster.pid")
  # Freeze the postmaster first: otherwise it can fork a backend between the listing of its
  # children and the kill, and that orphan (seen here) holds the old shared memory and blocks
  # the restart.
  kill -STOP "$pm"
  children=$(ps -o pid= --ppid "$pm" || true)
  kill -9 "$pm" $children 2>/dev/null || true
  # (run.sh runs the tests under a subreaper, so the dead are reaped. A process in the middle
  # of an fsync dies only when the call returns, which under heavy I/O was seen to take 30 s.)
  for p in $pm $children; do
    for _ in $(seq 1200); do proc_alive "$p" || break; sleep 0.1; done
    if proc_alive "$p"; then fail "process $p still alive 120 s after SIGKILL"; fi
  done
  # The restart reads postmaster.pid: a dead postmaster not yet reaped still answers kill -0.
  for _ in $(seq 300); do [ -e "/proc/$pm" ] || break; sleep 0.1; done
  if [ -e "/proc/$pm" ]; then as_pg rm -f "$d/postmaster.pid"; fi   # a zombie nobody reaps
  KILLED_PM=$pm
}

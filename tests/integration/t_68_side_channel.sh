# The side channel (src/side_channel/): logins, failed logins, logouts, denied statements and
# audit.record_autonomous, written by background workers as ordinary chained events, on a
# cluster of its own with the library preloaded and pg_hba.conf asking for scram-sha-256 over
# TCP loopback; audit_ext.level on, off and required; kill -9 of the postmaster while 4 clients
# call record_autonomous.

tools="$(dirname "$PWD")/tools"
work_dir=$(mktemp -d)

# ---- not preloaded: record_autonomous says why it cannot work ---------------------------------
fresh_db side_plain
sql_expect_error 55000 "SELECT audit.record_autonomous('x.y')" \
  "not preloaded: audit.record_autonomous fails with 55000 (object not in prerequisite state)"
assert_eq "f" "$(sql "SELECT active FROM audit.status() WHERE feature = 'side_channel'")" \
  "not preloaded: audit.status() says the side channel is inactive"
sql "DROP DATABASE IF EXISTS side_plain WITH (FORCE)" -d postgres

# ---- a preloaded cluster with scram-sha-256 over TCP ------------------------------------------
sport=$((${TEST_PORT:-5498} - 24))
CLUSTER_OPTS="shared_preload_libraries='audit_ext';max_connections=130;password_encryption='scram-sha-256'" \
  "$tools/cluster.sh" start side "$sport" postgres >/dev/null
trap '"$tools/cluster.sh" stop side >/dev/null 2>&1 || true; rm -rf "$work_dir"' EXIT
eval "$("$tools/cluster.sh" env side postgres)"
sdata=$("$tools/cluster.sh" datadir side)
slog=$sdata/server.log
as_pg sh -c "printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' > '$sdata/pg_hba.conf'"
sql "ALTER SYSTEM RESET audit_ext.level; ALTER SYSTEM RESET audit_ext.database; ALTER SYSTEM RESET audit_ext.record_errors" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
PGOPTIONS='-c client_min_messages=warning' sql "CREATE EXTENSION IF NOT EXISTS audit_ext" >/dev/null   # the fallback database: postgres
# (the cluster is kept between runs: count only this run's events of postgres)
pmark=$(sql "SELECT coalesce(max(id), 0) FROM audit.events")
PGOPTIONS='-c client_min_messages=warning' sql "DROP DATABASE IF EXISTS side_db WITH (FORCE); DROP DATABASE IF EXISTS side_noext WITH (FORCE);
     DROP ROLE IF EXISTS side_alice; DROP ROLE IF EXISTS side_nobody; DROP ROLE IF EXISTS side_nologin"
sql "CREATE DATABASE side_db; CREATE DATABASE side_noext"
sql "CREATE ROLE side_alice LOGIN PASSWORD 'Secret-Pw-1'; CREATE ROLE side_nobody LOGIN PASSWORD 'Secret-Pw-2';
     CREATE ROLE side_nologin NOLOGIN PASSWORD 'Secret-Pw-3'"
sql "CREATE EXTENSION audit_ext; GRANT audit_writer TO side_alice" -d side_db
export PGDATABASE=side_db
tcp() { # USER PASSWORD DB SQL [psql args]: one session over TCP with scram
  PGPASSWORD=$2 psql -XAtq -h 127.0.0.1 -p "$sport" -U "$1" -d "$3" -v ON_ERROR_STOP=1 "${@:5}" -c "$4"
}
logins() { # DB WHERE: how many login events match (of this run, in postgres)
  local since=0; [ "$1" = postgres ] && since=$pmark
  sql "SELECT count(*) FROM audit.events WHERE module = 'server' AND action = 'authentication.login' AND id > $since AND $2" -d "$1"
}

assert_eq "t" "$(sql "SELECT active FROM audit.status() WHERE feature = 'side_channel'")" \
  "preloaded: audit.status() says the side channel is active"
assert_match "level on; launcher running" "$(sql "SELECT detail FROM audit.status() WHERE feature = 'side_channel'")" \
  "audit.status() names the level and the launcher"

# ---- a login with the right password ----------------------------------------------------------
PGAPPNAME=side-app tcp side_alice Secret-Pw-1 side_db "SELECT 1" >/dev/null
row=$(sql "SELECT actor, host(actor_ip), status, object_type, object_id, application, metadata->>'auth_method',
                  metadata->>'hba_line', metadata->>'database', metadata ? 'pid', metadata->>'ssl'
           FROM audit.events WHERE action = 'authentication.login' AND actor = 'side_alice' ORDER BY id DESC LIMIT 1")
assert_eq "side_alice|127.0.0.1|success|database|side_db|side-app|scram-sha-256|2|side_db|t|false" "$row" \
  "a login over TCP with scram is an authentication.login event (status success, role, client address, application, method, pg_hba line, database, pid)"
assert_eq "0" "$(sql "SELECT count(*) FROM audit.events e WHERE e::text LIKE '%Secret-Pw%' OR e::text LIKE '%SCRAM-SHA-256\$%'")" \
  "no login event holds the password or anything derived from it"
assert_eq "0" "$(sql "SELECT count(*) FROM audit.events e WHERE e::text LIKE '%Secret-Pw%' OR e::text LIKE '%SCRAM-SHA-256\$%'" -d postgres)" \
  "nor does any event of the database where the roles were created"

# the login is written before the session runs its first statement
sql "GRANT audit_reader TO side_alice"
first=$(tcp side_alice Secret-Pw-1 side_db "SELECT count(*) FROM audit.events WHERE action = 'authentication.login' AND actor = 'side_alice'")
assert_eq "2" "$first" "the login's event is committed when the login completes: the session's first statement sees it"
assert_eq "2" "$(logins side_db "actor = 'side_alice' AND status = 'success'")" "each login is one event"

# ---- failed logins ----------------------------------------------------------------------------
out=$(tcp side_alice wrong-password side_db "SELECT 1" 2>&1 || true)
assert_match "password authentication failed" "$out" "a wrong password is refused"
sleep 0.5
row=$(sql "SELECT status, severity, metadata->>'sqlstate', metadata->>'reason' ~ 'password authentication failed', object_id, host(actor_ip)
           FROM audit.events WHERE action = 'authentication.login' AND actor = 'side_alice' AND status = 'failure' ORDER BY id DESC LIMIT 1")
assert_eq "failure|warning|28P01|t|side_db|127.0.0.1" "$row" \
  "a wrong password is an authentication.login failure with SQLSTATE 28P01 and the server's reason, in the named database's log"

out=$(tcp side_alice Secret-Pw-1 no_such_db "SELECT 1" 2>&1 || true)
assert_match "does not exist" "$out" "a login to a database that does not exist is refused"
sleep 0.5
assert_eq "1" "$(logins postgres "status = 'failure' AND object_id = 'no_such_db' AND metadata->>'sqlstate' = '3D000' AND actor = 'side_alice'")" \
  "a login to no_such_db is recorded (3D000) in the log of audit_ext.database (postgres)"

out=$(tcp side_nologin Secret-Pw-3 side_db "SELECT 1" 2>&1 || true)
assert_match "not permitted to log in" "$out" "a NOLOGIN role is refused"
sleep 0.5
assert_eq "0|1" "$(logins side_db "actor = 'side_nologin' AND status = 'success'")|$(logins side_db "actor = 'side_nologin' AND status = 'failure' AND metadata->>'sqlstate' = '28000'")" \
  "a role that may not log in: one failure (28000), never a success"

sql "REVOKE CONNECT ON DATABASE side_db FROM PUBLIC"
out=$(tcp side_nobody Secret-Pw-2 side_db "SELECT 1" 2>&1 || true)
sql "GRANT CONNECT ON DATABASE side_db TO PUBLIC"
assert_match "permission denied for database" "$out" "a role without CONNECT is refused"
sleep 0.5
assert_eq "0|1" "$(logins side_db "actor = 'side_nobody' AND status = 'success'")|$(logins side_db "actor = 'side_nobody' AND status = 'failure' AND metadata->>'sqlstate' = '42501'")" \
  "a role without CONNECT: one failure (42501), never a success"

out=$(tcp no_such_role whatever side_db "SELECT 1" 2>&1 || true)
sleep 0.5
assert_eq "1" "$(logins side_db "actor = 'no_such_role' AND status = 'failure' AND metadata->>'sqlstate' = '28P01'")" \
  "a role that does not exist: a failure under the name given"

# ---- logouts ----------------------------------------------------------------------------------
n0=$(sql "SELECT count(*) FROM audit.events WHERE action = 'authentication.logout' AND actor = 'side_alice'")
tcp side_alice Secret-Pw-1 side_db "SELECT pg_sleep(0.3)" >/dev/null
sleep 0.5
row=$(sql "SELECT count(*) - $n0, (SELECT (metadata->>'duration_s')::numeric >= 0.3 FROM audit.events
           WHERE action = 'authentication.logout' AND actor = 'side_alice' ORDER BY id DESC LIMIT 1)
           FROM audit.events WHERE action = 'authentication.logout' AND actor = 'side_alice'")
assert_eq "1|t" "$row" "a session that ends is one authentication.logout event, with its duration"
tcp side_alice Secret-Pw-1 side_db "SELECT pg_sleep(30)" >/dev/null 2>&1 &
bg=$!
sleep 1
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'side_alice'" >/dev/null
wait "$bg" 2>/dev/null || true
sleep 0.5
assert_eq "57P01" "$(sql "SELECT metadata->>'sqlstate' FROM audit.events WHERE action = 'authentication.logout' AND actor = 'side_alice' ORDER BY id DESC LIMIT 1")" \
  "a session ended by pg_terminate_backend logs out with the FATAL error that ended it (57P01)"

# ---- 100 logins in parallel -------------------------------------------------------------------
before=$(logins side_db "application = 'side-par'")
for i in $(seq 100); do PGAPPNAME=side-par tcp side_alice Secret-Pw-1 side_db "SELECT 1" >/dev/null 2>&1 & done
wait
assert_eq "100" "$(( $(logins side_db "application = 'side-par' AND status = 'success'") - before ))" \
  "100 logins in parallel: 100 events"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "every chain verifies after them"

# A database's owner cannot make the writers fail with the database's settings.
before=$(logins side_db "application = 'side-ro'")
sql "ALTER DATABASE side_db SET default_transaction_read_only = on" -d postgres
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'audit_ext writer'" -d postgres >/dev/null
sleep 1
PGAPPNAME=side-ro tcp side_alice Secret-Pw-1 side_db "SELECT 1" >/dev/null
sql "ALTER DATABASE side_db RESET default_transaction_read_only" -d postgres
assert_eq "1" "$(( $(logins side_db "application = 'side-ro'") - before ))" \
  "ALTER DATABASE ... SET default_transaction_read_only = on: logins are still recorded"

# ---- denied statements ------------------------------------------------------------------------
out=$(tcp side_alice Secret-Pw-1 side_db "SELECT * FROM pg_authid" 2>&1 || true)
assert_match "permission denied for table pg_authid" "$out" "a statement without privilege fails with 42501"
sleep 0.5
row=$(sql "SELECT status, actor, object_type, object_id, metadata->>'sqlstate', metadata->>'statement', message
           FROM audit.events WHERE action = 'statement.denied' ORDER BY id DESC LIMIT 1")
assert_eq "denied|side_alice|table|pg_authid|42501|SELECT * FROM pg_authid|permission denied for table pg_authid" "$row" \
  "the 42501 is a statement.denied event: role, object, SQLSTATE, statement, message"
n=$(sql "SELECT count(*) FROM audit.events WHERE action = 'statement.denied'")
tcp side_alice Secret-Pw-1 side_db "SELECT 1/0" >/dev/null 2>&1 || true
tcp side_alice Secret-Pw-1 side_db "DO \$\$ BEGIN RAISE EXCEPTION 'payment denied'; END \$\$" >/dev/null 2>&1 || true
sleep 0.5
assert_eq "$n" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'statement.denied'")" \
  "errors not listed in audit_ext.record_errors are not recorded (22012, P0001 by default)"
sql "ALTER SYSTEM SET audit_ext.record_errors = '42501, P0001'; SELECT pg_reload_conf()" >/dev/null
sleep 0.5
tcp side_alice Secret-Pw-1 side_db "DO \$\$ BEGIN RAISE EXCEPTION 'payment denied'; END \$\$" >/dev/null 2>&1 || true
sleep 0.5
assert_eq "P0001|payment denied" "$(sql "SELECT metadata->>'sqlstate', message FROM audit.events WHERE action = 'statement.denied' ORDER BY id DESC LIMIT 1" | tr -d '\n')" \
  "audit_ext.record_errors = '42501, P0001' records a P0001 too"
PGPASSWORD=Secret-Pw-1 sql_expect_error 42501 "SET audit_ext.record_errors = ''" "audit_ext.record_errors is superuser-only" \
  -h 127.0.0.1 -U side_alice
long=$(printf 'x%.0s' $(seq 40000))
tcp side_alice Secret-Pw-1 side_db "SELECT '$long' FROM pg_authid" >/dev/null 2>&1 || true
sleep 0.5
assert_match "^[0-9]+\\|t$" "$(sql "SELECT length(metadata->>'statement'), length(metadata->>'statement') < 32768 FROM audit.events WHERE action = 'statement.denied' ORDER BY id DESC LIMIT 1")" \
  "a long denied statement is cut to fit"

# ---- audit.record_autonomous ------------------------------------------------------------------
id=$(PGPASSWORD=Secret-Pw-1 psql -XAtq -h 127.0.0.1 -p "$sport" -U side_alice -d side_db -v ON_ERROR_STOP=1 <<'SQL'
BEGIN;
SELECT audit.set_context(actor => 'bob@shop', metadata => '{"order": 7}');
SELECT audit.record_autonomous('payment.denied', 'order', '7', status => 'failure', new => '{"amount": 12345678901234567890.5}');
ROLLBACK;
SQL
)
id=$(grep -E '^[0-9]+$' <<<"$id" | tail -1)
row=$(sql "SELECT action, status, actor, metadata->>'db_user', metadata->>'order', metadata->'asserted', new->>'amount' FROM audit.events WHERE id = ${id:-0}")
assert_eq 'payment.denied|failure|bob@shop|side_alice|7|["actor", "metadata"]|12345678901234567890.5' "$row" \
  "record_autonomous inside a rolled-back transaction: the event is kept, with the caller's context and numbers exactly"
if /usr/bin/python3 -c 'import psycopg' 2>/dev/null; then
  out=$(PGPASSWORD=Secret-Pw-1 /usr/bin/python3 - 127.0.0.1 "$sport" <<'PY'
import sys, psycopg
with psycopg.connect(host=sys.argv[1], port=sys.argv[2], dbname="side_db", user="side_alice") as c:
    ids = [c.execute("SELECT audit.record_autonomous(%s, %s)", ("refund.denied", "psycopg")).fetchone()[0] for _ in range(3)]
    c.rollback()
    print(",".join(map(str, ids)))
PY
)
  assert_eq "3" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'refund.denied' AND id IN (${out:-0})")" \
    "psycopg: three record_autonomous calls in a transaction rolled back are all kept"
else
  skip "psycopg not installed"
fi
sql_expect_error 22023 "SELECT audit.record_autonomous('x.y', status => 'maybe')" \
  "record_autonomous checks like audit.record: a bad status is 22023"
sql_expect_error 22023 "SELECT audit.record_autonomous('row.update', module => 'capture')" \
  "record_autonomous refuses audit_ext's own modules and actions (22023)"
sql_expect_error 22023 "SELECT audit.record_autonomous('x.y', module => 'server')" \
  "module server is reserved for the side channel's own events"
PGPASSWORD=Secret-Pw-2 sql_expect_error 42501 "SELECT audit.record_autonomous('x.y')" "a role that is not audit_writer cannot call it" \
  -h 127.0.0.1 -U side_nobody
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "every chain verifies"

# ---- databases without audit_ext --------------------------------------------------------------
tcp side_alice Secret-Pw-1 side_noext "SELECT 1" >/dev/null
assert_eq "1" "$(logins postgres "actor = 'side_alice' AND object_id = 'side_noext' AND status = 'success'")" \
  "a login to a database without audit_ext goes to the log of audit_ext.database"

# pg_restore's sessions (restore mode) write nothing into the database they restore
PGAPPNAME=pg_restore tcp side_alice Secret-Pw-1 side_db "SELECT 1" >/dev/null
sleep 0.5
assert_eq "0|1" "$(logins side_db "application = 'pg_restore'")|$(logins postgres "application = 'pg_restore' AND object_id = 'side_db'")" \
  "a pg_restore session's login goes to audit_ext.database, not into the database it restores"

# ---- level required ---------------------------------------------------------------------------
sql "ALTER SYSTEM SET audit_ext.database = 'no_such_fallback'; ALTER SYSTEM SET audit_ext.level = 'required'; SELECT pg_reload_conf()" >/dev/null
sleep 1
out=$(tcp side_alice Secret-Pw-1 side_noext "SELECT 1" 2>&1 || true)
assert_match "login refused: audit_ext could not record it" "$out" \
  "required: a login whose event has no log to go to (no audit_ext there, audit_ext.database missing) is refused"
assert_match "not recorded: database \"no_such_fallback\"" "$(grep 'AUDIT: action="authentication.login"' "$slog" | grep side_noext | tail -1)" \
  "required: the refused login is still written to the server log"
assert_eq "1" "$(tcp side_alice Secret-Pw-1 side_db "SELECT 1")" "required: a login to a database with audit_ext works"
# A writer that cannot write in time (its table locked by a superuser): record_autonomous in a
# session that logged in before fails closed. blocked_call OUT: the session logs in, waits
# until the lock is held, then calls; the locker holds it 13 s.
blocked_call() {
  (PGPASSWORD=Secret-Pw-1 psql -Xq -v VERBOSITY=verbose -h 127.0.0.1 -p "$sport" -U side_alice -d side_db \
     -c "DO \$\$ BEGIN WHILE NOT EXISTS (SELECT FROM pg_locks WHERE relation = 'audit.events'::regclass AND mode = 'AccessExclusiveLock' AND granted) LOOP PERFORM pg_sleep(0.1); END LOOP; END \$\$" \
     -c "SELECT coalesce(audit.record_autonomous('x.blocked')::text, 'null') AS result" >"$1" 2>&1 || true) &
  local client=$!
  sleep 1
  sql "BEGIN; LOCK TABLE audit.events IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(13); COMMIT" >/dev/null
  wait "$client"
}
blocked_call "$work_dir/required.out"
assert_match "ERROR:  53000: the audit side channel did not write the event within 10 seconds" "$(cat "$work_dir/required.out")" \
  "required: record_autonomous that cannot be written in time fails with 53000"
sql "ALTER SYSTEM SET audit_ext.level = 'on'; SELECT pg_reload_conf()" >/dev/null
sleep 1
out=$(tcp side_alice Secret-Pw-1 side_noext "SELECT 'in'" 2>&1 || true)
assert_match "in" "$out" "on: the same login is let in (best effort)"
assert_match "[1-9][0-9]* only in the server log" "$(sql "SELECT detail FROM audit.status() WHERE feature = 'side_channel'")" \
  "on: audit.status() counts the events that only reached the server log"
assert_match "does not exist" "$(sql "SELECT detail FROM audit.status() WHERE feature = 'side_channel'")" \
  "audit.status() says that audit_ext.database does not exist"
blocked_call "$work_dir/on.out"
assert_match "WARNING:  01000: audit_ext: audit.record_autonomous did not record the event.*null" "$(tr '\n' ' ' <"$work_dir/on.out")" \
  "on: record_autonomous that cannot be written in time warns and returns NULL"
sql "ALTER SYSTEM RESET audit_ext.database; ALTER SYSTEM SET audit_ext.level = 'off'; SELECT pg_reload_conf()" >/dev/null
sleep 1
n=$(logins side_db "true")
tcp side_alice Secret-Pw-1 side_db "SELECT 1" >/dev/null
sleep 0.5
assert_eq "$n" "$(logins side_db "true")" "off: logins are not recorded"
sql "ALTER SYSTEM RESET audit_ext.level; SELECT pg_reload_conf()" >/dev/null
sleep 1

# ---- kill -9 of the postmaster while 4 clients call record_autonomous -------------------------
ack=$(mktemp -d)
writer() {
  local n=0
  while [ -f "$ack/run" ]; do
    if id=$(PGPASSWORD=Secret-Pw-1 timeout 20 psql -XAtq -h 127.0.0.1 -p "$sport" -U side_alice -d side_db \
              -c "SELECT audit.record_autonomous('crash.autonomous', object_id => '$1-$n')" 2>/dev/null); then
      [ -n "$id" ] && echo "$id" >>"$ack/acked.$1"
    fi
    n=$((n + 1))
  done
}
touch "$ack/run"
for w in 1 2 3 4; do writer "$w" & done
sleep 4
kill9_cluster "$sdata"
pm=$KILLED_PM
rm -f "$ack/run"
wait 2>/dev/null || true
ok "killed postmaster $pm and its children with SIGKILL while 4 clients called record_autonomous"
CLUSTER_OPTS="shared_preload_libraries='audit_ext';max_connections=130;password_encryption='scram-sha-256'" \
  "$tools/cluster.sh" start side "$sport" postgres >/dev/null
acked=$(cat "$ack"/acked.* 2>/dev/null | sort -n | uniq)
n_acked=$(grep -c . <<<"$acked" || true)
if [ "$n_acked" -ge 10 ]; then ok "$n_acked record_autonomous calls were acknowledged before the crash"; else
  fail "too few acknowledged record_autonomous calls before the crash ($n_acked)"; fi
missing=$(sql "SELECT count(*) FROM unnest('{$(paste -sd, <<<"${acked:-0}")}'::bigint[]) a(id)
               WHERE NOT EXISTS (SELECT FROM audit.events e WHERE e.id = a.id AND e.action = 'crash.autonomous')")
assert_eq 0 "$missing" "every acknowledged record_autonomous event survived the crash"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "verify passes after crash recovery"
tcp side_alice Secret-Pw-1 side_db "SELECT 1" >/dev/null
assert_eq "t" "$(sql "SELECT count(*) > 0 FROM audit.events WHERE action = 'authentication.login' AND at > now() - interval '5 seconds'")" \
  "after recovery logins are recorded again"
rm -rf "$ack"
# a writer is a session of its database until idle 4 s; DROP DATABASE waits up to 5 s for it
PGOPTIONS='-c client_min_messages=warning' sql "DROP DATABASE IF EXISTS side_db; DROP DATABASE IF EXISTS side_noext" -d postgres >/dev/null
ok "DROP DATABASE of a database the side channel just wrote to waits for its writer and succeeds"

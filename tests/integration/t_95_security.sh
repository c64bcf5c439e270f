# Security (issue 9): every elevated entry point attacked by real login roles on a cluster with
# the library preloaded. Each attack checks that the attacker did not become superuser, that
# audit writes still go through within a bound, and that the event names who really acted.
# The README's "Security model" lists each promise with the check here that holds it.

tools="$(dirname "$PWD")/tools"
pport=$((${TEST_PORT:-5498} - 20))
CLUSTER_OPTS="shared_preload_libraries='audit_ext'" "$tools/cluster.sh" start preload "$pport" audit_sec >/dev/null
trap '"$tools/cluster.sh" stop preload >/dev/null 2>&1 || true' EXIT
eval "$("$tools/cluster.sh" env preload audit_sec)"

roles="sec_nobody sec_owner sec_admin sec_reader sec_writer sec_member sec_group sec_joiner"
PGOPTIONS="-c client_min_messages=warning" sql "$(for r in $roles; do echo "DROP OWNED BY $r CASCADE;"; done 2>/dev/null)" -d postgres >/dev/null 2>&1 || true
for db in audit_sec audit_sec_acl; do
  PGOPTIONS="-c client_min_messages=warning" sql "DROP DATABASE IF EXISTS $db WITH (FORCE)" -d postgres
done
PGOPTIONS="-c client_min_messages=warning" sql "DROP ROLE IF EXISTS $(echo $roles | tr ' ' ',')" -d postgres
sql "CREATE ROLE sec_nobody LOGIN; CREATE ROLE sec_owner LOGIN; CREATE ROLE sec_admin LOGIN IN ROLE audit_admin;
     CREATE ROLE sec_reader LOGIN IN ROLE audit_reader; CREATE ROLE sec_writer LOGIN IN ROLE audit_writer;
     CREATE ROLE sec_group; CREATE ROLE sec_member LOGIN" -d postgres >/dev/null
fresh_db audit_sec
sql "GRANT CREATE ON SCHEMA public TO sec_owner, sec_nobody;
     ALTER DATABASE audit_sec SET audit_ext.chains = 4" >/dev/null

as_role() { local r=$1; shift; psql -XAtq -v ON_ERROR_STOP=1 -U "$r" "$@"; }
rolsuper() { sql "SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolsuper AND rolname LIKE 'sec\_%'"; }

# ---- 1. No caller-controlled code runs with elevated rights -------------------------------
# 1a. Role capture hook: a pg_temp domain named jsonb (and text) whose CHECK escalates.
as_role sec_nobody <<'SQL' >/dev/null 2>&1 || true
CREATE FUNCTION pg_temp.evil() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE sec_nobody SUPERUSER';
  END IF;
  RETURN true;
END $$;
CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (pg_temp.evil());
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.evil());
CREATE DOMAIN pg_temp.int4 AS pg_catalog.int4 CHECK (pg_temp.evil());
CREATE TABLE pg_temp.events (x int);
SET search_path = pg_temp, public;
ALTER ROLE CURRENT_USER PASSWORD 'x';
SQL
assert_eq "" "$(rolsuper)" "role-capture hook: a pg_temp domain named jsonb/text does not run as superuser"
assert_eq "sec_nobody" "$(sql "SELECT actor FROM audit.events WHERE action = 'role.alter' AND object_name = 'CURRENT_USER' ORDER BY id DESC LIMIT 1")" \
  "the role change is still recorded, with the real actor"

# 1b. Owner of a tracked table: a cast to json of its own enum type, reached by to_jsonb(row).
as_role sec_owner <<'SQL' >/dev/null
CREATE TYPE public.mood AS ENUM ('ok', 'sad');
CREATE TABLE public.owned (id int PRIMARY KEY, m public.mood);
CREATE TABLE public.cast_log (who text, super boolean);
CREATE FUNCTION public.mood_json(public.mood) RETURNS json LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.cast_log SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE sec_owner SUPERUSER';
  END IF;
  RETURN to_json($1::text);
END $$;
CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood);
SQL
sql "GRANT SELECT ON public.owned TO sec_admin" >/dev/null
as_role sec_admin -c "SELECT audit.track('public.owned')" >/dev/null
as_role sec_owner -c "INSERT INTO public.owned VALUES (1, 'sad'); UPDATE public.owned SET m = 'ok'; DELETE FROM public.owned" >/dev/null
assert_eq "" "$(rolsuper)" "capture: a cast of a column type does not run as superuser"
assert_eq "sec_owner|f" "$(sql "SELECT string_agg(DISTINCT who || '|' || CASE WHEN super THEN 't' ELSE 'f' END, ',') FROM public.cast_log")" \
  "the cast ran as the table's writer, not elevated"
assert_eq "3|sec_owner" "$(sql "SELECT count(*) || '|' || string_agg(DISTINCT actor, ',') FROM audit.events WHERE object_name = 'public.owned' AND action LIKE 'row.%'")" \
  "and every change was captured, with the writer as actor"

# 1c. audit_admin and set_tier: a temp table of the name the old code used, with a trigger.
as_role sec_admin <<'SQL' >/dev/null 2>&1 || true
CREATE TEMP TABLE audit_ext_moved (partition text, tablespace name);
CREATE FUNCTION pg_temp.esc() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN EXECUTE 'ALTER ROLE sec_admin SUPERUSER'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER esc BEFORE INSERT ON pg_temp.audit_ext_moved FOR EACH ROW EXECUTE FUNCTION pg_temp.esc();
SELECT * FROM audit.set_tier('1 day', 'pg_default');
SELECT * FROM audit.set_tier('1 day', NULL);
SQL
assert_eq "" "$(rolsuper)" "set_tier: a session's temp table with a trigger does not run as superuser"
assert_eq "2" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'retention.tier' AND actor = 'sec_admin'")" \
  "set_tier worked and was recorded as sec_admin"

# 1d. A schema on the path before pg_catalog with look-alike functions does not reach verify.
as_role sec_owner <<'SQL' >/dev/null
CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS $$ SELECT NULL::text WHERE false $$;
CREATE FUNCTION public.format(text, text, text) RETURNS text LANGUAGE sql AS $$ SELECT NULL::text $$;
SQL
sql "ALTER EVENT TRIGGER audit_ext_ddl_drop DISABLE" >/dev/null
assert_match "event trigger audit_ext_ddl_drop is disabled" \
  "$(PGOPTIONS="-c search_path=public,pg_catalog" as_role sec_reader -c "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "verify pins its search path: shadowing functions of the caller's path do not hide a guard problem"
sql "ALTER EVENT TRIGGER audit_ext_ddl_drop ENABLE ALWAYS" >/dev/null

# ---- 2. Nobody can stop the audit trail ---------------------------------------------------
# 2a. The old advisory lock keys, taken by a role with no grants, block nothing.
as_role sec_nobody >/dev/null 2>&1 <<'SQL' &
SELECT pg_advisory_lock(1096107092, n) FROM generate_series(-1, 999) n;
SELECT pg_advisory_lock(1096107092::bigint << 32 | n) FROM generate_series(0, 3) n;
SELECT pg_sleep(15);
SQL
squat=$!
sleep 1.5
t0=$(date +%s%N)
out=$(PGOPTIONS="-c statement_timeout=5s" as_role sec_writer -c "SELECT audit.record('sec.after_squat') IS NOT NULL" 2>&1 || true)
ddl=$(PGOPTIONS="-c statement_timeout=5s" sql "CREATE TABLE public.squat_ddl (a int); DROP TABLE public.squat_ddl" 2>&1 && echo done || true)
ret=$(PGOPTIONS="-c statement_timeout=8s" sql "SELECT count(*) >= 0 FROM audit.ensure_partitions()" 2>&1 || true)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
assert_eq "t|done|t" "$out|$ddl|$ret" "advisory locks squatted by PUBLIC block neither writers, DDL nor partition upkeep"
assert_eq "t" "$([ "$ms" -lt 8000 ] && echo t || echo "f ($ms ms)")" "and nothing waited (all three in $ms ms)"
kill "$squat" 2>/dev/null || true; wait "$squat" 2>/dev/null || true

# 2b. Sessions idle in a transaction that hold every configured chain do not stall others.
for i in 1 2 3 4 5; do
  as_role sec_writer >/dev/null 2>&1 <<'SQL' &
BEGIN;
SELECT audit.record('sec.idle_holder');
SELECT pg_sleep(12);
COMMIT;
SQL
  holders+=($!)
done
sleep 2
t0=$(date +%s%N)
out=$(PGOPTIONS="-c statement_timeout=5s" as_role sec_writer -c "SELECT audit.record('sec.past_idle') IS NOT NULL" 2>&1 || true)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
assert_eq "t" "$out" "with all 4 chains held by idle transactions, another writer records ($ms ms)"
assert_eq "t" "$([ "$ms" -lt 2000 ] && echo t || echo "f ($ms ms)")" "without waiting for them"
# Partition upkeep needs ACCESS EXCLUSIVE on the default partition, which those open
# transactions share: it waits at most its lock_timeout (2 s), then fails clearly (55P03),
# so that writers never queue behind it for longer.
t0=$(date +%s%N)
out=$(psql -Xq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "SELECT count(*) FROM audit.ensure_partitions()" 2>&1 || true)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
assert_match "55P03|[0-9]+ *$" "$out" "ensure_partitions beside open transactions fails with 55P03 or succeeds"
assert_eq "t" "$([ "$ms" -lt 4500 ] && echo t || echo "f ($ms ms)")" "within its lock_timeout ($ms ms)"
for p in "${holders[@]}"; do wait "$p" 2>/dev/null || true; done
unset holders

# 2c. Maintenance is not a setting; it cannot be entered from SQL.
sql_expect_error 42602 "SET audit_ext.maintenance = on" "audit_ext.maintenance is not a setting at all"
sql_expect_error 42501 "SELECT audit_internal._begin_maintenance()" "a superuser cannot enter maintenance from a session"
sql_expect_error 42501 "SELECT audit_internal._begin_maintenance()" "nor can any other role" -U sec_admin

# 2d. Context: only audit.set_context (audit_writer) asserts one, and it is marked.
sql_expect_error 42501 "SET audit_ext.context_actor = 'alice'" "SET audit_ext.context_actor is refused to a non-superuser" -U sec_owner
sql_expect_error 42501 "SET audit_ext.context_metadata = '[1]'" "so is the raw metadata setting" -U sec_owner
as_role sec_owner -c "INSERT INTO public.owned VALUES (7, 'ok')" >/dev/null
assert_eq "sec_owner|" "$(sql "SELECT actor || '|' || coalesce(metadata ->> 'asserted', '') FROM audit.events WHERE object_name = 'public.owned' AND object_id = '7'")" \
  "a captured change records the real session"
sql_expect_error 42501 "SELECT audit.set_context(actor => 'alice')" "set_context needs audit_writer" -U sec_owner
as_role sec_writer -c "BEGIN; SELECT audit.set_context(actor => 'alice@example.com', actor_ip => '203.0.113.9'); SELECT audit.record('sec.asserted'); COMMIT" >/dev/null
assert_eq 'alice@example.com|203.0.113.9|["actor", "actor_ip"]|sec_writer|t' \
  "$(sql "SELECT actor || '|' || host(actor_ip) || '|' || (metadata -> 'asserted')::text || '|' || (metadata ->> 'db_user') || '|' ||
                 CASE WHEN metadata ->> 'db_session_id' IS NOT NULL THEN 't' ELSE 'f' END FROM audit.events WHERE action = 'sec.asserted'")" \
  "an asserted context is marked, with the real role and session beside it"

# ---- 3. The auditor and the admin get exactly their rights ---------------------------------
as_role sec_admin -c "SELECT audit.create_alert('sec_alert', 'action:sec.*', 100); SELECT * FROM audit.set_retention('30 days', 'sec.*')" >/dev/null
assert_eq "t" "$(as_role sec_reader -c "SELECT bool_and(ok) FROM audit.verify()")" \
  "audit_reader verifies with tracked tables, alerts and retention in use"
assert_eq "t" "$(as_role sec_reader -c "SELECT count(*) >= 1 FROM audit.tracked_tables WHERE intact")" "and reads tracked_tables"
as_role sec_owner -c "CREATE TABLE public.secret (id int PRIMARY KEY, s text); REVOKE ALL ON public.secret FROM PUBLIC" >/dev/null
sql_expect_error 42501 "SELECT audit.track('public.secret')" "audit_admin cannot track a table it may not read" -U sec_admin
sql_expect_error 42501 "SELECT audit.track((SELECT oid FROM pg_class WHERE relname = 'secret'))" "not even by its oid" -U sec_admin
sql_expect_error 22004 "SELECT audit.track('public.owned', exclude_columns => ARRAY[NULL])" "exclude_columns with NULL is refused (22004)" -U sec_admin

# ---- 4. A superuser's tampering leaves evidence --------------------------------------------
# (the side channel's logins and logouts off meanwhile: an event chained onto a chain that a
# tampering moved away would fork it, and the moving back would not be the only change)
sql "ALTER SYSTEM SET audit_ext.level = off; SELECT pg_reload_conf()" >/dev/null
sleep 1   # (that session's own logout is written meanwhile)
tamper "UPDATE audit.events SET retention_class = 7 WHERE chain = (SELECT chain FROM audit.events WHERE action = 'sec.asserted')"
# (read-only: verify's own event, chained meanwhile, would stay behind in the tampered state)
assert_match "moved event" "$(PGOPTIONS="-c default_transaction_read_only=on" sql "SELECT string_agg(reason, ';') FROM audit.verify() WHERE NOT ok")" \
  "events moved to another retention class are found and reported as moved"
tamper "UPDATE audit.events SET retention_class = 0 WHERE retention_class = 7"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "moved back, the log verifies"
# A forged retention anchor over deleted events of a live partition.
c=$(sql "SELECT chain FROM audit.events WHERE action = 'sec.asserted'")
n=$(sql "SELECT max(seq) FROM audit.events WHERE chain = $c")
if [ "$n" -ge 3 ]; then
  tamper "DELETE FROM audit.events WHERE chain = $c AND seq = 2;
          INSERT INTO audit.events (id, chain, seq, txid, actor, action, module, status, severity, metadata, new, prev_hash, hash)
          SELECT nextval('audit.events_id_seq'), $c, $n + 1, 1, 'postgres', 'retention.applied', 'retention', 'success', 'info', '{}',
                 jsonb_build_object('partitions', '[]'::jsonb, 'anchors', jsonb_build_array(jsonb_build_object(
                   'chain', $c, 'from_seq', 2, 'to_seq', 2,
                   'to_hash', (SELECT encode(hash, 'hex') FROM audit.events WHERE chain = $c AND seq = 1)))),
                 (SELECT hash FROM audit.events WHERE chain = $c AND seq = $n), '\\x00';
          UPDATE audit.events e SET hash = audit.hash_event(e) WHERE action = 'retention.applied' AND chain = $c"
  assert_match "cannot be relied on" "$(sql "SELECT string_agg(reason, ';') FROM audit.verify() WHERE NOT ok")" \
    "a hand-made retention anchor over deleted events is not relied on"
else
  fail "chain $c has too few events for the forged-anchor case"
fi
sql "ALTER SYSTEM RESET audit_ext.level; SELECT pg_reload_conf()" >/dev/null
fresh_db audit_sec
sql "ALTER DATABASE audit_sec SET audit_ext.chains = 1" >/dev/null
sql "CREATE TABLE public.t (id int PRIMARY KEY, v text); SELECT audit.track('public.t');
     SELECT audit.create_alert('a1', 'action:x.*', 5); SELECT * FROM audit.set_retention('90 days', 'x.*')" >/dev/null
sql "DELETE FROM audit.tracked; DROP TRIGGER audit_ext_capture_insert ON public.t; DROP TRIGGER audit_ext_capture_update ON public.t;
     DROP TRIGGER audit_ext_capture_delete ON public.t; DROP TRIGGER audit_ext_capture_truncate ON public.t" >/dev/null
assert_match "capture of public.t stopped without a capture.untrack event" "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "a silent untrack (row deleted, triggers dropped) is reported"
sql "UPDATE audit.retention SET keep = '1 day' WHERE pattern = 'x.*'; UPDATE audit.alert_rules SET threshold = 1000" >/dev/null
assert_match "retention policy x\\.\\* keeps .*audit.retention was edited.*alert a1 differs|alert a1 differs.*retention policy x\\.\\* keeps" \
  "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" "edited retention policies and alert rules are reported"
# An edited partition list (a recent partition made to look old) is reported, and retention
# refuses to act on it rather than drop recent events.
sql "UPDATE audit.partitions SET to_at = to_at - interval '10 years', from_at = from_at - interval '10 years'
     WHERE name = (SELECT name FROM audit.partitions WHERE now() >= from_at AND now() < to_at AND class = 0)" >/dev/null
assert_match "listed in audit.partitions with other bounds than its own" "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "an edited audit.partitions row is reported"
sql_expect_error XX001 "SELECT * FROM audit.apply_retention()" "and apply_retention refuses to drop by it (XX001)"
sql "UPDATE audit.partitions SET to_at = to_at + interval '10 years', from_at = from_at + interval '10 years'
     WHERE from_at < now() - interval '9 years'" >/dev/null
sql_expect_error 42501 "INSERT INTO audit.events (action, module) VALUES ('retention.applied', 'retention')" \
  "a direct INSERT may not use a module of audit_ext's own events"
sql_expect_error 42501 "SET session_replication_role = replica; DELETE FROM audit.events" "replica mode does not skip the guards"
sql "INSERT INTO audit.events (action, actor) VALUES ('sec.direct', 'somebody_else')" >/dev/null
assert_eq '["actor"]|postgres' "$(sql "SELECT (metadata -> 'asserted')::text || '|' || (metadata ->> 'db_user') FROM audit.events WHERE action = 'sec.direct'")" \
  "a direct INSERT that names an actor is marked as asserting it, with the real role"

# ---- 5. Smaller holes ------------------------------------------------------------------------
mark=$(sql "SELECT coalesce(max(id), 0) FROM audit.events")
sql "CREATE ROLE sec_joiner IN ROLE sec_group; ALTER GROUP sec_group ADD USER sec_member; ALTER GROUP sec_group DROP USER sec_member" >/dev/null
assert_eq "role.grant:sec_joiner:sec_group role.grant:sec_member:sec_group role.revoke:sec_member:sec_group" \
  "$(sql "SELECT string_agg(action || ':' || object_name || ':' || (new -> 'roles' ->> 0), ' ' ORDER BY id) FROM audit.events
          WHERE id > $mark AND action IN ('role.grant', 'role.revoke')")" \
  "CREATE ROLE ... IN ROLE and ALTER GROUP ADD/DROP USER record the members"
sql "ALTER SYSTEM SET audit_ext.capture_ddl = off; ALTER SYSTEM RESET audit_ext.capture_ddl" >/dev/null
sql "ALTER DATABASE audit_sec SET audit_ext.partition_worker = off; ALTER DATABASE audit_sec RESET audit_ext.partition_worker" >/dev/null
assert_eq "setting.alter_system:audit_ext.capture_ddl setting.alter_system:audit_ext.capture_ddl setting.alter_database:audit_ext.partition_worker setting.alter_database:audit_ext.partition_worker" \
  "$(sql "SELECT string_agg(action || ':' || object_name, ' ' ORDER BY id) FROM audit.events WHERE id > $mark AND action LIKE 'setting.%'")" \
  "ALTER SYSTEM and ALTER DATABASE ... SET of audit_ext settings are recorded"
sql "SET audit_ext.capture_ddl = off; SELECT 1" >/dev/null
assert_match "DDL capture is off" "$(sql "SET audit_ext.capture_ddl = off; SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "verify reports DDL capture switched off"
# A short hash in audit.retention_anchors: a clear error, not a panic.
sql "INSERT INTO audit.retention_anchors VALUES (0, 1, 1000000, '\\x00', 1)" >/dev/null
sql_expect_error XX001 "SELECT audit.record('sec.after_bad_anchor')" "a damaged retention anchor gives a clear error (XX001)"
sql "DELETE FROM audit.retention_anchors WHERE to_seq = 1000000" >/dev/null
# No backtrace reaches a client, even with RUST_BACKTRACE in the server's environment.
d=$("$tools/cluster.sh" datadir preload)
"$tools/cluster.sh" stop preload >/dev/null
as_pg env RUST_BACKTRACE=full /usr/lib/postgresql/15/bin/pg_ctl start -w -t 60 -D "$d" -l "$d/server.log" >/dev/null
out=$(psql -Xq -v VERBOSITY=verbose -c "SELECT * FROM audit.verify(from_id => 5, to_id => 1)" 2>&1 || true)
assert_match "from_id 5 is greater than to_id 1" "$out" "with RUST_BACKTRACE=full in the server's environment an error still says what is wrong"
assert_eq "0" "$(grep -ciE 'backtrace|rust_begin_unwind|audit_ext::|pgrx' <<<"$out" || true)" "and carries no backtrace"
"$tools/cluster.sh" stop preload >/dev/null

# ---- Default privileges of the installing role do not reach audit_ext's objects -------------
"$tools/cluster.sh" start preload "$pport" audit_sec >/dev/null
sql "ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO sec_nobody" -d postgres >/dev/null
fresh_db audit_sec_acl
sql "SELECT count(*) FROM audit.ensure_partitions(interval '12 months')" >/dev/null
sql_expect_error 42501 "SELECT key FROM audit.mask_key" "default privileges of the installer do not open the mask key" -U sec_nobody
sql_expect_error 42501 "UPDATE audit.retention SET keep = '1 day'" "nor the settings tables" -U sec_nobody
assert_eq "0" "$(sql "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a WHERE c.relnamespace = 'audit'::regnamespace
                      AND a.grantee = 'sec_nobody'::regrole")" "nor any partition created later"
sql "ALTER DEFAULT PRIVILEGES FOR ROLE postgres REVOKE ALL ON TABLES FROM sec_nobody" -d postgres >/dev/null
assert_eq "" "$(rolsuper)" "after every attack, no sec_ role is superuser"

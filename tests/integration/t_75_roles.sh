# Role changes are global objects that event triggers do not see. With audit_ext in
# shared_preload_libraries a utility hook records them; without it audit.status() says so.
assert_eq "f" "$(fresh_db audit_roles_nopreload >/dev/null; PGDATABASE=audit_roles_nopreload sql "SELECT active FROM audit.status() WHERE feature = 'role_capture'")" \
  "without preload, audit.status() reports role capture inactive"

tools="$(dirname "$PWD")/tools"
pport=$((${TEST_PORT:-5498} - 20))
CLUSTER_OPTS="shared_preload_libraries='audit_ext'" "$tools/cluster.sh" start preload "$pport" audit_roles >/dev/null
trap '"$tools/cluster.sh" stop preload >/dev/null 2>&1 || true' EXIT
eval "$("$tools/cluster.sh" env preload audit_roles)"
fresh_db audit_roles
assert_eq "t" "$(sql "SELECT active FROM audit.status() WHERE feature = 'role_capture'")" "with preload, role capture is active"
PGOPTIONS="-c client_min_messages=warning" sql "DROP ROLE IF EXISTS it_role_a, it_role_b, it_role_c, it_role_d, it_admin" >/dev/null
mark=$(sql "SELECT coalesce(max(id), 0) FROM audit.events")
sql "CREATE ROLE it_role_a LOGIN PASSWORD 'hunter2-secret';
     CREATE ROLE it_role_b;
     ALTER ROLE it_role_a CREATEDB CONNECTION LIMIT 3;
     ALTER ROLE it_role_a SET work_mem = '8MB';
     GRANT it_role_b TO it_role_a;
     REVOKE it_role_b FROM it_role_a;
     ALTER ROLE it_role_b RENAME TO it_role_c;
     DROP ROLE it_role_a, it_role_c" >/dev/null
assert_eq "role.create:it_role_a role.create:it_role_b role.alter:it_role_a role.set:it_role_a role.grant:it_role_a role.revoke:it_role_a role.rename:it_role_b role.drop:it_role_a role.drop:it_role_c" \
  "$(sql "SELECT string_agg(action || ':' || object_name, ' ' ORDER BY id) FROM audit.events WHERE id > $mark AND module IS DISTINCT FROM 'server'")" \
  "CREATE, ALTER, SET, GRANT, REVOKE, RENAME and DROP ROLE are each recorded"
assert_eq "0" "$(sql "SELECT count(*) FROM audit.events WHERE id > $mark AND (new::text LIKE '%hunter2%' OR message LIKE '%hunter2%')")" \
  "a password never reaches the log"
assert_eq '{"options": {"canlogin": true, "password": "(set)"}}|{"roles": ["it_role_b"], "admin_option": false}' \
  "$(sql "SELECT (SELECT new::text FROM audit.events WHERE id > $mark AND action = 'role.create' AND object_name = 'it_role_a') || '|' ||
                 (SELECT new::text FROM audit.events WHERE id > $mark AND action = 'role.grant')")" \
  "the events carry the options (not their secret values) and the granted roles"
# A role change by a role that may create roles but has no audit privilege is recorded too.
PGOPTIONS="-c client_min_messages=warning" sql "DROP ROLE IF EXISTS it_admin; CREATE ROLE it_admin LOGIN CREATEROLE" >/dev/null
psql -XAtq -v ON_ERROR_STOP=1 -U it_admin -c "CREATE ROLE it_role_d" >/dev/null
assert_eq "it_admin" "$(sql "SELECT actor FROM audit.events WHERE action = 'role.create' AND object_name = 'it_role_d'")" \
  "CREATE ROLE by a non-superuser with CREATEROLE is recorded, with that role as actor"
# A failed role command records nothing (but the sessions' logins and logouts, module server).
before=$(sql "SELECT count(*) FROM audit.events WHERE module IS DISTINCT FROM 'server'")
sql_expect_error 42710 "CREATE ROLE it_role_d" "a failing CREATE ROLE fails as usual"
assert_eq "$before" "$(sql "SELECT count(*) FROM audit.events WHERE module IS DISTINCT FROM 'server'")" "and records nothing"
# capture_ddl = off switches it off.
sql "SET audit_ext.capture_ddl = off; CREATE ROLE it_role_e; DROP ROLE it_role_e" >/dev/null
assert_eq "0" "$(sql "SELECT count(*) FROM audit.events WHERE object_name = 'it_role_e'")" "audit_ext.capture_ddl = off switches role capture off"
sql "DROP ROLE it_role_d; DROP ROLE it_admin" >/dev/null
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "role events are chained like any event"
"$tools/cluster.sh" stop preload >/dev/null

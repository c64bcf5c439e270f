# The audit of the audit (issue 13, section 2), with real login roles: every call of search,
# export, verify, row_history, explain_query and the reports records one event (module audit)
# with the caller, the arguments and the rows returned; where nothing can be written it goes
# to the server log; with the library preloaded and audit_ext.audit_reads = on, every
# statement that reads audit.events or a view over it (psql, a cursor, psycopg's extended
# protocol, COPY) records one audit.read event, never one per row.

roles="ra_reader ra_viewer ra_writer ra_admin"
drop_roles() {
  for r in $roles; do
    PGOPTIONS="-c client_min_messages=warning" sql "DROP OWNED BY $r CASCADE" -d postgres >/dev/null 2>&1 || true
  done
  PGOPTIONS="-c client_min_messages=warning" sql "DROP DATABASE IF EXISTS audit_reads WITH (FORCE)" -d postgres
  PGOPTIONS="-c client_min_messages=warning" sql "DROP ROLE IF EXISTS $(echo $roles | tr ' ' ',')" -d postgres
}
make_roles() {
  sql "CREATE ROLE ra_reader LOGIN IN ROLE audit_reader; CREATE ROLE ra_viewer LOGIN IN ROLE audit_viewer, audit_writer;
       CREATE ROLE ra_writer LOGIN IN ROLE audit_writer; CREATE ROLE ra_admin LOGIN IN ROLE audit_admin" -d postgres >/dev/null
}
as_role() { local r=$1; shift; psql -XAtq -v ON_ERROR_STOP=1 -U "$r" "$@"; }
# the last event of an action: "actor|rows|arguments"
last_read() { sql "SELECT actor || '|' || (new ->> 'rows') || '|' || (new -> 'arguments')::text FROM audit.events
                   WHERE action = '$1' AND module = 'audit' ORDER BY id DESC LIMIT 1" "${@:2}"; }
reads_of() { sql "SELECT count(*) FROM audit.events WHERE action = '$1' AND module = 'audit'" "${@:2}"; }

drop_roles
make_roles
fresh_db audit_reads
sql "SELECT audit.record('doc.read', 'doc', 'd' || i) FROM generate_series(1, 30) i;
     CREATE TABLE public.acct (id int PRIMARY KEY, owner text);
     SELECT audit.track('public.acct');
     INSERT INTO public.acct VALUES (1, 'a'); UPDATE public.acct SET owner = 'b' WHERE id = 1" >/dev/null
as_role ra_viewer -c "SELECT audit.record('doc.read', 'doc', 'mine')" >/dev/null

# ---- every call of a reading function is an event --------------------------------------------
n=$(as_role ra_reader -c "SELECT count(*) FROM audit.search('action:doc.read AND object_id:d1*', 5)" 2>/dev/null)
assert_eq "ra_reader|5|{\"query\": \"action:doc.read AND object_id:d1*\", \"after_id\": null, \"limit_rows\": 5}" \
  "$(last_read audit.search)" "audit.search records the caller, the query and arguments, and the rows returned ($n)"
assert_eq "function|audit.search|info|success" \
  "$(sql "SELECT object_type || '|' || object_id || '|' || severity || '|' || status FROM audit.events WHERE action = 'audit.search'")" \
  "as an ordinary event of module audit"
lines=$(as_role ra_reader -c "COPY (SELECT * FROM audit.export('csv', 'action:doc.read')) TO STDOUT" | wc -l)
assert_eq "ra_reader|31|{\"query\": \"action:doc.read\", \"since\": null, \"until\": null, \"format\": \"csv\"}|$lines" \
  "$(last_read audit.export)|32" "audit.export records its arguments and the events exported (31, plus the csv header line)"
chains=$(as_role ra_reader -c "SELECT count(*) FROM audit.verify()")
assert_match "^ra_reader\|$chains\|\{.*\"ok\": true" "$(last_read audit.verify)" "audit.verify records the rows it returned and its outcome"
as_role ra_reader -c "SELECT * FROM audit.verify(from_id => 3, to_id => 9)" >/dev/null
assert_match '"to_id": 9, "from_id": 3' "$(last_read audit.verify)" "and its arguments"
assert_eq "ra_reader|2|{\"pk\": \"1\", \"table\": \"public.acct\"}" \
  "$(as_role ra_reader -c "SELECT count(*) FROM audit.row_history('public.acct', '1')" >/dev/null; last_read audit.row_history)" \
  "audit.row_history(text) records the table, the key and the versions returned"
assert_eq "ra_reader|2|{\"pk\": {\"id\": 1}, \"table\": \"public.acct\"}" \
  "$(as_role ra_reader -c "SELECT count(*) FROM audit.row_history('public.acct', '{\"id\": 1}'::jsonb)" >/dev/null; last_read audit.row_history)" \
  "audit.row_history(jsonb) too, once (not again through the text form)"
assert_eq "ra_reader|1|{\"query\": \"actor:mallory\"}" \
  "$(as_role ra_reader -c "SELECT audit.explain_query('actor:mallory')" >/dev/null; last_read audit.explain_query)" \
  "audit.explain_query records what an auditor looked for"
groups=$(as_role ra_reader -c "SELECT count(*) FROM audit.summary(by => 'module')")
assert_eq "ra_reader|$groups|{\"by\": \"module\", \"since\": null, \"until\": null}" "$(last_read audit.summary)" \
  "audit.summary records its grouping and the rows (groups) returned"
cp=$(as_role ra_admin -c "SELECT audit.checkpoint()")
as_role ra_reader -c "SELECT count(*) FROM audit.verify(checkpoint => '$cp')" >/dev/null
sig=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["signature"])' "$cp")
assert_match "\"signature\": \"$sig\"" "$(last_read audit.verify)" "audit.verify(checkpoint) names the checkpoint it checked"
# a session's temporary type named text (types resolve in pg_temp first) cannot make a read look
# unrecordable
before=$(reads_of audit.verify)
as_role ra_reader -c "CREATE TYPE pg_temp.text AS ENUM ('x'); CREATE TYPE pg_temp.jsonb AS ENUM ('y');
                      SELECT count(*) FROM audit.verify(); SELECT audit.explain_query('actor:temp-types')" >/dev/null
assert_eq "$((before + 1))|ra_reader|1|{\"query\": \"actor:temp-types\"}" "$(reads_of audit.verify)|$(last_read audit.explain_query)" \
  "temporary types named text and jsonb do not keep verify or explain_query from being recorded"
before=$(reads_of audit.verify)
as_role ra_reader -c "SELECT audit.report('soc2', now() - interval '1 day', now())" >/dev/null
assert_eq "$before|1" "$(reads_of audit.verify)|$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.report'")" \
  "a report records itself once (audit.report), not the verify inside it"
before=$(reads_of audit.search)
sql_expect_error 42601 "SELECT * FROM audit.search('action:(')" "a malformed search fails (42601)" -U ra_reader
assert_eq "$before" "$(reads_of audit.search)" "and returned nothing, so recorded nothing"

# a viewer's reads are recorded as its own, and it sees them (its own events)
as_role ra_viewer -c "SELECT count(*) FROM audit.search('action:doc.read')" >/dev/null
assert_eq "ra_viewer|1" "$(last_read audit.search | cut -d'|' -f1,2)" "a viewer's search is recorded, with the one row it saw"
assert_eq "audit.search,doc.read" \
  "$(as_role ra_viewer -c "SELECT string_agg(DISTINCT action, ',' ORDER BY action) FROM audit.events")" \
  "and the viewer sees its own reads, and nobody else's"

# a 50 kB query: the search runs, the event keeps the first 8 kB
long=$(python3 -c 'print("message:\"" + "x" * 50000 + "\"")')
assert_eq "0" "$(as_role ra_reader -c "SELECT count(*) FROM audit.search('$long')")" "a search for a 50 kB value runs"
assert_eq "8192" "$(sql "SELECT length(new -> 'arguments' ->> 'truncated') FROM audit.events WHERE action = 'audit.search' ORDER BY id DESC LIMIT 1")" \
  "and its event keeps the first 8 kB of the arguments (never over max_event_bytes)"

# read-only: not recorded, mirrored into the server log
log="$("$TOOLS/cluster.sh" datadir test)/server.log"
start=$(stat -c %s "$log")
before=$(reads_of audit.search)
as_role ra_reader -c "BEGIN READ ONLY; SELECT count(*) FROM audit.search('object_id:ro-marker'); COMMIT" >/dev/null
sleep 0.3
assert_eq "$before" "$(reads_of audit.search)" "a search in a read-only transaction writes no event"
assert_match 'AUDIT: action=audit.search actor="ra_reader" rows=0 arguments=\{"query": "object_id:ro-marker".*\(not recorded: read-only transaction\)' \
  "$(tail -c +$((start + 1)) "$log" | grep -o 'AUDIT: action=audit.search.*' | tail -1)" "it is one AUDIT: line in the server log instead"

# a read whose event rolls back (with its transaction, or its savepoint) leaves a server-log line
start=$(stat -c %s "$log")
before=$(reads_of audit.search)
as_role ra_reader -c "BEGIN; SELECT count(*) FROM audit.search('object_id:rb-marker'); ROLLBACK" >/dev/null
as_role ra_reader -c "BEGIN; SAVEPOINT s; SELECT count(*) FROM audit.search('object_id:sp-marker'); ROLLBACK TO s; COMMIT" >/dev/null
as_role ra_reader -c "SELECT count(*) FROM audit.search('object_id:kept-marker')" >/dev/null
sleep 0.3
assert_eq "$((before + 1))" "$(reads_of audit.search)" "of three searches, the one that committed is an event"
grown=$(tail -c +$((start + 1)) "$log")
assert_match 'AUDIT: action=audit.search actor="ra_reader" rows=0 arguments=\{"query": "object_id:rb-marker".*\(not recorded: rolled back\)' \
  "$(grep -o 'AUDIT: action=audit.search.*rb-marker.*' <<<"$grown")" "a search in a rolled-back transaction is a server-log line (not recorded: rolled back)"
assert_match '\(not recorded: rolled back\)' "$(grep -o 'AUDIT: action=audit.search.*sp-marker.*' <<<"$grown")" \
  "so is one rolled back to a savepoint"
assert_eq "0" "$(grep -c 'kept-marker' <<<"$grown" || true)" "a committed read is an event only, not a log line"
# a small audit_ext.max_event_bytes: the arguments are cut to a quarter of it
mid=$(python3 -c 'print("message:\"" + "y" * 5000 + "\"")')
assert_eq "0|512" "$(sql "SET audit_ext.max_event_bytes = 2048; SELECT count(*) FROM audit.search('$mid');
                         SELECT length(new -> 'arguments' ->> 'truncated') FROM audit.events WHERE action = 'audit.search' ORDER BY id DESC LIMIT 1" | paste -sd'|')" \
  "with audit_ext.max_event_bytes = 2048 a search of 5 kB still runs, its arguments cut to 512 bytes"

# the module and the actions are audit_ext's own
sql_expect_error 22023 "SELECT audit.record('x.y', module => 'audit')" "audit.record refuses module audit (22023)" -U ra_writer
sql_expect_error 22023 "SELECT audit.record('audit.search')" "and the action audit.search under any module" -U ra_writer
sql_expect_error 42501 "SELECT audit_internal._read_event('audit.search', '{}', 1)" "a writer cannot write read events itself (42501)" -U ra_writer
sql_expect_error 22023 "SELECT audit_internal._read_event('row.update', '{}', 1)" "nor a reader anything but a read (22023)" -U ra_reader
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "every read event is chained: verify passes"

# a damaged log refuses new events at its damaged heads: a read (verify above all) still runs,
# says so in a WARNING, and its event goes to the server log
sql "SELECT count(audit.record('fill.' || c)) FROM generate_series(1, 8) c" >/dev/null
tamper "UPDATE audit.events e SET hash = '\\x00' WHERE (e.chain, e.seq) IN (SELECT chain, max(seq) FROM audit.events GROUP BY chain)" >/dev/null
start=$(stat -c %s "$log")
out=$(as_role ra_reader -c "SELECT bool_and(ok) FROM audit.verify()" 2>&1)
assert_match "^WARNING:  audit_ext: this read of the log could not be recorded: .*the log was edited" "$(head -n 1 <<<"$out")" \
  "verify of a log with every chain head damaged still runs, with a WARNING that its read was not recorded"
assert_eq "f" "$(tail -n 1 <<<"$out")" "and finds the damage"
sleep 0.3
assert_match 'AUDIT: action=audit.verify actor="ra_reader" .*\(not recorded: .*the log was edited' \
  "$(tail -c +$((start + 1)) "$log" | grep -o 'AUDIT: action=audit.verify.*' | tail -1)" "its event is a server-log line instead"
out=$(as_role ra_reader -c "SELECT audit.report('soc2') -> 'integrity' ->> 'ok'" 2>&1)
assert_match "^WARNING:  audit_ext: this report could not be recorded: .*false$" "$(tr '\n' ' ' <<<"$out" | sed 's/ *$//')" \
  "a report of that log is still made (integrity not ok), with the same WARNING"

# ---- psql-first: \df audit.* lists what users call ------------------------------------------
df=$(psql -X -U ra_reader -c '\df audit.*')
assert_eq "0" "$(grep -cE '^ audit +\| +(_|capture_rows|capture_ddl|chain_event|refuse_change|evaluate_alerts)' <<<"$df" || true)" \
  "\\df audit.* lists no internal helper, trigger or event-trigger function"
assert_match "\| search +\|.*\| verify +\|" "$(tr '\n' ' ' <<<"$df")" "and does list search, verify and the rest"
assert_match "^[1-9][0-9]+$" "$(psql -XAtq -c "SELECT count(*) FROM pg_proc WHERE pronamespace = 'audit_internal'::regnamespace")" \
  "the internal functions are in schema audit_internal"
sql_expect_error 42501 "CREATE FUNCTION audit_internal.extra() RETURNS int LANGUAGE sql AS 'SELECT 1'" \
  "the guards protect audit_internal as they protect audit: a superuser's CREATE FUNCTION there is refused (42501)"
sql_expect_error 42501 "CREATE OR REPLACE FUNCTION audit_internal._restoring() RETURNS boolean LANGUAGE sql AS 'SELECT true'" \
  "and so is replacing one of its functions (a guard helper made to say 'restoring')"
sql_expect_error 42501 "CREATE FUNCTION audit_internal.extra() RETURNS int LANGUAGE sql AS 'SELECT 1'" \
  "a role without CREATE there is refused by the privileges first" -U ra_admin

# ---- audit_ext.audit_reads, with the library preloaded ----------------------------------------
# without the library preloaded the setting cannot take effect, and audit.status() says so
assert_eq "false|audit_ext.audit_reads is on but not in effect" \
  "$(sql "SET audit_ext.audit_reads = on; SELECT active || '|' || split_part(detail, ':', 1) FROM audit.status() WHERE feature = 'read_audit'")" \
  "not preloaded: audit.status() says the setting is not in effect"

tools="$(dirname "$PWD")/tools"
pport=$((${TEST_PORT:-5498} - 22))
CLUSTER_OPTS="shared_preload_libraries='audit_ext'" "$tools/cluster.sh" start preload "$pport" postgres >/dev/null
trap '"$tools/cluster.sh" stop preload >/dev/null 2>&1 || true' EXIT
eval "$("$tools/cluster.sh" env preload postgres)"
plog="$("$tools/cluster.sh" datadir preload)/server.log"
drop_roles
make_roles
fresh_db audit_reads
sql "SELECT audit.record('doc.read', 'doc', 'd' || i) FROM generate_series(1, 40) i" >/dev/null
as_role ra_viewer -c "SELECT audit.record('doc.read', 'doc', 'mine')" >/dev/null
# (the checks' own queries, as postgres, are reads too: left out)
reads() { sql "SELECT count(*) FROM audit.events WHERE action = 'audit.read' AND actor <> 'postgres'"; }
# "statement|rows|actor" of the last audit.read of the roles under test
last_stmt() { sql "SELECT (new -> 'arguments' ->> 'statement') || '|' || (new ->> 'rows') || '|' || actor
                   FROM audit.events WHERE action = 'audit.read' AND actor <> 'postgres' ORDER BY id DESC LIMIT 1"; }

as_role ra_reader -c "SELECT * FROM audit.events ORDER BY id DESC LIMIT 20" >/dev/null
assert_eq "0" "$(reads)" "audit_reads off (the default): direct reads are not recorded"
sql_expect_error 42501 "SET audit_ext.audit_reads = off" "only a superuser may change audit_ext.audit_reads (42501)" -U ra_reader
sql "ALTER DATABASE audit_reads SET audit_ext.audit_reads = on" >/dev/null
assert_eq "t" "$(sql "SELECT active FROM audit.status() WHERE feature = 'read_audit'")" "preloaded and on: audit.status() says it is in effect"
# (that status query read no log table: no event)
assert_eq "0" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.read'")" "a statement that reads no log table records nothing"

as_role ra_reader -c "SELECT id, action FROM audit.events ORDER BY id DESC LIMIT 20" >/dev/null
assert_eq "SELECT id, action FROM audit.events ORDER BY id DESC LIMIT 20|20|ra_reader" "$(last_stmt)" \
  "an auditor's SELECT in psql records one audit.read: the statement, the rows returned, the reader"
n=$(reads)
assert_eq "1" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.read' AND new ->> 'rows' = '20' AND actor = 'ra_reader'")" \
  "one event for the statement, not one per row"
as_role ra_reader -c "SELECT count(*) FROM audit.recent" >/dev/null
assert_eq "SELECT count(*) FROM audit.recent|1|ra_reader" "$(last_stmt)" "a read through a view over the log is recorded"
printf '%s\n' '\set FETCH_COUNT 7' "SELECT id FROM audit.events WHERE action = 'doc.read';" | as_role ra_reader >/dev/null
assert_match "CURSOR FOR.*SELECT id FROM audit.events WHERE action = 'doc.read';\|41\|ra_reader" "$(last_stmt | tr '\n' ' ')" \
  "psql fetching through a cursor (FETCH_COUNT) records one event with every row fetched"
as_role ra_reader -c "PREPARE p AS SELECT id FROM audit.events LIMIT 3; EXECUTE p; EXECUTE p" >/dev/null
assert_eq "2" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.read' AND new -> 'arguments' ->> 'statement' LIKE 'PREPARE p%'")" \
  "each EXECUTE of a prepared statement is a read"
as_role ra_reader -c "COPY (SELECT id FROM audit.events LIMIT 4) TO STDOUT" >/dev/null
assert_eq "COPY (SELECT id FROM audit.events LIMIT 4) TO STDOUT|4|ra_reader" "$(last_stmt)" "COPY (query) TO is a read"
rows=$(as_role ra_reader -c "COPY audit.events TO STDOUT" | wc -l)
assert_eq "COPY audit.events TO STDOUT|$rows|ra_reader" "$(last_stmt)" "COPY of the table itself by a reader is a read (row level security makes it a query)"
assert_eq "1" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.read' AND actor = 'ra_reader'
                        AND new -> 'arguments' ->> 'statement' = 'COPY audit.events TO STDOUT'")" "once"
# a superuser (no row level security) copies partitions, as pg_dump does: no query, no executor
part=$(sql "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'audit.events'::regclass ORDER BY (SELECT count(*) FROM audit.events) DESC, 1 LIMIT 1")
rows=$(psql -XAtq -c "COPY audit.$part TO STDOUT" | wc -l)
assert_eq "1|$rows" "$(sql "SELECT count(*) || '|' || max(new ->> 'rows') FROM audit.events WHERE action = 'audit.read' AND actor = 'postgres'
                           AND new -> 'arguments' ->> 'statement' = 'COPY audit.$part TO STDOUT'")" \
  "a superuser's COPY of a partition (no row level security: no executor) is a read too, with its rows ($rows)"
n=$(reads)
as_role ra_reader -c "SELECT count(*) FROM audit.search('action:doc.read', 5)" >/dev/null 2>&1
assert_eq "$n|ra_reader|5" "$(reads)|$(last_read audit.search | cut -d'|' -f1,2)" \
  "a function reading the log records its own event (audit.search), not its inner statements"
as_role ra_viewer -c "SELECT * FROM audit.events" >/dev/null
assert_match "^SELECT \* FROM audit.events\|[0-9]+\|ra_viewer$" "$(last_stmt)" "a viewer's read is recorded"
assert_match "^[1-9]" "$(as_role ra_viewer -c "SELECT count(*) FROM audit.events WHERE action = 'audit.read'")" "and the viewer sees its reads"
n=$(reads)
as_role ra_reader -c "BEGIN READ ONLY; SELECT count(*) FROM audit.events WHERE object_id = 'ro-read'; COMMIT" >/dev/null
sleep 0.3
assert_eq "$n" "$(reads)" "a read in a read-only transaction writes no event"
# (psql -c sends the three as one simple query: its text is the statement's)
assert_match "AUDIT: action=audit.read actor=\"ra_reader\" rows=1 arguments=\{\"statement\": \"BEGIN READ ONLY; SELECT count\(\*\) FROM audit.events WHERE object_id = 'ro-read'; COMMIT\"\} \(not recorded: read-only transaction\)" \
  "$(grep -o 'AUDIT: action=audit.read.*' "$plog" | tail -1)" "it goes to the server log instead"
n=$(reads)
sql_expect_error 22012 "SELECT id / 0 FROM audit.events" "a read that fails (22012) ..." -U ra_reader
assert_eq "$n" "$(reads)" "... returned nothing and records nothing"
n=$(reads)
printf '%s\n' "BEGIN;" "SAVEPOINT a;" "SELECT id / 0 FROM audit.events;" "ROLLBACK TO a;" \
  "SELECT count(*) FROM pg_class;" "SELECT count(*) FROM pg_class;" "COMMIT;" | psql -XAtq -U ra_reader >/dev/null 2>&1 || true
assert_eq "$n" "$(reads)" "a read that failed in a savepoint leaves nothing that a later statement could inherit"
# a real client over the extended protocol (psycopg), autocommit: the portal ends at commit
if /usr/bin/python3 -c 'import psycopg' 2>/dev/null; then
  /usr/bin/python3 - "$PGHOST" "$PGPORT" <<'PY'
import sys, psycopg
with psycopg.connect(host=sys.argv[1], port=sys.argv[2], dbname="audit_reads", user="ra_reader", autocommit=True) as c:
    c.execute("SELECT id FROM audit.events WHERE object_id LIKE %s", ("d1%",)).fetchall()
    with c.transaction():
        with c.cursor(name="pages") as cur:
            cur.execute("SELECT id FROM audit.events WHERE action = %s", ("doc.read",))
            while cur.fetchmany(9):
                pass
PY
  assert_eq "SELECT id FROM audit.events WHERE object_id LIKE \$1|11|ra_reader" \
    "$(sql "SELECT (new -> 'arguments' ->> 'statement') || '|' || (new ->> 'rows') || '|' || actor FROM audit.events
            WHERE action = 'audit.read' AND new -> 'arguments' ->> 'statement' LIKE '%LIKE \$1'")" \
    "psycopg's parameterised query (extended protocol) is recorded with its rows (11)"
  assert_match "^DECLARE \"pages\" .*\|41\|ra_reader$" "$(last_stmt)" "and its server-side cursor, once, with every row fetched (41)"
else
  skip "psycopg (Debian python3-psycopg) is not installed"; skip "psycopg cursor"
fi
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "every audit.read event is chained: verify passes"
sql "ALTER DATABASE audit_reads RESET audit_ext.audit_reads" >/dev/null
drop_roles

# Who sees what (issue 13, section 1), with real login roles: a member of audit_viewer sees
# only its own events (or those it was the connection of, when an application asserted an end
# user), and those of the roles audit.allow_view() lets it view, in every way of reading the
# log; audit_reader sees all at no cost; verify checks every event for a viewer and tells it
# only chain-level results; the guards report any policy that is not audit_ext's.

roles="vis_alice vis_bob vis_carol vis_team vis_mgr vis_reader vis_admin vis_app vis_bypass"
for r in $roles; do
  PGOPTIONS="-c client_min_messages=warning" sql "DROP OWNED BY $r CASCADE" -d postgres >/dev/null 2>&1 || true
done
PGOPTIONS="-c client_min_messages=warning" sql "DROP DATABASE IF EXISTS audit_vis WITH (FORCE)" -d postgres
PGOPTIONS="-c client_min_messages=warning" sql "DROP ROLE IF EXISTS $(echo $roles | tr ' ' ',')" -d postgres
fresh_db audit_vis
sql "CREATE ROLE vis_alice LOGIN IN ROLE audit_viewer, audit_writer;
     CREATE ROLE vis_bob LOGIN IN ROLE audit_viewer, audit_writer;
     CREATE ROLE vis_team;
     CREATE ROLE vis_carol LOGIN IN ROLE vis_team, audit_writer;
     CREATE ROLE vis_mgr LOGIN IN ROLE audit_viewer;
     CREATE ROLE vis_reader LOGIN IN ROLE audit_reader;
     CREATE ROLE vis_admin LOGIN IN ROLE audit_admin;
     CREATE ROLE vis_app LOGIN IN ROLE audit_writer, audit_viewer;
     CREATE ROLE vis_bypass LOGIN BYPASSRLS" >/dev/null
as_role() { local r=$1; shift; psql -XAtq -v ON_ERROR_STOP=1 -U "$r" "$@"; }

as_role vis_alice -c "SELECT audit.record('doc.read', object_id => 'a1', new => '{\"secret\": \"alice-only\"}')" >/dev/null
as_role vis_bob -c "SELECT audit.record('doc.read', object_id => 'b1', new => '{\"secret\": \"bob-only\"}')" >/dev/null
as_role vis_carol -c "SELECT audit.record('doc.read', object_id => 'c1')" >/dev/null
as_role vis_app <<'SQL' >/dev/null
BEGIN;
SELECT audit.set_context(actor => 'enduser42');
SELECT audit.record('doc.read', object_id => 'e1');
COMMIT;
SELECT audit.record('app.start');
SQL
sql "CREATE TABLE public.notes (id int PRIMARY KEY, body text);
     GRANT SELECT, INSERT, UPDATE ON public.notes TO vis_alice, vis_bob;
     SELECT audit.track('public.notes')" >/dev/null
as_role vis_alice -c "INSERT INTO public.notes VALUES (1, 'alice note')"
as_role vis_bob -c "INSERT INTO public.notes VALUES (2, 'bob note'); UPDATE public.notes SET body = 'bob edits alice' WHERE id = 1"
total=$(sql "SELECT count(*) FROM audit.events")

# ---- own events, in every way of reading the log --------------------------------------------
assert_eq "vis_alice" "$(as_role vis_alice -c "SELECT string_agg(DISTINCT actor, ',') FROM audit.events")" \
  "a viewer sees only its own events in audit.events"
assert_eq "a1" "$(as_role vis_alice -c "SELECT string_agg(object_id, ',') FROM audit.search('action:doc.read')")" \
  "audit.search shows it only its own"
assert_eq "0" "$(as_role vis_alice -c "SELECT count(*) FROM audit.search('object_id:b1')")" \
  "not even when it names another's event"
assert_eq "vis_alice|1" "$(as_role vis_alice -c "SELECT string_agg(DISTINCT actor, ','), count(*) FILTER (WHERE action LIKE 'row.%') FROM audit.changes")" \
  "audit.changes shows only its own changes (one row change of the two to row 1)"
assert_eq "1" "$(as_role vis_alice -c "SELECT count(*) FROM audit.row_history('public.notes', '1')")" \
  "audit.row_history of a row bob changed too shows only its own change"
assert_eq "row.update" "$(as_role vis_bob -c "SELECT string_agg(action, ',') FROM audit.row_history('public.notes', '1')")" \
  "and bob sees only his"
exported=$(as_role vis_alice -c "COPY (SELECT * FROM audit.export('jsonl')) TO STDOUT")
assert_eq "$(as_role vis_alice -c "SELECT count(*) FROM audit.events WHERE id < (SELECT max(id) FROM audit.events WHERE action = 'audit.export')")" \
  "$(printf '%s\n' "$exported" | grep -c '"id"')" \
  "audit.export writes exactly the events it sees (all before its own audit.export event)"
if grep -q 'bob' <<<"$exported"; then fail "and nothing of bob's"; else ok "and nothing of bob's"; fi
assert_eq "vis_alice" "$(as_role vis_alice -c "SELECT string_agg(DISTINCT actor, ',') FROM audit.recent")" \
  "audit.recent shows only its own"
assert_eq "$(as_role vis_alice -c "SELECT count(*) FROM audit.events")" \
  "$(as_role vis_alice -c "SELECT sum(count) FROM audit.summary(by => 'actor')")" \
  "audit.summary counts only what it sees"
assert_eq "enduser42,vis_app" \
  "$(as_role vis_app -c "SELECT string_agg(DISTINCT actor, ',' ORDER BY actor) FROM audit.events")" \
  "an application that asserted an end user sees that event too (metadata.db_user is its role)"
sql_expect_error 42501 "SELECT count(*) FROM audit.events_default" "a viewer cannot read a partition directly" -U vis_alice
sql_expect_error 42501 "SELECT * FROM audit.view_grants" "nor the list of who views whom" -U vis_alice
sql_expect_error 42501 "SELECT * FROM audit.tracked" "nor audit_ext's settings tables" -U vis_alice
# (reads since are events too: the totals are taken again)
total=$(sql "SELECT count(*) FROM audit.events")
assert_eq "$total" "$(as_role vis_reader -c "SELECT count(*) FROM audit.events")" "audit_reader sees every event"
assert_eq "$total" "$(as_role vis_admin -c "SELECT count(*) FROM audit.events")" "so does audit_admin"

# ---- verify: every event, chain-level answers ----------------------------------------------
assert_eq "t|$total|" "$(as_role vis_alice -c "SELECT bool_and(ok), sum(events_checked), max(reason) FROM audit.verify()")" \
  "a viewer's audit.verify() checks every event, not only its own"
sql "SELECT audit.record('x.checked')" >/dev/null
bob_id=$(sql "SELECT id FROM audit.events WHERE object_id = 'b1'")
tamper "UPDATE audit.events SET new = '{\"secret\": \"rewritten\"}' WHERE id = $bob_id" >/dev/null
assert_eq "f|$bob_id" "$(as_role vis_alice -c "SELECT bool_and(ok), max(first_bad_id) FROM audit.verify()")" \
  "a viewer's verify finds the rewritten event of another role, by id"
reasons=$(as_role vis_alice -c "SELECT string_agg(reason, ' ') FROM audit.verify()")
if grep -q 'rewritten\|secret\|bob' <<<"$reasons"; then fail "without showing its contents: $reasons"; else ok "without showing its contents"; fi
tamper "UPDATE audit.events SET new = '{\"secret\": \"bob-only\"}' WHERE id = $bob_id" >/dev/null
assert_eq "t" "$(as_role vis_alice -c "SELECT bool_and(ok) FROM audit.verify()")" "and verifies again once it is put back"

# a role that may INSERT directly (and read the partition map) but only views its own events still
# chains onto the true head
# (the chain trigger reads heads as the extension's owner, past row level security)
sql "GRANT INSERT ON audit.events TO vis_bob; GRANT SELECT ON audit.partitions, audit.retention, audit.retention_anchors, audit.alert_rules, audit.streams TO vis_bob; GRANT USAGE ON SEQUENCE audit.events_id_seq TO vis_bob" >/dev/null
# (one chain, which another role's event is on already)
sql "ALTER ROLE vis_bob SET audit_ext.chains = 1" >/dev/null
PGOPTIONS="-c audit_ext.chains=1" sql "SELECT audit.record('before.direct')" >/dev/null
as_role vis_bob -c "INSERT INTO audit.events (action) VALUES ('direct.one'); INSERT INTO audit.events (action) VALUES ('direct.two')"
sql "ALTER ROLE vis_bob RESET audit_ext.chains" >/dev/null
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" \
  "a viewer's direct INSERTs chain onto the true heads: verify passes"
sql "REVOKE INSERT ON audit.events FROM vis_bob; REVOKE SELECT ON audit.partitions, audit.retention, audit.retention_anchors, audit.alert_rules, audit.streams FROM vis_bob; REVOKE USAGE ON SEQUENCE audit.events_id_seq FROM vis_bob" >/dev/null

# ---- team events: audit.allow_view ---------------------------------------------------------
sql_expect_error 42501 "SELECT audit.allow_view('vis_alice', 'vis_team')" "only audit_admin may let a viewer see others' events" -U vis_alice
sql_expect_error 22023 "SELECT audit.allow_view('vis_reader', 'vis_team')" "a role that is not a viewer is refused (22023)" -U vis_admin
assert_eq "" "$(as_role vis_mgr -c "SELECT string_agg(object_id, ',') FROM audit.events")" "a viewer without events sees none"
as_role vis_admin -c "SELECT audit.allow_view('vis_mgr', 'vis_team')" >/dev/null
assert_eq "c1" "$(as_role vis_mgr -c "SELECT string_agg(object_id, ',') FROM audit.search('action:doc.read')")" \
  "after audit.allow_view(vis_mgr, vis_team) the manager sees the team member's events"
assert_eq "vis_mgr|vis_team|vis_admin" "$(as_role vis_reader -c "SELECT viewer, of_role, granted_by FROM audit.view_grants")" \
  "audit.view_grants lists the grant"
assert_eq "vis_admin|vis_mgr|{\"viewer\": \"vis_mgr\", \"of_role\": \"vis_team\"}" \
  "$(sql "SELECT actor, object_id, new FROM audit.events WHERE action = 'audit.view_allowed'")" \
  "and the grant is recorded (audit.view_allowed)"
sql "GRANT vis_team TO vis_bob" >/dev/null
assert_eq "b1,c1" "$(as_role vis_mgr -c "SELECT string_agg(object_id, ',' ORDER BY object_id) FROM audit.search('action:doc.read')")" \
  "a role that joins the team is seen at once"
assert_eq "0" "$(as_role vis_alice -c "SELECT count(*) FROM audit.events WHERE actor = 'vis_carol'")" \
  "while another viewer still sees none of the team's"
as_role vis_admin -c "SELECT audit.disallow_view('vis_mgr', 'vis_team')" >/dev/null
assert_eq "" "$(as_role vis_mgr -c "SELECT string_agg(object_id, ',') FROM audit.events WHERE action = 'doc.read'")" \
  "audit.disallow_view takes it back"
assert_eq "1" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.view_disallowed' AND actor = 'vis_admin'")" \
  "and is recorded (audit.view_disallowed)"

# ---- the policy costs a reader nothing -------------------------------------------------------
q="EXPLAIN (COSTS OFF) SELECT id FROM audit.events WHERE action = 'doc.read' AND at > now() - interval '1 day' ORDER BY id DESC LIMIT 20"
assert_eq "$(sql "$q")" "$(as_role vis_reader -c "$q")" \
  "a reader's plan is a superuser's (who bypasses row level security): the policy adds nothing"
assert_match "InitPlan" "$(as_role vis_alice -c "$q")" "a viewer's plan computes its visible roles once (an InitPlan), not per row"

# ---- the guards: only audit_ext's policies ---------------------------------------------------
assert_eq "" "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" "the guards row is clean on a fresh install"
sql_expect_error 42501 "CREATE POLICY sneaky ON audit.events FOR SELECT TO audit_viewer USING (true)" \
  "CREATE POLICY on audit.events is refused, even to a superuser"
tamper "CREATE POLICY sneaky ON audit.events FOR SELECT TO audit_viewer USING (true)" >/dev/null
assert_match "policy sneaky on audit.events is not audit_ext's" "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "a policy someone else added (past the event triggers) is reported"
assert_eq "guards: 1 problem(s); a member of audit_reader sees which" \
  "$(as_role vis_alice -c "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "a viewer learns that the guards have a problem, not which"
assert_eq "0" "$(as_role vis_alice -c "SELECT count(*) FROM audit.security_events WHERE kind = 'guard_problem'")" \
  "audit.security_events shows a viewer no guard problem rows"
assert_match "sneaky" "$(as_role vis_reader -c "SELECT string_agg(message, ' ') FROM audit.security_events WHERE kind = 'guard_problem'")" \
  "while a reader sees the problem there"
tamper "DROP POLICY sneaky ON audit.events; ALTER POLICY audit_viewers ON audit.events USING (true)" >/dev/null
assert_match "policy audit_viewers on audit.events is not as audit_ext made it" "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "one of audit_ext's policies altered is reported"
tamper "ALTER POLICY audit_viewers ON audit.events USING (actor OPERATOR(pg_catalog.=) ANY ((SELECT audit_internal._visible_roles())::text[])
        OR (metadata OPERATOR(pg_catalog.->>) 'db_user') OPERATOR(pg_catalog.=) ANY ((SELECT audit_internal._visible_roles())::text[]))" >/dev/null
assert_eq "" "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" "and clean again once restored"
tamper "ALTER TABLE audit.events DISABLE ROW LEVEL SECURITY" >/dev/null
assert_match "row level security is off on audit.events" "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "row level security switched off is reported"
tamper "ALTER TABLE audit.events ENABLE ROW LEVEL SECURITY; ALTER TABLE audit.events FORCE ROW LEVEL SECURITY" >/dev/null
assert_match "row level security is forced on audit.events" "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "and forced on the owner too"
tamper "ALTER TABLE audit.events NO FORCE ROW LEVEL SECURITY" >/dev/null
part=$(sql "SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'audit.events'::regclass ORDER BY 1 LIMIT 1")
sql "GRANT SELECT ON $part TO vis_alice" >/dev/null
assert_match "vis_alice can read partition $part directly" "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "a viewer granted a partition (past the policies) is reported"
sql "REVOKE SELECT ON $part FROM vis_alice; GRANT audit_viewer TO vis_bypass" >/dev/null
assert_match "vis_bypass is a member of audit_viewer with BYPASSRLS" "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "a viewer with BYPASSRLS is reported"
sql "REVOKE audit_viewer FROM vis_bypass" >/dev/null
assert_eq "t|" "$(sql "SELECT bool_and(ok), max(reason) FROM audit.verify()")" "after every attack is undone, the log verifies and the guards are clean"

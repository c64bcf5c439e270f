-- PUBLIC gets nothing; writers record; readers read and verify; admins do both.
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
CREATE ROLE regress_nobody;
RESET audit_ext.capture_ddl;
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
CREATE ROLE regress_writer IN ROLE audit_writer;
RESET audit_ext.capture_ddl;
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
CREATE ROLE regress_reader IN ROLE audit_reader;
RESET audit_ext.capture_ddl;
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
CREATE ROLE regress_admin IN ROLE audit_admin;
RESET audit_ext.capture_ddl;

SET ROLE regress_nobody;
SELECT try($$ SELECT audit.record('x.y') $$);
SELECT try($$ SELECT count(*) FROM audit.events $$);
SELECT try($$ SELECT * FROM audit.verify() $$);
RESET ROLE;

SET ROLE regress_writer;
SELECT try($$ SELECT audit.record('writer.event') $$);
SELECT try($$ SELECT count(*) FROM audit.events $$);
SELECT try($$ INSERT INTO audit.events (action) VALUES ('x.y') $$);
SELECT try($$ UPDATE audit.events SET message = 'x' $$);
SELECT try($$ SELECT * FROM audit.verify() $$);
RESET ROLE;
-- The actor is who logged in (session_user), not the definer of audit.record.
SELECT actor, session_user = actor AS is_session_user FROM audit.events WHERE action = 'writer.event';

SET ROLE regress_reader;
SELECT try($$ SELECT audit.record('x.y') $$);
SELECT try($$ SELECT count(*) FROM audit.events $$);
SELECT try($$ SELECT bool_and(ok) FROM audit.verify() $$);
SELECT try($$ SELECT count(*) FROM audit.head() $$);
SELECT try($$ DELETE FROM audit.events $$);
-- Everything an auditor reads works for a reader; nothing that changes settings does.
SELECT try($$ SELECT count(*) FROM audit.tracked_tables $$);
SELECT try($$ SELECT count(*) FROM audit.changes $$);
SELECT try($$ SELECT count(*) FROM audit.alerts $$);
SELECT try($$ SELECT count(*) FROM audit.search('status:success') $$);
SELECT try($$ SELECT count(*) FROM audit.status() $$);
SELECT try($$ SELECT audit.create_alert('x', 'status:failure') $$);
SELECT try($$ SELECT audit.stream('x') $$);
SELECT try($$ SELECT audit.track('pg_class') $$);
RESET ROLE;

SET ROLE regress_admin;
SELECT try($$ SELECT audit.record('admin.event') $$);
SELECT try($$ SELECT bool_and(ok) FROM audit.verify() $$);
RESET ROLE;

-- No SECURITY DEFINER function without a pinned search_path; no privilege for PUBLIC.
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'audit' AND p.prosecdef
  AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false);
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'audit' AND has_function_privilege('public', p.oid, 'EXECUTE');
SELECT has_table_privilege('public', 'audit.events', 'SELECT') AS public_select,
       has_schema_privilege('public', 'audit', 'USAGE') AS public_usage;

SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
DROP ROLE regress_nobody, regress_writer, regress_reader, regress_admin;
RESET audit_ext.capture_ddl;

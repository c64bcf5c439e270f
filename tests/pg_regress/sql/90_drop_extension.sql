-- DROP EXTENSION takes its event triggers along and fails on nothing. The roles stay (they
-- are global and may be shared), and so does the empty schema audit (PostgreSQL does not make
-- the control file's schema an extension member). CREATE EXTENSION again starts a fresh log.
DROP EXTENSION audit_ext;
-- its partitions went with it, so 87_retention's warm tablespace is empty (and must go: a
-- tablespace left behind would break pg_basebackup in the integration tests)
DROP TABLESPACE audit_regress_warm;
SELECT count(*) AS event_triggers FROM pg_event_trigger;
SELECT count(*) AS audit_schema FROM pg_namespace WHERE nspname = 'audit';
SELECT rolname FROM pg_roles WHERE rolname LIKE 'audit\_%' ORDER BY 1;
CREATE EXTENSION audit_ext;
CREATE TABLE regress_after (x int);
DROP TABLE regress_after;
SELECT seq, action, object_name FROM audit.events ORDER BY seq;
SELECT chain, events_checked, ok FROM audit.verify();

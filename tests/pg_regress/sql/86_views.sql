-- The auditor's views (issue 13, section 3): audit.recent, audit.security_events,
-- audit.my_changes and audit.summary, as a reader sees them. The application logs in as
-- itself (the actor audit_ext records is the session user).
SET audit_ext.capture_ddl = off;
CREATE ROLE views_auditor LOGIN;
GRANT audit_reader TO views_auditor;
CREATE ROLE views_app LOGIN;
GRANT audit_writer TO views_app;
RESET audit_ext.capture_ddl;
SELECT clock_timestamp() AS t0 \gset

\c - views_app
SELECT audit.record('invoice.update', 'invoice', 'inv-1', old => '{"total": 5}', new => '{"total": 7}') > 0 AS recorded;
SELECT audit.record('authentication.login', status => 'failure', message => 'wrong password') > 0 AS recorded;
SELECT audit.record('payment.refund', status => 'denied') > 0 AS recorded;
SELECT audit.record('views.read') > 0 AS recorded;
SELECT try($$ SELECT count(*) FROM audit.my_changes $$) AS writer_cannot_read;

\c - views_auditor
SELECT action, status FROM audit.recent WHERE actor = 'views_app' ORDER BY id;
SELECT kind, action, status FROM audit.security_events WHERE actor = 'views_app' ORDER BY id;
SELECT count(*) AS guard_problems FROM audit.security_events WHERE kind = 'guard_problem';
SELECT key, count FROM audit.summary(:'t0', NULL, 'status');
SELECT key, count FROM audit.summary(now() - interval '1 hour', now() + interval '1 hour', 'actor') WHERE key = 'views_app';
SELECT count(*) AS tomorrow FROM audit.summary(now() + interval '1 day', NULL, 'day');
SELECT key, count FROM audit.summary(:'t0', NULL, 'action');
-- the auditor changed nothing
SELECT count(*) AS auditor_changes FROM audit.my_changes;

\c - postgres
SELECT try($$ SELECT * FROM audit.summary(by => 'hash') $$);
-- one row per guard problem, whatever its text holds (a stream channel may hold '; ')
SELECT audit.stream('views; chan', 'action:views.*');
UPDATE audit.streams SET query = 'action:other.*' WHERE channel = 'views; chan';
SELECT kind, severity, message FROM audit.security_events WHERE kind = 'guard_problem';
SELECT audit.unstream('views; chan');
SELECT count(*) AS guard_problems FROM audit.security_events WHERE kind = 'guard_problem';
SET audit_ext.capture_ddl = off;
GRANT audit_reader TO views_app;
RESET audit_ext.capture_ddl;
\c - views_app
-- the application sees its own change (now that it may read the log)
SELECT action, object_id, diff FROM audit.my_changes;

\c - postgres
SET audit_ext.capture_ddl = off;
DROP OWNED BY views_auditor, views_app;
DROP ROLE views_auditor, views_app;
RESET audit_ext.capture_ddl;

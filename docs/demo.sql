-- audit_ext walkthrough, run by `make demo` (psql -e echoes each statement).
\pset pager off
\pset null '∅'
\set VERBOSITY default

\echo
\echo '== 1. Install the extension: schema audit, table audit.events, roles audit_writer / audit_reader / audit_admin'
CREATE EXTENSION audit_ext;

\echo
\echo '== 2. Record events. The application says who acts (it sits behind a connection pool).'
BEGIN;
SELECT audit.set_context(actor => 'alice@example.com', actor_ip => '203.0.113.45',
                         session_id => 'sess_abcdef', application => 'cloud-console',
                         metadata => '{"request_id": "req_xyz789"}');
SELECT audit.record('authentication.login', status => 'failure', severity => 'warning',
                    message => 'wrong password');
SELECT audit.record('authentication.login');
SELECT audit.record('VM_POWER_OFF', object_type => 'vm', object_id => 'vm-42',
                    object_name => 'sales-reporting-app', module => 'virt',
                    old => '{"state": "running"}', new => '{"state": "stopped"}');
SELECT audit.record('permission.grant', object_type => 'folder', object_id => 'f-7',
                    object_name => '/finance', severity => 'high',
                    new => '{"role": "editor", "user": "bob@example.com"}');
COMMIT;
-- Without set_context the actor is the database session user.
SELECT audit.record('backup.run', module => 'ops', message => 'nightly backup');

\echo
\echo '== 3. What an auditor sees'
SELECT id, at, actor, actor_ip, action, status, severity, object_type, object_name, old, new
FROM audit.events ORDER BY id;

\echo
\echo '== 4. Every event is chained: its hash covers all its columns and the previous event hash'
SELECT id, chain, seq, left(encode(prev_hash, 'hex'), 16) AS prev_hash, left(encode(hash, 'hex'), 16) AS hash
FROM audit.events ORDER BY chain, seq;

\echo
\echo '== 5. Verify the whole log, and note the chain heads (an auditor keeps these outside the database)'
SELECT * FROM audit.verify();
SELECT chain, seq, encode(hash, 'hex') AS hash FROM audit.head();
SELECT jsonb_agg(to_jsonb(h)) AS noted_heads FROM audit.head() h \gset

\echo
\echo '== 6. Nobody can change or delete an event, not even the superuser (SQLSTATE 42501)'
\set ON_ERROR_STOP off
UPDATE audit.events SET status = 'success' WHERE action = 'authentication.login' AND status = 'failure';
DELETE FROM audit.events WHERE action = 'permission.grant';
TRUNCATE audit.events;
\set ON_ERROR_STOP on

\echo
\echo '== 7. A superuser switches the guards off and hides the failed login ...'
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit.events SET status = 'success', severity = 'info', message = NULL
WHERE action = 'authentication.login' AND status = 'failure';
COMMIT;

\echo
\echo '== ... and verify points at the exact event'
SELECT * FROM audit.verify();
SELECT id, action, status FROM audit.events e WHERE hash <> audit.hash_event(e);

\echo
\echo '== 8. Even if they recompute every hash, the heads noted in step 5 give them away'
BEGIN;
SET LOCAL session_replication_role = replica;
DO $$
DECLARE r record; prev bytea;
BEGIN
    FOR r IN SELECT id FROM audit.events ORDER BY chain, seq LOOP
        UPDATE audit.events SET prev_hash = prev WHERE id = r.id;
        UPDATE audit.events e SET hash = audit.hash_event(e) WHERE id = r.id RETURNING hash INTO prev;
    END LOOP;
END $$;
COMMIT;
SELECT * FROM audit.verify();
SELECT * FROM audit.verify(heads => :'noted_heads');

\echo
\echo 'Done. Explore with `make psql` (database audit_demo); stop the cluster with `make demo-stop`.'

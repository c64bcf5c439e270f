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
\echo '-- ... or asks in the query language (docs/query-language.md)'
SELECT id, actor, action, status, severity FROM audit.search('status:failure OR severity:high');
SELECT audit.explain_query('status:failure OR severity:high');

\echo
\echo '== 4. Change capture: a DBA tracks a table; the application changes nothing'
CREATE TABLE customers (id int PRIMARY KEY, name text, plan text, card_number text, updated_at timestamptz);
SELECT audit.track('customers', mask_columns => '{card_number}', exclude_columns => '{updated_at}');
INSERT INTO customers VALUES (1, 'Acme', 'basic', '4111-1111-1111-1111', now()),
                             (2, 'Globex', 'pro', NULL, now());
UPDATE customers SET plan = 'enterprise', updated_at = now() WHERE id = 1;
UPDATE customers SET updated_at = now();        -- only an excluded column: nothing recorded
UPDATE customers SET card_number = '5500-0000-0000-0004' WHERE id = 1;
DELETE FROM customers WHERE id = 2;
SELECT id, action, object_name, object_id, old, new FROM audit.events
WHERE module = 'capture' ORDER BY id;
\echo '-- the versions of one row, and what changed (the card number only as a keyed hash)'
SELECT at, action, diff FROM audit.row_history('customers', '1');
SELECT * FROM audit.tracked_tables;

\echo
\echo '== 5. Every event is chained: its hash covers all its columns and the previous event hash'
SELECT id, chain, seq, left(encode(prev_hash, 'hex'), 16) AS prev_hash, left(encode(hash, 'hex'), 16) AS hash
FROM audit.events ORDER BY chain, seq;

\echo
\echo '== 6. Retention: old events leave by policy, whole partitions at a time, and the chains still verify'
SELECT * FROM audit.set_retention('30 days', 'page.*');   -- page views: 30 days; the rest: 365 (the default)
SELECT action_pattern, kept_for, retention_class, partitions FROM audit.retention_policies;
\echo '-- an import of old page views (a superuser may set at directly): they go to a partition of their month'
INSERT INTO audit.events (action, at, retention_class, object_id)
SELECT 'page.view', now() - interval '60 days' + i * interval '1 minute', audit.retention_class('page.view'), '/docs/' || i
FROM generate_series(1, 5) i;
SELECT count(*) AS new_partitions FROM audit.ensure_partitions(interval '0');
SELECT partition, retention_class, events, dropped FROM audit.apply_retention(dry_run => true);
SELECT partition, retention_class, events, chains, dropped FROM audit.apply_retention();
\echo '-- the drop is itself an event, with the anchors verify starts from'
SELECT action, module, message, new -> 'anchors' AS anchors FROM audit.events WHERE action = 'retention.applied';
SELECT * FROM audit.verify();

\echo
\echo '== 7. Verify the whole log, and note the chain heads (an auditor keeps these outside the database)'
SELECT * FROM audit.verify();
SELECT chain, seq, encode(hash, 'hex') AS hash FROM audit.head();
SELECT jsonb_agg(to_jsonb(h)) AS noted_heads FROM audit.head() h \gset

\echo
\echo '== 8. Nobody can change or delete an event, not even the superuser (SQLSTATE 42501)'
\set ON_ERROR_STOP off
UPDATE audit.events SET status = 'success' WHERE action = 'authentication.login' AND status = 'failure';
DELETE FROM audit.events WHERE action = 'permission.grant';
TRUNCATE audit.events;
\set ON_ERROR_STOP on

\echo
\echo '== 9. A superuser switches the guards off and hides the failed login ...'
-- (session_replication_role = replica no longer helps: the guards are enabled ALWAYS. So
-- the event trigger that refuses touching them goes first, then the append-only trigger.)
BEGIN;
ALTER EVENT TRIGGER audit_ext_ddl_command DISABLE;
ALTER TABLE audit.events DISABLE TRIGGER append_only;
UPDATE audit.events SET status = 'success', severity = 'info', message = NULL
WHERE action = 'authentication.login' AND status = 'failure';
ALTER TABLE audit.events ENABLE ALWAYS TRIGGER append_only;
ALTER EVENT TRIGGER audit_ext_ddl_command ENABLE ALWAYS;
COMMIT;

\echo
\echo '== ... and verify points at the exact event'
SELECT * FROM audit.verify();
SELECT id, action, status FROM audit.events e WHERE hash <> audit.hash_event(e);

\echo
\echo '== 10. Even if they recompute every hash, the heads noted in step 7 give them away'
BEGIN;
ALTER EVENT TRIGGER audit_ext_ddl_command DISABLE;
ALTER TABLE audit.events DISABLE TRIGGER append_only;
DO $$
DECLARE r record; prev bytea; c integer;
BEGIN
    FOR r IN SELECT id, chain FROM audit.events ORDER BY chain, seq LOOP
        IF c IS DISTINCT FROM r.chain THEN prev := NULL; c := r.chain; END IF;
        UPDATE audit.events SET prev_hash = prev WHERE id = r.id;
        UPDATE audit.events e SET hash = audit.hash_event(e) WHERE id = r.id RETURNING hash INTO prev;
    END LOOP;
END $$;
ALTER TABLE audit.events ENABLE ALWAYS TRIGGER append_only;
ALTER EVENT TRIGGER audit_ext_ddl_command ENABLE ALWAYS;
COMMIT;
SELECT * FROM audit.verify();
SELECT * FROM audit.verify(heads => :'noted_heads');

\echo
\echo 'Done. Explore with `make psql` (database audit_demo); stop the cluster with `make demo-stop`.'

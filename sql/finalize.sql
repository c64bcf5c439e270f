-- audit_ext: privileges. Loaded last (finalize). PUBLIC gets nothing.

-- Nobody but the owner and the roles below: default privileges of the installing role
-- (ALTER DEFAULT PRIVILEGES ... GRANT ... ON TABLES TO app_rw) would otherwise hand the mask key,
-- the settings tables and direct INSERT into audit.events to whoever they name.
DO $acl$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT format('%s %s', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass) AS obj,
               a.grantee
        FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
        WHERE c.relnamespace IN ('audit'::regnamespace, 'audit_internal'::regnamespace) AND a.grantee <> c.relowner
        UNION
        SELECT format('FUNCTION %s', p.oid::regprocedure), a.grantee
        FROM pg_catalog.pg_proc p CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
        WHERE p.pronamespace IN ('audit'::regnamespace, 'audit_internal'::regnamespace) AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', r.obj,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END);
    END LOOP;
END
$acl$;

REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA audit FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA audit FROM PUBLIC;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA audit_internal FROM PUBLIC;
REVOKE ALL ON SCHEMA audit_internal FROM PUBLIC;

COMMENT ON SCHEMA audit_internal IS 'audit_ext''s internal functions; call those of schema audit instead.';
GRANT USAGE ON SCHEMA audit, audit_internal TO audit_writer, audit_reader, audit_admin, audit_viewer;

-- Writers record; nothing else. audit.record is SECURITY DEFINER, so no INSERT grant.
GRANT EXECUTE ON FUNCTION audit.record(text, text, text, text, jsonb, jsonb, text, text, text, text, jsonb),
                          audit.record_autonomous(text, text, text, text, jsonb, jsonb, text, text, text, text, jsonb),
                          audit.set_context(text, inet, text, text, jsonb, boolean)
    TO audit_writer;

-- Readers read and verify.
GRANT SELECT ON audit.events TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.verify(bigint, bigint, jsonb, jsonb), audit.head(), audit.hash_event(audit.events),
                          audit.export_json(audit.events)
    TO audit_reader;
-- the guards row of audit.verify() (sql/guards.sql), which runs as the reader
GRANT EXECUTE ON FUNCTION audit_internal._guard_problems(), audit_internal._guard_triggers(), audit_internal._guard_event_triggers(),
                          audit_internal._guard_policies()
    TO audit_reader;

GRANT SELECT ON audit.changes TO audit_reader;
-- the auditor's views (sql/views.sql)
GRANT SELECT ON audit.recent, audit.security_events, audit.my_changes TO audit_reader;
GRANT EXECUTE ON FUNCTION audit_internal._visible_guard_problems() TO audit_reader, audit_viewer;
GRANT EXECUTE ON FUNCTION audit.summary(timestamptz, timestamptz, text) TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.diff(jsonb, jsonb), audit.diff_rows(jsonb, jsonb), audit_internal._diff(jsonb, jsonb),
                          audit_internal._diff_rows(jsonb, jsonb), audit_internal._depth_checked(jsonb) TO audit_reader;

GRANT SELECT ON audit.tracked_tables TO audit_reader;
-- audit.verify() and audit.tracked_tables check capture as the reader (audit_internal._capture_problem):
-- which tables are tracked, and how, is no secret to an auditor
GRANT SELECT ON audit.tracked TO audit_reader;
-- audit.verify() compares audit_ext's settings with what the log says they were set to
GRANT SELECT ON audit.retention, audit.alert_rules, audit.streams TO audit_reader;
-- read-only helpers that audit.tracked_tables and audit.verify() call as the reader
GRANT EXECUTE ON FUNCTION audit_internal._capture_problem(regclass, boolean), audit_internal._key_columns(regclass), audit_internal._tree(regclass),
                          audit_internal._root(regclass)
    TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.row_history(regclass, text), audit.row_history(regclass, jsonb),
                          audit_internal._row_history(regclass, text), audit_internal._row_key(regclass, jsonb),
                          audit.status()
    TO audit_reader;
-- the reading functions record each call (sql/reads.sql) as the caller
GRANT EXECUTE ON FUNCTION audit_internal._read_event(text, jsonb, bigint) TO audit_reader, audit_viewer;

GRANT EXECUTE ON FUNCTION audit.search(text, integer, bigint), audit_internal._translate(text),
                          audit.explain_query(text)
    TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.export(text, text, timestamptz, timestamptz), audit_internal._export_line(text, audit.events),
                          audit_internal._export_header(text)
    TO audit_reader;
GRANT SELECT ON audit.alerts TO audit_reader;

-- Admins manage alert rules and streams (each change is itself an audit event).
GRANT EXECUTE ON FUNCTION audit.create_alert(text, text, integer, interval, text, text, text),
                          audit.drop_alert(text), audit.enable_alert(text, boolean),
                          audit.stream(text, text), audit.unstream(text)
    TO audit_admin;

-- Admins turn capture on and off (each call is itself an audit event).
GRANT EXECUTE ON FUNCTION audit.track(regclass, text[], text[], text[], boolean), audit.untrack(regclass)
    TO audit_admin;

-- Retention: readers see the policies and partitions; admins set policies and tiers, create
-- partitions ahead and apply retention (each change is itself an audit event; archiving to
-- server files additionally needs superuser or pg_write_server_files, checked inside).
GRANT SELECT ON audit.retention_policies, audit.partitions, audit.retention_anchors, audit.tiers TO audit_reader;
-- audit.status() counts the events waiting in the default partition
GRANT SELECT ON audit.events_default TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.retention_class(text) TO audit_reader, audit_writer;
GRANT EXECUTE ON FUNCTION audit.set_retention(interval, text), audit.apply_retention(boolean, text),
                          audit.ensure_partitions(interval), audit.set_tier(interval, name)
    TO audit_admin;

-- Signed checkpoints: admins make them and rotate the key; readers verify them and may see
-- every column of the keys but the secret one.
GRANT EXECUTE ON FUNCTION audit.checkpoint(), audit.rotate_signing_key() TO audit_admin;
GRANT EXECUTE ON FUNCTION audit.signing_key(), audit.verify(jsonb) TO audit_reader;
GRANT SELECT (id, public_key, created_at, retired_at) ON audit.signing_keys TO audit_reader;

-- Viewers (sql/visibility.sql) read events through the same functions and views as readers,
-- and row level security shows them their own; no settings table, partition or guard detail.
GRANT SELECT ON audit.events, audit.changes, audit.recent, audit.security_events, audit.my_changes TO audit_viewer;
GRANT EXECUTE ON FUNCTION audit_internal._visible_roles() TO audit_viewer;
GRANT SELECT ON audit._my_view_grants TO audit_viewer;
GRANT EXECUTE ON FUNCTION audit.verify(bigint, bigint, jsonb, jsonb), audit.verify(jsonb),
                          audit.hash_event(audit.events), audit.export_json(audit.events), audit.signing_key(),
                          audit.summary(timestamptz, timestamptz, text),
                          audit.diff(jsonb, jsonb), audit.diff_rows(jsonb, jsonb), audit_internal._diff(jsonb, jsonb),
                          audit_internal._diff_rows(jsonb, jsonb), audit_internal._depth_checked(jsonb),
                          audit_internal._key_columns(regclass), audit_internal._tree(regclass), audit_internal._root(regclass),
                          audit.row_history(regclass, text), audit.row_history(regclass, jsonb),
                          audit_internal._row_history(regclass, text), audit_internal._row_key(regclass, jsonb),
                          audit.search(text, integer, bigint), audit_internal._translate(text), audit.explain_query(text),
                          audit.export(text, text, timestamptz, timestamptz), audit_internal._export_line(text, audit.events),
                          audit_internal._export_header(text)
    TO audit_viewer;
GRANT SELECT (id, public_key, created_at, retired_at) ON audit.signing_keys TO audit_viewer;
-- Compliance reports (sql/reports.sql): readers.
GRANT EXECUTE ON FUNCTION audit.report(text, timestamptz, timestamptz), audit.report_html(text, timestamptz, timestamptz)
    TO audit_reader;
-- Admins decide who views whose events.
GRANT SELECT ON audit.view_grants TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.allow_view(regrole, regrole), audit.disallow_view(regrole, regrole) TO audit_admin;

-- Forwarders (sql/forward.sql): admins create and drop them, readers see how they are doing.
GRANT EXECUTE ON FUNCTION audit.create_forwarder(text, text, text, text), audit.drop_forwarder(text) TO audit_admin;
GRANT SELECT ON audit.forwarders TO audit_reader;
GRANT EXECUTE ON FUNCTION audit_internal._forwarder_lag(jsonb) TO audit_reader;

-- Admins can do both.
GRANT audit_writer, audit_reader TO audit_admin;

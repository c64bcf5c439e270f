-- Included by the tests that tamper (\i :abs_srcdir/sql/include/guards.sql). Temporary functions: DDL capture
-- leaves them out, so that they add no events.
-- guards_off(): what a superuser does to get past the guards: switch off the event triggers,
-- then the triggers of audit.events and its partitions (session_replication_role = replica no
-- longer skips them: they are enabled ALWAYS). guards_on() puts them back, so that verify sees
-- only what the tampering left. Both run inside a transaction the test rolls back.
CREATE FUNCTION pg_temp.guards_off() RETURNS void LANGUAGE plpgsql AS $$
DECLARE r regclass;
BEGIN
    ALTER EVENT TRIGGER audit_ext_ddl_command DISABLE;
    ALTER EVENT TRIGGER audit_ext_ddl_drop DISABLE;
    FOR r IN SELECT 'audit.events'::regclass UNION ALL
             SELECT i.inhrelid::regclass FROM pg_inherits i WHERE i.inhparent = 'audit.events'::regclass LOOP
        EXECUTE format('ALTER TABLE %s DISABLE TRIGGER USER', r);
    END LOOP;
END $$;
CREATE FUNCTION pg_temp.guards_on() RETURNS void LANGUAGE plpgsql AS $$
DECLARE r regclass;
BEGIN
    FOR r IN SELECT 'audit.events'::regclass UNION ALL
             SELECT i.inhrelid::regclass FROM pg_inherits i WHERE i.inhparent = 'audit.events'::regclass LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER zz_chain_event, ENABLE ALWAYS TRIGGER append_only, '
                       'ENABLE ALWAYS TRIGGER zz_alerts', r);
    END LOOP;
    ALTER EVENT TRIGGER audit_ext_ddl_command ENABLE ALWAYS;
    ALTER EVENT TRIGGER audit_ext_ddl_drop ENABLE ALWAYS;
END $$;

-- audit_ext: capture of schema changes (DDL) and of GRANT/REVOKE on objects, through event
-- triggers (src/capture/ddl.rs). Commands run by extension scripts (in_extension) and
-- temporary objects are not recorded. Switch recording off with audit_ext.capture_ddl = off
-- (superuser-only); the guards (audit_internal._guard_command() of sql/guards.sql, which these event
-- triggers call) stay on. The event triggers themselves are made in sql/guards.sql.

-- ddl_command_end: one event per object a command created or altered.
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit_internal.capture_ddl_command() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    -- new, attached or detached partitions of tracked tables get (or lose) their capture
    -- triggers first, so that the guard below sees the tree as capture leaves it
    IF EXISTS (SELECT FROM audit.tracked) AND NOT audit_internal._restoring()
       AND EXISTS (SELECT FROM pg_event_trigger_ddl_commands() WHERE command_tag IN ('CREATE TABLE', 'ALTER TABLE')) THEN
        PERFORM audit_internal._sync_capture();
    END IF;
    FOR c IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        PERFORM audit_internal._guard_command(c.command_tag, c.classid, c.objid, c.in_extension);
    END LOOP;
    IF NOT audit_internal.capture_ddl_enabled() THEN
        RETURN;
    END IF;
    -- Never silent: maintenance leaves out only audit_ext's own partition work in schema audit.
    FOR c IN SELECT * FROM pg_event_trigger_ddl_commands()
             WHERE NOT in_extension AND coalesce(schema_name, '') NOT LIKE 'pg\_temp%'
               AND NOT (schema_name = 'audit' AND audit_internal._in_maintenance())
               -- audit.track() and untrack() record themselves as capture.* events
               AND NOT (object_type = 'trigger' AND object_identity LIKE 'audit\_ext\_capture\_% on %') LOOP
        PERFORM audit_internal._event(
            CASE WHEN c.command_tag IN ('GRANT', 'REVOKE') THEN 'permission.' || lower(c.command_tag)
                 ELSE 'ddl.' || lower(replace(c.command_tag, ' ', '_')) END,
            'ddl',
            lower(c.object_type),
            c.object_identity,
            c.object_identity,
            NULL,
            jsonb_strip_nulls(jsonb_build_object(
                'command_tag', c.command_tag,
                'object_type', lower(c.object_type),
                'schema', c.schema_name,
                'identity', c.object_identity,
                -- columns of tables, views and the like, as they are after the command
                'columns', CASE WHEN c.classid = 'pg_catalog.pg_class'::regclass THEN (
                    SELECT jsonb_agg(jsonb_build_object('name', a.attname,
                                                        'type', format_type(a.atttypid, a.atttypmod),
                                                        'not_null', a.attnotnull) ORDER BY a.attnum)
                    FROM pg_attribute a
                    WHERE a.attrelid = c.objid AND a.attnum > 0 AND NOT a.attisdropped) END,
                -- the statement, except where it may carry credentials
                'statement', CASE WHEN c.command_tag LIKE '%USER MAPPING%' THEN NULL
                                  ELSE current_query() END)));
    END LOOP;
END
$$;

-- sql_drop: one event per object a DROP (or ALTER ... DROP) removed by name; a dropped
-- tracked table is untracked (capture.untrack); dropping the triggers or rules of
-- audit.events or a capture trigger of a tracked table is refused (42501).
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit_internal.capture_ddl_drop() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    t audit.tracked;
BEGIN
    -- DROP EXTENSION audit_ext removes the log itself: nothing left to record into.
    IF to_regclass('audit.events') IS NULL THEN
        RETURN;
    END IF;
    -- Partitions of audit.events leave only through audit.apply_retention().
    FOR d IN SELECT * FROM pg_event_trigger_dropped_objects()
             WHERE object_type = 'table' AND schema_name = 'audit' AND NOT audit_internal._in_maintenance()
               AND (object_name = 'events_default'
                    OR EXISTS (SELECT FROM audit.partitions p WHERE p.name = object_name)) LOOP
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('%s is a partition of audit.events and cannot be dropped', d.object_identity),
            HINT = 'Old events leave only through audit.apply_retention(), which records what it drops and keeps every chain verifiable.';
    END LOOP;
    FOR d IN SELECT * FROM pg_event_trigger_dropped_objects()
             WHERE original AND object_type IN ('trigger', 'rule', 'policy') AND NOT audit_internal._in_maintenance() LOOP
        -- address_names of a trigger, rule or policy: {schema, table, name}
        IF (d.address_names[1] = 'audit' AND (d.address_names[2] = 'events'
                OR EXISTS (SELECT FROM audit.partitions p WHERE p.name = d.address_names[2])))
           OR (d.object_type = 'trigger' AND d.address_names[3] LIKE 'audit\_ext\_capture\_%'
               AND EXISTS (SELECT FROM audit.tracked tr
                           WHERE tr.tbl = audit_internal._root(to_regclass(format('%I.%I', d.address_names[1], d.address_names[2]))))) THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = format('%s is protected by audit_ext and cannot be dropped', d.object_identity),
                HINT = CASE WHEN d.address_names[1] = 'audit' THEN 'The guards of audit.events change only with the extension.'
                            ELSE 'Stop capture with audit.untrack(), which is itself recorded.' END;
        END IF;
    END LOOP;
    FOR d IN SELECT * FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table' LOOP
        DELETE FROM audit.tracked tr WHERE tr.tbl = d.objid RETURNING * INTO t;
        IF t.tbl IS NOT NULL THEN
            PERFORM audit_internal._event('capture.untrack', 'capture', 'table', NULL, d.object_identity,
                                 jsonb_build_object('operations', t.operations, 'exclude_columns', t.exclude_columns,
                                                    'mask_columns', t.mask_columns, 'skip_unchanged', t.skip_unchanged),
                                 NULL, 'the tracked table was dropped');
        END IF;
    END LOOP;
    IF NOT audit_internal.capture_ddl_enabled() THEN
        RETURN;
    END IF;
    FOR d IN SELECT * FROM pg_event_trigger_dropped_objects()
             WHERE original AND NOT is_temporary
               AND NOT (schema_name = 'audit' AND audit_internal._in_maintenance())
               AND NOT (object_type = 'trigger' AND object_identity LIKE 'audit\_ext\_capture\_% on %') LOOP
        PERFORM audit_internal._event('ddl.drop_' || replace(d.object_type, ' ', '_'), 'ddl', d.object_type,
                             d.object_identity, d.object_identity,
                             jsonb_strip_nulls(jsonb_build_object(
                                 'object_type', d.object_type, 'schema', d.schema_name,
                                 'identity', d.object_identity, 'statement', current_query())));
    END LOOP;
END
$$;

-- audit_ext: capture of schema changes (DDL) and of GRANT/REVOKE on objects, through event
-- triggers. Commands run by extension scripts (in_extension) and temporary objects are not
-- recorded. Switch off with audit_ext.capture_ddl = off (superuser-only).

-- ddl_command_end: one event per object a command created or altered.
CREATE FUNCTION audit.capture_ddl_command() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    IF NOT audit.capture_ddl_enabled() THEN
        RETURN;
    END IF;
    FOR c IN SELECT * FROM pg_event_trigger_ddl_commands()
             WHERE NOT in_extension AND coalesce(schema_name, '') NOT LIKE 'pg\_temp%' LOOP
        INSERT INTO audit.events (action, module, object_type, object_id, object_name, new)
        VALUES (
            CASE WHEN c.command_tag IN ('GRANT', 'REVOKE') THEN 'permission.' || lower(c.command_tag)
                 ELSE 'ddl.' || lower(replace(c.command_tag, ' ', '_')) END,
            'ddl',
            lower(c.object_type),
            c.object_identity,
            c.object_identity,
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

-- sql_drop: one event per object a DROP (or ALTER ... DROP) removed by name.
CREATE FUNCTION audit.capture_ddl_drop() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
BEGIN
    -- DROP EXTENSION audit_ext removes the log itself: nothing left to record into.
    IF to_regclass('audit.events') IS NULL OR NOT audit.capture_ddl_enabled() THEN
        RETURN;
    END IF;
    FOR d IN SELECT * FROM pg_event_trigger_dropped_objects()
             WHERE original AND NOT is_temporary LOOP
        INSERT INTO audit.events (action, module, object_type, object_id, object_name, old)
        VALUES ('ddl.drop_' || replace(d.object_type, ' ', '_'), 'ddl', d.object_type,
                d.object_identity, d.object_identity,
                jsonb_strip_nulls(jsonb_build_object(
                    'object_type', d.object_type, 'schema', d.schema_name,
                    'identity', d.object_identity, 'statement', current_query())));
    END LOOP;
END
$$;

CREATE EVENT TRIGGER audit_ext_ddl_command ON ddl_command_end
    EXECUTE FUNCTION audit.capture_ddl_command();
CREATE EVENT TRIGGER audit_ext_ddl_drop ON sql_drop
    EXECUTE FUNCTION audit.capture_ddl_drop();

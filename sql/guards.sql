-- audit_ext: the guards of the log (README "Security model", src/guards.rs): the triggers on
-- audit.events, the event triggers, the DDL guard they call, and what audit.verify() reports
-- about them. This file is the one owner of their names: the triggers are made from the lists
-- below, here and for every partition (audit_internal._create_partition()), and verify checks the same
-- lists.

-- pgrx declares its trigger functions in schema audit; they are internal (not for callers).
ALTER FUNCTION audit.chain_event() SET SCHEMA audit_internal;
ALTER FUNCTION audit.refuse_change() SET SCHEMA audit_internal;

-- The triggers every table of the log carries. Row triggers made on audit.events are cloned
-- onto its partitions; statement triggers are not inherited, so audit_internal._create_partition()
-- makes those (per_partition). All are enabled ALWAYS: session_replication_role = replica
-- (settable by superusers and by roles granted it) must not skip them.
--   zz_chain_event: validates, chains and hashes every new event (src/append.rs); named so
--     that it fires after any other BEFORE INSERT trigger (they fire in name order): nothing
--     may change or skip a row once it is chained.
--   append_only: refuses UPDATE, DELETE and TRUNCATE (src/guards.rs), at statement level so
--     that it refuses even statements that would touch no row, for every role.
--   zz_alerts: evaluates alert rules and streams for every new event (src/alerts.rs).
CREATE FUNCTION audit_internal._guard_triggers()
RETURNS TABLE (name name, fn text, events text, level text, per_partition boolean)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    VALUES ('zz_chain_event'::name, 'audit_internal.chain_event()', 'BEFORE INSERT', 'ROW', false),
           ('append_only', 'audit_internal.refuse_change()', 'BEFORE UPDATE OR DELETE OR TRUNCATE', 'STATEMENT', true),
           ('zz_alerts', 'audit_internal.evaluate_alerts()', 'AFTER INSERT', 'ROW', false)
$$;

-- The event triggers of DDL capture and of the DDL guard (sql/capture/ddl.sql).
CREATE FUNCTION audit_internal._guard_event_triggers() RETURNS TABLE (name name, fn text, event text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    VALUES ('audit_ext_ddl_command'::name, 'audit_internal.capture_ddl_command()', 'ddl_command_end'),
           ('audit_ext_ddl_drop', 'audit_internal.capture_ddl_drop()', 'sql_drop')
$$;

-- The row level security policies of audit.events (sql/visibility.sql), as PostgreSQL prints
-- them back (pg_get_expr): the guards compare the live policies with these, so that a policy
-- someone else added, or one of these altered, is reported. cmd: r SELECT, a INSERT.
CREATE FUNCTION audit_internal._guard_policies() RETURNS TABLE (name name, cmd "char", roles name[], qual text, with_check text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('audit_readers'::name, 'r'::"char", ARRAY['audit_reader']::name[], 'true'::text, NULL::text),
           ('audit_viewers', 'r', ARRAY['audit_viewer'],
            '((actor = ANY (( SELECT audit_internal._visible_roles() AS _visible_roles)::text[])) OR ((metadata ->> ''db_user''::text) = ANY (( SELECT audit_internal._visible_roles() AS _visible_roles)::text[])))',
            NULL),
           ('audit_inserts', 'a', ARRAY['public'], NULL, 'true')
$$;

-- What is wrong with the guards, one row per problem, none when nothing is (the guards row of audit.verify(),
-- src/guards.rs): a trigger of audit.events (or of one of its partitions) or an event trigger
-- missing, disabled, conditional or not ALWAYS; a guard function that is no longer
-- audit_ext's C function; a rule on audit.events; row level security off or forced on it, a
-- policy on it that is not audit_ext's or not as audit_ext made it, a viewer that can read a
-- partition directly or bypasses row level security; a tracked table whose
-- capture is not intact; a partition that left other than through apply_retention, or whose
-- bounds audit.partitions misstates; DDL capture off; capture, retention, alert and stream
-- settings that differ from what the log says they were set to. Runs as the caller (an
-- auditor reads all of this).
CREATE FUNCTION audit_internal._guard_problems() RETURNS SETOF text
    LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp
AS $$
SELECT p FROM (
    SELECT format('trigger %s on %s is %s', t.name, r.rel,
                  CASE WHEN tg.oid IS NULL THEN 'missing'
                       WHEN tg.tgfoid <> t.fn THEN format('not %s', t.fn)
                       WHEN tg.tgqual IS NOT NULL THEN 'conditional (WHEN ...)'
                       WHEN tg.tgenabled = 'D' THEN 'disabled'
                       ELSE 'not enabled ALWAYS (session_replication_role = replica skips it)' END) AS p
    FROM (SELECT 'audit.events'::regclass AS rel UNION ALL
          SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
          WHERE i.inhparent = 'audit.events'::regclass) r
    CROSS JOIN (SELECT g.name, g.fn::regprocedure AS fn FROM audit_internal._guard_triggers() g) t
    LEFT JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = r.rel AND tg.tgname = t.name
    WHERE tg.oid IS NULL OR tg.tgenabled <> 'A' OR tg.tgfoid <> t.fn OR tg.tgqual IS NOT NULL
    UNION ALL
    SELECT format('event trigger %s is %s', t.name,
                  CASE WHEN et.oid IS NULL THEN 'missing'
                       WHEN et.evtfoid <> t.fn OR et.evtevent <> t.ev THEN format('not %s on %s', t.fn, t.ev)
                       WHEN et.evttags IS NOT NULL THEN 'limited to some commands (WHEN TAG IN ...)'
                       WHEN et.evtenabled = 'D' THEN 'disabled'
                       ELSE 'not enabled ALWAYS (session_replication_role = replica skips it)' END)
    FROM (SELECT g.name, g.fn::regprocedure AS fn, g.event AS ev FROM audit_internal._guard_event_triggers() g) t
    LEFT JOIN pg_catalog.pg_event_trigger et ON et.evtname = t.name
    WHERE et.oid IS NULL OR et.evtenabled <> 'A' OR et.evtfoid <> t.fn OR et.evtevent <> t.ev
       OR et.evttags IS NOT NULL
    UNION ALL
    SELECT format('function %s is no longer audit_ext''s own C function', f.fn)
    FROM (SELECT g.fn::regprocedure FROM audit_internal._guard_triggers() g
          UNION SELECT 'audit_internal.capture_rows()'::regprocedure) f(fn)
    JOIN pg_catalog.pg_proc p ON p.oid = f.fn
    WHERE p.prolang <> (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'c')
       OR p.probin IS DISTINCT FROM '$libdir/audit_ext'
    UNION ALL
    SELECT format('rule %s on audit.events', r.rulename) FROM pg_catalog.pg_rewrite r
    WHERE r.ev_class = 'audit.events'::regclass
    UNION ALL
    SELECT CASE WHEN NOT c.relrowsecurity
                THEN 'row level security is off on audit.events: members of audit_viewer see every event'
                ELSE 'row level security is forced on audit.events: audit_ext''s own reads of the log (chain heads, verify) see no events' END
    FROM pg_catalog.pg_class c
    WHERE c.oid = 'audit.events'::regclass AND (NOT c.relrowsecurity OR c.relforcerowsecurity)
    UNION ALL
    SELECT format('policy %s on audit.events is not audit_ext''s: it changes who sees or writes which events', p.polname)
    FROM pg_catalog.pg_policy p
    WHERE p.polrelid = 'audit.events'::regclass AND p.polname NOT IN (SELECT g.name FROM audit_internal._guard_policies() g)
    UNION ALL
    SELECT format('policy %s on audit.events is %s', g.name,
                  CASE WHEN p.oid IS NULL THEN 'missing' ELSE 'not as audit_ext made it (it was altered)' END)
    FROM audit_internal._guard_policies() g
    LEFT JOIN pg_catalog.pg_policy p ON p.polrelid = 'audit.events'::regclass AND p.polname = g.name
    WHERE p.oid IS NULL OR p.polcmd <> g.cmd OR NOT p.polpermissive
       OR (SELECT array_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END ORDER BY 1)
           FROM unnest(p.polroles) r)::name[] IS DISTINCT FROM g.roles
       OR pg_catalog.pg_get_expr(p.polqual, p.polrelid) IS DISTINCT FROM g.qual
       OR pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) IS DISTINCT FROM g.with_check
    UNION ALL
    SELECT format('%s can read partition %s directly, past the policies of audit.events (a member of audit_viewer, not of audit_reader)',
                  r.rolname, i.inhrelid::regclass)
    FROM pg_catalog.pg_inherits i CROSS JOIN pg_catalog.pg_roles r
    WHERE i.inhparent = 'audit.events'::regclass AND NOT r.rolsuper
      AND pg_catalog.pg_has_role(r.oid, 'audit_viewer', 'MEMBER') AND NOT pg_catalog.pg_has_role(r.oid, 'audit_reader', 'MEMBER')
      AND pg_catalog.has_table_privilege(r.oid, i.inhrelid, 'SELECT')
    UNION ALL
    SELECT format('%s is a member of audit_viewer with BYPASSRLS: it sees every event', r.rolname)
    FROM pg_catalog.pg_roles r
    WHERE r.rolbypassrls AND NOT r.rolsuper
      AND pg_catalog.pg_has_role(r.oid, 'audit_viewer', 'MEMBER') AND NOT pg_catalog.pg_has_role(r.oid, 'audit_reader', 'MEMBER')
    UNION ALL
    SELECT format('capture of %s is not intact: %s', t.table_name, audit_internal._capture_problem(t.tbl))
    FROM audit.tracked_tables t WHERE NOT t.intact
    UNION ALL
    SELECT format('partition audit.%s (class %s, %s to %s UTC) is missing: dropped or detached outside '
                  'audit.apply_retention(), its events are gone', p.name, p.class,
                  to_char(p.from_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                  to_char(p.to_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'))
    FROM audit.partitions p
    WHERE p.dropped_at IS NULL AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits i
        JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit.events'::regclass AND c.relname = p.name)
    UNION ALL
    SELECT format('partition audit.%s is listed in audit.partitions with other bounds than its own (audit.partitions was edited)',
                  p.name)
    FROM audit.partitions p JOIN pg_catalog.pg_class c ON c.relname = p.name AND c.relnamespace = 'audit'::regnamespace
    WHERE p.dropped_at IS NULL AND c.relispartition
      AND pg_catalog.pg_get_expr(c.relpartbound, c.oid) IS DISTINCT FROM
          format('FOR VALUES FROM (%s, %L) TO (%s, %L)', p.class, p.from_at, p.class, p.to_at)
    UNION ALL
    SELECT format('DDL capture is off (audit_ext.capture_ddl = off, set in %s): DDL, GRANT and role changes go unrecorded',
                  s.source)
    FROM pg_catalog.pg_settings s WHERE s.name = 'audit_ext.capture_ddl' AND s.setting = 'off'
    UNION ALL
    SELECT format('capture of %s stopped without a capture.untrack event (audit.tracked was edited and its triggers dropped)',
                  l.object_name)
    FROM (SELECT DISTINCT ON (e.object_name) e.object_name, e.action FROM audit.events e
          WHERE e.module = 'capture' AND e.action IN ('capture.track', 'capture.untrack')
          ORDER BY e.object_name, e.id DESC) l
    WHERE l.action = 'capture.track' AND to_regclass(l.object_name) IS NOT NULL
      AND NOT EXISTS (SELECT FROM audit.tracked t WHERE t.tbl = to_regclass(l.object_name))
    UNION ALL
    SELECT format('capture settings of %s differ from what the log says audit.track() set (audit.tracked was edited)',
                  t.table_name)
    FROM audit.tracked_tables t
    JOIN LATERAL (SELECT e.action, e.new FROM audit.events e WHERE e.module = 'capture'
                  AND e.action IN ('capture.track', 'capture.untrack') AND e.object_name = t.table_name
                  ORDER BY e.id DESC LIMIT 1) l ON true
    WHERE l.action <> 'capture.track'
       OR l.new IS DISTINCT FROM jsonb_build_object('operations', t.operations, 'exclude_columns', t.exclude_columns,
                                                  'mask_columns', t.mask_columns, 'skip_unchanged', t.skip_unchanged)
    UNION ALL
    SELECT format('retention policy %s keeps %s, but the log last set it to %s (audit.retention was edited)',
                  r.pattern, coalesce(r.keep::text, 'forever'), coalesce(l.keep, 'nothing'))
    FROM audit.retention r
    LEFT JOIN LATERAL (SELECT e.new ->> 'keep' AS keep FROM audit.events e WHERE e.module = 'retention'
                       AND e.action = 'retention.set' AND e.object_id = r.pattern ORDER BY e.id DESC LIMIT 1) l ON true
    WHERE CASE WHEN l.keep IS NULL THEN r.pattern <> '*' OR r.keep IS DISTINCT FROM interval '365 days'
               WHEN l.keep = 'forever' THEN r.keep IS NOT NULL
               ELSE r.keep IS DISTINCT FROM l.keep::interval END
    UNION ALL
    SELECT format('alert %s differs from what the log says audit.create_alert() made (audit.alert_rules was edited)', r.name)
    FROM audit.alert_rules r
    LEFT JOIN LATERAL (SELECT e.action, e.new FROM audit.events e WHERE e.module = 'alert'
                       AND e.action IN ('alert.create', 'alert.drop') AND e.object_id = r.name
                       ORDER BY e.id DESC LIMIT 1) l ON true
    LEFT JOIN LATERAL (SELECT e.action FROM audit.events e WHERE e.module = 'alert'
                       AND e.action IN ('alert.enable', 'alert.disable') AND e.object_id = r.name
                       ORDER BY e.id DESC LIMIT 1) en ON true
    WHERE l.action IS DISTINCT FROM 'alert.create'
       OR (l.new - 'window') IS DISTINCT FROM jsonb_build_object('query', r.query, 'threshold', r.threshold,
                                                  'group_by', r.group_by, 'channel', r.channel, 'severity', r.severity)
       OR (l.new ->> 'window')::interval IS DISTINCT FROM r."window"
       OR r.enabled IS DISTINCT FROM coalesce(en.action = 'alert.enable', true)
    UNION ALL
    SELECT format('alert %s was removed without an alert.drop event (audit.alert_rules was edited)', l.object_id)
    FROM (SELECT DISTINCT ON (e.object_id) e.object_id, e.action FROM audit.events e
          WHERE e.module = 'alert' AND e.action IN ('alert.create', 'alert.drop') ORDER BY e.object_id, e.id DESC) l
    WHERE l.action = 'alert.create' AND NOT EXISTS (SELECT FROM audit.alert_rules r WHERE r.name = l.object_id)
    UNION ALL
    SELECT format('stream %s differs from what the log says audit.stream() made (audit.streams was edited)', st.channel)
    FROM audit.streams st
    LEFT JOIN LATERAL (SELECT e.action, e.new FROM audit.events e WHERE e.module = 'alert'
                       AND e.action IN ('stream.create', 'stream.drop') AND e.object_id = st.channel
                       ORDER BY e.id DESC LIMIT 1) l ON true
    WHERE l.action IS DISTINCT FROM 'stream.create' OR l.new IS DISTINCT FROM jsonb_build_object('query', st.query)) s
ORDER BY p
$$;

-- Refuses (42501) what would let changes escape the log: ALTER TABLE audit.events (disabling
-- its triggers, say), triggers, rules or policies on it, and on a tracked table an ALTER that
-- disables a capture trigger or renames or drops an excluded or masked column (2BP01).
CREATE FUNCTION audit_internal._guard_command(cmd_tag text, classid oid, objid oid, in_ext boolean) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel oid;
    problem text;
BEGIN
    -- the extension's script, and audit_ext's own partition upkeep and retention (a backend
    -- state only audit_ext's own functions enter, src/chain.rs; a C call, so that it loads the
    -- library)
    IF in_ext OR audit_internal._in_maintenance() THEN
        RETURN;
    END IF;
    rel := CASE classid
        WHEN 'pg_class'::regclass THEN objid
        WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = objid)
        WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = objid)
        WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = objid)
    END;
    -- A restore (audit_ext.restore, superuser-only) recreates and attaches the partitions.
    IF rel = 'audit.events'::regclass AND NOT audit_internal._restoring() AND cmd_tag IN ('ALTER TABLE',
            'CREATE TRIGGER', 'ALTER TRIGGER', 'CREATE RULE', 'ALTER RULE', 'CREATE POLICY', 'ALTER POLICY') THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('audit.events is protected by audit_ext: %s on it is not allowed', cmd_tag),
            HINT = CASE WHEN cmd_tag = 'ALTER TABLE'
                        THEN 'Its columns, triggers and partitions guarantee the chain; partitions come from audit.ensure_partitions() and leave through audit.apply_retention().'
                        ELSE 'Its columns, triggers and rules guarantee the chain; they change only with a new version of audit_ext.' END;
    END IF;
    -- audit_ext's functions are its guards (a C trigger replaced by a no-op would silence
    -- them), and triggers, rules and policies on its tables would change what they do
    IF classid = 'pg_proc'::regclass AND cmd_tag IN ('CREATE FUNCTION', 'ALTER FUNCTION', 'CREATE PROCEDURE', 'ALTER PROCEDURE')
       AND (SELECT p.pronamespace FROM pg_proc p WHERE p.oid = objid) IN ('audit'::regnamespace, 'audit_internal'::regnamespace) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('schema %s belongs to audit_ext: %s of %s is not allowed',
                             (SELECT p.pronamespace::regnamespace FROM pg_proc p WHERE p.oid = objid), cmd_tag, objid::regprocedure),
            HINT = 'audit_ext''s functions are part of its guards; create your own functions in another schema.';
    END IF;
    IF cmd_tag IN ('CREATE TRIGGER', 'ALTER TRIGGER', 'CREATE RULE', 'ALTER RULE', 'CREATE POLICY', 'ALTER POLICY')
       AND NOT audit_internal._restoring()
       AND (SELECT c.relnamespace FROM pg_class c WHERE c.oid = rel) = 'audit'::regnamespace THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('%s belongs to audit_ext: %s on it is not allowed', rel::regclass, cmd_tag),
            HINT = 'audit_ext''s tables are changed only through its functions.';
    END IF;
    -- the capture triggers' names are reserved: a trigger of that name that is not
    -- audit_internal.capture_rows() would pass for capture
    IF classid = 'pg_trigger'::regclass AND cmd_tag IN ('CREATE TRIGGER', 'ALTER TRIGGER')
       AND EXISTS (SELECT FROM pg_trigger tg WHERE tg.oid = objid AND tg.tgname LIKE 'audit\_ext\_capture\_%'
                   AND tg.tgfoid <> 'audit_internal.capture_rows()'::regprocedure) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('trigger names audit_ext_capture_* are reserved for audit_ext''s capture (on %s)', rel::regclass),
            HINT = 'Name your trigger otherwise; audit.track() installs the capture triggers.';
    END IF;
    IF NOT audit_internal._restoring() AND cmd_tag IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER',
            'CREATE RULE', 'ALTER RULE', 'CREATE POLICY', 'ALTER POLICY')
       AND EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = rel AND i.inhparent = 'audit.events'::regclass) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('%s is a partition of audit.events, protected by audit_ext: %s on it is not allowed',
                             rel::regclass, cmd_tag),
            HINT = 'Partitions are created by audit_ext itself (audit.ensure_partitions()), moved by audit.set_tier() and removed only by audit.apply_retention().';
    END IF;
    IF cmd_tag IN ('ALTER TABLE', 'ALTER TRIGGER') AND NOT audit_internal._restoring()
       AND EXISTS (SELECT FROM audit.tracked t WHERE t.tbl = audit_internal._root(rel)) THEN
        problem := audit_internal._capture_problem(rel::regclass, false);
        IF problem LIKE 'column%' THEN
            RAISE EXCEPTION USING ERRCODE = '2BP01',
                MESSAGE = format('%s is tracked by audit_ext: %s', rel::regclass, problem),
                HINT = 'Call audit.track() again without that column first, then change the table.';
        ELSIF problem LIKE 'masked column%' THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = format('%s is tracked by audit_ext: %s', rel::regclass, problem),
                HINT = 'Call audit.track() again without that column in mask_columns first, then change the key.';
        ELSIF problem IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = format('%s is tracked by audit_ext: %s', rel::regclass, problem),
                HINT = 'Stop capture with audit.untrack(), which is itself recorded.';
        END IF;
    END IF;
END
$$;

-- The guards themselves, from the lists above (after audit_internal._guard_command(), which the event
-- triggers call from their first command on).
DO $guards$
DECLARE
    g record;
    rel text;
BEGIN
    FOR g IN SELECT * FROM audit_internal._guard_triggers() LOOP
        FOREACH rel IN ARRAY CASE WHEN g.per_partition THEN ARRAY['audit.events', 'audit.events_default']
                                  ELSE ARRAY['audit.events'] END LOOP
            EXECUTE format('CREATE TRIGGER %I %s ON %s FOR EACH %s EXECUTE FUNCTION %s',
                           g.name, g.events, rel, g.level, g.fn);
        END LOOP;
    END LOOP;
    FOREACH rel IN ARRAY ARRAY['audit.events', 'audit.events_default'] LOOP
        EXECUTE format('ALTER TABLE %s %s', rel,
                       (SELECT string_agg(format('ENABLE ALWAYS TRIGGER %I', t.name), ', ') FROM audit_internal._guard_triggers() t));
    END LOOP;
    FOR g IN SELECT * FROM audit_internal._guard_event_triggers() LOOP
        EXECUTE format('CREATE EVENT TRIGGER %I ON %s EXECUTE FUNCTION %s', g.name, g.event, g.fn);
        EXECUTE format('ALTER EVENT TRIGGER %I ENABLE ALWAYS', g.name);
    END LOOP;
END
$guards$;

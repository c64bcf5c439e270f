-- audit_ext 0.1.0 -> 0.2.0 (ALTER EXTENSION audit_ext UPDATE). Written once and frozen with the
-- release, like sql/audit_ext--0.1.0.sql: later changes go into a script of their own.
-- What changed (CHANGELOG.md): the event vocabulary (with the severities), the guard lists and the retention.applied
-- format each got one owner (src/vocab.rs, sql/guards.sql, src/retention/anchor.rs); audit.export, the
-- auditor's views, signed checkpoints, visibility, reports and the audit of the audit are new;
-- the internal functions moved to the schema audit_internal.
\echo Use "ALTER EXTENSION audit_ext UPDATE TO '0.2.0'" to load this file. \quit

-- audit_ext's internal functions move to the schema audit_internal (src/lib.rs), so that
-- \df audit.* lists only what users call; every reference below names them there.
-- (the event triggers are off meanwhile: their 0.1.0 functions name the helpers in schema audit;
-- switched on again, ALWAYS, at the end of this script)
ALTER EVENT TRIGGER audit_ext_ddl_command DISABLE;
ALTER EVENT TRIGGER audit_ext_ddl_drop DISABLE;
CREATE SCHEMA audit_internal;
COMMENT ON SCHEMA audit_internal IS 'audit_ext''s internal functions; call those of schema audit instead.';
REVOKE ALL ON SCHEMA audit_internal FROM PUBLIC;
GRANT USAGE ON SCHEMA audit_internal TO audit_writer, audit_reader, audit_admin;
ALTER FUNCTION audit._begin_maintenance() SET SCHEMA audit_internal;
ALTER FUNCTION audit._check_alert(text,text) SET SCHEMA audit_internal;
ALTER FUNCTION audit._check_pattern(text) SET SCHEMA audit_internal;
ALTER FUNCTION audit._diff(jsonb,jsonb) SET SCHEMA audit_internal;
ALTER FUNCTION audit._diff_rows(jsonb,jsonb) SET SCHEMA audit_internal;
ALTER FUNCTION audit._depth_checked(jsonb) SET SCHEMA audit_internal;
ALTER FUNCTION audit._end_maintenance() SET SCHEMA audit_internal;
ALTER FUNCTION audit._group_name(text) SET SCHEMA audit_internal;
ALTER FUNCTION audit._in_maintenance() SET SCHEMA audit_internal;
ALTER FUNCTION audit._partition_period() SET SCHEMA audit_internal;
ALTER FUNCTION audit._restoring() SET SCHEMA audit_internal;
ALTER FUNCTION audit._retention_changed() SET SCHEMA audit_internal;
ALTER FUNCTION audit._rules_changed() SET SCHEMA audit_internal;
ALTER FUNCTION audit._translate(text) SET SCHEMA audit_internal;
ALTER FUNCTION audit._try_maintenance() SET SCHEMA audit_internal;
ALTER FUNCTION audit.capture_ddl_enabled() SET SCHEMA audit_internal;
ALTER FUNCTION audit.chain_event() SET SCHEMA audit_internal;
ALTER FUNCTION audit.refuse_change() SET SCHEMA audit_internal;
ALTER FUNCTION audit._event(text,text,text,text,text,jsonb,jsonb,text,text) SET SCHEMA audit_internal;
ALTER FUNCTION audit.evaluate_alerts() SET SCHEMA audit_internal;
ALTER FUNCTION audit.capture_rows() SET SCHEMA audit_internal;
ALTER FUNCTION audit._mask(jsonb,text[]) SET SCHEMA audit_internal;
ALTER FUNCTION audit._root(regclass) SET SCHEMA audit_internal;
ALTER FUNCTION audit._tree(regclass) SET SCHEMA audit_internal;
ALTER FUNCTION audit._key_columns(regclass) SET SCHEMA audit_internal;
ALTER FUNCTION audit._capture_problem(regclass,boolean) SET SCHEMA audit_internal;
ALTER FUNCTION audit._create_capture_triggers(regclass,audit.tracked) SET SCHEMA audit_internal;
ALTER FUNCTION audit._sync_capture() SET SCHEMA audit_internal;
ALTER FUNCTION audit._drop_capture_triggers(regclass) SET SCHEMA audit_internal;
ALTER FUNCTION audit._track(regclass,text[],text[],text[],boolean) SET SCHEMA audit_internal;
ALTER FUNCTION audit._guard_command(text,oid,oid,boolean) SET SCHEMA audit_internal;
ALTER FUNCTION audit.capture_ddl_command() SET SCHEMA audit_internal;
ALTER FUNCTION audit.capture_ddl_drop() SET SCHEMA audit_internal;
ALTER FUNCTION audit._lock(text,text) SET SCHEMA audit_internal;
ALTER FUNCTION audit._period_start(timestamp with time zone,text) SET SCHEMA audit_internal;
ALTER FUNCTION audit._create_indexes(text) SET SCHEMA audit_internal;
ALTER FUNCTION audit._create_partition(integer,timestamp with time zone,timestamp with time zone) SET SCHEMA audit_internal;
ALTER FUNCTION audit._default_ahead() SET SCHEMA audit_internal;
ALTER FUNCTION audit._free_range(integer,timestamp with time zone,text) SET SCHEMA audit_internal;
ALTER FUNCTION audit._ensure_partitions(interval,boolean) SET SCHEMA audit_internal;
ALTER FUNCTION audit._partition_keep(text,integer) SET SCHEMA audit_internal;
ALTER FUNCTION audit._apply_tiers() SET SCHEMA audit_internal;

-- src/vocab.rs: every event audit_ext records itself must be in its vocabulary
CREATE FUNCTION audit_internal."_own_action"(
	"action" TEXT, /* & str */
	"module" TEXT /* & str */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'own_action_wrapper';

-- src/retention/anchor.rs: the one format of a retention.applied event
CREATE FUNCTION audit_internal."_retention_applied"(
	"partitions" jsonb, /* JsonB */
	"events" bigint, /* i64 */
	"anchors" jsonb, /* Option < JsonB > */
	"archive_dir" TEXT /* Option < & str > */
) RETURNS jsonb /* JsonB */
IMMUTABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'retention_applied_wrapper';

-- An event audit_ext records itself (alerts, capture, DDL, roles, retention): the one place
-- these get their retention class, which the INSERT must carry (src/retention/policies.rs),
-- and the check that the action is one src/vocab.rs lists for the module. Runs as its caller,
-- each of them audit_ext's own SECURITY DEFINER function, trigger or hook.
CREATE OR REPLACE FUNCTION audit_internal._event(action text, module text, object_type text, object_id text,
                             object_name text, old jsonb DEFAULT NULL, new jsonb DEFAULT NULL,
                             message text DEFAULT NULL, severity text DEFAULT 'info') RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO audit.events (retention_class, action, module, object_type, object_id, object_name,
                              old, new, message, severity)
    VALUES (audit.retention_class($1), audit_internal._own_action($1, $2), $2, $3, $4, $5, $6, $7, $8, $9)
    RETURNING id
$$;

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

-- Creates one partition for class cls and [lo, hi): as a standalone table with a matching
-- CHECK, filled with the rows of that range waiting in the default partition, then attached
-- (ATTACH locks the parent in SHARE UPDATE EXCLUSIVE mode only, so writers go on) and given
-- its statement-level guards (sql/guards.sql). The caller holds the default partition's lock.
CREATE OR REPLACE FUNCTION audit_internal._create_partition(cls integer, lo timestamptz, hi timestamptz) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC'
AS $$
DECLARE
    base text := format('events_%s_%s', cls, to_char(timezone('UTC', lo), 'YYYYMMDD'));
    part text := base;
    n integer := 1;
    moved bigint;
    g record;
BEGIN
    WHILE EXISTS (SELECT FROM audit.partitions p WHERE p.name = part)
          OR to_regclass(format('audit.%I', part)) IS NOT NULL LOOP
        n := n + 1;
        part := base || '_' || n;
    END LOOP;
    EXECUTE format('CREATE TABLE audit.%I (LIKE audit.events INCLUDING DEFAULTS, '
                   'CONSTRAINT %I CHECK (retention_class = %s AND at >= %L AND at < %L))',
                   part, part || '_range', cls, lo, hi);
    EXECUTE format('INSERT INTO audit.%I SELECT * FROM ONLY audit.events_default '
                   'WHERE retention_class = $1 AND at >= $2 AND at < $3', part) USING cls, lo, hi;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        DELETE FROM ONLY audit.events_default d WHERE d.retention_class = cls AND d.at >= lo AND d.at < hi;
    END IF;
    -- nobody but the owner (default privileges of the owner would apply to the new table)
    FOR g IN SELECT a.grantee FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
             WHERE c.oid = format('audit.%I', part)::regclass AND a.grantee <> c.relowner LOOP
        EXECUTE format('REVOKE ALL ON audit.%I FROM %s', part,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END);
    END LOOP;
    PERFORM audit_internal._create_indexes(part);
    EXECUTE format('ALTER TABLE audit.events ATTACH PARTITION audit.%I FOR VALUES FROM (%s, %L) TO (%s, %L)',
                   part, cls, lo, cls, hi);
    -- The CHECK only spared ATTACH a scan; kept, it would be evaluated again for every event,
    -- after the partition constraint that says the same (measured: parsing it was 8% of the
    -- time of 200,000 audit.record calls).
    EXECUTE format('ALTER TABLE audit.%I DROP CONSTRAINT %I', part, part || '_range');
    -- the guards of sql/guards.sql: row triggers were cloned from audit.events, statement
    -- triggers are not inherited; all ALWAYS, like the parent's
    FOR g IN SELECT * FROM audit_internal._guard_triggers() t WHERE t.per_partition LOOP
        EXECUTE format('CREATE TRIGGER %I %s ON audit.%I FOR EACH %s EXECUTE FUNCTION %s',
                       g.name, g.events, part, g.level, g.fn);
    END LOOP;
    EXECUTE format('ALTER TABLE audit.%I %s', part,
                   (SELECT string_agg(format('ENABLE ALWAYS TRIGGER %I', t.name), ', ') FROM audit_internal._guard_triggers() t));
    INSERT INTO audit.partitions (name, class, from_at, to_at) VALUES (part, cls, lo, hi);
    RETURN part;
END
$$;

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE OR REPLACE FUNCTION audit.apply_retention(dry_run boolean DEFAULT false, archive_dir text DEFAULT NULL)
RETURNS TABLE (partition text, retention_class integer, from_at timestamptz, to_at timestamptz,
               events bigint, chains jsonb, archive_file text, dropped boolean)
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '2s'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    p audit.partitions;
    k interval;
    n bigint;
    per_chain jsonb;
    part_runs jsonb;
    runs jsonb := '[]';
    merged jsonb;
    todo audit.partitions[] := '{}';
    parts jsonb := '[]';
    files text[] := '{}';
    total bigint := 0;
    ev bigint;
    i integer;
BEGIN
    dry_run := coalesce(dry_run, false);
    IF archive_dir IS NOT NULL THEN
        IF NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = session_user)
           AND NOT pg_has_role(session_user, 'pg_write_server_files', 'MEMBER') THEN
            RAISE EXCEPTION USING ERRCODE = '42501',
                MESSAGE = 'archiving writes files on the database server: only superusers and members of pg_write_server_files may',
                HINT = 'GRANT pg_write_server_files TO the role running apply_retention, or run it without archive_dir.';
        END IF;
        IF archive_dir !~ '^/' OR archive_dir ~ '(^|/)\.\.(/|$)' THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = format('archive_dir %L is not an absolute path without ".."', archive_dir),
                HINT = 'Give a directory on the database server, writable by its OS user, e.g. ''/var/lib/postgresql/audit-archive''.';
        END IF;
        IF NOT coalesce((pg_stat_file(archive_dir, true)).isdir, false) THEN
            RAISE EXCEPTION USING ERRCODE = '58P01',
                MESSAGE = format('archive_dir %L is not a directory on the database server', archive_dir),
                HINT = 'Create it, owned by the server''s OS user (postgres), and call again.';
        END IF;
    END IF;
    -- Locks, in an order that cannot deadlock with writers (who hold the parent, then read
    -- every partition): the partitions to drop in SHARE mode (no row may arrive while they are
    -- counted and archived; readers and other writers go on), and only for the DROP itself the
    -- parent in ACCESS EXCLUSIVE mode. Events still waiting in the default partition are not
    -- considered: the partition worker or audit.ensure_partitions() gives them partitions.

    IF NOT dry_run THEN
        PERFORM audit_internal._begin_maintenance();
    END IF;
    FOR p IN
        SELECT pt.* FROM audit.partitions pt
        WHERE pt.dropped_at IS NULL AND to_regclass(format('audit.%I', pt.name)) IS NOT NULL
        ORDER BY pt.from_at, pt.class
    LOOP
        -- the age of a partition comes from audit.partitions: it must say what the partition's
        -- own bounds say (an edited to_at would otherwise drop recent events)
        IF (SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c
            WHERE c.oid = format('audit.%I', p.name)::regclass)
           IS DISTINCT FROM format('FOR VALUES FROM (%s, %L) TO (%s, %L)', p.class, p.from_at, p.class, p.to_at) THEN
            RAISE EXCEPTION USING ERRCODE = 'XX001',
                MESSAGE = format('audit.partitions says partition %s holds class %s from %s to %s, which its bounds do not: audit.partitions was edited',
                                 p.name, p.class, p.from_at, p.to_at),
                HINT = 'Retention drops nothing while the list of partitions disagrees with the partitions; run audit.verify(), which reports the partition, and restore audit.partitions.';
        END IF;
        k := audit_internal._partition_keep(p.name, p.class);
        CONTINUE WHEN k IS NULL OR p.to_at > now() - k;
        IF NOT dry_run THEN
            PERFORM audit_internal._lock(format('audit.%I', p.name), 'SHARE');
            -- it may have gained an event with a longer period meanwhile
            k := audit_internal._partition_keep(p.name, p.class);
            CONTINUE WHEN k IS NULL OR p.to_at > now() - k;
        END IF;
        EXECUTE format($q$
            SELECT coalesce(sum(c.n), 0)::bigint,
                   coalesce(jsonb_object_agg(c.chain, jsonb_build_object(
                       'events', c.n, 'first_id', c.first_id, 'last_id', c.last_id,
                       'first_seq', c.first_seq, 'last_seq', c.last_seq)), '{}')
            FROM (SELECT e.chain, count(*) AS n, min(e.id) AS first_id, max(e.id) AS last_id,
                         min(e.seq) AS first_seq, max(e.seq) AS last_seq
                  FROM audit.%I e GROUP BY e.chain) c $q$, p.name) INTO n, per_chain;
        partition := p.name;
        retention_class := p.class;
        from_at := p.from_at;
        to_at := p.to_at;
        events := n;
        chains := per_chain;
        archive_file := CASE WHEN archive_dir IS NOT NULL THEN rtrim(archive_dir, '/') || '/' || p.name || '.jsonl' END;
        dropped := NOT dry_run;
        RETURN NEXT;
        CONTINUE WHEN dry_run;
        IF archive_file IS NOT NULL AND pg_stat_file(archive_file, true) IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = '58P02',
                MESSAGE = format('archive file %s already exists', archive_file),
                HINT = 'An archive is never overwritten: move it away (a run that failed after archiving leaves a complete copy) or choose another archive_dir.';
        END IF;
        -- the stretches of each chain this partition holds, with the hash of each stretch's
        -- last event: usually one per chain (count = last - first + 1), read from the counts
        -- above with one index probe per chain; else found with a window over the partition
        IF (SELECT bool_and((v ->> 'events')::bigint = (v ->> 'last_seq')::bigint - (v ->> 'first_seq')::bigint + 1)
            FROM jsonb_each(per_chain) j(k, v)) THEN
            EXECUTE format($q$
                SELECT coalesce(jsonb_agg(jsonb_build_object('chain', j.k::integer,
                           'from_seq', (j.v ->> 'first_seq')::bigint, 'to_seq', (j.v ->> 'last_seq')::bigint,
                           'to_hash', encode((SELECT x.hash FROM audit.%1$I x
                                              WHERE x.chain = j.k::integer AND x.seq = (j.v ->> 'last_seq')::bigint
                                              LIMIT 1), 'hex'))), '[]')
                FROM jsonb_each($1) j(k, v) $q$, p.name) USING per_chain INTO part_runs;
        ELSE
        EXECUTE format($q$
            SELECT coalesce(jsonb_agg(jsonb_build_object('chain', r.chain, 'from_seq', r.f, 'to_seq', r.t,
                       'to_hash', encode((SELECT x.hash FROM audit.%1$I x WHERE x.chain = r.chain AND x.seq = r.t LIMIT 1), 'hex'))), '[]')
            FROM (SELECT s.chain, min(s.seq) AS f, max(s.seq) AS t
                  FROM (SELECT e.chain, e.seq, e.seq - row_number() OVER (PARTITION BY e.chain ORDER BY e.seq) AS g
                        FROM audit.%1$I e) s
                  GROUP BY s.chain, s.g) r $q$, p.name) INTO part_runs;
        END IF;
        runs := runs || part_runs;
        todo := todo || p;
        files := files || archive_file;
        total := total + n;
        parts := parts || jsonb_build_object('partition', p.name, 'retention_class', p.class,
                                             'from', p.from_at, 'to', p.to_at, 'events', n, 'chains', per_chain,
                                             'keep', k);
    END LOOP;
    IF dry_run OR cardinality(todo) = 0 THEN
        PERFORM audit_internal._apply_tiers() WHERE NOT dry_run;
        PERFORM audit_internal._end_maintenance();
        RETURN;
    END IF;

    -- The new anchors: every stretch dropped so far, merged per chain where they touch.
    WITH a AS (
        SELECT x.chain, x.from_seq, x.to_seq, x.to_hash FROM audit.retention_anchors x
        UNION ALL
        SELECT (r->>'chain')::integer, (r->>'from_seq')::bigint, (r->>'to_seq')::bigint, decode(r->>'to_hash', 'hex')
        FROM jsonb_array_elements(runs) r
    ), b AS (
        SELECT a.*, CASE WHEN a.from_seq = lag(a.to_seq) OVER w + 1 THEN 0 ELSE 1 END AS brk
        FROM a WINDOW w AS (PARTITION BY a.chain ORDER BY a.from_seq)
    ), g AS (
        SELECT b.*, sum(b.brk) OVER (PARTITION BY b.chain ORDER BY b.from_seq) AS grp FROM b
    )
    SELECT jsonb_agg(jsonb_build_object('chain', m.chain, 'from_seq', m.f, 'to_seq', m.t, 'to_hash', encode(m.h, 'hex'))
                     ORDER BY m.chain, m.f)
    INTO merged
    FROM (SELECT g.chain, min(g.from_seq) AS f, max(g.to_seq) AS t,
                 (array_agg(g.to_hash ORDER BY g.to_seq DESC))[1] AS h
          FROM g GROUP BY g.chain, g.grp) m;

    -- Archives first, while writers go on (a failed run may leave them behind: an archive is a
    -- complete copy, and is never overwritten).
    FOR i IN 1 .. cardinality(todo) LOOP
        IF files[i] IS NOT NULL THEN
            -- one JSON object per line: CSV with a quote and a delimiter that JSON text never
            -- holds raw (to_jsonb escapes control characters), so nothing is quoted or escaped
            EXECUTE format('COPY (SELECT audit.export_json(e) FROM audit.%I e ORDER BY e.chain, e.seq) TO %L '
                           'WITH (FORMAT csv, QUOTE E''\x01'', DELIMITER E''\x02'')', todo[i].name, files[i]);
        END IF;
    END LOOP;
    -- DROP of a partition takes this lock anyway; taken before the event below, so that this
    -- transaction never holds a chain while it waits for writers. ONLY: LOCK TABLE would
    -- otherwise go on to every partition, among them the one a writer inserting straight into
    -- it (audit.record) holds while it waits for this parent (a deadlock, measured).
    -- The parent first, then the partitions (as DROP takes them): a writer's chain-head read
    -- takes ACCESS SHARE on every partition of its class while it holds the parent, so locking
    -- a partition before the parent deadlocks with it (measured: t_90, apply_retention while
    -- pgbench writes). Both with the 2 s lock_timeout and a clear 55P03.
    PERFORM audit_internal._lock('ONLY audit.events', 'ACCESS EXCLUSIVE');
    FOR i IN 1 .. cardinality(todo) LOOP
        PERFORM audit_internal._lock(format('audit.%I', todo[i].name), 'ACCESS EXCLUSIVE');
    END LOOP;

    -- Recorded before anything is dropped, in the hash-chained log itself: audit.verify()
    -- starts each chain from these anchors.
    ev := audit_internal._event('retention.applied', 'retention', 'partition', NULL, NULL, NULL,
            audit_internal._retention_applied(parts, total, merged, archive_dir),
            format('%s event(s) in %s partition(s) dropped by retention', total, cardinality(todo)));

    DELETE FROM audit.retention_anchors;
    INSERT INTO audit.retention_anchors (chain, from_seq, to_seq, to_hash, event_id)
    SELECT (r->>'chain')::integer, (r->>'from_seq')::bigint, (r->>'to_seq')::bigint, decode(r->>'to_hash', 'hex'), ev
    FROM jsonb_array_elements(merged) r;

    FOR i IN 1 .. cardinality(todo) LOOP
        p := todo[i];
        EXECUTE format('DROP TABLE audit.%I', p.name);
        UPDATE audit.partitions pt SET dropped_at = now(), dropped_by = ev WHERE pt.name = p.name;
    END LOOP;
    PERFORM audit_internal._apply_tiers();
    PERFORM audit_internal._end_maintenance();
END
$$;

-- an impossible case raises XX000 with a hint (README "Errors")
CREATE OR REPLACE FUNCTION audit_internal._ensure_partitions(ahead interval, settle boolean DEFAULT false) RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '2s'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    period text := audit_internal._partition_period();
    cls integer;
    t timestamptz;
    r record;
    created text[] := '{}';
    rounds integer := 0;
BEGIN
    PERFORM audit_internal._begin_maintenance();
    IF settle AND EXISTS (SELECT FROM ONLY audit.events_default) THEN
        PERFORM audit_internal._lock('ONLY audit.events', 'SHARE');
    ELSE
        settle := false;
    END IF;
    -- No writer may add rows to the default partition while partitions are attached.
    PERFORM audit_internal._lock('audit.events_default', 'ACCESS EXCLUSIVE');
    FOR cls IN SELECT c.class FROM audit.retention c ORDER BY c.class LOOP
        t := audit_internal._period_start(now(), period);
        WHILE t <= now() + ahead LOOP
            SELECT * INTO r FROM audit_internal._free_range(cls, t, period);
            IF r.lo IS NULL THEN -- t is in a partition: go on from its end
                t := (SELECT p.to_at FROM audit.partitions p
                      WHERE p.class = cls AND p.dropped_at IS NULL AND p.from_at <= t AND t < p.to_at);
                CONTINUE;
            END IF;
            IF NOT settle AND EXISTS (SELECT FROM ONLY audit.events_default d
                                      WHERE d.retention_class = cls AND d.at >= r.lo AND d.at < r.hi) THEN
                t := r.hi;   -- events are arriving there: see above
                CONTINUE;
            END IF;
            created := created || audit_internal._create_partition(cls, r.lo, r.hi);
            t := r.hi;
        END LOOP;
    END LOOP;
    -- events waiting in the default partition, oldest first, until none is left
    WHILE settle AND rounds < 10000 LOOP
        rounds := rounds + 1;
        SELECT d.retention_class, d.at INTO cls, t FROM ONLY audit.events_default d ORDER BY d.at LIMIT 1;
        EXIT WHEN NOT FOUND;
        SELECT * INTO r FROM audit_internal._free_range(cls, t, period);
        IF r.lo IS NULL THEN
            -- cannot be: ATTACH moved nothing into a partition that holds it
            RAISE EXCEPTION USING ERRCODE = 'XX000',
                MESSAGE = format('audit_ext: event at %s of class %s is in the default partition, but a partition holds that time', t, cls),
                HINT = 'This is a bug in audit_ext; nothing was moved.';
        END IF;
        created := created || audit_internal._create_partition(cls, r.lo, r.hi);
    END LOOP;
    RETURN QUERY SELECT unnest(created);
END
$$;

-- src/vocab.rs owns the severities: audit.create_alert checks them there
CREATE FUNCTION audit_internal."_check_severity"(
	"severity" TEXT, /* Option < & str > */
	"caller" TEXT /* & str */
) RETURNS bool /* bool */
IMMUTABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_severity_wrapper';

CREATE OR REPLACE FUNCTION audit.create_alert(
    name      text,
    query     text,
    threshold integer  DEFAULT 1,
    "window"  interval DEFAULT '5 minutes',
    group_by  text     DEFAULT NULL,
    channel   text     DEFAULT 'audit_alert',
    severity  text     DEFAULT 'high'
) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.:-]{1,63}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('audit.create_alert(): invalid name %L', name),
            HINT = 'Use 1 to 63 letters, digits, and _ . : -';
    ELSIF query IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'audit.create_alert(): query is NULL',
            HINT = 'Pass a query such as ''action:authentication.login AND status:failure''.';
    ELSIF threshold IS NULL OR threshold < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('audit.create_alert(): threshold must be at least 1, not %s', coalesce(threshold::text, 'NULL')),
            HINT = 'The alert fires when this many matching events fall within the window.';
    ELSIF "window" IS NULL OR "window" <= interval '0' OR "window" > interval '366 days' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('audit.create_alert(): window must be positive and at most 366 days, not %s', coalesce("window"::text, 'NULL')),
            HINT = 'For example ''5 minutes''.';
    ELSIF channel IS NULL OR octet_length(channel) NOT BETWEEN 1 AND 63 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'audit.create_alert(): channel must be 1 to 63 bytes',
            HINT = 'Listeners run LISTEN with this name; the default is audit_alert.';
    -- (raises 22023 itself: the list of severities is src/vocab.rs's)
    ELSIF NOT audit_internal._check_severity(severity, 'audit.create_alert()') THEN
        NULL;
    ELSIF EXISTS (SELECT FROM audit.alert_rules r WHERE r.name = create_alert.name) THEN
        RAISE EXCEPTION USING ERRCODE = '42710', MESSAGE = format('alert %L already exists', name),
            HINT = 'Drop it first with audit.drop_alert(), or pick another name.';
    END IF;
    PERFORM audit_internal._check_alert(query, group_by);
    -- stored as the column it names (aliases such as 'user' or ' Actor ' resolved)
    group_by := audit_internal._group_name(group_by);
    INSERT INTO audit.alert_rules (name, query, threshold, "window", group_by, channel, severity)
    VALUES (name, query, threshold, "window", group_by, channel, severity);
    PERFORM audit_internal._rules_changed();
    PERFORM audit_internal._event('alert.create', 'alert', 'alert', name, name, NULL,
                         jsonb_build_object('query', query, 'threshold', threshold, 'window', "window"::text,
                                            'group_by', group_by, 'channel', channel, 'severity', severity));
END
$$;

-- audit.export (sql/export.sql, src/export.rs)
CREATE FUNCTION audit_internal."_export_header"(
	"format" TEXT /* & str */
) RETURNS TEXT /* Option < & '_ str > */
IMMUTABLE STRICT PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'export_header_wrapper';

-- One event as a line of kv, csv, cef or rfc5424.
CREATE FUNCTION audit_internal._export_line(format text, e audit.events) RETURNS text
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'audit_export_line';

-- The events matching query (the search language; NULL: all) with since <= at < until, one
-- line each in id order, in one of the formats of README "Export". Runs as the caller, whose
-- own privileges on audit.events apply (audit_reader may). RETURN QUERY keeps the lines in a
-- tuplestore that spills to disk past work_mem: memory stays flat for any number of events.
CREATE FUNCTION audit.export(format text, query text DEFAULT NULL, since timestamptz DEFAULT NULL,
                             until timestamptz DEFAULT NULL)
RETURNS SETOF text
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text[] := ARRAY['true'];
    header text;
    n bigint;
BEGIN
    IF format IS NULL OR format NOT IN ('jsonl', 'csv', 'cef', 'rfc5424', 'kv') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.export(): unknown format %s', coalesce(quote_literal(format), 'NULL')),
            HINT = 'Use jsonl, csv, cef, rfc5424 or kv.';
    END IF;
    IF since > until THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.export(): since (%s) is after until (%s)', since, until),
            HINT = 'since is inclusive, until exclusive: pass since <= until.';
    END IF;
    IF query IS NOT NULL THEN
        t := audit_internal._translate(query);
    END IF;
    header := audit_internal._export_header(format);
    IF header IS NOT NULL THEN
        RETURN NEXT header;
    END IF;
    -- t[1] is built by the translator from column names, operators and $1[n] only; the
    -- values are t[2:] (as in audit.search)
    RETURN QUERY EXECUTE
        'SELECT ' || CASE WHEN format = 'jsonl' THEN 'audit.export_json(e)::text' ELSE 'audit_internal._export_line($4, e)' END
        || ' FROM audit.events e WHERE (' || t[1] || ')'
           ' AND ($2::timestamptz IS NULL OR e.at >= $2) AND ($3::timestamptz IS NULL OR e.at < $3) ORDER BY e.id'
        USING t[2:], since, until, format;
    GET DIAGNOSTICS n = ROW_COUNT;
    -- recorded before the caller sees a line (the lines are kept until this returns)
    PERFORM audit_internal._read_event('audit.export',
                              jsonb_build_object('format', format, 'query', query, 'since', since, 'until', until), n);
END
$$;
COMMENT ON FUNCTION audit.export IS 'Events matching a query and time range as lines of jsonl, csv, cef, rfc5424 or kv (README "Export").';

-- the auditor's views (sql/views.sql)
-- The last 24 hours, newest first, with the columns an auditor reads.
--   select * from audit.recent limit 20;
CREATE VIEW audit.recent WITH (security_invoker = true) AS
SELECT e.id, e.at, e.actor, e.actor_ip, e.action, e.status, e.severity, e.module, e.object_type,
       e.object_id, e.object_name, e.message
FROM audit.events e
WHERE e.at > now() - interval '24 hours'
ORDER BY e.id DESC;
COMMENT ON VIEW audit.recent IS 'Events of the last 24 hours, newest first.';

-- The guard problems (audit_internal._guard_problems()) for a caller that may read them, none for one
-- that may not: a member of audit_viewer reads audit.security_events too, and learns from it
-- its own events, not the details of the guards. PL/pgSQL, so that the query, and the privilege
-- checks of what it reads, run only for a caller allowed to run it.
CREATE FUNCTION audit_internal._visible_guard_problems() RETURNS SETOF text
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.has_function_privilege('audit_internal._guard_problems()', 'EXECUTE') THEN
        RETURN QUERY SELECT p FROM audit_internal._guard_problems() p;
    END IF;
END
$$;

-- What a security team looks at first, each event with its kind: failed and denied
-- authentications and actions, permission and role changes, changes of audit_ext's own
-- settings (capture, retention, alerts, streams, server settings), alerts fired, retention
-- applied; and, as rows with id NULL, what is wrong with the guards of the log now
-- (audit_internal._guard_problems(), the guards row of audit.verify()), to those who may read them.
CREATE VIEW audit.security_events WITH (security_invoker = true) AS
SELECT e.id, e.at,
       CASE WHEN e.action LIKE 'authentication.%' AND e.status <> 'success' THEN 'failed_authentication'
            WHEN e.status = 'denied' THEN 'denied'
            WHEN e.status = 'failure' THEN 'failed'
            WHEN e.action LIKE 'permission.%' THEN 'permission_change'
            WHEN e.action LIKE 'role.%' THEN 'role_change'
            WHEN e.action = 'alert.fired' THEN 'alert_fired'
            WHEN e.action = 'retention.applied' THEN 'retention_applied'
            ELSE 'audit_setting_change' END AS kind,
       e.actor, e.actor_ip, e.action, e.status, e.severity, e.object_type, e.object_id, e.object_name, e.message
FROM audit.events e
WHERE (e.action LIKE 'authentication.%' AND e.status <> 'success')
   OR e.status IN ('denied', 'failure')
   OR e.action LIKE 'permission.%' OR e.action LIKE 'role.%'
   OR e.action LIKE 'setting.%'
   OR (e.module IN ('capture', 'retention', 'alert')
       AND e.action IN ('capture.track', 'capture.untrack', 'retention.set', 'retention.tier', 'retention.applied',
                        'alert.create', 'alert.drop', 'alert.enable', 'alert.disable', 'alert.fired',
                        'stream.create', 'stream.drop'))
UNION ALL
SELECT NULL::bigint, now(), 'guard_problem', NULL, NULL, 'audit.guards', 'failure', 'critical', NULL, NULL, NULL, g.problem
FROM audit_internal._visible_guard_problems() g(problem);
COMMENT ON VIEW audit.security_events IS 'Failed and denied actions, permission, role and audit setting changes, alerts, retention, guard problems.';

-- NetEye's "My changes": the changes (events with old and/or new properties) made in the
-- caller's sessions: recorded under its login role (the actor audit_ext records is the
-- session user, whatever SET ROLE says), or asserted for an end user by a session of its
-- role (metadata.db_user).
CREATE VIEW audit.my_changes WITH (security_invoker = true) AS
SELECT e.id, e.at, e.action, e.status, e.module, e.object_type, e.object_id, e.object_name, e.old, e.new,
       audit.diff(e.old, e.new) AS diff
FROM audit.events e
WHERE (e.old IS NOT NULL OR e.new IS NOT NULL)
  AND (e.actor = session_user OR e.metadata ->> 'db_user' = session_user)
  -- reads of the log are not changes: sql/reads.sql files them as object_type function or
  -- statement, and a report as report
  AND NOT (e.module = 'audit' AND e.object_type IN ('function', 'statement', 'report'))
ORDER BY e.id DESC;
COMMENT ON VIEW audit.my_changes IS 'Changes made in sessions of the current login role, newest first.';

-- How many events, grouped by one of action, actor, object_type, status, module, severity or
-- day (UTC), with since <= at < until (NULL: open), most first.
CREATE FUNCTION audit.summary(since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL, by text DEFAULT 'action')
RETURNS TABLE (key text, count bigint)
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    expr text := CASE by WHEN 'day' THEN 'to_char(e.at AT TIME ZONE ''UTC'', ''YYYY-MM-DD'')'
                         WHEN 'action' THEN 'e.action' WHEN 'actor' THEN 'e.actor'
                         WHEN 'object_type' THEN 'e.object_type' WHEN 'status' THEN 'e.status'
                         WHEN 'module' THEN 'e.module' WHEN 'severity' THEN 'e.severity' END;
BEGIN
    IF expr IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.summary(): cannot group by %s', coalesce(quote_literal(by), 'NULL')),
            HINT = 'Group by action, actor, object_type, status, module, severity or day.';
    END IF;
    RETURN QUERY EXECUTE
        'SELECT ' || expr || '::text, count(*) FROM audit.events e'
        ' WHERE ($1::timestamptz IS NULL OR e.at >= $1) AND ($2::timestamptz IS NULL OR e.at < $2)'
        ' GROUP BY 1 ORDER BY 2 DESC, 1'
        USING since, until;
    GET DIAGNOSTICS n = ROW_COUNT;
    -- a summary is a read of the log too (sql/reads.sql)
    PERFORM audit_internal._read_event('audit.summary', jsonb_build_object('since', since, 'until', until, 'by', by), n);
END
$$;
COMMENT ON FUNCTION audit.summary IS 'Event counts by action, actor, object_type, status, module, severity or day.';

-- signed checkpoints (sql/checkpoint.sql, src/checkpoint.rs)
CREATE FUNCTION audit_internal."_new_signing_key"() RETURNS TEXT /* String */
STRICT VOLATILE PARALLEL UNSAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'new_signing_key_wrapper';

CREATE FUNCTION audit_internal."_checkpoint"() RETURNS jsonb /* JsonB */
STRICT VOLATILE PARALLEL UNSAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'make_checkpoint_wrapper';

CREATE FUNCTION audit."signing_key"() RETURNS TEXT /* Option < String > */
STRICT STABLE PARALLEL SAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'signing_key_wrapper';

CREATE FUNCTION audit."verify"(
	"checkpoint" jsonb /* JsonB */
) RETURNS TABLE (
	"chain" INT,  /* Option < i32 > */
	"events_checked" bigint,  /* i64 */
	"ok" bool,  /* bool */
	"first_bad_id" bigint,  /* Option < i64 > */
	"first_bad_seq" bigint,  /* Option < i64 > */
	"reason" TEXT  /* Option < String > */
)
STRICT VOLATILE PARALLEL UNSAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'verify_checkpoint_wrapper';

-- The Ed25519 signing keys: the current one (retired_at NULL) and those it replaced. The
-- secret half is readable by the extension's owner only (readers may see the rest, to tell
-- whose key signed a checkpoint). Not dumped with the database: a restored database makes a
-- key of its own, and the checkpoints made before keep verifying with the key noted with them.
CREATE TABLE audit.signing_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_key bytea NOT NULL UNIQUE,
    secret_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
COMMENT ON TABLE audit.signing_keys IS 'Ed25519 keys that sign checkpoints (audit.checkpoint); the secret half is the owner''s only.';

-- Signs the heads of every chain and records the checkpoint as an event (action
-- audit.checkpoint): keep the result outside the database, and later pass it to
-- audit.verify(checkpoint => ...).
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.checkpoint() RETURNS jsonb
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cp jsonb := audit_internal._checkpoint();
BEGIN
    PERFORM audit_internal._event('audit.checkpoint', 'audit', 'checkpoint', cp ->> 'public_key', NULL, NULL, cp,
                         format('checkpoint of %s chain(s)', jsonb_array_length((cp ->> 'payload')::jsonb -> 'chains')));
    RETURN cp;
END
$$;
COMMENT ON FUNCTION audit.checkpoint IS 'Signs the heads of every chain (Ed25519); keep the result outside and pass it to audit.verify(checkpoint => ...).';

-- Replaces the signing key; the old one is kept (retired) so that earlier checkpoints still
-- verify. Recorded (audit.key_rotated, with both public keys).
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.rotate_signing_key() RETURNS text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old text := audit.signing_key();
    new text := audit_internal._new_signing_key();
BEGIN
    PERFORM audit_internal._event('audit.key_rotated', 'audit', 'signing_key', new, NULL,
                         jsonb_build_object('public_key', old), jsonb_build_object('public_key', new));
    RETURN new;
END
$$;
COMMENT ON FUNCTION audit.rotate_signing_key IS 'Replaces the checkpoint signing key (the old one stays, retired); returns the new public key.';

-- The first key, made by CREATE EXTENSION.
SELECT audit_internal._new_signing_key();

-- privileges as a fresh install has them (sql/finalize.sql)
REVOKE ALL ON FUNCTION audit_internal._own_action(text, text), audit_internal._check_severity(text, text), audit_internal._retention_applied(jsonb, bigint, jsonb, text),
                       audit_internal._guard_triggers(), audit_internal._guard_event_triggers(), audit_internal._guard_problems(),
                       audit_internal._export_header(text), audit_internal._export_line(text, audit.events),
                       audit.export(text, text, timestamptz, timestamptz),
                       audit.summary(timestamptz, timestamptz, text),
                       audit_internal._new_signing_key(), audit_internal._checkpoint(), audit.signing_key(), audit.verify(jsonb),
                       audit.checkpoint(), audit.rotate_signing_key() FROM PUBLIC;
REVOKE ALL ON audit.signing_keys FROM PUBLIC;
REVOKE ALL ON SEQUENCE audit.signing_keys_id_seq FROM PUBLIC;
REVOKE ALL ON audit.recent, audit.security_events, audit.my_changes FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_internal._guard_problems(), audit_internal._guard_triggers(), audit_internal._guard_event_triggers(),
                          audit_internal._guard_policies()
    TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.export(text, text, timestamptz, timestamptz), audit_internal._export_line(text, audit.events),
                          audit_internal._export_header(text)
    TO audit_reader;
GRANT SELECT ON audit.recent, audit.security_events, audit.my_changes TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.summary(timestamptz, timestamptz, text) TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.checkpoint(), audit.rotate_signing_key() TO audit_admin;
GRANT EXECUTE ON FUNCTION audit.signing_key(), audit.verify(jsonb) TO audit_reader;
GRANT SELECT (id, public_key, created_at, retired_at) ON audit.signing_keys TO audit_reader;

-- Who sees what (sql/visibility.sql): the role, then the table, policies and functions.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'audit_viewer') THEN
        CREATE ROLE audit_viewer NOLOGIN;
    END IF;
END
$roles$;
-- audit_admin) see every event; members of audit_viewer see their own events, and those of the
-- roles audit.allow_view() let them view. Row level security on audit.events, with policies
-- that audit_ext owns (audit_internal._guard_policies(), sql/guards.sql: the guards check that they are
-- exactly these, and refuse any other). Every function and view that reads events as its
-- caller (audit.search, audit.changes, audit.row_history, audit.export, the auditor's views)
-- therefore shows a viewer only what it may see; audit.verify() reads every event as the
-- extension's owner and tells a viewer only chain-level results.

-- Who may view whose events beyond their own. regrole columns: a dump names the roles, and a
-- restore finds them again by name.
CREATE TABLE audit.viewers (
    viewer     regrole     NOT NULL,
    of_role    regrole     NOT NULL,
    granted_by text COLLATE "C" NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (viewer, of_role)
);
SELECT pg_catalog.pg_extension_config_dump('audit.viewers', '');

-- The caller's own grants (current_user in a view is the querying role; the view reads
-- audit.viewers with its owner's rights), so that a viewer learns nothing of others' grants.
CREATE VIEW audit._my_view_grants WITH (security_barrier = true) AS
SELECT v.of_role FROM audit.viewers v WHERE v.viewer OPERATOR(pg_catalog.=) CURRENT_USER::regrole;

-- The role names whose events the current role sees as a viewer: itself, and every role that
-- is a member (directly or not) of a role it was allowed to view, that role included. The
-- policy calls it once per statement (a scalar subquery, an InitPlan), not once per row.
CREATE FUNCTION audit_internal._visible_roles() RETURNS text[]
    LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(DISTINCT n ORDER BY n) FROM (
        SELECT CURRENT_USER::text
        UNION ALL
        SELECT r.rolname::text FROM audit._my_view_grants g
        JOIN pg_catalog.pg_roles r ON pg_catalog.pg_has_role(r.oid, g.of_role::oid, 'MEMBER')
    ) s(n)
$$;

ALTER TABLE audit.events ENABLE ROW LEVEL SECURITY;
-- Readers see all: a constant qual, which the planner drops, so it costs them nothing.
CREATE POLICY audit_readers ON audit.events FOR SELECT TO audit_reader USING (true);
-- Viewers see the events they are the actor of, or whose connection they were when an
-- application asserted an end user as the actor (metadata.db_user), and the same of the roles
-- they may view.
CREATE POLICY audit_viewers ON audit.events FOR SELECT TO audit_viewer
    USING (actor OPERATOR(pg_catalog.=) ANY ((SELECT audit_internal._visible_roles())::text[])
           OR (metadata OPERATOR(pg_catalog.->>) 'db_user') OPERATOR(pg_catalog.=) ANY ((SELECT audit_internal._visible_roles())::text[]));
-- Inserts are what they were: privileges and the insert trigger decide (audit_ext's own inserts
-- run as the owner, whom row level security does not restrict).
CREATE POLICY audit_inserts ON audit.events FOR INSERT TO PUBLIC WITH CHECK (true);

-- audit.allow_view(viewer, of_role): `viewer` also sees the events of every member of `of_role`
-- (a manager and the team). Recorded as audit.view_allowed.
--
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.allow_view(viewer regrole, of_role regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF viewer IS NULL OR of_role IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'audit.allow_view(): viewer and of_role must not be NULL',
            HINT = 'Name two roles, e.g. audit.allow_view(''alice'', ''team_payments'').';
    END IF;
    IF NOT pg_catalog.pg_has_role(viewer::oid, 'audit_viewer', 'MEMBER') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.allow_view(): %s is not a member of audit_viewer', viewer),
            HINT = format('GRANT audit_viewer TO %s first; members of audit_reader see every event anyway.', viewer);
    END IF;
    INSERT INTO audit.viewers (viewer, of_role, granted_by) VALUES (allow_view.viewer, allow_view.of_role, session_user)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM audit_internal._event('audit.view_allowed', 'audit', 'role', viewer::text, viewer::text, NULL,
                             jsonb_build_object('viewer', viewer::text, 'of_role', of_role::text));
    END IF;
END
$$;
COMMENT ON FUNCTION audit.allow_view IS 'Lets a member of audit_viewer also see the events of every member of of_role.';

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.disallow_view(viewer regrole, of_role regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM audit.viewers v WHERE v.viewer = disallow_view.viewer AND v.of_role = disallow_view.of_role;
    IF FOUND THEN
        PERFORM audit_internal._event('audit.view_disallowed', 'audit', 'role', viewer::text, viewer::text,
                             jsonb_build_object('viewer', viewer::text, 'of_role', of_role::text), NULL);
    END IF;
END
$$;
COMMENT ON FUNCTION audit.disallow_view IS 'Takes back what audit.allow_view gave.';

CREATE VIEW audit.view_grants AS
SELECT v.viewer, v.of_role, v.granted_by, v.granted_at FROM audit.viewers v;
COMMENT ON VIEW audit.view_grants IS 'Which viewers see the events of which roles (audit.allow_view).';

-- privileges of the above, as a fresh install has them (sql/finalize.sql)
REVOKE ALL ON FUNCTION audit_internal._guard_policies(), audit_internal._visible_roles(), audit_internal._visible_guard_problems(), audit.allow_view(regrole, regrole),
                       audit.disallow_view(regrole, regrole) FROM PUBLIC;
REVOKE ALL ON audit.viewers, audit._my_view_grants, audit.view_grants FROM PUBLIC;
GRANT USAGE ON SCHEMA audit, audit_internal TO audit_viewer;
GRANT SELECT ON audit.events, audit.changes, audit.recent, audit.security_events, audit.my_changes TO audit_viewer;
GRANT EXECUTE ON FUNCTION audit_internal._visible_roles() TO audit_viewer;
GRANT SELECT ON audit._my_view_grants TO audit_viewer;
GRANT EXECUTE ON FUNCTION audit_internal._visible_guard_problems() TO audit_reader, audit_viewer;
GRANT EXECUTE ON FUNCTION audit.verify(bigint, bigint, jsonb), audit.verify(jsonb),
                          audit.hash_event(audit.events), audit.export_json(audit.events), audit.signing_key(),
                          audit.summary(timestamptz, timestamptz, text),
                          audit.diff(jsonb, jsonb), audit.diff_rows(jsonb, jsonb), audit_internal._diff(jsonb, jsonb),
                          audit_internal._diff_rows(jsonb, jsonb), audit_internal._depth_checked(jsonb),
                          audit_internal._key_columns(regclass), audit_internal._tree(regclass), audit_internal._root(regclass),
                          audit.row_history(regclass, text), audit.row_history(regclass, jsonb),
                          audit.search(text, integer, bigint), audit_internal._translate(text), audit.explain_query(text),
                          audit.export(text, text, timestamptz, timestamptz), audit_internal._export_line(text, audit.events),
                          audit_internal._export_header(text)
    TO audit_viewer;
GRANT SELECT (id, public_key, created_at, retired_at) ON audit.signing_keys TO audit_viewer;
GRANT SELECT ON audit.view_grants TO audit_reader;
GRANT EXECUTE ON FUNCTION audit.allow_view(regrole, regrole), audit.disallow_view(regrole, regrole) TO audit_admin;

-- Compliance reports (sql/reports.sql).
-- until) gathers, for one period, what an auditor of SOC 2, ISO 27001, HIPAA, PCI DSS or GDPR
-- asks to see: integrity of the log, access and permission changes, privileged actions, failed
-- and denied access, changes to tracked tables, changes of audit settings, alerts, and
-- retention against the framework's minimum. Every section names the control it serves and
-- the query behind its count, so the auditor can rerun it. The mapping of sections to
-- controls is audit_ext's reading of each framework, for orientation, not legal advice.

-- What the sections count: a predicate over `e` (a row of audit.events), fixed text that the
-- report splices into its queries (no caller value is ever part of it).
CREATE FUNCTION audit_internal._report_sections() RETURNS TABLE (id text, title text, predicate text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
    ('access_changes', 'Access and permission changes',
     $p$(e.action LIKE 'permission.%' OR e.action LIKE 'role.%' OR e.action IN ('audit.view_allowed', 'audit.view_disallowed'))$p$),
    ('privileged_actions', 'Privileged actions: schema changes, server and database settings',
     $p$(e.module = 'ddl' OR e.action LIKE 'setting.%')$p$),
    ('failed_access', 'Failed and denied authentication and access',
     $p$((e.action LIKE 'authentication.%' AND e.status <> 'success') OR e.status = 'denied')$p$),
    ('data_changes', 'Changes to tracked tables',
     $p$(e.module = 'capture' AND e.action IN ('row.insert', 'row.update', 'row.delete', 'table.truncate'))$p$),
    ('audit_settings', 'Changes to audit settings',
     $p$(e.action IN ('capture.track', 'capture.untrack', 'retention.set', 'retention.tier', 'alert.create', 'alert.drop',
                     'alert.enable', 'alert.disable', 'stream.create', 'stream.drop', 'audit.checkpoint',
                     'audit.key_rotated', 'ddl.alter_extension')
       OR (e.action LIKE 'setting.%' AND e.object_id LIKE 'audit\_ext.%'))$p$),
    ('alerts', 'Alert firings', $p$(e.action = 'alert.fired')$p$)
$$;

-- The frameworks: the control each section serves, and what the framework asks of retention
-- (min_keep: how long events must be kept, NULL when the framework sets no number;
-- max_keep_finding: whether keeping forever is itself a finding). The sources are in the
-- README, "Compliance reports".
CREATE FUNCTION audit_internal._report_frameworks()
RETURNS TABLE (framework text, title text, min_keep interval, min_at_hand interval, forever_is_finding boolean,
               retention_rule text, controls jsonb)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
    ('soc2', 'SOC 2 (Trust Services Criteria 2017, revised 2022)', interval '1 year', NULL::interval, false,
     'no fixed period in the criteria; one year covers a Type II observation period (audit_ext''s assumption)',
     '{"integrity": "CC7.2 (monitoring; protection of log information)",
       "access_changes": "CC6.2, CC6.3 (provisioning and removal of access)",
       "privileged_actions": "CC6.1, CC8.1 (privileged access; change management)",
       "failed_access": "CC6.1, CC7.2 (logical access security; anomalies)",
       "data_changes": "CC7.2, PI1.4 (monitoring; processing integrity)",
       "audit_settings": "CC7.2 (monitoring of the monitoring)",
       "alerts": "CC7.3 (evaluation of security events)",
       "retention": "CC7.2 (logs kept for the audit period)"}'::jsonb),
    ('iso27001', 'ISO/IEC 27001:2022, Annex A', NULL, NULL, false,
     'no fixed period: the organization defines it (A.8.15)',
     '{"integrity": "A.8.15 (logging: logs protected against tampering)",
       "access_changes": "A.5.18 (access rights)",
       "privileged_actions": "A.8.2 (privileged access rights)",
       "failed_access": "A.8.5 (secure authentication)",
       "data_changes": "A.8.15 (logging of activities)",
       "audit_settings": "A.8.15 (logging: protection of log facilities)",
       "alerts": "A.8.16 (monitoring activities)",
       "retention": "A.8.15 (retention defined by the organization)"}'::jsonb),
    ('hipaa', 'HIPAA Security Rule (45 CFR Part 164, Subpart C)', interval '6 years', NULL, false,
     'six years (45 CFR 164.316(b)(2)(i), the retention of required documentation)',
     '{"integrity": "164.312(c)(1) (integrity)",
       "access_changes": "164.308(a)(4) (information access management)",
       "privileged_actions": "164.312(b) (audit controls)",
       "failed_access": "164.308(a)(5)(ii)(C) (log-in monitoring)",
       "data_changes": "164.312(b), 164.312(c)(1) (audit controls; integrity)",
       "audit_settings": "164.312(b) (audit controls)",
       "alerts": "164.308(a)(1)(ii)(D) (information system activity review)",
       "retention": "164.316(b)(2)(i) (six years)"}'::jsonb),
    ('pci_dss', 'PCI DSS v4.0, Requirement 10', interval '1 year', interval '3 months', false,
     'at least twelve months, the last three immediately available (10.5.1)',
     '{"integrity": "10.3.2, 10.3.4 (audit logs protected from modification)",
       "access_changes": "10.2.1.5 (changes to identification and authentication credentials and privileges)",
       "privileged_actions": "10.2.1.2 (actions by individuals with administrative access)",
       "failed_access": "10.2.1.4 (invalid logical access attempts)",
       "data_changes": "10.2.1.1 (individual access to cardholder data)",
       "audit_settings": "10.2.1.6 (initialization, stopping or pausing of audit logs)",
       "alerts": "10.4.1, 10.7 (log review; failures of security controls)",
       "retention": "10.5.1 (twelve months, three at hand)"}'::jsonb),
    ('gdpr', 'GDPR (Regulation (EU) 2016/679)', NULL, NULL, true,
     'no minimum; the storage limitation principle (Art. 5(1)(e)) asks that personal data, which audit events hold, is kept no longer than needed',
     '{"integrity": "Art. 5(1)(f), Art. 32(1)(b) (integrity and confidentiality)",
       "access_changes": "Art. 32(1)(b) (confidentiality of processing systems)",
       "privileged_actions": "Art. 32 (security of processing)",
       "failed_access": "Art. 33 (detection of personal data breaches)",
       "data_changes": "Art. 5(2), Art. 30 (accountability; records of processing)",
       "audit_settings": "Art. 5(2) (accountability)",
       "alerts": "Art. 33 (breach detection and notification)",
       "retention": "Art. 5(1)(e) (storage limitation)"}'::jsonb)
$$;

-- audit.report(framework, since, until): the report as one jsonb document (framework, period,
-- generated_at, integrity, sections); since NULL is the start of the log, until NULL now.
-- Recorded as an audit.report event, or, where nothing can be written (a hot standby, a
-- read-only transaction), mirrored to the server log. DateStyle, IntervalStyle and TimeZone are
-- fixed, so that the period's bounds written into each section's query read back the same in
-- any session that reruns it, whatever the caller's settings.
--
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.report(framework text, since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS jsonb
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    fw record;
    s record;
    lo timestamptz := coalesce(since, '-infinity');
    hi timestamptz := coalesce(until, now());
    period text;
    q text;
    n bigint;
    findings jsonb;
    sections jsonb := '[]';
    integrity jsonb;
    first_id bigint;
    last_id bigint;
    line text;
    cp record;
    keep_findings jsonb;
    result jsonb;
BEGIN
    SELECT * INTO fw FROM audit_internal._report_frameworks() f WHERE f.framework = report.framework;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.report(): unknown framework %L', framework),
            HINT = 'Use soc2, iso27001, hipaa, pci_dss or gdpr.';
    END IF;
    IF lo > hi THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.report(): since (%s) is after until (%s)', lo, hi),
            HINT = 'Give the start of the period first, e.g. audit.report(''soc2'', now() - interval ''90 days'', now()).';
    END IF;
    period := format('e.at >= %L AND e.at < %L', lo, hi);

    -- integrity: verify over the events of the period, and the latest checkpoint
    SELECT min(e.id), max(e.id) INTO first_id, last_id FROM audit.events e WHERE e.at >= lo AND e.at < hi;
    IF first_id IS NULL THEN
        integrity := jsonb_build_object('ok', true, 'chains', 0, 'events_checked', 0, 'problems', '[]'::jsonb,
                                        'query', NULL, 'note', 'no events in the period');
    ELSE
        SELECT jsonb_build_object(
                   'ok', coalesce(bool_and(v.ok), true),
                   'chains', count(*) FILTER (WHERE v.chain IS NOT NULL),
                   'events_checked', coalesce(sum(v.events_checked), 0),
                   'problems', coalesce(jsonb_agg(jsonb_build_object('chain', v.chain, 'first_bad_id', v.first_bad_id,
                                                                     'first_bad_seq', v.first_bad_seq, 'reason', v.reason)
                                                  ORDER BY v.chain NULLS FIRST) FILTER (WHERE NOT v.ok), '[]'),
                   'query', format('SELECT * FROM audit.verify(from_id => %s, to_id => %s)', first_id, last_id))
        INTO integrity
        FROM audit_internal._verify_range(first_id, last_id) v;
    END IF;
    SELECT e.at, e.object_id AS public_key INTO cp FROM audit.events e
    WHERE e.action = 'audit.checkpoint' AND e.module = 'audit' AND e.at < hi ORDER BY e.id DESC LIMIT 1;
    integrity := integrity || jsonb_build_object('control', fw.controls ->> 'integrity',
        'latest_checkpoint', CASE WHEN cp.at IS NULL THEN NULL
                                  ELSE jsonb_build_object('at', cp.at, 'public_key', cp.public_key) END);

    FOR s IN SELECT x.id, x.title, regexp_replace(x.predicate, '\s+', ' ', 'g') AS predicate
             FROM audit_internal._report_sections() x LOOP
        q := format('SELECT e.* FROM audit.events e WHERE %s AND %s ORDER BY e.id', s.predicate, period);
        EXECUTE format('SELECT count(*) FROM audit.events e WHERE %s AND %s', s.predicate, period) INTO n;
        -- findings: who did it, and how often (the ten most frequent actors); for tracked tables,
        -- which tables changed, flagging those with masked columns (regulated data such as card
        -- numbers or health records: masking is what they were tracked with)
        IF s.id = 'data_changes' THEN
            EXECUTE format(
                'SELECT coalesce(jsonb_agg(jsonb_build_object(''table'', x.object_name, ''events'', x.n, ''regulated'', x.regulated)
                                           ORDER BY x.n DESC, x.object_name), ''[]'')
                 FROM (SELECT e.object_name, count(*) AS n,
                              EXISTS (SELECT FROM audit.tracked_tables t WHERE t.table_name = e.object_name
                                      AND cardinality(t.mask_columns) > 0) AS regulated
                       FROM audit.events e WHERE %s AND %s GROUP BY e.object_name) x', s.predicate, period)
            INTO findings;
        ELSE
            EXECUTE format(
                'SELECT coalesce(jsonb_agg(jsonb_build_object(''actor'', x.actor, ''events'', x.n) ORDER BY x.n DESC, x.actor), ''[]'')
                 FROM (SELECT e.actor, count(*) AS n FROM audit.events e WHERE %s AND %s
                       GROUP BY e.actor ORDER BY count(*) DESC, e.actor LIMIT 10) x', s.predicate, period)
            INTO findings;
        END IF;
        sections := sections || jsonb_build_array(jsonb_build_object(
            'id', s.id, 'title', s.title, 'control', fw.controls ->> s.id, 'query', q, 'count', n,
            'findings', findings));
    END LOOP;

    -- retention: every policy against the framework's minimum
    SELECT coalesce(jsonb_agg(f ORDER BY f), '[]') INTO keep_findings FROM (
        SELECT format('policy %s keeps events %s, less than the %s %s asks for', r.pattern, r.keep, fw.min_keep, fw.framework) AS f
        FROM audit.retention r WHERE fw.min_keep IS NOT NULL AND r.keep IS NOT NULL AND r.keep < fw.min_keep
        UNION ALL
        SELECT format('policy %s keeps events forever: %s', r.pattern, fw.retention_rule)
        FROM audit.retention r WHERE fw.forever_is_finding AND r.keep IS NULL
        UNION ALL
        SELECT format('policy %s keeps events %s, less than the %s at hand %s asks for', r.pattern, r.keep, fw.min_at_hand,
                      fw.framework)
        FROM audit.retention r WHERE fw.min_at_hand IS NOT NULL AND r.keep IS NOT NULL AND r.keep < fw.min_at_hand) x;
    sections := sections || jsonb_build_array(jsonb_build_object(
        'id', 'retention', 'title', 'Retention against the framework''s minimum', 'control', fw.controls ->> 'retention',
        'query', 'SELECT * FROM audit.retention_policies', 'count', (SELECT count(*) FROM audit.retention),
        'rule', fw.retention_rule, 'minimum', fw.min_keep, 'at_hand', fw.min_at_hand,
        'policies', (SELECT coalesce(jsonb_agg(jsonb_build_object('pattern', p.action_pattern, 'kept_for', p.kept_for)
                                               ORDER BY p.action_pattern), '[]') FROM audit.retention_policies p),
        'findings', keep_findings));

    result := jsonb_build_object(
        'framework', fw.framework, 'title', fw.title,
        'period', jsonb_build_object('since', since, 'until', hi),
        'generated_at', clock_timestamp(), 'generated_by', session_user,
        'integrity', integrity, 'sections', sections);

    line := format('AUDIT: audit.report framework=%s since=%s until=%s by=%s', fw.framework, since, hi, session_user);
    IF pg_catalog.pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on' THEN
        RAISE LOG '% (not recorded: %)', line,
            CASE WHEN pg_catalog.pg_is_in_recovery() THEN 'hot standby' ELSE 'read-only transaction' END;
    ELSE
        -- as for every read (sql/reads.sql): a report of a damaged log is still made, its event
        -- then a server-log line; an event that rolls back leaves its line too
        BEGIN
            PERFORM audit_internal._event('audit.report', 'audit', 'report', fw.framework, fw.title, NULL,
                                 jsonb_build_object('framework', fw.framework, 'since', since, 'until', hi,
                                                    'integrity_ok', integrity -> 'ok',
                                                    'counts', (SELECT jsonb_object_agg(x ->> 'id', x -> 'count')
                                                               FROM jsonb_array_elements(sections) x)));
            PERFORM audit_internal._read_unless_committed(line);
        EXCEPTION WHEN OTHERS THEN
            RAISE LOG '% (not recorded: %)', line, SQLERRM;
            RAISE WARNING 'audit_ext: this report could not be recorded: %', SQLERRM
                USING HINT = 'It is in the server log instead. Run audit.verify() if the log may be damaged.';
        END;
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION audit.report IS 'A compliance report (soc2, iso27001, hipaa, pci_dss, gdpr) for a period, as jsonb; recorded.';

-- `s` with the characters HTML gives meaning escaped (&, <, >, ", '): every value of the log
-- reaches the page through it.
CREATE FUNCTION audit_internal._html(s text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT replace(replace(replace(replace(replace(coalesce(s, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
                           '"', '&quot;'), '''', '&#39;')
$$;

-- audit.report_html(framework, since, until): the report of audit.report() as one standalone
-- HTML page (no external assets, printable to PDF from a browser), with the events of the
-- period per day (per week past 92 days, per month past two years) and status as an inline
-- SVG chart. Recorded as audit.report() records it.
--
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.report_html(framework text, since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS text
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    r jsonb := audit.report(framework, since, until);
    lo timestamptz;
    hi timestamptz := (r -> 'period' ->> 'until')::timestamptz;
    bucket text;
    svg text;
    body text := '';
    sec jsonb;
    f jsonb;
    rows text;
    nb int;
    top bigint;
    w int;
    statuses text[] := ARRAY['success', 'failure', 'denied'];
    colors text[] := ARRAY['#4c9a5f', '#d9822b', '#c23b3b'];
BEGIN
    SELECT coalesce(since, min(e.at), hi) INTO lo FROM audit.events e WHERE e.at < hi;
    bucket := CASE WHEN hi - lo <= interval '92 days' THEN 'day' WHEN hi - lo <= interval '730 days' THEN 'week'
                   ELSE 'month' END;
    -- the chart: one column per bucket, stacked by status
    WITH b AS (
        SELECT date_trunc(bucket, e.at AT TIME ZONE 'UTC') AS t, e.status, count(*) AS n
        FROM audit.events e WHERE e.at >= lo AND e.at < hi GROUP BY 1, 2),
    cols AS (SELECT t, row_number() OVER (ORDER BY t) - 1 AS i, sum(n) AS total FROM b GROUP BY t)
    SELECT count(*), coalesce(max(total), 0) INTO nb, top FROM cols;
    w := greatest(nb * 24 + 60, 340);  -- (room for the legend)
    WITH b AS (
        SELECT date_trunc(bucket, e.at AT TIME ZONE 'UTC') AS t, e.status, count(*) AS n
        FROM audit.events e WHERE e.at >= lo AND e.at < hi GROUP BY 1, 2),
    cols AS (SELECT t, row_number() OVER (ORDER BY t) - 1 AS i FROM (SELECT DISTINCT t FROM b) d),
    stacked AS (
        SELECT b.t, c.i, b.status, b.n,
               sum(b.n) OVER (PARTITION BY b.t ORDER BY array_position(statuses, b.status) NULLS LAST, b.status) - b.n AS below
        FROM b JOIN cols c USING (t))
    SELECT string_agg(format(
               '<rect class="bar" data-status="%s" x="%s" y="%s" width="18" height="%s" fill="%s"><title>%s %s: %s</title></rect>',
               audit_internal._html(s.status), 50 + s.i * 24,
               200 - round(180.0 * (s.below + s.n) / greatest(top, 1)), greatest(round(180.0 * s.n / greatest(top, 1)), 1),
               coalesce(colors[array_position(statuses, s.status)], '#777777'),
               to_char(s.t, CASE bucket WHEN 'month' THEN 'YYYY-MM' ELSE 'YYYY-MM-DD' END), audit_internal._html(s.status), s.n),
               '' ORDER BY s.i, s.status)
           || coalesce((SELECT string_agg(format('<text x="%s" y="215" font-size="9" transform="rotate(45 %s 215)">%s</text>',
                                                 50 + c.i * 24, 50 + c.i * 24,
                                                 to_char(c.t, CASE bucket WHEN 'month' THEN 'YYYY-MM' ELSE 'MM-DD' END)),
                                          '' ORDER BY c.i) FROM cols c), '')
    INTO svg FROM stacked s;
    svg := format('<svg id="events-per-%s" xmlns="http://www.w3.org/2000/svg" width="%s" height="250" role="img" '
                  'aria-label="events per %s and status"><line x1="45" y1="200" x2="%s" y2="200" stroke="#333"/>'
                  '<text x="0" y="25" font-size="10">%s</text><text x="0" y="200" font-size="10">0</text>%s'
                  '<g font-size="10">%s</g></svg>',
                  bucket, w, bucket, w, top, coalesce(svg, ''),
                  (SELECT string_agg(format('<rect x="%s" y="235" width="10" height="10" fill="%s"/><text x="%s" y="244">%s</text>',
                                            50 + (k - 1) * 90, colors[k], 64 + (k - 1) * 90, statuses[k]), '')
                   FROM generate_subscripts(statuses, 1) k));

    FOR sec IN SELECT x FROM jsonb_array_elements(r -> 'sections') x LOOP
        rows := '';
        FOR f IN SELECT x FROM jsonb_array_elements(coalesce(sec -> 'findings', '[]')) x LOOP
            rows := rows || '<li>' || audit_internal._html(CASE jsonb_typeof(f)
                WHEN 'string' THEN f #>> '{}'
                WHEN 'object' THEN (SELECT string_agg(k || ': ' || (f ->> k), ', ' ORDER BY k) FROM jsonb_object_keys(f) k)
                ELSE f::text END) || '</li>';
        END LOOP;
        body := body || format(
            '<section id="section-%s"><h3>%s</h3><p class="control">Control: %s</p><p class="count">%s event(s)</p>'
            '%s<details><summary>Query</summary><pre>%s</pre></details></section>',
            audit_internal._html(sec ->> 'id'), audit_internal._html(sec ->> 'title'), audit_internal._html(sec ->> 'control'), sec ->> 'count',
            CASE WHEN rows = '' THEN '<p class="findings">No findings.</p>' ELSE '<ul class="findings">' || rows || '</ul>' END,
            audit_internal._html(sec ->> 'query'));
    END LOOP;

    RETURN format(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>%s: audit report</title>'
        '<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}h1{font-size:1.5em}'
        '.ok{color:#2a7a3a}.bad{color:#b22}pre{white-space:pre-wrap;background:#f4f4f4;padding:.5em}'
        'section{border-top:1px solid #ccc;margin-top:1em}@media print{details{display:block}}</style></head><body>'
        '<h1>%s</h1><p>Period: %s to %s (UTC). Generated %s by %s with audit_ext.</p>'
        '<h2>Integrity</h2><p id="integrity" class="%s">%s: %s chain(s), %s event(s) checked. Control: %s</p>%s'
        '<h2>Events per %s</h2>%s<h2>Sections</h2>%s</body></html>',
        audit_internal._html(r ->> 'title'), audit_internal._html(r ->> 'title'),
        coalesce(to_char(lo AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), 'the start'), to_char(hi AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
        to_char((r ->> 'generated_at')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), audit_internal._html(r ->> 'generated_by'),
        CASE WHEN (r -> 'integrity' ->> 'ok')::boolean THEN 'ok' ELSE 'bad' END,
        CASE WHEN (r -> 'integrity' ->> 'ok')::boolean THEN 'Intact' ELSE 'NOT INTACT' END,
        r -> 'integrity' ->> 'chains', r -> 'integrity' ->> 'events_checked', audit_internal._html(r -> 'integrity' ->> 'control'),
        coalesce((SELECT '<ul class="problems">' || string_agg('<li>' || audit_internal._html(coalesce('chain ' || (p ->> 'chain'), 'guards')
                                                                  || ': ' || coalesce(p ->> 'reason', '')) || '</li>', '') || '</ul>'
                  FROM jsonb_array_elements(r -> 'integrity' -> 'problems') p), ''),
        bucket, svg, body);
END
$$;
COMMENT ON FUNCTION audit.report_html IS 'audit.report() as one standalone HTML page with an inline SVG chart; recorded.';

REVOKE ALL ON FUNCTION audit_internal._report_sections(), audit_internal._report_frameworks(), audit.report(text, timestamptz, timestamptz),
                       audit_internal._html(text), audit.report_html(text, timestamptz, timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.report(text, timestamptz, timestamptz), audit.report_html(text, timestamptz, timestamptz)
    TO audit_reader;

-- The audit of the audit (sql/reads.sql, src/reads.rs): every call of search, export, verify,
-- row_history and explain_query is recorded, so they are volatile now.
-- Records one read of the log: module audit, the action of the reading function (audit.search,
-- audit.export, audit.verify, audit.row_history, audit.explain_query, audit.summary) or audit.read (a
-- statement that read audit.events, audit_ext.audit_reads), the actor and context as for any
-- event, in `new` the arguments and the rows returned. Arguments over 8 kB (or a quarter of
-- audit_ext.max_event_bytes) are kept as their first 8 kB of text, so that a read never fails
-- on max_event_bytes.
-- Where nothing can be written (a hot standby, a read-only transaction), the read becomes one
-- LOG line of the server log instead: AUDIT: action=... actor=... rows=... arguments=...
-- (not recorded: ...), the values in JSON quoting; so does a read event that rolls back.
--
-- Elevated entry point (SECURITY DEFINER): readers and viewers may not insert into the log.
-- It follows the rule of src/pg/elevate.rs, no code a caller controls runs in it: the path is
-- pinned, every name qualified, the arguments are values (jsonb) that it only stores.
CREATE FUNCTION audit_internal._read_event(action text, arguments jsonb, row_count bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    args jsonb;
    line text;
BEGIN
    IF action IS NULL OR action NOT IN ('audit.search', 'audit.export', 'audit.verify', 'audit.row_history',
                                         'audit.explain_query', 'audit.summary', 'audit.read') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit_internal._read_event(): %s is not a read of the log', coalesce(quote_literal(action), 'NULL')),
            HINT = 'audit_ext records reads itself; record an application''s own events with audit.record().';
    END IF;
    args := audit_internal._read_arguments(coalesce(arguments, 'null'));
    line := format('AUDIT: action=%s actor=%s rows=%s arguments=%s', action,
                   to_jsonb(coalesce(nullif(pg_catalog.current_setting('audit_ext.context_actor', true), ''), session_user::text)),
                   coalesce(row_count::text, 'NULL'), coalesce(args::text, 'null'));
    IF pg_catalog.pg_is_in_recovery() OR pg_catalog.current_setting('transaction_read_only') = 'on' THEN
        RAISE LOG '% (not recorded: %)', line,
            CASE WHEN pg_catalog.pg_is_in_recovery() THEN 'hot standby' ELSE 'read-only transaction' END;
    ELSE
        -- A read must not fail because its event cannot be written: verify, which finds a
        -- damaged log, would otherwise fail on it (a damaged chain head refuses new events).
        -- The event is then a server-log line, and the caller gets a WARNING.
        BEGIN
            PERFORM audit_internal._event(action, 'audit', CASE WHEN action = 'audit.read' THEN 'statement' ELSE 'function' END,
                                          CASE WHEN action = 'audit.read' THEN NULL ELSE action END, NULL, NULL,
                                          jsonb_build_object('arguments', args, 'rows', row_count));
        EXCEPTION WHEN OTHERS THEN
            RAISE LOG '% (not recorded: %)', line, SQLERRM;
            RAISE WARNING 'audit_ext: this read of the log could not be recorded: %', SQLERRM
                USING HINT = 'It is in the server log instead. Run audit.verify() if the log may be damaged.';
            RETURN;
        END;
        -- the line reaches the server log if this event rolls back (src/reads.rs)
        PERFORM audit_internal._read_unless_committed(line);
    END IF;
END
$$;

CREATE FUNCTION audit_internal."_read_unless_committed"(
	"line" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'read_unless_committed_wrapper';
CREATE FUNCTION audit_internal."_read_arguments"(
	"arguments" jsonb /* JsonB */
) RETURNS jsonb /* JsonB */
STRICT STABLE PARALLEL SAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'read_arguments_wrapper';
CREATE FUNCTION audit_internal."_verify_range"(
	"from_id" bigint, /* Option < i64 > */
	"to_id" bigint /* Option < i64 > */
) RETURNS TABLE (
	"chain" INT,  /* Option < i32 > */
	"events_checked" bigint,  /* i64 */
	"ok" bool,  /* bool */
	"first_bad_id" bigint,  /* Option < i64 > */
	"first_bad_seq" bigint,  /* Option < i64 > */
	"reason" TEXT  /* Option < String > */
)
VOLATILE PARALLEL UNSAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'verify_range_wrapper';
-- audit.verify(since => ...), incremental verification: a new argument, so the function is
-- made again, with the grants of sql/finalize.sql.
DROP FUNCTION audit.verify(bigint, bigint, jsonb);
CREATE  FUNCTION audit."verify"(
	"from_id" bigint DEFAULT NULL, /* Option < i64 > */
	"to_id" bigint DEFAULT NULL, /* Option < i64 > */
	"heads" jsonb DEFAULT NULL, /* Option < JsonB > */
	"since" jsonb DEFAULT NULL /* Option < JsonB > */
) RETURNS TABLE (
	"chain" INT,  /* Option < i32 > */
	"events_checked" bigint,  /* i64 */
	"ok" bool,  /* bool */
	"first_bad_id" bigint,  /* Option < i64 > */
	"first_bad_seq" bigint,  /* Option < i64 > */
	"reason" TEXT  /* Option < String > */
)
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'verify_with_since_wrapper';
REVOKE ALL ON FUNCTION audit.verify(bigint, bigint, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.verify(bigint, bigint, jsonb, jsonb) TO audit_reader, audit_viewer;
ALTER FUNCTION audit.explain_query(text) VOLATILE PARALLEL UNSAFE SET search_path TO pg_catalog, pg_temp;

-- Events matching a query, newest first; page with after_id (the last id of a page). Each call
-- is recorded as an audit.search event with its arguments and the rows returned (sql/reads.sql).
CREATE OR REPLACE FUNCTION audit.search(query text, limit_rows integer DEFAULT 100, after_id bigint DEFAULT NULL)
RETURNS SETOF audit.events
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text[];
    r audit.events;
    n integer := 0;
    last_id bigint;
BEGIN
    IF query IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'audit.search(): query is NULL',
            HINT = 'Pass a query such as ''action:authentication.login AND status:failure''.';
    END IF;
    IF limit_rows IS NULL OR limit_rows < 1 OR limit_rows > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.search(): limit_rows must be between 1 and 100000, not %s', coalesce(limit_rows::text, 'NULL')),
            HINT = 'Page through larger results with after_id.';
    END IF;
    t := audit_internal._translate(query);
    -- t[1] is built by the translator from column names, operators and $1[n] only; the
    -- values are t[2:], passed as the parameter array $1. One row more than the limit tells
    -- whether the limit cut the result, which a NOTICE then says (the default of 100 would
    -- otherwise hide the rest silently).
    FOR r IN EXECUTE 'SELECT e.* FROM audit.events e WHERE (' || t[1] || ')'
                     ' AND ($2::bigint IS NULL OR e.id < $2) ORDER BY e.id DESC LIMIT $3'
        USING t[2:], after_id, limit_rows + 1
    LOOP
        n := n + 1;
        IF n > limit_rows THEN
            RAISE NOTICE 'audit.search(): showing the first % matching events (limit_rows); more match', limit_rows
                USING HINT = format('Fetch the next page with after_id => %s, or pass a larger limit_rows.', last_id);
            EXIT;
        END IF;
        last_id := r.id;
        RETURN NEXT r;
    END LOOP;
    -- the rows reach the caller when this returns (a PL/pgSQL set is kept until then): the
    -- read is recorded before anything of it is seen
    PERFORM audit_internal._read_event('audit.search',
                              jsonb_build_object('query', query, 'limit_rows', limit_rows, 'after_id', after_id),
                              least(n, limit_rows));
END
$$;
COMMENT ON FUNCTION audit.search IS 'Events matching a query (docs/query-language.md), newest first.';

-- The versions of one row, oldest first (what audit.row_history returns, unrecorded).
-- Served by the (object_id, at) index.
CREATE FUNCTION audit_internal._row_history(tbl regclass, pk text)
RETURNS TABLE (id bigint, at timestamptz, action text, actor text, txid bigint,
               old jsonb, new jsonb, diff jsonb)
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.id, e.at, e.action, e.actor, e.txid, e.old, e.new, audit.diff(e.old, e.new)
    FROM audit.events e
    WHERE e.object_id = pk
      AND e.object_name = (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl)
      AND e.object_type = 'table' AND e.action LIKE 'row.%' AND e.module = 'capture'
    ORDER BY e.at, e.id
$$;

-- A key given as jsonb (a scalar, an array in key order, or an object {"column": value, ...})
-- as the object_id text of captured events (one key column: its value; several: a JSON array).
CREATE FUNCTION audit_internal._row_key(tbl regclass, pk jsonb) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE jsonb_typeof(pk)
            WHEN 'array' THEN CASE WHEN jsonb_array_length(pk) = 1 THEN pk ->> 0 ELSE pk::text END
            WHEN 'object' THEN (
                SELECT CASE WHEN cardinality(k.cols) = 1 THEN pk ->> k.cols[1]
                            ELSE (SELECT jsonb_agg(pk -> c ORDER BY o) FROM unnest(k.cols) WITH ORDINALITY u(c, o))::text END
                FROM (SELECT audit_internal._key_columns(tbl) AS cols) k)
            ELSE pk #>> '{}' END
$$;

-- The versions of one row, oldest first. pk: the object_id text (one key column: its value;
-- several: a JSON array of the values), or jsonb (audit_internal._row_key). Each call is recorded as an
-- audit.row_history event with the table, the key and the rows returned (sql/reads.sql).
CREATE OR REPLACE FUNCTION audit.row_history(tbl regclass, pk text)
RETURNS TABLE (id bigint, at timestamptz, action text, actor text, txid bigint,
               old jsonb, new jsonb, diff jsonb)
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    n bigint;
BEGIN
    RETURN QUERY SELECT * FROM audit_internal._row_history(tbl, pk);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM audit_internal._read_event('audit.row_history', jsonb_build_object('table', tbl::text, 'pk', pk), n);
END
$$;

CREATE OR REPLACE FUNCTION audit.row_history(tbl regclass, pk jsonb)
RETURNS TABLE (id bigint, at timestamptz, action text, actor text, txid bigint,
               old jsonb, new jsonb, diff jsonb)
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    n bigint;
BEGIN
    RETURN QUERY SELECT * FROM audit_internal._row_history(tbl, audit_internal._row_key(tbl, pk));
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM audit_internal._read_event('audit.row_history', jsonb_build_object('table', tbl::text, 'pk', pk), n);
END
$$;
COMMENT ON FUNCTION audit.row_history(regclass, text) IS 'The captured versions of one row, oldest first.';
COMMENT ON FUNCTION audit.row_history(regclass, jsonb) IS 'The captured versions of one row, oldest first.';

REVOKE ALL ON FUNCTION audit_internal._read_event(text, jsonb, bigint), audit_internal._verify_range(bigint, bigint),
                       audit_internal._read_unless_committed(text), audit_internal._read_arguments(jsonb),
                       audit_internal._row_history(regclass, text), audit_internal._row_key(regclass, jsonb)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_internal._read_event(text, jsonb, bigint) TO audit_reader, audit_viewer;
GRANT EXECUTE ON FUNCTION audit_internal._row_history(regclass, text), audit_internal._row_key(regclass, jsonb) TO audit_reader, audit_viewer;

-- The functions of 0.1.0 whose bodies name the helpers that moved (the others are replaced
-- above), as sql/ has them now.
-- (sql/retention/tiers.sql)
CREATE OR REPLACE FUNCTION audit_internal._apply_tiers() RETURNS TABLE (partition text, tablespace name)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '2s'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    p record;
    i record;
BEGIN
    PERFORM audit_internal._begin_maintenance();
    FOR p IN
        SELECT pt.name, c.oid AS rel, tgt.tablespace AS target
        FROM audit.partitions pt
        JOIN pg_class c ON c.relname = pt.name AND c.relnamespace = 'audit'::regnamespace
        CROSS JOIN LATERAL (SELECT t.tablespace FROM audit.tiers t
                            WHERE pt.to_at <= now() - t.older_than
                            ORDER BY t.older_than DESC LIMIT 1) tgt
        WHERE pt.dropped_at IS NULL
          AND tgt.tablespace IS DISTINCT FROM (SELECT s.spcname FROM pg_tablespace s WHERE s.oid = c.reltablespace)
        ORDER BY pt.from_at
    LOOP
        EXECUTE format('ALTER TABLE audit.%I SET TABLESPACE %I', p.name, p.target);
        FOR i IN SELECT x.indexrelid::regclass AS idx FROM pg_index x WHERE x.indrelid = p.rel LOOP
            EXECUTE format('ALTER INDEX %s SET TABLESPACE %I', i.idx, p.target);
        END LOOP;
        partition := p.name;
        tablespace := p.target;
        RETURN NEXT;
    END LOOP;
END
$$;

-- (sql/capture/rows.sql)
CREATE OR REPLACE FUNCTION audit_internal._capture_problem(tbl regclass, whole boolean DEFAULT true) RETURNS text
    LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT format('the capture trigger for %s on %s is %s', op, m.relid,
                       CASE WHEN tg.oid IS NULL THEN 'missing'
                            WHEN tg.tgfoid <> 'audit_internal.capture_rows()'::regprocedure THEN 'not audit_internal.capture_rows()'
                            WHEN tg.tgenabled = 'D' THEN 'disabled'
                            ELSE 'not enabled ALWAYS' END)
         FROM audit.tracked t CROSS JOIN unnest(t.operations) op
         CROSS JOIN audit_internal._tree(t.tbl) m
         LEFT JOIN pg_trigger tg ON tg.tgrelid = m.relid AND tg.tgname = 'audit_ext_capture_' || op
         WHERE t.tbl = audit_internal._root($1) AND ($2 OR m.relid = $1)
           AND (tg.oid IS NULL OR tg.tgenabled <> 'A' OR tg.tgfoid <> 'audit_internal.capture_rows()'::regprocedure)
         ORDER BY op, m.relid LIMIT 1),
        (SELECT format('column %I is %s but no longer exists', col, kind)
         FROM audit.tracked t,
              LATERAL (SELECT c, 'excluded' FROM unnest(t.exclude_columns) c
                       UNION ALL SELECT c, 'masked' FROM unnest(t.mask_columns) c) m(col, kind)
         WHERE t.tbl = audit_internal._root($1)
           AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = $1 AND a.attname = m.col
                           AND a.attnum > 0 AND NOT a.attisdropped)
         ORDER BY kind, col LIMIT 1),
        (SELECT format('masked column %I is a key column: object_id would hold it in clear', c)
         FROM audit.tracked t CROSS JOIN unnest(t.mask_columns) c
         WHERE t.tbl = audit_internal._root($1) AND c = ANY (coalesce(audit_internal._key_columns(t.tbl), '{}'))
         ORDER BY c LIMIT 1))
$$;

-- (sql/capture/rows.sql)
CREATE OR REPLACE FUNCTION audit_internal._create_capture_triggers(rel regclass, t audit.tracked) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op text;
    r record;
    made text[] := '{}';
BEGIN
    SELECT n.nspname, c.relname INTO r FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = rel;
    FOREACH op IN ARRAY t.operations LOOP
        -- a trigger of the reserved name that is not ours (made on a table before it became a
        -- partition of a tracked table, say) is replaced, never taken for ours
        IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = rel AND tgname = 'audit_ext_capture_' || op
                   AND tgfoid <> 'audit_internal.capture_rows()'::regprocedure) THEN
            EXECUTE format('DROP TRIGGER %I ON %I.%I', 'audit_ext_capture_' || op, r.nspname, r.relname);
        END IF;
        CONTINUE WHEN EXISTS (SELECT FROM pg_trigger WHERE tgrelid = rel AND tgname = 'audit_ext_capture_' || op);
        made := made || op;
        EXECUTE format('CREATE TRIGGER %I AFTER %s ON %I.%I %s FOR EACH STATEMENT '
                       'EXECUTE FUNCTION audit_internal.capture_rows(%L, %L, %L)',
                       'audit_ext_capture_' || op, upper(op), r.nspname, r.relname,
                       CASE op WHEN 'insert' THEN 'REFERENCING NEW TABLE AS audit_new'
                               WHEN 'update' THEN 'REFERENCING OLD TABLE AS audit_old NEW TABLE AS audit_new'
                               WHEN 'delete' THEN 'REFERENCING OLD TABLE AS audit_old'
                               ELSE '' END,
                       to_jsonb(t.exclude_columns)::text, to_jsonb(t.mask_columns)::text,
                       t.skip_unchanged::text);
    END LOOP;
    -- ALWAYS: a session with session_replication_role = replica must not write unrecorded
    -- (one ALTER for all those made here, so that the guard sees the triggers complete; never
    -- for existing ones: the ALTER's own event trigger comes back here through
    -- audit_internal._sync_capture(), and a trigger someone disabled is the guard's to refuse)
    IF cardinality(made) > 0 THEN
        EXECUTE format('ALTER TABLE %I.%I %s', r.nspname, r.relname,
                       (SELECT string_agg(format('ENABLE ALWAYS TRIGGER %I', 'audit_ext_capture_' || o.o), ', ')
                        FROM unnest(made) o(o)));
    END IF;
END
$$;

-- (sql/retention/partitions.sql)
CREATE OR REPLACE FUNCTION audit_internal._default_ahead() RETURNS interval
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE audit_internal._partition_period() WHEN 'month' THEN interval '3 months'
                                          WHEN 'week' THEN interval '4 weeks'
                                          ELSE interval '7 days' END
$$;

-- (sql/capture/rows.sql)
CREATE OR REPLACE FUNCTION audit_internal._drop_capture_triggers(tbl regclass) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tg.tgname, n.nspname, c.relname FROM pg_trigger tg
             JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE tg.tgrelid IN (SELECT relid FROM audit_internal._tree(tbl))
               AND tg.tgname LIKE 'audit\_ext\_capture\_%' LOOP
        EXECUTE format('DROP TRIGGER %I ON %I.%I', t.tgname, t.nspname, t.relname);
    END LOOP;
END
$$;

-- (sql/retention/partitions.sql)
CREATE OR REPLACE FUNCTION audit_internal._free_range(cls integer, t timestamptz, period text, OUT lo timestamptz, OUT hi timestamptz)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest(audit_internal._period_start(t, period),
                    (SELECT max(p.to_at) FROM audit.partitions p
                     WHERE p.class = cls AND p.dropped_at IS NULL AND p.to_at <= t)),
           least(audit_internal._period_start(t, period) + ('1 ' || period)::interval,
                 (SELECT min(p.from_at) FROM audit.partitions p
                  WHERE p.class = cls AND p.dropped_at IS NULL AND p.from_at > t))
    WHERE NOT EXISTS (SELECT FROM audit.partitions p
                      WHERE p.class = cls AND p.dropped_at IS NULL AND p.from_at <= t AND t < p.to_at)
$$;

-- (sql/guards.sql)
CREATE OR REPLACE FUNCTION audit_internal._guard_command(cmd_tag text, classid oid, objid oid, in_ext boolean) RETURNS void
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

-- (sql/capture/rows.sql)
CREATE OR REPLACE FUNCTION audit_internal._sync_capture() RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t audit.tracked;
    m record;
BEGIN
    FOR t IN SELECT * FROM audit.tracked LOOP
        FOR m IN SELECT p.relid FROM audit_internal._tree(t.tbl) p WHERE p.relid <> t.tbl LOOP
            PERFORM audit_internal._create_capture_triggers(m.relid, t);
        END LOOP;
    END LOOP;
    FOR m IN SELECT DISTINCT tg.tgrelid FROM pg_trigger tg
             WHERE tg.tgname LIKE 'audit\_ext\_capture\_%'
               AND NOT EXISTS (SELECT FROM audit.tracked tr WHERE tr.tbl = audit_internal._root(tg.tgrelid)) LOOP
        PERFORM audit_internal._drop_capture_triggers(m.tgrelid);
    END LOOP;
END
$$;

-- (sql/capture/rows.sql)
CREATE OR REPLACE FUNCTION audit_internal._track(
    tbl             regclass,
    exclude_columns text[],
    mask_columns    text[],
    operations      text[],
    skip_unchanged  boolean
) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    qname text;
    prev audit.tracked;
    cur audit.tracked;
    m record;
    ops text[];
    bad text;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'audit.track(): tbl is NULL',
            HINT = 'Name the table, e.g. audit.track(''public.orders'').';
    END IF;
    IF array_position(exclude_columns, NULL) IS NOT NULL OR array_position(mask_columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'audit.track(): a column name is NULL',
            HINT = 'Name every column exactly, e.g. exclude_columns => ARRAY[''password_hash''].';
    END IF;
    exclude_columns := coalesce(exclude_columns, '{}');
    mask_columns := coalesce(mask_columns, '{}');
    skip_unchanged := coalesce(skip_unchanged, true);
    SELECT c.relkind, c.relispartition, c.relpersistence, n.nspname, c.relname INTO r
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    qname := format('%I.%I', r.nspname, r.relname);
    IF r.nspname = 'audit' THEN
        RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = format('audit.track(): %s belongs to audit_ext', qname),
            HINT = 'audit_ext''s own tables are protected and need no capture.';
    ELSIF r.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = '42809', MESSAGE = format('audit.track(): %s is not a table', qname),
            HINT = 'Track tables or partitioned tables; views, foreign tables and materialized views have no row changes to capture.';
    ELSIF r.relispartition THEN
        RAISE EXCEPTION USING ERRCODE = '42809',
            MESSAGE = format('audit.track(): %s is a partition of %s', qname, audit_internal._root(tbl)),
            HINT = 'Track the partitioned table: changes to every partition are captured there.';
    ELSIF r.relpersistence = 't' THEN
        RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = format('audit.track(): %I is a temporary table', r.relname),
            HINT = 'Temporary tables are private to one session and cannot be tracked.';
    END IF;
    SELECT array_agg(DISTINCT o ORDER BY o) INTO ops FROM unnest(operations) o;
    SELECT string_agg(coalesce(quote_literal(o), 'NULL'), ', ') INTO bad
    FROM unnest(ops) o WHERE o IS NULL OR o NOT IN ('insert', 'update', 'delete', 'truncate');
    IF bad IS NOT NULL OR coalesce(cardinality(ops), 0) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.track(): invalid operations: %s', coalesce(bad, 'none given')),
            HINT = 'Pass a non-empty subset of {insert,update,delete,truncate}.';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad
    FROM unnest(exclude_columns || mask_columns) c
    WHERE c IS NULL OR NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = c
                                   AND a.attnum > 0 AND NOT a.attisdropped);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42703', MESSAGE = format('audit.track(): %s has no column %s', qname, bad),
            HINT = 'Name columns exactly as they are spelled in the table (case matters).';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad FROM unnest(mask_columns) c WHERE c = ANY (exclude_columns);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('audit.track(): column %s is both excluded and masked', bad),
            HINT = 'Exclude a column to leave it out, or mask it to keep a keyed hash of it; not both.';
    END IF;
    SELECT string_agg(quote_ident(c), ', ') INTO bad FROM unnest(mask_columns) c WHERE c = ANY (audit_internal._key_columns(tbl));
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.track(): cannot mask %s: it identifies the rows (object_id) of %s', bad, qname),
            HINT = 'object_id would reveal it. Leave key columns unmasked.';
    END IF;

    -- Out of the tracked list first: the drop guard (audit_internal.capture_ddl_drop) then lets the
    -- old triggers go.
    DELETE FROM audit.tracked t WHERE t.tbl = _track.tbl RETURNING * INTO prev;
    PERFORM audit_internal._drop_capture_triggers(tbl);
    INSERT INTO audit.tracked (tbl, exclude_columns, mask_columns, operations, skip_unchanged)
    VALUES (tbl, exclude_columns, mask_columns, ops, skip_unchanged) RETURNING * INTO cur;
    FOR m IN SELECT p.relid FROM audit_internal._tree(tbl) p LOOP
        PERFORM audit_internal._create_capture_triggers(m.relid, cur);
    END LOOP;
    PERFORM audit_internal._event('capture.track', 'capture', 'table', NULL, qname,
            CASE WHEN prev.tbl IS NOT NULL THEN jsonb_build_object(
                'operations', prev.operations, 'exclude_columns', prev.exclude_columns,
                'mask_columns', prev.mask_columns, 'skip_unchanged', prev.skip_unchanged) END,
            jsonb_build_object('operations', ops, 'exclude_columns', exclude_columns,
                               'mask_columns', mask_columns, 'skip_unchanged', skip_unchanged));
END
$$;

-- (sql/capture/ddl.sql)
CREATE OR REPLACE FUNCTION audit_internal.capture_ddl_command() RETURNS event_trigger
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

-- (sql/capture/ddl.sql)
CREATE OR REPLACE FUNCTION audit_internal.capture_ddl_drop() RETURNS event_trigger
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

-- (sql/diff.sql)
CREATE OR REPLACE FUNCTION audit.diff_rows(old jsonb, new jsonb)
RETURNS TABLE (path text, change text, old_value jsonb, new_value jsonb)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT * FROM audit_internal._diff_rows(audit_internal._depth_checked(old), audit_internal._depth_checked(new)) $$;

-- (sql/alerts.sql)
CREATE OR REPLACE FUNCTION audit.drop_alert(name text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r audit.alert_rules;
BEGIN
    DELETE FROM audit.alert_rules a WHERE a.name = drop_alert.name RETURNING * INTO r;
    IF r.name IS NULL THEN
        RAISE NOTICE 'audit.drop_alert(): no alert %', name;
        RETURN false;
    END IF;
    PERFORM audit_internal._rules_changed();
    PERFORM audit_internal._event('alert.drop', 'alert', 'alert', name, name, to_jsonb(r) - 'created_at');
    RETURN true;
END
$$;

-- (sql/alerts.sql)
CREATE OR REPLACE FUNCTION audit.enable_alert(name text, "on" boolean) RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE audit.alert_rules a SET enabled = "on" WHERE a.name = enable_alert.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('alert %L does not exist', name),
            HINT = 'See audit.alerts for the existing alerts.';
    END IF;
    PERFORM audit_internal._rules_changed();
    PERFORM audit_internal._event(CASE WHEN "on" THEN 'alert.enable' ELSE 'alert.disable' END, 'alert', 'alert',
                         name, name, NULL, jsonb_build_object('enabled', "on"));
END
$$;

-- (sql/retention/partitions.sql)
CREATE OR REPLACE FUNCTION audit.ensure_partitions(ahead interval DEFAULT interval '3 months')
RETURNS TABLE (partition text, retention_class integer, from_at timestamptz, to_at timestamptz)
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '2s'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    step interval := ('1 ' || audit_internal._partition_period())::interval;
    created text[];
BEGIN
    IF ahead < interval '0' OR now() + ahead > now() + 400 * step THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('ahead %s is out of range: it must be between 0 and 400 partition periods', ahead),
            HINT = 'Partitions are created as they are needed; pre-create a few periods, e.g. interval ''3 months''.';
    END IF;
    created := ARRAY(SELECT audit_internal._ensure_partitions(ahead, settle => true));
    PERFORM audit_internal._end_maintenance();
    -- a statement of its own: its snapshot sees the partitions just registered
    RETURN QUERY
        SELECT p.name, p.class, p.from_at, p.to_at FROM audit.partitions p
        WHERE p.name = ANY (created) ORDER BY p.class, p.from_at;
END
$$;

-- (sql/retention/policies.sql)
CREATE OR REPLACE FUNCTION audit.set_retention(keep interval, action_pattern text DEFAULT '*')
RETURNS TABLE (pattern text, kept_for interval, retention_class integer)
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '2s'
AS $$
DECLARE
    k interval := CASE WHEN keep IS NULL OR keep = interval '0' THEN NULL ELSE keep END;
    prev audit.retention;
    cls integer;
BEGIN
    IF action_pattern IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'action_pattern must not be NULL',
            HINT = 'Use ''*'' for the default policy, or a pattern such as ''authentication.*''.';
    END IF;
    PERFORM audit_internal._check_pattern(action_pattern);
    PERFORM audit_internal._begin_maintenance();
    IF k < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('keep %s is negative', keep),
            HINT = 'Give how long events are kept, e.g. interval ''90 days''; ''0'' or NULL keeps them forever.';
    END IF;
    SELECT * INTO prev FROM audit.retention r WHERE r.pattern = action_pattern FOR UPDATE;
    IF FOUND THEN
        cls := prev.class;
        UPDATE audit.retention r SET keep = k, set_at = now(), set_by = session_user WHERE r.class = cls;
    ELSE
        -- one writer at a time numbers the classes
        LOCK TABLE audit.retention IN SHARE ROW EXCLUSIVE MODE;
        SELECT coalesce(max(r.class), 0) + 1 INTO cls FROM audit.retention r;
        INSERT INTO audit.retention (class, pattern, keep) VALUES (cls, action_pattern, k);
        -- The class's partitions, committed with the class itself: no writer can file an
        -- event under it before they exist, so none lands in the default partition.
        PERFORM audit_internal._ensure_partitions(audit_internal._default_ahead());
    END IF;
    PERFORM audit_internal._retention_changed();
    PERFORM audit_internal._event('retention.set', 'retention', 'retention_policy', action_pattern, action_pattern,
            CASE WHEN prev.class IS NOT NULL THEN jsonb_build_object('keep', coalesce(prev.keep::text, 'forever')) END,
            jsonb_build_object('keep', coalesce(k::text, 'forever'), 'retention_class', cls));
    PERFORM audit_internal._end_maintenance();
    RETURN QUERY SELECT action_pattern, k, cls;
END
$$;

-- (sql/retention/tiers.sql)
CREATE OR REPLACE FUNCTION audit.set_tier(older_than interval, tablespace name)
RETURNS TABLE (partition text, moved_to name)
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '2s'
AS $$
DECLARE
    prev audit.tiers;
    moved text[];
    spaces name[];
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('older_than %s is not a positive interval', coalesce(older_than::text, 'NULL')),
            HINT = 'Give the age from which partitions move, e.g. interval ''90 days''.';
    END IF;
    IF tablespace IS NOT NULL AND NOT EXISTS (SELECT FROM pg_tablespace s WHERE s.spcname = tablespace) THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('tablespace %I does not exist', tablespace),
            HINT = 'Create it first (CREATE TABLESPACE ... LOCATION ...), or pass NULL to remove this tier.';
    END IF;
    PERFORM audit_internal._begin_maintenance();
    SELECT * INTO prev FROM audit.tiers t WHERE t.older_than = set_tier.older_than;
    IF tablespace IS NULL THEN
        DELETE FROM audit.tiers t WHERE t.older_than = set_tier.older_than;
    ELSE
        INSERT INTO audit.tiers AS t (older_than, tablespace) VALUES (set_tier.older_than, set_tier.tablespace)
        ON CONFLICT ON CONSTRAINT tiers_pkey DO UPDATE SET tablespace = excluded.tablespace, set_at = now();
    END IF;
    -- the moves (ACCESS EXCLUSIVE on each partition moved) before the event; kept in a
    -- variable, never a temporary table (a session's own temp table of that name, with a
    -- trigger, would run as the definer)
    SELECT array_agg(m.partition), array_agg(m.tablespace) INTO moved, spaces FROM audit_internal._apply_tiers() m;
    PERFORM audit_internal._event('retention.tier', 'retention', 'tier', older_than::text, older_than::text,
            CASE WHEN prev.older_than IS NOT NULL THEN jsonb_build_object('tablespace', prev.tablespace) END,
            CASE WHEN tablespace IS NOT NULL THEN jsonb_build_object('tablespace', tablespace) END);
    PERFORM audit_internal._end_maintenance();
    RETURN QUERY SELECT m.p, m.s FROM unnest(moved, spaces) m(p, s);
END
$$;

-- (sql/alerts.sql)
CREATE OR REPLACE FUNCTION audit.stream(channel text, query text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev audit.streams;
BEGIN
    IF channel IS NULL OR octet_length(channel) NOT BETWEEN 1 AND 63 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'audit.stream(): channel must be 1 to 63 bytes',
            HINT = 'Listeners run LISTEN with this name.';
    END IF;
    PERFORM audit_internal._check_alert(query, NULL);
    DELETE FROM audit.streams s WHERE s.channel = stream.channel RETURNING * INTO prev;
    INSERT INTO audit.streams (channel, query) VALUES (channel, query);
    PERFORM audit_internal._rules_changed();
    PERFORM audit_internal._event('stream.create', 'alert', 'stream', channel, channel,
                         CASE WHEN prev.channel IS NOT NULL THEN jsonb_build_object('query', prev.query) END,
                         jsonb_build_object('query', query));
END
$$;

-- (sql/alerts.sql)
CREATE OR REPLACE FUNCTION audit.unstream(channel text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev audit.streams;
BEGIN
    DELETE FROM audit.streams s WHERE s.channel = unstream.channel RETURNING * INTO prev;
    IF prev.channel IS NULL THEN
        RAISE NOTICE 'audit.unstream(): no stream on channel %', channel;
        RETURN false;
    END IF;
    PERFORM audit_internal._rules_changed();
    PERFORM audit_internal._event('stream.drop', 'alert', 'stream', channel, channel, jsonb_build_object('query', prev.query));
    RETURN true;
END
$$;
-- (sql/diff.sql)
CREATE OR REPLACE FUNCTION audit.diff(old jsonb, new jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT audit_internal._diff(audit_internal._depth_checked(old), audit_internal._depth_checked(new)) $$;

-- (sql/capture/rows.sql)
CREATE OR REPLACE FUNCTION audit.untrack(tbl regclass) RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev audit.tracked;
BEGIN
    DELETE FROM audit.tracked t WHERE t.tbl = untrack.tbl RETURNING * INTO prev;
    IF prev.tbl IS NULL THEN
        RAISE NOTICE 'audit.untrack(): % is not tracked', tbl;
        RETURN false;
    END IF;
    PERFORM audit_internal._drop_capture_triggers(tbl);
    PERFORM audit_internal._event('capture.untrack', 'capture', 'table', NULL, format('%I.%I', n.nspname, c.relname),
                         jsonb_build_object('operations', prev.operations, 'exclude_columns', prev.exclude_columns,
                                            'mask_columns', prev.mask_columns, 'skip_unchanged', prev.skip_unchanged))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    RETURN true;
END
$$;

-- (sql/side_channel.sql)

-- Not SECURITY DEFINER: it touches no table, it hands the event to the side channel's writer
-- (a background worker), which inserts it through audit.record's path as the extension's
-- owner. Granted to audit_writer, as audit.record is.
CREATE FUNCTION audit.record_autonomous(
    action      text,
    object_type text  DEFAULT NULL,
    object_id   text  DEFAULT NULL,
    object_name text  DEFAULT NULL,
    old         jsonb DEFAULT NULL,
    new         jsonb DEFAULT NULL,
    status      text  DEFAULT 'success',
    severity    text  DEFAULT 'info',
    module      text  DEFAULT NULL,
    message     text  DEFAULT NULL,
    metadata    jsonb DEFAULT '{}'
) RETURNS bigint
    LANGUAGE c VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'audit_record_autonomous';
COMMENT ON FUNCTION audit.record_autonomous IS
    'Records one audit event that is kept even when the calling transaction rolls back; returns its id once committed.';
REVOKE ALL ON FUNCTION audit.record_autonomous(text, text, text, text, jsonb, jsonb, text, text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.record_autonomous(text, text, text, text, jsonb, jsonb, text, text, text, text, jsonb)
    TO audit_writer;
CREATE FUNCTION audit_internal."_side_channel_attach"() RETURNS bool
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'side_channel_attach_wrapper';
REVOKE ALL ON FUNCTION audit_internal._side_channel_attach() FROM PUBLIC;
SELECT audit_internal._side_channel_attach();

-- Forwarders (sql/forward.sql)
CREATE FUNCTION audit_internal."_forwarder_check"(
	"target" TEXT, /* Option < & str > */
	"format" TEXT /* Option < & str > */
) RETURNS bool /* bool */
STABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'forwarder_check_wrapper';
REVOKE ALL ON FUNCTION audit_internal._forwarder_check(text, text) FROM PUBLIC;
CREATE FUNCTION audit_internal."_forwarders_changed"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'forwarders_changed_wrapper';
REVOKE ALL ON FUNCTION audit_internal._forwarders_changed() FROM PUBLIC;
-- One row per forwarder. position: for each chain, the last seq the receiver took; a chain's
-- events commit in seq order (src/chain.rs: the chain lock is held until commit), so a
-- position per chain never skips an event that commits late, which a single "last id" would
-- (ids are taken at insert, not at commit). Written by the forwarder worker only.
CREATE TABLE audit_internal.forwarders (
    name          text COLLATE "C" PRIMARY KEY,
    target        text NOT NULL,
    format        text NOT NULL,
    query         text,
    position      jsonb NOT NULL DEFAULT '{}',
    last_id       bigint,
    sent          bigint NOT NULL DEFAULT 0,
    resent        bigint NOT NULL DEFAULT 0,
    last_error    text,
    last_error_at timestamptz,
    last_sent_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by    text NOT NULL DEFAULT session_user
);
REVOKE ALL ON audit_internal.forwarders FROM PUBLIC;

-- Events after position, over every chain: what is still to be sent. From each chain's head
-- (one index probe) rather than a count, so the view stays cheap on a large log.
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit_internal._forwarder_lag(pos jsonb) RETURNS bigint
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(greatest(h.seq - greatest(coalesce((pos ->> h.chain::text)::bigint, -1), t.tail - 1), 0)), 0)::bigint
    FROM audit.head() h
    CROSS JOIN LATERAL (SELECT min(e.seq) AS tail FROM audit.events e WHERE e.chain = h.chain) t
$$;

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.create_forwarder(name text, target text, format text DEFAULT 'rfc5424', query text DEFAULT NULL)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.-]{1,63}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.create_forwarder(): invalid name %s', coalesce(quote_literal(name), 'NULL')),
            HINT = 'A name is 1 to 63 letters, digits, "_", "." or "-".';
    END IF;
    -- the target's form, the format, and the library being preloaded (22023, 55000)
    PERFORM audit_internal._forwarder_check(target, format);
    IF query IS NOT NULL THEN
        PERFORM audit_internal._translate(query);  -- 42601 with the position of the mistake
    END IF;
    BEGIN
        INSERT INTO audit_internal.forwarders (name, target, format, query)
        VALUES (create_forwarder.name, create_forwarder.target, create_forwarder.format, create_forwarder.query);
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = '42710',
            MESSAGE = format('audit.create_forwarder(): forwarder %I exists', create_forwarder.name),
            HINT = format('Drop it first: SELECT audit.drop_forwarder(%L), or choose another name.', create_forwarder.name);
    END;
    PERFORM audit_internal._event('audit.forwarder_created', 'audit', 'forwarder', create_forwarder.name, NULL, NULL,
                                  jsonb_build_object('target', create_forwarder.target, 'format', create_forwarder.format,
                                                     'query', create_forwarder.query));
    -- at commit, the database's forwarder worker starts (or re-reads its forwarders)
    PERFORM audit_internal._forwarders_changed();
END
$$;
COMMENT ON FUNCTION audit.create_forwarder IS
    'Ships every event (matching query) to target (udp://, tcp:// or tls://host:port) in format, at least once (README "Forwarders").';

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.drop_forwarder(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f audit_internal.forwarders;
BEGIN
    DELETE FROM audit_internal.forwarders WHERE forwarders.name = drop_forwarder.name RETURNING * INTO f;
    IF f.name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('audit.drop_forwarder(): no forwarder %s', coalesce(quote_literal(drop_forwarder.name), 'NULL')),
            HINT = 'SELECT name FROM audit.forwarders lists them.';
    END IF;
    PERFORM audit_internal._event('audit.forwarder_dropped', 'audit', 'forwarder', f.name, NULL,
                                  jsonb_build_object('target', f.target, 'format', f.format, 'query', f.query,
                                                     'last_id', f.last_id, 'sent', f.sent));
    PERFORM audit_internal._forwarders_changed();
END
$$;
COMMENT ON FUNCTION audit.drop_forwarder IS 'Stops and removes a forwarder (README "Forwarders").';

-- What each forwarder has shipped, how far behind it is, and what went wrong last.
CREATE VIEW audit.forwarders AS
SELECT f.name, f.target, f.format, f.query, f.last_id,
       audit_internal._forwarder_lag(f.position) AS lag_events,
       f.last_error, f.last_sent_at, f.last_error_at, f.sent, f.resent, f.created_at, f.created_by
FROM audit_internal.forwarders f;
COMMENT ON VIEW audit.forwarders IS
    'Forwarders: target, format, the last id shipped, events still to send (lag_events), the last error.';
REVOKE ALL ON FUNCTION audit_internal._forwarder_lag(jsonb), audit.create_forwarder(text, text, text, text), audit.drop_forwarder(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.create_forwarder(text, text, text, text), audit.drop_forwarder(text) TO audit_admin;
GRANT SELECT ON audit.forwarders TO audit_reader;
GRANT EXECUTE ON FUNCTION audit_internal._forwarder_lag(jsonb) TO audit_reader;

-- The event triggers again, now that their functions name the helpers where they are.
ALTER EVENT TRIGGER audit_ext_ddl_command ENABLE ALWAYS;
ALTER EVENT TRIGGER audit_ext_ddl_drop ENABLE ALWAYS;

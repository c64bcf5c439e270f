-- audit_ext: partitions of audit.events, retention policies, apply_retention and warm tiers.
-- How it fits together: README "Retention" and src/retention.rs. Every function that changes
-- partitions runs as the extension's owner in maintenance (audit._begin_maintenance(), a
-- backend state that only audit_ext's own SECURITY DEFINER functions can enter, never a
-- setting), which is what lets it past the guards of sql/capture.sql and the append_only
-- triggers. Each one also sets a short lock_timeout: its strong locks (ACCESS EXCLUSIVE for
-- ATTACH and DROP) queue every writer behind them, so waiting long for a reader (any role can
-- hold a weak lock on audit.events, pg_relation_size() takes one) would stall the audit trail.

-- Periods are UTC days, weeks or months, whatever the session's TimeZone: every function here
-- that computes with them runs with TimeZone = UTC (adding '1 month' or '1 day' to a
-- timestamptz is done in the session's zone, across DST changes too).

-- Every function below that changes partitions or policies starts with
-- audit._begin_maintenance() (src/chain.rs): one at a time (a lock no SQL caller can take),
-- as the owner in maintenance until it ends (audit._end_maintenance()) or the transaction
-- does. Maintenance also makes its own events go to a chain no writer uses: these functions
-- take strong table locks first and record their event after, so they never wait for a
-- writer's chain while that writer waits for their lock.

-- Takes a strong lock for audit_ext's maintenance, waiting at most lock_timeout (each
-- maintenance function sets 2 s): writers queue behind a waiting ACCESS EXCLUSIVE request, so
-- a long wait for a reader's lock would stall the audit trail. Fails with a clear 55P03.
-- rel and mode come from audit_ext's own code only.
CREATE FUNCTION audit._lock(rel text, mode text) RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('LOCK TABLE %s IN %s MODE', rel, mode);
EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION USING ERRCODE = '55P03',
        MESSAGE = format('audit_ext could not lock %s within lock_timeout (%s): another transaction holds a lock on it',
                         rel, current_setting('lock_timeout')),
        HINT = 'Writers of the audit trail would queue behind this lock, so audit_ext does not wait longer. Find the holder in pg_locks and pg_stat_activity (often a session idle in transaction), then call again.';
END
$$;

-- Start of the UTC period (day, week, month) that contains t.
CREATE FUNCTION audit._period_start(t timestamptz, period text) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT pg_catalog.timezone('UTC', pg_catalog.date_trunc(period, pg_catalog.timezone('UTC', t))) $$;

-- The indexes of every partition: id for search paging; (chain, seq) for verify and the chain
-- head; then the auditors' everyday questions: by time, by actor, by object, by action (each
-- within a time range).
CREATE FUNCTION audit._create_indexes(part text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cols text;
BEGIN
    FOREACH cols IN ARRAY ARRAY['id', 'chain, seq', 'at', 'actor, at', 'object_id, at', 'action, at'] LOOP
        EXECUTE format('CREATE INDEX %I ON audit.%I (%s)',
                       part || '_' || replace(replace(cols, ', ', '_'), '_at', '') || '_idx', part, cols);
    END LOOP;
END
$$;

-- Creates one partition for class cls and [lo, hi): as a standalone table with a matching
-- CHECK, filled with the rows of that range waiting in the default partition, then attached
-- (ATTACH locks the parent in SHARE UPDATE EXCLUSIVE mode only, so writers go on) and given
-- its append_only trigger. The caller holds the default partition's lock.
CREATE FUNCTION audit._create_partition(cls integer, lo timestamptz, hi timestamptz) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC'
AS $$
DECLARE
    base text := format('events_%s_%s', cls, to_char(timezone('UTC', lo), 'YYYYMMDD'));
    part text := base;
    n integer := 1;
    moved bigint;
    g oid;
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
                       CASE WHEN g = 0 THEN 'PUBLIC' ELSE g::regrole::text END);
    END LOOP;
    PERFORM audit._create_indexes(part);
    EXECUTE format('ALTER TABLE audit.events ATTACH PARTITION audit.%I FOR VALUES FROM (%s, %L) TO (%s, %L)',
                   part, cls, lo, cls, hi);
    -- The CHECK only spared ATTACH a scan; kept, it would be evaluated again for every event,
    -- after the partition constraint that says the same (measured: parsing it was 8% of the
    -- time of 200,000 audit.record calls).
    EXECUTE format('ALTER TABLE audit.%I DROP CONSTRAINT %I', part, part || '_range');
    EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit.%I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change()', part);
    -- ALWAYS, like the parent's guards (the cloned row triggers are made ALWAYS here too)
    EXECUTE format('ALTER TABLE audit.%I ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER zz_chain_event, '
                   'ENABLE ALWAYS TRIGGER zz_alerts', part);
    INSERT INTO audit.partitions (name, class, from_at, to_at) VALUES (part, cls, lo, hi);
    RETURN part;
END
$$;

-- How far ahead audit_ext itself keeps partitions (at CREATE EXTENSION, for a new policy, and
-- in the worker): three months of monthly partitions, four weeks of weekly or seven days of
-- daily ones, so that the number of partitions stays small whatever the period.
CREATE FUNCTION audit._default_ahead() RETURNS interval
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE audit._partition_period() WHEN 'month' THEN interval '3 months'
                                          WHEN 'week' THEN interval '4 weeks'
                                          ELSE interval '7 days' END
$$;

-- The partition to create for class cls around time t, when no live partition holds t: t's
-- period, clipped to fit between the class's existing partitions (after a change of
-- audit_ext.partition_period). Runs with TimeZone = UTC (its callers set it).
CREATE FUNCTION audit._free_range(cls integer, t timestamptz, period text, OUT lo timestamptz, OUT hi timestamptz)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest(audit._period_start(t, period),
                    (SELECT max(p.to_at) FROM audit.partitions p
                     WHERE p.class = cls AND p.dropped_at IS NULL AND p.to_at <= t)),
           least(audit._period_start(t, period) + ('1 ' || period)::interval,
                 (SELECT min(p.from_at) FROM audit.partitions p
                  WHERE p.class = cls AND p.dropped_at IS NULL AND p.from_at > t))
    WHERE NOT EXISTS (SELECT FROM audit.partitions p
                      WHERE p.class = cls AND p.dropped_at IS NULL AND p.from_at <= t AND t < p.to_at)
$$;

-- Creates what every class lacks from the current period to now() + ahead (gaps included),
-- and returns the names created.
--
-- Without settle (the partition worker, a new policy) it never creates a range that has
-- events waiting in the default partition: moving them while writers run is what PostgreSQL
-- cannot do safely. A writer whose statement routed a row to the default partition before the
-- ATTACH and locks it after fails ("violates partition constraint"): PostgreSQL rechecks the
-- default partition's bounds. Measured: bench/alerts.sh writing back-dated batches while the
-- worker moved the first one. So the worker only adds ranges nobody is writing to.
--
-- With settle (audit.ensure_partitions) it also gives every event waiting in the default
-- partition a partition of its own, moving it there. For that it first takes audit.events
-- (ONLY the parent) in SHARE mode: writers that route through it wait for this transaction,
-- and then route to the new partition.
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit._ensure_partitions(ahead interval, settle boolean DEFAULT false) RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '2s'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    period text := audit._partition_period();
    cls integer;
    t timestamptz;
    r record;
    created text[] := '{}';
    rounds integer := 0;
BEGIN
    PERFORM audit._begin_maintenance();
    IF settle AND EXISTS (SELECT FROM ONLY audit.events_default) THEN
        PERFORM audit._lock('ONLY audit.events', 'SHARE');
    ELSE
        settle := false;
    END IF;
    -- No writer may add rows to the default partition while partitions are attached.
    PERFORM audit._lock('audit.events_default', 'ACCESS EXCLUSIVE');
    FOR cls IN SELECT c.class FROM audit.retention c ORDER BY c.class LOOP
        t := audit._period_start(now(), period);
        WHILE t <= now() + ahead LOOP
            SELECT * INTO r FROM audit._free_range(cls, t, period);
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
            created := created || audit._create_partition(cls, r.lo, r.hi);
            t := r.hi;
        END LOOP;
    END LOOP;
    -- events waiting in the default partition, oldest first, until none is left
    WHILE settle AND rounds < 10000 LOOP
        rounds := rounds + 1;
        SELECT d.retention_class, d.at INTO cls, t FROM ONLY audit.events_default d ORDER BY d.at LIMIT 1;
        EXIT WHEN NOT FOUND;
        SELECT * INTO r FROM audit._free_range(cls, t, period);
        IF r.lo IS NULL THEN
            -- cannot be: ATTACH moved nothing into a partition that holds it
            RAISE EXCEPTION 'audit_ext: event at % of class % is in the default partition, but a partition holds that time', t, cls;
        END IF;
        created := created || audit._create_partition(cls, r.lo, r.hi);
    END LOOP;
    RETURN QUERY SELECT unnest(created);
END
$$;

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.ensure_partitions(ahead interval DEFAULT interval '3 months')
RETURNS TABLE (partition text, retention_class integer, from_at timestamptz, to_at timestamptz)
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '2s'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    step interval := ('1 ' || audit._partition_period())::interval;
    created text[];
BEGIN
    IF ahead < interval '0' OR now() + ahead > now() + 400 * step THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('ahead %s is out of range: it must be between 0 and 400 partition periods', ahead),
            HINT = 'Partitions are created as they are needed; pre-create a few periods, e.g. interval ''3 months''.';
    END IF;
    created := ARRAY(SELECT audit._ensure_partitions(ahead, settle => true));
    PERFORM audit._end_maintenance();
    -- a statement of its own: its snapshot sees the partitions just registered
    RETURN QUERY
        SELECT p.name, p.class, p.from_at, p.to_at FROM audit.partitions p
        WHERE p.name = ANY (created) ORDER BY p.class, p.from_at;
END
$$;
COMMENT ON FUNCTION audit.ensure_partitions IS
    'Creates the partitions of audit.events missing up to now() + ahead, and moves events waiting in the default partition into partitions of their own.';

-- How long the events of one partition must be kept: the longest period among the current
-- policies of the actions in it (NULL: some must be kept forever). Policies may have changed
-- since the events were filed, and a direct INSERT may have filed one under class 0: each
-- action's own period counts. The actions are read with a skip scan of the (action, at) index.
CREATE FUNCTION audit._partition_keep(part text, cls integer) RETURNS interval
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k interval;
    forever boolean;
BEGIN
    EXECUTE format($q$
        WITH RECURSIVE a(action) AS (
            (SELECT e.action FROM audit.%1$I e ORDER BY e.action LIMIT 1)
            UNION ALL
            SELECT (SELECT e.action FROM audit.%1$I e WHERE e.action > a.action ORDER BY e.action LIMIT 1)
            FROM a WHERE a.action IS NOT NULL)
        SELECT max(r.keep), bool_or(r.keep IS NULL)
        FROM a JOIN audit.retention r ON r.class = audit.retention_class(a.action)
        WHERE a.action IS NOT NULL $q$, part) INTO k, forever;
    IF forever IS NULL THEN -- no events: the class's own policy
        SELECT r.keep INTO k FROM audit.retention r WHERE r.class = cls;
        RETURN k;
    END IF;
    RETURN CASE WHEN forever THEN NULL ELSE k END;
END
$$;

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.set_retention(keep interval, action_pattern text DEFAULT '*')
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
    PERFORM audit._check_pattern(action_pattern);
    PERFORM audit._begin_maintenance();
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
        PERFORM audit._ensure_partitions(audit._default_ahead());
    END IF;
    PERFORM audit._retention_changed();
    PERFORM audit._event('retention.set', 'retention', 'retention_policy', action_pattern, action_pattern,
            CASE WHEN prev.class IS NOT NULL THEN jsonb_build_object('keep', coalesce(prev.keep::text, 'forever')) END,
            jsonb_build_object('keep', coalesce(k::text, 'forever'), 'retention_class', cls));
    PERFORM audit._end_maintenance();
    RETURN QUERY SELECT action_pattern, k, cls;
END
$$;
COMMENT ON FUNCTION audit.set_retention IS
    'Sets how long events whose action matches action_pattern are kept (''0'' or NULL: forever).';

CREATE VIEW audit.retention_policies AS
SELECT r.pattern AS action_pattern,
       r.keep,
       coalesce(r.keep::text, 'forever') AS kept_for,
       r.class AS retention_class,
       count(p.name) AS partitions,
       min(p.from_at) AS oldest_partition_from,
       r.set_at,
       r.set_by
FROM audit.retention r
LEFT JOIN audit.partitions p ON p.class = r.class AND p.dropped_at IS NULL
GROUP BY r.class
ORDER BY (r.pattern LIKE '%*'), length(r.pattern) DESC, r.pattern;
COMMENT ON VIEW audit.retention_policies IS
    'Retention policies, most specific first: the first pattern matching an action applies.';

-- Moves every partition entirely older than a tier's older_than to that tier's tablespace
-- (the oldest tier that applies), table and indexes. Partitions stay where they are when a
-- tier is removed.
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit._apply_tiers() RETURNS TABLE (partition text, tablespace name)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '2s'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    p record;
    i record;
BEGIN
    PERFORM audit._begin_maintenance();
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

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.set_tier(older_than interval, tablespace name)
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
    PERFORM audit._begin_maintenance();
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
    SELECT array_agg(m.partition), array_agg(m.tablespace) INTO moved, spaces FROM audit._apply_tiers() m;
    PERFORM audit._event('retention.tier', 'retention', 'tier', older_than::text, older_than::text,
            CASE WHEN prev.older_than IS NOT NULL THEN jsonb_build_object('tablespace', prev.tablespace) END,
            CASE WHEN tablespace IS NOT NULL THEN jsonb_build_object('tablespace', tablespace) END);
    PERFORM audit._end_maintenance();
    RETURN QUERY SELECT m.p, m.s FROM unnest(moved, spaces) m(p, s);
END
$$;
COMMENT ON FUNCTION audit.set_tier IS
    'Moves partitions older than older_than to tablespace (NULL removes the tier); apply_retention keeps applying it.';

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.apply_retention(dry_run boolean DEFAULT false, archive_dir text DEFAULT NULL)
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
        PERFORM audit._begin_maintenance();
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
        k := audit._partition_keep(p.name, p.class);
        CONTINUE WHEN k IS NULL OR p.to_at > now() - k;
        IF NOT dry_run THEN
            PERFORM audit._lock(format('audit.%I', p.name), 'SHARE');
            -- it may have gained an event with a longer period meanwhile
            k := audit._partition_keep(p.name, p.class);
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
        PERFORM audit._apply_tiers() WHERE NOT dry_run;
        PERFORM audit._end_maintenance();
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
    PERFORM audit._lock('ONLY audit.events', 'ACCESS EXCLUSIVE');
    FOR i IN 1 .. cardinality(todo) LOOP
        PERFORM audit._lock(format('audit.%I', todo[i].name), 'ACCESS EXCLUSIVE');
    END LOOP;

    -- Recorded before anything is dropped, in the hash-chained log itself: audit.verify()
    -- starts each chain from these anchors.
    ev := audit._event('retention.applied', 'retention', 'partition', NULL, NULL, NULL,
            jsonb_build_object('partitions', parts, 'events', total, 'anchors', merged, 'archive_dir', archive_dir),
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
    PERFORM audit._apply_tiers();
    PERFORM audit._end_maintenance();
END
$$;
COMMENT ON FUNCTION audit.apply_retention IS
    'Drops (or with dry_run lists) the partitions whose events are all past their retention period.';

-- The default policy and the first partitions, made by CREATE EXTENSION so that no writer ever starts on the default
-- partition, and then released from the extension: pg_dump must write them (and later ones)
-- as tables of their own, since the months they cover are not those of a later CREATE
-- EXTENSION. A restore (audit_ext.restore) brings its own partitions instead.
DO $init$
DECLARE
    part text;
BEGIN
    PERFORM audit._create_indexes('events_default');
    IF NOT audit._restoring() THEN
        INSERT INTO audit.retention (class, pattern, keep) VALUES (0, '*', interval '365 days');
        FOR part IN SELECT audit._ensure_partitions(audit._default_ahead()) LOOP
            EXECUTE format('ALTER EXTENSION audit_ext DROP TABLE audit.%I', part);
        END LOOP;
    END IF;
END
$init$;

-- audit_ext: the partitions of audit.events (README "Retention", src/retention/partitions.rs).
-- Every function here that changes partitions runs as the extension's owner in maintenance
-- (sql/maintenance.sql).

-- Periods are UTC days, weeks or months, whatever the session's TimeZone: every function here
-- that computes with them runs with TimeZone = UTC (adding '1 month' or '1 day' to a
-- timestamptz is done in the session's zone, across DST changes too).

-- Start of the UTC period (day, week, month) that contains t.
CREATE FUNCTION audit_internal._period_start(t timestamptz, period text) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT pg_catalog.timezone('UTC', pg_catalog.date_trunc(period, pg_catalog.timezone('UTC', t))) $$;

-- The indexes of every partition: id for search paging; (chain, seq) for verify and the chain
-- head; then the auditors' everyday questions: by time, by actor, by object, by action (each
-- within a time range).
CREATE FUNCTION audit_internal._create_indexes(part text) RETURNS void
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
-- its statement-level guards (sql/guards.sql). The caller holds the default partition's lock.
CREATE FUNCTION audit_internal._create_partition(cls integer, lo timestamptz, hi timestamptz) RETURNS text
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

-- How far ahead audit_ext itself keeps partitions (at CREATE EXTENSION, for a new policy, and
-- in the worker): three months of monthly partitions, four weeks of weekly or seven days of
-- daily ones, so that the number of partitions stays small whatever the period.
CREATE FUNCTION audit_internal._default_ahead() RETURNS interval
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE audit_internal._partition_period() WHEN 'month' THEN interval '3 months'
                                          WHEN 'week' THEN interval '4 weeks'
                                          ELSE interval '7 days' END
$$;

-- The partition to create for class cls around time t, when no live partition holds t: t's
-- period, clipped to fit between the class's existing partitions (after a change of
-- audit_ext.partition_period). Runs with TimeZone = UTC (its callers set it).
CREATE FUNCTION audit_internal._free_range(cls integer, t timestamptz, period text, OUT lo timestamptz, OUT hi timestamptz)
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
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit_internal._ensure_partitions(ahead interval, settle boolean DEFAULT false) RETURNS SETOF text
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

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.ensure_partitions(ahead interval DEFAULT interval '3 months')
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
COMMENT ON FUNCTION audit.ensure_partitions IS
    'Creates the partitions of audit.events missing up to now() + ahead, and moves events waiting in the default partition into partitions of their own.';

-- The default policy and the first partitions, made by CREATE EXTENSION so that no writer ever starts on the default
-- partition, and then released from the extension: pg_dump must write them (and later ones)
-- as tables of their own, since the months they cover are not those of a later CREATE
-- EXTENSION. A restore (audit_ext.restore) brings its own partitions instead.
DO $init$
DECLARE
    part text;
BEGIN
    PERFORM audit_internal._create_indexes('events_default');
    IF NOT audit_internal._restoring() THEN
        INSERT INTO audit.retention (class, pattern, keep) VALUES (0, '*', interval '365 days');
        FOR part IN SELECT audit_internal._ensure_partitions(audit_internal._default_ahead()) LOOP
            EXECUTE format('ALTER EXTENSION audit_ext DROP TABLE audit.%I', part);
        END LOOP;
    END IF;
END
$init$;

-- audit_ext: warm tiers: old partitions move to another tablespace (README "Retention").

-- Moves every partition entirely older than a tier's older_than to that tier's tablespace
-- (the oldest tier that applies), table and indexes. Partitions stay where they are when a
-- tier is removed.
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit_internal._apply_tiers() RETURNS TABLE (partition text, tablespace name)
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

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
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
COMMENT ON FUNCTION audit.set_tier IS
    'Moves partitions older than older_than to tablespace (NULL removes the tier); apply_retention keeps applying it.';

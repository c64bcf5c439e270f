-- audit_ext: retention policies: how long the events of each action are kept
-- (README "Retention", src/retention/policies.rs).

-- How long the events of one partition must be kept: the longest period among the current
-- policies of the actions in it (NULL: some must be kept forever). Policies may have changed
-- since the events were filed, and a direct INSERT may have filed one under class 0: each
-- action's own period counts. The actions are read with a skip scan of the (action, at) index.
CREATE FUNCTION audit_internal._partition_keep(part text, cls integer) RETURNS interval
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

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
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

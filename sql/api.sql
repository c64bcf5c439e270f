-- audit_ext: SQL functions written in SQL or declared here because their arguments must stay
-- raw datums (see src/record.rs).

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.record(
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
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'audit_record';
COMMENT ON FUNCTION audit.record IS 'Records one audit event and returns its id.';

CREATE FUNCTION audit.set_context(
    actor       text    DEFAULT NULL,
    actor_ip    inet    DEFAULT NULL,
    session_id  text    DEFAULT NULL,
    application text    DEFAULT NULL,
    metadata    jsonb   DEFAULT NULL,
    local       boolean DEFAULT true
) RETURNS void
    LANGUAGE c VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'audit_set_context';
COMMENT ON FUNCTION audit.set_context IS
    'Sets who is acting for the events that follow, for this transaction (local) or the session.';

-- An event audit_ext records itself (alerts, capture, DDL, roles, retention): the one place
-- these get their retention class, which the INSERT must carry (src/retention.rs). Runs as its
-- caller, each of them audit_ext's own SECURITY DEFINER function, trigger or hook.
CREATE FUNCTION audit._event(action text, module text, object_type text, object_id text,
                             object_name text, old jsonb DEFAULT NULL, new jsonb DEFAULT NULL,
                             message text DEFAULT NULL, severity text DEFAULT 'info') RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO audit.events (retention_class, action, module, object_type, object_id, object_name,
                              old, new, message, severity)
    VALUES (audit.retention_class($1), $1, $2, $3, $4, $5, $6, $7, $8, $9)
    RETURNING id
$$;

-- The last event of every chain: what an auditor writes down, and later passes to
-- audit.verify(heads => ...). A loose index scan over (chain, seq): one probe per chain.
CREATE FUNCTION audit.head()
RETURNS TABLE (chain integer, seq bigint, hash bytea, at timestamptz)
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE c(chain) AS (
        SELECT min(e.chain) FROM audit.events e
        UNION ALL
        SELECT (SELECT min(e.chain) FROM audit.events e WHERE e.chain > c.chain)
        FROM c WHERE c.chain IS NOT NULL
    )
    SELECT h.chain, h.seq, h.hash, h.at
    FROM c
    CROSS JOIN LATERAL (
        SELECT e.chain, e.seq, e.hash, e.at FROM audit.events e
        WHERE e.chain = c.chain ORDER BY e.seq DESC LIMIT 1
    ) h
    ORDER BY h.chain
$$;
COMMENT ON FUNCTION audit.head IS 'The last event of every chain: note it to detect truncation later.';

-- The hash an event's columns give now (docs/hash-format.md). For every untouched event
-- hash = audit.hash_event(e); audit.verify() runs the same code over whole chains.
CREATE FUNCTION audit.hash_event(e audit.events) RETURNS bytea
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'audit_hash_event';
COMMENT ON FUNCTION audit.hash_event IS 'Recomputes the SHA-256 of one event row (docs/hash-format.md).';

-- One event as the JSON object the outside verifier reads (tests/tools/verify_export.py,
-- docs/hash-format.md "Checking"): every column, with old and new left out when they are SQL
-- NULL, so that a jsonb null (which the hash tells apart) stays distinct from a missing value.
-- Export byte for byte with COPY (psql's own output drops some code points).
CREATE FUNCTION audit.export_json(e audit.events) RETURNS jsonb
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT to_jsonb(e) - array_remove(ARRAY[CASE WHEN e.old IS NULL THEN 'old' END,
                                            CASE WHEN e.new IS NULL THEN 'new' END], NULL)
$$;
COMMENT ON FUNCTION audit.export_json IS 'One event as the JSON object tests/tools/verify_export.py verifies (docs/hash-format.md).';

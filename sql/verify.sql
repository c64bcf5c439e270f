-- audit_ext: checking the log (src/verify.rs): the chain heads an auditor notes, the hash of
-- one event, and the JSON an outside verifier reads. audit.verify() itself is declared by
-- pgrx from src/verify.rs.

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

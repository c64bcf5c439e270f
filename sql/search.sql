-- audit_ext: audit.search (src/search.rs translates the query language of
-- docs/query-language.md, crates/audit_core/src/query/, into SQL).

-- Events matching a query, newest first; page with after_id (the last id of a page). Each call
-- is recorded as an audit.search event with its arguments and the rows returned (sql/reads.sql).
CREATE FUNCTION audit.search(query text, limit_rows integer DEFAULT 100, after_id bigint DEFAULT NULL)
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

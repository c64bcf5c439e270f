-- audit_ext: audit.export (src/export.rs; the lines come from crates/audit_core/src/export.rs,
-- README "Export").

-- One event as a line of kv, csv, cef or rfc5424.
CREATE FUNCTION audit_internal._export_line(format text, e audit.events) RETURNS text
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'audit_export_line';

-- The events matching query (the search language; NULL: all) with since <= at < until, one
-- line each in id order, in one of the formats of README "Export". Runs as the caller, whose
-- own privileges on audit.events apply (audit_reader may). RETURN QUERY keeps the lines in a
-- tuplestore that spills to disk past work_mem: memory stays flat for any number of events.
-- Each call is recorded as an audit.export event with the events exported (sql/reads.sql).
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

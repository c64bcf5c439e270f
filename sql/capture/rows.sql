-- audit_ext: capture of row changes (audit.track). See "How capture works" in the README.

-- The statement-level trigger that audit.track() puts on a table, once per operation.
-- Not SECURITY DEFINER: it builds the row images as the role whose statement fired it (so
-- that the column types' output functions and casts never run with elevated rights), then
-- inserts them into audit.events as the extension's owner itself (src/capture/rows.rs,
-- src/pg/elevate.rs); whoever writes the table needs no privilege on audit.events.
CREATE FUNCTION audit_internal.capture_rows() RETURNS trigger
    LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'audit_capture_rows';
COMMENT ON FUNCTION audit_internal.capture_rows IS 'Trigger of tracked tables (installed by audit.track()).';

-- x with every column of cols that x has (and that is not null) replaced by its marker
-- 'masked:<hex sha256(key || column || "=" || value as JSON)>'. Schema-qualified throughout
-- instead of SET search_path, so that it stays cheap per row.
CREATE FUNCTION audit_internal._mask(x jsonb, cols text[]) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT x OPERATOR(pg_catalog.||) COALESCE((
        SELECT pg_catalog.jsonb_object_agg(c, 'masked:' OPERATOR(pg_catalog.||) pg_catalog.encode(
                   pg_catalog.sha256(k.key OPERATOR(pg_catalog.||) pg_catalog.convert_to(
                       c OPERATOR(pg_catalog.||) '=' OPERATOR(pg_catalog.||) (x OPERATOR(pg_catalog.->) c)::text,
                       'UTF8')), 'hex'))
        FROM pg_catalog.unnest(cols) c,
             (SELECT m.key FROM audit.mask_key m ORDER BY m.created_at, m.key LIMIT 1) k
        WHERE x OPERATOR(pg_catalog.?) c
          AND pg_catalog.jsonb_typeof(x OPERATOR(pg_catalog.->) c) OPERATOR(pg_catalog.<>) 'null'), '{}'::jsonb)
$$;

-- The tracked table a relation's changes belong to: the top of its partition tree, or itself.
CREATE FUNCTION audit_internal._root(rel regclass) RETURNS regclass
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(pg_partition_root(rel), rel) $$;

-- rel and every partition below it (pg_partition_tree alone is empty for a plain table).
CREATE FUNCTION audit_internal._tree(rel regclass) RETURNS TABLE (relid regclass)
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$ SELECT rel UNION SELECT p.relid FROM pg_partition_tree(rel) p $$;

-- How rows of tbl are identified in object_id: the replica identity index, else the primary
-- key, columns in index order; NULL when the table has neither.
CREATE FUNCTION audit_internal._key_columns(tbl regclass) RETURNS text[]
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(a.attname::text ORDER BY k.ord)
    FROM (SELECT i.indkey FROM pg_index i WHERE i.indrelid = tbl AND (i.indisreplident OR i.indisprimary)
          ORDER BY i.indisreplident DESC LIMIT 1) i
    CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = tbl AND a.attnum = k.attnum
$$;

-- Why capture of tbl (a tracked table or one of its partitions) is not intact, NULL when it
-- is: a tracked operation's trigger missing, disabled, not enabled ALWAYS (session_replication_role
-- = replica would skip it), or not audit_internal.capture_rows() itself (a trigger of the reserved name
-- that does something else); an excluded or masked column gone (renamed or dropped); a masked
-- column that became a key column (object_id would hold it in clear). Checks every member of
-- tbl's tracked tree (verify, tracked_tables), or with whole => false tbl alone (the DDL guard,
-- which runs while audit.track() is still making the triggers of the other members).
CREATE FUNCTION audit_internal._capture_problem(tbl regclass, whole boolean DEFAULT true) RETURNS text
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

-- The capture triggers of one tracked table (t) on rel: the table itself or a partition of it
-- (a statement on a partition fires only that partition's statement triggers).
CREATE FUNCTION audit_internal._create_capture_triggers(rel regclass, t audit.tracked) RETURNS void
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

-- Brings the capture triggers in line with audit.tracked after DDL: a new or attached
-- partition of a tracked table gets them; a table outside every tracked table (a detached
-- partition) loses them. Never drops a trigger of a tracked table.
CREATE FUNCTION audit_internal._sync_capture() RETURNS void
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

CREATE FUNCTION audit_internal._drop_capture_triggers(tbl regclass) RETURNS void
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

-- The work of audit.track(), run as the extension's owner by audit.track() (src/capture/rows.rs)
-- once it checked that its caller may read the table. Executable by the owner only.
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit_internal._track(
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
CREATE FUNCTION audit.track(
    tbl             regclass,
    exclude_columns text[]  DEFAULT '{}',
    mask_columns    text[]  DEFAULT '{}',
    operations      text[]  DEFAULT '{insert,update,delete,truncate}',
    skip_unchanged  boolean DEFAULT true
) RETURNS void
    LANGUAGE c VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'audit_track';
COMMENT ON FUNCTION audit.track IS 'Starts (or changes) capture of the row changes of a table.';

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.untrack(tbl regclass) RETURNS boolean
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
COMMENT ON FUNCTION audit.untrack IS 'Stops capture of the row changes of a table.';

CREATE VIEW audit.tracked_tables AS
SELECT format('%I.%I', n.nspname, c.relname) AS table_name, t.tbl, t.operations,
       t.exclude_columns, t.mask_columns, t.skip_unchanged, t.tracked_at, t.tracked_by,
       audit_internal._key_columns(t.tbl) AS key_columns,
       audit_internal._capture_problem(t.tbl) IS NULL AS intact
FROM audit.tracked t
JOIN pg_catalog.pg_class c ON c.oid = t.tbl
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;
COMMENT ON VIEW audit.tracked_tables IS 'Tables whose row changes are captured, and how.';

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
CREATE FUNCTION audit.row_history(tbl regclass, pk text)
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

CREATE FUNCTION audit.row_history(tbl regclass, pk jsonb)
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

-- audit_ext: apply_retention, which drops the partitions past their policies and leaves
-- anchors that keep every chain verifiable (README "Retention", src/retention/anchor.rs).

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
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
COMMENT ON FUNCTION audit.apply_retention IS
    'Drops (or with dry_run lists) the partitions whose events are all past their retention period.';

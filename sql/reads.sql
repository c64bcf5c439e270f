-- audit_ext: the audit of the audit (src/reads.rs, README "The audit of the audit").

-- Records one read of the log: module audit, the action of the reading function (audit.search,
-- audit.export, audit.verify, audit.row_history, audit.explain_query, audit.summary) or audit.read (a
-- statement that read audit.events, audit_ext.audit_reads), the actor and context as for any
-- event, in `new` the arguments and the rows returned. Arguments over 8 kB (or a quarter of
-- audit_ext.max_event_bytes) are kept as their first 8 kB of text, so that a read never fails
-- on max_event_bytes.
-- Where nothing can be written (a hot standby, a read-only transaction), the read becomes one
-- LOG line of the server log instead: AUDIT: action=... actor=... rows=... arguments=...
-- (not recorded: ...), the values in JSON quoting; so does a read event that rolls back.
--
-- Elevated entry point (SECURITY DEFINER): readers and viewers may not insert into the log.
-- It follows the rule of src/pg/elevate.rs, no code a caller controls runs in it: the path is
-- pinned, every name qualified, the arguments are values (jsonb) that it only stores.
CREATE FUNCTION audit_internal._read_event(action text, arguments jsonb, row_count bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    args jsonb;
    line text;
BEGIN
    IF action IS NULL OR action NOT IN ('audit.search', 'audit.export', 'audit.verify', 'audit.row_history',
                                         'audit.explain_query', 'audit.summary', 'audit.read') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit_internal._read_event(): %s is not a read of the log', coalesce(quote_literal(action), 'NULL')),
            HINT = 'audit_ext records reads itself; record an application''s own events with audit.record().';
    END IF;
    args := audit_internal._read_arguments(coalesce(arguments, 'null'));
    line := format('AUDIT: action=%s actor=%s rows=%s arguments=%s', action,
                   to_jsonb(coalesce(nullif(pg_catalog.current_setting('audit_ext.context_actor', true), ''), session_user::text)),
                   coalesce(row_count::text, 'NULL'), coalesce(args::text, 'null'));
    IF pg_catalog.pg_is_in_recovery() OR pg_catalog.current_setting('transaction_read_only') = 'on' THEN
        RAISE LOG '% (not recorded: %)', line,
            CASE WHEN pg_catalog.pg_is_in_recovery() THEN 'hot standby' ELSE 'read-only transaction' END;
    ELSE
        -- A read must not fail because its event cannot be written: verify, which finds a
        -- damaged log, would otherwise fail on it (a damaged chain head refuses new events).
        -- The event is then a server-log line, and the caller gets a WARNING.
        BEGIN
            PERFORM audit_internal._event(action, 'audit', CASE WHEN action = 'audit.read' THEN 'statement' ELSE 'function' END,
                                          CASE WHEN action = 'audit.read' THEN NULL ELSE action END, NULL, NULL,
                                          jsonb_build_object('arguments', args, 'rows', row_count));
        EXCEPTION WHEN OTHERS THEN
            RAISE LOG '% (not recorded: %)', line, SQLERRM;
            RAISE WARNING 'audit_ext: this read of the log could not be recorded: %', SQLERRM
                USING HINT = 'It is in the server log instead. Run audit.verify() if the log may be damaged.';
            RETURN;
        END;
        -- the line reaches the server log if this event rolls back (src/reads.rs)
        PERFORM audit_internal._read_unless_committed(line);
    END IF;
END
$$;

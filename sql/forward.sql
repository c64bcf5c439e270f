-- audit_ext: forwarders (src/forward/, README "Forwarders"): background workers that ship the
-- log's events to a syslog receiver or SIEM over UDP, TCP or TLS, at least once.

-- One row per forwarder. position: for each chain, the last seq the receiver took; a chain's
-- events commit in seq order (src/chain.rs: the chain lock is held until commit), so a
-- position per chain never skips an event that commits late, which a single "last id" would
-- (ids are taken at insert, not at commit). Written by the forwarder worker only.
CREATE TABLE audit_internal.forwarders (
    name          text COLLATE "C" PRIMARY KEY,
    target        text NOT NULL,
    format        text NOT NULL,
    query         text,
    position      jsonb NOT NULL DEFAULT '{}',
    last_id       bigint,
    sent          bigint NOT NULL DEFAULT 0,
    resent        bigint NOT NULL DEFAULT 0,
    last_error    text,
    last_error_at timestamptz,
    last_sent_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by    text NOT NULL DEFAULT session_user
);
REVOKE ALL ON audit_internal.forwarders FROM PUBLIC;

-- Events after position, over every chain: what is still to be sent. From each chain's head
-- (one index probe) rather than a count, so the view stays cheap on a large log.
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit_internal._forwarder_lag(pos jsonb) RETURNS bigint
    LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(greatest(h.seq - greatest(coalesce((pos ->> h.chain::text)::bigint, -1), t.tail - 1), 0)), 0)::bigint
    FROM audit.head() h
    CROSS JOIN LATERAL (SELECT min(e.seq) AS tail FROM audit.events e WHERE e.chain = h.chain) t
$$;

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.create_forwarder(name text, target text, format text DEFAULT 'rfc5424', query text DEFAULT NULL)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.-]{1,63}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.create_forwarder(): invalid name %s', coalesce(quote_literal(name), 'NULL')),
            HINT = 'A name is 1 to 63 letters, digits, "_", "." or "-".';
    END IF;
    -- the target's form, the format, and the library being preloaded (22023, 55000)
    PERFORM audit_internal._forwarder_check(target, format);
    IF query IS NOT NULL THEN
        PERFORM audit_internal._translate(query);  -- 42601 with the position of the mistake
    END IF;
    BEGIN
        INSERT INTO audit_internal.forwarders (name, target, format, query)
        VALUES (create_forwarder.name, create_forwarder.target, create_forwarder.format, create_forwarder.query);
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = '42710',
            MESSAGE = format('audit.create_forwarder(): forwarder %I exists', create_forwarder.name),
            HINT = format('Drop it first: SELECT audit.drop_forwarder(%L), or choose another name.', create_forwarder.name);
    END;
    PERFORM audit_internal._event('audit.forwarder_created', 'audit', 'forwarder', create_forwarder.name, NULL, NULL,
                                  jsonb_build_object('target', create_forwarder.target, 'format', create_forwarder.format,
                                                     'query', create_forwarder.query));
    -- at commit, the database's forwarder worker starts (or re-reads its forwarders)
    PERFORM audit_internal._forwarders_changed();
END
$$;
COMMENT ON FUNCTION audit.create_forwarder IS
    'Ships every event (matching query) to target (udp://, tcp:// or tls://host:port) in format, at least once (README "Forwarders").';

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.drop_forwarder(name text) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f audit_internal.forwarders;
BEGIN
    DELETE FROM audit_internal.forwarders WHERE forwarders.name = drop_forwarder.name RETURNING * INTO f;
    IF f.name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('audit.drop_forwarder(): no forwarder %s', coalesce(quote_literal(drop_forwarder.name), 'NULL')),
            HINT = 'SELECT name FROM audit.forwarders lists them.';
    END IF;
    PERFORM audit_internal._event('audit.forwarder_dropped', 'audit', 'forwarder', f.name, NULL,
                                  jsonb_build_object('target', f.target, 'format', f.format, 'query', f.query,
                                                     'last_id', f.last_id, 'sent', f.sent));
    PERFORM audit_internal._forwarders_changed();
END
$$;
COMMENT ON FUNCTION audit.drop_forwarder IS 'Stops and removes a forwarder (README "Forwarders").';

-- What each forwarder has shipped, how far behind it is, and what went wrong last.
CREATE VIEW audit.forwarders AS
SELECT f.name, f.target, f.format, f.query, f.last_id,
       audit_internal._forwarder_lag(f.position) AS lag_events,
       f.last_error, f.last_sent_at, f.last_error_at, f.sent, f.resent, f.created_at, f.created_by
FROM audit_internal.forwarders f;
COMMENT ON VIEW audit.forwarders IS
    'Forwarders: target, format, the last id shipped, events still to send (lag_events), the last error.';

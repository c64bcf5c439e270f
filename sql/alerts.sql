-- audit_ext: threshold alerts and live streams (src/alerts.rs). Rules and streams are written in
-- the query language of docs/query-language.md (crates/audit_core/src/query/; audit.search is in sql/search.sql).


-- The AFTER INSERT trigger that evaluates alert rules and streams for every new event.
CREATE FUNCTION audit_internal.evaluate_alerts() RETURNS trigger
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'audit_evaluate_alerts';
-- (trigger zz_alerts, made in sql/guards.sql)

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.create_alert(
    name      text,
    query     text,
    threshold integer  DEFAULT 1,
    "window"  interval DEFAULT '5 minutes',
    group_by  text     DEFAULT NULL,
    channel   text     DEFAULT 'audit_alert',
    severity  text     DEFAULT 'high'
) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.:-]{1,63}$' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('audit.create_alert(): invalid name %L', name),
            HINT = 'Use 1 to 63 letters, digits, and _ . : -';
    ELSIF query IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'audit.create_alert(): query is NULL',
            HINT = 'Pass a query such as ''action:authentication.login AND status:failure''.';
    ELSIF threshold IS NULL OR threshold < 1 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('audit.create_alert(): threshold must be at least 1, not %s', coalesce(threshold::text, 'NULL')),
            HINT = 'The alert fires when this many matching events fall within the window.';
    ELSIF "window" IS NULL OR "window" <= interval '0' OR "window" > interval '366 days' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('audit.create_alert(): window must be positive and at most 366 days, not %s', coalesce("window"::text, 'NULL')),
            HINT = 'For example ''5 minutes''.';
    ELSIF channel IS NULL OR octet_length(channel) NOT BETWEEN 1 AND 63 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'audit.create_alert(): channel must be 1 to 63 bytes',
            HINT = 'Listeners run LISTEN with this name; the default is audit_alert.';
    -- (raises 22023 itself: the list of severities is src/vocab.rs's)
    ELSIF NOT audit_internal._check_severity(severity, 'audit.create_alert()') THEN
        NULL;
    ELSIF EXISTS (SELECT FROM audit.alert_rules r WHERE r.name = create_alert.name) THEN
        RAISE EXCEPTION USING ERRCODE = '42710', MESSAGE = format('alert %L already exists', name),
            HINT = 'Drop it first with audit.drop_alert(), or pick another name.';
    END IF;
    PERFORM audit_internal._check_alert(query, group_by);
    -- stored as the column it names (aliases such as 'user' or ' Actor ' resolved)
    group_by := audit_internal._group_name(group_by);
    INSERT INTO audit.alert_rules (name, query, threshold, "window", group_by, channel, severity)
    VALUES (name, query, threshold, "window", group_by, channel, severity);
    PERFORM audit_internal._rules_changed();
    PERFORM audit_internal._event('alert.create', 'alert', 'alert', name, name, NULL,
                         jsonb_build_object('query', query, 'threshold', threshold, 'window', "window"::text,
                                            'group_by', group_by, 'channel', channel, 'severity', severity));
END
$$;
COMMENT ON FUNCTION audit.create_alert IS 'Creates a threshold alert rule that NOTIFYs a channel.';

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.drop_alert(name text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r audit.alert_rules;
BEGIN
    DELETE FROM audit.alert_rules a WHERE a.name = drop_alert.name RETURNING * INTO r;
    IF r.name IS NULL THEN
        RAISE NOTICE 'audit.drop_alert(): no alert %', name;
        RETURN false;
    END IF;
    PERFORM audit_internal._rules_changed();
    PERFORM audit_internal._event('alert.drop', 'alert', 'alert', name, name, to_jsonb(r) - 'created_at');
    RETURN true;
END
$$;

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.enable_alert(name text, "on" boolean) RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE audit.alert_rules a SET enabled = "on" WHERE a.name = enable_alert.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('alert %L does not exist', name),
            HINT = 'See audit.alerts for the existing alerts.';
    END IF;
    PERFORM audit_internal._rules_changed();
    PERFORM audit_internal._event(CASE WHEN "on" THEN 'alert.enable' ELSE 'alert.disable' END, 'alert', 'alert',
                         name, name, NULL, jsonb_build_object('enabled', "on"));
END
$$;

-- Every event (or those matching query) is sent to channel as it is recorded.
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.stream(channel text, query text DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev audit.streams;
BEGIN
    IF channel IS NULL OR octet_length(channel) NOT BETWEEN 1 AND 63 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'audit.stream(): channel must be 1 to 63 bytes',
            HINT = 'Listeners run LISTEN with this name.';
    END IF;
    PERFORM audit_internal._check_alert(query, NULL);
    DELETE FROM audit.streams s WHERE s.channel = stream.channel RETURNING * INTO prev;
    INSERT INTO audit.streams (channel, query) VALUES (channel, query);
    PERFORM audit_internal._rules_changed();
    PERFORM audit_internal._event('stream.create', 'alert', 'stream', channel, channel,
                         CASE WHEN prev.channel IS NOT NULL THEN jsonb_build_object('query', prev.query) END,
                         jsonb_build_object('query', query));
END
$$;

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.unstream(channel text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev audit.streams;
BEGIN
    DELETE FROM audit.streams s WHERE s.channel = unstream.channel RETURNING * INTO prev;
    IF prev.channel IS NULL THEN
        RAISE NOTICE 'audit.unstream(): no stream on channel %', channel;
        RETURN false;
    END IF;
    PERFORM audit_internal._rules_changed();
    PERFORM audit_internal._event('stream.drop', 'alert', 'stream', channel, channel, jsonb_build_object('query', prev.query));
    RETURN true;
END
$$;

CREATE VIEW audit.alerts AS
SELECT r.name, r.query, r.threshold, r."window", r.group_by, r.channel, r.severity, r.enabled,
       r.created_at, r.created_by,
       (SELECT max(s.fired_at) FROM audit.alert_state s WHERE s.alert = r.name) AS last_fired_at,
       (SELECT coalesce(sum(s.fired_count), 0) FROM audit.alert_state s WHERE s.alert = r.name) AS times_fired
FROM audit.alert_rules r;
COMMENT ON VIEW audit.alerts IS 'Alert rules, and when they last fired.';

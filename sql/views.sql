-- audit_ext: the auditor's views (README "Views for auditors"): what an auditor reads in psql
-- without writing SQL. All are security_invoker: the caller's own privileges on audit.events
-- apply, so they show what the caller may see and nothing more.

-- The last 24 hours, newest first, with the columns an auditor reads.
--   select * from audit.recent limit 20;
CREATE VIEW audit.recent WITH (security_invoker = true) AS
SELECT e.id, e.at, e.actor, e.actor_ip, e.action, e.status, e.severity, e.module, e.object_type,
       e.object_id, e.object_name, e.message
FROM audit.events e
WHERE e.at > now() - interval '24 hours'
ORDER BY e.id DESC;
COMMENT ON VIEW audit.recent IS 'Events of the last 24 hours, newest first.';

-- The guard problems (audit_internal._guard_problems()) for a caller that may read them, none for one
-- that may not: a member of audit_viewer reads audit.security_events too, and learns from it
-- its own events, not the details of the guards. PL/pgSQL, so that the query, and the privilege
-- checks of what it reads, run only for a caller allowed to run it.
CREATE FUNCTION audit_internal._visible_guard_problems() RETURNS SETOF text
    LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.has_function_privilege('audit_internal._guard_problems()', 'EXECUTE') THEN
        RETURN QUERY SELECT p FROM audit_internal._guard_problems() p;
    END IF;
END
$$;

-- What a security team looks at first, each event with its kind: failed and denied
-- authentications and actions, permission and role changes, changes of audit_ext's own
-- settings (capture, retention, alerts, streams, server settings), alerts fired, retention
-- applied; and, as rows with id NULL, what is wrong with the guards of the log now
-- (audit_internal._guard_problems(), the guards row of audit.verify()), to those who may read them.
CREATE VIEW audit.security_events WITH (security_invoker = true) AS
SELECT e.id, e.at,
       CASE WHEN e.action LIKE 'authentication.%' AND e.status <> 'success' THEN 'failed_authentication'
            WHEN e.status = 'denied' THEN 'denied'
            WHEN e.status = 'failure' THEN 'failed'
            WHEN e.action LIKE 'permission.%' THEN 'permission_change'
            WHEN e.action LIKE 'role.%' THEN 'role_change'
            WHEN e.action = 'alert.fired' THEN 'alert_fired'
            WHEN e.action = 'retention.applied' THEN 'retention_applied'
            ELSE 'audit_setting_change' END AS kind,
       e.actor, e.actor_ip, e.action, e.status, e.severity, e.object_type, e.object_id, e.object_name, e.message
FROM audit.events e
WHERE (e.action LIKE 'authentication.%' AND e.status <> 'success')
   OR e.status IN ('denied', 'failure')
   OR e.action LIKE 'permission.%' OR e.action LIKE 'role.%'
   OR e.action LIKE 'setting.%'
   OR (e.module IN ('capture', 'retention', 'alert')
       AND e.action IN ('capture.track', 'capture.untrack', 'retention.set', 'retention.tier', 'retention.applied',
                        'alert.create', 'alert.drop', 'alert.enable', 'alert.disable', 'alert.fired',
                        'stream.create', 'stream.drop'))
UNION ALL
SELECT NULL::bigint, now(), 'guard_problem', NULL, NULL, 'audit.guards', 'failure', 'critical', NULL, NULL, NULL, g.problem
FROM audit_internal._visible_guard_problems() g(problem);
COMMENT ON VIEW audit.security_events IS 'Failed and denied actions, permission, role and audit setting changes, alerts, retention, guard problems.';

-- NetEye's "My changes": the changes (events with old and/or new properties) made in the
-- caller's sessions: recorded under its login role (the actor audit_ext records is the
-- session user, whatever SET ROLE says), or asserted for an end user by a session of its
-- role (metadata.db_user).
CREATE VIEW audit.my_changes WITH (security_invoker = true) AS
SELECT e.id, e.at, e.action, e.status, e.module, e.object_type, e.object_id, e.object_name, e.old, e.new,
       audit.diff(e.old, e.new) AS diff
FROM audit.events e
WHERE (e.old IS NOT NULL OR e.new IS NOT NULL)
  AND (e.actor = session_user OR e.metadata ->> 'db_user' = session_user)
  -- reads of the log are not changes: sql/reads.sql files them as object_type function or
  -- statement, and a report as report
  AND NOT (e.module = 'audit' AND e.object_type IN ('function', 'statement', 'report'))
ORDER BY e.id DESC;
COMMENT ON VIEW audit.my_changes IS 'Changes made in sessions of the current login role, newest first.';

-- How many events, grouped by one of action, actor, object_type, status, module, severity or
-- day (UTC), with since <= at < until (NULL: open), most first.
CREATE FUNCTION audit.summary(since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL, by text DEFAULT 'action')
RETURNS TABLE (key text, count bigint)
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    expr text := CASE by WHEN 'day' THEN 'to_char(e.at AT TIME ZONE ''UTC'', ''YYYY-MM-DD'')'
                         WHEN 'action' THEN 'e.action' WHEN 'actor' THEN 'e.actor'
                         WHEN 'object_type' THEN 'e.object_type' WHEN 'status' THEN 'e.status'
                         WHEN 'module' THEN 'e.module' WHEN 'severity' THEN 'e.severity' END;
BEGIN
    IF expr IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.summary(): cannot group by %s', coalesce(quote_literal(by), 'NULL')),
            HINT = 'Group by action, actor, object_type, status, module, severity or day.';
    END IF;
    RETURN QUERY EXECUTE
        'SELECT ' || expr || '::text, count(*) FROM audit.events e'
        ' WHERE ($1::timestamptz IS NULL OR e.at >= $1) AND ($2::timestamptz IS NULL OR e.at < $2)'
        ' GROUP BY 1 ORDER BY 2 DESC, 1'
        USING since, until;
    GET DIAGNOSTICS n = ROW_COUNT;
    -- a summary is a read of the log too (sql/reads.sql)
    PERFORM audit_internal._read_event('audit.summary', jsonb_build_object('since', since, 'until', until, 'by', by), n);
END
$$;
COMMENT ON FUNCTION audit.summary IS 'Event counts by action, actor, object_type, status, module, severity or day.';

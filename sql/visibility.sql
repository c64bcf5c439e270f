-- audit_ext: who sees which events (README "Who sees what"). Members of audit_reader (and so of
-- audit_admin) see every event; members of audit_viewer see their own events, and those of the
-- roles audit.allow_view() let them view. Row level security on audit.events, with policies
-- that audit_ext owns (audit_internal._guard_policies(), sql/guards.sql: the guards check that they are
-- exactly these, and refuse any other). Every function and view that reads events as its
-- caller (audit.search, audit.changes, audit.row_history, audit.export, the auditor's views)
-- therefore shows a viewer only what it may see; audit.verify() reads every event as the
-- extension's owner and tells a viewer only chain-level results.

-- Who may view whose events beyond their own. regrole columns: a dump names the roles, and a
-- restore finds them again by name.
CREATE TABLE audit.viewers (
    viewer     regrole     NOT NULL,
    of_role    regrole     NOT NULL,
    granted_by text COLLATE "C" NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (viewer, of_role)
);
SELECT pg_catalog.pg_extension_config_dump('audit.viewers', '');

-- The caller's own grants (current_user in a view is the querying role; the view reads
-- audit.viewers with its owner's rights), so that a viewer learns nothing of others' grants.
CREATE VIEW audit._my_view_grants WITH (security_barrier = true) AS
SELECT v.of_role FROM audit.viewers v WHERE v.viewer OPERATOR(pg_catalog.=) CURRENT_USER::regrole;

-- The role names whose events the current role sees as a viewer: itself, and every role that
-- is a member (directly or not) of a role it was allowed to view, that role included. The
-- policy calls it once per statement (a scalar subquery, an InitPlan), not once per row.
CREATE FUNCTION audit_internal._visible_roles() RETURNS text[]
    LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(DISTINCT n ORDER BY n) FROM (
        SELECT CURRENT_USER::text
        UNION ALL
        SELECT r.rolname::text FROM audit._my_view_grants g
        JOIN pg_catalog.pg_roles r ON pg_catalog.pg_has_role(r.oid, g.of_role::oid, 'MEMBER')
    ) s(n)
$$;

ALTER TABLE audit.events ENABLE ROW LEVEL SECURITY;
-- Readers see all: a constant qual, which the planner drops, so it costs them nothing.
CREATE POLICY audit_readers ON audit.events FOR SELECT TO audit_reader USING (true);
-- Viewers see the events they are the actor of, or whose connection they were when an
-- application asserted an end user as the actor (metadata.db_user), and the same of the roles
-- they may view.
CREATE POLICY audit_viewers ON audit.events FOR SELECT TO audit_viewer
    USING (actor OPERATOR(pg_catalog.=) ANY ((SELECT audit_internal._visible_roles())::text[])
           OR (metadata OPERATOR(pg_catalog.->>) 'db_user') OPERATOR(pg_catalog.=) ANY ((SELECT audit_internal._visible_roles())::text[]));
-- Inserts are what they were: privileges and the insert trigger decide (audit_ext's own inserts
-- run as the owner, whom row level security does not restrict).
CREATE POLICY audit_inserts ON audit.events FOR INSERT TO PUBLIC WITH CHECK (true);

-- audit.allow_view(viewer, of_role): `viewer` also sees the events of every member of `of_role`
-- (a manager and the team). Recorded as audit.view_allowed.
--
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.allow_view(viewer regrole, of_role regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF viewer IS NULL OR of_role IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'audit.allow_view(): viewer and of_role must not be NULL',
            HINT = 'Name two roles, e.g. audit.allow_view(''alice'', ''team_payments'').';
    END IF;
    IF NOT pg_catalog.pg_has_role(viewer::oid, 'audit_viewer', 'MEMBER') THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.allow_view(): %s is not a member of audit_viewer', viewer),
            HINT = format('GRANT audit_viewer TO %s first; members of audit_reader see every event anyway.', viewer);
    END IF;
    INSERT INTO audit.viewers (viewer, of_role, granted_by) VALUES (allow_view.viewer, allow_view.of_role, session_user)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM audit_internal._event('audit.view_allowed', 'audit', 'role', viewer::text, viewer::text, NULL,
                             jsonb_build_object('viewer', viewer::text, 'of_role', of_role::text));
    END IF;
END
$$;
COMMENT ON FUNCTION audit.allow_view IS 'Lets a member of audit_viewer also see the events of every member of of_role.';

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.disallow_view(viewer regrole, of_role regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM audit.viewers v WHERE v.viewer = disallow_view.viewer AND v.of_role = disallow_view.of_role;
    IF FOUND THEN
        PERFORM audit_internal._event('audit.view_disallowed', 'audit', 'role', viewer::text, viewer::text,
                             jsonb_build_object('viewer', viewer::text, 'of_role', of_role::text), NULL);
    END IF;
END
$$;
COMMENT ON FUNCTION audit.disallow_view IS 'Takes back what audit.allow_view gave.';

CREATE VIEW audit.view_grants AS
SELECT v.viewer, v.of_role, v.granted_by, v.granted_at FROM audit.viewers v;
COMMENT ON VIEW audit.view_grants IS 'Which viewers see the events of which roles (audit.allow_view).';

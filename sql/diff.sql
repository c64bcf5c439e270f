-- audit_ext: audit.diff and audit.diff_rows (src/diff.rs), what changed between two versions
-- of an object. SQL wrappers (inlined) around the Rust functions, which first check the
-- documents' depth: deeper than 100 levels is a clear 54000, not an internal error.

CREATE FUNCTION audit_internal._depth_checked(doc jsonb) RETURNS jsonb
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'audit_depth_checked';

CREATE FUNCTION audit.diff(old jsonb, new jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT audit_internal._diff(audit_internal._depth_checked(old), audit_internal._depth_checked(new)) $$;
COMMENT ON FUNCTION audit.diff IS 'What changed between two JSON documents: {"path": {"old": ..., "new": ...}}.';

CREATE FUNCTION audit.diff_rows(old jsonb, new jsonb)
RETURNS TABLE (path text, change text, old_value jsonb, new_value jsonb)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT * FROM audit_internal._diff_rows(audit_internal._depth_checked(old), audit_internal._depth_checked(new)) $$;
COMMENT ON FUNCTION audit.diff_rows IS 'What changed between two JSON documents, one row per difference.';

-- Events that carry old and/or new properties, with what changed:
--   select * from audit.changes where object_name = 'sales-reporting-app' order by at desc limit 20;
-- security_invoker: the caller's own privileges on audit.events apply.
CREATE VIEW audit.changes WITH (security_invoker = true) AS
SELECT e.id, e.at, e.actor, e.action, e.status, e.module, e.object_type, e.object_id,
       e.object_name, e.old, e.new, audit.diff(e.old, e.new) AS diff
FROM audit.events e
WHERE e.old IS NOT NULL OR e.new IS NOT NULL;
COMMENT ON VIEW audit.changes IS 'Events with old/new properties and their diff (audit.diff).';

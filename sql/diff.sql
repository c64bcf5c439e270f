-- audit_ext: audit.diff and audit.diff_rows (src/diff.rs), what changed between two versions
-- of an object. SQL wrappers (inlined) around the Rust functions, which first check the
-- documents' depth: deeper than 100 levels is a clear 54000, not an internal error.

CREATE FUNCTION audit._depth_checked(doc jsonb) RETURNS jsonb
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'audit_depth_checked';

CREATE FUNCTION audit.diff(old jsonb, new jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT audit._diff(audit._depth_checked(old), audit._depth_checked(new)) $$;
COMMENT ON FUNCTION audit.diff IS 'What changed between two JSON documents: {"path": {"old": ..., "new": ...}}.';

CREATE FUNCTION audit.diff_rows(old jsonb, new jsonb)
RETURNS TABLE (path text, change text, old_value jsonb, new_value jsonb)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT * FROM audit._diff_rows(audit._depth_checked(old), audit._depth_checked(new)) $$;
COMMENT ON FUNCTION audit.diff_rows IS 'What changed between two JSON documents, one row per difference.';

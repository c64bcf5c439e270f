-- audit_ext: recording events (src/record.rs). audit.record and audit.set_context are C
-- functions declared here because their arguments must stay raw datums (see src/record.rs).

-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.record(
    action      text,
    object_type text  DEFAULT NULL,
    object_id   text  DEFAULT NULL,
    object_name text  DEFAULT NULL,
    old         jsonb DEFAULT NULL,
    new         jsonb DEFAULT NULL,
    status      text  DEFAULT 'success',
    severity    text  DEFAULT 'info',
    module      text  DEFAULT NULL,
    message     text  DEFAULT NULL,
    metadata    jsonb DEFAULT '{}'
) RETURNS bigint
    LANGUAGE c VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'audit_record';
COMMENT ON FUNCTION audit.record IS 'Records one audit event and returns its id.';

CREATE FUNCTION audit.set_context(
    actor       text    DEFAULT NULL,
    actor_ip    inet    DEFAULT NULL,
    session_id  text    DEFAULT NULL,
    application text    DEFAULT NULL,
    metadata    jsonb   DEFAULT NULL,
    local       boolean DEFAULT true
) RETURNS void
    LANGUAGE c VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'audit_set_context';
COMMENT ON FUNCTION audit.set_context IS
    'Sets who is acting for the events that follow, for this transaction (local) or the session.';

-- An event audit_ext records itself (alerts, capture, DDL, roles, retention): the one place
-- these get their retention class, which the INSERT must carry (src/retention/policies.rs),
-- and the check that the action is one src/vocab.rs lists for the module. Runs as its caller,
-- each of them audit_ext's own SECURITY DEFINER function, trigger or hook.
CREATE FUNCTION audit_internal._event(action text, module text, object_type text, object_id text,
                             object_name text, old jsonb DEFAULT NULL, new jsonb DEFAULT NULL,
                             message text DEFAULT NULL, severity text DEFAULT 'info') RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO audit.events (retention_class, action, module, object_type, object_id, object_name,
                              old, new, message, severity)
    VALUES (audit.retention_class($1), audit_internal._own_action($1, $2), $2, $3, $4, $5, $6, $7, $8, $9)
    RETURNING id
$$;

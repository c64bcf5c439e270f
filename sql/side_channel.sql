-- audit_ext: the side channel (src/side_channel/). audit.record_autonomous is a C function
-- declared here because, like audit.record, its arguments must stay raw datums.

-- Not SECURITY DEFINER: it touches no table, it hands the event to the side channel's writer
-- (a background worker), which inserts it through audit.record's path as the extension's
-- owner. Granted to audit_writer, as audit.record is.
CREATE FUNCTION audit.record_autonomous(
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
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'audit_record_autonomous';
COMMENT ON FUNCTION audit.record_autonomous IS
    'Records one audit event that is kept even when the calling transaction rolls back; returns its id once committed.';

-- A database that just got audit_ext takes its side-channel events again at once (a writer
-- that found it without the extension a moment ago would send them to audit_ext.database for
-- some seconds).
SELECT audit_internal._side_channel_attach();

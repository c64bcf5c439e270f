-- audit_ext: what every maintenance function shares (src/maintenance.rs). Maintenance is a
-- backend state that only audit_ext's own SECURITY DEFINER functions enter
-- (audit_internal._begin_maintenance(), never a setting): one at a time (a lock no SQL caller can take),
-- as the owner, which is what lets it past the guards of sql/guards.sql and the append_only
-- triggers, until audit_internal._end_maintenance() or the end of the transaction. Each maintenance
-- function also sets a short lock_timeout: its strong locks (ACCESS EXCLUSIVE for ATTACH and
-- DROP) queue every writer behind them, so waiting long for a reader (any role can hold a weak
-- lock on audit.events, pg_relation_size() takes one) would stall the audit trail.
-- Maintenance also makes its own events go to a chain no writer uses: these functions take
-- strong table locks first and record their event after, so they never wait for a writer's
-- chain while that writer waits for their lock.

-- Takes a strong lock for audit_ext's maintenance, waiting at most lock_timeout (each
-- maintenance function sets 2 s): writers queue behind a waiting ACCESS EXCLUSIVE request, so
-- a long wait for a reader's lock would stall the audit trail. Fails with a clear 55P03.
-- rel and mode come from audit_ext's own code only.
CREATE FUNCTION audit_internal._lock(rel text, mode text) RETURNS void
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('LOCK TABLE %s IN %s MODE', rel, mode);
EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION USING ERRCODE = '55P03',
        MESSAGE = format('audit_ext could not lock %s within lock_timeout (%s): another transaction holds a lock on it',
                         rel, current_setting('lock_timeout')),
        HINT = 'Writers of the audit trail would queue behind this lock, so audit_ext does not wait longer. Find the holder in pg_locks and pg_stat_activity (often a session idle in transaction), then call again.';
END
$$;

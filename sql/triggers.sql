-- audit_ext: the guards on audit.events.

-- Named so that it fires after any other BEFORE INSERT trigger (they fire in name order):
-- nothing may change or skip a row once it is chained.
CREATE TRIGGER zz_chain_event
    BEFORE INSERT ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.chain_event();

-- Statement level: refuses even statements that would touch no row, for every role. Statement
-- triggers are not inherited, so every partition gets its own (audit._create_partition).
CREATE TRIGGER append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit.events
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit.events_default
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- ALWAYS: session_replication_role = replica (settable by superusers and by roles granted it)
-- must not skip the guards; audit.verify() reports a guard that is not enabled ALWAYS.
ALTER TABLE audit.events ENABLE ALWAYS TRIGGER zz_chain_event, ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE audit.events_default ENABLE ALWAYS TRIGGER append_only;

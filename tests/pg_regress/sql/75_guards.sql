-- The extension's own objects are protected (issue 3, section 3), for superusers too: every
-- attempt fails with 42501 and changes nothing.
SELECT try($$ ALTER TABLE audit.events DISABLE TRIGGER zz_chain_event $$);
SELECT try($$ ALTER TABLE audit.events ADD COLUMN note text $$);
SELECT try($$ ALTER TABLE audit.events ALTER COLUMN txid TYPE numeric $$);
SELECT try($$ ALTER TABLE audit.events RENAME COLUMN actor TO who $$);
SELECT try($$ DROP TRIGGER append_only ON audit.events $$);
SELECT try($$ ALTER TRIGGER append_only ON audit.events RENAME TO off $$);
SELECT try($$ CREATE TRIGGER zzz_after BEFORE INSERT ON audit.events FOR EACH ROW EXECUTE FUNCTION audit_internal.chain_event() $$);
SELECT try($$ CREATE RULE drop_all AS ON INSERT TO audit.events DO INSTEAD NOTHING $$);
SELECT try($$ CREATE POLICY hide ON audit.events USING (false) $$);
-- PostgreSQL's own guard: extension members cannot be dropped one by one.
SELECT try($$ DROP TABLE audit.events $$);
-- Still intact:
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'audit.events'::regclass AND NOT tgisinternal ORDER BY 1;
SELECT count(*) AS rules FROM pg_rewrite WHERE ev_class = 'audit.events'::regclass;
-- Reading is not affected: an index for an auditor's own queries is allowed.
CREATE INDEX events_module_idx ON audit.events (module);
DROP INDEX audit.events_module_idx;
SELECT bool_and(ok) AS all_ok FROM audit.verify();

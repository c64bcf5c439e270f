-- audit_ext: views for everyday auditor queries.

-- Events that carry old and/or new properties, with what changed:
--   select * from audit.changes where object_name = 'sales-reporting-app' order by at desc limit 20;
-- security_invoker: the caller's own privileges on audit.events apply.
CREATE VIEW audit.changes WITH (security_invoker = true) AS
SELECT e.id, e.at, e.actor, e.action, e.status, e.module, e.object_type, e.object_id,
       e.object_name, e.old, e.new, audit.diff(e.old, e.new) AS diff
FROM audit.events e
WHERE e.old IS NOT NULL OR e.new IS NOT NULL;
COMMENT ON VIEW audit.changes IS 'Events with old/new properties and their diff (audit.diff).';

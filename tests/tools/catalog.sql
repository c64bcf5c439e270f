-- The catalog audit_ext leaves in the current database, one line per object, in a stable
-- order: what `tests/integration/t_97_upgrade.sh` compares between a fresh install and an
-- update from the previous version (and what proves that moving SQL between files changed
-- nothing). Everything that decides behaviour is printed: functions with their whole
-- definition (body, volatility, strictness, parallel safety, SECURITY DEFINER, SET clauses),
-- tables with their columns, defaults, constraints and indexes, views, triggers with their
-- enabled state, row level security and policies, event triggers, comments, privileges, roles,
-- and extension membership.
-- Partitions made at run time carry the date in their name and are left out.
--   psql -X -At -f tests/tools/catalog.sql DB
\pset footer off
WITH ext AS (
    SELECT d.classid, d.objid FROM pg_depend d
    WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
      AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'audit_ext')
), rel AS (
    SELECT c.oid, c.relname, c.relkind FROM pg_class c
    WHERE c.relnamespace = 'audit'::regnamespace AND c.relname !~ '^events_[0-9]+_[0-9]{8}'
)
SELECT line FROM (
    SELECT 'extension ' || e.extname || ' schema ' || e.extnamespace::regnamespace || ' relocatable ' || e.extrelocatable
           AS line
    FROM pg_extension e WHERE e.extname = 'audit_ext'
    UNION ALL
    SELECT format('function %s member=%s acl=%s%s', p.oid::regprocedure,
                  EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_proc'::regclass AND ext.objid = p.oid),
                  coalesce(p.proacl::text, '(default)'),
                  E'\n' || CASE WHEN p.prokind IN ('f', 'p', 'w')
                                THEN pg_get_functiondef(p.oid) ELSE '' END)
    FROM pg_proc p WHERE p.pronamespace IN ('audit'::regnamespace, 'audit_internal'::regnamespace)
    UNION ALL
    SELECT format('relation %s kind=%s member=%s acl=%s rls=%s forced=%s', r.relname, r.relkind,
                  EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_class'::regclass AND ext.objid = r.oid),
                  coalesce(c.relacl::text, '(default)'), c.relrowsecurity, c.relforcerowsecurity)
           || coalesce(E'\n' || (SELECT string_agg(format('  column %s %s notnull=%s default=%s', a.attname,
                                                        format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                                        pg_get_expr(ad.adbin, ad.adrelid)), E'\n' ORDER BY a.attnum)
                                  FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                                  WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
           || coalesce(E'\n' || (SELECT string_agg('  constraint ' || co.conname || ' ' || pg_get_constraintdef(co.oid),
                                                   E'\n' ORDER BY co.conname)
                                  FROM pg_constraint co WHERE co.conrelid = r.oid), '')
           || coalesce(E'\n' || (SELECT string_agg('  index ' || pg_get_indexdef(i.indexrelid), E'\n'
                                                   ORDER BY pg_get_indexdef(i.indexrelid))
                                  FROM pg_index i WHERE i.indrelid = r.oid), '')
           || CASE WHEN r.relkind = 'v' THEN E'\n' || pg_get_viewdef(r.oid) ELSE '' END
           || CASE WHEN c.relkind = 'S' THEN E'\n' || (SELECT format('  sequence %s start=%s', s.seqtypid::regtype, s.seqstart)
                                                      FROM pg_sequence s WHERE s.seqrelid = r.oid) ELSE '' END
    FROM rel r JOIN pg_class c ON c.oid = r.oid
    WHERE r.relkind <> 'i'
    UNION ALL
    SELECT format('policy %s on %s cmd=%s permissive=%s roles=%s using=%s check=%s', po.polname, po.polrelid::regclass,
                  po.polcmd, po.polpermissive,
                  (SELECT string_agg(CASE WHEN x = 0 THEN 'public' ELSE x::regrole::text END, ',' ORDER BY 1)
                   FROM unnest(po.polroles) x),
                  pg_get_expr(po.polqual, po.polrelid), pg_get_expr(po.polwithcheck, po.polrelid))
    FROM pg_policy po JOIN rel r ON r.oid = po.polrelid
    UNION ALL
    SELECT format('trigger %s on %s enabled=%s: %s', t.tgname, t.tgrelid::regclass, t.tgenabled, pg_get_triggerdef(t.oid))
    FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal
    UNION ALL
    SELECT format('event trigger %s on %s enabled=%s tags=%s function %s', et.evtname, et.evtevent, et.evtenabled,
                  et.evttags, et.evtfoid::regprocedure)
    FROM pg_event_trigger et
    UNION ALL
    SELECT format('comment on %s: %s', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description)
    FROM pg_description d
    WHERE (d.classoid = 'pg_proc'::regclass AND d.objoid IN (SELECT oid FROM pg_proc WHERE pronamespace IN ('audit'::regnamespace, 'audit_internal'::regnamespace)))
       OR (d.classoid = 'pg_namespace'::regclass AND d.objoid IN ('audit'::regnamespace, 'audit_internal'::regnamespace))
       OR (d.classoid = 'pg_class'::regclass AND d.objoid IN (SELECT oid FROM rel))
    UNION ALL
    SELECT format('role %s login=%s super=%s member of %s', ro.rolname, ro.rolcanlogin, ro.rolsuper,
                  coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m
                            JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = ro.oid), '-'))
    FROM pg_roles ro WHERE ro.rolname LIKE 'audit\_%'
    UNION ALL
    SELECT format('schema %s acl=%s member=%s', n.nspname, n.nspacl,
                  EXISTS (SELECT FROM ext WHERE ext.classid = 'pg_namespace'::regclass AND ext.objid = n.oid))
    FROM pg_namespace n WHERE n.nspname IN ('audit', 'audit_internal')
    UNION ALL
    SELECT format('settings: retention %s', (SELECT string_agg(format('%s=%s', x.pattern, x.keep), ',' ORDER BY x.pattern)
                                          FROM audit.retention x))
) s
ORDER BY line;

-- Fresh extension; one chain so that chain numbers in the output are stable.
CREATE EXTENSION audit_ext;
SELECT current_database() AS db \gset
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
ALTER DATABASE :"db" SET audit_ext.chains = 1;
RESET audit_ext.capture_ddl;
SET audit_ext.chains = 1;  -- this session too: the DDL below is captured as events

-- try(sql): 'ok', or the SQLSTATE, message and hint of the error it raised.
CREATE FUNCTION public.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; hint text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN st || ': ' || msg || CASE WHEN hint <> '' THEN E'\nHINT: ' || hint ELSE '' END;
END $$;

-- What the extension created.
SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'audit' AND c.relname !~ '^events_[0-9]+_[0-9]{8}' -- partitions made at run time
ORDER BY 1;
SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) AS args, p.provolatile, p.proparallel,
       p.prosecdef, p.proisstrict, p.proconfig
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname IN ('audit', 'audit_internal') ORDER BY 1, 2, 3;
-- \df audit.* lists what users call: no helper (audit_ext's are named _*), no trigger or
-- event-trigger function; those are in audit_internal.
SELECT count(*) AS internal_in_audit FROM pg_proc
WHERE pronamespace = 'audit'::regnamespace
  AND (proname LIKE '\_%' OR prorettype IN ('trigger'::regtype, 'event_trigger'::regtype));
SELECT tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
WHERE tgrelid = 'audit.events'::regclass AND NOT tgisinternal ORDER BY 1;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'audit\_%' ORDER BY 1;

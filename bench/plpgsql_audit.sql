-- The baseline a user would otherwise write (issue 3, section 2): a generic PL/pgSQL
-- AFTER ROW trigger that logs TG_OP, the table and both row images as jsonb. No hashing, no
-- chain, no context: only what the popular audit triggers do.
CREATE TABLE plpgsql_log (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text NOT NULL DEFAULT session_user,
    op     text NOT NULL,
    tbl    text NOT NULL,
    old    jsonb,
    new    jsonb
);

CREATE FUNCTION plpgsql_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO plpgsql_log (op, tbl, old, new)
    VALUES (TG_OP, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END
$$;

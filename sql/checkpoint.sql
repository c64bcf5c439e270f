-- audit_ext: signed checkpoints (src/checkpoint.rs, README "Signed checkpoints").

-- The Ed25519 signing keys: the current one (retired_at NULL) and those it replaced. The
-- secret half is readable by the extension's owner only (readers may see the rest, to tell
-- whose key signed a checkpoint). Not dumped with the database: a restored database makes a
-- key of its own, and the checkpoints made before keep verifying with the key noted with them.
CREATE TABLE audit.signing_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_key bytea NOT NULL UNIQUE,
    secret_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
COMMENT ON TABLE audit.signing_keys IS 'Ed25519 keys that sign checkpoints (audit.checkpoint); the secret half is the owner''s only.';

-- Signs the heads of every chain and records the checkpoint as an event (action
-- audit.checkpoint): keep the result outside the database, and later pass it to
-- audit.verify(checkpoint => ...).
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.checkpoint() RETURNS jsonb
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cp jsonb := audit_internal._checkpoint();
BEGIN
    PERFORM audit_internal._event('audit.checkpoint', 'audit', 'checkpoint', cp ->> 'public_key', NULL, NULL, cp,
                         format('checkpoint of %s chain(s)', jsonb_array_length((cp ->> 'payload')::jsonb -> 'chains')));
    RETURN cp;
END
$$;
COMMENT ON FUNCTION audit.checkpoint IS 'Signs the heads of every chain (Ed25519); keep the result outside and pass it to audit.verify(checkpoint => ...).';

-- Replaces the signing key; the old one is kept (retired) so that earlier checkpoints still
-- verify. Recorded (audit.key_rotated, with both public keys).
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.rotate_signing_key() RETURNS text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old text := audit.signing_key();
    new text := audit_internal._new_signing_key();
BEGIN
    PERFORM audit_internal._event('audit.key_rotated', 'audit', 'signing_key', new, NULL,
                         jsonb_build_object('public_key', old), jsonb_build_object('public_key', new));
    RETURN new;
END
$$;
COMMENT ON FUNCTION audit.rotate_signing_key IS 'Replaces the checkpoint signing key (the old one stays, retired); returns the new public key.';

-- The first key, made by CREATE EXTENSION.
SELECT audit_internal._new_signing_key();

-- verify() finds each kind of tampering and names the first affected event. Each case runs
-- in its own transaction (rolled back), as a superuser who switched the guards off.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/include/guards.sql
SELECT chain, events_checked, ok FROM audit.verify();
SELECT jsonb_agg(to_jsonb(h)) AS heads FROM audit.head() h \gset
CREATE TEMP VIEW bad AS SELECT chain, first_bad_seq, reason FROM audit.verify() WHERE NOT ok;

-- 1. Any column of any event changed, with the trigger disabled. Disabling it is refused ...
SELECT try($$ ALTER TABLE audit.events DISABLE TRIGGER append_only $$);
-- ... unless a superuser first disables the extension's event triggers as well.
BEGIN;
ALTER EVENT TRIGGER audit_ext_ddl_command DISABLE;
ALTER TABLE audit.events DISABLE TRIGGER append_only;
UPDATE audit.events SET actor = 'mallory' WHERE seq = 3;
SELECT * FROM bad;
ROLLBACK;
-- Replica mode, which skips ordinary triggers, does not skip these: they are enabled ALWAYS.
SELECT try($$ SET LOCAL session_replication_role = replica;
              UPDATE audit.events SET metadata = metadata || '{"x": 1}' WHERE seq = 5 $$) AS replica_mode;
SELECT try($$ SET LOCAL session_replication_role = replica;
              DELETE FROM audit.events WHERE seq = 5 $$) AS replica_mode;
-- Every hashed column is covered.
DO $$
DECLARE col text; n int := 0;
BEGIN
    FOR col IN SELECT unnest(ARRAY['at', 'actor', 'actor_ip', 'session_id', 'application',
        'action', 'status', 'severity', 'module', 'object_type', 'object_id', 'object_name',
        'old', 'new', 'message', 'metadata', 'txid']) LOOP
        BEGIN
            PERFORM pg_temp.guards_off();
            EXECUTE format('UPDATE audit.events SET %I = %s WHERE seq = 2', col,
                CASE col WHEN 'at' THEN 'at + interval ''1 second'''
                         WHEN 'actor_ip' THEN '''10.9.9.9'''
                         WHEN 'txid' THEN 'txid + 1'
                         WHEN 'old' THEN '''{"t": 1}''' WHEN 'new' THEN '''{"t": 1}'''
                         WHEN 'metadata' THEN '''{"t": 1}'''
                         ELSE '''tampered''' END);
            PERFORM pg_temp.guards_on();
            IF (SELECT first_bad_seq FROM audit.verify() WHERE NOT ok) = 2 THEN n := n + 1;
            ELSE RAISE NOTICE 'change to % not detected', col; END IF;
            RAISE EXCEPTION 'undo';
        EXCEPTION WHEN raise_exception THEN NULL;
        END;
    END LOOP;
    RAISE NOTICE '% of 17 column changes detected at seq 2', n;
END $$;

-- 2. The hash recomputed after the change: the next event's link breaks.
BEGIN;
SELECT pg_temp.guards_off();
UPDATE audit.events SET status = 'denied' WHERE seq = 4;
UPDATE audit.events e SET hash = audit.hash_event(e) WHERE seq = 4;
SELECT pg_temp.guards_on();
SELECT * FROM bad;
ROLLBACK;

-- 3. An event deleted from the middle.
BEGIN;
SELECT pg_temp.guards_off();
DELETE FROM audit.events WHERE seq = 6;
SELECT pg_temp.guards_on();
SELECT * FROM bad;
ROLLBACK;

-- 4. A forged event appended, its hash computed but not linked.
BEGIN;
SELECT pg_temp.guards_off();
INSERT INTO audit.events (id, at, chain, seq, actor, action, status, severity, metadata, txid, prev_hash, hash)
SELECT max(id) + 1, now(), 0, max(seq) + 1, 'mallory', 'forged', 'success', 'info', '{}', 1, '\x00', '\x00'
FROM audit.events;
UPDATE audit.events e SET hash = audit.hash_event(e) WHERE action = 'forged';
SELECT pg_temp.guards_on();
SELECT * FROM bad;
ROLLBACK;

-- 5. Two events swapped (their seq exchanged).
BEGIN;
SELECT pg_temp.guards_off();
UPDATE audit.events SET seq = -seq WHERE seq IN (7, 8);
UPDATE audit.events SET seq = CASE seq WHEN -7 THEN 8 ELSE 7 END WHERE seq IN (-7, -8);
SELECT pg_temp.guards_on();
SELECT * FROM bad;
ROLLBACK;

-- 6. A seq gap (renumbered tail).
BEGIN;
SELECT pg_temp.guards_off();
UPDATE audit.events SET seq = seq + 1 WHERE seq >= (SELECT max(seq) FROM audit.events);
SELECT pg_temp.guards_on();
SELECT * FROM bad;
ROLLBACK;

-- 7. The tail truncated, from the noted head on (the reads recorded since, audit.verify events
-- among them, go with it): only the noted heads can tell.
BEGIN;
SELECT pg_temp.guards_off();
DELETE FROM audit.events WHERE seq >= (SELECT (h ->> 'seq')::bigint FROM jsonb_array_elements(:'heads') h WHERE (h ->> 'chain')::int = 0);
SELECT pg_temp.guards_on();
-- (read-only from here: each verify below would otherwise record itself after the cut, and
-- then the gap shows without heads; read-only, the reads go to the server log)
SET LOCAL transaction_read_only = on;
SELECT count(*) AS bad_without_heads FROM bad;
SELECT chain, ok, first_bad_seq, reason ~ '^noted head seq \d+ is missing: the chain was truncated' AS truncated
FROM audit.verify(heads => :'heads');
ROLLBACK;

-- 8. The whole chain rewritten, every hash recomputed: again only the heads tell.
BEGIN;
SELECT pg_temp.guards_off();
UPDATE audit.events SET message = 'rewritten' WHERE seq = 1;
DO $$
DECLARE r record; prev bytea;
BEGIN
    FOR r IN SELECT id FROM audit.events ORDER BY seq LOOP
        UPDATE audit.events SET prev_hash = prev WHERE id = r.id;
        UPDATE audit.events e SET hash = audit.hash_event(e) WHERE id = r.id RETURNING hash INTO prev;
    END LOOP;
END $$;
SELECT pg_temp.guards_on();
SELECT count(*) AS bad_without_heads FROM bad;
SELECT chain, ok, reason ~ '^noted head seq \d+ has changed .*: the chain was rewritten' AS rewritten
FROM audit.verify(heads => :'heads');
ROLLBACK;

-- 9. One event moved to another retention class (not hashed, it picks the partition): reported
--    as moved, at that event, not as a gap.
BEGIN;
SELECT pg_temp.guards_off();
UPDATE audit.events SET retention_class = 5 WHERE seq = 6;
SELECT pg_temp.guards_on();
SELECT * FROM bad;
ROLLBACK;

-- 10. A forged copy of an event beside the original: verify names the copy, whichever id it has.
BEGIN;
SELECT pg_temp.guards_off();
INSERT INTO audit.events
SELECT (jsonb_populate_record(e, jsonb_build_object('id', e.id + 1000, 'message', 'copy'))).* FROM audit.events e WHERE seq = 6;
SELECT pg_temp.guards_on();
SELECT chain, first_bad_seq, first_bad_id > 1000 AS names_the_copy, reason FROM audit.verify() WHERE NOT ok;
ROLLBACK;
BEGIN;
SELECT pg_temp.guards_off();
INSERT INTO audit.events
SELECT (jsonb_populate_record(e, jsonb_build_object('id', -e.id))).* FROM audit.events e WHERE seq = 6;
SELECT pg_temp.guards_on();
SELECT chain, first_bad_seq, first_bad_id < 0 AS names_the_copy,
       regexp_replace(reason, 'event \d+', 'event N') AS reason FROM audit.verify() WHERE NOT ok;
ROLLBACK;

-- Untouched, with the heads: ok, and says so.
SELECT chain, ok, reason ~ '^matches noted head seq' AS matches FROM audit.verify(heads => :'heads');

-- A range: verify from an id in the middle checks the link to the event before it.
SELECT chain, events_checked, ok FROM audit.verify(from_id => (SELECT id FROM audit.events WHERE seq = 5));
BEGIN;
SELECT pg_temp.guards_off();
UPDATE audit.events SET hash = '\x01' WHERE seq = 4;
SELECT pg_temp.guards_on();
SELECT chain, ok, first_bad_seq, reason FROM audit.verify(from_id => (SELECT id FROM audit.events WHERE seq = 5));
ROLLBACK;

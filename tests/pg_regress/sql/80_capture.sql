-- Row capture with audit.track() (issue 3, section 1). pg_regress commits each statement,
-- so these are real, committed changes and the statement-level triggers fire as in production.
SELECT max(id) AS before FROM audit.events \gset
CREATE VIEW captured AS
SELECT action, object_name, object_id, old, new, message FROM audit.events
WHERE module = 'capture' AND id > :before ORDER BY id;

-- A mixed-case table in a schema with a space, a composite key, an excluded and a masked column.
CREATE SCHEMA "Shop Floor";
CREATE TABLE "Shop Floor"."Orders" (region text, id int, "Total" numeric(10, 2), note text,
                                    card text, updated_at timestamptz,
                                    PRIMARY KEY (region, id));
SELECT audit.track('"Shop Floor"."Orders"', exclude_columns => '{updated_at}', mask_columns => '{card}');
SELECT table_name, operations, exclude_columns, mask_columns, skip_unchanged, key_columns, intact
FROM audit.tracked_tables;
SELECT action, object_name, new FROM captured;

INSERT INTO "Shop Floor"."Orders" VALUES ('eu', 1, 10.50, 'first', '4111-1111', now()),
                                         ('us', 1, 99.00, NULL, NULL, now());
UPDATE "Shop Floor"."Orders" SET "Total" = 12.00, updated_at = now() WHERE region = 'eu';
-- Only the excluded column changes: nothing is recorded (skip_unchanged).
UPDATE "Shop Floor"."Orders" SET updated_at = now() + interval '1 day';
-- The masked column changes: recorded, but only as a different marker.
UPDATE "Shop Floor"."Orders" SET card = '5500-0000' WHERE region = 'eu';
DELETE FROM "Shop Floor"."Orders" WHERE region = 'us';
SELECT action, object_name, object_id,
       old - 'card' AS old, new - 'card' AS new,
       old ->> 'card' ~ '^masked:[0-9a-f]{64}$' AS old_card_masked,
       new ->> 'card' ~ '^masked:[0-9a-f]{64}$' AS new_card_masked
FROM captured WHERE action LIKE 'row.%';
-- The masked value never appears (matched with its dash: a hex marker may contain "4111" by
-- chance); equal values give equal markers, different ones differ.
SELECT count(*) AS leaks FROM audit.events WHERE id > :before AND (old::text LIKE '%4111-1111%' OR new::text LIKE '%4111-1111%');
SELECT count(DISTINCT new ->> 'card') AS distinct_markers FROM captured WHERE action = 'row.update';
-- A NULL stays visible as null.
SELECT new -> 'card' AS null_card FROM captured WHERE action = 'row.insert' AND object_id = '["us", 1]';
-- The diff of a captured update.
SELECT audit.diff(old, new) - 'card' AS diff, audit.diff(old, new) ? 'card' AS card_changed
FROM captured WHERE action = 'row.update';

-- row_history: by object_id text, by a jsonb array, by a jsonb object.
SELECT action, new ->> 'Total' AS total FROM audit.row_history('"Shop Floor"."Orders"', '["eu", 1]');
SELECT count(*) FROM audit.row_history('"Shop Floor"."Orders"', '["eu", 1]'::jsonb);
SELECT count(*) FROM audit.row_history('"Shop Floor"."Orders"', '{"id": 1, "region": "eu"}'::jsonb);
SELECT count(*) FROM audit.row_history('"Shop Floor"."Orders"', '{"id": 1, "region": "us"}'::jsonb);

-- INSERT ... ON CONFLICT DO UPDATE records what happened to each row, never both.
SELECT max(id) AS mark FROM audit.events \gset
INSERT INTO "Shop Floor"."Orders" (region, id, "Total") VALUES ('eu', 1, 13.00), ('eu', 2, 5.00)
ON CONFLICT (region, id) DO UPDATE SET "Total" = excluded."Total";
SELECT action, object_id FROM audit.events WHERE id > :mark ORDER BY id;

-- ALTER TABLE adds, drops and renames columns: capture follows.
ALTER TABLE "Shop Floor"."Orders" ADD COLUMN status text DEFAULT 'new';
UPDATE "Shop Floor"."Orders" SET status = 'paid' WHERE id = 2;
ALTER TABLE "Shop Floor"."Orders" RENAME COLUMN note TO remark;
ALTER TABLE "Shop Floor"."Orders" DROP COLUMN status;
UPDATE "Shop Floor"."Orders" SET remark = 'renamed' WHERE id = 2;
SELECT action, object_id, audit.diff(old, new) AS diff FROM audit.events
WHERE id > :mark AND action = 'row.update' ORDER BY id;
-- Renaming or dropping a masked or excluded column would leak it: refused.
SELECT try($$ ALTER TABLE "Shop Floor"."Orders" RENAME COLUMN card TO card_no $$);
SELECT try($$ ALTER TABLE "Shop Floor"."Orders" DROP COLUMN updated_at $$);

-- TRUNCATE.
SELECT max(id) AS mark FROM audit.events \gset
TRUNCATE "Shop Floor"."Orders";
SELECT action, object_name, object_id FROM audit.events WHERE id > :mark ORDER BY id;

-- track() again changes the settings (recorded with old and new); operations narrow capture.
SELECT audit.track('"Shop Floor"."Orders"', operations => '{delete,insert}');
SELECT table_name, operations, exclude_columns, mask_columns FROM audit.tracked_tables;
SELECT action, old, new FROM audit.events WHERE action = 'capture.track' ORDER BY id DESC LIMIT 1;
SELECT max(id) AS mark FROM audit.events \gset
INSERT INTO "Shop Floor"."Orders" (region, id, remark, updated_at) VALUES ('eu', 3, 'x', now());
UPDATE "Shop Floor"."Orders" SET remark = 'not captured';
SELECT action, object_id, new - 'updated_at' AS new FROM audit.events WHERE id > :mark ORDER BY id;
SELECT tgname FROM pg_trigger WHERE tgrelid = '"Shop Floor"."Orders"'::regclass ORDER BY 1;

-- Capture cannot be switched off behind the log's back.
SELECT try($$ ALTER TABLE "Shop Floor"."Orders" DISABLE TRIGGER audit_ext_capture_insert $$);
SELECT try($$ ALTER TABLE "Shop Floor"."Orders" DISABLE TRIGGER ALL $$);
SELECT try($$ DROP TRIGGER audit_ext_capture_delete ON "Shop Floor"."Orders" $$);
SELECT try($$ ALTER TRIGGER audit_ext_capture_delete ON "Shop Floor"."Orders" RENAME TO x $$);
-- Our own triggers are not reported as DDL.
SELECT count(*) AS trigger_ddl_events FROM audit.events WHERE id > :before AND object_type = 'trigger';

-- A table without a key: object_id is NULL, the row images tell the rows apart.
CREATE TABLE public.nokey (a int, b text);
SELECT audit.track('nokey');
INSERT INTO nokey VALUES (1, 'x'), (1, 'x');
UPDATE nokey SET b = 'y';
SELECT action, object_id, old, new FROM captured WHERE object_name = 'public.nokey' AND action LIKE 'row.%';
-- A replica identity index is preferred to the primary key.
CREATE TABLE public.ident (id int PRIMARY KEY, code text NOT NULL UNIQUE);
ALTER TABLE ident REPLICA IDENTITY USING INDEX ident_code_key;
SELECT audit.track('ident');
INSERT INTO ident VALUES (1, 'A-1');
SELECT object_id FROM captured WHERE object_name = 'public.ident' AND action = 'row.insert';

-- Partitioned tables: changes to any partition are captured on the tracked parent.
CREATE TABLE public.measure (id int, at date, v int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE public.measure_2025 PARTITION OF measure FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.measure_2026 PARTITION OF measure FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT try($$ SELECT audit.track('measure_2025') $$);
SELECT audit.track('measure');
INSERT INTO measure VALUES (1, '2025-06-01', 1), (2, '2026-06-01', 2);
INSERT INTO measure_2026 VALUES (3, '2026-07-01', 3);
UPDATE measure SET at = '2026-06-02' WHERE id = 1;  -- moves the row to another partition
DELETE FROM measure_2026 WHERE id = 3;
-- A partition created or attached later is captured too; a detached one no longer is.
CREATE TABLE public.measure_2027 PARTITION OF measure FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
CREATE TABLE public.measure_2028 (LIKE measure);
ALTER TABLE measure ATTACH PARTITION measure_2028 FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
INSERT INTO measure_2027 VALUES (4, '2027-01-01', 4);
INSERT INTO measure_2028 VALUES (5, '2028-01-01', 5);
ALTER TABLE measure DETACH PARTITION measure_2025;
INSERT INTO measure_2025 VALUES (6, '2025-02-01', 6);
SELECT action, object_name, object_id, old ->> 'at' AS old_at, new ->> 'at' AS new_at
FROM captured WHERE object_name = 'public.measure' AND action LIKE 'row.%';
SELECT c.relname, count(t.tgname) AS capture_triggers
FROM pg_class c LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname LIKE 'audit\_ext\_capture\_%'
WHERE c.relname LIKE 'measure%' GROUP BY 1 ORDER BY 1;
SELECT try($$ ALTER TABLE measure_2026 DISABLE TRIGGER audit_ext_capture_update $$);
TRUNCATE measure_2027;
SELECT action, object_name, new FROM captured WHERE action = 'table.truncate' AND object_name = 'public.measure';

-- Who acted: the application's context, else the session.
BEGIN;
SELECT audit.set_context(actor => 'alice@example.com', actor_ip => '203.0.113.7');
INSERT INTO ident VALUES (2, 'B-2');
COMMIT;
SELECT actor, actor_ip, metadata ->> 'db_user' = current_user AS db_user_kept
FROM audit.events WHERE object_name = 'public.ident' AND object_id = 'B-2';

-- A role with no privilege on audit_ext writes a tracked table: captured all the same.
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
CREATE ROLE regress_capture_clerk;
RESET audit_ext.capture_ddl;
GRANT USAGE ON SCHEMA "Shop Floor" TO regress_capture_clerk;
GRANT INSERT, SELECT ON "Shop Floor"."Orders" TO regress_capture_clerk;
SET ROLE regress_capture_clerk;
INSERT INTO "Shop Floor"."Orders" (region, id) VALUES ('apac', 7);
SELECT try($$ SELECT audit.track('"Shop Floor"."Orders"') $$);
SELECT try($$ SELECT audit.untrack('"Shop Floor"."Orders"') $$);
RESET ROLE;
SELECT actor = session_user AS actor_is_session, object_id FROM audit.events
WHERE object_id = '["apac", 7]';
-- audit_admin may track the tables it may read, and untrack any.
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
CREATE ROLE regress_capture_admin IN ROLE audit_admin;
RESET audit_ext.capture_ddl;
-- tracking needs the right to read the table, checked for the real caller (42501 without it)
SET ROLE regress_capture_admin;
SELECT try($$ SELECT audit.track('nokey', operations => '{delete}') $$) AS without_select;
RESET ROLE;
GRANT SELECT ON nokey TO regress_capture_admin;
SET ROLE regress_capture_admin;
SELECT audit.track('nokey', operations => '{delete}');
SELECT operations FROM audit.tracked_tables WHERE table_name = 'public.nokey';
RESET ROLE;
REVOKE SELECT ON nokey FROM regress_capture_admin;
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
DROP ROLE regress_capture_admin;
RESET audit_ext.capture_ddl;

-- Bad arguments, each with its SQLSTATE.
SELECT try($$ SELECT audit.track(NULL) $$);
SELECT try($$ SELECT audit.track('captured') $$);
SELECT try($$ SELECT audit.track('audit.events') $$);
SELECT try($$ SELECT audit.track('nokey', operations => '{insert,upsert}') $$);
SELECT try($$ SELECT audit.track('nokey', operations => '{}') $$);
SELECT try($$ SELECT audit.track('nokey', exclude_columns => '{A}') $$);
SELECT try($$ SELECT audit.track('nokey', exclude_columns => '{a}', mask_columns => '{a}') $$);
SELECT try($$ SELECT audit.track('ident', mask_columns => '{code}') $$);
SELECT try($$ SELECT audit.track('no_such_table') $$);
CREATE TEMP TABLE tmp_t (x int);
SELECT try($$ SELECT audit.track('tmp_t') $$);

-- untrack stops capture and is recorded; a second call says so and changes nothing.
SELECT audit.untrack('nokey');
SELECT audit.untrack('nokey');
INSERT INTO nokey VALUES (9, 'not captured');
SELECT action, object_name, old ->> 'operations' AS operations FROM captured WHERE action = 'capture.untrack';
SELECT count(*) AS captured_after_untrack FROM captured WHERE object_name = 'public.nokey' AND new ->> 'a' = '9';

-- Dropping a tracked table untracks it and records that.
DROP TABLE ident;
SELECT action, object_name, message FROM captured WHERE action = 'capture.untrack' ORDER BY 1, 2;
SELECT table_name FROM audit.tracked_tables ORDER BY 1;

-- (role capture and the side channel are active exactly when the library is preloaded: the
-- suite runs both ways)
SELECT feature, CASE WHEN feature = 'role_capture'
                     THEN active = (current_setting('shared_preload_libraries') ~ 'audit_ext')
                     WHEN feature = 'side_channel'
                     THEN active = (current_setting('shared_preload_libraries') ~ 'audit_ext'
                                    AND current_setting('audit_ext.level') <> 'off')
                     WHEN feature = 'log_mirror' THEN active = (current_setting('audit_ext.log_events') = 'on')
                     ELSE active END AS as_expected
FROM audit.status() ORDER BY 1;

-- Everything captured is chained like any event.
SELECT bool_and(ok) AS all_ok FROM audit.verify();

DROP TABLE measure, measure_2025, nokey;
DROP SCHEMA "Shop Floor" CASCADE;
DROP VIEW captured;
REVOKE ALL ON SCHEMA public FROM regress_capture_clerk;
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
DROP ROLE regress_capture_clerk;
RESET audit_ext.capture_ddl;

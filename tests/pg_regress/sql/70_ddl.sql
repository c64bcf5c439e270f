-- DDL and GRANT/REVOKE capture through event triggers (issue 3, section 3).
SELECT max(id) AS before FROM audit.events \gset
CREATE SCHEMA "Sales App";
CREATE TABLE "Sales App"."Orders" (id int PRIMARY KEY, total numeric(10, 2) NOT NULL, note text);
ALTER TABLE "Sales App"."Orders" ADD COLUMN status text DEFAULT 'new';
CREATE INDEX orders_status_idx ON "Sales App"."Orders" (status);
CREATE VIEW "Sales App".open_orders AS SELECT id, total FROM "Sales App"."Orders" WHERE status = 'new';
CREATE FUNCTION "Sales App".order_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM "Sales App"."Orders"';
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
CREATE ROLE regress_ddl_clerk;
RESET audit_ext.capture_ddl;
GRANT SELECT ON "Sales App"."Orders" TO regress_ddl_clerk;
REVOKE SELECT ON "Sales App"."Orders" FROM regress_ddl_clerk;
DROP VIEW "Sales App".open_orders;
-- Temporary objects are private to the session: not recorded.
CREATE TEMP TABLE scratch (x int);
DROP TABLE scratch;
SELECT action, object_type, object_name, actor = session_user AS actor_ok, module, status
FROM audit.events WHERE id > :before ORDER BY id;
-- What a captured command carries.
SELECT new - 'statement' AS new, new ->> 'statement' AS statement
FROM audit.events WHERE id > :before AND action = 'ddl.create_table';
SELECT new ->> 'command_tag' AS tag, new ->> 'statement' AS statement
FROM audit.events WHERE id > :before AND action LIKE 'permission.%' ORDER BY id;
SELECT old FROM audit.events WHERE id > :before AND action = 'ddl.drop_view';
-- A DROP ... CASCADE records the object named, not every dependent.
DROP SCHEMA "Sales App" CASCADE;
SELECT action, object_name FROM audit.events WHERE id > :before AND action LIKE 'ddl.drop_%' ORDER BY id;
-- Superusers can switch capture off; other roles cannot.
SET audit_ext.capture_ddl = off;
CREATE TABLE not_captured (x int);
RESET audit_ext.capture_ddl;
SELECT count(*) AS captured FROM audit.events WHERE object_name = 'public.not_captured';
SET ROLE regress_ddl_clerk;
SELECT try($$ SET audit_ext.capture_ddl = off $$);
RESET ROLE;
-- DDL by a role without any audit privilege is captured all the same.
CREATE SCHEMA regress_clerk_space AUTHORIZATION regress_ddl_clerk;
SET ROLE regress_ddl_clerk;
CREATE TABLE regress_clerk_space.t (x int);
RESET ROLE;
SELECT action, object_name FROM audit.events WHERE object_name = 'regress_clerk_space.t';
DROP SCHEMA regress_clerk_space CASCADE;
DROP TABLE not_captured;
SET audit_ext.capture_ddl = off;  -- role and database changes are recorded only preloaded: leave them out of both runs
DROP ROLE regress_ddl_clerk;
RESET audit_ext.capture_ddl;
-- Everything captured is chained like any event.
SELECT bool_and(ok) AS all_ok FROM audit.verify();

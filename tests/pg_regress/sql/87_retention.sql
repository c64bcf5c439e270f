-- Retention (issue 4): partitions by retention class and month, policies, apply_retention
-- with anchors that verify starts from, refusal of direct drops, warm tiers. Dates are relative
-- to now(), so the output shows counts and ages, never partition names or dates. The partition
-- worker is off in this session, so that only the calls below move events (t_90_retention.sh
-- tests the worker).
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/sql/include/guards.sql
SET audit_ext.partition_worker = off;
SELECT max(id) AS before FROM audit.events \gset

-- 1. Partitions. CREATE EXTENSION made the current month and three more for class 0.
SELECT count(*) >= 4 AS months_ahead, bool_and(class = 0) AS class_0,
       bool_and(to_at = (timezone('UTC', timezone('UTC', from_at) + interval '1 month'))) AS monthly
FROM audit.partitions WHERE dropped_at IS NULL;
SELECT count(*) AS missing_now FROM audit.partitions
WHERE dropped_at IS NULL AND now() >= from_at AND now() < to_at HAVING count(*) <> 1;
-- Every partition carries the guards (row triggers are cloned, append_only is added).
SELECT count(*) AS unguarded FROM pg_inherits i
WHERE i.inhparent = 'audit.events'::regclass
  AND (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = i.inhrelid
         AND t.tgname IN ('zz_chain_event', 'append_only', 'zz_alerts') AND t.tgenabled = 'A') <> 3;
SELECT try($$ SELECT * FROM audit.ensure_partitions(interval '-1 day') $$);
SELECT try($$ SELECT * FROM audit.ensure_partitions(interval '50 years') $$);
-- ensure_partitions gives every event waiting in the default partition a partition (earlier
-- tests back-date events: how many partitions that takes depends on the date) and covers
-- every class from the current period to now() + ahead; a second call has nothing to do.
SELECT count(*) >= 0 AS created FROM audit.ensure_partitions(interval '2 months');
SELECT count(*) AS waiting_in_default FROM ONLY audit.events_default;
SELECT count(*) AS uncovered FROM generate_series(audit_internal._period_start(now(), 'month'), now() + interval '2 months',
                                                  interval '1 hour') t
WHERE NOT EXISTS (SELECT FROM audit.partitions p WHERE p.class = 0 AND p.dropped_at IS NULL
                  AND p.from_at <= t AND t < p.to_at);
SELECT count(*) AS created_again FROM audit.ensure_partitions(interval '2 months');

-- 2. Policies: the default is 365 days; the most specific pattern wins.
SELECT action_pattern, kept_for, retention_class FROM audit.retention_policies;
SELECT pattern, kept_for, retention_class FROM audit.set_retention('30 days', 'page.*');
SELECT pattern, kept_for, retention_class FROM audit.set_retention('5 years', 'authentication.*');
SELECT pattern, kept_for, retention_class FROM audit.set_retention(NULL, 'authentication.admin.*');
SELECT pattern, kept_for, retention_class FROM audit.set_retention('0', 'legal.hold');
SELECT pattern, kept_for, retention_class FROM audit.set_retention('400 days');
SELECT action_pattern, kept_for, retention_class FROM audit.retention_policies;
SELECT a AS action, audit.retention_class(a) AS class
FROM unnest(ARRAY['page.view', 'pages.view', 'authentication.login', 'authentication.admin.sudo',
                  'legal.hold', 'legal.hold.x', 'VM_POWER_OFF', 'row.insert']) a;
-- A new class gets its partitions at once, in the same transaction.
SELECT class, count(*) > 0 AS has_partitions FROM audit.partitions
WHERE dropped_at IS NULL GROUP BY class ORDER BY class;
SELECT try($$ SELECT audit.set_retention('1 day', 'a*b') $$);
SELECT try($$ SELECT audit.set_retention('1 day', '*.login') $$);
SELECT try($$ SELECT audit.set_retention('1 day', 'a b.*') $$);
SELECT try($$ SELECT audit.set_retention('-1 day', 'x.*') $$);
SELECT try($$ SELECT audit.set_retention('1 day', NULL) $$);
SELECT try($$ SELECT audit.record('x.y', module => 'retention') $$);
SELECT action, object_id, old, new FROM audit.events WHERE action = 'retention.set' ORDER BY id;

-- Events go to their class's partition, on chains of their class (class × 1000 + n).
SELECT audit.record('page.view') IS NOT NULL AS recorded;
SELECT audit.record('authentication.login') IS NOT NULL AS recorded;
SELECT action, retention_class, chain / 1000 AS chain_class, tableoid::regclass::text ~ ('^audit\.events_' || retention_class || '_\d{8}$') AS own_partition
FROM audit.events WHERE action IN ('page.view', 'authentication.login') AND id > :before ORDER BY id;

-- 3. Old events. A direct INSERT with an old time lands in the default partition until its
-- month gets a partition of its own (from the worker, off here, or ensure_partitions).
INSERT INTO audit.events (action, at, retention_class) VALUES
    ('page.view', now() - interval '70 days', audit.retention_class('page.view')),
    ('page.view', now() - interval '69 days', audit.retention_class('page.view')),
    ('page.view', now() - interval '68 days', audit.retention_class('page.view'));
INSERT INTO audit.events (action, at) VALUES
    ('billing.charge', now() - interval '500 days'),
    ('legal.hold', now() - interval '500 days'),   -- filed under class 0, kept forever
    ('billing.refund', now() - interval '600 days');
-- Two old events with a current one between them on the same chain: the old month's
-- partition then holds two separate stretches of that chain (two anchors).
INSERT INTO audit.events (action, at) VALUES
    ('archive.a', now() - interval '700 days'), ('archive.now', now()), ('archive.b', now() - interval '700 days');
SELECT count(*) AS waiting_in_default FROM ONLY audit.events_default;
-- A dry run changes nothing.
-- (85_search recorded one event dated 2024-01-01: past the 400 days of class 0)
SELECT retention_class, events FROM audit.apply_retention(dry_run => true);
-- Once their months have partitions, the dry run lists them.
SELECT count(*) >= 4 AS months FROM audit.ensure_partitions(interval '0');
SELECT retention_class, sum(events) AS events, bool_or(dropped) AS dropped
FROM audit.apply_retention(dry_run => true) GROUP BY 1 ORDER BY 1;
SELECT count(*) AS still_waiting FROM ONLY audit.events_default;
SELECT count(*) AS retention_events FROM audit.events WHERE action = 'retention.applied';
SELECT * FROM audit.verify() WHERE NOT ok;

-- (the three page views may span two months: one row per class)
SELECT retention_class, sum(events) AS events, bool_and(dropped) AS dropped, count(archive_file) AS archived,
       bool_and((SELECT sum((c.value ->> 'events')::int) FROM jsonb_each(chains) c) = events) AS chains_add_up,
       bool_and(now() - to_at > interval '30 days') AS past_its_period
FROM audit.apply_retention() GROUP BY retention_class ORDER BY retention_class;
-- The month with the legal hold stays; the others are gone, and said so in the log.
SELECT action, count(*) FROM audit.events
WHERE action IN ('page.view', 'billing.charge', 'legal.hold', 'billing.refund', 'archive.a', 'archive.now', 'archive.b')
GROUP BY action ORDER BY action;
SELECT count(*) AS anchors_of_the_split_chain FROM audit.retention_anchors a
WHERE a.chain = (SELECT chain FROM audit.events WHERE action = 'archive.now');
SELECT count(*) AS waiting_in_default FROM ONLY audit.events_default;
SELECT action, module, new -> 'events' AS events, jsonb_array_length(new -> 'partitions') >= 4 AS partitions,
       jsonb_array_length(new -> 'anchors') > 0 AS has_anchors, message ~ '^7 event\(s\) in \d+ partition\(s\) dropped by retention$' AS message
FROM audit.events WHERE action = 'retention.applied';
SELECT count(*) >= 4 AS dropped_partitions FROM audit.partitions WHERE dropped_at IS NOT NULL AND dropped_by IS NOT NULL;
-- The anchors table is the same as the anchors in the event.
SELECT count(*) AS anchor_mismatches FROM (
    SELECT chain, from_seq, to_seq, encode(to_hash, 'hex') AS h FROM audit.retention_anchors
    EXCEPT
    SELECT (a ->> 'chain')::int, (a ->> 'from_seq')::bigint, (a ->> 'to_seq')::bigint, a ->> 'to_hash'
    FROM audit.events e, jsonb_array_elements(e.new -> 'anchors') a WHERE e.action = 'retention.applied') d;
-- verify passes, across the anchors, and says which it used.
SELECT bool_and(ok) AS all_ok, count(*) FILTER (WHERE reason LIKE 'verified across retention anchor%') > 0 AS used_anchor
FROM audit.verify();
-- New events continue the same chains.
SELECT audit.record('page.view') IS NOT NULL AS recorded;
SELECT audit.record('billing.charge') IS NOT NULL AS recorded;
SELECT bool_and(ok) AS all_ok FROM audit.verify();
-- Nothing else is old enough now: a second run drops nothing and records nothing.
SELECT count(*) AS dropped_again FROM audit.apply_retention();
SELECT count(*) AS applied_events FROM audit.events WHERE action = 'retention.applied';

-- 4. Partitions leave only through apply_retention: for superusers too.
SELECT name AS part FROM audit.partitions WHERE dropped_at IS NULL ORDER BY from_at LIMIT 1 \gset
-- (partition names carry their month: masked, so that the output is the same on any date)
CREATE FUNCTION pg_temp.try_masked(q text) RETURNS text LANGUAGE sql AS
$$ SELECT regexp_replace(try(q), 'events_(\d+)_\d{8}', 'events_\1_YYYYMMDD', 'g') $$;
SELECT pg_temp.try_masked(format('DROP TABLE audit.%I', :'part')) AS try;
SELECT pg_temp.try_masked(format('TRUNCATE audit.%I', :'part')) AS try;
SELECT pg_temp.try_masked(format('DELETE FROM audit.%I', :'part')) AS try;
SELECT pg_temp.try_masked(format('ALTER TABLE audit.events DETACH PARTITION audit.%I', :'part')) AS try;
SELECT pg_temp.try_masked(format('ALTER TABLE audit.%I DISABLE TRIGGER append_only', :'part')) AS try;
SELECT pg_temp.try_masked(format('ALTER TABLE audit.%I SET TABLESPACE pg_default', :'part')) AS try;
SELECT pg_temp.try_masked(format('DROP TRIGGER append_only ON audit.%I', :'part')) AS try;
SELECT try($$ CREATE TABLE audit.events_x PARTITION OF audit.events FOR VALUES FROM (99, '2000-01-01') TO (99, '2001-01-01') $$);
SELECT try($$ TRUNCATE audit.events $$);
SET ROLE audit_admin;
SELECT try($$ SET audit_ext.maintenance = on $$) AS maintenance_by_admin;
RESET ROLE;
-- A superuser who switches the event triggers off anyway: verify names the missing partition
-- and the events missing from the chains (rolled back afterwards).
BEGIN;
SELECT pg_temp.guards_off();
SELECT format('DROP TABLE audit.%I', :'part') AS drop_stmt \gset
:drop_stmt;
SELECT pg_temp.guards_on();
SELECT chain IS NULL AS guard_row, ok,
       regexp_replace(regexp_replace(reason, '\d{4}-\d\d-\d\d \d\d:\d\d', 'DATE', 'g'), '(_|seq )\d+', '\1N', 'g') AS reason
FROM audit.verify() WHERE NOT ok ORDER BY chain NULLS FIRST;
ROLLBACK;
SELECT bool_and(ok) AS all_ok FROM audit.verify();

-- 5. Warm tier: partitions older than 60 days move to another tablespace and stay readable.
SET client_min_messages = warning;
DROP TABLESPACE IF EXISTS audit_regress_warm;  -- left by a run that failed before 90_drop_extension
RESET client_min_messages;
SET allow_in_place_tablespaces = on;
CREATE TABLESPACE audit_regress_warm LOCATION '';
RESET allow_in_place_tablespaces;
SELECT try($$ SELECT audit.set_tier('60 days', 'no_such_tablespace') $$);
SELECT try($$ SELECT audit.set_tier(NULL, 'audit_regress_warm') $$);
SELECT count(*) > 0 AS moved FROM audit.set_tier('60 days', 'audit_regress_warm');
-- (how many partitions are old enough depends on the date: the check is that exactly those moved)
SELECT p.to_at <= now() - interval '60 days' AS old, coalesce(c.reltablespace = t.oid, false) AS in_warm,
       count(*) > 0 AS some
FROM audit.partitions p JOIN pg_class c ON c.relname = p.name AND c.relnamespace = 'audit'::regnamespace
CROSS JOIN (SELECT oid FROM pg_tablespace WHERE spcname = 'audit_regress_warm') t
WHERE p.dropped_at IS NULL GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) > 0 AS warm_indexes, bool_and(i.reltablespace = t.oid) AS all_indexes_moved
FROM audit.partitions p JOIN pg_class c ON c.relname = p.name AND c.relnamespace = 'audit'::regnamespace
JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class i ON i.oid = x.indexrelid
CROSS JOIN (SELECT oid FROM pg_tablespace WHERE spcname = 'audit_regress_warm') t
WHERE p.dropped_at IS NULL AND p.to_at <= now() - interval '60 days';
SELECT count(*) AS legal_hold_readable FROM audit.events WHERE action = 'legal.hold';
SELECT bool_and(ok) AS all_ok FROM audit.verify();
SELECT action, object_id, new FROM audit.events WHERE action = 'retention.tier';
SELECT count(*) AS removed FROM audit.set_tier('60 days', NULL);
SELECT count(*) AS tiers FROM audit.tiers;

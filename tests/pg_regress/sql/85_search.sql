-- The query language of audit.search (issue 5, section 1; docs/query-language.md).
-- A small, fixed set of events; `at` set explicitly so that the output is stable.
SELECT max(id) AS before FROM audit.events \gset
CREATE TEMP TABLE ids (label text PRIMARY KEY, id bigint);
CREATE FUNCTION pg_temp.ev(label text, at timestamptz, action text, status text, severity text,
                           actor text, ip inet, object_id text, object_name text, message text,
                           metadata jsonb, new jsonb DEFAULT NULL) RETURNS void LANGUAGE sql AS $$
    INSERT INTO audit.events (at, action, status, severity, actor, actor_ip, object_type, object_id,
                              object_name, message, metadata, new)
    VALUES (at, action, status, severity, actor, ip, 'vm', object_id, object_name, message, metadata, new);
    INSERT INTO ids SELECT label, max(id) FROM audit.events;
$$;
SELECT pg_temp.ev('a', now() - interval '2 hours', 'authentication.login', 'failure', 'warning', 'alice@example.com', '203.0.113.7', NULL, NULL, 'wrong password', '{"tags": ["budget", "q3"], "request_id": "r1"}');
SELECT pg_temp.ev('b', now() - interval '30 hours', 'authentication.login', 'failure', 'warning', 'alice@example.com', '203.0.113.9', NULL, NULL, 'wrong password', '{"tags": "budget"}');
SELECT pg_temp.ev('c', now() - interval '1 hour', 'authentication.login', 'success', 'info', 'bob@example.com', '10.1.2.3', NULL, NULL, NULL, '{}');
SELECT pg_temp.ev('d', now() - interval '10 minutes', 'policy.update', 'success', 'high', 'carol', '2001:db8::7', 'p-1', 'Disk Full Policy', 'disk full on node 7', '{"request id": "x y"}');
SELECT pg_temp.ev('e', '2024-01-01 10:00:00+00', 'VM_POWER_OFF', 'success', 'info', 'carol', NULL, 'vm-42', 'sales-reporting-app', NULL, '{"cpu": 4}', '{"state": "stopped", "cpu": 8, "config": {"mem": 16}}');
SELECT pg_temp.ev('f', now() - interval '5 minutes', 'policy.delete', 'denied', 'critical', 'mallory', '198.51.100.1', 'p-2', 'prod-db_policy', 'denied: 100% quota', '{"tags": ["prod"]}');
SELECT pg_temp.ev('g', now() - interval '1 minute', 'resource.modify', 'success', 'notice', 'carol', '10.200.0.1', '42', 'École "quoted" name', 'état', '{"n": 4.0}', '{"state": "running"}');

-- s(query): the labels of the events a query finds, in search order (newest first).
CREATE FUNCTION pg_temp.s(q text) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(i.label, ' ' ORDER BY r.id DESC), '-')
    FROM audit.search(q, 1000) r JOIN ids i USING (id)
$$;
CREATE TEMP TABLE cases (n serial, q text);
INSERT INTO cases (q) VALUES
    -- field:value on text fields, case-sensitive
    ('action:authentication.login'), ('status:failure'), ('status:failed'), ('severity:high'),
    ('actor:carol'), ('actor:Carol'), ('object_id:vm-42'), ('object_name:sales-reporting-app'),
    -- aliases
    ('event_type:policy.update'), ('user:bob@example.com'), ('actor.email:alice@example.com'),
    ('ip:10.1.2.3'), ('timestamp:>now-90m'),
    -- wildcards
    ('action:policy.*'), ('object_name:*policy'), ('actor:*@example.com'), ('object_name:prod-db_*'),
    ('message:"denied: 100% quota"'), ('message:*100%*'), ('message:*10_%*'),
    -- IPs: address, CIDR, trailing wildcard, IPv6
    ('actor_ip:203.0.113.7'), ('actor_ip:203.0.113.0/24'), ('actor_ip:203.0.113.*'), ('actor_ip:10.*'),
    ('actor_ip:2001:db8::/32'), ('actor_ip:10.0.0.0/8 AND NOT actor_ip:10.1.0.0/16'),
    -- times and numbers
    ('at:>now-24h'), ('at:<now-24h'), ('at:>=now-3h AND at:<=now-90m'), ('at:2024-01-01'),
    ('at:>2024-01-01 AND at:<now-1d'), ('at:<2024-01-02T00:00:00Z'),
    -- json paths
    ('metadata.tags:budget'), ('metadata.tags:prod'), ('metadata.request_id:r1'),
    ('metadata."request id":"x y"'), ('metadata.cpu:4'), ('metadata.n:4'), ('new.state:stopped'),
    ('new.state:run*'), ('new.cpu:>4'), ('new.config.mem:>=16'), ('metadata.cpu:<4'),
    -- quoted values, free text
    ('object_name:"Disk Full Policy"'), ('"disk full"'), ('DISK'), ('quota'), ('sales'), ('école'), ('École'),
    ('"\"quoted\""'),
    -- boolean structure: AND binds tighter than OR; NOT; parentheses; adjacent terms AND
    ('status:denied OR status:failure AND actor:carol'), ('(status:denied OR status:failure) AND actor:alice@example.com'),
    ('NOT status:success'), ('action:policy.* NOT status:denied'), ('NOT NOT severity:high'),
    ('actor:carol severity:info'), ('NOT actor_ip:10.0.0.0/8'),
    ('event_type:authentication.login AND status:failed AND timestamp:>now-24h');
SELECT n, q, pg_temp.s(q) AS found FROM cases ORDER BY n;

-- Keyset paging, newest first.
SELECT string_agg(i.label, ' ' ORDER BY r.id DESC) AS page1 FROM audit.search('actor:carol OR actor:mallory', 2) r JOIN ids i USING (id);
SELECT string_agg(i.label, ' ' ORDER BY r.id DESC) AS page2
FROM audit.search('actor:carol OR actor:mallory', 2, after_id => (SELECT id FROM ids WHERE label = 'f')) r JOIN ids i USING (id);

-- Syntax errors: 42601, with the position and what was expected.
CREATE TEMP TABLE bad (n serial, q text);
INSERT INTO bad (q) VALUES ('acter:x'), ('status:'), ('(status:failure'), ('status:failure)'),
    ('message:"unterminated'), ('actor:>x'), ('at:yesterday'), ('id:abc'), ('actor_ip:300.1.2.3'),
    ('actor_ip:10.*.1.*'), ('AND'), (''), ('   '), ('status:failure AND'), ('new.cpu:>four'),
    (repeat('(', 100) || 'a' || repeat(')', 100));
SELECT n, q, try(format('SELECT audit.search(%L)', q)) AS error FROM bad ORDER BY n;
SELECT try($$ SELECT audit.search(NULL) $$);
SELECT try($$ SELECT audit.search('x', 0) $$);

-- What search runs: values only ever as parameters.
SELECT audit.explain_query('actor:alice@example.com AND message:"x''; DROP TABLE audit.events; --"');

-- Hostile input, 3,000 random queries: every one either runs or fails with a clean 42601.
DO $fuzz$
DECLARE
    alphabet text[] := ARRAY['a', 'b', ':', '(', ')', '"', '*', '\', ' ', ';', '''', '-', '/', '$', '<', '>', '=',
                             'AND ', 'OR ', 'NOT ', 'action:', 'actor_ip:', 'at:>now-', 'metadata.', 'new.x:',
                             '--', '/*', '$$', '1', '.', 'é', '🚀', '%', '_', chr(9)];
    q text; ok int := 0; syntax int := 0; other int := 0;
BEGIN
    PERFORM setseed(0.42);
    FOR i IN 1..3000 LOOP
        SELECT string_agg(alphabet[1 + floor(random() * array_length(alphabet, 1))::int], '')
        INTO q FROM generate_series(1, 1 + floor(random() * 30)::int);
        BEGIN
            PERFORM count(*) FROM audit.search(q, 5);
            ok := ok + 1;
        EXCEPTION WHEN syntax_error THEN
            syntax := syntax + 1;
        WHEN OTHERS THEN
            other := other + 1;
            RAISE NOTICE 'unexpected % for %', SQLSTATE, q;
        END;
    END LOOP;
    RAISE NOTICE 'fuzz: some ran: %, some were syntax errors: %, other errors: %', ok > 0, syntax > 0, other;
END $fuzz$;
-- 100 KB strings and deep nesting.
SELECT try(format('SELECT count(*) FROM audit.search(%L)', 'message:"' || repeat('x', 100000) || '"')) AS long_value;
SELECT try(format('SELECT count(*) FROM audit.search(%L)', repeat('(', 10000) || 'a' || repeat(')', 10000))) AS deep;
SELECT try(format('SELECT count(*) FROM audit.search(%L)', repeat('NOT ', 10000) || 'a')) AS many_nots;
-- (each search recorded itself: module audit)
SELECT count(*) AS events_still_there FROM audit.events WHERE id > :before AND module IS DISTINCT FROM 'audit';

DELETE FROM ids;

-- Alerts count only events recorded after the rule was created, and store group_by as the
-- column it names (aliases resolved).
SELECT count(audit.record('regress.alert_probe')) FROM generate_series(1, 3);
SELECT audit.create_alert('regress_probe', 'action:regress.alert_probe', threshold => 2, "window" => '1 hour',
                          group_by => ' User ');
SELECT group_by FROM audit.alerts WHERE name = 'regress_probe';
SELECT audit.record('regress.alert_probe') IS NOT NULL AS one_after;
SELECT count(*) AS fired_after_one FROM audit.events WHERE action = 'alert.fired' AND object_name = 'regress_probe';
SELECT audit.record('regress.alert_probe') IS NOT NULL AS two_after;
SELECT count(*) AS fired_after_two, max((new ->> 'count')::int) AS counted FROM audit.events
WHERE action = 'alert.fired' AND object_name = 'regress_probe';
SELECT audit.drop_alert('regress_probe');

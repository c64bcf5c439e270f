-- The test vectors of docs/hash-format.md, under settings chosen to differ from the server's.
SET timezone = 'Pacific/Chatham';
SET datestyle = 'SQL, DMY';
SET extra_float_digits = -15;
SET intervalstyle = 'iso_8601';
SELECT encode(audit.hash_event(row(
    42, '2026-03-10 14:30:45.123456+00', 1, 7, 'admin@company.com', '203.0.113.45',
    'sess_abcdef123456', 'cloudpi', 'resource.modify', 'success', 'info', 'compute',
    'ec2_instance', 'i-0123456789abcdef', 'sales-reporting-app ☃ 🚀', '{"state": "running"}',
    '{"tags": ["a", "b"], "state": "stopped"}', E'Stopped by policy\n"quoted"',
    '{"request_id": "req_xyz789", "amount": 1.10, "big": 12345678901234567890.5}', 1000,
    '\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', NULL, 0)::audit.events),
    'hex') AS vector_1;
SELECT encode(audit.hash_event(row(
    1, '2000-01-01 00:00:00+00', 0, 1, 'postgres', '2001:db8::1/64', NULL, NULL,
    'authentication.login', 'failure', 'warning', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    '{}', 1, NULL, NULL, 0)::audit.events), 'hex') AS vector_2;
-- Any change to any hashed column changes the hash.
WITH v AS (SELECT row(1, '2000-01-01 00:00:00+00', 0, 1, 'postgres', '2001:db8::1/64', NULL,
    NULL, 'authentication.login', 'failure', 'warning', NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, '{}', 1, NULL, NULL, 0)::audit.events AS e)
SELECT count(DISTINCT h) AS distinct_hashes FROM (
    SELECT audit.hash_event(e) h FROM v
    UNION ALL SELECT audit.hash_event((e).*::audit.events) FROM v
    UNION ALL SELECT audit.hash_event(row(2, (e).at, 0, 1, (e).actor, (e).actor_ip, NULL, NULL, (e).action, (e).status, (e).severity, NULL, NULL, NULL, NULL, NULL, NULL, NULL, (e).metadata, 1, NULL, NULL, 0)::audit.events) FROM v
    UNION ALL SELECT audit.hash_event(row(1, (e).at + interval '1 microsecond', 0, 1, (e).actor, (e).actor_ip, NULL, NULL, (e).action, (e).status, (e).severity, NULL, NULL, NULL, NULL, NULL, NULL, NULL, (e).metadata, 1, NULL, NULL, 0)::audit.events) FROM v
    UNION ALL SELECT audit.hash_event(row(1, (e).at, 0, 1, (e).actor, '2001:db8::1/65', NULL, NULL, (e).action, (e).status, (e).severity, NULL, NULL, NULL, NULL, NULL, NULL, NULL, (e).metadata, 1, NULL, NULL, 0)::audit.events) FROM v
    UNION ALL SELECT audit.hash_event(row(1, (e).at, 0, 1, (e).actor, (e).actor_ip, '', NULL, (e).action, (e).status, (e).severity, NULL, NULL, NULL, NULL, NULL, NULL, NULL, (e).metadata, 1, NULL, NULL, 0)::audit.events) FROM v
    UNION ALL SELECT audit.hash_event(row(1, (e).at, 0, 1, (e).actor, (e).actor_ip, NULL, NULL, (e).action, (e).status, (e).severity, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{"a": 1}', 1, NULL, NULL, 0)::audit.events) FROM v
    UNION ALL SELECT audit.hash_event(row(1, (e).at, 0, 1, (e).actor, (e).actor_ip, NULL, NULL, (e).action, (e).status, (e).severity, NULL, NULL, NULL, NULL, NULL, NULL, NULL, (e).metadata, 1, '\x00', NULL, 0)::audit.events) FROM v
) s;

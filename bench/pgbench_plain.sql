-- One plain INSERT per transaction into the unchained copy (bench/schema.sql).
-- Same logical row as pgbench_record.sql; RETURNING id as audit.record returns the id.
\set oid random(1, 10000000)
\set rid random(1, 1000000000)
INSERT INTO bench_plain (action, object_type, object_id, metadata)
VALUES ('bench.event', 'order', :oid, ('{"request_id": "req-' || :rid || '"}')::jsonb)
RETURNING id;

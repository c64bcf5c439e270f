-- One audit.record call per transaction: the same logical row as pgbench_plain.sql.
\set oid random(1, 10000000)
\set rid random(1, 1000000000)
SELECT audit.record('bench.event', 'order', :oid,
                    metadata => ('{"request_id": "req-' || :rid || '"}')::jsonb);

-- audit.record with positional and named arguments; what the trigger fills in.
SELECT audit.record('authentication.login', status => 'failure', severity => 'warning',
                    metadata => '{"user_agent": "curl/8", "attempt": 3}') AS id1;
SELECT audit.record('VM_POWER_OFF', 'vm', 'vm-42', 'sales-reporting-app',
                    '{"state": "running"}', '{"state": "stopped"}', module => 'virt',
                    message => 'stopped by admin') AS id2;
SELECT id, chain, seq, actor = session_user AS actor_is_session_user, action, status, severity,
       module, object_type, object_id, object_name, old, new, message, metadata,
       prev_hash IS NULL AS genesis, length(hash) AS hash_len, hash = audit.hash_event(e) AS hash_ok,
       txid > 0 AS has_txid
FROM audit.events e ORDER BY id;

-- Each event links to the one before it.
SELECT e.seq, e.prev_hash = p.hash AS linked
FROM audit.events e JOIN audit.events p ON p.chain = e.chain AND p.seq = e.seq - 1 ORDER BY e.seq;

-- Context: for this transaction only (local, the default) ...
BEGIN;
SELECT audit.set_context(actor => 'alice@example.com', actor_ip => '203.0.113.45',
                         session_id => 'sess-1', application => 'shop',
                         metadata => '{"tenant": "acme", "request_id": "ctx"}');
SELECT audit.record('order.create', 'order', '1001', metadata => '{"request_id": "req-7"}');
COMMIT;
SELECT audit.record('after.commit');
-- Without context: session_user, inet_client_addr() (NULL over a Unix socket), the backend's
-- session id (log_line_prefix %c) and application_name.
SELECT action, actor, actor_ip, CASE WHEN session_id ~ '^[0-9a-f]+\.[0-9a-f]+$' THEN '<backend>'
       ELSE session_id END AS session_id, application,
       metadata - '{db_user,db_client_ip,db_session_id}'::text[] AS metadata,
       metadata->>'db_user' = session_user AS db_user_kept,
       metadata->>'db_session_id' ~ '^[0-9a-f]+\.[0-9a-f]+$' AS db_session_kept
FROM audit.events WHERE action IN ('order.create', 'after.commit') ORDER BY id;

-- ... or for the session; set_context() with no arguments clears it.
SELECT audit.set_context(actor => 'batch-job', local => false);
SELECT audit.record('batch.run');
SELECT audit.set_context(local => false);
SELECT audit.record('batch.done');
SELECT action, actor = session_user AS is_session_user, actor
FROM audit.events WHERE action LIKE 'batch.%' ORDER BY id;

-- Unicode, emoji and long object names are stored and hashed as given.
SELECT audit.record('file.upload', 'file', 'ü-1', repeat('données 🚀 ', 5000),
                    new => '{"名前": "ファイル", "emoji": "🎉", "n": 12345678901234567890.10}');
SELECT length(object_name), new, hash = audit.hash_event(e) AS hash_ok
FROM audit.events e WHERE action = 'file.upload';

-- A direct INSERT by a privileged role goes through the same trigger.
INSERT INTO audit.events (action, object_type, object_id) VALUES ('direct.insert', 'x', '1');
SELECT seq, actor = session_user AS actor_ok, status, severity, metadata, hash = audit.hash_event(e) AS hash_ok
FROM audit.events e WHERE action = 'direct.insert';

-- Rolled-back work leaves no trace and no gap.
BEGIN;
SELECT audit.record('rolled.back') IS NOT NULL AS recorded;
ROLLBACK;
BEGIN;
SELECT audit.record('kept.1') IS NOT NULL AS recorded;
SAVEPOINT s;
SELECT audit.record('undone') IS NOT NULL AS recorded;
ROLLBACK TO SAVEPOINT s;
SELECT audit.record('kept.2') IS NOT NULL AS recorded;
COMMIT;
SELECT seq, action FROM audit.events
WHERE seq > (SELECT seq FROM audit.events WHERE action = 'direct.insert') ORDER BY seq;
SELECT chain, events_checked, ok, first_bad_id, reason FROM audit.verify();

-- A pooler's DISCARD ALL (or RESET ALL) between clients clears a session context.
SELECT audit.set_context(actor => 'previous-client', local => false);
DISCARD ALL;
SELECT audit.record('after.discard');
SELECT actor = session_user AS context_cleared FROM audit.events WHERE action = 'after.discard';

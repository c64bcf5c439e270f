-- audit.diff / audit.diff_rows / audit.changes (issue 3, section 4).
-- Nested objects key by key; added and removed keys with a null side; type changes.
SELECT audit.diff('{"a": 1, "b": {"c": 2, "d": [1, 2]}, "gone": true}',
                  '{"a": "1", "b": {"c": 3, "d": [1, 2, 3]}, "added": false}');
SELECT * FROM audit.diff_rows('{"a": 1, "b": {"c": 2}, "gone": true, "same": [1]}',
                              '{"a": "1", "b": {"c": null}, "added": false, "same": [1]}');
-- NULL documents: an insert (no old), a delete (no new), nothing at all; scalars at the top.
SELECT audit.diff(NULL, '{"a": 1}') AS inserted, audit.diff('{"a": 1}', NULL) AS deleted,
       audit.diff(NULL, NULL) AS nothing, audit.diff('1', '"1"') AS scalar, audit.diff('[1]', '[1]') AS same;
-- Arrays of objects with an id are matched by id; other arrays compare whole.
SELECT * FROM audit.diff_rows(
    '{"items": [{"id": 1, "qty": 2}, {"id": "sku-9", "qty": 1}], "tags": ["a", "b"]}',
    '{"items": [{"id": "sku-9", "qty": 5}, {"id": 3, "qty": 1}], "tags": ["b", "a"]}');
-- Keys that need quoting in a path; unicode keys; numbers keep every digit.
SELECT * FROM audit.diff_rows('{"x.y": 1, "": 1, "名前": "a", "n": 12345678901234567890.10}',
                              '{"x.y": 2, "": 2, "名前": "b", "n": 12345678901234567890.1}');
-- 100 levels deep: the one change is found at its full path.
WITH RECURSIVE deep(n, j) AS (
    SELECT 1, '{"v": 1}'::jsonb
    UNION ALL SELECT n + 1, jsonb_build_object('k', j) FROM deep WHERE n < 100)
SELECT length(path) AS path_length, path LIKE 'k.k.%.k.v' AS full_path, change, old_value, new_value
FROM (SELECT j FROM deep WHERE n = 100) a,
     (SELECT jsonb_set(j, array_fill('k'::text, ARRAY[99]) || '{v}'::text[], '2') AS j FROM deep WHERE n = 100) b,
     audit.diff_rows(a.j, b.j);
-- A 1 MB document with one change among 20,000 keys.
WITH big AS (SELECT jsonb_object_agg('key' || i, repeat('x', 40)) AS j FROM generate_series(1, 20000) i)
SELECT length(j::text) > 1000000 AS over_1mb, audit.diff(j, jsonb_set(j, '{key777}', '"changed"')) -> 'key777' ->> 'new' AS new_value,
       audit.diff(j, j) = '{}' AS identical_is_empty
FROM big;
-- audit.changes: events with old/new and their diff.
SELECT audit.record('vm.modify', 'vm', 'vm-1', 'web-01', '{"state": "running", "cpu": 2}',
                    '{"state": "stopped", "cpu": 2}') IS NOT NULL AS recorded;
SELECT object_name, action, diff FROM audit.changes WHERE object_name = 'web-01' ORDER BY at DESC LIMIT 20;
-- Depth: 100 levels are compared; deeper documents (which no event can hold) are a clear
-- 54000, never an internal error (serde_json stops at 128).
SELECT audit.diff((repeat('[', 100) || '1' || repeat(']', 100))::jsonb, (repeat('[', 100) || '2' || repeat(']', 100))::jsonb) <> '{}' AS depth_100;
SELECT try($$ SELECT audit.diff((repeat('[', 128) || repeat(']', 128))::jsonb, '{}') $$);
SELECT try($$ SELECT * FROM audit.diff_rows('{}', (repeat('{"a": ', 130) || '1' || repeat('}', 130))::jsonb) $$);

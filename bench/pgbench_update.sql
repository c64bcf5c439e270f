-- Single-row UPDATE by primary key. bench/capture.sh writes one copy per variant with TBL
-- replaced by the table (pgbench -M prepared cannot take a table name as a variable).
\set id random(1, 100000)
UPDATE TBL SET b = b + 1 WHERE id = :id;

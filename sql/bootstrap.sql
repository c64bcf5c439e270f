-- audit_ext: tables and roles. Loaded first (bootstrap).

-- Roles are global: created once, kept by DROP EXTENSION, reused when they already exist.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'audit_writer') THEN
        CREATE ROLE audit_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'audit_reader') THEN
        CREATE ROLE audit_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'audit_admin') THEN
        CREATE ROLE audit_admin NOLOGIN;
    END IF;
    -- sees its own events only (sql/visibility.sql)
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'audit_viewer') THEN
        CREATE ROLE audit_viewer NOLOGIN;
    END IF;
END
$roles$;

CREATE SEQUENCE audit.events_id_seq AS bigint;

-- One row per audit event. Text columns use the "C" collation: ordering and index lookups are
-- the same whatever the database's locale, btree comparisons are plain byte compares (cheaper
-- to maintain on every insert), and prefix patterns (action LIKE 'policy.%') can use the indexes. id, chain, seq, txid, prev_hash and hash are assigned by the
-- insert trigger; supplying them is refused (SQLSTATE 428C9). Column order is the hash
-- order of docs/hash-format.md, but the trigger and verify look columns up by name.
CREATE TABLE audit.events (
    id          bigint      NOT NULL,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    chain       integer     NOT NULL,
    seq         bigint      NOT NULL,
    actor       text COLLATE "C" NOT NULL,
    actor_ip    inet,
    session_id  text COLLATE "C",
    application text COLLATE "C",
    action      text COLLATE "C" NOT NULL,
    status      text COLLATE "C" NOT NULL DEFAULT 'success',
    severity    text COLLATE "C" NOT NULL DEFAULT 'info',
    module      text COLLATE "C",
    object_type text COLLATE "C",
    object_id   text COLLATE "C",
    object_name text COLLATE "C",
    old         jsonb,
    new         jsonb,
    message     text COLLATE "C",
    metadata    jsonb       NOT NULL DEFAULT '{}',
    txid        bigint      NOT NULL,
    prev_hash   bytea,
    hash        bytea       NOT NULL,
    -- Not hashed: the retention class (audit.retention) the event is kept under. Every INSERT
    -- of audit_ext sets it to audit.retention_class(action); a direct INSERT that leaves it
    -- out files the event under the default class 0, and apply_retention still keeps it for
    -- its own action's period (it checks the actions in a partition before dropping it).
    retention_class integer NOT NULL DEFAULT 0
) PARTITION BY RANGE (retention_class, at);
ALTER SEQUENCE audit.events_id_seq OWNED BY audit.events.id;

-- One partition per retention class and period (audit_ext.partition_period, UTC), named
-- events_<class>_<yyyymmdd of its start>, created ahead of need by audit_ext itself
-- (src/retention/partitions.rs, audit_internal._ensure_partitions). An event whose class and time have no
-- partition yet lands here and is moved into its own partition when that is created.
-- A partitioned table cannot have unique constraints without its partition key: id and
-- (chain, seq) are unique by construction (one sequence, one chain tail), and verify reports
-- a duplicate seq as tampering.
CREATE TABLE audit.events_default PARTITION OF audit.events DEFAULT;

-- The log is data, not configuration, but this is how an extension's table gets into pg_dump.
-- Loading it back needs restore mode (audit_ext.restore, README "Backup, dump and restore").
-- Partitions created later are not members of the extension: pg_dump writes them, and their
-- rows, like any table.
SELECT pg_catalog.pg_extension_config_dump('audit.events', '');
SELECT pg_catalog.pg_extension_config_dump('audit.events_default', '');
SELECT pg_catalog.pg_extension_config_dump('audit.events_id_seq', '');

COMMENT ON TABLE audit.events IS
    'Append-only, SHA-256 hash-chained audit events (audit_ext). Check with audit.verify().';

-- The indexes are made per partition (audit_internal._create_indexes in retention.sql), not on the
-- parent: a parent index would be re-created on each partition as pg_restore attaches it,
-- and the dump's own CREATE INDEX of that partition would then fail.

-- Tables whose row changes are captured, and how (audit.track). Kept in sync with the
-- audit_ext_capture_* triggers on each table, which carry the same settings as arguments.
CREATE TABLE audit.tracked (
    tbl             regclass    NOT NULL PRIMARY KEY,
    exclude_columns text[]      NOT NULL DEFAULT '{}',
    mask_columns    text[]      NOT NULL DEFAULT '{}',
    operations      text[]      NOT NULL,
    skip_unchanged  boolean     NOT NULL DEFAULT true,
    tracked_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tracked_by      text        NOT NULL DEFAULT session_user
);
COMMENT ON TABLE audit.tracked IS 'Tables whose row changes audit_ext captures (audit.track).';

-- The per-database secret of masked columns (audit.track(mask_columns => ...)): a masked value
-- is stored as 'masked:' || sha256(key || column || '=' || value), so equal values give equal
-- markers without revealing the value. 32 bytes from gen_random_uuid() (244 random bits,
-- pg_strong_random). Readable by the extension owner only.
CREATE TABLE audit.mask_key (
    key        bytea       NOT NULL CHECK (pg_catalog.length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO audit.mask_key
SELECT pg_catalog.decode(pg_catalog.replace(pg_catalog.gen_random_uuid()::text
                                            || pg_catalog.gen_random_uuid()::text, '-', ''), 'hex');

-- Both are settings, not data: a dump keeps them so that capture and masking continue
-- unchanged after a restore. The oldest key is the one in use, so a restored key (older than
-- the one CREATE EXTENSION made in the new database) wins.
SELECT pg_catalog.pg_extension_config_dump('audit.tracked', '');
SELECT pg_catalog.pg_extension_config_dump('audit.mask_key', '');

-- Threshold alert rules (audit.create_alert), the last firing per rule and group, and live
-- streams (audit.stream). Changed only through those functions, each an audited event.
CREATE TABLE audit.alert_rules (
    name       text        NOT NULL PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,63}$'),
    query      text        NOT NULL,
    threshold  integer     NOT NULL CHECK (threshold >= 1),
    "window"   interval    NOT NULL CHECK ("window" > interval '0'),
    group_by   text,
    channel    text        NOT NULL CHECK (pg_catalog.octet_length(channel) BETWEEN 1 AND 63),
    severity   text        NOT NULL,
    enabled    boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by text        NOT NULL DEFAULT session_user
);
CREATE TABLE audit.alert_state (
    alert       text        NOT NULL REFERENCES audit.alert_rules ON DELETE CASCADE,
    grp         text        NOT NULL,   -- the group's value as JSON: "alice", or null
    fired_at    timestamptz NOT NULL,
    fired_count bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (alert, grp)
);
CREATE TABLE audit.streams (
    channel    text        NOT NULL PRIMARY KEY CHECK (pg_catalog.octet_length(channel) BETWEEN 1 AND 63),
    query      text,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by text        NOT NULL DEFAULT session_user
);
SELECT pg_catalog.pg_extension_config_dump('audit.alert_rules', '');
SELECT pg_catalog.pg_extension_config_dump('audit.alert_state', '');
SELECT pg_catalog.pg_extension_config_dump('audit.streams', '');

-- Retention policies (audit.set_retention): one retention class per action pattern; class 0 is
-- the default policy '*'. keep NULL keeps forever. The most specific pattern wins: an exact
-- action name, then the longest 'prefix.*', then '*'.
CREATE TABLE audit.retention (
    class   integer     NOT NULL PRIMARY KEY CHECK (class >= 0),
    pattern text        NOT NULL UNIQUE,
    keep    interval    CHECK (keep > interval '0'),
    set_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    set_by  text        NOT NULL DEFAULT session_user
);
-- The default policy (class 0, '*', 365 days) is inserted by retention.sql, except when
-- restoring a dump, which brings the policies it had.

-- Every partition audit_ext created, by name (a restore keeps names; the hash never sees
-- them). dropped_at/dropped_by are set by apply_retention; a partition listed here as live
-- that no longer exists is reported by audit.verify() as a missing range.
CREATE TABLE audit.partitions (
    name       text        NOT NULL PRIMARY KEY,
    class      integer     NOT NULL,
    from_at    timestamptz NOT NULL,
    to_at      timestamptz NOT NULL CHECK (to_at > from_at),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    dropped_at timestamptz,
    dropped_by bigint       -- id of the retention.applied event
);

-- The dropped stretches of each chain, merged: seqs from_seq..to_seq are gone and to_hash was
-- the hash of to_seq. The authoritative copy is in the newest retention.applied event (hash-
-- chained, read by audit.verify()); this table serves the chain-head read of writers.
CREATE TABLE audit.retention_anchors (
    chain    integer NOT NULL,
    from_seq bigint  NOT NULL,
    to_seq   bigint  NOT NULL CHECK (to_seq >= from_seq),
    to_hash  bytea   NOT NULL,
    event_id bigint  NOT NULL,
    PRIMARY KEY (chain, from_seq)
);
CREATE INDEX retention_anchors_to_idx ON audit.retention_anchors (chain, to_seq);

-- Warm tiers (audit.set_tier): partitions entirely older than older_than live in tablespace.
CREATE TABLE audit.tiers (
    older_than interval NOT NULL PRIMARY KEY CHECK (older_than >= interval '0'),
    tablespace name     NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);

SELECT pg_catalog.pg_extension_config_dump('audit.retention', '');
SELECT pg_catalog.pg_extension_config_dump('audit.partitions', '');
SELECT pg_catalog.pg_extension_config_dump('audit.retention_anchors', '');
SELECT pg_catalog.pg_extension_config_dump('audit.tiers', '');

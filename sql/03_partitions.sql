--
-- Partition maintenance with a fake clock, on a scratch table partitioned
-- like audit_log (the machinery is generic), then on audit_log itself.
--
SET timezone = 'UTC';
CREATE TABLE regress.events (id serial, at timestamptz NOT NULL, note text) PARTITION BY RANGE (at);
CREATE TABLE regress.events_default PARTITION OF regress.events DEFAULT;
CREATE VIEW regress.parts AS
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bounds
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'regress.events'::regclass ORDER BY 1;

-- Rows arrive before any daily partition exists: the default takes them.
INSERT INTO regress.events (at, note) VALUES
    ('2030-01-05 10:00+00', 'older than retention'),
    ('2030-01-08 00:00+00', 'inside retention'),
    ('2030-01-10 23:59:59.999+00', 'today, last moment'),
    ('2030-02-01 00:00+00', 'far future');
SELECT tableoid::regclass AS part, note FROM regress.events ORDER BY at;

-- 2030-01-10, premake 2, retention 3 days: days 10..12 are made ahead,
-- days waiting in the default get theirs (rows moved), the too-old row
-- is purged.
SELECT authx._partitions_maintain('regress.events', 2, 3, '2030-01-10 12:00+00');
SELECT * FROM regress.parts;
SELECT tableoid::regclass AS part, note FROM regress.events ORDER BY at;

-- Idempotent.
SELECT authx._partitions_maintain('regress.events', 2, 3, '2030-01-10 18:00+00');

-- New rows route to their partition now.
INSERT INTO regress.events (at, note) VALUES ('2030-01-11 08:00+00', 'routed');
SELECT tableoid::regclass AS part FROM regress.events WHERE note = 'routed';

-- A week later: days before 2030-01-13 are dropped whole, 16..18 made.
SELECT authx._partitions_maintain('regress.events', 2, 3, '2030-01-16 00:30+00');
SELECT * FROM regress.parts;
SELECT tableoid::regclass AS part, note FROM regress.events ORDER BY at;

-- Retention 0 keeps everything.
SELECT authx._partitions_maintain('regress.events', 0, 0, '2031-01-01 00:00+00');
SELECT count(*) AS partitions FROM regress.parts;

-- audit_log: maintenance_run covers today and authx.audit_premake days.
SELECT authx.maintenance_run() ? 'audit_log' AS ran;
SELECT count(*) >= current_setting('authx.audit_premake')::int + 1 AS premade
  FROM authx.audit_partitions
 WHERE partition >= 'audit_log_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD');
SELECT count(*) AS rows_in_default FROM authx.audit_log_default;

DROP TABLE regress.events CASCADE;

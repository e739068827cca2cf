-- 05_partitions.sql — the audit_log and usage_log partition cycle, with a
-- fake clock.
--
-- Covers:
--   * maintenance_run() (no argument: the real clock) reports
--     {"audit_log": {created, dropped, moved, purged}, "sessions":
--     {sessions_deleted, lockouts_deleted}, "api_keys": ..., "roles": ...,
--     "rate_limits": {overrides_expired}, "ip_blocks": {blocks_expired},
--     "mfa": {challenges_purged}, ..., "usage_log": {created, dropped,
--     moved, purged}, "usage": {hourly_purged, hourly_total_purged,
--     daily_purged, ip_purged, hourly_ip_compacted, daily_ip_changed}} and
--     is idempotent;
--   * usage_log gets the same daily partitions usage_log_pYYYYMMDD for
--     today .. today + authx.audit_premake, with UTC day bounds; a usage
--     row for a day without a partition waits in usage_log_default and is
--     moved by the next maintenance_run;
--   * the usage rollups (usage_hourly, usage_hourly_total, usage_hourly_ip)
--     are deleted by _usage_purge once their hour is more than 400 days
--     before p_now (exactly 400 days is kept), the daily ones (usage_daily,
--     usage_daily_ip) once their day is before the UTC day of p_now - 400
--     days, whatever authx.usage_retention says;
--   * compaction of usage_hourly_ip by _usage_purge(p_now): each finished
--     hour of the last 7 days (from the hour starting 7 days before the
--     current one up to the one before the current one) with more than 100
--     addresses keeps its 100 busiest, by requests descending then address
--     (inet order: .9 before .10), requests and errors unchanged, and the
--     rest is counted in hourly_ip_compacted; an hour of exactly 100
--     addresses, the current hour and the hour before the window keep all
--     150 of theirs; a second pass compacts nothing;
--   * usage_daily_ip after a pass holds, for each finished day of the last
--     7, exactly the 100 busiest addresses of usage_hourly_ip summed over
--     that day (requests descending, then address), nothing for today; a
--     second pass changes nothing (daily_ip_changed 0); a late hourly row
--     for yesterday changes yesterday's rows at the next pass;
--   * the fake clock is the internal authx._maintenance_run_at(p_now):
--     authx_admin gets 42501 for it, and maintenance_run() no longer takes
--     a time, so an administrator cannot retire the whole trail;
--   * premake: partitions audit_log_pYYYYMMDD for today .. today +
--     authx.audit_premake (UTC days, even with a session time zone of +14),
--     with day bounds at UTC midnight (rows at 00:00 and 23:59:59.999999 UTC
--     land in the day's partition, the next midnight in the next one);
--   * a row for a day without a partition lands in audit_log_default; the
--     next maintenance_run makes that day's partition, moves the rows (ids
--     and payload kept) and leaves the default partition empty; later rows
--     for that day go straight to the new partition;
--   * retention (authx.audit_retention is SIGHUP, so SET is refused with
--     55P02 and authx._partitions_maintain is called directly): partitions
--     older than the cutoff are detached and dropped — not emptied by
--     DELETE (a BEFORE DELETE trigger that raises proves it) — stragglers
--     older than the cutoff in the default partition are purged, newer ones
--     moved, and the returned counts match;
--   * retention 0 keeps everything (an ancient straggler is moved, not
--     purged) and premake 0 makes only today's partition;
--   * the audit_partitions view lists every partition with its bounds;
--   * _maintenance_run_at() with a clock 2000 days ahead and the configured
--     retentions drops every current partition of audit_log and usage_log
--     (all events and raw usage rows) and every hourly rollup, and reports
--     it.
-- Everything, DDL included, is rolled back at the end.  The first
-- maintenance_run takes the maintenance advisory lock, so the worker's own
-- pass fails on its lock_timeout while this transaction runs and cannot
-- interfere.
BEGIN;
SELECT plan(78);

-- Partition days are UTC days whatever the session time zone.
SET TIME ZONE 'Pacific/Kiritimati';

CREATE FUNCTION pg_temp.pname(d date) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT 'audit_log_p' || to_char(d, 'YYYYMMDD') $$;
CREATE FUNCTION pg_temp.utc(d date, t time DEFAULT '12:00') RETURNS timestamptz LANGUAGE sql IMMUTABLE AS
$$ SELECT (d + t) AT TIME ZONE 'UTC' $$;
CREATE FUNCTION pg_temp.part_of(p_id bigint) RETURNS text LANGUAGE sql AS
$$ SELECT tableoid::regclass::text FROM authx.audit_log WHERE id = p_id $$;
CREATE FUNCTION pg_temp.ins(p_at timestamptz, p_tag text) RETURNS bigint LANGUAGE sql AS
$$ INSERT INTO authx.audit_log (at, event_type, severity, details)
   VALUES (p_at, 'pgtap.partitions', 'info', jsonb_build_object('tag', p_tag)) RETURNING id $$;
-- usage_log has no id: its test rows are told apart by endpoint.
CREATE FUNCTION pg_temp.upname(d date) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT 'usage_log_p' || to_char(d, 'YYYYMMDD') $$;
CREATE FUNCTION pg_temp.upart_of(p_endpoint text) RETURNS text LANGUAGE sql AS
$$ SELECT string_agg(tableoid::regclass::text, ',') FROM authx.usage_log WHERE endpoint = p_endpoint $$;
CREATE FUNCTION pg_temp.upartitions() RETURNS SETOF text LANGUAGE sql AS
$$ SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'authx.usage_log'::regclass $$;

SELECT (now() AT TIME ZONE 'UTC')::date AS today,
       current_setting('authx.audit_premake')::int AS premake \gset

-- ================================================================ premake
SELECT authx.maintenance_run() AS r0 \gset
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb) k),
          ARRAY['api_keys', 'audit_log', 'cluster', 'devices', 'ip_blocks', 'mfa', 'rate_limits', 'roles', 'sessions',
                'tokens', 'usage', 'usage_log', 'user_tokens'],
          'maintenance_run reports the audit_log, sessions, api_keys, roles, rate_limits, ip_blocks, mfa, tokens, '
          'devices, user_tokens, usage_log, usage and cluster passes');
SELECT is(:'r0'::jsonb -> 'cluster', 'null'::jsonb, 'cluster: null on a server that is not a coordinator');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb->'audit_log') k),
          ARRAY['created', 'dropped', 'moved', 'purged'], 'audit_log reports created, dropped, moved, purged');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb->'sessions') k),
          ARRAY['lockouts_deleted', 'sessions_deleted'], 'sessions reports sessions_deleted, lockouts_deleted');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb->'rate_limits') k),
          ARRAY['overrides_expired'], 'rate_limits reports overrides_expired');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb->'ip_blocks') k),
          ARRAY['blocks_expired'], 'ip_blocks reports blocks_expired');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb->'mfa') k),
          ARRAY['challenges_purged'], 'mfa reports challenges_purged');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb->'tokens') k),
          ARRAY['families_purged', 'keys_purged'], 'tokens reports families_purged, keys_purged');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb->'devices') k),
          ARRAY['devices_purged'], 'devices reports devices_purged');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb->'user_tokens') k),
          ARRAY['tokens_purged'], 'user_tokens reports tokens_purged');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb->'usage_log') k),
          ARRAY['created', 'dropped', 'moved', 'purged'], 'usage_log reports created, dropped, moved, purged');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb->'usage') k),
          ARRAY['daily_ip_changed', 'daily_purged', 'hourly_ip_compacted', 'hourly_purged', 'hourly_total_purged',
                'ip_purged'],
          'usage reports hourly_purged, hourly_total_purged, daily_purged, ip_purged, hourly_ip_compacted, daily_ip_changed');
SELECT set_eq(
    format($$SELECT partition::text FROM authx.audit_partitions
              WHERE partition::text IN (SELECT pg_temp.pname(%L::date + i) FROM generate_series(0, %s) i)$$,
           :'today', :premake),
    format($$SELECT pg_temp.pname(%L::date + i) FROM generate_series(0, %s) i$$, :'today', :premake),
    'partitions exist for today .. today + audit_premake (UTC)');
SELECT set_eq(
    format($$SELECT p FROM pg_temp.upartitions() p
              WHERE p IN (SELECT pg_temp.upname(%L::date + i) FROM generate_series(0, %s) i)$$, :'today', :premake),
    format($$SELECT pg_temp.upname(%L::date + i) FROM generate_series(0, %s) i$$, :'today', :premake),
    'usage_log partitions exist for today .. today + audit_premake (UTC) too');
SELECT is((SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c
            WHERE c.oid = ('authx.' || pg_temp.upname(:'today'))::regclass),
          format('FOR VALUES FROM (%L) TO (%L)', pg_temp.utc(:'today', '00:00'), pg_temp.utc(:'today'::date + 1, '00:00')),
          'today''s usage_log partition covers exactly the UTC day');
SELECT authx.maintenance_run() AS r0b \gset
SELECT is(ARRAY[:'r0b'::jsonb -> 'audit_log', :'r0b'::jsonb -> 'usage_log'],
          ARRAY['{"created": 0, "dropped": 0, "moved": 0, "purged": 0}'::jsonb,
                '{"created": 0, "dropped": 0, "moved": 0, "purged": 0}'::jsonb],
          'a second run with the same clock does nothing (audit_log and usage_log)');
-- (maintenance_run passes now(), fixed in this transaction: the hours the
-- first pass compacted stay done, and the worker only writes hours from
-- the current one on.)
SELECT is(:'r0b'::jsonb -> 'usage',
          '{"hourly_purged": 0, "hourly_total_purged": 0, "daily_purged": 0, "ip_purged": 0, "hourly_ip_compacted": 0,
            "daily_ip_changed": 0}'::jsonb,
          'nor does it find usage rollups to purge, compact or sum again');
SELECT is(authx._maintenance_run_at(now()) -> 'audit_log', '{"created": 0, "dropped": 0, "moved": 0, "purged": 0}'::jsonb,
          '_maintenance_run_at(now()) is the same pass');

-- ================================================================ no fake clock for administrators
SELECT count(*) AS n_events FROM authx.audit_log \gset
SET ROLE authx_admin;
SELECT throws_ok($$SELECT authx._maintenance_run_at(now() + interval '2000 days')$$, '42501', NULL,
                 'admin: _maintenance_run_at (fake clock) is refused');
SELECT throws_ok($$SELECT authx.maintenance_run(now() + interval '2000 days')$$, '42883', NULL,
                 'admin: maintenance_run takes no clock argument any more');
SELECT is(authx.maintenance_run() -> 'audit_log', '{"created": 0, "dropped": 0, "moved": 0, "purged": 0}'::jsonb,
          'admin: maintenance_run() runs with the real clock and drops nothing');
RESET ROLE;
SELECT is((SELECT count(*) FROM authx.audit_log), :n_events::bigint, 'the audit trail is untouched');

-- ================================================================ default partition and moves
SELECT (:'today'::date + 30) AS d30, (:'today'::date + 31) AS d31 \gset
SELECT pg_temp.ins(pg_temp.utc(:'d30', '00:30'), 'pgtap-part-move') AS m1,
       pg_temp.ins(pg_temp.utc(:'d30', '23:30'), 'pgtap-part-move') AS m2 \gset
SELECT pg_temp.ins(pg_temp.utc(:'d31', '12:00'), 'pgtap-part-move') AS m3 \gset
SELECT is(ARRAY[pg_temp.part_of(:m1), pg_temp.part_of(:m2), pg_temp.part_of(:m3)],
          ARRAY['authx.audit_log_default', 'authx.audit_log_default', 'authx.audit_log_default'],
          'rows for days without a partition land in audit_log_default');
SELECT is(to_regclass('authx.' || pg_temp.pname(:'d30')), NULL, 'no partition for day +30 yet');
-- A raw usage row for day +30 (the worker writes the current time: this one
-- is inserted directly).
INSERT INTO authx.usage_log (at, endpoint, status, latency_ms)
VALUES (pg_temp.utc(:'d30', '23:59:59.999999'), 'pgtap-part-usage', 200, 1.5);
SELECT is(pg_temp.upart_of('pgtap-part-usage'), 'authx.usage_log_default',
          'a usage row for a day without a partition lands in usage_log_default');
SELECT authx.maintenance_run() AS r1 \gset
SELECT is(:'r1'::jsonb -> 'audit_log', '{"created": 2, "dropped": 0, "moved": 3, "purged": 0}'::jsonb,
          'maintenance_run creates the two missing days and moves the three rows');
SELECT is(:'r1'::jsonb -> 'usage_log', '{"created": 1, "dropped": 0, "moved": 1, "purged": 0}'::jsonb,
          'and for usage_log the one missing day, moving the usage row');
SELECT is(pg_temp.upart_of('pgtap-part-usage'), 'authx.' || pg_temp.upname(:'d30'),
          'the usage row moved to the partition of its UTC day');
SELECT is((SELECT count(*) FROM authx.usage_log_default)::int, 0, 'usage_log_default is empty');
SELECT is(ARRAY[pg_temp.part_of(:m1), pg_temp.part_of(:m2), pg_temp.part_of(:m3)],
          ARRAY['authx.' || pg_temp.pname(:'d30'), 'authx.' || pg_temp.pname(:'d30'), 'authx.' || pg_temp.pname(:'d31')],
          'each row moved, keeping its id, to the partition of its UTC day');
SELECT is((SELECT count(*) FROM authx.audit_log_default)::int, 0, 'audit_log_default is empty');
SELECT results_eq(
    format($$SELECT at, event_type, details FROM authx.audit_log WHERE id IN (%s, %s, %s) ORDER BY id$$, :m1, :m2, :m3),
    format($$VALUES (%L::timestamptz, 'pgtap.partitions', '{"tag": "pgtap-part-move"}'::jsonb),
                    (%L::timestamptz, 'pgtap.partitions', '{"tag": "pgtap-part-move"}'::jsonb),
                    (%L::timestamptz, 'pgtap.partitions', '{"tag": "pgtap-part-move"}'::jsonb)$$,
           pg_temp.utc(:'d30', '00:30'), pg_temp.utc(:'d30', '23:30'), pg_temp.utc(:'d31', '12:00')),
    'moved rows keep their payload');
SELECT is(pg_temp.part_of(pg_temp.ins(pg_temp.utc(:'d30', '18:00'), 'pgtap-part-move')), 'authx.' || pg_temp.pname(:'d30'),
          'a later row for that day goes straight to the new partition');
SELECT is((SELECT bounds FROM authx.audit_partitions WHERE partition = pg_temp.pname(:'d30')),
          format('FOR VALUES FROM (%L) TO (%L)', pg_temp.utc(:'d30', '00:00'), pg_temp.utc(:'d31', '00:00')),
          'the partition made for the moved rows covers exactly its UTC day');

-- ================================================================ fake clock ahead
-- A clock far ahead, where nothing exists yet: exactly premake + 1 new days.
SELECT (:'today'::date + 400) AS far \gset
-- (retention 0 here: with the default 90 days such a clock retires every
-- current partition, which the last section checks.)
SELECT is(authx._partitions_maintain('authx.audit_log', :premake, 0, pg_temp.utc(:'far', '23:30')),
          jsonb_build_object('created', :premake + 1, 'dropped', 0, 'moved', 0, 'purged', 0),
          'fake clock +400 days (23:30 UTC, next day in +14): premake + 1 partitions created');
SELECT set_eq(
    format($$SELECT partition::text FROM authx.audit_partitions WHERE partition::text >= %L$$, pg_temp.pname(:'far')),
    format($$SELECT pg_temp.pname(%L::date + i) FROM generate_series(0, %s) i$$, :'far', :premake),
    'they are named after the UTC days far .. far + premake');
SELECT is(pg_temp.part_of(pg_temp.ins(pg_temp.utc(:'far', '00:00'), 'pgtap-part-bounds')), 'authx.' || pg_temp.pname(:'far'),
          'a row at 00:00 UTC lands in that day''s partition');
SELECT is(pg_temp.part_of(pg_temp.ins(pg_temp.utc(:'far', '23:59:59.999999'), 'pgtap-part-bounds')), 'authx.' || pg_temp.pname(:'far'),
          'a row at 23:59:59.999999 UTC lands in that day''s partition');
SELECT is(pg_temp.part_of(pg_temp.ins(pg_temp.utc(:'far'::date + 1, '00:00'), 'pgtap-part-bounds')),
          'authx.' || pg_temp.pname(:'far'::date + 1), 'the next UTC midnight lands in the next day''s partition');
SELECT is((SELECT bounds FROM authx.audit_partitions WHERE partition = pg_temp.pname(:'far')),
          format('FOR VALUES FROM (%L) TO (%L)', pg_temp.utc(:'far', '00:00'), pg_temp.utc(:'far'::date + 1, '00:00')),
          'audit_partitions shows the bounds of a day partition');
SELECT is((SELECT bounds FROM authx.audit_partitions WHERE partition = 'audit_log_default'), 'DEFAULT',
          'audit_partitions lists the default partition');
SELECT ok((SELECT bool_and(bytes > 0) FROM authx.audit_partitions), 'audit_partitions reports a size for each');

-- ================================================================ retention
SELECT throws_ok('SET authx.audit_retention = 2', '55P02', NULL,
                 'authx.audit_retention is SIGHUP: SET is refused (so the internal function is called below)');

-- A straggler older than the cutoff and one newer, both in the default partition.
SELECT (:'d31'::date + 2) AS now_day \gset
SELECT pg_temp.ins(pg_temp.utc(:'d30'::date - 5), 'pgtap-part-old') AS old_row,
       pg_temp.ins(pg_temp.utc(:'d31'::date + 1), 'pgtap-part-new') AS new_row \gset
SELECT is(ARRAY[pg_temp.part_of(:old_row), pg_temp.part_of(:new_row)],
          ARRAY['authx.audit_log_default', 'authx.audit_log_default'], 'both stragglers are in the default partition');

-- Dropping must not be a DELETE: any row deleted from day +30 raises.
CREATE FUNCTION pg_temp.no_delete() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'rows were deleted from %', TG_TABLE_NAME; END $$;
SELECT format('CREATE TRIGGER no_delete BEFORE DELETE ON authx.%I FOR EACH ROW EXECUTE FUNCTION pg_temp.no_delete()',
              pg_temp.pname(:'d30')) AS ddl \gset
:ddl;

-- With retention 2 and "today" = d31 + 2, the cutoff is d31: every
-- partition of an earlier day goes, d31 and later stay.
SELECT count(*) AS n_old FROM authx.audit_partitions
 WHERE partition ~ '^audit_log_p[0-9]{8}$' AND to_date(right(partition, 8), 'YYYYMMDD') < :'d31'::date \gset
SELECT count(*) AS n_rows_d30 FROM authx.audit_log WHERE at >= pg_temp.utc(:'d30', '00:00') AND at < pg_temp.utc(:'d31', '00:00') \gset
SELECT ok(:n_old >= 2 AND :n_rows_d30 = 3, 'before: several old partitions, three rows on day +30');
CREATE TEMP TABLE retention_result (r jsonb) ON COMMIT DROP;
SELECT lives_ok(format($$INSERT INTO retention_result SELECT authx._partitions_maintain('authx.audit_log', %s, 2, %L)$$,
                       :premake, pg_temp.utc(:'now_day')),
                'retention pass runs (the DELETE trigger on day +30 did not fire)');
SELECT is((SELECT r FROM retention_result),
          jsonb_build_object('created', :premake + 2, 'dropped', :n_old, 'moved', 1, 'purged', 1),
          'counts: premake + 1 days plus the straggler''s day created, every old partition dropped, one moved, one purged');
SELECT is((SELECT count(*) FROM authx.audit_partitions
            WHERE partition ~ '^audit_log_p[0-9]{8}$' AND to_date(right(partition, 8), 'YYYYMMDD') < :'d31'::date)::int, 0,
          'no partition older than the cutoff is left');
SELECT is(to_regclass('authx.' || pg_temp.pname(:'d30')), NULL, 'the day +30 partition was dropped as a table');
SELECT is((SELECT count(*) FROM authx.audit_log WHERE id IN (:m1, :m2, :old_row))::int, 0,
          'its rows and the old straggler are gone');
SELECT is(pg_temp.part_of(:m3), 'authx.' || pg_temp.pname(:'d31'), 'the cutoff day (d31) is kept with its row');
SELECT is(pg_temp.part_of(:new_row), 'authx.' || pg_temp.pname(:'d31'::date + 1),
          'the newer straggler was moved to a partition of its own day');
SELECT ok(to_regclass('authx.' || pg_temp.pname(:'far')) IS NOT NULL, 'future partitions are kept');
SELECT is((SELECT count(*) FROM authx.audit_log_default)::int, 0, 'audit_log_default is empty again');

-- ================================================================ retention 0, premake 0
SELECT (:'today'::date + 800) AS far2 \gset
SELECT pg_temp.ins(pg_temp.utc(:'today'::date - 1000), 'pgtap-part-ancient') AS ancient \gset
SELECT is(authx._partitions_maintain('authx.audit_log', 0, 0, pg_temp.utc(:'far2')),
          '{"created": 2, "dropped": 0, "moved": 1, "purged": 0}'::jsonb,
          'premake 0, retention 0: only "today" and the ancient row''s day are created, nothing dropped or purged');
SELECT is(pg_temp.part_of(:ancient), 'authx.' || pg_temp.pname(:'today'::date - 1000),
          'retention 0 keeps even a 1000-day-old row (moved, not purged)');
SELECT ok(to_regclass('authx.' || pg_temp.pname(:'far2')) IS NOT NULL
          AND to_regclass('authx.' || pg_temp.pname(:'far2'::date + 1)) IS NULL,
          'premake 0 makes the day of p_now only');

-- ================================================================ usage rollups
-- Kept 400 days: a rollup of an hour more than 400 days before p_now goes,
-- one exactly 400 days before stays; daily rollups go when their day is
-- before the day of p_now - 400 days.  (No real rollup is that old.)
INSERT INTO authx.usage_hourly (hour, endpoint, status_class, api_key_id, requests, latency_sum_ms, latency_hist)
SELECT now() - d, 'pgtap-part-rollup-' || tag, 2, '00000000-0000-0000-0000-000000000000', 1, 1.5,
       array_fill(0::bigint, ARRAY[96])
  FROM (VALUES (interval '400 days 1 microsecond', 'old'), (interval '400 days', 'edge'),
               (interval '399 days', 'new')) v(d, tag);
INSERT INTO authx.usage_hourly_total (hour, requests, errors_4xx, errors_5xx, latency_sum_ms, latency_hist)
SELECT now() - d, 1, 0, 0, 1.5, array_fill(0::bigint, ARRAY[96])
  FROM (VALUES (interval '400 days 1 microsecond'), (interval '400 days'), (interval '399 days')) v(d);
INSERT INTO authx.usage_hourly_ip (hour, ip, requests, errors)
SELECT now() - d, ip, 1, 0
  FROM (VALUES (interval '400 days 1 microsecond', inet '192.0.2.201'), (interval '400 days', '192.0.2.202'),
               (interval '399 days', '192.0.2.203')) v(d, ip);
INSERT INTO authx.usage_daily (day, endpoint, status_class, api_key_id, requests, latency_sum_ms, latency_hist)
SELECT ((now() - interval '400 days') AT TIME ZONE 'UTC')::date + o, 'pgtap-part-daily-' || tag, 2,
       '00000000-0000-0000-0000-000000000000', 1, 1.5, array_fill(0::bigint, ARRAY[96])
  FROM (VALUES (-1, 'old'), (0, 'edge'), (1, 'new')) v(o, tag);
INSERT INTO authx.usage_daily_ip (day, ip, requests, errors)
SELECT ((now() - interval '400 days') AT TIME ZONE 'UTC')::date + o, ip, 1, 0
  FROM (VALUES (-1, inet '192.0.2.211'), (0, '192.0.2.212'), (1, '192.0.2.213')) v(o, ip);
SELECT is(authx._usage_purge(now()) - 'daily_ip_changed',
          '{"hourly_purged": 1, "hourly_total_purged": 1, "daily_purged": 1, "ip_purged": 2, "hourly_ip_compacted": 0}'::jsonb,
          '_usage_purge(now()) deletes the rollups older than 400 days, one of each table (and compacts nothing)');
SELECT is((SELECT array_agg(endpoint ORDER BY endpoint) FROM authx.usage_hourly WHERE endpoint LIKE 'pgtap-part-rollup-%'),
          ARRAY['pgtap-part-rollup-edge', 'pgtap-part-rollup-new'], 'usage_hourly: exactly 400 days old is kept');
SELECT is((SELECT count(*)::int FROM authx.usage_hourly_total WHERE hour <= now() - interval '399 days'),
          2, 'usage_hourly_total: exactly 400 days old is kept');
SELECT is((SELECT array_agg(host(ip) ORDER BY ip) FROM authx.usage_hourly_ip
            WHERE ip IN ('192.0.2.201', '192.0.2.202', '192.0.2.203')),
          ARRAY['192.0.2.202', '192.0.2.203'], 'usage_hourly_ip: exactly 400 days old is kept');
SELECT is((SELECT array_agg(endpoint ORDER BY endpoint) FROM authx.usage_daily WHERE endpoint LIKE 'pgtap-part-daily-%'),
          ARRAY['pgtap-part-daily-edge', 'pgtap-part-daily-new'], 'usage_daily: the day of now() - 400 days is kept');
SELECT is((SELECT array_agg(host(ip) ORDER BY ip) FROM authx.usage_daily_ip
            WHERE ip IN ('192.0.2.211', '192.0.2.212', '192.0.2.213')),
          ARRAY['192.0.2.212', '192.0.2.213'], 'usage_daily_ip: the day of now() - 400 days is kept');

-- ================================================================ usage_hourly_ip compaction
-- Hours relative to the current one (UTC), far from any real traffic but
-- the current hour's; addresses of 198.18.0.0/16 (no test records those):
--   busy  3 days ago: 150 addresses, 90 of them (198.18.7.101 .. .190) with
--         11 .. 100 requests, 60 (198.18.7.1 .. .60) tied at 5: the 90 and
--         the 10 lowest tied addresses, .1 .. .10, are the 100 kept;
--   full  3 days and 1 hour ago: exactly 100 addresses, all kept;
--   edge  7 days ago, the oldest hour compacted: 101 addresses with 200 - i
--         requests, the least busy (198.18.9.101) goes;
--   old   7 days and 1 hour ago: 150 addresses, before the window, kept;
--   now   the current hour, not finished: 150 addresses, kept.
CREATE TEMP TABLE ipc ON COMMIT DROP AS
SELECT v.tag, date_trunc('hour', now(), 'UTC') - v.ago AS hour, v.net, i,
       ('198.18.' || v.net || '.' || i)::inet AS ip,
       CASE WHEN v.tag = 'busy' THEN CASE WHEN i > 100 THEN i - 90 ELSE 5 END
            WHEN v.tag = 'edge' THEN 200 - i ELSE 1 END::bigint AS requests,
       (i % 4)::bigint AS errors
  FROM (VALUES ('busy', interval '3 days', 7, ARRAY[1, 60, 101, 190]),
               ('full', interval '3 days 1 hour', 10, ARRAY[1, 100, 1, 0]),
               ('edge', interval '7 days', 9, ARRAY[1, 101, 1, 0]),
               ('old', interval '7 days 1 hour', 11, ARRAY[1, 150, 1, 0]),
               ('now', interval '0', 8, ARRAY[1, 150, 1, 0])) v(tag, ago, net, r),
       LATERAL (SELECT generate_series(v.r[1], v.r[2]) UNION ALL SELECT generate_series(v.r[3], v.r[4])) g(i);
INSERT INTO authx.usage_hourly_ip (hour, ip, requests, errors) SELECT hour, ip, requests, errors FROM ipc;
SELECT is((SELECT array_agg(n ORDER BY tag) FROM (SELECT tag, count(*)::int AS n FROM ipc GROUP BY tag) x),
          ARRAY[150, 101, 100, 150, 150], 'compaction setup: busy 150, edge 101, full 100, now 150, old 150 addresses');
SELECT is(authx._usage_purge(now()) - 'daily_ip_changed',
          '{"hourly_purged": 0, "hourly_total_purged": 0, "daily_purged": 0, "ip_purged": 0, "hourly_ip_compacted": 51}'::jsonb,
          '_usage_purge(now()) compacts 51 rows: 50 of the busy hour, 1 of the edge hour');
SELECT set_eq(
    $$SELECT i.tag, host(h.ip), h.requests, h.errors FROM authx.usage_hourly_ip h JOIN ipc i USING (hour, ip)$$,
    $$SELECT tag, host(ip), requests, errors FROM ipc
       WHERE NOT (tag = 'busy' AND i BETWEEN 11 AND 60) AND NOT (tag = 'edge' AND i = 101)$$,
    'compaction keeps the busy hour''s 90 busiest and its tied .1 .. .10 (requests DESC, then inet order), the edge '
    'hour''s 100 busiest, and every address of the full, old and current hours, requests and errors unchanged');
SELECT is(authx._usage_purge(now()) -> 'hourly_ip_compacted', '0'::jsonb, 'a second pass compacts nothing');

-- ================================================================ usage_daily_ip
-- What the passes above left: each finished day of the last week holds the
-- 100 busiest addresses of its hours (all traffic, not only ipc's).
CREATE FUNCTION pg_temp.daily_ip_diff() RETURNS TABLE(day date, ip inet, requests numeric, errors numeric)
LANGUAGE sql AS $$
    WITH want AS (
        SELECT x.day, x.ip, x.requests, x.errors
          FROM (SELECT (h.hour AT TIME ZONE 'UTC')::date AS day, h.ip, sum(h.requests) AS requests,
                       sum(h.errors) AS errors,
                       row_number() OVER (PARTITION BY (h.hour AT TIME ZONE 'UTC')::date
                                          ORDER BY sum(h.requests) DESC, h.ip) AS rn
                  FROM authx.usage_hourly_ip h
                 WHERE h.hour >= ((now() AT TIME ZONE 'UTC')::date - 7)::timestamp AT TIME ZONE 'UTC'
                   AND h.hour < ((now() AT TIME ZONE 'UTC')::date)::timestamp AT TIME ZONE 'UTC'
                 GROUP BY 1, 2) x
         WHERE x.rn <= 100
    ), have AS (
        SELECT d.day, d.ip, d.requests::numeric, d.errors::numeric FROM authx.usage_daily_ip d
         WHERE d.day >= (now() AT TIME ZONE 'UTC')::date - 7
    )
    (SELECT * FROM want EXCEPT SELECT * FROM have) UNION ALL (SELECT * FROM have EXCEPT SELECT * FROM want)
$$;
SELECT is_empty('SELECT * FROM pg_temp.daily_ip_diff()',
                'usage_daily_ip: each finished day of the last week holds exactly its 100 busiest addresses, '
                'summed from usage_hourly_ip, and today nothing');
SELECT is((SELECT count(*)::int FROM authx.usage_daily_ip d, ipc i
            WHERE d.day = (i.hour AT TIME ZONE 'UTC')::date AND d.ip = i.ip AND i.tag = 'busy'),
          100, 'usage_daily_ip: the busy hour''s day has 100 of its addresses');
SELECT is(authx._usage_purge(now()) -> 'daily_ip_changed', '0'::jsonb, 'a second pass changes no daily row');
-- A late hourly row for yesterday (records queued before midnight).
INSERT INTO authx.usage_hourly_ip (hour, ip, requests, errors)
VALUES (((now() AT TIME ZONE 'UTC')::date - 1)::timestamp AT TIME ZONE 'UTC' + interval '1 hour',
        '198.18.12.1', 1000000, 3);
SELECT ok((authx._usage_purge(now()) -> 'daily_ip_changed')::int >= 1,
          'the next pass changes yesterday''s rows for a late hourly row');
SELECT is((SELECT ARRAY[requests, errors] FROM authx.usage_daily_ip
            WHERE day = (now() AT TIME ZONE 'UTC')::date - 1 AND ip = '198.18.12.1'),
          ARRAY[1000000, 3]::bigint[], 'yesterday''s usage_daily_ip has the late address');
SELECT is_empty('SELECT * FROM pg_temp.daily_ip_diff()', 'usage_daily_ip still agrees with usage_hourly_ip');

-- ================================================================ fake clock far ahead
-- The full pass, with the configured retentions (90 days for audit_log, 30
-- for usage_log), as of a day far enough ahead retires every partition
-- that exists now (superuser only).  The worker cannot write usage rows
-- meanwhile: this transaction holds usage_log since it made day +30.
SELECT (:'today'::date + 2000) AS far3 \gset
SELECT count(*) AS n_all FROM authx.audit_partitions WHERE partition ~ '^audit_log_p[0-9]{8}$' \gset
SELECT count(*) AS n_uall FROM pg_temp.upartitions() p WHERE p ~ '^usage_log_p[0-9]{8}$' \gset
SELECT count(*) AS n_hourly FROM authx.usage_hourly \gset
SELECT count(*) AS n_hourly_ip FROM authx.usage_hourly_ip \gset
SELECT count(*) AS n_hourly_total FROM authx.usage_hourly_total \gset
SELECT count(*) AS n_daily FROM authx.usage_daily \gset
SELECT count(*) AS n_daily_ip FROM authx.usage_daily_ip \gset
SELECT authx._maintenance_run_at(pg_temp.utc(:'far3')) AS r3 \gset
SELECT is(:'r3'::jsonb -> 'audit_log',
          jsonb_build_object('created', :premake + 1, 'dropped', :n_all, 'moved', 0, 'purged', 0),
          '_maintenance_run_at(today + 2000 days) drops all current partitions and makes the new window');
SELECT is((SELECT count(*) FROM authx.audit_log WHERE at < pg_temp.utc(:'far3', '00:00'))::int, 0,
          'no event older than that clock is left in audit_log');
SELECT is(:'r3'::jsonb -> 'usage_log',
          jsonb_build_object('created', :premake + 1, 'dropped', :n_uall, 'moved', 0, 'purged', 0),
          'the same pass drops every current usage_log partition and makes the new window');
SELECT is((SELECT count(*) FROM authx.usage_log WHERE at < pg_temp.utc(:'far3', '00:00'))::int, 0,
          'no raw usage row older than that clock is left in usage_log');
SELECT is(:'r3'::jsonb -> 'usage',
          jsonb_build_object('hourly_purged', :n_hourly, 'hourly_total_purged', :n_hourly_total, 'daily_purged', :n_daily,
                             'ip_purged', :n_hourly_ip + :n_daily_ip, 'hourly_ip_compacted', 0, 'daily_ip_changed', 0),
          'and purges every usage rollup (all older than 400 days by then), leaving none to compact or sum');

SELECT * FROM finish();
ROLLBACK;

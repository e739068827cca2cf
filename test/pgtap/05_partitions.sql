-- 05_partitions.sql — the audit_log partition cycle, with a fake clock.
--
-- Covers:
--   * maintenance_run() (no argument: the real clock) reports
--     {"audit_log": {created, dropped, moved, purged}, "sessions":
--     {sessions_deleted, lockouts_deleted}, "api_keys": ..., "roles": ...,
--     "rate_limits": {overrides_expired}, "ip_blocks": {blocks_expired},
--     "mfa": {challenges_purged}} and is idempotent;
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
--     retention drops every current partition (all events) and reports it.
-- Everything, DDL included, is rolled back at the end.  The first
-- maintenance_run takes the maintenance advisory lock, so the worker's own
-- pass fails on its lock_timeout while this transaction runs and cannot
-- interfere.
BEGIN;
SELECT plan(49);

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

SELECT (now() AT TIME ZONE 'UTC')::date AS today,
       current_setting('authx.audit_premake')::int AS premake \gset

-- ================================================================ premake
SELECT authx.maintenance_run() AS r0 \gset
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'r0'::jsonb) k),
          ARRAY['api_keys', 'audit_log', 'devices', 'ip_blocks', 'mfa', 'rate_limits', 'roles', 'sessions', 'tokens',
                'user_tokens'],
          'maintenance_run reports the audit_log, sessions, api_keys, roles, rate_limits, ip_blocks, mfa, tokens, devices and user_tokens passes');
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
SELECT set_eq(
    format($$SELECT partition::text FROM authx.audit_partitions
              WHERE partition::text IN (SELECT pg_temp.pname(%L::date + i) FROM generate_series(0, %s) i)$$,
           :'today', :premake),
    format($$SELECT pg_temp.pname(%L::date + i) FROM generate_series(0, %s) i$$, :'today', :premake),
    'partitions exist for today .. today + audit_premake (UTC)');
SELECT is(authx.maintenance_run() -> 'audit_log', '{"created": 0, "dropped": 0, "moved": 0, "purged": 0}'::jsonb,
          'a second run with the same clock does nothing');
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
SELECT is(authx.maintenance_run() -> 'audit_log', '{"created": 2, "dropped": 0, "moved": 3, "purged": 0}'::jsonb,
          'maintenance_run creates the two missing days and moves the three rows');
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

-- ================================================================ fake clock far ahead
-- The full pass, with the configured retention (90 days), as of a day far
-- enough ahead retires every partition that exists now (superuser only).
SELECT (:'today'::date + 2000) AS far3 \gset
SELECT count(*) AS n_all FROM authx.audit_partitions WHERE partition ~ '^audit_log_p[0-9]{8}$' \gset
SELECT is(authx._maintenance_run_at(pg_temp.utc(:'far3')) -> 'audit_log',
          jsonb_build_object('created', :premake + 1, 'dropped', :n_all, 'moved', 0, 'purged', 0),
          '_maintenance_run_at(today + 2000 days) drops all current partitions and makes the new window');
SELECT is((SELECT count(*) FROM authx.audit_log WHERE at < pg_temp.utc(:'far3', '00:00'))::int, 0,
          'no event older than that clock is left in audit_log');

SELECT * FROM finish();
ROLLBACK;

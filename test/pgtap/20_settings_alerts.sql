-- 20_settings_alerts.sql — dynamic settings (setting_get, setting_set,
-- setting_list) and the threshold alerts checked over authx.stats.
--
-- Covers:
--   * setting_defs: exactly the 11 documented settings with kind, default,
--     bounds and nullability, each described; setting_list() returns all
--     of them in name order with value, default, is_default, kind, bounds,
--     nullable, description (no updated_at / updated_by while at the
--     default); setting_get returns every default; setting_get(NULL) 22004,
--     an unknown name 42704 'unknown setting "x"' with its hint, a
--     300-character name quoted cut to 100 characters;
--   * setting_set returns the value in force; the row (value, updated_at =
--     now(), updated_by = session_user); each call audited once as
--     setting.changed, severity medium, details {name, old, new, by};
--     setting_list then shows is_default false; the 22023 checks with the
--     exact messages (and hints for one of each): a number out of bounds
--     (both sides), a string, a boolean, an array or an object for a
--     number; out of bounds or 1.5 for an integer (bounds printed as
--     1000000000, not 1e+09); a number or a string for a boolean; JSON null
--     for each of the 5 non-nullable settings ('setting "%s" cannot be
--     null'); refused calls change nothing and are not audited; bounds are
--     inclusive and 2.0 is an integer; JSON null accepted by each of the 6
--     nullable ones (kept as a row, setting_get answers null); SQL NULL
--     restores the default (row deleted, is_default, audited with old null
--     and the default as new; also for a setting already at its default);
--     a NULL name 22004, an unknown name 42704 with its hint, neither
--     audited;
--   * the per-backend copy: setting_get sees a change at once in the
--     changing transaction; after ROLLBACK TO SAVEPOINT the old value again
--     (a copy loaded inside the subtransaction is forgotten), after RELEASE
--     the new one; a change and a read inside a function that raises
--     (exception block) are forgotten too;
--   * privileges: authx_app reads a setting just changed (the copy is
--     reloaded through the owner) but gets 42501 from setting_set,
--     setting_list, alerts_check, _alerts_check and the settings table and
--     alerts view; authx_admin changes a setting (audited by session_user),
--     lists them, reads the table, runs alerts_check, and gets 42501 for
--     INSERT, UPDATE, DELETE on authx.settings and UPDATE on setting_defs;
--   * authx.alerts: the six alerts with their direction, every one checked
--     at p_now, thresholds from the defaults; queue_fill a fraction in
--     0 .. 1 (measured even when off), auto_blocks and redis_down 0 and the
--     rate alerts without a value on a first sample; JSON null thresholds
--     show as NULL;
--   * error_rate, with authx._alerts_check at fake times t0 + N s (an hour
--     ahead: the worker's real-time samples never count) and usage_record
--     calls (200, 404, 500, 503) on a tagged endpoint, threshold 0.5,
--     hysteresis 0.2, at least 20 requests: fewer than 20 requests gives no
--     value and keeps the state; exactly 0.5 raises, once: the check
--     returns [{alert, state raised, value, threshold, direction}], one
--     audit row alert.raised (high) at p_now with the same details,
--     alert_state active, since, raised 1; health() names it in alerts
--     (["error_rate"], beside the checks, not one of them) and its status
--     stays what the checks say (ok when all are ok); more errors do not
--     raise again (no second audit row); 0.444 (between 0.4 and 0.5) does
--     not clear; 0.392 clears once (alert.cleared, info, with raised_at),
--     health alerts []; a new crossing raises again (raised 2);
--   * the window (alert.window_seconds 300): a check 340 s later has every
--     sample out of the window: no value, still raised, one sample left;
--     the old burst of errors no longer counts: 20 good requests clear it;
--   * a threshold set to JSON null clears a raised alert and keeps it off
--     while the rate is above 0.5; set back, it raises; auto_blocks raises
--     from a hand-made sample 12 blocks under the stat threat_blocks half
--     an hour back (a sample over an hour old does not count); health
--     names both, in name order; alert.enabled false clears both and
--     keeps them off; alert.enabled back to its default raises both again
--     (raised 5);
--   * authx._alert_window called directly: the first sample, the increase
--     since the oldest sample in the window, no second sample within
--     window/30, samples out of the window (older, or in the future)
--     dropped and the rest sorted, a counter lower than in the newest
--     sample (either counter) forgets every sample, an unchanged counter
--     does not.
-- Not covered here: NOTIFY authx_alerts (the Perl TAP tests LISTEN).
-- Everything is rolled back.  This transaction takes the lock that
-- serializes checks (the worker's own checks then skip theirs) and locks
-- authx.alert_state (in name order, like a check).
-- usage_record calls are counted at once in authx.stats and written later
-- (endpoint tagged); nothing else records usage while pgTAP files run.
BEGIN;
SELECT plan(136);

-- ================================================================ setup
SELECT pg_advisory_xact_lock(hashtext('authx._alerts_check')::bigint);
DO $$ BEGIN PERFORM 1 FROM authx.alert_state ORDER BY name FOR UPDATE; END $$;
DELETE FROM authx.settings;

CREATE TEMP TABLE cfg AS
SELECT 'GET /pgtap-alerts-' || substr(md5(random()::text), 1, 10) AS ep,
       date_trunc('second', now()) + interval '1 hour' AS t0;

-- 'SQLSTATE message | hint' of a statement, 'no error' if it runs; errm
-- without the hint.
CREATE FUNCTION pg_temp.err(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s text;
    m text;
    h text;
BEGIN
    EXECUTE p_sql;
    RETURN 'no error';
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, h = PG_EXCEPTION_HINT;
    RETURN s || ' ' || m || ' | ' || coalesce(h, '');
END
$$;
CREATE FUNCTION pg_temp.errm(p_sql text) RETURNS text LANGUAGE sql AS
$$ SELECT split_part(pg_temp.err(p_sql), ' | ', 1) $$;
CREATE FUNCTION pg_temp.set_err(p_name text, p_value text) RETURNS text LANGUAGE sql AS
$$ SELECT pg_temp.errm(format('SELECT authx.setting_set(%L, %L)', p_name, p_value)) $$;

-- setting.changed events of this transaction, and the last one's details.
CREATE FUNCTION pg_temp.changes() RETURNS bigint LANGUAGE sql AS
$$ SELECT count(*) FROM authx.audit_log WHERE event_type = 'setting.changed' AND at >= now() $$;
CREATE FUNCTION pg_temp.last_change() RETURNS jsonb LANGUAGE sql AS
$$ SELECT details FROM authx.audit_log WHERE event_type = 'setting.changed' AND at >= now()
    ORDER BY at DESC, id DESC LIMIT 1 $$;

-- Fake check times: t0 + p_s seconds.
CREATE FUNCTION pg_temp.at(p_s int) RETURNS timestamptz LANGUAGE sql AS
$$ SELECT t0 + make_interval(secs => p_s) FROM cfg $$;
CREATE FUNCTION pg_temp.chk(p_s int) RETURNS jsonb LANGUAGE sql AS
$$ SELECT authx._alerts_check(pg_temp.at(p_s)) $$;
-- p_n requests answered p_status.
CREATE FUNCTION pg_temp.rec(p_n int, p_status int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. p_n LOOP
        PERFORM authx.usage_record((SELECT ep FROM cfg), p_status, 1);
    END LOOP;
    RETURN p_n;
END
$$;
CREATE FUNCTION pg_temp.stat(p_name text) RETURNS bigint LANGUAGE sql AS
$$ SELECT value FROM authx.stats WHERE name = p_name $$;
-- An alert's state, times as seconds after t0.
CREATE FUNCTION pg_temp.st(p_name text) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s, since %s, raised %s, checked %s', CASE WHEN a.active THEN 'active' ELSE 'inactive' END,
                  coalesce(extract(epoch FROM a.since - c.t0)::int::text, 'null'), a.raised,
                  coalesce(extract(epoch FROM a.checked_at - c.t0)::int::text, 'null'))
      FROM authx.alerts a, cfg c WHERE a.name = p_name $$;
CREATE FUNCTION pg_temp.val(p_name text) RETURNS numeric LANGUAGE sql AS
$$ SELECT round(value::numeric, 6) FROM authx.alerts WHERE name = p_name $$;
-- A transition as _alerts_check returns it (direction above).
CREATE FUNCTION pg_temp.tr(p_alert text, p_state text, p_value numeric, p_thr double precision,
                           p_raised_at timestamptz DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('alert', p_alert, 'state', p_state, 'value', p_value, 'threshold', p_thr,
                              'direction', 'above')
           || CASE WHEN p_raised_at IS NULL THEN '{}' ELSE jsonb_build_object('raised_at', p_raised_at) END $$;
-- The audit events p_type at t0 + p_s: [{severity, details}].
CREATE FUNCTION pg_temp.event(p_type text, p_s int) RETURNS jsonb LANGUAGE sql AS
$$ SELECT jsonb_agg(jsonb_build_object('severity', severity, 'details', details))
     FROM authx.audit_log WHERE event_type = p_type AND at = pg_temp.at(p_s) $$;
CREATE FUNCTION pg_temp.events(p_type text, p_alert text) RETURNS bigint LANGUAGE sql AS
$$ SELECT count(*) FROM authx.audit_log, cfg
    WHERE event_type = p_type AND details->>'alert' = p_alert AND at >= t0 - interval '700 seconds' $$;
-- health(): raised alerts are named beside the checks (not a check) and
-- leave the status alone: ok when every check is ok (other checks may fail
-- on a slow machine, the worker waiting for this transaction: then
-- degraded or failing).
CREATE FUNCTION pg_temp.health_alerts() RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('alerts', h->'alerts', 'alerts_check', h->'checks' ? 'alerts',
                              'status_as_checks', CASE WHEN (SELECT bool_and((e.value->>'ok')::boolean) FROM jsonb_each(h->'checks') e)
                                                       THEN h->>'status' = 'ok'
                                                       ELSE h->>'status' IN ('degraded', 'failing') END)
      FROM (SELECT authx.health() AS h) s $$;

-- ================================================================ definitions
SELECT results_eq(
    $$SELECT name, kind, default_value, min_value, max_value, nullable FROM authx.setting_defs ORDER BY name COLLATE "C"$$,
    $$VALUES ('alert.auto_blocks_per_hour', 'integer', '10'::jsonb, 1::float8, 1e9::float8, true),
             ('alert.cache_hit_rate', 'number', '0.5', 0, 1, true),
             ('alert.cache_lag_ms', 'number', '100', 0, 3600000, true),
             ('alert.cache_min_lookups', 'integer', '100', 1, 1e9, false),
             ('alert.enabled', 'boolean', 'true', NULL, NULL, false),
             ('alert.error_rate', 'number', '0.05', 0, 1, true),
             ('alert.error_rate_min_requests', 'integer', '100', 1, 1e9, false),
             ('alert.hysteresis', 'number', '0.1', 0, 0.9, false),
             ('alert.queue_fill', 'number', '0.8', 0, 1, true),
             ('alert.redis_down_seconds', 'integer', '30', 0, 86400, true),
             ('alert.window_seconds', 'integer', '300', 10, 86400, false)$$,
    'setting_defs: the 11 documented settings with kind, default, bounds, nullable');
SELECT is((SELECT count(*) FROM authx.setting_defs WHERE length(description) > 10), 11::bigint,
          'every setting is described');
SELECT results_eq(
    $$SELECT name, value, default_value, is_default, kind, min_value, max_value, nullable, description,
             updated_at, updated_by FROM authx.setting_list()$$,
    $$SELECT name, default_value, default_value, true, kind, min_value, max_value, nullable, description,
             NULL::timestamptz, NULL::text FROM authx.setting_defs ORDER BY name$$,
    'setting_list: every setting at its default, is_default, in name order');
SELECT is((SELECT count(*) FROM authx.setting_defs WHERE authx.setting_get(name) = default_value), 11::bigint,
          'setting_get: every default');
SELECT is(pg_temp.err($$SELECT authx.setting_get(NULL)$$),
          '22004 name must not be null | Pass a setting name; SELECT name FROM authx.setting_list() lists them.',
          'setting_get(NULL): 22004');
SELECT is(pg_temp.err($$SELECT authx.setting_get('x')$$),
          '42704 unknown setting "x" | SELECT name FROM authx.setting_list() lists the settings.',
          'setting_get of an unknown name: 42704 with a hint');
SELECT is(pg_temp.errm(format('SELECT authx.setting_get(%L)', repeat('n', 300))),
          '42704 unknown setting "' || repeat('n', 100) || '"',
          'setting_get: a 300-character name is quoted cut to 100');
SELECT is(pg_temp.errm($$SELECT authx.setting_get('ALERT.ENABLED')$$), '42704 unknown setting "ALERT.ENABLED"',
          'setting_get: names are case-sensitive');

-- ================================================================ setting_set
SELECT is(authx.setting_set('alert.error_rate', '0.2'), '0.2'::jsonb, 'setting_set returns the value in force');
SELECT is(authx.setting_get('alert.error_rate'), '0.2'::jsonb,
          'setting_get sees it at once in the same transaction (the copy was loaded before)');
SELECT results_eq($$SELECT value, updated_at, updated_by FROM authx.settings WHERE name = 'alert.error_rate'$$,
                  $$VALUES ('0.2'::jsonb, now(), session_user::text COLLATE "default")$$,
                  'the row: value, updated_at now(), updated_by session_user');
SELECT results_eq(
    $$SELECT event_type, severity::text, user_id, details FROM authx.audit_log
       WHERE event_type = 'setting.changed' AND at >= now()$$,
    $$VALUES ('setting.changed', 'medium', NULL::uuid,
              jsonb_build_object('name', 'alert.error_rate', 'old', 0.05, 'new', 0.2, 'by', session_user))$$,
    'audited: setting.changed, medium, {name, old (the default), new, by}');
SELECT is(authx.setting_set('alert.error_rate', '0.3'), '0.3'::jsonb, 'set again');
SELECT is(pg_temp.last_change(), jsonb_build_object('name', 'alert.error_rate', 'old', 0.2, 'new', 0.3, 'by', session_user),
          'audited with the previous value as old');
SELECT is(pg_temp.changes(), 2::bigint, 'one setting.changed per call');
SELECT results_eq($$SELECT value, default_value, is_default, updated_by FROM authx.setting_list() WHERE name = 'alert.error_rate'$$,
                  $$VALUES ('0.3'::jsonb, '0.05'::jsonb, false, session_user::text COLLATE "default")$$,
                  'setting_list: the value, not is_default, by whom');

-- Kinds and bounds.
SELECT is(pg_temp.err($$SELECT authx.setting_set('alert.error_rate', '1.5')$$),
          '22023 setting "alert.error_rate" must be a number between 0 and 1 | '
          || 'Alert when the share of 4xx and 5xx answers recorded by usage_record over alert.window_seconds reaches this.'
          || ' SQL NULL restores the default (0.05).',
          'number above its maximum: 22023 with the description and default as hint');
SELECT is(pg_temp.set_err('alert.error_rate', '-0.001'), '22023 setting "alert.error_rate" must be a number between 0 and 1',
          'number below its minimum: 22023');
SELECT is(pg_temp.set_err('alert.error_rate', '"0.5"'), '22023 setting "alert.error_rate" must be a number between 0 and 1',
          'a string for a number: 22023');
SELECT is(pg_temp.set_err('alert.error_rate', 'true'), '22023 setting "alert.error_rate" must be a number between 0 and 1',
          'a boolean for a number: 22023');
SELECT is(ARRAY[pg_temp.set_err('alert.cache_lag_ms', '[1]'), pg_temp.set_err('alert.cache_lag_ms', '{"ms": 1}'),
                pg_temp.set_err('alert.cache_lag_ms', '3600000.5')],
          array_fill('22023 setting "alert.cache_lag_ms" must be a number between 0 and 3600000'::text, ARRAY[3]),
          'an array, an object, 3600000.5 for alert.cache_lag_ms: 22023');
SELECT is(pg_temp.err($$SELECT authx.setting_set('alert.error_rate_min_requests', '1.5')$$),
          '22023 setting "alert.error_rate_min_requests" must be an integer between 1 and 1000000000 | '
          || 'Fewest requests in the window for alert.error_rate to be judged. SQL NULL restores the default (100).',
          'a fraction for an integer: 22023 (bounds printed in full)');
SELECT is(ARRAY[pg_temp.set_err('alert.error_rate_min_requests', '0'),
                pg_temp.set_err('alert.error_rate_min_requests', '1000000001')],
          array_fill('22023 setting "alert.error_rate_min_requests" must be an integer between 1 and 1000000000'::text, ARRAY[2]),
          'an integer out of bounds, either side: 22023');
SELECT is(ARRAY[pg_temp.set_err('alert.window_seconds', '9'), pg_temp.set_err('alert.window_seconds', '86401'),
                pg_temp.set_err('alert.window_seconds', '"300"')],
          array_fill('22023 setting "alert.window_seconds" must be an integer between 10 and 86400'::text, ARRAY[3]),
          'alert.window_seconds 9, 86401, "300": 22023');
SELECT is(pg_temp.err($$SELECT authx.setting_set('alert.enabled', '1')$$),
          '22023 setting "alert.enabled" must be true or false | '
          || 'Pass ''true'' or ''false'' as jsonb; SQL NULL restores the default (true).',
          'a number for a boolean: 22023 with a hint');
SELECT is(pg_temp.set_err('alert.enabled', '"false"'), '22023 setting "alert.enabled" must be true or false',
          'a string for a boolean: 22023');
SELECT is(pg_temp.err($$SELECT authx.setting_set('alert.enabled', 'null')$$),
          '22023 setting "alert.enabled" cannot be null | Pass a boolean, or SQL NULL for the default (true).',
          'JSON null for a boolean: 22023 cannot be null, with a hint');
SELECT is((SELECT array_agg(pg_temp.set_err(name, 'null') ORDER BY name) FROM authx.setting_defs WHERE NOT nullable),
          (SELECT array_agg(format('22023 setting "%s" cannot be null', name) ORDER BY name)
             FROM authx.setting_defs WHERE NOT nullable),
          'JSON null for each non-nullable setting: 22023 cannot be null');
SELECT is(authx.setting_get('alert.error_rate'), '0.3'::jsonb, 'refused calls leave the value');
SELECT is(pg_temp.changes(), 2::bigint, 'and are not audited');
SELECT is(ARRAY[authx.setting_set('alert.error_rate', '0'), authx.setting_set('alert.error_rate', '1'),
                authx.setting_set('alert.error_rate_min_requests', '1'),
                authx.setting_set('alert.error_rate_min_requests', '1000000000'),
                authx.setting_set('alert.window_seconds', '10'), authx.setting_set('alert.window_seconds', '86400'),
                authx.setting_set('alert.cache_lag_ms', '3600000'), authx.setting_set('alert.hysteresis', '0'),
                authx.setting_set('alert.enabled', 'false')],
          ARRAY['0', '1', '1', '1000000000', '10', '86400', '3600000', '0', 'false']::jsonb[],
          'bounds are inclusive');
SELECT is(authx.setting_set('alert.cache_min_lookups', '2.0'), '2.0'::jsonb, '2.0 is an integer');
SELECT is(authx.setting_get('alert.cache_min_lookups'), '2.0'::jsonb, 'and kept as given');
SELECT is((SELECT array_agg(authx.setting_set(name, 'null') ORDER BY name) FROM authx.setting_defs WHERE nullable),
          array_fill('null'::jsonb, ARRAY[6]), 'JSON null accepted by each of the 6 nullable settings');
SELECT is((SELECT array_agg(authx.setting_get(name) ORDER BY name) FROM authx.setting_defs WHERE nullable),
          array_fill('null'::jsonb, ARRAY[6]), 'setting_get: null');
SELECT is((SELECT count(*) FROM authx.settings s JOIN authx.setting_defs d USING (name) WHERE d.nullable AND s.value = 'null'),
          6::bigint, 'kept as rows holding JSON null');
SELECT is(authx.setting_set('alert.queue_fill', NULL), '0.8'::jsonb, 'SQL NULL: returns the default');
SELECT is((SELECT count(*) FROM authx.settings WHERE name = 'alert.queue_fill'), 0::bigint, 'the row is deleted');
SELECT is(authx.setting_get('alert.queue_fill'), '0.8'::jsonb, 'setting_get: the default again');
SELECT is((SELECT is_default FROM authx.setting_list() WHERE name = 'alert.queue_fill'), true, 'setting_list: is_default');
SELECT is(pg_temp.last_change(), jsonb_build_object('name', 'alert.queue_fill', 'old', NULL, 'new', 0.8, 'by', session_user),
          'audited: old JSON null, new the default');
SELECT is(authx.setting_set('alert.window_seconds', NULL), '300'::jsonb, 'SQL NULL for a non-nullable setting: its default');
SELECT is(authx.setting_set('alert.window_seconds', NULL), '300'::jsonb, 'and again, already at the default');
SELECT is(pg_temp.last_change(), jsonb_build_object('name', 'alert.window_seconds', 'old', 300, 'new', 300, 'by', session_user),
          'audited all the same');
SELECT is(pg_temp.changes(), 21::bigint, 'one event per accepted call');
SELECT is(pg_temp.err($$SELECT authx.setting_set(NULL, '1')$$), '22004 name must not be null | Pass a non-null name.',
          'setting_set: NULL name 22004');
SELECT is(pg_temp.err($$SELECT authx.setting_set('alert.nope', '1')$$),
          '42704 unknown setting "alert.nope" | SELECT name FROM authx.setting_list() lists the settings.',
          'setting_set: unknown name 42704 with a hint');
SELECT is(pg_temp.set_err(repeat('n', 300), NULL), '42704 unknown setting "' || repeat('n', 100) || '"',
          'setting_set: a long unknown name quoted cut to 100');
SELECT is(pg_temp.changes(), 21::bigint, 'not audited');

-- ================================================================ the copy per backend
SELECT is(authx.setting_get('alert.window_seconds'), '300'::jsonb, 'window: 300 (copy loaded)');
SAVEPOINT s1;
SELECT is(authx.setting_set('alert.window_seconds', '60'), '60'::jsonb, 'set to 60 in a savepoint');
SELECT is(authx.setting_get('alert.window_seconds'), '60'::jsonb, 'read back inside it (copy reloaded)');
ROLLBACK TO SAVEPOINT s1;
SELECT is(authx.setting_get('alert.window_seconds'), '300'::jsonb, 'after ROLLBACK TO SAVEPOINT: 300 again');
SELECT is((SELECT count(*) FROM authx.settings WHERE name = 'alert.window_seconds'), 0::bigint, 'no row');
SAVEPOINT s2;
SELECT is(authx.setting_set('alert.window_seconds', '120'), '120'::jsonb, 'set to 120 in a savepoint');
SELECT is(authx.setting_get('alert.window_seconds'), '120'::jsonb, 'read back inside it');
RELEASE SAVEPOINT s2;
SELECT is(authx.setting_get('alert.window_seconds'), '120'::jsonb, 'after RELEASE: 120');
CREATE FUNCTION pg_temp.set_and_fail() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM authx.setting_set('alert.window_seconds', '999');
    IF authx.setting_get('alert.window_seconds') = '999' THEN
        RAISE EXCEPTION 'set, read back, failed';
    END IF;
END
$$;
SELECT is(pg_temp.errm('SELECT pg_temp.set_and_fail()'), 'P0001 set, read back, failed',
          'a function sets 999, reads it back, raises (caught)');
SELECT is(authx.setting_get('alert.window_seconds'), '120'::jsonb, 'the caught change is forgotten: 120');

-- ================================================================ privileges
SELECT is(authx.setting_set('alert.cache_lag_ms', '250'), '250'::jsonb, 'cache_lag_ms 250');
SET ROLE authx_app;
SELECT is(authx.setting_get('alert.cache_lag_ms'), '250'::jsonb, 'authx_app: setting_get (copy reloaded through the owner)');
SELECT throws_ok($$SELECT authx.setting_set('alert.cache_lag_ms', '1')$$, '42501',
                 'permission denied for function setting_set', 'authx_app: setting_set 42501');
SELECT throws_ok($$SELECT * FROM authx.setting_list()$$, '42501',
                 'permission denied for function setting_list', 'authx_app: setting_list 42501');
SELECT throws_ok($$SELECT authx.alerts_check()$$, '42501',
                 'permission denied for function alerts_check', 'authx_app: alerts_check 42501');
SELECT throws_ok($$SELECT authx._alerts_check(now())$$, '42501',
                 'permission denied for function _alerts_check', 'authx_app: _alerts_check 42501');
SELECT throws_ok($$SELECT * FROM authx.settings$$, '42501',
                 'permission denied for table settings', 'authx_app: reading authx.settings 42501');
SELECT throws_ok($$SELECT * FROM authx.alerts$$, '42501',
                 'permission denied for view alerts', 'authx_app: reading authx.alerts 42501');
RESET ROLE;
SET ROLE authx_admin;
SELECT is(authx.setting_set('alert.cache_lag_ms', '500'), '500'::jsonb, 'authx_admin: setting_set');
SELECT is(authx.setting_get('alert.cache_lag_ms'), '500'::jsonb, 'authx_admin: setting_get sees it');
SELECT is((SELECT count(*) FROM authx.setting_list()), 11::bigint, 'authx_admin: setting_list');
SELECT is((SELECT updated_by FROM authx.settings WHERE name = 'alert.cache_lag_ms'), session_user::text,
          'authx_admin: reads authx.settings; updated_by is the session user');
SELECT is(pg_temp.last_change()->>'by', session_user::text, 'audited by the session user');
SELECT is(jsonb_typeof(authx.alerts_check()), 'array', 'authx_admin: alerts_check answers an array');
SELECT throws_ok($$UPDATE authx.settings SET value = '1' WHERE name = 'alert.cache_lag_ms'$$, '42501',
                 'permission denied for table settings', 'authx_admin: UPDATE authx.settings 42501');
SELECT throws_ok($$INSERT INTO authx.settings (name, value) VALUES ('alert.hysteresis', '0.5')$$, '42501',
                 'permission denied for table settings', 'authx_admin: INSERT INTO authx.settings 42501');
SELECT throws_ok($$DELETE FROM authx.settings$$, '42501',
                 'permission denied for table settings', 'authx_admin: DELETE FROM authx.settings 42501');
SELECT throws_ok($$UPDATE authx.setting_defs SET max_value = 2$$, '42501',
                 'permission denied for table setting_defs', 'authx_admin: UPDATE authx.setting_defs 42501');
RESET ROLE;

-- ================================================================ alerts
-- Every setting at its default, every alert inactive without samples.
DELETE FROM authx.settings;
UPDATE authx.alert_state SET active = false, value = NULL, threshold = NULL, since = NULL, raised = 0,
       checked_at = NULL, pending_since = NULL, samples = '[]';
-- Its answer depends on the machine (the Redis lag): not compared.
SELECT pg_temp.chk(-600) AS x \gset
SELECT results_eq($$SELECT name, direction, threshold FROM authx.alerts ORDER BY name$$,
                  $$VALUES ('auto_blocks', 'above', 10::float8), ('cache_hit_rate', 'below', 0.5),
                           ('cache_lag', 'above', 100), ('error_rate', 'above', 0.05),
                           ('queue_fill', 'above', 0.8), ('redis_down', 'above', 30)$$,
                  'authx.alerts: the six alerts, their direction, the default thresholds');
SELECT is((SELECT count(*) FROM authx.alerts WHERE checked_at = pg_temp.at(-600)), 6::bigint, 'all checked at p_now');
SELECT ok((SELECT value BETWEEN 0 AND 1 FROM authx.alerts WHERE name = 'queue_fill'), 'queue_fill: a fraction 0 .. 1');
SELECT is((SELECT array_agg(value ORDER BY name) FROM authx.alerts WHERE name IN ('auto_blocks', 'redis_down')),
          ARRAY[0, 0]::float8[], 'auto_blocks and redis_down: 0');
SELECT is((SELECT array_agg(value ORDER BY name) FROM authx.alerts WHERE name IN ('cache_hit_rate', 'error_rate')),
          ARRAY[NULL, NULL]::float8[], 'cache_hit_rate and error_rate: no value from a first sample');

-- Only error_rate and auto_blocks on from here: threshold 0.5, hysteresis
-- 0.2 (cleared under 0.4), at least 20 requests; the state reset again.
SELECT count(authx.setting_set(n, 'null')) AS x
  FROM unnest(ARRAY['alert.queue_fill', 'alert.cache_lag_ms', 'alert.redis_down_seconds', 'alert.cache_hit_rate']) n \gset
SELECT authx.setting_set('alert.error_rate', '0.5') AS x, authx.setting_set('alert.hysteresis', '0.2') AS y,
       authx.setting_set('alert.error_rate_min_requests', '20') AS z \gset
UPDATE authx.alert_state SET active = false, value = NULL, threshold = NULL, since = NULL, raised = 0,
       checked_at = NULL, pending_since = NULL, samples = '[]';

SELECT is(pg_temp.chk(0), '[]'::jsonb, 't0: nothing raised');
SELECT results_eq($$SELECT name, threshold FROM authx.alerts ORDER BY name$$,
                  $$VALUES ('auto_blocks', 10::float8), ('cache_hit_rate', NULL), ('cache_lag', NULL),
                           ('error_rate', 0.5), ('queue_fill', NULL), ('redis_down', NULL)$$,
                  'thresholds set to JSON null are NULL');
SELECT ok((SELECT value BETWEEN 0 AND 1 FROM authx.alerts WHERE name = 'queue_fill'), 'queue_fill still measured when off');
SELECT results_eq(
    $$SELECT value, jsonb_array_length(samples), (samples->0->>'t')::float8, (samples->0->'c'->>0)::bigint,
             (samples->0->'c'->>1)::bigint FROM authx.alert_state WHERE name = 'error_rate'$$,
    $$SELECT NULL::float8, 1, extract(epoch FROM pg_temp.at(0))::float8, pg_temp.stat('usage_recorded'),
             pg_temp.stat('usage_status_4xx') + pg_temp.stat('usage_status_5xx')$$,
    'error_rate: no value yet; one sample {t: p_now, c: [recorded, 4xx + 5xx]}');

-- An auto_blocks sample over an hour old does not count.
UPDATE authx.alert_state
   SET samples = jsonb_build_array(jsonb_build_object('t', extract(epoch FROM pg_temp.at(10)) - 3601,
                                                      'c', jsonb_build_array(pg_temp.stat('threat_blocks') - 12)))
 WHERE name = 'auto_blocks';
SELECT pg_temp.rec(5, 500) AS x, pg_temp.rec(5, 200) AS y \gset
SELECT is(pg_temp.chk(10), '[]'::jsonb, '+10 s, 10 requests (5 errors): nothing raised');
SELECT is(pg_temp.val('error_rate'), NULL, 'fewer than 20 requests: no value');
SELECT is(pg_temp.st('error_rate'), 'inactive, since null, raised 0, checked 10', 'state kept');
SELECT is(pg_temp.val('auto_blocks'), 0::numeric, 'auto_blocks: a sample 3601 s old does not count');

SELECT pg_temp.rec(5, 404) AS x, pg_temp.rec(5, 200) AS y \gset
SELECT is(pg_temp.chk(20), jsonb_build_array(pg_temp.tr('error_rate', 'raised', 0.5, 0.5)),
          '+20 s, 20 requests, 10 errors: error_rate 0.5 raised');
SELECT is(pg_temp.event('alert.raised', 20),
          jsonb_build_array(jsonb_build_object('severity', 'high', 'details', pg_temp.tr('error_rate', 'raised', 0.5, 0.5) - 'state')),
          'one alert.raised event, high, at p_now, with the same details');
SELECT is(pg_temp.st('error_rate'), 'active, since 20, raised 1, checked 20', 'alert_state: active, since, raised 1');
SELECT is(pg_temp.val('error_rate'), 0.5, 'value 0.5');
SELECT is(pg_temp.health_alerts(), '{"alerts": ["error_rate"], "alerts_check": false, "status_as_checks": true}'::jsonb,
          'health: alerts names it, beside the checks; the status is as the checks say');

SELECT pg_temp.rec(10, 500) AS x \gset
SELECT is(pg_temp.chk(30), '[]'::jsonb, '+30 s, 30 requests, 20 errors: not raised again');
SELECT is(pg_temp.events('alert.raised', 'error_rate'), 1::bigint, 'no second alert.raised');
SELECT is(pg_temp.st('error_rate') || ' ' || pg_temp.val('error_rate'), 'active, since 20, raised 1, checked 30 0.666667',
          'still raised, since +20 s; value 0.666667');

SELECT pg_temp.rec(15, 200) AS x \gset
SELECT is(pg_temp.chk(40), '[]'::jsonb, '+40 s, 45 requests, 20 errors (0.444, over 0.4): not cleared');
SELECT is(pg_temp.st('error_rate') || ' ' || pg_temp.val('error_rate'), 'active, since 20, raised 1, checked 40 0.444444',
          'still raised');

SELECT pg_temp.rec(6, 200) AS x \gset
SELECT is(pg_temp.chk(50), jsonb_build_array(pg_temp.tr('error_rate', 'cleared', 0.392157, 0.5, pg_temp.at(20))),
          '+50 s, 51 requests, 20 errors (0.392): cleared, with raised_at');
SELECT is(pg_temp.event('alert.cleared', 50),
          jsonb_build_array(jsonb_build_object('severity', 'info',
              'details', pg_temp.tr('error_rate', 'cleared', 0.392157, 0.5, pg_temp.at(20)) - 'state')),
          'one alert.cleared event, info');
SELECT is(pg_temp.st('error_rate'), 'inactive, since 50, raised 1, checked 50', 'alert_state: inactive since +50 s');
SELECT is(pg_temp.health_alerts(), '{"alerts": [], "alerts_check": false, "status_as_checks": true}'::jsonb,
          'health: alerts empty');

SELECT pg_temp.rec(30, 503) AS x \gset
SELECT is(pg_temp.chk(60), jsonb_build_array(pg_temp.tr('error_rate', 'raised', 0.617284, 0.5)),
          '+60 s, 81 requests, 50 errors: raised again');
SELECT is(pg_temp.st('error_rate'), 'active, since 60, raised 2, checked 60', 'raised 2');
SELECT is(ARRAY[pg_temp.events('alert.raised', 'error_rate'), pg_temp.events('alert.cleared', 'error_rate')],
          ARRAY[2, 1]::bigint[], 'two alert.raised, one alert.cleared events');

-- The window: at +400 s every sample (+0 .. +60 s) is out of it.
SELECT is(pg_temp.chk(400), '[]'::jsonb, '+400 s: nothing');
SELECT is(pg_temp.st('error_rate') || ' ' || coalesce(pg_temp.val('error_rate')::text, 'null'),
          'active, since 60, raised 2, checked 400 null', 'no sample in the window: no value, still raised');
SELECT results_eq($$SELECT jsonb_array_length(samples), (samples->0->>'t')::float8 FROM authx.alert_state WHERE name = 'error_rate'$$,
                  $$SELECT 1, extract(epoch FROM pg_temp.at(400))::float8$$,
                  'older samples dropped, the new one kept');
SELECT pg_temp.rec(20, 200) AS x \gset
SELECT is(pg_temp.chk(410), jsonb_build_array(pg_temp.tr('error_rate', 'cleared', 0, 0.5, pg_temp.at(60))),
          '+410 s, 20 good requests: cleared (the 50 errors no longer count)');

-- A threshold turned off clears and keeps the alert off.
SELECT pg_temp.rec(20, 500) AS x \gset
SELECT is(pg_temp.chk(420), jsonb_build_array(pg_temp.tr('error_rate', 'raised', 0.5, 0.5)), '+420 s: raised (0.5)');
SELECT is(authx.setting_set('alert.error_rate', 'null'), 'null'::jsonb, 'alert.error_rate set to JSON null');
SELECT is(pg_temp.chk(430), jsonb_build_array(pg_temp.tr('error_rate', 'cleared', 0.5, NULL, pg_temp.at(420))),
          '+430 s: cleared, threshold null');
SELECT pg_temp.rec(20, 500) AS x \gset
SELECT is(pg_temp.chk(440), '[]'::jsonb, '+440 s, error rate 0.667: stays off');
SELECT results_eq($$SELECT active, threshold, round(value::numeric, 6) FROM authx.alerts WHERE name = 'error_rate'$$,
                  $$VALUES (false, NULL::float8, 0.666667)$$, 'inactive, no threshold, value still measured');

-- auto_blocks: 12 blocks in the last hour (a sample half an hour back).
SELECT authx.setting_set('alert.error_rate', '0.5') AS x \gset
UPDATE authx.alert_state
   SET samples = jsonb_build_array(jsonb_build_object('t', extract(epoch FROM pg_temp.at(450)) - 1800,
                                                      'c', jsonb_build_array(pg_temp.stat('threat_blocks') - 12)))
 WHERE name = 'auto_blocks';
SELECT pg_temp.chk(450) AS c450 \gset
SELECT is(jsonb_path_query_array(:'c450', '$[*].alert') || jsonb_path_query_array(:'c450', '$[*].state'),
          '["auto_blocks", "error_rate", "raised", "raised"]'::jsonb,
          '+450 s, threshold back: error_rate raised, and auto_blocks');
SELECT ok((:'c450'::jsonb->0->>'value')::numeric >= 12 AND (:'c450'::jsonb->0->'threshold') = '10'
          AND :'c450'::jsonb->0->>'direction' = 'above', 'auto_blocks: 12 blocks (or more) in the hour, threshold 10');
SELECT is(pg_temp.st('error_rate'), 'active, since 450, raised 4, checked 450', 'error_rate raised 4');
SELECT is(pg_temp.health_alerts(), '{"alerts": ["auto_blocks", "error_rate"], "alerts_check": false, "status_as_checks": true}'::jsonb,
          'health names both (in name order); the status is as the checks say');

-- alert.enabled false clears everything.
SELECT is(authx.setting_set('alert.enabled', 'false'), 'false'::jsonb, 'alert.enabled false');
SELECT pg_temp.chk(460) AS c460 \gset
SELECT is(jsonb_path_query_array(:'c460', '$[*].alert') || jsonb_path_query_array(:'c460', '$[*].state'),
          '["auto_blocks", "error_rate", "cleared", "cleared"]'::jsonb, '+460 s: both cleared');
SELECT is((SELECT count(*) FROM authx.alerts WHERE active), 0::bigint, 'no alert active');
SELECT is(authx.health()->'alerts', '[]'::jsonb, 'health: alerts empty');
SELECT pg_temp.rec(20, 500) AS x \gset
SELECT is(pg_temp.chk(470), '[]'::jsonb, '+470 s, more errors: still off');
SELECT is(authx.setting_set('alert.enabled', NULL), 'true'::jsonb, 'alert.enabled back to its default');
SELECT pg_temp.chk(480) AS c480 \gset
SELECT is(jsonb_path_query_array(:'c480', '$[*].alert') || jsonb_path_query_array(:'c480', '$[*].state'),
          '["auto_blocks", "error_rate", "raised", "raised"]'::jsonb, '+480 s: both raised again');
SELECT is(pg_temp.st('error_rate'), 'active, since 480, raised 5, checked 480', 'error_rate raised 5');

-- ================================================================ _alert_window
-- T = 2030-01-01 00:00:00 UTC = 1893456000; window 300 s (a sample at most every 10 s).
SELECT is((SELECT to_jsonb(w) FROM authx._alert_window('[]', '2030-01-01 00:00:00+00', 300, ARRAY[5, 1]) w),
          '{"samples": [{"t": 1893456000, "c": [5, 1]}], "delta": null}'::jsonb,
          '_alert_window: the first sample, no delta');
SELECT is((SELECT to_jsonb(w) FROM authx._alert_window('[{"t": 1893455900, "c": [5, 1]}]', '2030-01-01 00:00:00+00', 300,
                                                       ARRAY[9, 3]) w),
          '{"samples": [{"t": 1893455900, "c": [5, 1]}, {"t": 1893456000, "c": [9, 3]}], "delta": [4, 2]}'::jsonb,
          'the increase since the oldest sample; the new sample appended');
SELECT is((SELECT to_jsonb(w) FROM authx._alert_window('[{"t": 1893455995, "c": [5, 1]}]', '2030-01-01 00:00:00+00', 300,
                                                       ARRAY[9, 3]) w),
          '{"samples": [{"t": 1893455995, "c": [5, 1]}], "delta": [4, 2]}'::jsonb,
          'no new sample within window/30 of the last');
SELECT is((SELECT to_jsonb(w) FROM authx._alert_window(
               '[{"t": 1893456001, "c": [3, 0]}, {"t": 1893455699, "c": [1, 0]}, {"t": 1893455950, "c": [7, 1]}, {"t": 1893455700, "c": [2, 0]}]',
               '2030-01-01 00:00:00+00', 300, ARRAY[10, 2]) w),
          '{"samples": [{"t": 1893455700, "c": [2, 0]}, {"t": 1893455950, "c": [7, 1]}, {"t": 1893456000, "c": [10, 2]}], "delta": [8, 2]}'::jsonb,
          'samples older than the window or in the future dropped (exactly 300 s kept), the rest sorted');
SELECT is((SELECT to_jsonb(w) FROM authx._alert_window('[{"t": 1893455800, "c": [50, 10]}, {"t": 1893455900, "c": [60, 11]}]',
                                                       '2030-01-01 00:00:00+00', 300, ARRAY[3, 11]) w),
          '{"samples": [{"t": 1893456000, "c": [3, 11]}], "delta": null}'::jsonb,
          'a counter lower than in the oldest sample (a restart): every sample forgotten');
SELECT is((SELECT to_jsonb(w) FROM authx._alert_window('[{"t": 1893455800, "c": [5, 1]}, {"t": 1893455900, "c": [60, 11]}]',
                                                       '2030-01-01 00:00:00+00', 300, ARRAY[30, 11]) w),
          '{"samples": [{"t": 1893456000, "c": [30, 11]}], "delta": null}'::jsonb,
          'a counter above the oldest sample but below the newest (a restart, since counted up again): forgotten');
SELECT is((SELECT to_jsonb(w) FROM authx._alert_window('[{"t": 1893455900, "c": [5, 10]}]', '2030-01-01 00:00:00+00', 300,
                                                       ARRAY[9, 3]) w),
          '{"samples": [{"t": 1893456000, "c": [9, 3]}], "delta": null}'::jsonb,
          'the second counter lower: forgotten too');
SELECT is((SELECT to_jsonb(w) FROM authx._alert_window('[{"t": 1893455900, "c": [5, 1]}]', '2030-01-01 00:00:00+00', 300,
                                                       ARRAY[5, 1]) w),
          '{"samples": [{"t": 1893455900, "c": [5, 1]}, {"t": 1893456000, "c": [5, 1]}], "delta": [0, 0]}'::jsonb,
          'unchanged counters: kept, delta 0');

SELECT * FROM finish();
ROLLBACK;

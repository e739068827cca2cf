-- 12_ratelimit.sql — rate limits, end to end.
--
-- Covers:
--   * exact counting: max N per window lets exactly N of a burst through,
--     for N of 1 to 12345 and windows of 100 ms to 366 days, N dividing
--     the window or not (3 per second, 7 per 10 seconds, 7 per 10 hours);
--     with short windows a burst may earn more only if it took long enough
--     (the allowed count is compared with what the elapsed time explains);
--     remaining counts down N-1 .. 0; with max = 2^31-1 per 366 days (per
--     / max not a whole number of microseconds) a full-cost request
--     empties the bucket and the next one is denied;
--   * the answer: reset_after of a first request is exactly per / max
--     (rounded up to a microsecond); after exhaustion retry_after is at
--     most per / max and reset_after at most per (bounds, never equality);
--   * cost > 1 (a denied request spends nothing), cost 0 (allowed even on
--     an empty bucket, spends nothing), cost > max (never allowed,
--     retry_after NULL, spends nothing);
--   * rate_peek answers what rate_limit would, and spends nothing;
--   * recovery: with 2 per 200 ms, waiting retry_after (+ margin) lets one
--     more through, waiting a window fills the bucket;
--   * buckets: different subjects, and one subject under two limits, are
--     distinct buckets (switching back does not restart one); subjects
--     compare bytewise;
--   * spending is not undone by ROLLBACK (another backend, through dblink:
--     a rolled-back and an aborted transaction), ROLLBACK TO SAVEPOINT, or
--     an exception caught in PL/pgSQL, and is seen by other backends;
--   * policies: the seeds (login 5/min, register 3/min, refresh 10/min,
--     mfa 5/min, api 100/min, password_reset 3 per 15 min, store and
--     fail_mode local), rate_check lets
--     exactly max through for each; unknown policy 42704 (names compare
--     bytewise); rate_policy_set creates (defaults: store and fail_mode
--     local, seeded false) and changes (a new limit is a new bucket,
--     description kept when NULL), validates every argument (22004 NULL,
--     22023 name, max, per, fail_mode) and a failed call changes nothing;
--     a window rate_limit refuses ('1 year 1 day' = 366.25 days) is refused
--     by rate_policy_set and rate_override_set too; editing a seed (by
--     rate_policy_set or UPDATE) clears its seeded flag;
--   * overrides: a higher limit, another window, bypass (allowed, remaining,
--     reset_after and retry_after NULL, any cost), replacing one, expiry (the
--     policy applies again at once, before maintenance deletes the row),
--     rate_override_remove true / false (and 22004 for NULL arguments), the
--     same subject under two policies is two buckets, a policy's overrides
--     go with it; every invalid argument (22004, 42704, 22023);
--   * audit events rate_limit.policy_set / override_set / override_removed
--     (severity medium, details), none for a removal that found nothing;
--   * maintenance_run() -> 'rate_limits' -> 'overrides_expired' counts the
--     expired overrides it deleted and keeps live ones;
--   * authx.stats rate_limit_allowed / rate_limit_denied count rate_limit,
--     rate_peek and rate_check answers (nothing else in the cluster calls
--     them while this runs);
--   * privileges: authx_app calls rate_limit, rate_peek and rate_check but
--     not rate_policy_set / rate_override_set / rate_override_remove nor
--     reads the tables (42501); authx_admin may.
-- Buckets live in shared memory and outlive the transaction, so every
-- subject carries a suffix unique to this run; everything else is rolled
-- back at the end.  Timing: long windows wherever the test allows, and
-- only bounds (with margins) on the short ones.
-- A committed maintenance pass first: today's partitions exist before this
-- transaction writes audit events, and no committed override is left
-- expired for the count of the maintenance section.
DO $$ BEGIN PERFORM authx.maintenance_run(); END $$;

BEGIN;
SELECT plan(185);

CREATE SCHEMA tap12;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'dblink') THEN
        CREATE EXTENSION dblink SCHEMA tap12;
    END IF;
END
$$;
SET LOCAL search_path = public, tap12;
SELECT set_config('tap12.run', 'tap12-' || gen_random_uuid(), true) AS run \gset

-- A subject unique to this run.
CREATE FUNCTION pg_temp.s(p text) RETURNS text LANGUAGE sql AS
$$ SELECT current_setting('tap12.run') || ':' || p $$;
-- An answer as "allowed remaining retry" (- for NULL, "retry" when set).
CREATE FUNCTION pg_temp.fmt(r authx.rate_limit_result) RETURNS text LANGUAGE sql AS
$$ SELECT CASE WHEN r.allowed THEN 't' WHEN NOT r.allowed THEN 'f' ELSE '-' END || ' '
          || coalesce(r.remaining::text, '-') || ' ' || CASE WHEN r.retry_after IS NULL THEN '-' ELSE 'retry' END $$;
CREATE FUNCTION pg_temp.rl(p_subject text, p_max integer, p_per interval, p_cost integer DEFAULT 1) RETURNS text
LANGUAGE sql AS $$ SELECT pg_temp.fmt(authx.rate_limit(pg_temp.s(p_subject), p_max, p_per, p_cost)) $$;
CREATE FUNCTION pg_temp.peek(p_subject text, p_max integer, p_per interval) RETURNS text
LANGUAGE sql AS $$ SELECT pg_temp.fmt(authx.rate_peek(pg_temp.s(p_subject), p_max, p_per)) $$;
CREATE FUNCTION pg_temp.rc(p_policy text, p_subject text, p_cost integer DEFAULT 1) RETURNS text
LANGUAGE sql AS $$ SELECT pg_temp.fmt(authx.rate_check(p_policy, pg_temp.s(p_subject), p_cost)) $$;
-- p_n requests of cost 1 in a row: how many were allowed.  A bucket of max
-- per p_per earns one more every p_per / max, so a burst that took longer
-- than that may legitimately get more than max: those extra ones, if the
-- elapsed time explains them, are not counted.  The answer is max exactly
-- when the limit holds, whatever the load.
CREATE FUNCTION pg_temp.burst_count(p_max integer, p_per interval, p_t0 timestamptz, p_allowed integer)
RETURNS integer LANGUAGE sql AS $$
    SELECT CASE WHEN p_allowed > p_max
                 AND p_allowed <= p_max + floor(extract(epoch FROM clock_timestamp() - p_t0) * p_max
                                                / extract(epoch FROM p_per))
                THEN p_max ELSE p_allowed END
$$;
CREATE FUNCTION pg_temp.burst(p_subject text, p_max integer, p_per interval, p_n integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    n  integer := 0;
BEGIN
    FOR i IN 1 .. p_n LOOP
        IF (authx.rate_limit(pg_temp.s(p_subject), p_max, p_per)).allowed THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN pg_temp.burst_count(p_max, p_per, t0, n);
END
$$;
-- The same through rate_check; p_max and p_per are the limit expected to apply.
CREATE FUNCTION pg_temp.check_burst(p_policy text, p_subject text, p_max integer, p_per interval, p_n integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    n  integer := 0;
BEGIN
    FOR i IN 1 .. p_n LOOP
        IF (authx.rate_check(p_policy, pg_temp.s(p_subject))).allowed THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN pg_temp.burst_count(p_max, p_per, t0, n);
END
$$;
-- Requests until the first denial: how many passed, and that answer.
CREATE FUNCTION pg_temp.until_denied(p_subject text, p_max integer, p_per interval,
                                     OUT n_allowed integer, OUT r authx.rate_limit_result)
LANGUAGE plpgsql AS $$
BEGIN
    n_allowed := 0;
    LOOP
        r := authx.rate_limit(pg_temp.s(p_subject), p_max, p_per);
        EXIT WHEN NOT r.allowed OR n_allowed >= 100000;
        n_allowed := n_allowed + 1;
    END LOOP;
END
$$;
-- authx.stats counters since the last mark.
CREATE TEMP TABLE tap12_stats (name text PRIMARY KEY, value bigint);
CREATE FUNCTION pg_temp.mark() RETURNS void LANGUAGE sql AS $$
    DELETE FROM tap12_stats;
    INSERT INTO tap12_stats SELECT name, value FROM authx.stats WHERE name IN ('rate_limit_allowed', 'rate_limit_denied');
$$;
CREATE FUNCTION pg_temp.delta(p_name text) RETURNS bigint LANGUAGE sql AS
$$ SELECT s.value - m.value FROM authx.stats s JOIN tap12_stats m USING (name) WHERE s.name = p_name $$;

-- ================================================================ exact counting
-- Long windows: the bucket earns nothing back during the burst.
SELECT is(pg_temp.burst('n' || max || '/' || per, max, per::interval, max + 5), max,
          format('%s per %s: exactly %s of %s requests allowed', max, per, max, max + 5))
  FROM (VALUES (1, '1 hour'), (2, '1 hour'), (3, '1 hour'), (5, '1 day'), (7, '10 hours'), (10, '1 hour'),
               (100, '1 hour'), (1000, '1 day'), (1, '366 days'), (12345, '366 days')) v(max, per);
-- Short windows, the allowance not a whole number of microseconds for 3
-- per second (333333.3 µs), 7 per 10 seconds and 6 per 100 ms.
SELECT is(pg_temp.burst('short' || max || '/' || per, max, per::interval, 20), max,
          format('%s per %s: exactly %s of 20 quick requests allowed', max, per, max))
  FROM (VALUES (3, '1 second'), (7, '10 seconds'), (6, '100 milliseconds')) v(max, per);
SELECT is(array_agg(pg_temp.rl('countdown', 4, '1 hour') ORDER BY i),
          ARRAY['t 3 -', 't 2 -', 't 1 -', 't 0 -', 'f 0 retry', 'f 0 retry'],
          '4 per hour: remaining counts down 3, 2, 1, 0, then denied with retry_after')
  FROM generate_series(1, 6) i;
-- per / max = 14725.4 µs: an implementation rounding it would leave room
-- for about 58000 more after the whole allowance is spent.
SELECT is(pg_temp.rl('int32', 2147483647, '366 days', 2147483647), 't 0 -',
          '2147483647 per 366 days: a request of cost 2147483647 spends the whole bucket');
SELECT is(pg_temp.rl('int32', 2147483647, '366 days', 1000), 'f 0 retry',
          '... and a request of cost 1000 right after is denied (per / max kept exact)');

-- ================================================================ the answer
SELECT is((SELECT reset_after FROM authx.rate_limit(pg_temp.s('reset3'), 3, '1 hour')), interval '20 minutes',
          'first request of 3 per hour: reset_after is exactly 20 minutes');
SELECT is((SELECT reset_after FROM authx.rate_limit(pg_temp.s('reset7'), 7, '10 hours')), interval '01:25:42.857143',
          'first request of 7 per 10 hours: reset_after is 10 h / 7 rounded up to a microsecond');
SELECT is((SELECT retry_after FROM authx.rate_limit(pg_temp.s('reset7'), 7, '10 hours')), NULL,
          'an allowed request has no retry_after');
SELECT pg_temp.burst('retry', 5, '1 hour', 5) AS spent5 \gset
SELECT ok(retry_after BETWEEN interval '11 minutes' AND interval '12 minutes',
          '5 per hour, exhausted: retry_after in [11 min, 12 min] (12 min = 1 hour / 5, less the time since)')
  FROM authx.rate_limit(pg_temp.s('retry'), 5, '1 hour');
SELECT ok(reset_after BETWEEN interval '59 minutes' AND interval '1 hour',
          '5 per hour, exhausted: reset_after in [59 min, 60 min]')
  FROM authx.rate_limit(pg_temp.s('retry'), 5, '1 hour');
SELECT ok(n_allowed >= 4 AND (r).retry_after > interval '0' AND (r).retry_after <= interval '500 milliseconds'
          AND (r).reset_after <= interval '2 seconds',
          '4 per 2 seconds, exhausted: retry_after in (0, 500 ms], reset_after at most 2 s')
  FROM pg_temp.until_denied('retry-short', 4, '2 seconds');

-- ================================================================ cost
SELECT is(pg_temp.rl('cost', 5, '1 hour', 2), 't 3 -', 'cost 2 of 5: allowed, 3 left');
SELECT is(pg_temp.rl('cost', 5, '1 hour', 3), 't 0 -', 'cost 3 of the 3 left: allowed, 0 left');
SELECT is(pg_temp.rl('cost', 5, '1 hour'), 'f 0 retry', 'then cost 1: denied');
SELECT is(pg_temp.rl('cost2', 5, '1 hour', 4), 't 1 -', 'cost 4 of 5: allowed, 1 left');
SELECT ok((SELECT NOT allowed AND remaining = 1 AND retry_after BETWEEN interval '11 minutes' AND interval '12 minutes'
             FROM authx.rate_limit(pg_temp.s('cost2'), 5, '1 hour', 2)),
          'cost 2 with 1 left: denied, remaining 1, retry_after about 12 min (one more to earn)');
SELECT is(pg_temp.rl('cost2', 5, '1 hour'), 't 0 -', 'the denied request spent nothing: cost 1 still passes');
-- cost 0 asks without spending, and is allowed even on an empty bucket.
SELECT is((SELECT (allowed, remaining, reset_after, retry_after)::text FROM authx.rate_limit(pg_temp.s('zero'), 5, '1 hour', 0)),
          '(t,5,00:00:00,)', 'cost 0 on a new bucket: allowed, 5 left, reset_after 0');
SELECT is(pg_temp.peek('zero', 5, '1 hour'), 't 4 -', 'cost 0 spent nothing');
SELECT is(pg_temp.rl('cost', 5, '1 hour', 0), 't 0 -', 'cost 0 on an empty bucket: allowed, 0 left');
SELECT is(pg_temp.rl('cost', 5, '1 hour'), 'f 0 retry', 'still empty after it');
-- cost above max: never allowed, no retry_after, nothing spent.
SELECT is((SELECT (allowed, remaining, reset_after, retry_after)::text FROM authx.rate_limit(pg_temp.s('big'), 5, '1 hour', 6)),
          '(f,5,00:00:00,)', 'cost 6 of 5 on a new bucket: denied, retry_after NULL, 5 left');
SELECT is(pg_temp.rl('big', 5, '1 hour', 2147483647), 'f 5 -', 'cost 2147483647 of 5: the same');
SELECT is(pg_temp.rl('big', 5, '1 hour', 5), 't 0 -', 'nothing was spent: cost 5 passes');
SELECT is(pg_temp.rl('big', 5, '1 hour', 6), 'f 0 -', 'cost 6 of 5 on an empty bucket: retry_after NULL still');

-- ================================================================ rate_peek
SELECT is(array_agg(DISTINCT pg_temp.peek('peek', 2, '1 hour')), ARRAY['t 1 -'],
          'ten peeks at a new 2 per hour bucket: each says allowed, 1 left')
  FROM generate_series(1, 10);
SELECT is(pg_temp.rl('peek', 2, '1 hour'), 't 1 -', 'they spent nothing: the first request leaves 1');
SELECT is(pg_temp.rl('peek', 2, '1 hour'), 't 0 -', 'the second leaves 0');
SELECT retry_after AS peek_retry1 FROM authx.rate_peek(pg_temp.s('peek'), 2, '1 hour') \gset
SELECT ok(:'peek_retry1'::interval BETWEEN interval '29 minutes' AND interval '30 minutes',
          'a peek at the empty bucket: retry_after in [29 min, 30 min]');
SELECT is(array_agg(DISTINCT pg_temp.peek('peek', 2, '1 hour')), ARRAY['f 0 retry'], 'further peeks: denied')
  FROM generate_series(1, 5);
SELECT ok(retry_after <= :'peek_retry1'::interval, 'peeking did not push retry_after back')
  FROM authx.rate_peek(pg_temp.s('peek'), 2, '1 hour');
SELECT ok(NOT allowed AND remaining = 0 AND retry_after <= :'peek_retry1'::interval,
          'rate_limit answers as the peeks said (denied), and a denial spends nothing either')
  FROM authx.rate_limit(pg_temp.s('peek'), 2, '1 hour');

-- ================================================================ recovery
SELECT n_allowed AS rec_n, (r).retry_after AS rec_retry FROM pg_temp.until_denied('recover', 2, '200 milliseconds') \gset
SELECT ok(:rec_n >= 2 AND :'rec_retry'::interval > interval '0' AND :'rec_retry'::interval <= interval '100 milliseconds',
          '2 per 200 ms: denied after at least 2, retry_after in (0, 100 ms]');
SELECT pg_sleep(extract(epoch FROM :'rec_retry'::interval) + 0.05) AS slept \gset
SELECT is((SELECT allowed FROM authx.rate_limit(pg_temp.s('recover'), 2, '200 milliseconds')), true,
          'after waiting retry_after (+50 ms): allowed again');
SELECT pg_sleep(0.35) AS slept \gset
SELECT is(pg_temp.peek('recover', 2, '200 milliseconds'), 't 1 -', 'after waiting more than a window: the bucket is full');
SELECT is(pg_temp.rl('recover', 2, '200 milliseconds', 2), 't 0 -', '... a request of cost 2 passes');

-- ================================================================ buckets
SELECT is(pg_temp.rl('a', 1, '1 hour'), 't 0 -', 'subject a, 1 per hour: allowed');
SELECT is(pg_temp.rl('a', 1, '1 hour'), 'f 0 retry', 'subject a again: denied');
SELECT is(pg_temp.rl('b', 1, '1 hour'), 't 0 -', 'subject b, same limit: its own bucket');
SELECT is(pg_temp.rl('A', 1, '1 hour'), 't 0 -', 'subject A: subjects compare bytewise');
SELECT is(pg_temp.rl('a', 2, '1 hour'), 't 1 -', 'subject a at 2 per hour: another bucket');
SELECT is(pg_temp.rl('a', 1, '2 hours'), 't 0 -', 'subject a at 1 per 2 hours: another bucket');
SELECT is(pg_temp.rl('a', 1, '1 hour'), 'f 0 retry', 'subject a back at 1 per hour: still spent (not restarted)');

-- ================================================================ not undone
-- ROLLBACK TO SAVEPOINT (no assertion inside: it would be rolled back too).
SAVEPOINT sp;
SELECT pg_temp.rl('undo', 3, '1 hour') AS sp_answer \gset
ROLLBACK TO SAVEPOINT sp;
SELECT is(:'sp_answer'::text, 't 2 -', 'in a savepoint: allowed, 2 left');
SELECT is(pg_temp.peek('undo', 3, '1 hour'), 't 1 -', 'after ROLLBACK TO SAVEPOINT: still spent (a peek says 1 left after the next)');
-- An exception caught in PL/pgSQL rolls back its block's subtransaction.
DO $$
BEGIN
    BEGIN
        PERFORM authx.rate_limit(pg_temp.s('undo'), 3, '1 hour');
        RAISE EXCEPTION 'rolled back';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
END
$$;
SELECT is(pg_temp.peek('undo', 3, '1 hour'), 't 0 -', 'after an exception caught in PL/pgSQL: still spent');
-- Another backend: a transaction rolled back, and one aborted by an error.
SELECT format('host=127.0.0.1 port=%s dbname=%s user=%s', current_setting('port'), current_database(),
              current_user) AS cs \gset
SELECT dblink_connect('tap12', :'cs') AS connected \gset
SELECT dblink_exec('tap12', 'BEGIN') AS b1,
       dblink_exec('tap12', format('DO %L', format('BEGIN PERFORM authx.rate_limit(%L, 4, %L); END', pg_temp.s('remote'), '1 hour'))) AS s1,
       dblink_exec('tap12', 'ROLLBACK') AS r1 \gset
SELECT is(pg_temp.peek('remote', 4, '1 hour'), 't 2 -', 'another backend spent 1 and rolled back: still spent, seen here');
SET LOCAL client_min_messages = warning;
SELECT dblink_exec('tap12', 'BEGIN') AS b2,
       dblink_exec('tap12', format('DO %L', format('BEGIN PERFORM authx.rate_limit(%L, 4, %L); END', pg_temp.s('remote'), '1 hour'))) AS s2,
       dblink_exec('tap12', 'SELECT 1 / 0', false) AS e2,
       dblink_exec('tap12', 'ROLLBACK') AS r2 \gset
RESET client_min_messages;
SELECT is(:'e2'::text, 'ERROR', 'the other backend''s transaction failed');
SELECT is(pg_temp.peek('remote', 4, '1 hour'), 't 1 -', 'an aborted transaction: still spent');
SELECT is(array_agg(pg_temp.rl('remote', 4, '1 hour') ORDER BY i), ARRAY['t 1 -', 't 0 -', 'f 0 retry'],
          'two left of four, as the other backend left them')
  FROM generate_series(1, 3) i;
SELECT dblink_disconnect('tap12') AS disconnected \gset

-- ================================================================ policies
SELECT set_eq(
    $$SELECT name::text COLLATE "default", max, per, store, fail_mode FROM authx.rate_limit_policies WHERE seeded$$,
    $$VALUES ('login', 5, interval '1 minute', 'local', 'local'), ('register', 3, '1 minute', 'local', 'local'),
             ('refresh', 10, '1 minute', 'local', 'local'), ('mfa', 5, '1 minute', 'local', 'local'),
             ('api', 100, '1 minute', 'local', 'local'), ('password_reset', 3, '15 minutes', 'local', 'local')$$,
    'seeded policies: login 5/min, register 3/min, refresh 10/min, mfa 5/min, api 100/min, password_reset 3/15 min, '
    'store and fail_mode local');
SELECT is(pg_temp.check_burst(name, 'seed-' || name, max, per, max + 3), max,
          format('rate_check(%L): exactly %s of %s allowed', name, max, max + 3))
  FROM authx.rate_limit_policies WHERE seeded ORDER BY name;
SELECT is((SELECT (allowed, remaining, reset_after)::text FROM authx.rate_check('login', pg_temp.s('login-answer'))),
          '(t,4,00:00:12)', 'rate_check(login) for a new subject: allowed, 4 left, reset_after exactly 12 s');
SELECT ok(NOT allowed AND retry_after > interval '0' AND retry_after <= interval '12 seconds',
          'rate_check(login) once exhausted: denied, retry_after in (0, 12 s]')
  FROM authx.rate_check('login', pg_temp.s('seed-login'));
SELECT throws_ok($$SELECT authx.rate_check('tap12_missing', 'x')$$, '42704',
                 'rate limit policy "tap12_missing" does not exist', 'rate_check: unknown policy 42704');
SELECT throws_ok($$SELECT authx.rate_check('LOGIN', 'x')$$, '42704', 'rate limit policy "LOGIN" does not exist',
                 'rate_check: policy names compare bytewise (LOGIN is not login)');
SELECT throws_ok($$SELECT authx.rate_check(NULL, 'x')$$, '22004', 'policy must not be null', 'rate_check: NULL policy 22004');
SELECT throws_ok($$SELECT authx.rate_check('login', NULL)$$, '22004', 'subject must not be null',
                 'rate_check: NULL subject 22004');
SELECT throws_ok($$SELECT authx.rate_check('login', 'x', NULL)$$, '22004', 'cost must not be null',
                 'rate_check: NULL cost 22004');
SELECT throws_ok($$SELECT authx.rate_check('login', 'x', -1)$$, '22023', 'cost must not be negative',
                 'rate_check: negative cost 22023');

-- rate_policy_set creates...
SELECT lives_ok($$SELECT authx.rate_policy_set('tap12.p', 2, '1 hour', description => 'made by tap12')$$,
                'rate_policy_set creates a policy');
SELECT is((SELECT (max, per, store, fail_mode, description, seeded)::text FROM authx.rate_limit_policies WHERE name = 'tap12.p'),
          '(2,01:00:00,local,local,"made by tap12",f)', 'the new policy: 2 per hour, store and fail_mode local, not seeded');
SELECT is(pg_temp.check_burst('tap12.p', 'p', 2, '1 hour', 4), 2, 'rate_check(tap12.p): exactly 2 of 4 allowed');
-- ... and changes: a new limit is a new bucket.
SELECT lives_ok($$SELECT authx.rate_policy_set('tap12.p', 4, '1 hour', 'open')$$, 'rate_policy_set changes a policy');
SELECT is((SELECT (max, per, store, fail_mode, description, seeded)::text FROM authx.rate_limit_policies WHERE name = 'tap12.p'),
          '(4,01:00:00,local,open,"made by tap12",f)', 'changed: 4 per hour, fail_mode open, description kept (NULL passed)');
SELECT is(pg_temp.check_burst('tap12.p', 'p', 4, '1 hour', 6), 4,
          'rate_check(tap12.p) after the change: a fresh bucket, exactly 4 of 6 allowed');
SELECT lives_ok($$SELECT authx.rate_policy_set('tap12.p', 4, '1 hour', 'closed', 'another description')$$,
                'rate_policy_set: fail_mode closed and a new description');
SELECT is((SELECT (fail_mode, description)::text FROM authx.rate_limit_policies WHERE name = 'tap12.p'),
          '(closed,"another description")', 'fail_mode closed, description replaced');
-- Boundaries that pass.
SELECT lives_ok(format('SELECT authx.rate_policy_set(%L, 2147483647, %L)', 'tap12.' || repeat('z', 57), '1 millisecond'),
                'rate_policy_set: a name of 63 characters, max 2147483647, per 1 millisecond');
SELECT lives_ok($$SELECT authx.rate_policy_set('t-0_9.z', 1, '366 days')$$, 'rate_policy_set: per 366 days, name with - _ . digits');
-- Invalid arguments.
SELECT count(*) AS policies_before FROM authx.rate_limit_policies \gset
SELECT throws_ok(format('SELECT authx.rate_policy_set(%s)', args), state, msg, 'rate_policy_set(' || args || '): ' || state)
  FROM (VALUES
    ($$NULL, 1, '1 hour'$$, '22004', 'name must not be null'),
    ($$'tap12.x', NULL, '1 hour'$$, '22004', 'max must not be null'),
    ($$'tap12.x', 1, NULL$$, '22004', 'per must not be null'),
    ($$'', 1, '1 hour'$$, '22023', 'invalid policy name ""'),
    ($$'Tap12', 1, '1 hour'$$, '22023', 'invalid policy name "Tap12"'),
    ($$'1tap', 1, '1 hour'$$, '22023', 'invalid policy name "1tap"'),
    ($$'_tap', 1, '1 hour'$$, '22023', 'invalid policy name "_tap"'),
    ($$'tap 12', 1, '1 hour'$$, '22023', 'invalid policy name "tap 12"'),
    ($$'tap:12', 1, '1 hour'$$, '22023', 'invalid policy name "tap:12"'),
    ($$'tap' || chr(1), 1, '1 hour'$$, '22023', 'invalid policy name "tap' || chr(1) || '"'),
    ($$'tap12.' || repeat('z', 58), 1, '1 hour'$$, '22023', 'invalid policy name "tap12.' || repeat('z', 58) || '"'),
    ($$'tap12.x', 0, '1 hour'$$, '22023', 'max must be at least 1'),
    ($$'tap12.x', -1, '1 hour'$$, '22023', 'max must be at least 1'),
    ($$'tap12.x', 1, '0'$$, '22023', 'per must be between 1 millisecond and 366 days'),
    ($$'tap12.x', 1, '999 microseconds'$$, '22023', 'per must be between 1 millisecond and 366 days'),
    ($$'tap12.x', 1, '-1 hour'$$, '22023', 'per must be between 1 millisecond and 366 days'),
    ($$'tap12.x', 1, '366 days 00:00:00.000001'$$, '22023', 'per must be between 1 millisecond and 366 days'),
    ($$'tap12.x', 1, '13 months'$$, '22023', 'per must be between 1 millisecond and 366 days'),
    ($$'tap12.x', 1, '1 hour', 'remote'$$, '22023', 'invalid fail_mode "remote"'),
    ($$'tap12.x', 1, '1 hour', NULL$$, '22023', 'invalid fail_mode "NULL"'),
    ($$'login', 0, '1 minute'$$, '22023', 'max must be at least 1')) v(args, state, msg);
SELECT is((SELECT count(*) FROM authx.rate_limit_policies), :policies_before::bigint, 'the failed calls made no policy');
SELECT is((SELECT (max, seeded)::text FROM authx.rate_limit_policies WHERE name = 'login'), '(5,t)',
          'nor changed the seed they named');
-- rate_limit counts a year as 365.25 days, so '1 year 1 day' is over 366
-- days there: a policy or override with it would make every rate_check fail.
SELECT throws_ok($$SELECT authx.rate_limit('x', 1, '1 year 1 day')$$, '22023',
                 'per must be between 1 millisecond and 366 days', 'rate_limit refuses per ''1 year 1 day'' (366.25 days)');
SELECT throws_ok($$SELECT authx.rate_policy_set('tap12.year', 1, '1 year 1 day')$$, '22023',
                 'per must be between 1 millisecond and 366 days', 'rate_policy_set refuses it too');
-- Editing a seed makes it the user's.
SELECT lives_ok($$SELECT authx.rate_policy_set('mfa', 6, '1 minute')$$, 'rate_policy_set on the seed mfa');
SELECT is((SELECT (max, seeded, description)::text FROM authx.rate_limit_policies WHERE name = 'mfa'),
          '(6,f,"MFA code attempts per account.")', 'mfa: 6 per minute, no longer seeded, description kept');
UPDATE authx.rate_limit_policies SET description = 'edited' WHERE name = 'refresh';
SELECT is((SELECT seeded FROM authx.rate_limit_policies WHERE name = 'refresh'), false,
          'an UPDATE of the seed refresh clears seeded too (trigger)');
SELECT is((SELECT array_agg(name ORDER BY name)::text FROM authx.rate_limit_policies WHERE seeded), '{api,login,password_reset,register}',
          'the other seeds are still seeded');

-- ================================================================ overrides
SELECT authx.rate_policy_set('tap12.o', 2, '1 hour') AS o \gset
SELECT lives_ok(format('SELECT authx.rate_override_set(%L, %L, max => 5, reason => %L)', 'tap12.o', pg_temp.s('vip'), 'partner'),
                'rate_override_set: a higher limit');
SELECT is(pg_temp.check_burst('tap12.o', 'vip', 5, '1 hour', 8), 5, 'the subject with the override: exactly 5 of 8');
SELECT is(pg_temp.check_burst('tap12.o', 'plain', 2, '1 hour', 4), 2, 'another subject: the policy, exactly 2 of 4');
SELECT lives_ok(format('SELECT authx.rate_override_set(%L, %L, max => 1, per => %L)', 'tap12.o', pg_temp.s('slow'), '1 day'),
                'rate_override_set: another max and window');
SELECT is((SELECT (allowed, remaining, reset_after)::text FROM authx.rate_check('tap12.o', pg_temp.s('slow'))),
          '(t,0,24:00:00)', 'with it: 1 per day (reset_after exactly 24 hours)');
SELECT is(pg_temp.rc('tap12.o', 'slow'), 'f 0 retry', 'then denied');
-- bypass: always allowed, the rest NULL.
SELECT lives_ok(format('SELECT authx.rate_override_set(%L, %L, bypass => true)', 'tap12.o', pg_temp.s('free')),
                'rate_override_set: bypass');
SELECT is((SELECT count(*) FROM (SELECT authx.rate_check('tap12.o', pg_temp.s('free')) AS r
                                    FROM generate_series(1, 50) OFFSET 0) c
            WHERE (r).allowed AND (r).remaining IS NULL AND (r).reset_after IS NULL AND (r).retry_after IS NULL)::int, 50,
          'bypass: 50 requests, each allowed with remaining, reset_after and retry_after NULL');
SELECT is((SELECT (allowed, remaining, reset_after, retry_after)::text FROM authx.rate_check('tap12.o', pg_temp.s('free'), 1000000)),
          '(t,,,)', 'bypass: a cost above the limit is allowed too');
SELECT lives_ok(format('SELECT authx.rate_override_set(%L, %L, max => 3)', 'tap12.o', pg_temp.s('free')),
                'rate_override_set again: replaces the bypass by 3 per hour');
SELECT is((SELECT (max, per, bypass, reason)::text FROM authx.rate_limit_overrides WHERE policy = 'tap12.o' AND subject = pg_temp.s('free')),
          '(3,,f,)', 'one row, replaced');
SELECT is(pg_temp.check_burst('tap12.o', 'free', 3, '1 hour', 5), 3, 'the subject is limited again: exactly 3 of 5');
-- Expiry: the policy applies again at once (maintenance deletes the row later).
SELECT authx.rate_policy_set('tap12.e', 1, '1 hour') AS e \gset
SELECT clock_timestamp() + interval '3 seconds' AS exp_at \gset
SELECT lives_ok(format('SELECT authx.rate_override_set(%L, %L, bypass => true, expires_at => %L)', 'tap12.e', pg_temp.s('exp'), :'exp_at'),
                'rate_override_set: bypass for 3 seconds');
SELECT is(pg_temp.rc('tap12.e', 'exp'), 't - -', 'before expires_at: bypass');
SELECT pg_sleep_until(:'exp_at'::timestamptz + interval '0.3 seconds') AS slept \gset
SELECT is(pg_temp.rc('tap12.e', 'exp'), 't 0 -', 'after expires_at: the policy, 1 per hour: allowed');
SELECT is(pg_temp.rc('tap12.e', 'exp'), 'f 0 retry', 'then denied');
SELECT is((SELECT count(*) FROM authx.rate_limit_overrides WHERE policy = 'tap12.e')::int, 1,
          'the expired override is still a row until maintenance');
-- rate_override_remove.
SELECT is(authx.rate_override_remove('tap12.o', pg_temp.s('vip')), true, 'rate_override_remove: true when there was one');
SELECT is(authx.rate_override_remove('tap12.o', pg_temp.s('vip')), false, 'false the second time');
SELECT is(authx.rate_override_remove('tap12_missing', pg_temp.s('vip')), false, 'false for an unknown policy');
SELECT is(pg_temp.rc('tap12.o', 'vip'), 't 1 -', 'without the override: the policy''s bucket (2 per hour), 1 left');
SELECT throws_ok($$SELECT authx.rate_override_remove(NULL, 'x')$$, '22004', 'policy must not be null',
                 'rate_override_remove: NULL policy 22004');
SELECT throws_ok($$SELECT authx.rate_override_remove('tap12.o', NULL)$$, '22004', 'subject must not be null',
                 'rate_override_remove: NULL subject 22004');
-- The same subject under two policies with the same limit: two buckets.
SELECT authx.rate_policy_set('tap12.a', 1, '1 hour') AS a, authx.rate_policy_set('tap12.b', 1, '1 hour') AS b \gset
SELECT is(pg_temp.rc('tap12.a', 'two'), 't 0 -', 'policy tap12.a, 1 per hour: allowed');
SELECT is(pg_temp.rc('tap12.a', 'two'), 'f 0 retry', 'tap12.a again: denied');
SELECT is(pg_temp.rc('tap12.b', 'two'), 't 0 -', 'the same subject under tap12.b (same limit): its own bucket');
-- A policy's overrides go with it.
SELECT authx.rate_override_set('tap12.b', pg_temp.s('gone'), bypass => true) AS g \gset
DELETE FROM authx.rate_limit_policies WHERE name = 'tap12.b';
SELECT is((SELECT count(*) FROM authx.rate_limit_overrides WHERE policy = 'tap12.b')::int, 0,
          'deleting a policy deletes its overrides');
-- Invalid arguments.
SELECT count(*) AS overrides_before FROM authx.rate_limit_overrides \gset
SELECT throws_ok(format('SELECT authx.rate_override_set(%s)', args), state, msg, 'rate_override_set(' || args || '): ' || state)
  FROM (VALUES
    ($$NULL, 'x', 1$$, '22004', 'policy must not be null'),
    ($$'tap12.o', NULL, 1$$, '22004', 'subject must not be null'),
    ($$'tap12_missing', 'x', 1$$, '42704', 'rate limit policy "tap12_missing" does not exist'),
    ($$'TAP12.O', 'x', 1$$, '42704', 'rate limit policy "TAP12.O" does not exist'),
    ($$'tap12.o', 'x'$$, '22023', 'an override needs max or bypass'),
    ($$'tap12.o', 'x', per => '1 minute'$$, '22023', 'an override needs max or bypass'),
    ($$'tap12.o', 'x', bypass => NULL$$, '22023', 'an override needs max or bypass'),
    ($$'tap12.o', 'x', 0$$, '22023', 'max must be at least 1'),
    ($$'tap12.o', 'x', -5$$, '22023', 'max must be at least 1'),
    ($$'tap12.o', 'x', 0, bypass => true$$, '22023', 'max must be at least 1'),
    ($$'tap12.o', 'x', 1, '0'$$, '22023', 'per must be between 1 millisecond and 366 days'),
    ($$'tap12.o', 'x', 1, '367 days'$$, '22023', 'per must be between 1 millisecond and 366 days'),
    ($$'tap12.o', 'x', 1, expires_at => now()$$, '22023', 'expires_at is in the past'),
    ($$'tap12.o', 'x', 1, expires_at => clock_timestamp()$$, '22023', 'expires_at is in the past'),
    ($$'tap12.o', 'x', 1, expires_at => '-infinity'$$, '22023', 'expires_at is in the past'),
    ($$'tap12.o', '', 1$$, '22023', 'subject must have 1-500 characters'),
    ($$'tap12.o', repeat('s', 501), 1$$, '22023', 'subject must have 1-500 characters')) v(args, state, msg);
SELECT is((SELECT count(*) FROM authx.rate_limit_overrides), :overrides_before::bigint, 'the failed calls made no override');
SELECT throws_ok($$SELECT authx.rate_override_set('tap12.o', 'x', 1, '1 year 1 day')$$, '22023',
                 'per must be between 1 millisecond and 366 days',
                 'rate_override_set refuses per ''1 year 1 day'' (366.25 days for rate_limit) too');
SELECT lives_ok($$SELECT authx.rate_override_set('tap12.o', repeat('s', 500), bypass => true, expires_at => 'infinity')$$,
                'rate_override_set: a subject of 500 characters, expires_at infinity');

-- ================================================================ audit
SELECT coalesce(max(id), 0) AS audit_mark FROM authx.audit_log \gset
SELECT clock_timestamp() + interval '1 day' AS audit_exp \gset
SELECT authx.rate_policy_set('tap12.audit', 3, '90 seconds', 'closed') AS a1,
       authx.rate_override_set('tap12.audit', pg_temp.s('audited'), 7, expires_at => :'audit_exp') AS a2,
       authx.rate_override_set('tap12.audit', pg_temp.s('bypassed'), bypass => true) AS a3 \gset
SELECT authx.rate_override_remove('tap12.audit', pg_temp.s('audited')) AS a4,
       authx.rate_override_remove('tap12.audit', pg_temp.s('audited')) AS a5 \gset
SELECT results_eq(
    format($$SELECT event_type, severity::text, user_id, details - 'expires_at', details->'expires_at' = 'null'
              FROM authx.audit_log WHERE id > %s AND details->>'policy' = 'tap12.audit' ORDER BY id$$, :audit_mark),
    format($$VALUES ('rate_limit.policy_set', 'medium', NULL::uuid,
                     '{"policy": "tap12.audit", "max": 3, "per_ms": 90000, "store": "local", "fail_mode": "closed"}'::jsonb, NULL::boolean),
                    ('rate_limit.override_set', 'medium', NULL,
                     jsonb_build_object('policy', 'tap12.audit', 'subject', %1$L::text, 'max', 7, 'bypass', false), false),
                    ('rate_limit.override_set', 'medium', NULL,
                     jsonb_build_object('policy', 'tap12.audit', 'subject', %2$L::text, 'max', NULL, 'bypass', true), true),
                    ('rate_limit.override_removed', 'medium', NULL,
                     jsonb_build_object('policy', 'tap12.audit', 'subject', %1$L::text), NULL)$$,
           pg_temp.s('audited'), pg_temp.s('bypassed')),
    'audit: rate_limit.policy_set, override_set (twice), override_removed (once: the second removal found nothing), '
    'severity medium, no user, with their details');
SELECT is((SELECT (details->>'expires_at')::timestamptz FROM authx.audit_log
            WHERE id > :audit_mark AND event_type = 'rate_limit.override_set' AND details->>'subject' = pg_temp.s('audited')),
          :'audit_exp'::timestamptz, 'audit: override_set records expires_at');
SELECT is((SELECT count(*) FROM authx.audit_log WHERE id > :audit_mark AND event_type LIKE 'rate\_limit.%')::int, 4,
          'audit: no other rate_limit event');

-- ================================================================ maintenance
-- Inserted directly (rate_override_set refuses a past expiry).  The pass
-- before BEGIN deleted every committed expired override, so the count is
-- exact (deleting them here would hold row locks the worker's own pass may
-- wait on while it holds the maintenance lock).  maintenance_run's clock is
-- now(), this transaction's start, so the override of tap12.e above
-- (expired since) is not due yet for it.
INSERT INTO authx.rate_limit_overrides (policy, subject, max, expires_at)
VALUES ('tap12.o', pg_temp.s('m-old'), 3, now() - interval '1 day'),
       ('tap12.o', pg_temp.s('m-just'), 3, now() - interval '1 microsecond'),
       ('tap12.o', pg_temp.s('m-live'), 3, now() + interval '1 hour');
SELECT is(authx.maintenance_run() -> 'rate_limits', '{"overrides_expired": 2}'::jsonb,
          'maintenance_run: rate_limits -> overrides_expired counts the 2 expired overrides');
SELECT is((SELECT array_agg(subject ORDER BY subject) FROM authx.rate_limit_overrides
            WHERE subject IN (pg_temp.s('m-old'), pg_temp.s('m-just'), pg_temp.s('m-live'))),
          ARRAY[pg_temp.s('m-live')], 'the expired ones are deleted, the live one kept');
SELECT is(authx.maintenance_run() -> 'rate_limits', '{"overrides_expired": 0}'::jsonb, 'a second pass deletes nothing');

-- ================================================================ stats
SELECT pg_temp.mark() AS m \gset
SELECT pg_temp.rl('stats', 3, '1 hour') AS s1, pg_temp.rl('stats', 3, '1 hour') AS s2,
       pg_temp.rl('stats', 3, '1 hour') AS s3, pg_temp.rl('stats', 3, '1 hour') AS s4 \gset
SELECT pg_temp.peek('stats', 3, '1 hour') AS s5, pg_temp.peek('stats-new', 3, '1 hour') AS s6,
       pg_temp.rc('tap12.o', 'stats') AS s7, pg_temp.rc('tap12.o', 'stats') AS s8, pg_temp.rc('tap12.o', 'stats') AS s9 \gset
SELECT is(ARRAY[:'s1', :'s2', :'s3', :'s4', :'s5', :'s6', :'s7', :'s8', :'s9'],
          ARRAY['t 2 -', 't 1 -', 't 0 -', 'f 0 retry', 'f 0 retry', 't 2 -', 't 1 -', 't 0 -', 'f 0 retry'],
          'stats: 6 allowed and 3 denied answers of rate_limit, rate_peek and rate_check');
SELECT is(pg_temp.delta('rate_limit_allowed'), 6::bigint, 'rate_limit_allowed grew by 6');
SELECT is(pg_temp.delta('rate_limit_denied'), 3::bigint, 'rate_limit_denied grew by 3');

-- ================================================================ privileges
SET ROLE authx_app;
SELECT is((SELECT (allowed, remaining)::text FROM authx.rate_limit(:'run' || ':app', 2, '1 hour')), '(t,1)',
          'app: rate_limit');
SELECT is((SELECT (allowed, remaining)::text FROM authx.rate_peek(:'run' || ':app', 2, '1 hour')), '(t,0)',
          'app: rate_peek');
SELECT is((SELECT (allowed, remaining)::text FROM authx.rate_check('tap12.o', :'run' || ':app')), '(t,1)',
          'app: rate_check (reads the policy it may not SELECT)');
SELECT throws_ok($$SELECT authx.rate_policy_set('tap12.app', 1000, '1 second')$$, '42501', NULL,
                 'app: cannot call rate_policy_set');
SELECT throws_ok(format('SELECT authx.rate_override_set(%L, %L, bypass => true)', 'tap12.o', :'run' || ':app'), '42501', NULL,
                 'app: cannot call rate_override_set (bypass its own limit)');
SELECT throws_ok(format('SELECT authx.rate_override_remove(%L, %L)', 'tap12.o', :'run' || ':app'), '42501', NULL,
                 'app: cannot call rate_override_remove');
SELECT throws_ok('SELECT * FROM authx.rate_limit_policies', '42501', NULL, 'app: cannot read authx.rate_limit_policies');
SELECT throws_ok('SELECT * FROM authx.rate_limit_overrides', '42501', NULL, 'app: cannot read authx.rate_limit_overrides');
RESET ROLE;
SET ROLE authx_admin;
SELECT lives_ok($$SELECT authx.rate_policy_set('tap12.admin', 1, '1 hour')$$, 'admin: rate_policy_set');
SELECT lives_ok(format('SELECT authx.rate_override_set(%L, %L, max => 2)', 'tap12.admin', :'run' || ':admin'),
                'admin: rate_override_set');
SELECT is((SELECT (allowed, remaining)::text FROM authx.rate_check('tap12.admin', :'run' || ':admin')), '(t,1)',
          'admin inherits authx_app: rate_check, with the override');
SELECT is((SELECT count(*) FROM authx.rate_limit_overrides WHERE policy = 'tap12.admin')::int, 1,
          'admin: reads authx.rate_limit_overrides');
SELECT is(authx.rate_override_remove('tap12.admin', :'run' || ':admin'), true, 'admin: rate_override_remove');
SELECT throws_ok($$UPDATE authx.rate_limit_policies SET max = 1000000 WHERE name = 'tap12.admin'$$, '42501', NULL,
                 'admin: cannot UPDATE authx.rate_limit_policies directly');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

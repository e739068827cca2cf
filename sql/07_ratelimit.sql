--
-- Rate limits: rate_limit and rate_peek (exact counts, cost, the answer's
-- fields), separate buckets, spending not undone by ROLLBACK, rate_check
-- with the seeded and own policies, overrides (another limit, bypass,
-- expiry, removal), audit events, maintenance, statistics, privileges, then
-- every invalid input (one line each, through regress.try).
--
-- Buckets live in shared memory and outlive a run, so every subject carries
-- a suffix unique to the run (:'run'); policies made here are named reg_*
-- and deleted at the end.  Intervals are never printed, only whether they
-- are within bounds; windows are an hour or more except where waiting is
-- the point.
--
\set SHOW_CONTEXT never
SELECT 'reg-' || gen_random_uuid() AS run \gset
SELECT coalesce(max(id), 0) AS audit0 FROM authx.audit_log \gset
-- p_n requests in a row: remaining after each allowed one, x for a denial.
CREATE FUNCTION regress.burst(p_subject text, p_max integer, p_per interval, p_n integer, p_cost integer DEFAULT 1)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r   authx.rate_limit_result;
    out text[] := '{}';
BEGIN
    FOR i IN 1 .. p_n LOOP
        r := authx.rate_limit(p_subject, p_max, p_per, p_cost);
        out := out || CASE WHEN r.allowed THEN r.remaining::text ELSE 'x' END;
    END LOOP;
    RETURN array_to_string(out, ' ');
END
$$;
-- The same through rate_check.
CREATE FUNCTION regress.check_burst(p_policy text, p_subject text, p_n integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r   authx.rate_limit_result;
    out text[] := '{}';
BEGIN
    FOR i IN 1 .. p_n LOOP
        r := authx.rate_check(p_policy, p_subject);
        out := out || CASE WHEN NOT r.allowed THEN 'x' ELSE coalesce(r.remaining::text, '-') END;
    END LOOP;
    RETURN array_to_string(out, ' ');
END
$$;

-- ================================================================ rate_limit
-- max per window lets exactly max through, however max divides the window.
SELECT max, per, regress.burst(:'run' || ':count:' || max || '/' || per, max, per::interval, max + 3) AS remaining
  FROM (VALUES (1, '1 hour'), (2, '1 hour'), (3, '1 hour'), (7, '10 hours'), (10, '1 day'), (1, '366 days')) v(max, per);
-- The answer: allowed, remaining (of cost 1, after this request),
-- reset_after (until the bucket is full) exactly per / max for a first
-- request, no retry_after when allowed.
SELECT allowed, remaining, reset_after = interval '20 minutes' AS reset_20_min, retry_after
  FROM authx.rate_limit(:'run' || ':answer', 3, '1 hour');
SELECT allowed, remaining, reset_after BETWEEN interval '39 minutes' AND interval '40 minutes' AS reset_40_min, retry_after
  FROM authx.rate_limit(:'run' || ':answer', 3, '1 hour');
SELECT allowed, remaining FROM authx.rate_limit(:'run' || ':answer', 3, '1 hour');
-- Denied: retry_after is at most per / max (20 min), less the time since.
SELECT allowed, remaining, retry_after BETWEEN interval '19 minutes' AND interval '20 minutes' AS retry_20_min,
       reset_after BETWEEN interval '59 minutes' AND interval '1 hour' AS reset_1_hour
  FROM authx.rate_limit(:'run' || ':answer', 3, '1 hour');
-- Default cost is 1.
SELECT allowed, remaining FROM authx.rate_limit(subject => :'run' || ':named', max => 2, per => '1 hour');

-- cost: several at once; a denied request spends nothing.
SELECT regress.burst(:'run' || ':cost2', 5, '1 hour', 4, 2) AS cost_2_of_5;
SELECT allowed, remaining, retry_after BETWEEN interval '11 minutes' AND interval '12 minutes' AS retry_12_min
  FROM authx.rate_limit(:'run' || ':cost2', 5, '1 hour', 2);
SELECT allowed, remaining FROM authx.rate_limit(:'run' || ':cost2', 5, '1 hour', 1);
-- cost 0 asks without spending, and is allowed even on an empty bucket.
SELECT allowed, remaining, reset_after = interval '0' AS full FROM authx.rate_limit(:'run' || ':cost0', 2, '1 hour', 0);
SELECT regress.burst(:'run' || ':cost0', 2, '1 hour', 3) AS then_cost_1;
SELECT allowed, remaining, retry_after FROM authx.rate_limit(:'run' || ':cost0', 2, '1 hour', 0);
-- cost above max: never allowed, retry_after NULL, nothing spent.
SELECT allowed, remaining, retry_after FROM authx.rate_limit(:'run' || ':costmax', 3, '1 hour', 4);
SELECT allowed, remaining FROM authx.rate_limit(:'run' || ':costmax', 3, '1 hour', 3);
SELECT allowed, remaining, retry_after FROM authx.rate_limit(:'run' || ':costmax', 3, '1 hour', 2147483647);

-- rate_peek: what rate_limit would answer, spending nothing.
SELECT allowed, remaining, retry_after FROM authx.rate_peek(:'run' || ':peek', 2, '1 hour');
SELECT allowed, remaining, retry_after FROM authx.rate_peek(:'run' || ':peek', 2, '1 hour');
SELECT regress.burst(:'run' || ':peek', 2, '1 hour', 2) AS spent;
SELECT allowed, remaining, retry_after BETWEEN interval '29 minutes' AND interval '30 minutes' AS retry_30_min
  FROM authx.rate_peek(:'run' || ':peek', 2, '1 hour');

-- Buckets: per subject, and per (subject, max, per): a subject under
-- another limit has another bucket, and its first one is not restarted.
SELECT regress.burst(:'run' || ':b', 1, '1 hour', 2) AS b, regress.burst(:'run' || ':B', 1, '1 hour', 2) AS upper_b,
       regress.burst(:'run' || ':c', 1, '1 hour', 2) AS c;
SELECT regress.burst(:'run' || ':b', 2, '1 hour', 3) AS b_2_per_hour, regress.burst(:'run' || ':b', 1, '2 hours', 2) AS b_1_per_2_hours,
       regress.burst(:'run' || ':b', 1, '1 hour', 1) AS b_1_per_hour_again;

-- Windows: 1 millisecond and 366 days are the bounds.
SELECT allowed FROM authx.rate_limit(:'run' || ':ms', 1, '1 millisecond');
SELECT allowed, remaining FROM authx.rate_limit(:'run' || ':year', 2147483647, '366 days', 2147483647);
SELECT allowed FROM authx.rate_limit(:'run' || ':year', 2147483647, '366 days', 1000);

-- ================================================================ not undone
-- ROLLBACK, ROLLBACK TO SAVEPOINT, an error, an exception caught in
-- PL/pgSQL: the allowance stays spent.
BEGIN;
SELECT allowed, remaining FROM authx.rate_limit(:'run' || ':undo', 5, '1 hour');
ROLLBACK;
SELECT allowed, remaining FROM authx.rate_peek(:'run' || ':undo', 5, '1 hour');
BEGIN;
SAVEPOINT s;
SELECT allowed, remaining FROM authx.rate_limit(:'run' || ':undo', 5, '1 hour');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT allowed, remaining FROM authx.rate_peek(:'run' || ':undo', 5, '1 hour');
BEGIN;
SELECT allowed, remaining FROM authx.rate_limit(:'run' || ':undo', 5, '1 hour');
SELECT 1 / 0;
ROLLBACK;
SELECT allowed, remaining FROM authx.rate_peek(:'run' || ':undo', 5, '1 hour');
SELECT set_config('regress.subject', :'run' || ':undo', false) IS NOT NULL AS set;
DO $$
BEGIN
    BEGIN
        PERFORM authx.rate_limit(current_setting('regress.subject'), 5, '1 hour');
        RAISE EXCEPTION 'undone?';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
END
$$;
SELECT regress.burst(:'run' || ':undo', 5, '1 hour', 2) AS last_one;

-- ================================================================ policies
SELECT name, max, per, store, fail_mode, description FROM authx.rate_limit_policies WHERE seeded ORDER BY name;
-- rate_check spends from the policy's bucket for the subject.
SELECT name, regress.check_burst(name, :'run' || ':seed', max + 2) AS remaining
  FROM authx.rate_limit_policies WHERE seeded AND name <> 'api' ORDER BY name;
SELECT allowed, remaining, retry_after BETWEEN interval '1 microsecond' AND interval '12 seconds' AS retry_within_12_s
  FROM authx.rate_check('login', :'run' || ':seed');
-- Own policies: created with the defaults, changed (a new limit is a new
-- bucket; a NULL description keeps the old one).
SELECT authx.rate_policy_set('reg_p', 2, '1 hour', description => 'Regression policy.');
SELECT name, max, per, store, fail_mode, description, seeded FROM authx.rate_limit_policies WHERE name = 'reg_p';
SELECT regress.check_burst('reg_p', :'run' || ':p', 3) AS reg_p;
SELECT authx.rate_policy_set('reg_p', 3, '1 hour', 'open');
SELECT name, max, per, fail_mode, description, seeded FROM authx.rate_limit_policies WHERE name = 'reg_p';
SELECT regress.check_burst('reg_p', :'run' || ':p', 4) AS reg_p_changed;
SELECT authx.rate_policy_set('reg_p', 3, '1 hour', 'closed', 'Changed.');
SELECT name, fail_mode, description FROM authx.rate_limit_policies WHERE name = 'reg_p';
SELECT authx.rate_policy_set('reg.x-' || repeat('z', 57), 2147483647, '1 millisecond');
SELECT authx.rate_policy_set('reg_year', 1, '366 days');
SELECT name, max, per FROM authx.rate_limit_policies WHERE name ~ '^reg[._]' AND name <> 'reg_p' ORDER BY name;
-- Editing a seed makes it the user's (dumped like any other); in a
-- transaction rolled back, so the seed stays as it was.
BEGIN;
SELECT authx.rate_policy_set('register', 4, '1 minute');
UPDATE authx.rate_limit_policies SET description = 'Edited.' WHERE name = 'refresh';
SELECT name, max, description, seeded FROM authx.rate_limit_policies WHERE seeded OR name ~ '^(reg[._]|refresh|register$)' ORDER BY name;
ROLLBACK;
SELECT name, max, seeded FROM authx.rate_limit_policies WHERE name IN ('register', 'refresh') ORDER BY name;

-- ================================================================ overrides
SELECT authx.rate_policy_set('reg_o', 2, '1 hour');
-- Another limit for one subject, optionally another window.
SELECT authx.rate_override_set('reg_o', :'run' || ':vip', max => 4, reason => 'partner');
SELECT authx.rate_override_set('reg_o', :'run' || ':slow', max => 1, per => '1 day');
SELECT regress.check_burst('reg_o', :'run' || ':vip', 5) AS vip, regress.check_burst('reg_o', :'run' || ':plain', 3) AS plain;
SELECT allowed, remaining, reset_after = interval '1 day' AS reset_1_day FROM authx.rate_check('reg_o', :'run' || ':slow');
SELECT allowed, remaining, retry_after BETWEEN interval '23 hours' AND interval '1 day' AS retry_1_day
  FROM authx.rate_check('reg_o', :'run' || ':slow');
-- bypass: always allowed, remaining, reset_after and retry_after NULL,
-- whatever the cost.
SELECT authx.rate_override_set('reg_o', :'run' || ':free', bypass => true);
SELECT regress.check_burst('reg_o', :'run' || ':free', 5) AS free;
SELECT allowed, remaining, reset_after, retry_after FROM authx.rate_check('reg_o', :'run' || ':free', 1000);
SELECT policy, replace(subject, :'run', '<run>') AS subject, max, per, bypass, expires_at, reason
  FROM authx.rate_limit_overrides WHERE policy = 'reg_o' ORDER BY subject;
-- Setting one again replaces it.
SELECT authx.rate_override_set('reg_o', :'run' || ':free', max => 3, reason => 'no longer free');
SELECT regress.check_burst('reg_o', :'run' || ':free', 4) AS free_limited;
SELECT max, per, bypass, reason FROM authx.rate_limit_overrides WHERE policy = 'reg_o' AND subject = :'run' || ':free';
-- The same subject under two policies is two buckets.
SELECT authx.rate_policy_set('reg_o2', 2, '1 hour');
SELECT regress.check_burst('reg_o2', :'run' || ':plain', 3) AS plain_under_reg_o2;
-- Expiry: the policy applies again from expires_at on.
SELECT authx.rate_policy_set('reg_e', 1, '1 hour');
SELECT clock_timestamp() + interval '3 seconds' AS exp_at \gset
SELECT authx.rate_override_set('reg_e', :'run' || ':exp', bypass => true, expires_at => :'exp_at');
SELECT regress.check_burst('reg_e', :'run' || ':exp', 2) AS before_expiry;
SELECT pg_sleep_until(:'exp_at'::timestamptz + interval '0.2 seconds');
SELECT regress.check_burst('reg_e', :'run' || ':exp', 2) AS after_expiry;
-- Removal: true once; the policy applies.
SELECT authx.rate_override_remove('reg_o', :'run' || ':vip') AS removed,
       authx.rate_override_remove('reg_o', :'run' || ':vip') AS again,
       authx.rate_override_remove('reg_missing', :'run' || ':vip') AS unknown_policy;
SELECT regress.check_burst('reg_o', :'run' || ':vip', 3) AS vip_without_override;

-- ================================================================ audit
SELECT event_type, severity, user_id, details - 'subject' - 'expires_at' AS details,
       replace(details->>'subject', :'run', '<run>') AS subject, jsonb_typeof(details->'expires_at') AS expires_at
  FROM authx.audit_log WHERE id > :audit0 AND event_type LIKE 'rate\_limit.%' AND details->>'policy' ~ '^reg[._]'
 ORDER BY id;
SELECT count(*) AS seed_edits_rolled_back FROM authx.audit_log
 WHERE id > :audit0 AND event_type = 'rate_limit.policy_set' AND details->>'policy' = 'register';

-- ================================================================ maintenance
-- Overrides past their expiry are deleted (inserted directly:
-- rate_override_set refuses a past expiry); live ones are kept.  The
-- worker may or may not have deleted the one that expired above: delete
-- every expired one first, so the count is this file's.
DELETE FROM authx.rate_limit_overrides WHERE expires_at <= now();
BEGIN;
INSERT INTO authx.rate_limit_overrides (policy, subject, max, expires_at)
VALUES ('reg_o', :'run' || ':old', 5, now() - interval '1 day'), ('reg_o', :'run' || ':live', 5, now() + interval '1 hour');
SELECT authx.maintenance_run() -> 'rate_limits' AS rate_limits;
SELECT replace(subject, :'run', '<run>') AS subject FROM authx.rate_limit_overrides
 WHERE subject IN (:'run' || ':old', :'run' || ':live') ORDER BY subject;
ROLLBACK;

-- ================================================================ statistics
SELECT value AS allowed0 FROM authx.stats WHERE name = 'rate_limit_allowed' \gset
SELECT value AS denied0 FROM authx.stats WHERE name = 'rate_limit_denied' \gset
SELECT regress.burst(:'run' || ':stats', 2, '1 hour', 3) AS rate_limit;
SELECT allowed FROM authx.rate_peek(:'run' || ':stats', 2, '1 hour');
SELECT regress.check_burst('reg_o', :'run' || ':stats', 3) AS rate_check;
SELECT (SELECT value FROM authx.stats WHERE name = 'rate_limit_allowed') - :allowed0 AS allowed,
       (SELECT value FROM authx.stats WHERE name = 'rate_limit_denied') - :denied0 AS denied;

-- ================================================================ privileges
-- Applications may spend and ask; administrators may also manage.
SET ROLE authx_app;
SELECT allowed, remaining FROM authx.rate_limit(:'run' || ':app', 2, '1 hour');
SELECT allowed, remaining FROM authx.rate_peek(:'run' || ':app', 2, '1 hour');
SELECT allowed, remaining FROM authx.rate_check('reg_o', :'run' || ':app');
SELECT authx.rate_policy_set('reg_by_app', 1000, '1 second');
SELECT authx.rate_override_set('reg_o', :'run' || ':app', bypass => true);
SELECT authx.rate_override_remove('reg_o', :'run' || ':free');
SELECT count(*) FROM authx.rate_limit_policies;
SELECT count(*) FROM authx.rate_limit_overrides;
SELECT authx._ratelimit_purge(now());
RESET ROLE;
SET ROLE authx_admin;
SELECT authx.rate_policy_set('reg_by_admin', 2, '1 hour');
SELECT authx.rate_override_set('reg_by_admin', :'run' || ':admin', max => 3);
SELECT allowed, remaining FROM authx.rate_check('reg_by_admin', :'run' || ':admin');
SELECT name, max, per, seeded FROM authx.rate_limit_policies WHERE name = 'reg_by_admin';
SELECT policy, max FROM authx.rate_limit_overrides WHERE policy = 'reg_by_admin';
SELECT authx.rate_override_remove('reg_by_admin', :'run' || ':admin') AS removed;
UPDATE authx.rate_limit_policies SET max = 1000 WHERE name = 'reg_by_admin';
INSERT INTO authx.rate_limit_overrides (policy, subject, bypass) VALUES ('reg_by_admin', 'x', true);
DELETE FROM authx.rate_limit_policies WHERE name = 'reg_by_admin';
SELECT authx._ratelimit_purge(now());
RESET ROLE;

-- ================================================================ invalid input
SELECT count(*) AS policies_before FROM authx.rate_limit_policies \gset
SELECT count(*) AS overrides_before FROM authx.rate_limit_overrides \gset
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.rate_limit(NULL, 1, '1 hour')$$),
    ($$authx.rate_limit('s', NULL, '1 hour')$$),
    ($$authx.rate_limit('s', 1, NULL)$$),
    ($$authx.rate_limit('s', 1, '1 hour', NULL)$$),
    ($$authx.rate_limit('s', 0, '1 hour')$$),
    ($$authx.rate_limit('s', -1, '1 hour')$$),
    ($$authx.rate_limit('s', 1, '0')$$),
    ($$authx.rate_limit('s', 1, '999 microseconds')$$),
    ($$authx.rate_limit('s', 1, '-1 hour')$$),
    ($$authx.rate_limit('s', 1, '366 days 00:00:00.000001')$$),
    ($$authx.rate_limit('s', 1, '1 year 1 day')$$),
    ($$authx.rate_limit('s', 1, '1 hour', -1)$$),
    ($$authx.rate_limit('s', 1, '1 millisecond', 0)$$),
    ($$authx.rate_limit('s', 1, '366 days', 0)$$),
    ($$authx.rate_peek(NULL, 1, '1 hour')$$),
    ($$authx.rate_peek('s', NULL, '1 hour')$$),
    ($$authx.rate_peek('s', 1, NULL)$$),
    ($$authx.rate_peek('s', 0, '1 hour')$$),
    ($$authx.rate_peek('s', 1, '367 days')$$),
    ($$authx.rate_check(NULL, 's')$$),
    ($$authx.rate_check('login', NULL)$$),
    ($$authx.rate_check('login', 's', NULL)$$),
    ($$authx.rate_check('login', 's', -1)$$),
    ($$authx.rate_check('reg_missing', 's')$$),
    ($$authx.rate_check('LOGIN', 's')$$),
    ($$authx.rate_policy_set(NULL, 1, '1 hour')$$),
    ($$authx.rate_policy_set('reg_x', NULL, '1 hour')$$),
    ($$authx.rate_policy_set('reg_x', 1, NULL)$$),
    ($$authx.rate_policy_set('', 1, '1 hour')$$),
    ($$authx.rate_policy_set('Reg_x', 1, '1 hour')$$),
    ($$authx.rate_policy_set('1reg', 1, '1 hour')$$),
    ($$authx.rate_policy_set('_reg', 1, '1 hour')$$),
    ($$authx.rate_policy_set('reg x', 1, '1 hour')$$),
    ($$authx.rate_policy_set('reg:x', 1, '1 hour')$$),
    ($$authx.rate_policy_set('reg_' || repeat('x', 60), 1, '1 hour')$$),
    ($$authx.rate_policy_set('reg_x', 0, '1 hour')$$),
    ($$authx.rate_policy_set('reg_x', -1, '1 hour')$$),
    ($$authx.rate_policy_set('reg_x', 1, '0')$$),
    ($$authx.rate_policy_set('reg_x', 1, '999 microseconds')$$),
    ($$authx.rate_policy_set('reg_x', 1, '-1 minute')$$),
    ($$authx.rate_policy_set('reg_x', 1, '367 days')$$),
    ($$authx.rate_policy_set('reg_x', 1, '1 hour', 'remote')$$),
    ($$authx.rate_policy_set('reg_x', 1, '1 hour', NULL)$$),
    ($$authx.rate_policy_set('login', 0, '1 minute')$$),
    ($$authx.rate_override_set(NULL, 's', 1)$$),
    ($$authx.rate_override_set('reg_o', NULL, 1)$$),
    ($$authx.rate_override_set('reg_missing', 's', 1)$$),
    ($$authx.rate_override_set('reg_o', 's')$$),
    ($$authx.rate_override_set('reg_o', 's', per => '1 minute')$$),
    ($$authx.rate_override_set('reg_o', 's', bypass => NULL)$$),
    ($$authx.rate_override_set('reg_o', 's', 0)$$),
    ($$authx.rate_override_set('reg_o', 's', 0, bypass => true)$$),
    ($$authx.rate_override_set('reg_o', 's', 1, '0')$$),
    ($$authx.rate_override_set('reg_o', 's', 1, '367 days')$$),
    ($$authx.rate_override_set('reg_o', 's', 1, expires_at => now())$$),
    ($$authx.rate_override_set('reg_o', 's', 1, expires_at => clock_timestamp())$$),
    ($$authx.rate_override_set('reg_o', 's', 1, expires_at => '-infinity')$$),
    ($$authx.rate_override_set('reg_o', '', 1)$$),
    ($$authx.rate_override_set('reg_o', repeat('s', 501), 1)$$)
) v(call);
-- A failed call changed nothing.
SELECT count(*) - :policies_before AS new_policies FROM authx.rate_limit_policies;
SELECT count(*) - :overrides_before AS new_overrides FROM authx.rate_limit_overrides;
SELECT name, max, seeded FROM authx.rate_limit_policies WHERE name = 'login';

-- Clean up: the policies made here, and their overrides with them.
DELETE FROM authx.rate_limit_policies WHERE name ~ '^reg[._]';
SELECT count(*) AS overrides_left FROM authx.rate_limit_overrides WHERE subject LIKE :'run' || '%';
SELECT name, max, per, seeded FROM authx.rate_limit_policies WHERE seeded OR name ~ '^reg[._]' ORDER BY name;

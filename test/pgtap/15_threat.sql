-- 15_threat.sql — threat rules, auto-blocks, the login rate limit and the
-- security summary, end to end.
--
-- Covers:
--   * the seeded rules (login_bruteforce login.failed 20 per 5 min, block
--     1 hour; credential_stuffing login.failed distinct account 10 per
--     10 min, block 1 day; refresh_reuse token.refresh_reused 1 per hour,
--     block 1 hour; apikey_bruteforce apikey.not_found 50 per 5 min, block
--     1 hour), enabled and seeded, and only they are seeded; authx._ip_key
--     (IPv4 and mapped IPv4 as /32, IPv6 as its /64);
--   * threat_rule_set creates (defaults: block_for 1 hour, no distinct_by,
--     enabled, seeded false) and changes (description kept when NULL),
--     accepts the limits (threshold 1 and 1000000, within 1 s and 366 days,
--     block_for NULL and 366 days), refuses every bad value (22023 name,
--     event type, distinct_by, threshold, within, block_for; 22004 NULL
--     name, event type, threshold, within, enabled) and a failed call
--     changes nothing; editing a seed clears its seeded flag;
--     threat_rule_drop true / false / 22004; threat.rule_set and
--     threat.rule_dropped audited (medium, with details); authx_app may not
--     call threat_rule_set, threat_rule_drop, security_summary nor read
--     threat_rules (42501), authx_admin may;
--   * alerts_sent counts the drained events of severity high and above
--     (authx.alert_min_severity default): 2 critical + 1 high, not 3 medium;
--   * firing: a rule of 3 per hour fires at exactly the third event from an
--     address (threat_detections), the worker blocks the address (source
--     auto, reason "threat rule <name>", until = the detection + block_for,
--     threat_blocks + 1) and audits threat.auto_block (high, details rule,
--     event_type, threshold, within_s, net, until); a blocked address is
--     not queued again and login answers it 'blocked'; a block_for of 3 s
--     ends by itself; block_for NULL blocks with no end;
--   * counting survives the caller: ROLLBACK, ROLLBACK TO SAVEPOINT, and
--     another backend's rolled-back transaction (dblink);
--   * distinct_by: a details key (repeats, events without the key and
--     non-scalar values do not count) and user_id;
--   * IPv6 is counted and blocked per /64 (split over two /64s nothing
--     fires; the whole /64 is blocked, its neighbour is not); an
--     IPv4-mapped address counts, and is blocked, as the IPv4 address;
--   * the allowlist wins: threat.detected (medium, allowlisted true), no
--     block, no threat_blocks, also for an allowlisted IPv6 address whose
--     /64 is what the rule counts (its neighbours stay unblocked); a rule fires
--     once per window per address (also after an ip_unblock) and again in
--     the next window; a disabled rule counts nothing until enabled; a
--     dropped rule does nothing;
--   * each seeded rule fires through its real path: refresh_reuse on one
--     token.refresh_reused; login_bruteforce at the 20th failed
--     authx.login of one email (another backend, rolled back);
--     credential_stuffing at the 10th distinct account (an email in other
--     cases and with blanks is one account; login.failed carries account =
--     16 hex digits of sha256(lower(email))); apikey_bruteforce at the 50th
--     unknown or malformed key of apikey_verify with an ip (valid keys and
--     calls without ip never count).  Exactness is asserted when the burst
--     was faster than one token of the rule's bucket, otherwise a bound;
--   * apikey_verify from a blocked address (and its mapped form): code
--     'blocked', every other field NULL, for a valid key, before the key
--     is examined (its remaining uses are not spent); also as authx_app;
--   * a full queue: with the worker held back (ip_blocks locked), 300
--     detections: at most 256 queued (threat_detections), the rest counted
--     in threat_dropped; once released exactly the queued ones are blocked;
--   * security_summary (compared in one REPEATABLE READ snapshot with the
--     tables): its keys, since / until, events, by_severity and
--     auto_blocks equal to the log, by_type sorted with this run's counts,
--     top_ips (info events ignored, failed_logins, blocked), lockouts,
--     locked_accounts, active_blocks and blocks equal to the tables;
--     22023 for a non-positive since, 22004 for NULL;
--   * login rate limit (policy 'login', 5 per minute): the 6th attempt
--     from an address answers rate_limited (no user, no token, expires_at
--     within 12 s), for its mapped form and for the right password too (no
--     session), audited login.rate_limited (low, retry_after_s) with no
--     login.failed; per email (cases and blanks ignored; with and without
--     an address); an IPv6 /64 is one bucket; a bypass override is never
--     limited; without the policy nothing is limited.
-- The maintenance worker only acts on committed rules, so this file commits
-- its setup: rules named tap15_*, blocks in a random IPv4 /16 of
-- 100.64.0.0/10 and IPv6 /48 of 2001:db8::/32, one user and its keys, a
-- login override and the login policy (raised, then restored as it was);
-- all of it is removed at the end.  Counting lives in shared memory, hence
-- the random addresses.
SELECT plan(190);

SET lock_timeout = '60s';
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;

CREATE SCHEMA tap15;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'dblink') THEN
        CREATE EXTENSION dblink SCHEMA tap15;
    END IF;
END
$$;
SET search_path = public, tap15;
SELECT clock_timestamp() AS t_start \gset

-- This run's addresses: 100.<v4>.c.d and 2001:db8:<v6>:<sub>::<host>.
SELECT set_config('tap15.v4', (64 + floor(random() * 64))::int::text, false) AS v4,
       set_config('tap15.v6', to_hex(1 + floor(random() * 65534)::int), false) AS v6,
       set_config('tap15.run', left(md5(random()::text), 10), false) AS run \gset
SELECT ('100.' || :'v4' || '.0.0/16')::cidr AS my4, ('2001:db8:' || :'v6' || '::/48')::cidr AS my6 \gset
CREATE FUNCTION pg_temp.a4(p_c int, p_d int) RETURNS inet LANGUAGE sql AS
$$ SELECT ('100.' || current_setting('tap15.v4') || '.' || p_c || '.' || p_d)::inet $$;
CREATE FUNCTION pg_temp.a6(p_sub int, p_host text) RETURNS inet LANGUAGE sql AS
$$ SELECT ('2001:db8:' || current_setting('tap15.v6') || ':' || to_hex(p_sub) || '::' || p_host)::inet $$;
CREATE FUNCTION pg_temp.mapped(p_ip inet) RETURNS inet LANGUAGE sql AS
$$ SELECT ('::ffff:' || host(p_ip))::inet $$;
CREATE FUNCTION pg_temp.email(p_what text) RETURNS text LANGUAGE sql AS
$$ SELECT 'tap15-' || p_what || '-' || current_setting('tap15.run') || '@example.com' $$;
CREATE FUNCTION pg_temp.stat(p_name text) RETURNS bigint LANGUAGE sql AS
$$ SELECT value FROM authx.stats WHERE name = p_name $$;
CREATE FUNCTION pg_temp.det() RETURNS bigint LANGUAGE sql AS
$$ SELECT value FROM authx.stats WHERE name = 'threat_detections' $$;
-- n events from an address: how many detections they made.
CREATE FUNCTION pg_temp.ev(p_type text, p_ip inet, p_n int DEFAULT 1, p_details jsonb DEFAULT '{}',
                           p_user uuid DEFAULT NULL, p_severity text DEFAULT 'low') RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    d0 bigint := pg_temp.det();
BEGIN
    FOR i IN 1..p_n LOOP
        PERFORM authx.audit(p_type, p_severity, p_user, p_ip, p_details);
    END LOOP;
    RETURN pg_temp.det() - d0;
END
$$;
-- Poll a condition (new snapshot each time) every 50 ms for up to p_secs.
CREATE FUNCTION pg_temp.wait_for(p_cond text, p_secs float8 DEFAULT 30) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    t_end timestamptz := clock_timestamp() + make_interval(secs => p_secs);
    ok    boolean;
BEGIN
    LOOP
        EXECUTE 'SELECT (' || p_cond || ')' INTO ok;
        IF ok THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > t_end THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
CREATE FUNCTION pg_temp.wait_blocked(p_ip inet, p_secs float8 DEFAULT 30) RETURNS boolean LANGUAGE sql AS
$$ SELECT pg_temp.wait_for(format('authx.ip_blocked(%L)', p_ip), p_secs) $$;
-- Poll for an audit_log row (alias a) matching p_cond, flushing the queue.
CREATE FUNCTION pg_temp.wait_audit(p_cond text, p_secs float8 DEFAULT 30) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    t_end timestamptz := clock_timestamp() + make_interval(secs => p_secs);
    ok    boolean;
BEGIN
    LOOP
        PERFORM authx.audit_flush('10 s');
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM authx.audit_log a WHERE %s)', p_cond) INTO ok;
        IF ok THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > t_end THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
-- Run p_sql ({i} = 1, 2, ...) until threat_detections moves, at most p_max
-- times: how many runs it took (NULL: none fired) and the seconds from the
-- start of the first to the end of the last.
CREATE FUNCTION pg_temp.until_fired(p_sql text, p_max int, OUT n int, OUT secs float8) LANGUAGE plpgsql AS $$
DECLARE
    d0 bigint := pg_temp.det();
    t0 timestamptz := clock_timestamp();
BEGIN
    n := 0;
    LOOP
        n := n + 1;
        EXECUTE replace(p_sql, '{i}', n::text);
        EXIT WHEN pg_temp.det() > d0 OR n >= p_max;
    END LOOP;
    secs := extract(epoch FROM clock_timestamp() - t0);
    IF pg_temp.det() - d0 <> 1 THEN
        n := NULL;
    END IF;
END
$$;
-- A rule of threshold per within, expected to fire at run p_expected of a
-- burst, fired at run n of it, the burst lasting secs: exactly there when
-- it took less than one token (within / threshold), at most one later per
-- token it took otherwise.
CREATE FUNCTION pg_temp.fired_at(p_n int, p_secs float8, p_expected int, p_threshold int, p_within interval)
RETURNS boolean LANGUAGE sql AS $$
    SELECT p_n >= p_expected
       AND p_n <= p_expected + floor(p_secs / (extract(epoch FROM p_within) / p_threshold))::int
$$;
-- A key nobody has: odd i malformed, even i well-formed.
CREATE FUNCTION pg_temp.fake_key(i int) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN i % 2 = 1 THEN 'tap15-not-a-key-' || i
                ELSE 'axk_' || left(md5(random()::text), 12) || '_'
                     || left(translate(encode(sha256(convert_to(random()::text, 'UTF8')), 'base64'), '+/=', '-_'), 43)
           END
$$;

SELECT pg_temp.a4(1, 1) AS ip_basic, pg_temp.a4(2, 1) AS ip_short, pg_temp.a4(3, 1) AS ip_forever,
       pg_temp.a4(4, 1) AS ip_rb, pg_temp.a4(4, 2) AS ip_rb2, pg_temp.a4(4, 3) AS ip_rb3,
       pg_temp.a4(5, 1) AS ip_dist, pg_temp.a4(5, 2) AS ip_dist2, pg_temp.a4(6, 1) AS ip_uid,
       pg_temp.a4(7, 1) AS ip_map, pg_temp.a4(8, 1) AS ip_allow, pg_temp.a4(9, 1) AS ip_once,
       pg_temp.a4(10, 1) AS ip_win, pg_temp.a4(11, 1) AS ip_off, pg_temp.a4(11, 2) AS ip_drop,
       pg_temp.a4(20, 1) AS ip_refresh, pg_temp.a4(21, 1) AS ip_bf, pg_temp.a4(22, 1) AS ip_cs,
       pg_temp.a4(23, 1) AS ip_ak, pg_temp.a4(23, 2) AS ip_key_ok,
       pg_temp.a4(30, 1) AS ip_x, pg_temp.a4(30, 2) AS ip_y, pg_temp.a4(30, 3) AS ip_z,
       pg_temp.a4(40, 1) AS ip_rl, pg_temp.a4(41, 6) AS ip_rl_fresh, pg_temp.a4(42, 1) AS ip_bypass,
       pg_temp.a6(1, '1') AS v6_a1, pg_temp.a6(1, '2') AS v6_a2, pg_temp.a6(1, 'ffff:ffff:fffe') AS v6_a3,
       pg_temp.a6(1, 'abcd') AS v6_a_other, pg_temp.a6(2, '1') AS v6_b1, pg_temp.a6(3, '1') AS v6_c1,
       network(set_masklen(pg_temp.a6(1, '1'), 64))::cidr AS v6_net,
       pg_temp.a6(9, '1') AS v6_allow, pg_temp.a6(9, '2') AS v6_allow_nb,
       pg_temp.a6(40, 'ffff:0:1') AS v6_rl_last, pg_temp.a6(41, '1') AS v6_rl_other \gset

-- One user and two keys, committed (apikey_verify reads committed keys).
SELECT authx.user_create(pg_temp.email('user'), 'tap15 password one') AS uid \gset
SELECT api_key AS key_a FROM authx.apikey_create(:'uid', 'tap15 a') \gset
SELECT api_key AS key_b FROM authx.apikey_create(:'uid', 'tap15 b', remaining => 3) \gset
-- The login policy as it was, to restore at the end.
CREATE TEMP TABLE tap15_login_policy AS SELECT * FROM authx.rate_limit_policies WHERE name = 'login';
CREATE TEMP TABLE tap15_rules_before AS SELECT * FROM authx.threat_rules;

SELECT format('host=127.0.0.1 port=%s dbname=%s user=%s options=''-c authx.password_memlimit=64 -c authx.password_opslimit=1''',
              current_setting('port'), current_database(), current_user) AS cs \gset
SELECT dblink_connect('tap15_att', :'cs') AS c1, dblink_connect('tap15_lock', :'cs') AS c2 \gset

-- ================================================================ seeds
SELECT results_eq(
    $$SELECT name::text COLLATE "default", event_type, distinct_by, threshold, within, block_for, enabled, seeded
        FROM authx.threat_rules WHERE seeded ORDER BY name$$,
    $$VALUES ('apikey_bruteforce', 'apikey.not_found', NULL::text, 50, interval '5 minutes', interval '1 hour', true, true),
             ('credential_stuffing', 'login.failed', 'account', 10, interval '10 minutes', interval '1 day', true, true),
             ('login_bruteforce', 'login.failed', NULL, 20, interval '5 minutes', interval '1 hour', true, true),
             ('refresh_reuse', 'token.refresh_reused', NULL, 1, interval '1 hour', interval '1 hour', true, true)$$,
    'the seeded rules, and only they are seeded: login_bruteforce, credential_stuffing, refresh_reuse, apikey_bruteforce');
SELECT is(authx._ip_key(:'ip_basic')::text, host(:'ip_basic'::inet) || '/32', '_ip_key: an IPv4 address is its /32');
SELECT is(authx._ip_key(pg_temp.mapped(:'ip_basic'))::text, host(:'ip_basic'::inet) || '/32',
          '_ip_key: an IPv4-mapped address is the IPv4 /32');
SELECT is(authx._ip_key(:'v6_a3'), :'v6_net'::cidr, '_ip_key: an IPv6 address is its /64');

-- ================================================================ threat_rule_set / threat_rule_drop
SELECT lives_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 5, '10 minutes')$$, 'threat_rule_set creates a rule');
SELECT results_eq(
    $$SELECT event_type, distinct_by, threshold, within, block_for, enabled, description, seeded
        FROM authx.threat_rules WHERE name = 'tap15_x'$$,
    $$VALUES ('tap15.x', NULL::text, 5, interval '10 minutes', interval '1 hour', true, NULL::text, false)$$,
    'defaults: block_for 1 hour, no distinct_by, enabled, no description, not seeded');
SELECT lives_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.y', 7, '1 hour', NULL, 'user_id', false, 'd1')$$,
                'threat_rule_set changes a rule');
SELECT lives_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.y', 8, '1 hour', NULL, 'user_id', false)$$,
                'and again, without a description');
SELECT results_eq(
    $$SELECT event_type, distinct_by, threshold, within, block_for, enabled, description, seeded
        FROM authx.threat_rules WHERE name = 'tap15_x'$$,
    $$VALUES ('tap15.y', 'user_id', 8, interval '1 hour', NULL::interval, false, 'd1', false)$$,
    'the changes are in place, the description kept when NULL');
SELECT lives_ok($$SELECT authx.threat_rule_set('tap15_limits', 'a', 1000000, '366 days', '366 days', 'z')$$,
                'threshold 1000000, within and block_for 366 days are accepted');
SELECT lives_ok($$SELECT authx.threat_rule_set('tap15_limits', 'a', 1, '1 second', '1 second')$$,
                'threshold 1, within and block_for 1 second are accepted');
-- Bad values.
SELECT throws_ok($$SELECT authx.threat_rule_set('Tap15', 'tap15.x', 5, '1 hour')$$, '22023',
                 'invalid rule name "Tap15"', 'an upper-case rule name: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('1tap15', 'tap15.x', 5, '1 hour')$$, '22023', NULL,
                 'a rule name starting with a digit: 22023');
SELECT throws_ok(format('SELECT authx.threat_rule_set(%L, %L, 5, %L)', 't' || repeat('a', 63), 'tap15.x', '1 hour'), '22023', NULL,
                 'a 64-character rule name: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'Login.Failed', 5, '1 hour')$$, '22023',
                 'invalid event type "Login.Failed"', 'an upper-case event type: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', '', 5, '1 hour')$$, '22023', NULL, 'an empty event type: 22023');
SELECT throws_ok(format('SELECT authx.threat_rule_set(%L, %L, 5, %L)', 'tap15_x', repeat('e', 65), '1 hour'), '22023', NULL,
                 'a 65-character event type: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 5, '1 hour', distinct_by => 'Account')$$, '22023',
                 'invalid distinct_by "Account"', 'an upper-case distinct_by: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 5, '1 hour', distinct_by => 'a.b')$$, '22023', NULL,
                 'a distinct_by with a dot: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 0, '1 hour')$$, '22023',
                 'threshold must be between 1 and 1000000', 'threshold 0: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 1000001, '1 hour')$$, '22023', NULL,
                 'threshold 1000001: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 5, '999 milliseconds')$$, '22023',
                 'within must be between 1 second and 366 days', 'within 999 ms: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 5, '366 days 1 second')$$, '22023', NULL,
                 'within 366 days 1 second: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 5, '1 hour', '0')$$, '22023',
                 'block_for must be between 1 second and 366 days', 'block_for 0: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 5, '1 hour', '-1 hour')$$, '22023', NULL,
                 'a negative block_for: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 5, '1 hour', '367 days')$$, '22023', NULL,
                 'block_for 367 days: 22023');
SELECT throws_ok($$SELECT authx.threat_rule_set(NULL, 'tap15.x', 5, '1 hour')$$, '22004', NULL, 'NULL name: 22004');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', NULL, 5, '1 hour')$$, '22004', NULL, 'NULL event_type: 22004');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', NULL, '1 hour')$$, '22004', NULL, 'NULL threshold: 22004');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 5, NULL)$$, '22004', NULL, 'NULL within: 22004');
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_x', 'tap15.x', 5, '1 hour', enabled => NULL)$$, '22004', NULL,
                 'NULL enabled: 22004');
SELECT results_eq(
    $$SELECT event_type, distinct_by, threshold, within, block_for, enabled, description
        FROM authx.threat_rules WHERE name = 'tap15_x'$$,
    $$VALUES ('tap15.y', 'user_id', 8, interval '1 hour', NULL::interval, false, 'd1')$$,
    'the failed calls changed nothing');
SELECT results_eq(
    $$SELECT severity::text, user_id, details - 'within_s' - 'block_for_s'
        FROM authx.audit_log WHERE event_type = 'threat.rule_set' AND details->>'rule' = 'tap15_x'
         AND at >= '$$ || :'t_start' || $$' ORDER BY id$$,
    $$VALUES ('medium', NULL::uuid, '{"rule": "tap15_x", "enabled": true, "threshold": 5, "event_type": "tap15.x", "distinct_by": null}'::jsonb),
             ('medium', NULL::uuid, '{"rule": "tap15_x", "enabled": false, "threshold": 7, "event_type": "tap15.y", "distinct_by": "user_id"}'::jsonb),
             ('medium', NULL::uuid, '{"rule": "tap15_x", "enabled": false, "threshold": 8, "event_type": "tap15.y", "distinct_by": "user_id"}'::jsonb)$$,
    'threat.rule_set audited for each successful call (medium, no user, with the rule), none for the failed ones');
SELECT is((SELECT array_agg((details->>'within_s')::numeric::int || '/' || coalesce((details->>'block_for_s')::numeric::int::text, 'null')
                             ORDER BY id)
             FROM authx.audit_log WHERE event_type = 'threat.rule_set' AND details->>'rule' = 'tap15_x' AND at >= :'t_start'),
          ARRAY['600/3600', '3600/null', '3600/null'], 'threat.rule_set details: within_s and block_for_s in seconds');
BEGIN;
SELECT authx.threat_rule_set('refresh_reuse', 'token.refresh_reused', 2, '1 hour') AS x \gset
SELECT seeded AS seed_edited FROM authx.threat_rules WHERE name = 'refresh_reuse' \gset
ROLLBACK;
SELECT is(:'seed_edited'::boolean, false, 'editing a seed rule clears its seeded flag (rolled back)');
SELECT is(authx.threat_rule_drop('tap15_x'), true, 'threat_rule_drop: true for a rule that was there');
SELECT is(authx.threat_rule_drop('tap15_x'), false, 'and false the second time');
SELECT throws_ok($$SELECT authx.threat_rule_drop(NULL)$$, '22004', NULL, 'threat_rule_drop(NULL): 22004');
SELECT results_eq(
    $$SELECT severity::text, details FROM authx.audit_log WHERE event_type = 'threat.rule_dropped' AND details->>'rule' = 'tap15_x'
         AND at >= '$$ || :'t_start' || $$'$$,
    $$VALUES ('medium', '{"rule": "tap15_x"}'::jsonb)$$, 'threat.rule_dropped audited once (medium)');
-- Privileges.
SET ROLE authx_app;
SELECT throws_ok($$SELECT authx.threat_rule_set('tap15_app', 'tap15.app', 5, '1 hour')$$, '42501', NULL,
                 'app: cannot call threat_rule_set');
SELECT throws_ok($$SELECT authx.threat_rule_drop('tap15_limits')$$, '42501', NULL, 'app: cannot call threat_rule_drop');
SELECT throws_ok($$SELECT authx.security_summary()$$, '42501', NULL, 'app: cannot call security_summary');
SELECT throws_ok($$SELECT * FROM authx.threat_rules$$, '42501', NULL, 'app: cannot read authx.threat_rules');
RESET ROLE;
SET ROLE authx_admin;
SELECT lives_ok($$SELECT authx.threat_rule_set('tap15_admin', 'tap15.admin', 5, '1 hour')$$, 'admin: threat_rule_set');
SELECT is((SELECT count(*)::int FROM authx.threat_rules WHERE name = 'tap15_admin'), 1, 'admin: reads authx.threat_rules');
SELECT is(authx.threat_rule_drop('tap15_admin'), true, 'admin: threat_rule_drop');
SELECT lives_ok($$SELECT authx.security_summary('1 hour')$$, 'admin: security_summary');
RESET ROLE;
SELECT is(authx.threat_rule_drop('tap15_limits'), true, '(drop tap15_limits)');

-- ================================================================ alerts_sent
SELECT authx.audit_flush('30 s') AS f \gset
SELECT pg_temp.stat('alerts_sent') AS al0 \gset
SELECT pg_temp.ev('tap15.alert', NULL, 2, '{}', NULL, 'critical') + pg_temp.ev('tap15.alert', NULL, 3, '{}', NULL, 'medium')
     + pg_temp.ev('tap15.alert', NULL, 1, '{}', NULL, 'high') AS x \gset
SELECT ok(pg_temp.wait_for(format('pg_temp.stat(%L) >= %s', 'alerts_sent', :al0 + 3)),
          'alerts_sent counts the critical and high events once written');
SELECT authx.audit_flush('30 s') AS f \gset
SELECT is(pg_temp.stat('alerts_sent') - :al0, 3::bigint, 'exactly 3: medium events are not alerts by default');

-- ================================================================ a rule fires
SELECT authx.threat_rule_set('tap15_basic', 'tap15.basic', 3, '1 hour', '1 hour') AS x \gset
SELECT pg_temp.stat('threat_blocks') AS tb0 \gset
SELECT is(pg_temp.ev('tap15.basic', :'ip_basic', 2), 0::bigint, '3 per hour: two events make no detection');
SELECT is(pg_temp.ev('tap15.other', :'ip_basic', 5), 0::bigint, 'events of another type do not count');
SELECT clock_timestamp() AS t_basic \gset
SELECT is(pg_temp.ev('tap15.basic', :'ip_basic'), 1::bigint, 'the third makes one detection');
SELECT ok(pg_temp.wait_blocked(:'ip_basic'), 'the maintenance worker blocks the address');
SELECT results_eq(
    format($$SELECT net, allow, source, reason FROM authx.ip_blocks WHERE net = %L$$, :'ip_basic'),
    format($$VALUES (%L::cidr, false, 'auto', 'threat rule tap15_basic')$$, :'ip_basic'),
    'an authx.ip_blocks row: the /32, source auto, reason "threat rule tap15_basic"');
SELECT coalesce((SELECT until::text FROM authx.ip_blocks WHERE net = :'ip_basic' AND NOT allow), '') AS basic_until \gset
SELECT ok(nullif(:'basic_until', '')::timestamptz >= :'t_basic'::timestamptz + interval '1 hour'
          AND nullif(:'basic_until', '')::timestamptz <= clock_timestamp() + interval '1 hour',
          'the block lasts block_for (1 hour) from the detection');
SELECT ok(pg_temp.wait_audit(format($$a.event_type = 'threat.auto_block' AND a.ip = %L$$, :'ip_basic')),
          'threat.auto_block is audited');
SELECT results_eq(
    format($$SELECT severity::text, user_id, details - 'until', (details->>'until')::timestamptz
               FROM authx.audit_log WHERE event_type = 'threat.auto_block' AND ip = %L$$, :'ip_basic'),
    format($$VALUES ('high', NULL::uuid, jsonb_build_object('rule', 'tap15_basic', 'event_type', 'tap15.basic', 'threshold', 3,
                                                          'within_s', 3600, 'net', %L), %L::timestamptz)$$,
           :'ip_basic' || '/32', nullif(:'basic_until', '')),
    'threat.auto_block: high, details rule, event_type, threshold, within_s, net and the block''s until');
SELECT ok(pg_temp.wait_for(format('pg_temp.stat(%L) >= %s', 'threat_blocks', :tb0 + 1)), 'threat_blocks counts it');
SELECT is(pg_temp.stat('threat_blocks') - :tb0, 1::bigint, 'exactly once');
SELECT is(pg_temp.ev('tap15.basic', :'ip_basic', 5), 0::bigint, 'events from a blocked address are not queued again');
SELECT is((SELECT status FROM authx.login(pg_temp.email('basic'), 'whatever', :'ip_basic')), 'blocked',
          'login from the auto-blocked address: blocked');

SELECT authx.threat_rule_set('tap15_short', 'tap15.short', 1, '1 hour', '3 seconds') AS x \gset
SELECT clock_timestamp() AS t_short \gset
SELECT is(pg_temp.ev('tap15.short', :'ip_short'), 1::bigint, 'threshold 1: the first event makes a detection');
SELECT ok(pg_temp.wait_blocked(:'ip_short', 15), 'a rule with block_for 3 seconds blocks the address');
SELECT ok(coalesce((SELECT until >= :'t_short'::timestamptz + interval '3 seconds' AND until <= clock_timestamp() + interval '3 seconds'
                      FROM authx.ip_blocks WHERE net = :'ip_short' AND NOT allow), false),
          'until: 3 seconds after the detection');
SELECT ok(pg_temp.wait_for(format('NOT authx.ip_blocked(%L)', :'ip_short'), 30), 'the block ends by itself');

SELECT authx.threat_rule_set('tap15_forever', 'tap15.forever', 1, '1 hour', NULL) AS x \gset
SELECT is(pg_temp.ev('tap15.forever', :'ip_forever'), 1::bigint, 'a rule with block_for NULL fires');
SELECT ok(pg_temp.wait_for(format('EXISTS (SELECT 1 FROM authx.ip_blocks WHERE net = %L AND until IS NULL AND source = %L)',
                                  :'ip_forever', 'auto')) AND authx.ip_blocked(:'ip_forever'),
          'and blocks with no end');

-- ================================================================ not undone
SELECT authx.threat_rule_set('tap15_rb', 'tap15.rb', 3, '1 hour') AS x \gset
BEGIN;
SELECT pg_temp.ev('tap15.rb', :'ip_rb', 3) AS rb_det \gset
ROLLBACK;
SELECT is(:rb_det::bigint, 1::bigint, 'three events in a transaction: a detection');
SELECT ok(pg_temp.wait_blocked(:'ip_rb'), 'the address is blocked although the transaction rolled back');
BEGIN;
SAVEPOINT s1;
SELECT pg_temp.ev('tap15.rb', :'ip_rb2', 2) AS sp_det1 \gset
ROLLBACK TO SAVEPOINT s1;
SELECT pg_temp.ev('tap15.rb', :'ip_rb2', 1) AS sp_det2 \gset
ROLLBACK;
SELECT is(ARRAY[:sp_det1, :sp_det2]::bigint[], ARRAY[0, 1]::bigint[],
          'two events rolled back to a savepoint still count: the third fires');
SELECT ok(pg_temp.wait_blocked(:'ip_rb2'), 'and blocks');
-- Another backend, in a transaction it rolls back.
SELECT dblink_exec('tap15_att', 'BEGIN') AS b,
       dblink_exec('tap15_att', format('DO %L', format('BEGIN PERFORM authx.audit(%L, %L, NULL, %L); PERFORM authx.audit(%L, %L, NULL, %L); PERFORM authx.audit(%L, %L, NULL, %L); END',
                                                        'tap15.rb', 'low', :'ip_rb3', 'tap15.rb', 'low', :'ip_rb3', 'tap15.rb', 'low', :'ip_rb3'))) AS e,
       dblink_exec('tap15_att', 'ROLLBACK') AS r \gset
SELECT ok(pg_temp.wait_blocked(:'ip_rb3'), 'three events from another backend that rolled back: blocked');

-- ================================================================ distinct_by
SELECT authx.threat_rule_set('tap15_dist', 'tap15.dist', 3, '1 hour', distinct_by => 'account') AS x \gset
SELECT is(pg_temp.ev('tap15.dist', :'ip_dist', 5, '{"account": "a"}') + pg_temp.ev('tap15.dist', :'ip_dist', 3)
          + pg_temp.ev('tap15.dist', :'ip_dist', 2, '{"account": {"nested": 1}}')
          + pg_temp.ev('tap15.dist', :'ip_dist', 2, '{"account": null}'),
          0::bigint, 'distinct_by account, 3 per hour: five of one account, none without it or non-scalar: no detection');
SELECT is(pg_temp.ev('tap15.dist', :'ip_dist', 1, '{"account": "b"}'), 0::bigint, 'a second account: none');
SELECT is(pg_temp.ev('tap15.dist', :'ip_dist2', 10, '{"account": "c"}') + pg_temp.ev('tap15.dist', :'ip_dist2', 10, '{"account": "d"}'),
          0::bigint, 'another address: twenty events of two accounts, none');
SELECT is(pg_temp.ev('tap15.dist', :'ip_dist', 1, '{"account": "c"}'), 1::bigint, 'a third account at the first address: a detection');
SELECT ok(pg_temp.wait_blocked(:'ip_dist'), 'which blocks it');
SELECT authx.threat_rule_set('tap15_uid', 'tap15.uid', 2, '1 hour', distinct_by => 'user_id') AS x \gset
SELECT is(pg_temp.ev('tap15.uid', :'ip_uid', 3, '{}', '00000000-0000-4000-8000-000000000001')
          + pg_temp.ev('tap15.uid', :'ip_uid', 3),
          0::bigint, 'distinct_by user_id, 2 per hour: three of one user, three without a user: no detection');
SELECT is(pg_temp.ev('tap15.uid', :'ip_uid', 1, '{}', '00000000-0000-4000-8000-000000000002'), 1::bigint,
          'a second user: a detection');
SELECT ok(pg_temp.wait_blocked(:'ip_uid'), 'which blocks it');

-- ================================================================ IPv6 /64, mapped IPv4
SELECT authx.threat_rule_set('tap15_v6', 'tap15.v6', 3, '1 hour') AS x \gset
SELECT is(pg_temp.ev('tap15.v6', :'v6_a1') + pg_temp.ev('tap15.v6', :'v6_a2') + pg_temp.ev('tap15.v6', :'v6_b1', 2),
          0::bigint, 'IPv6: two events in one /64 and two in another: no detection');
SELECT is(pg_temp.ev('tap15.v6', :'v6_a3'), 1::bigint, 'a third host of the first /64: a detection');
SELECT ok(pg_temp.wait_blocked(:'v6_a_other'), 'a host of that /64 that sent nothing is blocked');
SELECT results_eq(
    $$SELECT net, source, reason FROM authx.ip_blocks WHERE reason = 'threat rule tap15_v6' AND net <<= '$$ || :'my6' || $$'$$,
    format($$VALUES (%L::cidr, 'auto', 'threat rule tap15_v6')$$, :'v6_net'),
    'the block is the /64');
SELECT is(ARRAY[authx.ip_blocked(:'v6_a1'), authx.ip_blocked(:'v6_b1'), authx.ip_blocked(:'v6_c1')], ARRAY[true, false, false],
          'the other /64s are not blocked');
SELECT ok(pg_temp.wait_audit(format($$a.event_type = 'threat.auto_block' AND a.ip = %L::inet AND a.details->>'net' = %L$$,
                                    :'v6_a3', :'v6_net')),
          'threat.auto_block names the host that fired it (ip) and the /64 blocked (details.net)');
SELECT authx.threat_rule_set('tap15_map', 'tap15.map', 3, '1 hour') AS x \gset
SELECT is(pg_temp.ev('tap15.map', pg_temp.mapped(:'ip_map'), 2), 0::bigint, 'two events from an IPv4-mapped address: none');
SELECT is(pg_temp.ev('tap15.map', :'ip_map'), 1::bigint, 'a third from the IPv4 form: they count together');
SELECT ok(pg_temp.wait_blocked(pg_temp.mapped(:'ip_map')), 'the mapped form is blocked');
SELECT is((SELECT array_agg(net::text) FROM authx.ip_blocks WHERE reason = 'threat rule tap15_map' AND net <<= :'my4'),
          ARRAY[host(:'ip_map'::inet) || '/32'], 'as the IPv4 /32');

-- ================================================================ allowlist, once per window, disabled
SELECT authx.ip_allow(:'ip_allow', 'tap15') AS x, authx.ip_allow(:'ip_win', 'tap15') AS y,
       authx.ip_allow(:'v6_allow', 'tap15') AS z \gset
SELECT authx.threat_rule_set('tap15_allow', 'tap15.allow', 2, '1 hour') AS x \gset
SELECT pg_temp.stat('threat_blocks') AS tb1 \gset
SELECT is(pg_temp.ev('tap15.allow', :'ip_allow', 2), 1::bigint, 'an allowlisted address: a detection');
SELECT ok(pg_temp.wait_audit(format($$a.event_type = 'threat.detected' AND a.ip = %L$$, :'ip_allow')),
          'reported as threat.detected');
SELECT results_eq(
    format($$SELECT severity::text, details - 'net' FROM authx.audit_log WHERE event_type IN ('threat.detected', 'threat.auto_block') AND ip = %L$$,
           :'ip_allow'),
    $$VALUES ('medium', '{"rule": "tap15_allow", "event_type": "tap15.allow", "allowlisted": true}'::jsonb)$$,
    'threat.detected: medium, rule, event_type, allowlisted true; no threat.auto_block');
SELECT is((SELECT count(*)::int FROM authx.ip_blocks WHERE net = :'ip_allow' AND NOT allow), 0, 'no block row for it');
SELECT is(authx.ip_blocked(:'ip_allow'), false, 'it is not blocked');
SELECT is(pg_temp.stat('threat_blocks') - :tb1, 0::bigint, 'threat_blocks did not move');
SELECT is(pg_temp.ev('tap15.allow', :'ip_allow', 5), 0::bigint, 'more events in the same window: no second detection');
-- An allowlisted IPv6 address: its own events should not get its /64 blocked.
SELECT authx.threat_rule_set('tap15_allow6', 'tap15.allow6', 2, '1 hour') AS x \gset
SELECT is(pg_temp.ev('tap15.allow6', :'v6_allow', 2), 1::bigint, 'an allowlisted IPv6 address: a detection');
SELECT ok(pg_temp.wait_audit(format($$a.event_type IN ('threat.detected', 'threat.auto_block') AND a.details->>'rule' = 'tap15_allow6'
                                     AND a.at >= %L$$, :'t_start')),
          'handled by the worker');
SELECT is((SELECT array_agg(event_type) FROM authx.audit_log WHERE details->>'rule' = 'tap15_allow6'
             AND event_type IN ('threat.detected', 'threat.auto_block') AND at >= :'t_start'),
          ARRAY['threat.detected'], 'events of an allowlisted IPv6 address are reported, not auto-blocked');
SELECT is(authx.ip_blocked(:'v6_allow_nb'), false, 'its /64 neighbours are not blocked for its events');

SELECT authx.threat_rule_set('tap15_once', 'tap15.once', 2, '1 hour') AS x \gset
SELECT is(pg_temp.ev('tap15.once', :'ip_once', 2), 1::bigint, 'tap15_once fires');
SELECT ok(pg_temp.wait_blocked(:'ip_once'), 'and blocks');
SELECT is(authx.ip_unblock(:'ip_once'), true, 'ip_unblock lifts it');
SELECT is(pg_temp.ev('tap15.once', :'ip_once', 5), 0::bigint, 'events after ip_unblock in the same window: no detection');
SELECT is(authx.ip_blocked(:'ip_once'), false, 'the address stays unblocked');

SELECT authx.threat_rule_set('tap15_win', 'tap15.win', 2, '4 seconds') AS x \gset
SELECT clock_timestamp() AS t_win \gset
SELECT is(pg_temp.ev('tap15.win', :'ip_win', 2), 1::bigint, '2 per 4 seconds: fires');
SELECT is(pg_temp.ev('tap15.win', :'ip_win', 2), 0::bigint, 'not again in the same window');
SELECT pg_sleep(greatest(0, 4.2 - extract(epoch FROM clock_timestamp() - :'t_win'::timestamptz))) AS slept \gset
SELECT is(pg_temp.ev('tap15.win', :'ip_win', 2), 1::bigint, 'in the next window it fires again');

SELECT authx.threat_rule_set('tap15_off', 'tap15.off', 1, '1 hour', enabled => false) AS x \gset
SELECT is(pg_temp.ev('tap15.off', :'ip_off', 5), 0::bigint, 'a disabled rule: no detection');
SELECT authx.threat_rule_set('tap15_off', 'tap15.off', 1, '1 hour', enabled => true) AS x \gset
SELECT is(pg_temp.ev('tap15.off', :'ip_off'), 1::bigint, 'enabled again: it fires');
SELECT ok(pg_temp.wait_blocked(:'ip_off'), 'and blocks');
SELECT authx.threat_rule_drop('tap15_off') AS x \gset
SELECT is(pg_temp.ev('tap15.off', :'ip_drop', 5), 0::bigint, 'a dropped rule: no detection');

-- ================================================================ the seeded rules, for real
-- refresh_reuse: one event.
SELECT clock_timestamp() AS t_refresh \gset
SELECT is(pg_temp.ev('token.refresh_reused', :'ip_refresh', 1, '{}', NULL, 'high'), 1::bigint,
          'refresh_reuse: one token.refresh_reused makes a detection');
SELECT ok(pg_temp.wait_blocked(:'ip_refresh'), 'and a block');
SELECT ok(coalesce((SELECT reason = 'threat rule refresh_reuse' AND source = 'auto'
                             AND until >= :'t_refresh'::timestamptz + interval '1 hour'
                             AND until <= clock_timestamp() + interval '1 hour'
                        FROM authx.ip_blocks WHERE net = :'ip_refresh' AND NOT allow), false),
          'reason refresh_reuse, for 1 hour from the detection');

-- The login policy would refuse most of what follows.
SELECT authx.rate_policy_set('login', 1000, '1 minute') AS x \gset

-- login_bruteforce: failed logins of one email, from another backend in a
-- transaction it rolls back.
SELECT dblink_exec('tap15_att', 'BEGIN') AS b \gset
SELECT coalesce(n::text, '') AS bf_n, secs AS bf_secs
  FROM pg_temp.until_fired(format('SELECT dblink_exec(%L, %L)', 'tap15_att',
                                  format('DO %L', format('BEGIN PERFORM authx.login(%L, %L, %L); END',
                                                         pg_temp.email('victim'), 'wrong password', :'ip_bf'))),
                           40) \gset
SELECT dblink_exec('tap15_att', 'ROLLBACK') AS r \gset
SELECT ok(pg_temp.fired_at(nullif(:'bf_n', '')::int, :'bf_secs', 20, 20, '5 minutes'),
          format('login_bruteforce fired at the 20th failed login of one email (%s in %s s)', :'bf_n', round(:'bf_secs'::numeric, 2)));
SELECT ok(pg_temp.wait_blocked(:'ip_bf'), 'the attacker''s address is blocked although its transaction rolled back');
SELECT is((SELECT reason FROM authx.ip_blocks WHERE net = :'ip_bf' AND NOT allow), 'threat rule login_bruteforce',
          'by login_bruteforce (one account: not credential_stuffing)');
SELECT is((SELECT status FROM authx.login(pg_temp.email('victim'), 'wrong password', :'ip_bf')), 'blocked',
          'its next login: blocked');

-- credential_stuffing: one account in three spellings, then new ones.
SELECT clock_timestamp() AS t_cs \gset
SELECT is((SELECT count(*)::int FROM (VALUES (upper(' ' || pg_temp.email('stuff-0') || ' ')), (pg_temp.email('stuff-0')),
                                             (E'\t' || pg_temp.email('stuff-0') || E'\n')) v(e),
                LATERAL authx.login(v.e, 'wrong password', :'ip_cs') l WHERE l.status = 'invalid_credentials'), 3,
          'one unknown email in three spellings: invalid_credentials');
SELECT coalesce(n::text, '') AS cs_n
  FROM pg_temp.until_fired(format('SELECT authx.login(%L, %L, %L)', pg_temp.email('stuff-{i}'), 'wrong password', :'ip_cs'), 30) \gset
SELECT extract(epoch FROM clock_timestamp() - :'t_cs'::timestamptz) AS cs_secs \gset
SELECT ok(pg_temp.fired_at(nullif(:'cs_n', '')::int, :'cs_secs', 9, 10, '10 minutes'),
          format('credential_stuffing fired at the 10th distinct account, the three spellings being one (%s more in %s s)',
                 :'cs_n', round(:'cs_secs'::numeric, 2)));
SELECT ok(pg_temp.wait_blocked(:'ip_cs'), 'the address is blocked');
SELECT ok(coalesce((SELECT reason = 'threat rule credential_stuffing' AND until >= :'t_cs'::timestamptz + interval '1 day'
                             AND until <= clock_timestamp() + interval '1 day'
                        FROM authx.ip_blocks WHERE net = :'ip_cs' AND NOT allow), false),
          'by credential_stuffing, for 1 day from the detection');
SELECT authx.audit_flush('30 s') AS f \gset
SELECT is((SELECT count(*)::int FROM authx.audit_log WHERE event_type = 'login.failed' AND ip = :'ip_cs'
              AND details->>'account' = left(encode(sha256(convert_to(pg_temp.email('stuff-0'), 'UTF8')), 'hex'), 16)), 3,
          'login.failed details.account: 16 hex digits of sha256 of the lower-case trimmed email, the same for the three spellings');
SELECT is((SELECT count(DISTINCT details->>'account')::int FROM authx.audit_log WHERE event_type = 'login.failed' AND ip = :'ip_cs'),
          nullif(:'cs_n', '')::int + 1, 'one account per distinct email');

-- apikey_bruteforce: valid keys and calls without ip never count.
SELECT is((SELECT count(*) FILTER (WHERE (authx.apikey_verify(:'key_a', NULL, 1, :'ip_key_ok')).code = 'valid')::int
             FROM generate_series(1, 60)), 60, '60 verifications of a valid key from an address: valid');
SELECT pg_temp.det() AS d_ak \gset
SELECT is((SELECT count(*)::int FROM generate_series(1, 60) g, LATERAL authx.apikey_verify(pg_temp.fake_key(g)) v
            WHERE v.code = 'not_found'), 60, '60 unknown keys without an address: not_found');
SELECT is(pg_temp.det() - :d_ak, 0::bigint, 'none of these makes a detection');
SELECT coalesce(n::text, '') AS ak_n, secs AS ak_secs
  FROM pg_temp.until_fired(format('SELECT authx.apikey_verify(pg_temp.fake_key({i}), NULL, 1, %L)', :'ip_ak'), 100) \gset
SELECT ok(pg_temp.fired_at(nullif(:'ak_n', '')::int, :'ak_secs', 50, 50, '5 minutes'),
          format('apikey_bruteforce fired at the 50th unknown or malformed key from an address (%s in %s s)',
                 :'ak_n', round(:'ak_secs'::numeric, 2)));
SELECT ok(pg_temp.wait_blocked(:'ip_ak'), 'the address is blocked');
SELECT is((SELECT reason FROM authx.ip_blocks WHERE net = :'ip_ak' AND NOT allow), 'threat rule apikey_bruteforce',
          'by apikey_bruteforce');

-- apikey_verify from a blocked address.
SELECT is((authx.apikey_verify(:'key_a', NULL, 1, :'ip_ak'))::text, '(blocked,,,,,,)',
          'apikey_verify of a valid key from a blocked address: blocked, every other field NULL');
SELECT is((authx.apikey_verify(:'key_a', NULL, 1, pg_temp.mapped(:'ip_ak'))).code, 'blocked', 'from its mapped form: blocked');
SELECT is((authx.apikey_verify('nonsense', NULL, 1, :'ip_ak')).code, 'blocked', 'a malformed key from it: blocked');
SELECT is((SELECT array_agg((authx.apikey_verify(:'key_b', NULL, 1, :'ip_ak')).code) FROM generate_series(1, 5)),
          array_fill('blocked'::text, ARRAY[5]), 'a key with 3 uses, five times from it: blocked');
SELECT is((SELECT (code, remaining)::text FROM authx.apikey_verify(:'key_b')), '(valid,2)',
          'the blocked answers spent none of its uses (the key was not looked at)');
SELECT is((authx.apikey_verify(:'key_a', NULL, 1, :'ip_key_ok')).code, 'valid', 'from another address: valid');
SET ROLE authx_app;
SELECT is((authx.apikey_verify(:'key_a', NULL, 1, :'ip_ak')).code, 'blocked', 'as authx_app: blocked');
RESET ROLE;

-- ================================================================ a full queue
SELECT authx.threat_rule_set('tap15_flood', 'tap15.flood', 1, '1 hour') AS x \gset
SELECT pg_temp.stat('threat_blocks') AS fb0 \gset
-- Hold the worker back: its insert into ip_blocks waits for this lock.
SELECT dblink_exec('tap15_lock', 'BEGIN') AS b,
       dblink_exec('tap15_lock', 'LOCK TABLE authx.ip_blocks IN EXCLUSIVE MODE') AS l \gset
SELECT pg_temp.det() AS fd0, pg_temp.stat('threat_dropped') AS fdr0 \gset
SELECT count(*) AS x FROM generate_series(0, 299) i,
       LATERAL authx.audit('tap15.flood', 'low', NULL, pg_temp.a4(100 + i / 200, i % 200 + 1)) \gset
SELECT pg_temp.det() - :fd0 AS fdet, pg_temp.stat('threat_dropped') - :fdr0 AS fdrop \gset
SELECT dblink_exec('tap15_lock', 'COMMIT') AS c \gset
SELECT is(:fdet::int + :fdrop::int, 300, '300 detections with the worker held back: each queued or dropped');
SELECT ok(:fdet::int <= 256 AND :fdrop::int >= 44, format('at most 256 queued (%s), the rest dropped (%s)', :fdet, :fdrop));
SELECT ok(pg_temp.wait_for(format($$(SELECT count(*) FROM authx.ip_blocks WHERE reason = 'threat rule tap15_flood' AND net <<= %L) >= %s$$, :'my4', :fdet), 60),
          'once released, the worker blocks the queued addresses');
SELECT ok(pg_temp.wait_for(format('pg_temp.stat(%L) >= %s', 'threat_blocks', :fb0 + :fdet)), 'threat_blocks counts them');
SELECT is((SELECT count(*)::int FROM authx.ip_blocks WHERE reason = 'threat rule tap15_flood' AND net <<= :'my4'), :fdet::int,
          'exactly the queued ones are blocked');

-- ================================================================ security_summary
SELECT authx.audit_flush('30 s') AS f \gset
SELECT authx.threat_rule_set('tap15_sum', 'tap15.sumfire', 1, '1 hour') AS x \gset
SELECT clock_timestamp() AS t_sum \gset
SELECT pg_temp.ev('tap15.sum', :'ip_x', 30) + pg_temp.ev('login.failed', :'ip_x', 2)
     + pg_temp.ev('tap15.sum.info', :'ip_y', 40, '{}', NULL, 'info') + pg_temp.ev('login.lockout', NULL, 1, '{}', NULL, 'high')
     + pg_temp.ev('tap15.sumfire', :'ip_z') AS x \gset
SELECT ok(pg_temp.wait_blocked(:'ip_z') AND pg_temp.wait_audit(format($$a.event_type = 'threat.auto_block' AND a.ip = %L$$, :'ip_z')),
          'summary: an address auto-blocked meanwhile');
SELECT authx.audit_flush('30 s') AS f \gset
-- One snapshot for the summary and the counts it is compared with.
BEGIN ISOLATION LEVEL REPEATABLE READ;
CREATE TEMP TABLE tap15_sum AS
SELECT authx.security_summary(now() - :'t_sum'::timestamptz) AS s, now() AS at,
       (SELECT count(*) FROM authx.audit_log WHERE at >= :'t_sum') AS events,
       (SELECT jsonb_object_agg(severity, n) FROM (SELECT severity::text, count(*) AS n FROM authx.audit_log
                                                    WHERE at >= :'t_sum' GROUP BY 1) x) AS by_severity,
       (SELECT count(*) FROM authx.audit_log WHERE at >= :'t_sum' AND event_type = 'threat.auto_block') AS auto_blocks,
       (SELECT count(*) FROM authx.audit_log WHERE at >= :'t_sum' AND event_type = 'login.lockout') AS lockouts,
       (SELECT count(DISTINCT user_id) FROM authx.lockouts WHERE locked_until > now()) AS locked_accounts,
       (SELECT count(*) FROM authx.ip_blocks WHERE NOT allow AND (until IS NULL OR until > now())) AS active_blocks;
COMMIT;
SELECT is((SELECT array_agg(k ORDER BY k) FROM tap15_sum, jsonb_object_keys(s) k),
          ARRAY['active_blocks', 'auto_blocks', 'blocks', 'by_severity', 'by_type', 'events', 'locked_accounts', 'lockouts',
                'since', 'top_ips', 'until'],
          'security_summary: its keys');
SELECT is((SELECT ARRAY[(s->>'since')::timestamptz, (s->>'until')::timestamptz] FROM tap15_sum),
          (SELECT ARRAY[:'t_sum'::timestamptz, at] FROM tap15_sum), 'since = now() - the interval, until = now()');
SELECT is((SELECT (s->>'events')::bigint FROM tap15_sum), (SELECT events FROM tap15_sum), 'events: as in audit_log');
SELECT cmp_ok((SELECT (s->>'events')::int FROM tap15_sum), '>=', 75, 'events: at least this section''s 75');
SELECT is((SELECT s->'by_severity' FROM tap15_sum), (SELECT by_severity FROM tap15_sum), 'by_severity: as in audit_log');
SELECT ok((SELECT s->'by_type' @> '[{"event_type": "tap15.sum", "severity": "low", "count": 30},
                                   {"event_type": "tap15.sum.info", "severity": "info", "count": 40},
                                   {"event_type": "login.lockout", "severity": "high", "count": 1}]' FROM tap15_sum),
          'by_type: this section''s event types with their counts');
SELECT is((SELECT s->'by_type'->0 FROM tap15_sum), '{"event_type": "tap15.sum.info", "severity": "info", "count": 40}'::jsonb,
          'by_type: the most frequent first');
SELECT is((SELECT ((e->>'ip')::inet, e - 'ip')::text FROM tap15_sum, LATERAL (SELECT s->'top_ips'->0 AS e) x),
          (:'ip_x'::inet, '{"events": 32, "failed_logins": 2, "blocked": false}'::jsonb)::text,
          'top_ips: the address with the most events first, with its failed logins, not blocked');
SELECT is((SELECT count(*)::int FROM tap15_sum, jsonb_array_elements(s->'top_ips') e WHERE (e->>'ip')::inet = :'ip_y'), 0,
          'top_ips: an address with only info events is not among them');
SELECT is((SELECT (e->>'blocked')::boolean FROM tap15_sum, jsonb_array_elements(s->'top_ips') e WHERE (e->>'ip')::inet = :'ip_z'),
          true, 'top_ips: the auto-blocked address, blocked');
SELECT is((SELECT (s->>'auto_blocks')::bigint FROM tap15_sum), (SELECT auto_blocks FROM tap15_sum), 'auto_blocks: as in audit_log');
SELECT cmp_ok((SELECT (s->>'auto_blocks')::int FROM tap15_sum), '>=', 1, 'auto_blocks: at least this section''s');
SELECT is((SELECT (s->>'lockouts')::bigint FROM tap15_sum), (SELECT lockouts FROM tap15_sum), 'lockouts: as in audit_log');
SELECT is((SELECT (s->>'lockouts')::int FROM tap15_sum), 1, 'lockouts: this section''s one');
SELECT is((SELECT (s->>'locked_accounts')::bigint FROM tap15_sum), (SELECT locked_accounts FROM tap15_sum),
          'locked_accounts: as in authx.lockouts');
SELECT is((SELECT (s->>'active_blocks')::bigint FROM tap15_sum), (SELECT active_blocks FROM tap15_sum),
          'active_blocks: as in authx.ip_blocks');
SELECT is((SELECT jsonb_array_length(s->'blocks')::bigint FROM tap15_sum), (SELECT least(active_blocks, 100) FROM tap15_sum),
          'blocks: the active blocks, at most 100');
SELECT ok((SELECT s->'blocks' @> jsonb_build_array(jsonb_build_object('net', :'ip_z' || '/32', 'source', 'auto',
                                                                       'reason', 'threat rule tap15_sum')) FROM tap15_sum),
          'blocks: the newest, this section''s auto-block, is listed');
SELECT throws_ok($$SELECT authx.security_summary('0')$$, '22023', 'since must be positive', 'security_summary(0): 22023');
SELECT throws_ok($$SELECT authx.security_summary('-1 hour')$$, '22023', NULL, 'a negative since: 22023');
SELECT throws_ok($$SELECT authx.security_summary(NULL)$$, '22004', NULL, 'NULL since: 22004');

-- ================================================================ login rate limit
UPDATE authx.rate_limit_policies p SET max = o.max, per = o.per, store = o.store, fail_mode = o.fail_mode,
       description = o.description, seeded = o.seeded
  FROM tap15_login_policy o WHERE p.name = 'login';
SELECT results_eq($$SELECT max, per FROM authx.rate_limit_policies WHERE name = 'login'$$,
                  $$VALUES (5, interval '1 minute')$$, 'the login policy is back: 5 per minute');
-- Per address.
SELECT is((SELECT array_agg((SELECT status FROM authx.login(pg_temp.email('rl-' || i), 'wrong password', :'ip_rl')) ORDER BY i)
             FROM generate_series(1, 5) i),
          array_fill('invalid_credentials'::text, ARRAY[5]), 'five logins from one address (five emails): invalid_credentials');
SELECT clock_timestamp() AS t_rl0 \gset
SELECT status AS rl_status, (user_id IS NULL AND session_token IS NULL) AS rl_none, coalesce(expires_at::text, '') AS rl_exp
  FROM authx.login(pg_temp.email('rl-6'), 'wrong password', :'ip_rl') \gset
SELECT clock_timestamp() AS t_rl1 \gset
SELECT is(:'rl_status'::text, 'rate_limited', 'the sixth: rate_limited');
SELECT ok(:'rl_none'::boolean, 'rate_limited: no user id, no token');
SELECT ok(nullif(:'rl_exp', '')::timestamptz > :'t_rl0'::timestamptz
          AND nullif(:'rl_exp', '')::timestamptz <= :'t_rl1'::timestamptz + interval '12 seconds',
          'expires_at: when to retry, at most 12 s ahead (5 per minute)');
SELECT is((SELECT status FROM authx.login(pg_temp.email('rl-7'), 'wrong password', pg_temp.mapped(:'ip_rl'))), 'rate_limited',
          'its IPv4-mapped form shares the bucket');
SELECT is((SELECT (status, user_id, session_token)::text FROM authx.login(pg_temp.email('user'), 'tap15 password one', :'ip_rl')),
          '(rate_limited,,)', 'the right password of a real user from it: rate_limited, no session');
SELECT is((SELECT count(*)::int FROM authx.sessions WHERE user_id = :'uid'), 0, 'no session was opened');
SELECT authx.audit_flush('30 s') AS f \gset
SELECT is((SELECT array_agg(DISTINCT severity::text) || count(*)::text
             FROM authx.audit_log WHERE event_type = 'login.rate_limited' AND ip IN (:'ip_rl', pg_temp.mapped(:'ip_rl'))
              AND (details->>'retry_after_s')::numeric > 0 AND (details->>'retry_after_s')::numeric <= 12),
          ARRAY['low', '3'], 'login.rate_limited audited (low, retry_after_s) for each of the three');
SELECT is((SELECT count(*)::int FROM authx.audit_log WHERE event_type = 'login.failed' AND ip IN (:'ip_rl', pg_temp.mapped(:'ip_rl'))),
          5, 'and no login.failed for them: nothing was looked up');
-- Without the policy, nothing is limited.
BEGIN;
DELETE FROM authx.rate_limit_policies WHERE name = 'login';
SELECT status AS nopol FROM authx.login(pg_temp.email('rl-8'), 'wrong password', :'ip_rl') \gset
ROLLBACK;
SELECT is(:'nopol'::text, 'invalid_credentials', 'with the login policy deleted: the exhausted address is not limited');
SELECT is((SELECT status FROM authx.login(pg_temp.email('rl-9'), 'wrong password', :'ip_rl')), 'rate_limited',
          'with the policy back: rate_limited again');

-- Per email.
SELECT is((SELECT array_agg((SELECT status FROM authx.login(pg_temp.email('rl-mail'), 'wrong password', pg_temp.a4(41, i))) ORDER BY i)
             FROM generate_series(1, 5) i),
          array_fill('invalid_credentials'::text, ARRAY[5]), 'one email from five addresses: invalid_credentials');
SELECT is((SELECT status FROM authx.login(upper(' ' || pg_temp.email('rl-mail') || E'\t'), 'wrong password', :'ip_rl_fresh')),
          'rate_limited', 'the sixth, in capitals and with blanks, from a fresh address: rate_limited');
SELECT is((SELECT status FROM authx.login(pg_temp.email('rl-other'), 'wrong password', :'ip_rl_fresh')), 'invalid_credentials',
          'another email from that address: not limited');
SELECT is((SELECT array_agg((SELECT status FROM authx.login(pg_temp.email('rl-noip'), 'wrong password ' || i)) ORDER BY i)
             FROM generate_series(1, 6) i),
          array_append(array_fill('invalid_credentials'::text, ARRAY[5]), 'rate_limited'),
          'without an address: the email bucket alone, the sixth rate_limited');
-- IPv6: the /64 is one bucket.
SELECT is((SELECT array_agg((SELECT status FROM authx.login(pg_temp.email('rl6-' || i), 'wrong password', pg_temp.a6(40, i::text)))
                            ORDER BY i) FROM generate_series(1, 5) i),
          array_fill('invalid_credentials'::text, ARRAY[5]), 'five logins from five hosts of one IPv6 /64');
SELECT is((SELECT status FROM authx.login(pg_temp.email('rl6-6'), 'wrong password', :'v6_rl_last')), 'rate_limited',
          'a sixth host of that /64: rate_limited');
SELECT is((SELECT status FROM authx.login(pg_temp.email('rl6-7'), 'wrong password', :'v6_rl_other')), 'invalid_credentials',
          'a host of the next /64: not limited');
-- A bypass override.
SELECT authx.rate_override_set('login', 'ip:' || authx._ip_key(:'ip_bypass')::text, bypass => true, reason => 'tap15') AS x \gset
SELECT is((SELECT array_agg(DISTINCT (SELECT status FROM authx.login(pg_temp.email('bp-' || i), 'wrong password', :'ip_bypass')))
             FROM generate_series(1, 8) i),
          ARRAY['invalid_credentials'], 'an address with a bypass override: eight logins, none limited');
-- ================================================================ clean up
SELECT dblink_disconnect('tap15_att') AS d1, dblink_disconnect('tap15_lock') AS d2 \gset
SELECT authx.rate_override_remove('login', 'ip:' || authx._ip_key(:'ip_bypass')::text) AS x \gset
SELECT count(authx.threat_rule_drop(name)) AS x FROM authx.threat_rules WHERE name LIKE 'tap15\_%' \gset
DELETE FROM authx.ip_blocks WHERE net <<= :'my4' OR net <<= :'my6';
DELETE FROM authx.users WHERE id = :'uid';
SELECT is((SELECT count(*)::int FROM authx.threat_rules WHERE name LIKE 'tap15\_%'), 0, 'clean up: no tap15 rule left');
SELECT set_eq($$SELECT (r.*)::text FROM authx.threat_rules r$$, $$SELECT (r.*)::text FROM tap15_rules_before r$$,
              'the rules are as they were before this file');
SELECT set_eq($$SELECT (p.*)::text FROM authx.rate_limit_policies p WHERE name = 'login'$$,
              $$SELECT (p.*)::text FROM tap15_login_policy p$$, 'the login policy is as it was before this file');
RESET search_path;
SET client_min_messages = warning;
DROP SCHEMA tap15 CASCADE;
RESET client_min_messages;

SELECT * FROM finish();

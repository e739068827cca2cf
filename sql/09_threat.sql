--
-- Threat detection: the seeded rules, threat_rule_set and threat_rule_drop
-- (create, change, a seed rule edited and unseeded, a restored edit merged
-- over the seed), _ip_key (the network an address counts by), rules firing
-- (events from two addresses of one IPv6 /64 blocking the /64 for
-- block_for from the firing on; unknown API keys given with an ip counting
-- for apikey.not_found; distinct_by counting only new values, with a block
-- until unblocked; an allowlisted network reported, not blocked; a disabled
-- rule counting nothing), the blocks and their threat.auto_block events,
-- login and apikey_verify answering "blocked", security_summary,
-- rate-limit policies in Redis, audit events, privileges, then every
-- invalid input (one line each, through regress.try).
--
-- Buckets live in shared memory and outlive a run, so the addresses that
-- fire are in IPv6 /64s unique to the run (:'pre' || 'N::/64' for N in
-- 0..f, :'pre' being 2001:db8:XXXX:XXX with random digits); their networks
-- are never printed, only compared.  Rules made here are named reg_* and
-- dropped at the end; the blocks made here are removed.  A rule fires in
-- the backend that audits (threat_detections counts it at once); the
-- maintenance worker blocks, so each block is waited for
-- (regress.wait_for, at most 10 s).  Timestamps are never printed, only
-- whether they are within bounds.
--
\set SHOW_CONTEXT never
SELECT coalesce(max(id), 0) AS audit0 FROM authx.audit_log \gset
SELECT 'reg-' || gen_random_uuid() AS run \gset
SELECT format('2001:db8:%s:%s', substr(h, 1, 4), substr(h, 5, 3)) AS pre
  FROM (SELECT md5(:'run') AS h) x \gset
-- Polls a boolean query until it answers true, 10 s at most.
CREATE FUNCTION regress.wait_for(p_query text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    FOR i IN 1 .. 100 LOOP
        EXECUTE p_query INTO ok;
        IF ok THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;

-- ================================================================ seeded rules
SELECT name, event_type, distinct_by, threshold, within, block_for, enabled, seeded
  FROM authx.threat_rules ORDER BY name;
SELECT count(*) AS dumped_rules FROM authx.threat_rules WHERE NOT seeded;

-- ================================================================ _ip_key
-- IPv4 addresses count as themselves (the mapped form too, the netmask
-- ignored), IPv6 addresses as their /64.
SELECT ip, authx._ip_key(ip) AS key
  FROM unnest('{192.0.2.7, 192.0.2.7/24, ::ffff:192.0.2.7, 2001:db8:1:2:3:4:5:6, 2001:db8:1:2::/48, ::1}'::inet[]) ip;
SELECT authx._ip_key(NULL) AS null_ip;

-- ================================================================ threat_rule_set
-- Defaults: block for an hour, count every event, enabled.
SELECT authx.threat_rule_set('reg_rule', 'reg.probe', 5, '10 minutes');
SELECT name, event_type, distinct_by, threshold, within, block_for, enabled, description, seeded
  FROM authx.threat_rules WHERE name = 'reg_rule';
-- Every field changes.
SELECT authx.threat_rule_set('reg_rule', 'reg.probe:other', 3, '1 day', '2 days', 'user_id', false, 'a test rule');
SELECT name, event_type, distinct_by, threshold, within, block_for, enabled, description, seeded
  FROM authx.threat_rules WHERE name = 'reg_rule';
-- The largest threshold and window; block_for NULL (blocks until
-- ip_unblock); a NULL description keeps the one there.
SELECT authx.threat_rule_set('reg_rule', 'reg.probe', 1000000, '366 days', NULL, 'account');
SELECT name, event_type, distinct_by, threshold, within, block_for, enabled, description, seeded
  FROM authx.threat_rules WHERE name = 'reg_rule';
-- The smallest windows.
SELECT authx.threat_rule_set('reg_rule', 'reg.probe', 1, '1 second', '1 second');
SELECT threshold, within, block_for FROM authx.threat_rules WHERE name = 'reg_rule';
-- Dropped: true once.
SELECT authx.threat_rule_drop('reg_rule') AS dropped, authx.threat_rule_drop('reg_rule') AS again,
       authx.threat_rule_drop('reg_never') AS never;

-- A seed rule edited through threat_rule_set is the user's (dumped); an
-- INSERT of a seed rule's name (a restore of such an edit, after CREATE
-- EXTENSION made the seed) is written over the seed.  Rolled back.
BEGIN;
SELECT authx.threat_rule_set('refresh_reuse', 'token.refresh_reused', 2, '1 hour', enabled => false);
SELECT name, threshold, enabled, description, seeded FROM authx.threat_rules WHERE name = 'refresh_reuse';
INSERT INTO authx.threat_rules (name, event_type, threshold, within, block_for)
VALUES ('login_bruteforce', 'login.failed', 30, '10 minutes', '2 hours');
SELECT name, threshold, within, block_for, description, seeded FROM authx.threat_rules WHERE name = 'login_bruteforce';
SELECT count(*) AS rules, count(*) FILTER (WHERE NOT seeded) AS dumped FROM authx.threat_rules;
ROLLBACK;
SELECT name, threshold, enabled, seeded FROM authx.threat_rules WHERE name IN ('refresh_reuse', 'login_bruteforce')
 ORDER BY name;

-- ================================================================ firing
SELECT value AS detections0 FROM authx.stats WHERE name = 'threat_detections' \gset
-- Two events of a made-up type within the hour, from two addresses of the
-- same /64: the second fires, and the /64 is blocked for block_for from
-- then (:'fired' is a time before the events).
SELECT authx.threat_rule_set('reg_burst', 'reg.threat_probe', 2, '1 hour', '1 hour', description => 'regress');
SELECT authx.ip_blocked((:'pre' || '1::1')::inet) AS blocked_before;
SELECT clock_timestamp() AS fired \gset
SELECT authx.audit('reg.threat_probe', 'low', NULL, (:'pre' || '1::1')::inet, '{}');
SELECT authx.audit('reg.threat_probe', 'low', NULL, (:'pre' || '1::2')::inet, '{}');
SELECT (SELECT value FROM authx.stats WHERE name = 'threat_detections') - :detections0 AS detections;
SELECT regress.wait_for(format('SELECT authx.ip_blocked(%L::inet)', :'pre' || '1::1')) AS blocked;
-- The whole /64, and nothing around it.
SELECT authx.ip_blocked((:'pre' || '1:ffff:ffff:ffff:ffff')::inet) AS same_64,
       authx.ip_blocked((:'pre' || '0:ffff:ffff:ffff:ffff')::inet) AS previous_64,
       authx.ip_blocked((:'pre' || '2::')::inet) AS next_64;
SELECT net = (:'pre' || '1::/64')::cidr AS net_is_the_64, allow, reason, source, until IS NOT NULL AS has_until,
       until BETWEEN :'fired'::timestamptz + interval '1 hour' AND clock_timestamp() + interval '1 hour'
           AS until_1_hour_after_firing,
       created_at BETWEEN :'fired' AND clock_timestamp() AS created_after_firing
  FROM authx.ip_blocks WHERE net <<= (:'pre' || '1::/64')::cidr;
SELECT authx.audit_flush('10 seconds');
SELECT a.event_type, a.severity, a.user_id, a.ip = (:'pre' || '1::2')::inet AS ip_is_the_source,
       a.details - 'net' - 'until' AS details, (a.details->>'net')::cidr = (:'pre' || '1::/64')::cidr AS details_net,
       (a.details->>'until')::timestamptz = b.until AS details_until
  FROM authx.audit_log a
  LEFT JOIN authx.ip_blocks b ON b.net = (:'pre' || '1::/64')::cidr AND NOT b.allow
 WHERE a.id > :audit0 AND a.event_type = 'threat.auto_block' AND a.details->>'rule' = 'reg_burst';
-- Once the address is blocked, more events do not fire again.
SELECT authx.audit('reg.threat_probe', 'low', NULL, (:'pre' || '1::3')::inet, '{}');
SELECT (SELECT value FROM authx.stats WHERE name = 'threat_detections') - :detections0 AS detections;
-- A blocked address: login answers "blocked" without a password check.
SELECT status, user_id, session_token FROM authx.login('nobody@example.com', 'x', (:'pre' || '1::1')::inet);

-- apikey_verify with an ip: keys not found count for rules on
-- apikey.not_found (malformed keys too), and a blocked address is
-- answered "blocked" without the key being looked at; without an ip the
-- key is looked at.
SELECT authx.threat_rule_set('reg_keys', 'apikey.not_found', 2, '1 hour', '10 minutes');
SELECT clock_timestamp() AS fired \gset
SELECT code FROM authx.apikey_verify('axk_not_a_real_key', NULL, 1, (:'pre' || '6::1')::inet);
SELECT code FROM authx.apikey_verify('axk_' || repeat('0', 12) || '_' || repeat('A', 43), NULL, 1,
                                     (:'pre' || '6::2')::inet);
SELECT regress.wait_for(format('SELECT authx.ip_blocked(%L::inet)', :'pre' || '6::1')) AS blocked;
SELECT reason, until BETWEEN :'fired'::timestamptz + interval '10 minutes' AND clock_timestamp() + interval '10 minutes'
           AS until_10_min_after_firing
  FROM authx.ip_blocks WHERE net = (:'pre' || '6::/64')::cidr;
SELECT code, key_id, user_id, scopes, remaining, rate_limit_remaining, retry_after
  FROM authx.apikey_verify('axk_not_a_real_key', NULL, 1, (:'pre' || '6::1')::inet);
SELECT code FROM authx.apikey_verify('axk_not_a_real_key', 'docs:read', 0, (:'pre' || '6::3')::inet);
SELECT code FROM authx.apikey_verify('axk_not_a_real_key', NULL, 1, NULL);
SELECT code FROM authx.apikey_verify('axk_not_a_real_key');
SELECT (SELECT value FROM authx.stats WHERE name = 'threat_detections') - :detections0 AS detections;

-- distinct_by: only a value new for the address within the window counts
-- (here a key of the details), events without it (or with a non-scalar
-- value) never; block_for NULL blocks until unblocked.  The repeats go
-- first: had one fired, its block would be there by the time the later
-- reg_burst one is.
SELECT authx.threat_rule_set('reg_accounts', 'reg.threat_login', 2, '1 hour', NULL, 'account');
SELECT authx.audit('reg.threat_login', 'low', NULL, (:'pre' || '2::1')::inet, '{"account": "a"}');
SELECT authx.audit('reg.threat_login', 'low', NULL, (:'pre' || '2::1')::inet, '{"account": "a"}');
SELECT authx.audit('reg.threat_login', 'low', NULL, (:'pre' || '2::2')::inet, '{"account": "a"}');
SELECT authx.audit('reg.threat_login', 'low', NULL, (:'pre' || '2::1')::inet, '{"other": "b"}');
SELECT authx.audit('reg.threat_login', 'low', NULL, (:'pre' || '2::1')::inet, '{"account": ["b"]}');
SELECT authx.audit('reg.threat_login', 'low', NULL, (:'pre' || '2::1')::inet, '{"account": null}');
SELECT authx.audit('reg.threat_probe', 'low', NULL, (:'pre' || '3::1')::inet, '{}');
SELECT authx.audit('reg.threat_probe', 'low', NULL, (:'pre' || '3::1')::inet, '{}');
SELECT regress.wait_for(format('SELECT authx.ip_blocked(%L::inet)', :'pre' || '3::1')) AS burst_blocked;
SELECT authx.ip_blocked((:'pre' || '2::1')::inet) AS repeats_blocked;
SELECT (SELECT value FROM authx.stats WHERE name = 'threat_detections') - :detections0 AS detections;
-- A second account: fires.
SELECT authx.audit('reg.threat_login', 'low', NULL, (:'pre' || '2::3')::inet, '{"account": "b"}');
SELECT regress.wait_for(format('SELECT authx.ip_blocked(%L::inet)', :'pre' || '2::1')) AS accounts_blocked;
SELECT net = (:'pre' || '2::/64')::cidr AS net_is_the_64, allow, reason, source, until IS NULL AS until_unblocked
  FROM authx.ip_blocks WHERE net <<= (:'pre' || '2::/64')::cidr;
SELECT (SELECT value FROM authx.stats WHERE name = 'threat_detections') - :detections0 AS detections;

-- An allowlisted network: the rule fires, the worker reports it
-- (threat.detected, medium) and blocks nothing.
SELECT authx.ip_allow((:'pre' || '4::/64')::cidr, 'regress');
SELECT authx.audit('reg.threat_probe', 'low', NULL, (:'pre' || '4::1')::inet, '{}');
SELECT authx.audit('reg.threat_probe', 'low', NULL, (:'pre' || '4::1')::inet, '{}');
SELECT regress.wait_for(format(
    $$SELECT EXISTS (SELECT 1 FROM authx.audit_log WHERE id > %s AND event_type = 'threat.detected' AND ip = %L::inet)$$,
    :audit0, :'pre' || '4::1')) AS reported;
SELECT event_type, severity, details - 'net' AS details, (details->>'net')::cidr = (:'pre' || '4::/64')::cidr AS details_net
  FROM authx.audit_log
 WHERE id > :audit0 AND event_type = 'threat.detected' AND ip = (:'pre' || '4::1')::inet;
SELECT count(*) AS blocks FROM authx.ip_blocks WHERE net <<= (:'pre' || '4::/64')::cidr AND NOT allow;
SELECT authx.ip_blocked((:'pre' || '4::1')::inet) AS blocked;

-- A disabled rule counts nothing.
SELECT authx.threat_rule_set('reg_burst', 'reg.threat_probe', 2, '1 hour', enabled => false);
SELECT authx.audit('reg.threat_probe', 'low', NULL, (:'pre' || '5::1')::inet, '{}');
SELECT authx.audit('reg.threat_probe', 'low', NULL, (:'pre' || '5::1')::inet, '{}');
SELECT (SELECT value FROM authx.stats WHERE name = 'threat_detections') - :detections0 AS detections;

-- ================================================================ security_summary
SELECT authx.audit_flush('10 seconds');
SELECT key, jsonb_typeof(value) AS type FROM jsonb_each(authx.security_summary()) ORDER BY key;
SELECT (s->>'until')::timestamptz - (s->>'since')::timestamptz AS span,
       (s->>'auto_blocks')::int >= 4 AS auto_blocks, (s->>'active_blocks')::int >= 4 AS active_blocks,
       (s->>'events')::int >= 10 AS events
  FROM authx.security_summary('1 hour') s;
SELECT b->>'reason' AS reason, b->>'source' AS source, jsonb_typeof(b->'until') AS until
  FROM authx.security_summary('1 hour') s, jsonb_array_elements(s->'blocks') b
 WHERE (b->>'net')::cidr <<= (:'pre' || '0::/60')::cidr ORDER BY b->>'reason';
SELECT t->>'severity' AS severity, (t->>'count')::int >= 9 AS count
  FROM authx.security_summary('1 hour') s, jsonb_array_elements(s->'by_type') t
 WHERE t->>'event_type' = 'reg.threat_probe';

-- ================================================================ rate limits in Redis
SELECT authx.rate_policy_set('reg_threat_redis', 2, '1 hour', store => 'redis');
SELECT name, max, per, store, fail_mode, seeded FROM authx.rate_limit_policies WHERE name = 'reg_threat_redis';
SELECT allowed, remaining FROM authx.rate_check('reg_threat_redis', :'run');
SELECT allowed, remaining FROM authx.rate_check('reg_threat_redis', :'run');
SELECT allowed, remaining, retry_after > interval '0' AS must_wait FROM authx.rate_check('reg_threat_redis', :'run');
-- Like fail_mode, an omitted store is the default: local again.
SELECT authx.rate_policy_set('reg_threat_redis', 2, '1 hour', 'closed');
SELECT name, store, fail_mode FROM authx.rate_limit_policies WHERE name = 'reg_threat_redis';
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.rate_policy_set('reg_threat_redis', 2, '1 hour', store => 'memcached')$$),
    ($$authx.rate_policy_set('reg_threat_redis', 2, '1 hour', store => 'Redis')$$),
    ($$authx.rate_policy_set('reg_threat_redis', 2, '1 hour', store => NULL)$$)
) v(call);
SELECT store FROM authx.rate_limit_policies WHERE name = 'reg_threat_redis';

-- ================================================================ privileges
SET ROLE authx_app;
SELECT authx.threat_rule_set('reg_app', 'reg.probe', 1, '1 hour');
SELECT authx.threat_rule_drop('reg_burst');
SELECT authx.security_summary();
SELECT count(*) FROM authx.threat_rules;
SELECT authx._threat_block((:'pre' || '7::/64')::inet, 'reg_burst', (:'pre' || '7::1')::inet);
SELECT authx._alert(now(), 'forged', 'critical', NULL, NULL, NULL, '{}');
RESET ROLE;
SET ROLE authx_admin;
SELECT authx.threat_rule_set('reg_admin', 'reg.probe', 1, '1 hour', description => 'by admin');
SELECT name, description FROM authx.threat_rules WHERE name = 'reg_admin';
SELECT jsonb_typeof(authx.security_summary('1 minute')) AS summary;
SELECT authx.threat_rule_drop('reg_admin') AS dropped;
UPDATE authx.threat_rules SET enabled = false;
SELECT authx._threat_block((:'pre' || '7::/64')::inet, 'reg_burst', (:'pre' || '7::1')::inet);
RESET ROLE;

-- ================================================================ invalid input
SELECT count(*) AS rules_before FROM authx.threat_rules \gset
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.threat_rule_set(NULL, 'reg.probe', 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', NULL, 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', NULL, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, NULL)$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 hour', enabled => NULL)$$),
    ($$authx.threat_rule_set('', 'reg.probe', 1, '1 hour')$$),
    ($$authx.threat_rule_set('Reg_x', 'reg.probe', 1, '1 hour')$$),
    ($$authx.threat_rule_set('1reg', 'reg.probe', 1, '1 hour')$$),
    ($$authx.threat_rule_set('_reg', 'reg.probe', 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg x', 'reg.probe', 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg:x', 'reg.probe', 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg_' || repeat('x', 60), 'reg.probe', 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', '', 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'Login.Failed', 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'login failed', 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'login/failed', 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', repeat('x', 65), 1, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 hour', distinct_by => '')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 hour', distinct_by => 'Account')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 hour', distinct_by => '1st')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 hour', distinct_by => 'user-id')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 hour', distinct_by => 'details.account')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 0, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', -1, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1000001, '1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '0')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '999 milliseconds')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '-1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 day -24 hours')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '366 days 00:00:00.000001')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 hour', '0')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 hour', '999 milliseconds')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 hour', '-1 hour')$$),
    ($$authx.threat_rule_set('reg_x', 'reg.probe', 1, '1 hour', '367 days')$$),
    ($$authx.threat_rule_drop(NULL)$$),
    ($$authx.security_summary(NULL)$$),
    ($$authx.security_summary('0')$$),
    ($$authx.security_summary('-1 hour')$$),
    ($$authx.security_summary('1 day -24 hours')$$),
    ($$authx.apikey_verify('axk_x', NULL, 1, 'not an address')$$)
) v(call);
-- A failed call changed nothing.
SELECT count(*) - :rules_before AS new_rules FROM authx.threat_rules;

-- ================================================================ audit
SELECT event_type, severity, user_id, details FROM authx.audit_log
 WHERE id > :audit0 AND event_type LIKE 'threat.rule%' ORDER BY id;
SELECT event_type, severity, details - 'until' - 'net' AS details, details->>'until' IS NULL AS until_null
  FROM authx.audit_log WHERE id > :audit0 AND event_type = 'threat.auto_block' ORDER BY details->>'rule', id;

-- ================================================================ clean up
SELECT n, authx.ip_unblock((:'pre' || n || '::/64')::cidr) AS unblocked FROM unnest('{1, 2, 3, 6}'::text[]) n;
SELECT authx.ip_disallow((:'pre' || '4::/64')::cidr) AS disallowed;
SELECT count(*) AS left_behind FROM authx.ip_blocks WHERE net <<= (:'pre' || '0::/60')::cidr;
SELECT name, authx.threat_rule_drop(name) AS dropped FROM unnest('{reg_burst, reg_keys, reg_accounts}'::text[]) name;
SELECT name FROM authx.threat_rules WHERE name LIKE 'reg%';
DELETE FROM authx.rate_limit_policies WHERE name = 'reg_threat_redis';
DROP FUNCTION regress.wait_for(text);

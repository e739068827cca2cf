-- 10_apikeys.sql — API keys, exercised as the application role.
--
-- Covers (every authx call below runs as authx_app unless marked; time is
-- moved by UPDATEs of authx.api_keys as the superuser, the only one who can
-- read the table):
--   * privileges: authx_app may call every apikey_* function, a role with
--     no grants may call none (42501); authx_app cannot read api_keys nor
--     call the internal helpers;
--   * apikey_create: axk_<12 hex>_<43 base64url>, only sha256(key) stored,
--     the key in no column; scopes sorted and deduplicated; every error
--     (22023 bad scope / past expiry / rate_limit / rate_window / remaining /
--     half a refill, 22004 NULL user, P0002 missing or deleted user, 55000
--     disabled user);
--   * apikey_verify: valid with the key's id, owner and scopes; not_found
--     (garbage, NULL, wrong secret with a real prefix, 1 MB, a valid shape
--     with an unknown prefix) with every other column NULL; revoked;
--     expired; disabled (user_disable, back after user_enable, not for a
--     'locked' status); insufficient_scope with * wildcards; 22023 for a
--     malformed scope and a negative cost;
--   * rate limits: exact count-down, retry_after, ROLLBACK TO SAVEPOINT does
--     not give the allowance back, the bucket fills again after the window
--     (the one pg_sleep of the file);
--   * remaining uses: exact count-down, cost 0 spends nothing, a cost above
--     what is left spends nothing, ROLLBACK TO SAVEPOINT gives the uses
--     back, a read-only transaction cannot spend (25006); refills after
--     refill_interval, on the key's interval grid, back to refill_amount;
--   * apikey_rotate (grace, grace 0, twice, revoked 55000, bad grace 22023,
--     unknown P0002), apikey_revoke, apikey_update (every field, clear,
--     bad clear 22023, no change = no event), apikey_list (statuses, order,
--     never a key or hash), apikey_usage, audit events (transactional);
--   * last_used_at: written as the table owner (touch_interval 0), not
--     within touch_interval, not in a read-only transaction; a hostile
--     search_path is never used by those writes;
--   * _apikeys_purge; authx.stats counters;
--   * consistency (regressions for defects found while writing this file,
--     see the comments at each): refills and usage hours must not depend on
--     the caller's TimeZone, and usage counted before the key's transaction
--     commits must survive the worker.
-- Everything is rolled back at the end.
BEGIN;
SELECT plan(203);

SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;

SELECT authx.user_create('pgtap-apikey-1@example.com', 'apikey password 1') AS u1,
       authx.user_create('pgtap-apikey-2@example.com', 'apikey password 2') AS u2,
       authx.user_create('pgtap-apikey-3@example.com', 'apikey password 3') AS u3 \gset

CREATE TEMP TABLE stats_before ON COMMIT DROP AS SELECT name, value FROM authx.stats;
CREATE FUNCTION pg_temp.stat_delta(p_name text) RETURNS bigint LANGUAGE sql AS
$$ SELECT s.value - b.value FROM authx.stats s JOIN stats_before b USING (name) WHERE s.name = p_name $$;
-- The key row behind a key (superuser only).
CREATE FUNCTION pg_temp.krow(p_key text) RETURNS authx.api_keys LANGUAGE sql AS
$$ SELECT k FROM authx.api_keys k WHERE k.prefix = substr(p_key, 5, 12) $$;
-- One verification as "code remaining rate_limit_remaining" ("-" for NULL),
-- run as the current role.
CREATE FUNCTION pg_temp.v(p_key text, p_scope text DEFAULT NULL, p_cost integer DEFAULT 1) RETURNS text
LANGUAGE sql AS
$$ SELECT r.code || ' ' || coalesce(r.remaining::text, '-') || ' ' || coalesce(r.rate_limit_remaining::text, '-')
     FROM authx.apikey_verify(p_key, p_scope, p_cost) r $$;
-- The answer code only.
CREATE FUNCTION pg_temp.c(p_key text, p_scope text DEFAULT NULL) RETURNS text LANGUAGE sql AS
$$ SELECT r.code FROM authx.apikey_verify(p_key, p_scope) r $$;

-- ================================================================ privileges
-- (USAGE on the schema, so that the refusal is the function's own.)
CREATE ROLE pgtap_apikey_nobody;
GRANT USAGE ON SCHEMA authx TO pgtap_apikey_nobody;
SET ROLE pgtap_apikey_nobody;
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x')$$, :'u1'), '42501',
                 'permission denied for function apikey_create', 'a role without grants cannot call apikey_create');
SELECT throws_ok($$SELECT * FROM authx.apikey_verify('axk_000000000000_' || repeat('A', 43))$$, '42501',
                 'permission denied for function apikey_verify', 'a role without grants cannot call apikey_verify');
SELECT throws_ok($$SELECT authx.apikey_rotate(gen_random_uuid())$$, '42501',
                 'permission denied for function apikey_rotate', 'a role without grants cannot call apikey_rotate');
SELECT throws_ok($$SELECT authx.apikey_revoke(gen_random_uuid())$$, '42501',
                 'permission denied for function apikey_revoke', 'a role without grants cannot call apikey_revoke');
SELECT throws_ok($$SELECT authx.apikey_update(gen_random_uuid(), name => 'x')$$, '42501',
                 'permission denied for function apikey_update', 'a role without grants cannot call apikey_update');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_list(%L)$$, :'u1'), '42501',
                 'permission denied for function apikey_list', 'a role without grants cannot call apikey_list');
SELECT throws_ok($$SELECT * FROM authx.apikey_usage(gen_random_uuid())$$, '42501',
                 'permission denied for function apikey_usage', 'a role without grants cannot call apikey_usage');
RESET ROLE;
SET ROLE authx_app;
SELECT throws_ok('SELECT count(*) FROM authx.api_keys', '42501', NULL, 'app: cannot SELECT authx.api_keys');
SELECT throws_ok('SELECT count(*) FROM authx.api_key_usage', '42501', NULL, 'app: cannot SELECT authx.api_key_usage');
SELECT throws_ok($$SELECT authx._apikey_consume(gen_random_uuid(), 1, now())$$, '42501', NULL,
                 'app: cannot call authx._apikey_consume');
SELECT throws_ok($$SELECT * FROM authx._apikey_new()$$, '42501', NULL, 'app: cannot call authx._apikey_new');
SELECT throws_ok($$SELECT * FROM authx._apikey_usage_pending(gen_random_uuid())$$, '42501', NULL,
                 'app: cannot call authx._apikey_usage_pending');
RESET ROLE;

-- ================================================================ create
SET ROLE authx_app;
SELECT key_id AS k1_id, api_key AS k1
  FROM authx.apikey_create(:'u1', ' pgtap key ', '{docs:write, docs:read, docs:read, *:*}') \gset
SELECT matches(:'k1'::text, '^axk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$', 'app: the key is axk_ + 12 hex + _ + 43 base64url');
SELECT is(length(:'k1'), 60, 'app: the key has 60 characters');
RESET ROLE;
SELECT is((pg_temp.krow(:'k1')).id, :'k1_id'::uuid, 'the row is found by the public prefix');
SELECT is((pg_temp.krow(:'k1')).key_hash, sha256(convert_to(:'k1', 'UTF8')), 'key_hash = sha256(convert_to(key, UTF8))');
SELECT is((SELECT count(*) FROM authx.api_keys k
            WHERE strpos(k::text, substr(:'k1', 18)) > 0
               OR strpos(k::text, encode(convert_to(:'k1', 'UTF8'), 'hex')) > 0)::int, 0,
          'the key (secret part, as text or hex) is in no column of any row');
SELECT is((pg_temp.krow(:'k1')).scopes, '{*:*,docs:read,docs:write}'::text[], 'scopes are sorted and deduplicated');
SELECT is((pg_temp.krow(:'k1')).name, 'pgtap key', 'the name is trimmed');
SELECT is((pg_temp.krow(:'k1')).user_id, :'u1'::uuid, 'the key belongs to the user');
SELECT ok((pg_temp.krow(:'k1')).last_used_at IS NULL AND (pg_temp.krow(:'k1')).revoked_at IS NULL
          AND (pg_temp.krow(:'k1')).expires_at IS NULL AND (pg_temp.krow(:'k1')).rate_limit IS NULL
          AND (pg_temp.krow(:'k1')).remaining IS NULL,
          'a new key: never used, not revoked, no expiry, no rate limit, unlimited uses');
SELECT is((SELECT details - 'key_id' FROM authx.audit_log
            WHERE event_type = 'apikey.created' AND details->>'key_id' = :'k1_id'),
          jsonb_build_object('prefix', substr(:'k1', 5, 12), 'name', 'pgtap key',
                             'scopes', '["*:*", "docs:read", "docs:write"]'::jsonb, 'expires_at', NULL),
          'apikey.created names the key by id and prefix, with name, scopes and expiry');
SELECT is((SELECT severity::text FROM authx.audit_log WHERE event_type = 'apikey.created' AND details->>'key_id' = :'k1_id'),
          'info', 'apikey.created has severity info');
SET ROLE authx_app;
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', '{Docs:read}')$$, :'u1'), '22023',
                 'invalid scope "Docs:read"', 'app: an upper-case scope is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', '{docs}')$$, :'u1'), '22023',
                 'invalid scope "docs"', 'app: a scope without an action is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', '{docs:read,NULL}')$$, :'u1'), '22023',
                 'invalid scope "NULL"', 'app: a NULL scope is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', expires_at => clock_timestamp() - interval '1 second')$$, :'u1'),
                 '22023', 'expires_at is in the past', 'app: a past expiry is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', rate_limit => 0)$$, :'u1'), '22023',
                 'rate_limit must be positive', 'app: rate_limit 0 is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', rate_limit => -1)$$, :'u1'), '22023',
                 'rate_limit must be positive', 'app: a negative rate_limit is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', rate_window => '0.5 seconds')$$, :'u1'), '22023',
                 'rate_window must be between 1 second and 366 days', 'app: a window under 1 second is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', rate_window => '367 days')$$, :'u1'), '22023',
                 'rate_window must be between 1 second and 366 days', 'app: a window over 366 days is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', remaining => -1)$$, :'u1'), '22023',
                 'remaining must not be negative', 'app: negative remaining is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', refill_amount => 10)$$, :'u1'), '22023',
                 'refill_amount and refill_interval go together', 'app: refill_amount without refill_interval is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x', refill_interval => '1 day')$$, :'u1'), '22023',
                 'refill_amount and refill_interval go together', 'app: refill_interval without refill_amount is 22023');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, '  ')$$, :'u1'), '22023',
                 'invalid key name', 'app: a blank name is 22023');
SELECT throws_ok($$SELECT * FROM authx.apikey_create(NULL, 'x')$$, '22004', 'user_id must not be null',
                 'app: a NULL user is 22004');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x')$$, gen_random_uuid()), 'P0002', NULL,
                 'app: a missing user is P0002');
RESET ROLE;
SELECT authx.user_create('pgtap-apikey-4@example.com', 'apikey password 4') AS u4 \gset
SELECT authx.user_delete(:'u4') AS deleted \gset
SET ROLE authx_app;
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x')$$, :'u4'), 'P0002',
                 format('user "%s" does not exist', :'u4'), 'app: a deleted user is P0002');
RESET ROLE;
SELECT authx.user_disable(:'u3') AS disabled \gset
SET ROLE authx_app;
SELECT throws_ok(format($$SELECT * FROM authx.apikey_create(%L, 'x')$$, :'u3'), '55000',
                 format('user "%s" is disabled', :'u3'), 'app: a disabled user is 55000');
RESET ROLE;
SELECT authx.user_enable(:'u3') AS enabled \gset
SELECT is((SELECT count(*) FROM authx.api_keys WHERE user_id IN (:'u1', :'u3'))::int, 1,
          'the failed creations left no key behind');

-- ================================================================ verify: valid, not_found
SET ROLE authx_app;
SELECT results_eq(format($$SELECT code, key_id, user_id, scopes, remaining, rate_limit_remaining, retry_after
                             FROM authx.apikey_verify(%L)$$, :'k1'),
                  format($$VALUES ('valid'::text, %L::uuid, %L::uuid, '{*:*,docs:read,docs:write}'::text[],
                                   NULL::integer, NULL::integer, NULL::interval)$$, :'k1_id', :'u1'),
                  'app: valid, with the key id, the owner, the scopes and no limits');
SELECT key_id AS k2_id, api_key AS k2 FROM authx.apikey_create(:'u1', 'second', '{docs:read}') \gset
SELECT is(pg_temp.c(NULL), 'not_found', 'app: NULL is not_found');
SELECT is(pg_temp.c('garbage'), 'not_found', 'app: garbage is not_found');
SELECT is(pg_temp.c(substr(:'k1', 1, 17) || substr(:'k2', 18)), 'not_found',
          'app: a real prefix with another key''s secret is not_found');
SELECT is(pg_temp.c('axk_000000000000_' || substr(:'k1', 18)), 'not_found',
          'app: a valid shape with an unknown prefix is not_found');
SELECT is(pg_temp.c(repeat('a', 1000000)), 'not_found', 'app: 1 MB of input is not_found');
SELECT is(pg_temp.c(:'k1' || ' '), 'not_found', 'app: the key with a trailing space is not_found');
SELECT results_eq(format($$SELECT key_id, user_id, scopes, remaining, rate_limit_remaining, retry_after
                             FROM authx.apikey_verify(%L)$$, substr(:'k1', 1, 17) || substr(:'k2', 18)),
                  $$VALUES (NULL::uuid, NULL::uuid, NULL::text[], NULL::integer, NULL::integer, NULL::interval)$$,
                  'app: not_found says nothing else about the key');
SELECT is(pg_temp.c(:'k2'), 'valid', 'app: the other key is valid');
RESET ROLE;

-- ================================================================ verify: scopes
SET ROLE authx_app;
SELECT api_key AS s_read FROM authx.apikey_create(:'u1', 'read', '{docs:read}') \gset
SELECT api_key AS s_docs FROM authx.apikey_create(:'u1', 'docs', '{docs:*}') \gset
SELECT api_key AS s_all FROM authx.apikey_create(:'u1', 'all', '{*:*}') \gset
SELECT api_key AS s_anyread FROM authx.apikey_create(:'u1', 'anyread', '{*:read}') \gset
SELECT api_key AS s_none FROM authx.apikey_create(:'u1', 'none') \gset
SELECT is(pg_temp.c(:'s_read', 'docs:read'), 'valid', 'app: docs:read covers docs:read');
SELECT is(pg_temp.c(:'s_read', 'docs:write'), 'insufficient_scope', 'app: docs:read does not cover docs:write');
SELECT is(pg_temp.c(:'s_read', 'docs:*'), 'insufficient_scope', 'app: docs:read does not cover docs:*');
SELECT is(pg_temp.c(:'s_docs', 'docs:read'), 'valid', 'app: docs:* covers docs:read');
SELECT is(pg_temp.c(:'s_docs', 'docs:*'), 'valid', 'app: docs:* covers docs:*');
SELECT is(pg_temp.c(:'s_docs', 'files:read'), 'insufficient_scope', 'app: docs:* does not cover files:read');
SELECT is(pg_temp.c(:'s_docs', '*:*'), 'insufficient_scope', 'app: docs:* does not cover *:*');
SELECT is(pg_temp.c(:'s_all', 'docs:read'), 'valid', 'app: *:* covers docs:read');
SELECT is(pg_temp.c(:'s_all', 'docs:*'), 'valid', 'app: *:* covers docs:*');
SELECT is(pg_temp.c(:'s_all', '*:*'), 'valid', 'app: *:* covers *:*');
SELECT is(pg_temp.c(:'s_anyread', 'x:read'), 'valid', 'app: *:read covers x:read');
SELECT is(pg_temp.c(:'s_anyread', '*:read'), 'valid', 'app: *:read covers *:read');
SELECT is(pg_temp.c(:'s_anyread', 'x:write'), 'insufficient_scope', 'app: *:read does not cover x:write');
SELECT is(pg_temp.c(:'s_anyread', 'docs:*'), 'insufficient_scope', 'app: *:read does not cover docs:*');
SELECT is(pg_temp.c(:'s_none', 'docs:read'), 'insufficient_scope', 'app: a key without scopes covers nothing');
SELECT is(pg_temp.c(:'s_none'), 'valid', 'app: without a scope asked, a key without scopes is valid');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_verify(%L, 'Docs:Read')$$, :'s_read'), '22023',
                 'invalid scope "Docs:Read"', 'app: a malformed scope is 22023');
SELECT throws_ok($$SELECT * FROM authx.apikey_verify('garbage', 'no-colon')$$, '22023',
                 'invalid scope "no-colon"', 'app: a malformed scope is 22023 even for a bad key');
SELECT throws_ok(format($$SELECT * FROM authx.apikey_verify(%L, cost => -1)$$, :'s_read'), '22023',
                 'cost must not be negative', 'app: a negative cost is 22023');
RESET ROLE;

-- ================================================================ verify: revoked, expired, disabled
SET ROLE authx_app;
SELECT key_id AS e_id, api_key AS e_key FROM authx.apikey_create(:'u1', 'expiring', expires_at => clock_timestamp() + interval '1 hour') \gset
SELECT is(pg_temp.c(:'e_key'), 'valid', 'app: valid before expires_at');
RESET ROLE;
UPDATE authx.api_keys SET expires_at = clock_timestamp() - interval '1 millisecond' WHERE id = :'e_id';
SET ROLE authx_app;
SELECT is(pg_temp.c(:'e_key'), 'expired', 'app: expired once expires_at has passed');
SELECT is((SELECT key_id FROM authx.apikey_verify(:'e_key')), :'e_id'::uuid, 'app: an expired answer names the key');

SELECT key_id AS r_id, api_key AS r_key FROM authx.apikey_create(:'u1', 'revoked') \gset
SELECT is(authx.apikey_revoke(:'r_id'), true, 'app: apikey_revoke returns true');
SELECT is(authx.apikey_revoke(:'r_id'), false, 'app: a second apikey_revoke returns false');
SELECT is(authx.apikey_revoke(gen_random_uuid()), false, 'app: apikey_revoke of an unknown key returns false');
SELECT throws_ok('SELECT authx.apikey_revoke(NULL)', '22004', 'key_id must not be null', 'app: apikey_revoke(NULL) is 22004');
SELECT is(pg_temp.c(:'r_key'), 'revoked', 'app: a revoked key is revoked');
RESET ROLE;
SELECT is((SELECT count(*) FROM authx.audit_log WHERE event_type = 'apikey.revoked' AND details->>'key_id' = :'r_id')::int, 1,
          'apikey.revoked is logged once (not for the second call)');

SET ROLE authx_app;
SELECT key_id AS d_id, api_key AS d_key FROM authx.apikey_create(:'u2', 'owned by u2', '{docs:read}') \gset
RESET ROLE;
SELECT authx.user_disable(:'u2') AS disabled \gset
SET ROLE authx_app;
SELECT is(pg_temp.c(:'d_key'), 'disabled', 'app: the key of a disabled user is disabled');
SELECT is((SELECT status FROM authx.apikey_list(:'u2')), 'disabled', 'app: apikey_list says disabled');
RESET ROLE;
SELECT authx.user_enable(:'u2') AS enabled \gset
SET ROLE authx_app;
SELECT is(pg_temp.c(:'d_key', 'docs:read'), 'valid', 'app: re-enabling the user brings the key back');
RESET ROLE;
UPDATE authx.users SET status = 'locked' WHERE id = :'u2';
SET ROLE authx_app;
SELECT is(pg_temp.c(:'d_key'), 'valid', 'app: a locked user''s key stays valid (a lockout does not disable keys)');
SELECT is((SELECT status FROM authx.apikey_list(:'u2')), 'active', 'app: apikey_list says active for a locked user');
RESET ROLE;
UPDATE authx.users SET status = 'active' WHERE id = :'u2';

-- ================================================================ rate limits
SET ROLE authx_app;
SELECT key_id AS rl_id, api_key AS rl FROM authx.apikey_create(:'u1', 'rl', rate_limit => 3, rate_window => '1 hour') \gset
SELECT is(pg_temp.v(:'rl'), 'valid - 2', 'app: rate limit 3: first, 2 left');
SELECT is(pg_temp.v(:'rl'), 'valid - 1', 'app: second, 1 left');
SAVEPOINT rate_rollback;
SELECT is(pg_temp.v(:'rl'), 'valid - 0', 'app: third (in a savepoint), 0 left');
ROLLBACK TO SAVEPOINT rate_rollback;
SELECT results_eq(format($$SELECT code, rate_limit_remaining, retry_after > interval '0', retry_after <= interval '20 minutes'
                             FROM authx.apikey_verify(%L)$$, :'rl'),
                  $$VALUES ('rate_limited'::text, 0, true, true)$$,
                  'app: ROLLBACK TO SAVEPOINT gave nothing back: the fourth is rate_limited, retry_after in (0, 20 min]');
SELECT is(pg_temp.v(:'rl', p_cost => 0), 'valid - 0', 'app: cost 0 checks without spending, even when spent');
SELECT is(pg_temp.v(:'rl', 'docs:read'), 'insufficient_scope - -', 'app: a wrong scope answers before the limit');
SELECT is((SELECT retry_after FROM authx.apikey_verify(:'rl', cost => 4)), NULL,
          'app: a cost above the limit never passes: no retry_after');
-- The bucket fills again with time.
SELECT api_key AS rl_fast FROM authx.apikey_create(:'u1', 'rl fast', rate_limit => 1, rate_window => '1 second') \gset
SELECT is(pg_temp.v(:'rl_fast'), 'valid - 0', 'app: rate limit 1 per second: first');
SELECT pg_sleep(1.2) AS slept \gset
SELECT is(pg_temp.v(:'rl_fast'), 'valid - 0', 'app: valid again after the window');
RESET ROLE;

-- ================================================================ remaining uses
SET ROLE authx_app;
SELECT key_id AS m_id, api_key AS m FROM authx.apikey_create(:'u1', 'metered', remaining => 2) \gset
SELECT is(pg_temp.v(:'m', p_cost => 0), 'valid 2 -', 'app: cost 0 spends nothing');
SAVEPOINT use_rollback;
SELECT is(pg_temp.v(:'m'), 'valid 1 -', 'app: first use (in a savepoint), 1 left');
ROLLBACK TO SAVEPOINT use_rollback;
SELECT is(pg_temp.v(:'m'), 'valid 1 -', 'app: ROLLBACK TO SAVEPOINT gave the use back: first use again, 1 left');
SELECT is(pg_temp.v(:'m', p_cost => 2), 'usage_exceeded 1 -', 'app: cost 2 with 1 left is usage_exceeded');
RESET ROLE;
SELECT is((pg_temp.krow(:'m')).remaining, 1, 'and spent nothing');
SET ROLE authx_app;
SELECT is(pg_temp.v(:'m'), 'valid 0 -', 'app: second use, 0 left');
SELECT is(pg_temp.v(:'m'), 'usage_exceeded 0 -', 'app: third is usage_exceeded');
SELECT is(pg_temp.v(:'m', p_cost => 0), 'valid 0 -', 'app: cost 0 of a spent key checks without spending');
-- Spending needs a read-write transaction; verifying a key without uses does not.
SELECT api_key AS m2 FROM authx.apikey_create(:'u1', 'metered 2', remaining => 5) \gset
SAVEPOINT read_only;
SET LOCAL transaction_read_only = on;
SELECT throws_ok(format($$SELECT * FROM authx.apikey_verify(%L)$$, :'m2'), '25006',
                 'cannot spend the uses of an API key in a read-only transaction',
                 'app: spending uses in a read-only transaction is 25006');
SELECT is(pg_temp.v(:'m2', p_cost => 0), 'valid 5 -', 'app: cost 0 works in a read-only transaction');
SELECT is(pg_temp.c(:'k2'), 'valid', 'app: a key without uses verifies in a read-only transaction');
ROLLBACK TO SAVEPOINT read_only;
SELECT is(pg_temp.v(:'m2'), 'valid 4 -', 'app: read-write again: spends');
RESET ROLE;
SELECT ok((pg_temp.krow(:'m2')).last_used_at IS NOT NULL, 'spending a use records last_used_at');

-- ================================================================ refill
SET ROLE authx_app;
SELECT key_id AS rf_id, api_key AS rf FROM authx.apikey_create(:'u1', 'refill', refill_amount => 2, refill_interval => '1 hour') \gset
SELECT is(pg_temp.v(:'rf'), 'valid 1 -', 'app: a refilling key starts at refill_amount');
SELECT is(pg_temp.v(:'rf'), 'valid 0 -', 'app: spent');
SELECT is(pg_temp.v(:'rf'), 'usage_exceeded 0 -', 'app: usage_exceeded until the refill');
RESET ROLE;
UPDATE authx.api_keys SET refilled_at = refilled_at - interval '2 hours 15 minutes' WHERE id = :'rf_id'
RETURNING refilled_at AS rf_at \gset
SET ROLE authx_app;
SELECT is((SELECT remaining FROM authx.apikey_list(:'u1') WHERE key_id = :'rf_id'), 2,
          'app: apikey_list shows the refill that is due');
SELECT is(pg_temp.v(:'rf'), 'valid 1 -', 'app: after refill_interval the key has refill_amount again');
RESET ROLE;
SELECT is((pg_temp.krow(:'rf')).refilled_at, :'rf_at'::timestamptz + interval '2 hours',
          'the refill is on the key''s interval grid (one refill for an idle key)');
SET ROLE authx_app;
SELECT key_id AS rf2_id, api_key AS rf2 FROM authx.apikey_create(:'u1', 'refill 2', remaining => 50, refill_amount => 3, refill_interval => '1 hour') \gset
SELECT is(pg_temp.v(:'rf2'), 'valid 49 -', 'app: remaining may start above refill_amount');
RESET ROLE;
UPDATE authx.api_keys SET refilled_at = refilled_at - interval '1 hour' WHERE id = :'rf2_id';
SET ROLE authx_app;
SELECT is(pg_temp.v(:'rf2'), 'valid 2 -', 'app: a refill sets the uses back to refill_amount (it does not add)');
RESET ROLE;

-- ================================================================ rotate
SET ROLE authx_app;
SELECT key_id AS ro_id, api_key AS ro1 FROM authx.apikey_create(:'u1', 'rotating', '{docs:read}') \gset
SELECT clock_timestamp() AS ro_t0 \gset
SELECT authx.apikey_rotate(:'ro_id', '1 hour') AS ro2 \gset
SELECT clock_timestamp() AS ro_t1 \gset
SELECT is(substr(:'ro2', 1, 17), substr(:'ro1', 1, 17), 'app: the rotated key keeps its prefix');
SELECT isnt(:'ro2'::text, :'ro1'::text, 'app: and gets a new secret');
SELECT is(pg_temp.c(:'ro1', 'docs:read'), 'valid', 'app: the old secret works during the grace');
SELECT is((SELECT key_id FROM authx.apikey_verify(:'ro2', 'docs:read')), :'ro_id'::uuid, 'app: the new one is the same key');
SELECT ok((SELECT rotated_grace_until BETWEEN :'ro_t0'::timestamptz + interval '1 hour' AND :'ro_t1'::timestamptz + interval '1 hour'
             FROM authx.apikey_list(:'u1') WHERE key_id = :'ro_id'),
          'app: apikey_list shows the end of the grace (an hour after the rotation)');
RESET ROLE;
SELECT is((pg_temp.krow(:'ro2')).key_hash, sha256(convert_to(:'ro2', 'UTF8')), 'the new hash is stored');
SELECT is((pg_temp.krow(:'ro2')).prev_hash, sha256(convert_to(:'ro1', 'UTF8')), 'the old hash is kept for the grace');
UPDATE authx.api_keys SET prev_until = clock_timestamp() - interval '1 millisecond' WHERE id = :'ro_id';
SET ROLE authx_app;
SELECT is(pg_temp.c(:'ro1'), 'revoked', 'app: after the grace the old secret answers revoked');
SELECT is(pg_temp.c(:'ro2'), 'valid', 'app: the new one is valid');
SELECT authx.apikey_rotate(:'ro_id') AS ro3 \gset
SELECT is(pg_temp.c(:'ro2'), 'revoked', 'app: grace 0: the old secret is revoked at once');
SELECT is(pg_temp.c(:'ro3'), 'valid', 'app: grace 0: the new one is valid');
SELECT authx.apikey_rotate(:'ro_id', '1 hour') AS ro4 \gset
SELECT authx.apikey_rotate(:'ro_id', '1 hour') AS ro5 \gset
SELECT is(pg_temp.c(:'ro3'), 'not_found', 'app: rotating twice within a grace drops the oldest secret (not_found)');
SELECT is(pg_temp.c(:'ro4'), 'valid', 'app: the previous secret is in its grace');
SELECT is(pg_temp.c(:'ro5'), 'valid', 'app: the newest is valid');
SELECT is(authx.apikey_revoke(:'ro_id'), true, 'app: revoke the rotated key');
SELECT is(pg_temp.c(:'ro4'), 'revoked', 'app: revoking ends the grace of the previous secret');
SELECT is(pg_temp.c(:'ro5'), 'revoked', 'app: and revokes the newest');
SELECT throws_ok(format('SELECT authx.apikey_rotate(%L)', :'ro_id'), '55000',
                 format('API key "%s" is revoked', :'ro_id'), 'app: rotating a revoked key is 55000');
SELECT throws_ok(format($$SELECT authx.apikey_rotate(%L, '-1 second')$$, :'k2_id'), '22023',
                 'grace must be between 0 and 30 days', 'app: a negative grace is 22023');
SELECT throws_ok(format($$SELECT authx.apikey_rotate(%L, '30 days 1 second')$$, :'k2_id'), '22023',
                 'grace must be between 0 and 30 days', 'app: a grace over 30 days is 22023');
SELECT throws_ok(format($$SELECT authx.apikey_rotate(%L, NULL)$$, :'k2_id'), '22004',
                 'grace must not be null', 'app: a NULL grace is 22004');
SELECT throws_ok(format('SELECT authx.apikey_rotate(%L)', gen_random_uuid()), 'P0002', NULL,
                 'app: rotating an unknown key is P0002');
SELECT throws_ok('SELECT authx.apikey_rotate(NULL)', '22004', 'key_id must not be null', 'app: apikey_rotate(NULL) is 22004');
SELECT is(pg_temp.c(:'k2'), 'valid', 'app: the failed rotations left the key alone');
RESET ROLE;
SELECT results_eq(format($$SELECT event_type, severity::text, details->>'grace' FROM authx.audit_log
                             WHERE details->>'key_id' = %L AND event_type <> 'apikey.created' ORDER BY id$$, :'ro_id'),
                  $$VALUES ('apikey.rotated', 'medium', '01:00:00'), ('apikey.rotated', 'medium', '00:00:00'),
                           ('apikey.rotated', 'medium', '01:00:00'), ('apikey.rotated', 'medium', '01:00:00'),
                           ('apikey.revoked', 'medium', NULL)$$,
                  'each rotation logs apikey.rotated with its grace, then apikey.revoked');

-- ================================================================ update
-- apikey_update is called through lives_ok, so that a failing call does not
-- abort the transaction.
SET ROLE authx_app;
SELECT key_id AS up_id, api_key AS up FROM authx.apikey_create(:'u1', 'updatable') \gset
RESET ROLE;
SELECT (pg_temp.krow(:'up')).version AS up_v0 \gset
SET ROLE authx_app;
SELECT lives_ok(format('SELECT authx.apikey_update(%L)', :'up_id'), 'app: apikey_update with nothing to change');
RESET ROLE;
SELECT is((pg_temp.krow(:'up')).version, :'up_v0'::bigint, 'nothing to change: the row is not written');
SELECT is((SELECT count(*) FROM authx.audit_log WHERE event_type = 'apikey.updated' AND details->>'key_id' = :'up_id')::int, 0,
          'nothing to change: no apikey.updated event');
SET ROLE authx_app;
SELECT lives_ok(format($$SELECT authx.apikey_update(%L, name => ' new name ')$$, :'up_id'), 'app: apikey_update name');
SELECT is((SELECT name FROM authx.apikey_list(:'u1') WHERE key_id = :'up_id'), 'new name', 'app: the name is changed (trimmed)');
SELECT lives_ok(format($$SELECT authx.apikey_update(%L, scopes => '{files:write, docs:read, files:write}')$$, :'up_id'),
                'app: apikey_update scopes');
SELECT is((SELECT scopes FROM authx.apikey_list(:'u1') WHERE key_id = :'up_id'), '{docs:read,files:write}'::text[],
          'app: the scopes are replaced, sorted and deduplicated');
SELECT is(pg_temp.c(:'up', 'files:write'), 'valid', 'app: the new scope is in force');
SELECT lives_ok(format($$SELECT authx.apikey_update(%L, expires_at => now() + interval '1 day')$$, :'up_id'),
                'app: apikey_update expires_at');
SELECT is((SELECT expires_at FROM authx.apikey_list(:'u1') WHERE key_id = :'up_id'), now() + interval '1 day',
          'app: the expiry is set');
SELECT lives_ok(format($$SELECT authx.apikey_update(%L, rate_limit => 2, rate_window => '1 hour')$$, :'up_id'),
                'app: apikey_update rate_limit and rate_window');
SELECT is(pg_temp.v(:'up'), 'valid - 1', 'app: the new rate limit is in force');
SELECT lives_ok(format($$SELECT authx.apikey_update(%L, remaining => 1)$$, :'up_id'), 'app: apikey_update remaining');
SELECT is(pg_temp.v(:'up'), 'valid 0 0', 'app: the uses are counted');
SELECT is(pg_temp.v(:'up'), 'usage_exceeded 0 -', 'app: and run out');
SELECT lives_ok(format($$SELECT authx.apikey_update(%L, refill_amount => 5, refill_interval => '1 hour')$$, :'up_id'),
                'app: apikey_update refill');
SELECT throws_ok(format($$SELECT authx.apikey_update(%L, clear => '{remaining}')$$, :'up_id'), '22023',
                 'a key that refills needs remaining uses', 'app: clearing remaining but not the refill is 22023');
SELECT lives_ok(format($$SELECT authx.apikey_update(%L, clear => '{expires_at,rate_limit,remaining,refill}')$$, :'up_id'),
                'app: apikey_update clear => {expires_at,rate_limit,remaining,refill}');
SELECT results_eq(format($$SELECT expires_at, rate_limit, remaining, refill_amount, refill_interval
                             FROM authx.apikey_list(%L) WHERE key_id = %L$$, :'u1', :'up_id'),
                  $$VALUES (NULL::timestamptz, NULL::integer, NULL::integer, NULL::integer, NULL::interval)$$,
                  'app: everything cleared');
SELECT is(pg_temp.v(:'up'), 'valid - -', 'app: unlimited again');
SELECT throws_ok(format($$SELECT authx.apikey_update(%L, clear => '{name}')$$, :'up_id'), '22023',
                 'cannot clear "name"', 'app: clear => {name} is 22023');
SELECT throws_ok(format($$SELECT authx.apikey_update(%L, clear => '{refill,bogus}')$$, :'up_id'), '22023',
                 'cannot clear "bogus"', 'app: an unknown clear entry is 22023');
SELECT throws_ok(format($$SELECT authx.apikey_update(%L, scopes => '{Bad:scope}')$$, :'up_id'), '22023',
                 'invalid scope "Bad:scope"', 'app: apikey_update with a bad scope is 22023');
SELECT throws_ok(format($$SELECT authx.apikey_update(%L, rate_limit => 0)$$, :'up_id'), '22023',
                 'rate_limit must be positive', 'app: apikey_update with rate_limit 0 is 22023');
SELECT throws_ok(format($$SELECT authx.apikey_update(%L, name => 'x')$$, gen_random_uuid()), 'P0002', NULL,
                 'app: apikey_update of an unknown key is P0002');
RESET ROLE;
SELECT is((SELECT array_agg(details->'changed' ORDER BY id) FROM authx.audit_log
            WHERE event_type = 'apikey.updated' AND details->>'key_id' = :'up_id'),
          ARRAY['["name"]', '["scopes"]', '["expires_at"]', '["rate_limit", "rate_window"]', '["remaining"]',
                '["refill"]', '["expires_at", "rate_limit", "refill", "remaining"]']::jsonb[],
          'each update logs apikey.updated with what changed (failed ones log nothing)');

-- ================================================================ list
SET ROLE authx_app;
SELECT key_id AS l_active, api_key AS la FROM authx.apikey_create(:'u3', 'active') \gset
SELECT key_id AS l_revoked, api_key AS lr FROM authx.apikey_create(:'u3', 'revoked') \gset
SELECT key_id AS l_expired, api_key AS le FROM authx.apikey_create(:'u3', 'expired', expires_at => now() + interval '1 hour') \gset
SELECT authx.apikey_revoke(:'l_revoked') AS x \gset
RESET ROLE;
UPDATE authx.api_keys SET expires_at = clock_timestamp() - interval '1 second' WHERE id = :'l_expired';
UPDATE authx.api_keys SET created_at = now() - interval '3 minutes' WHERE id = :'l_active';
UPDATE authx.api_keys SET created_at = now() - interval '2 minutes' WHERE id = :'l_revoked';
UPDATE authx.api_keys SET created_at = now() - interval '1 minute' WHERE id = :'l_expired';
SET ROLE authx_app;
SELECT results_eq(format('SELECT name, status FROM authx.apikey_list(%L)', :'u3'),
                  $$VALUES ('expired'::text, 'expired'::text), ('revoked', 'revoked'), ('active', 'active')$$,
                  'app: apikey_list: newest first, statuses active, revoked, expired');
SELECT is((SELECT count(*) FROM authx.apikey_list(:'u3') l
            WHERE strpos(l::text, substr(:'la', 18)) > 0 OR strpos(l::text, substr(:'lr', 18)) > 0
               OR strpos(l::text, substr(:'le', 18)) > 0
               OR strpos(l::text, encode(sha256(convert_to(:'la', 'UTF8')), 'hex')) > 0)::int, 0,
          'app: apikey_list shows neither a key nor a hash');
RESET ROLE;
SELECT is((SELECT array_agg(a) FROM unnest((SELECT proargnames FROM pg_proc
                                             WHERE oid = 'authx.apikey_list(uuid)'::regprocedure)) a
            WHERE a ~ '(hash|secret|api_key)'), NULL, 'apikey_list has no hash, secret or key column');
SELECT authx.user_disable(:'u3') AS disabled \gset
SET ROLE authx_app;
SELECT results_eq(format('SELECT name, status FROM authx.apikey_list(%L)', :'u3'),
                  $$VALUES ('expired'::text, 'expired'::text), ('revoked', 'revoked'), ('active', 'disabled')$$,
                  'app: a disabled owner: the live key is disabled; revoked and expired stay');
SELECT is((SELECT count(*) FROM authx.apikey_list(gen_random_uuid()))::int, 0, 'app: apikey_list of an unknown user is empty');
RESET ROLE;
SELECT authx.user_enable(:'u3') AS enabled \gset

-- ================================================================ usage
-- The persisted rows (here written directly, for a key never verified, so
-- that nothing is pending in shared memory), per code, from the start of
-- the hour holding since.  (Counts still in shared memory: see "usage and
-- the worker" below, and sql/05_apikeys.sql.)
SET ROLE authx_app;
SELECT key_id AS us_id FROM authx.apikey_create(:'u1', 'usage rows') \gset
RESET ROLE;
INSERT INTO authx.api_key_usage (key_id, hour, code, count)
VALUES (:'us_id', date_trunc('hour', now() - interval '2 hours'), 'valid', 40),
       (:'us_id', date_trunc('hour', now() - interval '2 hours'), 'insufficient_scope', 2),
       (:'us_id', date_trunc('hour', now() - interval '1 hour'), 'valid', 3),
       (:'us_id', date_trunc('hour', now() - interval '3 days'), 'valid', 1000);
SET ROLE authx_app;
SELECT results_eq(format($$SELECT code, count FROM authx.apikey_usage(%L, now() - interval '2 hours')$$, :'us_id'),
                  $$VALUES ('insufficient_scope'::text, 2::bigint), ('valid', 43)$$,
                  'app: apikey_usage sums per code from the hour holding since');
SELECT results_eq(format($$SELECT code, count FROM authx.apikey_usage(%L)$$, :'us_id'),
                  $$VALUES ('insufficient_scope'::text, 2::bigint), ('valid', 43)$$,
                  'app: apikey_usage covers the last day by default');
SELECT is((SELECT count(*) FROM authx.apikey_usage(:'us_id', now() + interval '2 hours'))::int, 0,
          'app: apikey_usage since a later hour is empty');
RESET ROLE;
SELECT is((SELECT count(*) FROM authx.apikey_usage(gen_random_uuid()))::int, 0, 'apikey_usage of an unknown key is empty');

-- ================================================================ audit events are transactional
SAVEPOINT audit_rollback;
SET ROLE authx_app;
SELECT key_id AS gone_id, api_key AS gone FROM authx.apikey_create(:'u1', 'rolled back') \gset
RESET ROLE;
ROLLBACK TO SAVEPOINT audit_rollback;
SELECT is((SELECT count(*) FROM authx.audit_log WHERE details->>'key_id' = :'gone_id')::int, 0,
          'a rolled-back apikey_create leaves no event');
SET ROLE authx_app;
SELECT is(pg_temp.c(:'gone'), 'not_found', 'app: and no key');
RESET ROLE;
SAVEPOINT audit_rollback2;
SELECT authx.apikey_rotate(:'k2_id') AS x \gset
SELECT authx.apikey_revoke(:'k2_id') AS x \gset
ROLLBACK TO SAVEPOINT audit_rollback2;
SELECT is((SELECT count(*) FROM authx.audit_log WHERE details->>'key_id' = :'k2_id' AND event_type <> 'apikey.created')::int, 0,
          'a rolled-back rotate and revoke leave no event');
SELECT is((SELECT count(*) FROM authx.audit_log WHERE strpos(details::text, substr(:'k1', 18)) > 0
                                                   OR strpos(details::text, substr(:'ro2', 18)) > 0)::int, 0,
          'no event contains a key');

-- ================================================================ last_used_at
SET authx.touch_interval = 0;
SET ROLE authx_app;
SELECT key_id AS t_id, api_key AS t_key FROM authx.apikey_create(:'u1', 'touch') \gset
RESET ROLE;
SELECT is((pg_temp.krow(:'t_key')).last_used_at, NULL, 'a new key has no last_used_at');
SELECT clock_timestamp() AS t_before \gset
SET ROLE authx_app;
SELECT is(pg_temp.c(:'t_key'), 'valid', 'app: verify');
RESET ROLE;
SELECT ok((pg_temp.krow(:'t_key')).last_used_at >= :'t_before'::timestamptz,
          'touch_interval 0: a verification as authx_app wrote last_used_at (as the table owner)');
UPDATE authx.api_keys SET last_used_at = clock_timestamp() - interval '30 seconds' WHERE id = :'t_id'
RETURNING last_used_at AS t_30s \gset
SET authx.touch_interval = 60;
SET ROLE authx_app;
SELECT is(pg_temp.c(:'t_key'), 'valid', 'app: verify, last used 30 s ago');
RESET ROLE;
SELECT is((pg_temp.krow(:'t_key')).last_used_at, :'t_30s'::timestamptz, 'touch_interval 60: last_used_at not written');
SET authx.touch_interval = 0;
SAVEPOINT touch_read_only;
SET LOCAL transaction_read_only = on;
SET ROLE authx_app;
SELECT is(pg_temp.c(:'t_key'), 'valid', 'app: verify in a read-only transaction');
RESET ROLE;
SELECT is((pg_temp.krow(:'t_key')).last_used_at, :'t_30s'::timestamptz, 'read-only: last_used_at not written');
ROLLBACK TO SAVEPOINT touch_read_only;
SELECT is((pg_temp.krow(:'r_key')).last_used_at, NULL, 'a revoked key that was never valid was never touched');

-- ================================================================ search_path attack
-- The writes behind apikey_verify (the touch and the use counter) run as the
-- table owner, a superuser: no operator of the caller's search_path may be
-- called by them.
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE TABLE evil.calls (who name, super boolean, op text);
GRANT INSERT ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.log(p_op text) RETURNS void LANGUAGE sql AS
$$ INSERT INTO evil.calls SELECT current_user, r.rolsuper, p_op FROM pg_catalog.pg_roles r WHERE r.rolname = current_user $$;
CREATE FUNCTION evil.uuid_eq(a uuid, b uuid) RETURNS boolean LANGUAGE sql AS
$$ SELECT evil.log('uuid ='); SELECT pg_catalog.uuid_eq(a, b) $$;
CREATE FUNCTION evil.int4_lt(a integer, b integer) RETURNS boolean LANGUAGE sql AS
$$ SELECT evil.log('integer <'); SELECT pg_catalog.int4lt(a, b) $$;
CREATE FUNCTION evil.int4_mi(a integer, b integer) RETURNS integer LANGUAGE sql AS
$$ SELECT evil.log('integer -'); SELECT pg_catalog.int4mi(a, b) $$;
CREATE FUNCTION evil.ts_ge(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE sql AS
$$ SELECT evil.log('timestamptz >='); SELECT pg_catalog.timestamptz_ge(a, b) $$;
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.uuid_eq);
CREATE OPERATOR evil.< (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.int4_lt);
CREATE OPERATOR evil.- (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.int4_mi);
CREATE OPERATOR evil.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_ge);
SET ROLE authx_app;
SELECT key_id AS ev_id, api_key AS ev_m FROM authx.apikey_create(:'u1', 'evil metered', remaining => 3,
                                                                  refill_amount => 3, refill_interval => '1 hour') \gset
SELECT api_key AS ev_t FROM authx.apikey_create(:'u1', 'evil touched') \gset
RESET ROLE;
UPDATE authx.api_keys SET refilled_at = refilled_at - interval '1 hour' WHERE id = :'ev_id';
SET ROLE authx_app;
SET search_path = evil, pg_catalog;
SELECT (1 < 2) AS sanity \gset
SELECT pg_temp.v(:'ev_m') AS ev_m_result, pg_temp.c(:'ev_t') AS ev_t_result \gset
RESET search_path;
RESET ROLE;
SELECT is(:'sanity'::text, 't', 'the evil operator is found through search_path');
SELECT is((SELECT count(*) FROM evil.calls WHERE who = 'authx_app' AND op = 'integer <')::int, 1,
          'the trap logged the one comparison made by the test itself');
SELECT is(:'ev_m_result'::text, 'valid 2 -', 'a metered key (refill due) verifies under search_path = evil, pg_catalog');
SELECT is(:'ev_t_result'::text, 'valid', 'a key with a touch verifies under search_path = evil, pg_catalog');
SELECT is_empty($$SELECT who || ' ' || op FROM evil.calls WHERE super OR who <> 'authx_app'$$,
                'the use counter and the touch, run as the table owner, called no operator from schema evil');

-- ================================================================ purge
SET ROLE authx_app;
SELECT key_id AS p_old_rev FROM authx.apikey_create(:'u2', 'old revoked') \gset
SELECT key_id AS p_new_rev FROM authx.apikey_create(:'u2', 'recently revoked') \gset
SELECT key_id AS p_old_exp FROM authx.apikey_create(:'u2', 'long expired', expires_at => now() + interval '1 hour') \gset
SELECT key_id AS p_live FROM authx.apikey_create(:'u2', 'live') \gset
RESET ROLE;
UPDATE authx.api_keys SET revoked_at = now() - interval '31 days', revoke_reason = 'revoked' WHERE id = :'p_old_rev';
UPDATE authx.api_keys SET revoked_at = now() - interval '29 days', revoke_reason = 'revoked' WHERE id = :'p_new_rev';
UPDATE authx.api_keys SET expires_at = now() - interval '31 days' WHERE id = :'p_old_exp';
INSERT INTO authx.api_key_usage (key_id, hour, code, count)
VALUES (:'p_old_rev', date_trunc('hour', now()), 'valid', 1),
       (:'p_live', date_trunc('hour', now() - interval '91 days'), 'valid', 1),
       (:'p_live', date_trunc('hour', now() - interval '89 days'), 'valid', 1);
SELECT ok((authx._apikeys_purge(now()) ->> 'keys_deleted')::int >= 2, '_apikeys_purge reports what it deleted');
SELECT is(ARRAY(SELECT id FROM authx.api_keys WHERE id IN (:'p_old_rev', :'p_new_rev', :'p_old_exp', :'p_live') ORDER BY name),
          ARRAY[:'p_live', :'p_new_rev']::uuid[],
          'purged: revoked or expired over 30 days ago; kept: revoked 29 days ago, live');
SELECT is((SELECT array_agg(hour::date ORDER BY hour) FROM authx.api_key_usage WHERE key_id IN (:'p_old_rev', :'p_live')),
          ARRAY[(date_trunc('hour', now() - interval '89 days'))::date],
          'usage rows go with their key, and rows older than 90 days are deleted');

-- ================================================================ stats
-- (Lower bounds: the counters are cluster-wide.)  Up to here this file
-- gets 49 valid answers, 27 other answers to well-formed keys, 4 malformed
-- keys and over 10 last_used_at writes.
SELECT ok(pg_temp.stat_delta('apikey_valid') >= 49, 'apikey_valid counted the 49 valid answers');
SELECT ok(pg_temp.stat_delta('apikey_rejected') >= 27, 'apikey_rejected counted the 27 other answers');
SELECT ok(pg_temp.stat_delta('apikey_malformed') >= 4, 'apikey_malformed counted the 4 malformed keys');
SELECT ok(pg_temp.stat_delta('apikey_touches') >= 10, 'apikey_touches counted the last_used_at writes');

-- ================================================================ refills and the caller's TimeZone
-- A refill is due when refill_interval has passed since refilled_at.  The
-- hot path (C) reckons an interval as fixed microseconds (a day = 24 h, a
-- month = 30 days); authx._apikey_consume and apikey_list add the interval
-- to refilled_at in SQL, in the caller's TimeZone (a day = 23 or 25 h
-- across a daylight-saving change, a month = 28-31 days).  Both must agree.
-- Made deterministic with POSIX zones whose clocks changed ~12 hours ago.
-- What one verification (cost 1) must answer when apikey_list shows n uses.
CREATE FUNCTION pg_temp.after_listed(n integer) RETURNS text LANGUAGE sql AS
$$ SELECT CASE WHEN n >= 1 THEN 'valid ' || (n - 1) ELSE 'usage_exceeded ' || n END $$;
SELECT format('XST0XDT-1,%s/%s,%s/%s', d, h, (d + 7) % 365, h) AS tz_spring,
       format('XST0XDT-1,%s/%s,%s/%s', (d + 358) % 365, h, d, h) AS tz_fall
  FROM (SELECT extract(doy FROM t)::int - 1 AS d, extract(hour FROM t)::int AS h
          FROM (SELECT (now() - interval '12 hours') AT TIME ZONE 'UTC' AS t) s) s2 \gset
SET ROLE authx_app;
SELECT key_id AS tz_id, api_key AS tz_key FROM authx.apikey_create(:'u1', 'tz refill', refill_amount => 1, refill_interval => '1 day') \gset
SELECT is(pg_temp.v(:'tz_key'), 'valid 0 -', 'app: a daily refill of 1, spent');
RESET ROLE;
-- Spring forward: 23.5 hours since the refill is over a (23-hour) local day.
SET TimeZone = :'tz_spring';
UPDATE authx.api_keys SET refilled_at = clock_timestamp() - interval '23 hours 30 minutes', remaining = 0 WHERE id = :'tz_id';
SET ROLE authx_app;
SELECT (SELECT remaining FROM authx.apikey_list(:'u1') WHERE key_id = :'tz_id') AS tz_listed \gset
SELECT code AS tz_code, remaining AS tz_remaining FROM authx.apikey_verify(:'tz_key') \gset
SELECT is(:'tz_code' || ' ' || :'tz_remaining', pg_temp.after_listed(:'tz_listed'),
          format('app: refill and TimeZone (23-hour day): apikey_list says %s use(s) left; apikey_verify must agree',
                 :'tz_listed'));
RESET ROLE;
-- Fall back: 24.5 hours since the refill is not yet a (25-hour) local day.
SET TimeZone = :'tz_fall';
UPDATE authx.api_keys SET refilled_at = clock_timestamp() - interval '24 hours 30 minutes', remaining = 0 WHERE id = :'tz_id';
SET ROLE authx_app;
SELECT (SELECT remaining FROM authx.apikey_list(:'u1') WHERE key_id = :'tz_id') AS tz_listed \gset
SELECT code AS tz_code, remaining AS tz_remaining FROM authx.apikey_verify(:'tz_key') \gset
SELECT is(:'tz_code' || ' ' || :'tz_remaining', pg_temp.after_listed(:'tz_listed'),
          format('app: refill and TimeZone (25-hour day): apikey_list says %s use(s) left; apikey_verify must agree',
                 :'tz_listed'));
RESET ROLE;
RESET TimeZone;

-- ================================================================ usage hours and the caller's TimeZone
-- Counts are kept per UTC hour; "since" must select from the start of the
-- (UTC) hour holding it, whatever the caller's TimeZone.  In Asia/Kolkata
-- (UTC+05:30) a local hour starts at half past a UTC hour.
-- (A key never verified: nothing pending in shared memory.)
SELECT date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS h0 \gset
INSERT INTO authx.api_key_usage (key_id, hour, code, count) VALUES (:'us_id', :'h0', 'valid', 7);
SET TimeZone = 'UTC';
SELECT is((SELECT count FROM authx.apikey_usage(:'us_id', :'h0'::timestamptz + interval '31 minutes') WHERE code = 'valid'),
          7::bigint, 'apikey_usage (UTC): the hour holding since is included');
SET TimeZone = 'Asia/Kolkata';
SELECT is((SELECT count FROM authx.apikey_usage(:'us_id', :'h0'::timestamptz + interval '31 minutes') WHERE code = 'valid'),
          7::bigint, 'apikey_usage (Asia/Kolkata): the same hour is included');
RESET TimeZone;

-- ================================================================ usage and the worker
-- The maintenance worker moves the counts from shared memory to
-- authx.api_key_usage.  A key created in a transaction that has not
-- committed yet is invisible to the worker: its counts must not be thrown
-- away (the transaction may well commit).  Wait for two worker turns after
-- the verifications, then look: a turn runs the usage pass, then (once a
-- second) maintenance_run, which bumps maintenance_runs, or
-- maintenance_errors when it fails (as it may while this transaction holds
-- locks it wants).
SET ROLE authx_app;
SELECT key_id AS w_id, api_key AS w_key FROM authx.apikey_create(:'u1', 'worker', '{docs:read}') \gset
SELECT pg_temp.c(:'w_key') AS x1, pg_temp.c(:'w_key') AS x2, pg_temp.c(:'w_key', 'docs:write') AS x3 \gset
RESET ROLE;
CREATE FUNCTION pg_temp.turns() RETURNS bigint LANGUAGE sql AS
$$ SELECT sum(value)::bigint FROM authx.stats WHERE name IN ('maintenance_runs', 'maintenance_errors') $$;
SELECT pg_temp.turns() AS turns0, set_config('pgtap.turns0', pg_temp.turns()::text, true) AS x \gset
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
    WHILE pg_temp.turns() < current_setting('pgtap.turns0')::bigint + 2 AND clock_timestamp() < deadline LOOP
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT ok(pg_temp.turns() >= :turns0 + 2, 'the worker made two turns');
SET ROLE authx_app;
SELECT results_eq(format('SELECT code, count FROM authx.apikey_usage(%L)', :'w_id'),
                  $$VALUES ('insufficient_scope'::text, 1::bigint), ('valid', 2)$$,
                  'app: usage counted before the key''s transaction commits survives the worker');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

--
-- API keys: create, verify (every answer code), rate limits, remaining uses
-- and refills, rotate, revoke, update, list, usage, audit events, then
-- every invalid input (one line each, through regress.try).
--
-- Time is moved by UPDATEs of authx.api_keys as the superuser, never by
-- sleeping; every interval below is in hours so that the daylight-saving
-- changes of PST8PDT (pg_regress' time zone) cannot move an answer.
--
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
\set SHOW_CONTEXT never
SELECT authx.user_create('apikey-owner@example.com', 'correct horse battery') AS uid \gset

-- ================================================================ create
-- The key is axk_<12 hex prefix>_<43 base64url>, returned once.
SELECT key_id AS kid, api_key AS key
  FROM authx.apikey_create(:'uid', '  CI deploy key  ', '{docs:write, docs:read, docs:read, *:*, org/team.a:list}') \gset
SELECT :'key' ~ '^axk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$' AS key_format, length(:'key') AS key_length;
-- Only sha256 of the whole key is stored; the prefix is the public part.
SELECT prefix = substr(:'key', 5, 12) AS prefix_is_public_part,
       key_hash = sha256(convert_to(:'key', 'UTF8')) AS stored_as_sha256,
       prev_hash IS NULL AS no_prev_hash,
       user_id = :'uid' AS owner,
       name, scopes, expires_at, rate_limit, rate_window, remaining, refill_amount, refill_interval,
       refilled_at, last_used_at, revoked_at, owner_disabled, version
  FROM authx.api_keys WHERE id = :'kid';
-- The secret is in no column, neither as text nor hex-encoded.
SELECT count(*) AS key_in_a_column FROM authx.api_keys k
 WHERE strpos(k::text, substr(:'key', 18)) > 0
    OR strpos(k::text, encode(convert_to(:'key', 'UTF8'), 'hex')) > 0;
-- Every call makes a new key: another prefix and another secret.
SELECT key_id AS kid2, api_key AS key2 FROM authx.apikey_create(:'uid', 'second') \gset
SELECT :'kid' <> :'kid2' AS new_id, substr(:'key', 5, 12) <> substr(:'key2', 5, 12) AS new_prefix,
       substr(:'key', 18) <> substr(:'key2', 18) AS new_secret;
-- Defaults and boundaries: no scopes (NULL means none), a 1-second and a
-- 366-day window, 0 remaining uses, a 200-character name, an expiry in the
-- future; remaining starts at refill_amount when only a refill is given.
SELECT key_id AS kid3 FROM authx.apikey_create(:'uid', 'defaults', NULL) \gset
SELECT name, scopes, rate_window, remaining, expires_at FROM authx.api_keys WHERE id = :'kid3';
SELECT key_id AS kid_b1 FROM authx.apikey_create(:'uid', repeat('n', 200), rate_window => '1 second', remaining => 0) \gset
SELECT key_id AS kid_b2 FROM authx.apikey_create(:'uid', 'year', rate_window => '366 days',
                                                 expires_at => now() + interval '1 hour') \gset
SELECT rate_window, remaining, length(name) AS name_length, expires_at > now() AS expires_later
  FROM authx.api_keys WHERE id IN (:'kid_b1', :'kid_b2')
 ORDER BY rate_window;
SELECT key_id AS kid_refill FROM authx.apikey_create(:'uid', 'refilled', refill_amount => 5, refill_interval => '1 hour') \gset
SELECT remaining, refill_amount, refill_interval, refilled_at = created_at AS refill_clock_starts
  FROM authx.api_keys WHERE id = :'kid_refill';

-- ================================================================ verify: valid and not_found
-- Never planned: one row, always; no spending for a key without limits.
SELECT code, key_id = :'kid' AS key_id, user_id = :'uid' AS user_id, scopes, remaining,
       rate_limit_remaining, retry_after
  FROM authx.apikey_verify(:'key');
SELECT code FROM authx.apikey_verify(:'key', NULL, NULL);
-- The first valid answer records last_used_at; within authx.touch_interval
-- (60 s) there is no write, after it there is.
SELECT last_used_at IS NOT NULL AS touched FROM authx.api_keys WHERE id = :'kid';
UPDATE authx.api_keys SET last_used_at = now() - interval '30 seconds' WHERE id = :'kid'
RETURNING last_used_at AS used_30s \gset
SELECT code FROM authx.apikey_verify(:'key');
SELECT last_used_at = :'used_30s' AS not_touched_within_interval FROM authx.api_keys WHERE id = :'kid';
UPDATE authx.api_keys SET last_used_at = now() - interval '2 minutes' WHERE id = :'kid';
SELECT code FROM authx.apikey_verify(:'key');
SELECT last_used_at > now() - interval '1 minute' AS touched_after_interval FROM authx.api_keys WHERE id = :'kid';
-- Not a key (or not this key): not_found with nothing else, never an error.
SELECT v.label, r.code, r.key_id, r.user_id, r.scopes, r.remaining, r.rate_limit_remaining, r.retry_after
  FROM (VALUES ('NULL', NULL),
               ('empty', ''),
               ('garbage', 'not a key'),
               ('wrong secret, real prefix', substr(:'key', 1, 17) || substr(:'key2', 18)),
               ('unknown prefix, valid shape', 'axk_000000000000_' || substr(:'key', 18)),
               ('upper-case hex in the prefix', 'axk_A' || substr(:'key', 6)),
               ('upper-case type', 'AXK_' || substr(:'key', 5)),
               ('session token prefix', 'axs_' || substr(:'key', 5)),
               ('one character short', left(:'key', 59)),
               ('one character long', :'key' || 'A'),
               ('not base64url', left(:'key', 59) || '+'),
               ('missing separator', 'axk_' || substr(:'key', 5, 12) || 'x' || substr(:'key', 18)),
               ('one megabyte', repeat('x', 1000000))) v(label, k),
       LATERAL authx.apikey_verify(v.k) r;
SELECT code FROM authx.apikey_verify(repeat(:'key', 1000));

-- ================================================================ verify: scopes
-- A * matches anything in its place; asking for a * needs a * there.
SELECT key_id AS s_read, api_key AS k_read FROM authx.apikey_create(:'uid', 'read', '{docs:read}') \gset
SELECT key_id AS s_docs, api_key AS k_docs FROM authx.apikey_create(:'uid', 'docs', '{docs:*}') \gset
SELECT key_id AS s_all, api_key AS k_all FROM authx.apikey_create(:'uid', 'all', '{*:*}') \gset
SELECT key_id AS s_anyread, api_key AS k_anyread FROM authx.apikey_create(:'uid', 'anyread', '{*:read}') \gset
SELECT key_id AS s_none, api_key AS k_none FROM authx.apikey_create(:'uid', 'none', '{}') \gset
SELECT k.name, array_agg(w.scope ORDER BY w.n) FILTER (WHERE r.code = 'valid') AS covers,
       array_agg(DISTINCT r.code) AS codes
  FROM (VALUES (1, 'read', :'k_read'), (2, 'docs', :'k_docs'), (3, 'all', :'k_all'),
               (4, 'anyread', :'k_anyread'), (5, 'none', :'k_none')) k(n, name, key),
       (VALUES (1, 'docs:read'), (2, 'docs:write'), (3, 'docs:*'), (4, 'x:read'),
               (5, '*:read'), (6, '*:*'), (7, 'org/team.a:list')) w(n, scope),
       LATERAL authx.apikey_verify(k.key, w.scope) r
 GROUP BY k.n, k.name ORDER BY k.n;
-- Without a scope, even a key with none is valid; docs:* covers any action
-- on docs; the answer carries the key's scopes.
SELECT code, scopes FROM authx.apikey_verify(:'k_none');
SELECT code, scopes FROM authx.apikey_verify(:'k_docs', 'docs:delete');
SELECT code, scopes FROM authx.apikey_verify(:'k_docs', 'doc:read');

-- ================================================================ verify: revoked, expired, disabled
SELECT key_id AS e_id, api_key AS e_key FROM authx.apikey_create(:'uid', 'expiring', expires_at => now() + interval '1 hour') \gset
SELECT code FROM authx.apikey_verify(:'e_key');
UPDATE authx.api_keys SET expires_at = clock_timestamp() - interval '1 second' WHERE id = :'e_id';
SELECT code, key_id = :'e_id' AS key_id, user_id = :'uid' AS user_id FROM authx.apikey_verify(:'e_key');

SELECT key_id AS r_id, api_key AS r_key FROM authx.apikey_create(:'uid', 'to revoke') \gset
SELECT authx.apikey_revoke(:'r_id') AS revoked, authx.apikey_revoke(:'r_id') AS again,
       authx.apikey_revoke(gen_random_uuid()) AS unknown;
SELECT code, key_id = :'r_id' AS key_id FROM authx.apikey_verify(:'r_key');
SELECT revoked_at IS NOT NULL AS revoked_at, revoke_reason FROM authx.api_keys WHERE id = :'r_id';
-- Revoked wins over expired.
UPDATE authx.api_keys SET expires_at = clock_timestamp() - interval '1 second' WHERE id = :'r_id';
SELECT code FROM authx.apikey_verify(:'r_key');

-- The owner: disabled -> disabled; enabled again -> valid again; a
-- 'locked' status (a lockout) leaves the keys alone; deleted -> disabled.
SELECT authx.user_create('apikey-owner2@example.com', 'correct horse battery') AS uid2 \gset
SELECT key_id AS d_id, api_key AS d_key FROM authx.apikey_create(:'uid2', 'owned') \gset
SELECT authx.user_disable(:'uid2');
SELECT code, key_id = :'d_id' AS key_id FROM authx.apikey_verify(:'d_key');
SELECT status FROM authx.apikey_list(:'uid2');
SELECT authx.user_enable(:'uid2');
SELECT code FROM authx.apikey_verify(:'d_key');
UPDATE authx.users SET status = 'locked' WHERE id = :'uid2';
SELECT code FROM authx.apikey_verify(:'d_key');
SELECT status FROM authx.apikey_list(:'uid2');
UPDATE authx.users SET status = 'disabled' WHERE id = :'uid2';
SELECT code AS direct_update FROM authx.apikey_verify(:'d_key');
UPDATE authx.users SET status = 'active' WHERE id = :'uid2';
SELECT code FROM authx.apikey_verify(:'d_key');
-- Revoked and expired win over disabled.
SELECT key_id AS d_rev_id, api_key AS d_rev FROM authx.apikey_create(:'uid2', 'revoked and disabled') \gset
SELECT authx.apikey_revoke(:'d_rev_id');
SELECT authx.user_delete(:'uid2');
SELECT code AS deleted_owner FROM authx.apikey_verify(:'d_key');
SELECT code AS revoked_and_deleted_owner FROM authx.apikey_verify(:'d_rev');
SELECT name, status FROM authx.apikey_list(:'uid2') ORDER BY name;
-- A hard DELETE of the owner takes the keys with it.
SELECT authx.user_create('apikey-owner3@example.com', 'correct horse battery') AS uid3 \gset
SELECT api_key AS h_key FROM authx.apikey_create(:'uid3', 'cascade') \gset
DELETE FROM authx.users WHERE id = :'uid3';
SELECT code AS owner_deleted_for_good FROM authx.apikey_verify(:'h_key');

-- ================================================================ rate limits (shared memory)
-- 3 per hour: exactly 3 pass, counting down; then rate_limited with the
-- time until the next one (20 minutes at most).
SELECT key_id AS rl_id, api_key AS rl FROM authx.apikey_create(:'uid', 'rl', rate_limit => 3, rate_window => '1 hour') \gset
SELECT code, rate_limit_remaining, retry_after FROM authx.apikey_verify(:'rl');
SELECT code, rate_limit_remaining, retry_after FROM authx.apikey_verify(:'rl');
SELECT code, rate_limit_remaining, retry_after FROM authx.apikey_verify(:'rl');
SELECT code, rate_limit_remaining, retry_after > interval '0' AND retry_after <= interval '20 minutes' AS retry_later
  FROM authx.apikey_verify(:'rl');
-- Cost 0 checks without spending; a cost above the limit can never pass
-- (no retry_after).
SELECT code, rate_limit_remaining FROM authx.apikey_verify(:'rl', cost => 0);
SELECT code, rate_limit_remaining, retry_after FROM authx.apikey_verify(:'rl', cost => 4);
-- A cost spends that many.
SELECT api_key AS rl2 FROM authx.apikey_create(:'uid', 'rl2', rate_limit => 3, rate_window => '1 hour') \gset
SELECT code, rate_limit_remaining FROM authx.apikey_verify(:'rl2', cost => 2);
SELECT code, rate_limit_remaining, retry_after > interval '0' AS retry_later FROM authx.apikey_verify(:'rl2', cost => 2);
SELECT code, rate_limit_remaining FROM authx.apikey_verify(:'rl2', cost => 1);
-- ROLLBACK does not give the allowance back.
SELECT api_key AS rl3 FROM authx.apikey_create(:'uid', 'rl3', rate_limit => 2, rate_window => '1 hour') \gset
BEGIN;
SELECT code, rate_limit_remaining FROM authx.apikey_verify(:'rl3');
ROLLBACK;
SELECT code, rate_limit_remaining FROM authx.apikey_verify(:'rl3');
SELECT code, rate_limit_remaining FROM authx.apikey_verify(:'rl3');
-- The checks before the limit answer first: a scope the key lacks is
-- insufficient_scope, even when the limit is spent.
SELECT code, rate_limit_remaining FROM authx.apikey_verify(:'rl', 'docs:read');
-- A new limit starts afresh.
UPDATE authx.api_keys SET rate_limit = 4 WHERE id = :'rl_id';
SELECT code, rate_limit_remaining FROM authx.apikey_verify(:'rl');

-- ================================================================ remaining uses (the row)
SELECT key_id AS m_id, api_key AS m FROM authx.apikey_create(:'uid', 'metered', remaining => 2) \gset
SELECT code, remaining, rate_limit_remaining FROM authx.apikey_verify(:'m');
SELECT last_used_at IS NOT NULL AS spending_touches FROM authx.api_keys WHERE id = :'m_id';
-- ROLLBACK gives the use back (the count is in the row).
BEGIN;
SELECT code, remaining FROM authx.apikey_verify(:'m');
ROLLBACK;
-- Cost 0 spends nothing; a cost above what is left spends nothing either.
SELECT code, remaining FROM authx.apikey_verify(:'m', cost => 0);
SELECT code, remaining FROM authx.apikey_verify(:'m', cost => 2);
SELECT code, remaining FROM authx.apikey_verify(:'m');
SELECT code, remaining FROM authx.apikey_verify(:'m');
SELECT code, remaining FROM authx.apikey_verify(:'m', cost => 0);
SELECT remaining FROM authx.api_keys WHERE id = :'m_id';
-- With both: usage_exceeded spends no rate allowance, rate_limited spends
-- no use.
SELECT api_key AS mr FROM authx.apikey_create(:'uid', 'metered+rl', rate_limit => 5, rate_window => '1 hour', remaining => 1) \gset
SELECT code, remaining, rate_limit_remaining FROM authx.apikey_verify(:'mr', cost => 2);
SELECT code, remaining, rate_limit_remaining FROM authx.apikey_verify(:'mr');
SELECT api_key AS rm FROM authx.apikey_create(:'uid', 'rl+metered', rate_limit => 1, rate_window => '1 hour', remaining => 5) \gset
SELECT code, remaining, rate_limit_remaining FROM authx.apikey_verify(:'rm');
SELECT code, remaining, rate_limit_remaining FROM authx.apikey_verify(:'rm');
-- A read-only transaction can verify an unmetered key and check a metered
-- one (cost 0), but cannot spend uses.
SELECT key_id AS ro_m_id, api_key AS ro_m FROM authx.apikey_create(:'uid', 'read-only', remaining => 3) \gset
BEGIN READ ONLY;
SELECT code, remaining FROM authx.apikey_verify(:'k_read');
SELECT code, remaining FROM authx.apikey_verify(:'ro_m', cost => 0);
SELECT regress.try(format('authx.apikey_verify(%L)', :'ro_m')) AS spend_read_only;
ROLLBACK;
SELECT remaining FROM authx.api_keys WHERE id = :'ro_m_id';

-- ================================================================ refill
-- 2 uses every hour: spent, then given back in full after the interval, on
-- the interval grid the key started on (an idle key gets one refill).
SELECT key_id AS rf_id, api_key AS rf FROM authx.apikey_create(:'uid', 'refill', refill_amount => 2, refill_interval => '1 hour') \gset
SELECT code, remaining FROM authx.apikey_verify(:'rf');
SELECT code, remaining FROM authx.apikey_verify(:'rf');
SELECT code, remaining FROM authx.apikey_verify(:'rf');
UPDATE authx.api_keys SET refilled_at = refilled_at - interval '3 hours 30 minutes' WHERE id = :'rf_id'
RETURNING refilled_at AS rf_old \gset
SELECT remaining AS listed FROM authx.apikey_list(:'uid') WHERE key_id = :'rf_id';
SELECT code, remaining FROM authx.apikey_verify(:'rf');
SELECT remaining, refilled_at = :'rf_old'::timestamptz + interval '3 hours' AS on_the_grid
  FROM authx.api_keys WHERE id = :'rf_id';
SELECT code, remaining FROM authx.apikey_verify(:'rf');
SELECT code, remaining FROM authx.apikey_verify(:'rf');
-- A refill sets the uses back to refill_amount; it does not add.
SELECT key_id AS rf2_id, api_key AS rf2 FROM authx.apikey_create(:'uid', 'refill2', remaining => 10, refill_amount => 2, refill_interval => '1 hour') \gset
SELECT code, remaining FROM authx.apikey_verify(:'rf2');
UPDATE authx.api_keys SET refilled_at = refilled_at - interval '1 hour' WHERE id = :'rf2_id';
SELECT code, remaining FROM authx.apikey_verify(:'rf2');

-- ================================================================ rotate
SELECT key_id AS ro_id, api_key AS ro1 FROM authx.apikey_create(:'uid', 'rotating', '{docs:read}', rate_limit => 100, rate_window => '1 hour') \gset
SELECT authx.apikey_rotate(:'ro_id', '1 hour') AS ro2 \gset
SELECT :'ro2' ~ '^axk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$' AS key_format,
       substr(:'ro2', 1, 17) = substr(:'ro1', 1, 17) AS same_prefix, :'ro2' <> :'ro1' AS new_secret;
SELECT key_hash = sha256(convert_to(:'ro2', 'UTF8')) AS new_hash, prev_hash = sha256(convert_to(:'ro1', 'UTF8')) AS old_hash,
       prev_until BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes' AS grace_one_hour,
       scopes, rate_limit
  FROM authx.api_keys WHERE id = :'ro_id';
-- Both work during the grace, as the same key.
SELECT code, key_id = :'ro_id' AS same_key FROM authx.apikey_verify(:'ro1', 'docs:read');
SELECT code, key_id = :'ro_id' AS same_key FROM authx.apikey_verify(:'ro2', 'docs:read');
SELECT status, rotated_grace_until > now() AS in_grace FROM authx.apikey_list(:'uid') WHERE key_id = :'ro_id';
-- After the grace the old one answers revoked.
UPDATE authx.api_keys SET prev_until = clock_timestamp() - interval '1 second' WHERE id = :'ro_id';
SELECT code FROM authx.apikey_verify(:'ro1');
SELECT code FROM authx.apikey_verify(:'ro2');
SELECT status, rotated_grace_until FROM authx.apikey_list(:'uid') WHERE key_id = :'ro_id';
-- Grace 0 (the default): the old one is revoked at once.
SELECT authx.apikey_rotate(:'ro_id') AS ro3 \gset
SELECT code FROM authx.apikey_verify(:'ro2');
SELECT code FROM authx.apikey_verify(:'ro3');
-- Rotating twice within a grace: the oldest is gone (not_found).
SELECT authx.apikey_rotate(:'ro_id', '1 hour') AS ro4 \gset
SELECT authx.apikey_rotate(:'ro_id', '30 days') AS ro5 \gset
SELECT (SELECT code FROM authx.apikey_verify(:'ro3')) AS oldest,
       (SELECT code FROM authx.apikey_verify(:'ro4')) AS previous,
       (SELECT code FROM authx.apikey_verify(:'ro5')) AS newest;
-- Revoking stops the old secret in its grace too.
SELECT authx.apikey_revoke(:'ro_id');
SELECT (SELECT code FROM authx.apikey_verify(:'ro4')) AS previous,
       (SELECT code FROM authx.apikey_verify(:'ro5')) AS newest;
SELECT status, rotated_grace_until FROM authx.apikey_list(:'uid') WHERE key_id = :'ro_id';

-- ================================================================ update
SELECT key_id AS up_id, api_key AS up FROM authx.apikey_create(:'uid', 'updatable') \gset
SELECT version AS up_v FROM authx.api_keys WHERE id = :'up_id' \gset
-- Nothing to change: no write, no event.
SELECT authx.apikey_update(:'up_id');
SELECT authx.apikey_update(:'up_id', clear => NULL);
SELECT version = :up_v AS unchanged FROM authx.api_keys WHERE id = :'up_id';
SELECT authx.apikey_update(:'up_id', name => '  renamed  ', scopes => '{b:x, a:y, b:x}');
SELECT name, scopes, version > :up_v AS new_version FROM authx.api_keys WHERE id = :'up_id';
SELECT code FROM authx.apikey_verify(:'up', 'a:y');
SELECT authx.apikey_update(:'up_id', expires_at => now() + interval '1 hour');
SELECT expires_at > now() AS expires FROM authx.api_keys WHERE id = :'up_id';
SELECT authx.apikey_update(:'up_id', rate_limit => 1, rate_window => '1 hour');
SELECT rate_limit, rate_window FROM authx.api_keys WHERE id = :'up_id';
SELECT code, rate_limit_remaining FROM authx.apikey_verify(:'up');
SELECT code FROM authx.apikey_verify(:'up');
SELECT authx.apikey_update(:'up_id', remaining => 1);
SELECT authx.apikey_update(:'up_id', clear => '{rate_limit}');
SELECT code, remaining, rate_limit_remaining FROM authx.apikey_verify(:'up');
SELECT code, remaining FROM authx.apikey_verify(:'up');
-- A refill on a metered key keeps its remaining uses (here 0) and starts
-- its clock now.
SELECT authx.apikey_update(:'up_id', refill_amount => 3, refill_interval => '1 hour');
SELECT remaining, refill_amount, refill_interval, refilled_at > now() - interval '1 minute' AS clock_starts
  FROM authx.api_keys WHERE id = :'up_id';
-- A refill needs remaining uses.
SELECT regress.try(format($$authx.apikey_update(%L, clear => '{remaining}')$$, :'up_id')) AS clear_remaining_only;
-- Clearing everything: no expiry, no limit, unlimited uses, no refill.
SELECT authx.apikey_update(:'up_id', clear => '{expires_at,rate_limit,remaining,refill}');
SELECT expires_at, rate_limit, rate_window, remaining, refill_amount, refill_interval, refilled_at
  FROM authx.api_keys WHERE id = :'up_id';
SELECT code, remaining, rate_limit_remaining FROM authx.apikey_verify(:'up');
-- A refill on a key with unlimited uses starts it at refill_amount.
SELECT authx.apikey_update(:'up_id', refill_amount => 4, refill_interval => '2 hours');
SELECT remaining, refill_amount, refill_interval FROM authx.api_keys WHERE id = :'up_id';

-- ================================================================ list
-- Newest first; statuses; never a key or a hash.
SELECT authx.user_create('apikey-list@example.com', 'correct horse battery') AS ul \gset
SELECT api_key AS l1 FROM authx.apikey_create(:'ul', 'first', '{b:r, a:r}', rate_limit => 10, rate_window => '1 hour',
                                              remaining => 7, refill_amount => 9, refill_interval => '1 day') \gset
SELECT key_id AS l2_id, api_key AS l2 FROM authx.apikey_create(:'ul', 'second', expires_at => now() + interval '1 hour') \gset
SELECT key_id AS l3_id, api_key AS l3 FROM authx.apikey_create(:'ul', 'third') \gset
SELECT authx.apikey_revoke(:'l3_id');
UPDATE authx.api_keys SET expires_at = clock_timestamp() - interval '1 second' WHERE id = :'l2_id';
SELECT api_key AS l4 FROM authx.apikey_create(:'ul', 'fourth') \gset
SELECT name, status, scopes, prefix ~ '^[0-9a-f]{12}$' AS prefix, created_at IS NOT NULL AS created,
       expires_at IS NOT NULL AS expires, revoked_at IS NOT NULL AS revoked,
       rate_limit, rate_window, remaining, refill_amount, refill_interval, rotated_grace_until
  FROM authx.apikey_list(:'ul');
SELECT count(*) AS secret_in_list FROM authx.apikey_list(:'ul') l
 WHERE strpos(l::text, substr(:'l1', 18)) > 0 OR strpos(l::text, substr(:'l2', 18)) > 0
    OR strpos(l::text, substr(:'l3', 18)) > 0 OR strpos(l::text, substr(:'l4', 18)) > 0
    OR strpos(l::text, encode(sha256(convert_to(:'l1', 'UTF8')), 'hex')) > 0
    OR strpos(l::text, encode(sha256(convert_to(:'l4', 'UTF8')), 'hex')) > 0;
SELECT array_agg(a ORDER BY a) FILTER (WHERE a LIKE '%hash%' OR a LIKE '%key' OR a LIKE '%secret%') AS secret_columns
  FROM unnest((SELECT proargnames FROM pg_proc WHERE oid = 'authx.apikey_list(uuid)'::regprocedure)) a;
SELECT authx.user_disable(:'ul');
SELECT name, status FROM authx.apikey_list(:'ul');
SELECT authx.user_enable(:'ul');
SELECT count(*) AS no_keys FROM authx.apikey_list(gen_random_uuid());
SELECT count(*) AS null_user FROM authx.apikey_list(NULL);

-- ================================================================ usage
-- Counts per answer code, including those not yet persisted by the worker;
-- rolled-back verifications count too.
SELECT key_id AS us_id, api_key AS us FROM authx.apikey_create(:'uid', 'usage', '{docs:read}') \gset
SELECT count(*) AS before_use FROM authx.apikey_usage(:'us_id');
SELECT code FROM authx.apikey_verify(:'us');
SELECT code FROM authx.apikey_verify(:'us', 'docs:read');
BEGIN;
SELECT code FROM authx.apikey_verify(:'us');
ROLLBACK;
SELECT code FROM authx.apikey_verify(:'us', 'docs:write');
SELECT authx.apikey_revoke(:'us_id');
SELECT code FROM authx.apikey_verify(:'us');
SELECT code FROM authx.apikey_verify(:'us');
SELECT code FROM authx.apikey_verify(substr(:'us', 1, 17) || substr(:'key', 18));
SELECT * FROM authx.apikey_usage(:'us_id');
SELECT count(*) AS future FROM authx.apikey_usage(:'us_id', now() + interval '2 hours');
SELECT count(*) AS unknown_key FROM authx.apikey_usage(gen_random_uuid());
SELECT * FROM authx.apikey_usage(:'m_id');
SELECT * FROM authx.apikey_usage(:'rl_id');

-- ================================================================ audit events
-- Written in the caller's transaction: a rolled-back change leaves none.
SELECT authx.user_create('apikey-audit@example.com', 'correct horse battery') AS ua \gset
BEGIN;
SELECT key_id AS gone_id FROM authx.apikey_create(:'ua', 'rolled back') \gset
ROLLBACK;
SELECT key_id AS au_id, api_key AS au FROM authx.apikey_create(:'ua', ' audited ', '{docs:read}', expires_at => '2100-01-01 00:00:00+00') \gset
BEGIN;
SELECT authx.apikey_rotate(:'au_id') IS NOT NULL AS rotated_then_rolled_back;
SELECT authx.apikey_update(:'au_id', name => 'rolled back');
SELECT authx.apikey_revoke(:'au_id');
ROLLBACK;
SELECT authx.apikey_rotate(:'au_id', '2 hours') AS au2 \gset
SELECT authx.apikey_update(:'au_id', name => 'audited 2', rate_limit => 5, clear => '{expires_at}');
SELECT authx.apikey_update(:'au_id');
SELECT authx.apikey_revoke(:'au_id');
SELECT authx.apikey_revoke(:'au_id');
SELECT event_type, severity, details - '{key_id,prefix}'::text[] AS details,
       details->>'key_id' = :'au_id' AS key_id, details->>'prefix' = substr(:'au', 5, 12) AS prefix
  FROM authx.audit_log WHERE user_id = :'ua' AND event_type LIKE 'apikey.%' ORDER BY id;
SELECT count(*) AS rolled_back_key FROM authx.audit_log WHERE details->>'key_id' = :'gone_id';
SELECT count(*) AS secret_in_audit FROM authx.audit_log
 WHERE strpos(details::text, substr(:'au', 18)) > 0 OR strpos(details::text, substr(:'au2', 18)) > 0;

-- ================================================================ invalid input
-- The calls name their arguments <uid>, <key> ... (random values, filled
-- in by pg_temp.call) so that the listing is the same on every run.
CREATE FUNCTION pg_temp.call(c text) RETURNS text LANGUAGE sql AS $$
    SELECT replace(replace(replace(replace(replace(replace(c,
           '<uid>', quote_literal(current_setting('regress.uid'))),
           '<udel>', quote_literal(current_setting('regress.udel'))),
           '<udis>', quote_literal(current_setting('regress.udis'))),
           '<kid>', quote_literal(current_setting('regress.kid'))),
           '<r_id>', quote_literal(current_setting('regress.r_id'))),
           '<key>', quote_literal(current_setting('regress.key')))
$$;
SELECT authx.user_create('apikey-disabled@example.com', 'correct horse battery') AS udis \gset
SELECT authx.user_disable(:'udis');
SELECT authx.user_create('apikey-deleted@example.com', 'correct horse battery') AS udel \gset
SELECT authx.user_delete(:'udel');
SELECT count(*) AS keys_before FROM authx.api_keys WHERE user_id = :'uid' \gset
SET regress.uid = :'uid';
SET regress.udel = :'udel';
SET regress.udis = :'udis';
SET regress.kid = :'kid';
SET regress.r_id = :'r_id';
SET regress.key = :'key';
SELECT call, regress.try(pg_temp.call(call)) AS result FROM (VALUES
    ($$authx.apikey_create(NULL, 'x')$$),
    ($$authx.apikey_create(<uid>, NULL)$$),
    ($$authx.apikey_create(<uid>, '   ')$$),
    ($$authx.apikey_create(<uid>, '')$$),
    ($$authx.apikey_create(<uid>, E'tab\there')$$),
    ($$authx.apikey_create(<uid>, repeat('n', 201))$$),
    ($$authx.apikey_create(<uid>, 'x', '{Docs:read}')$$),
    ($$authx.apikey_create(<uid>, 'x', '{docs}')$$),
    ($$authx.apikey_create(<uid>, 'x', '{docs:}')$$),
    ($$authx.apikey_create(<uid>, 'x', '{:read}')$$),
    ($$authx.apikey_create(<uid>, 'x', '{a:b:c}')$$),
    ($$authx.apikey_create(<uid>, 'x', '{doc*:read}')$$),
    ($$authx.apikey_create(<uid>, 'x', '{_docs:read}')$$),
    ($$authx.apikey_create(<uid>, 'x', '{docs:re/ad}')$$),
    ($$authx.apikey_create(<uid>, 'x', ARRAY[repeat('a', 101) || ':read'])$$),
    ($$authx.apikey_create(<uid>, 'x', '{docs:read, NULL}')$$),
    ($$authx.apikey_create(<uid>, 'x', expires_at => now() - interval '1 second')$$),
    ($$authx.apikey_create(<uid>, 'x', expires_at => now())$$),
    ($$authx.apikey_create(<uid>, 'x', rate_limit => 0)$$),
    ($$authx.apikey_create(<uid>, 'x', rate_limit => -5)$$),
    ($$authx.apikey_create(<uid>, 'x', rate_window => '999 milliseconds')$$),
    ($$authx.apikey_create(<uid>, 'x', rate_window => '366 days 1 second')$$),
    ($$authx.apikey_create(<uid>, 'x', rate_window => '-1 minute')$$),
    ($$authx.apikey_create(<uid>, 'x', rate_window => NULL)$$),
    ($$authx.apikey_create(<uid>, 'x', remaining => -1)$$),
    ($$authx.apikey_create(<uid>, 'x', refill_amount => 5)$$),
    ($$authx.apikey_create(<uid>, 'x', refill_interval => '1 day')$$),
    ($$authx.apikey_create(<uid>, 'x', refill_amount => 0, refill_interval => '1 day')$$),
    ($$authx.apikey_create(<uid>, 'x', refill_amount => 5, refill_interval => '999 milliseconds')$$),
    ($$authx.apikey_create('00000000-0000-0000-0000-000000000000', 'x')$$),
    ($$authx.apikey_create(<udel>, 'x')$$),
    ($$authx.apikey_create(<udis>, 'x')$$)
) v(call);
SELECT count(*) = :keys_before AS nothing_left_behind FROM authx.api_keys WHERE user_id = :'uid';

SELECT call, regress.try(pg_temp.call(call)) AS result FROM (VALUES
    ($$authx.apikey_verify(<key>, 'Docs:read')$$),
    ($$authx.apikey_verify(<key>, 'docs')$$),
    ($$authx.apikey_verify(<key>, '')$$),
    ($$authx.apikey_verify(<key>, 'a:b:c')$$),
    ($$authx.apikey_verify('garbage', 'docs read')$$),
    ($$authx.apikey_verify(NULL, 'docs:read', -1)$$),
    ($$authx.apikey_verify(<key>, cost => -1)$$),
    ($$authx.apikey_verify(<key>, cost => 0)$$)
) v(call);

SELECT call, regress.try(pg_temp.call(call)) AS result FROM (VALUES
    ($$authx.apikey_rotate(NULL)$$),
    ($$authx.apikey_rotate('00000000-0000-0000-0000-000000000000')$$),
    ($$authx.apikey_rotate(<kid>, NULL)$$),
    ($$authx.apikey_rotate(<kid>, '-1 second')$$),
    ($$authx.apikey_rotate(<kid>, '30 days 1 second')$$),
    ($$authx.apikey_rotate(<r_id>)$$),
    ($$authx.apikey_revoke(NULL)$$),
    ($$authx.apikey_update(NULL)$$),
    ($$authx.apikey_update('00000000-0000-0000-0000-000000000000', name => 'x')$$),
    ($$authx.apikey_update(<kid>, clear => '{name}')$$),
    ($$authx.apikey_update(<kid>, clear => '{expires_at, bogus}')$$),
    ($$authx.apikey_update(<kid>, clear => ARRAY[NULL]::text[])$$),
    ($$authx.apikey_update(<kid>, name => ' ')$$),
    ($$authx.apikey_update(<kid>, scopes => '{Bad}')$$),
    ($$authx.apikey_update(<kid>, expires_at => now())$$),
    ($$authx.apikey_update(<kid>, rate_limit => 0)$$),
    ($$authx.apikey_update(<kid>, rate_window => '0')$$),
    ($$authx.apikey_update(<kid>, remaining => -1)$$),
    ($$authx.apikey_update(<kid>, refill_amount => 5)$$),
    ($$authx.apikey_update(<kid>, refill_interval => '1 day')$$),
    ($$authx.apikey_update(<kid>, refill_amount => -1, refill_interval => '1 day')$$),
    ($$authx.apikey_update(<kid>, refill_amount => 1, refill_interval => '0.5 seconds')$$)
) v(call);
-- The failed calls changed nothing.
SELECT name, scopes, expires_at, rate_limit, rate_window, remaining, refill_amount, revoked_at, prev_hash
  FROM authx.api_keys WHERE id = :'kid';
SELECT code FROM authx.apikey_verify(:'key');

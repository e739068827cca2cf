-- 02_privileges.sql — who may do what, exercised with SET ROLE.
--
-- Covers:
--   * authx_app: cannot SELECT authx.users (not even id, not password_hash),
--     authx.sessions, authx.lockouts or active_lockouts, cannot write users,
--     sessions or audit_log, cannot call the admin functions
--     (user_disable/enable/delete, user_unlock, maintenance_run,
--     audit_flush, _stats) nor read authx.stats / audit_log /
--     audit_partitions, cannot call internal functions (_password_hash,
--     _audit_tx, _partitions_maintain, _maintenance_run_at, _lockout_*,
--     _token_new, _session_insert, ...), cannot change the SUSET password,
--     session and lockout settings, cannot call cache_sync / cache_status
--     nor the trigger functions _sessions_version / _sessions_cache, cannot
--     read authx.redis_url (SHOW, current_setting) — all 42501 — nor turn
--     the cache off for its session (SET authx.redis_url: 55P02); cannot
--     manage roles and grants (role_create, role_set_parent, role_drop,
--     role_grant, role_revoke, role_list, user_grant, user_revoke), read
--     or write authx.roles, role_permissions, user_roles, api_keys,
--     api_key_usage, nor call the RBAC and API key internals (_rbac_*,
--     _role_require, _permission*, _roles_check_cycle, _user_deleted_roles,
--     _apikey*, _api_keys_cache, _user_status_apikeys) — all 42501; cannot
--     manage rate limits (rate_policy_set, rate_override_set,
--     rate_override_remove), read or write authx.rate_limit_policies or
--     rate_limit_overrides, nor call _ratelimit_purge or the trigger
--     functions _unseed and _rate_policy_merge_seed — all 42501; cannot
--     manage IP blocks (ip_block, ip_unblock, ip_allow, ip_disallow,
--     ip_blocks), read or write authx.ip_blocks, nor call _ip_blocks_live,
--     _ip_blocked_sql, _ipblock_purge or the trigger function
--     _ip_blocks_changed — all 42501; cannot manage threat rules
--     (threat_rule_set, threat_rule_drop) nor call security_summary, read
--     or write authx.threat_rules, nor call _threat_block (would block any
--     address), _alert (would forge an alert), _account_tag, _ip_key or the
--     trigger functions _policy_changed and _threat_rule_merge_seed — all
--     42501; cannot read or write authx.mfa_totp, mfa_recovery_codes or
--     mfa_challenges, call the MFA internals (_totp_seed_new, _totp_match,
--     _totp_code, _uri_encode, _recovery_hash, _mfa_gate, _mfa_failed,
--     _totp_check, _recovery_check, _mfa_challenge_new, _mfa_purge, the
--     trigger function _user_inactive_mfa), read authx.key_file (SHOW,
--     current_setting) or change the SUSET settings totp_digits,
--     totp_period, totp_window, mfa_max_failures, mfa_challenge_ttl — all
--     42501; cannot read or write authx.signing_keys (sealed private keys),
--     refresh_families, trusted_devices or user_tokens, call
--     signing_key_rotate, signing_key_secret (an HS256 secret) or the token,
--     device and verification internals (_signing_keys_changed,
--     _signing_key_new, _signing_key_ensure, _jwt_sign (any claims),
--     _ed25519, _b64url, _reserved_claims, _access_token (a token for any
--     user), _refresh_token_new, _refresh_token_parse, _token_refresh,
--     _tokens_purge, _device_check, _devices_revoke_all, _devices_purge,
--     _user_token_new (a reset token for any user), _user_token_take,
--     _user_tokens_purge), nor change the SUSET settings token_alg,
--     token_ttl, token_role, token_issuer, token_audience,
--     refresh_reuse_grace, verification_ttl, reset_ttl, device_ttl — all
--     42501; can use its forty-seven functions (the API key functions,
--     apikey_verify with an ip included, has_permission, user_permissions,
--     user_roles, rate_limit, rate_peek, rate_check, ip_blocked and the MFA
--     API included: totp_enroll with its otpauth URI, totp_confirm and
--     totp_verify with codes computed from the secret, recovery_codes_generate,
--     recovery_code_use, login answering mfa_required, login_mfa with a
--     recovery code, device_trust, devices, login with the device token
--     answering ok, device_revoke, totp_disable; token_issue with a custom
--     claim, token_verify, token_refresh, jwks listing the key the token
--     names; email_verification_issue and _confirm, password_reset_issue
--     and _confirm, the new password working; usage_record), and user_get
--     never exposes a password hash;
--   * authx_admin: reads every users column but password_hash (42501 on it
--     and on SELECT *), reads audit_log, authx.stats, audit_partitions and
--     active_lockouts, but no column of authx.sessions (token_hash
--     included) and not the raw authx.lockouts; calls the admin functions
--     (maintenance_run() with the real clock, user_unlock, cache_sync,
--     cache_status), manages roles and grants (role_create,
--     role_set_parent, role_grant, role_revoke, role_list, user_grant,
--     user_revoke, role_drop), manages rate limits (rate_policy_set,
--     rate_override_set, rate_override_remove) and reads authx.roles,
--     role_permissions, user_roles, api_key_usage, rate_limit_policies and
--     rate_limit_overrides, manages IP blocks (ip_block, ip_unblock,
--     ip_allow, ip_disallow, ip_blocks) and reads authx.ip_blocks, manages
--     threat rules (threat_rule_set, threat_rule_drop), reads
--     authx.threat_rules and calls security_summary, but still cannot call
--     internals (_maintenance_run_at with a fake clock included, the cache
--     trigger functions, _rbac_resolve, _rbac_purge, _apikeys_purge,
--     _ratelimit_purge, the trigger functions _user_deleted_roles, _unseed,
--     _rate_policy_merge_seed, _threat_rule_merge_seed and _policy_changed,
--     _ip_blocks_live, _ip_blocked_sql, _ipblock_purge, _ip_blocks_changed,
--     _threat_block, _alert, _account_tag, _ip_key, and every MFA internal)
--     nor write to the audit trail, users, sessions, the RBAC, the
--     rate-limit tables, ip_blocks or threat_rules, nor read authx.api_keys
--     (key hashes), the three MFA tables (sealed seeds, code and challenge
--     hashes), authx.redis_url (it may hold a password) or authx.key_file,
--     nor change the MFA settings; authx.redis_url and authx.key_file are in
--     no row of pg_settings it sees; it inherits the MFA API; it rotates
--     the signing keys (signing_key_rotate, the new kid in jwks) but cannot
--     read or write signing_keys, refresh_families, trusted_devices or
--     user_tokens, call signing_key_secret or any token, device or
--     verification internal, nor change token_alg, token_ttl, token_role;
--   * usage analytics: authx_app records requests (usage_record, every
--     argument or only the three required) but cannot call usage_summary,
--     metrics or health, read or write usage_log (nor its default
--     partition), usage_hourly or usage_hourly_ip, call the internals
--     _latency_hist, _hist_add, _hist_sum (the aggregate), _hist_quantile,
--     _usage_purge, _partitions_ahead — all 42501 — nor execute the
--     aggregate's support functions _hist_accum and _hist_final (no
--     grant; their internal arguments make them uncallable from SQL
--     anyway), nor change
--     authx.usage_retention (SIGHUP) or authx.usage_queue_size (postmaster)
--     (55P02); authx_admin calls usage_summary (a jsonb object), metrics
--     (Prometheus text) and health (a status), reads the three tables and
--     inherits usage_record, but cannot write the tables, read the default
--     partition directly, call the internals (42501) or change
--     usage_retention (55P02);
--   * settings and alerts: authx_app calls setting_get (a grant checked in
--     01_schema) but not setting_set, setting_list, alerts_check or
--     _alerts_check, and reads or writes neither settings, alert_state nor
--     the alerts view (42501); authx_admin changes a setting through
--     setting_set, lists them, reads the alerts view, but cannot write
--     settings directly (unaudited), read or write alert_state, or call
--     _alerts_check with a clock of its own (42501);
--   * neither role has a table or column privilege on mfa_totp,
--     mfa_recovery_codes, mfa_challenges, signing_keys, refresh_families,
--     trusted_devices or user_tokens; authx_admin has exactly SELECT on
--     usage_log, usage_hourly, usage_hourly_ip, authx_app nothing, and
--     neither anything on usage_log_default;
--   * a fresh role with no grants cannot call any authx function: neither
--     without USAGE on the schema nor with it (each function tried with
--     non-NULL arguments, so a STRICT function cannot short-circuit; a
--     function with an argument type the sweep does not know gets no call,
--     and the count of calls fails); the only functions without a call are
--     _hist_accum and _hist_final, whose internal arguments no SQL
--     expression can supply (has_function_privilege covers them).
-- The worker must not be left needing to create today's partitions while
-- this transaction holds locks on audit_log (ATTACH PARTITION needs ACCESS
-- EXCLUSIVE on the default partition, and a blocked maintenance pass also
-- stops the audit drain that audit_flush waits for).  On a fresh cluster
-- the worker may not have run yet, so make today's partitions first.
DO $$ BEGIN PERFORM authx.maintenance_run(); END $$;

BEGIN;
SELECT plan(700);

-- Cheap hashes: cost is not what this file tests.
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;

SELECT authx.user_create('pgtap-privs-1@example.com', 'privs password 1') AS uid \gset
-- A user for the MFA functions (its login answers mfa_required once TOTP is on).
SELECT authx.user_create('pgtap-privs-mfa@example.com', 'privs mfa password') AS mfa_uid \gset
-- A user whose password the application resets (a reset revokes its sessions).
SELECT authx.user_create('pgtap-privs-reset@example.com', 'privs reset password 1') AS reset_uid \gset
-- RFC 4648 base32 (no padding) to bytes: the app is shown the TOTP secret,
-- the superuser computes codes from it with authx._totp_code.
CREATE FUNCTION pg_temp.base32_decode(p text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT decode(string_agg(lpad(to_hex(substr(b.bits, 8 * i + 1, 8)::bit(8)::int), 2, '0'), '' ORDER BY i), 'hex')
      FROM (SELECT string_agg((strpos('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', c) - 1)::bit(5)::text, '' ORDER BY o) AS bits
              FROM regexp_split_to_table(p, '') WITH ORDINALITY AS t(c, o)) b,
           generate_series(0, length(b.bits) / 8 - 1) AS i
$$;
-- A role and a grant for the application to ask about.
SELECT authx.role_create('pgtap_privs_role', 'guest') AS r1, authx.role_grant('pgtap_privs_role', 'privs:read') AS r2,
       authx.user_grant(:'uid', 'pgtap_privs_role') AS r3 \gset

-- ================================================================ authx_app
SET ROLE authx_app;

SELECT throws_ok('SELECT id FROM authx.users', '42501', NULL, 'app: cannot SELECT authx.users.id');
SELECT throws_ok('SELECT password_hash FROM authx.users', '42501', NULL, 'app: cannot SELECT authx.users.password_hash');
SELECT throws_ok('SELECT count(*) FROM authx.users', '42501', NULL, 'app: cannot count authx.users');
SELECT throws_ok($$UPDATE authx.users SET status = 'active'$$, '42501', NULL, 'app: cannot UPDATE authx.users');
SELECT throws_ok($$INSERT INTO authx.audit_log (at, event_type, severity) VALUES (now(), 'forged', 'info')$$,
                 '42501', NULL, 'app: cannot INSERT into authx.audit_log (forge events)');
SELECT throws_ok('SELECT count(*) FROM authx.audit_log', '42501', NULL, 'app: cannot read authx.audit_log');
SELECT throws_ok('SELECT * FROM authx.audit_partitions', '42501', NULL, 'app: cannot read authx.audit_partitions');
SELECT throws_ok('SELECT * FROM authx.stats', '42501', NULL, 'app: cannot read authx.stats');
SELECT throws_ok('SELECT * FROM authx._stats()', '42501', NULL, 'app: cannot call authx._stats()');
SELECT throws_ok(format('SELECT authx.user_disable(%L)', :'uid'), '42501', NULL, 'app: cannot call user_disable');
SELECT throws_ok(format('SELECT authx.user_enable(%L)', :'uid'), '42501', NULL, 'app: cannot call user_enable');
SELECT throws_ok(format('SELECT authx.user_delete(%L)', :'uid'), '42501', NULL, 'app: cannot call user_delete');
SELECT throws_ok('SELECT authx.maintenance_run()', '42501', NULL, 'app: cannot call maintenance_run');
SELECT throws_ok($$SELECT authx.audit_flush('1 second')$$, '42501', NULL, 'app: cannot call audit_flush');
SELECT throws_ok($$SELECT authx._password_hash('some password 1', false)$$, '42501', NULL,
                 'app: cannot call _password_hash (would bypass the policy)');
SELECT throws_ok($$SELECT authx._password_check('$argon2id$', 'x')$$, '42501', NULL, 'app: cannot call _password_check');
SELECT throws_ok(format($$SELECT authx._audit_tx('forged', 'info', %L)$$, :'uid'), '42501', NULL,
                 'app: cannot call _audit_tx');
SELECT throws_ok($$SELECT authx._partitions_maintain('authx.audit_log', 0, 1, now() + interval '10 years')$$,
                 '42501', NULL, 'app: cannot call _partitions_maintain');
SELECT throws_ok(format($$SELECT authx._user_set_status(%L, 'active', 'user.enabled')$$, :'uid'), '42501', NULL,
                 'app: cannot call _user_set_status');
SELECT throws_ok('SET authx.password_min_length = 1', '42501', NULL, 'app: cannot lower authx.password_min_length');
SELECT throws_ok('SET authx.password_opslimit = 1', '42501', NULL, 'app: cannot change authx.password_opslimit');
SELECT throws_ok('SET authx.password_memlimit = 8', '42501', NULL, 'app: cannot change authx.password_memlimit');
-- Sessions and lockouts.
SELECT throws_ok('SELECT id FROM authx.sessions', '42501', NULL, 'app: cannot SELECT authx.sessions');
SELECT throws_ok('SELECT token_hash FROM authx.sessions', '42501', NULL, 'app: cannot SELECT authx.sessions.token_hash');
SELECT throws_ok($$UPDATE authx.sessions SET expires_at = 'infinity'$$, '42501', NULL,
                 'app: cannot UPDATE authx.sessions (extend a session)');
SELECT throws_ok('SELECT * FROM authx.lockouts', '42501', NULL, 'app: cannot SELECT authx.lockouts');
SELECT throws_ok('DELETE FROM authx.lockouts', '42501', NULL, 'app: cannot DELETE from authx.lockouts');
SELECT throws_ok('SELECT * FROM authx.active_lockouts', '42501', NULL, 'app: cannot read authx.active_lockouts');
SELECT throws_ok(format('SELECT authx.user_unlock(%L)', :'uid'), '42501', NULL, 'app: cannot call user_unlock');
SELECT throws_ok($$SELECT authx._maintenance_run_at(now() + interval '10 years')$$, '42501', NULL,
                 'app: cannot call _maintenance_run_at');
SELECT throws_ok(format($$SELECT authx._lockout_fail(%L, '192.0.2.1')$$, :'uid'), '42501', NULL,
                 'app: cannot call _lockout_fail (would lock anybody out)');
SELECT throws_ok(format('SELECT authx._lockout_clear(%L, NULL)', :'uid'), '42501', NULL,
                 'app: cannot call _lockout_clear (would unlock)');
SELECT throws_ok(format('SELECT authx._lockout_state(%L, NULL)', :'uid'), '42501', NULL, 'app: cannot call _lockout_state');
SELECT throws_ok(format('SELECT authx._session_insert(%L, NULL, NULL, NULL)', :'uid'), '42501', NULL,
                 'app: cannot call _session_insert (no audit event)');
SELECT throws_ok($$SELECT authx._token_new('axs_')$$, '42501', NULL, 'app: cannot call _token_new');
SELECT throws_ok('SELECT authx._sessions_purge(now())', '42501', NULL, 'app: cannot call _sessions_purge');
SELECT throws_ok(format($$SELECT authx._password_rehash(%L, 'x', 'some password 1')$$, :'uid'), '42501', NULL,
                 'app: cannot call _password_rehash');
SELECT throws_ok('SET authx.lockout_threshold = 1000', '42501', NULL, 'app: cannot change authx.lockout_threshold');
SELECT throws_ok('SET authx.lockout_account_threshold = 0', '42501', NULL, 'app: cannot change authx.lockout_account_threshold');
SELECT throws_ok('SET authx.touch_interval = 0', '42501', NULL, 'app: cannot change authx.touch_interval');
SELECT throws_ok($$SET authx.session_ttl = '10y'$$, '42501', NULL, 'app: cannot change authx.session_ttl');
SELECT throws_ok('SET authx.max_sessions_per_user = 0', '42501', NULL, 'app: cannot change authx.max_sessions_per_user');
-- The Redis cache.
SELECT throws_ok($$SELECT authx.cache_sync('1 second')$$, '42501', NULL, 'app: cannot call cache_sync');
SELECT throws_ok('SELECT authx.cache_status()', '42501', NULL, 'app: cannot call cache_status');
SELECT throws_ok('SELECT authx._sessions_version()', '42501', NULL, 'app: cannot call _sessions_version');
SELECT throws_ok('SELECT authx._sessions_cache()', '42501', NULL, 'app: cannot call _sessions_cache');
SELECT throws_ok('SHOW authx.redis_url', '42501', NULL, 'app: cannot SHOW authx.redis_url');
SELECT throws_ok($$SELECT current_setting('authx.redis_url')$$, '42501', NULL,
                 'app: cannot read authx.redis_url with current_setting');
SELECT throws_ok($$SET authx.redis_url = ''$$, '55P02', NULL,
                 'app: cannot turn the cache off for its session (authx.redis_url is sighup: 55P02)');
-- MFA settings: the key file is superuser-only, the rest SUSET.
SELECT throws_ok('SHOW authx.key_file', '42501', NULL, 'app: cannot SHOW authx.key_file');
SELECT throws_ok($$SELECT current_setting('authx.key_file')$$, '42501', NULL,
                 'app: cannot read authx.key_file with current_setting');
SELECT throws_ok(call, '42501', NULL, 'app: cannot ' || call)
  FROM (VALUES ('SET authx.totp_window = 10'), ('SET authx.totp_digits = 8'), ('SET authx.totp_period = 300'),
               ('SET authx.mfa_max_failures = 1000'), ('SET authx.mfa_challenge_ttl = 3600')) v(call);
-- Token, device and verification settings: SUSET (a longer token_ttl, another
-- role claim, HS256 would all be the application's to choose otherwise).
SELECT throws_ok(call, '42501', NULL, 'app: cannot ' || call)
  FROM (VALUES ($$SET authx.token_alg = 'HS256'$$), ('SET authx.token_ttl = 86400'),
               ($$SET authx.token_role = 'postgres'$$), ($$SET authx.token_issuer = 'forged'$$),
               ($$SET authx.token_audience = 'forged'$$), ('SET authx.refresh_reuse_grace = 300'),
               ('SET authx.verification_ttl = 2592000'), ('SET authx.reset_ttl = 86400'),
               ('SET authx.device_ttl = 31536000')) v(call);
-- Roles and permissions, API keys.
SELECT throws_ok(call, '42501', NULL, 'app: cannot ' || what)
  FROM (VALUES
    ('call role_create', $$SELECT authx.role_create('pgtap_privs_app')$$),
    ('call role_set_parent', $$SELECT authx.role_set_parent('pgtap_privs_role', NULL)$$),
    ('call role_drop', $$SELECT authx.role_drop('pgtap_privs_role')$$),
    ('call role_grant', $$SELECT authx.role_grant('pgtap_privs_role', '*:*')$$),
    ('call role_revoke', $$SELECT authx.role_revoke('pgtap_privs_role', 'privs:read')$$),
    ('call role_list', 'SELECT * FROM authx.role_list()'),
    ('call user_grant (grant itself admin)', format($$SELECT authx.user_grant(%L, 'admin')$$, :'uid')),
    ('call user_revoke', format($$SELECT authx.user_revoke(%L, 'pgtap_privs_role')$$, :'uid')),
    ('SELECT authx.roles', 'SELECT * FROM authx.roles'),
    ('SELECT authx.role_permissions', 'SELECT * FROM authx.role_permissions'),
    ('SELECT authx.user_roles', 'SELECT * FROM authx.user_roles'),
    ('INSERT into authx.user_roles', format($$INSERT INTO authx.user_roles (user_id, role) VALUES (%L, 'admin')$$, :'uid')),
    ('INSERT into authx.role_permissions',
     $$INSERT INTO authx.role_permissions (role, permission) VALUES ('pgtap_privs_role', '*:*')$$),
    ('SELECT authx.api_keys', 'SELECT id FROM authx.api_keys'),
    ('SELECT authx.api_key_usage', 'SELECT * FROM authx.api_key_usage'),
    ('call _rbac_resolve (another user''s permissions)', format('SELECT * FROM authx._rbac_resolve(%L, now())', :'uid')),
    ('call _rbac_purge', 'SELECT authx._rbac_purge(now())'),
    ('call _role_require', $$SELECT authx._role_require('admin')$$),
    ('call _permission_valid', $$SELECT authx._permission_valid('a:b')$$),
    ('call _permissions_normalize', $$SELECT authx._permissions_normalize('{a:b}', 'permission')$$),
    ('call _rbac_changed', 'SELECT authx._rbac_changed()'),
    ('call _roles_check_cycle', 'SELECT authx._roles_check_cycle()'),
    ('call _user_deleted_roles', 'SELECT authx._user_deleted_roles()'),
    ('call _apikey_new (mint a key)', 'SELECT * FROM authx._apikey_new()'),
    ('call _apikey_check', $$SELECT authx._apikey_check('x', NULL, NULL, NULL, NULL, NULL, NULL)$$),
    ('call _apikey_consume', $$SELECT authx._apikey_consume('00000000-0000-0000-0000-000000000000', 1, now())$$),
    ('call _apikey_touch', $$SELECT authx._apikey_touch('00000000-0000-0000-0000-000000000000', now())$$),
    ('call _apikey_lock', $$SELECT authx._apikey_lock('00000000-0000-0000-0000-000000000000')$$),
    ('call _apikey_usage_pending', $$SELECT * FROM authx._apikey_usage_pending('00000000-0000-0000-0000-000000000000')$$),
    ('call _apikeys_purge', 'SELECT authx._apikeys_purge(now())'),
    ('call _api_keys_cache', 'SELECT authx._api_keys_cache()'),
    ('call _user_status_apikeys', 'SELECT authx._user_status_apikeys()'),
    ('call rate_policy_set', $$SELECT authx.rate_policy_set('login', 1000000, '1 second')$$),
    ('call rate_override_set (bypass its own limit)',
     $$SELECT authx.rate_override_set('login', 'pgtap-privs', bypass => true)$$),
    ('call rate_override_remove', $$SELECT authx.rate_override_remove('login', 'pgtap-privs')$$),
    ('SELECT authx.rate_limit_policies', 'SELECT * FROM authx.rate_limit_policies'),
    ('SELECT authx.rate_limit_overrides', 'SELECT * FROM authx.rate_limit_overrides'),
    ('UPDATE authx.rate_limit_policies', 'UPDATE authx.rate_limit_policies SET max = 1000000'),
    ('INSERT into authx.rate_limit_overrides',
     $$INSERT INTO authx.rate_limit_overrides (policy, subject, bypass) VALUES ('login', 'pgtap-privs', true)$$),
    ('call _ratelimit_purge', 'SELECT authx._ratelimit_purge(now())'),
    ('call _unseed', 'SELECT authx._unseed()'),
    ('call _rate_policy_merge_seed', 'SELECT authx._rate_policy_merge_seed()'),
    ('call ip_block', $$SELECT authx.ip_block('198.51.100.0/24')$$),
    ('call ip_unblock', $$SELECT authx.ip_unblock('198.51.100.0/24')$$),
    ('call ip_allow (allow itself)', $$SELECT authx.ip_allow('0.0.0.0/0')$$),
    ('call ip_disallow', $$SELECT authx.ip_disallow('198.51.100.0/24')$$),
    ('call ip_blocks', 'SELECT * FROM authx.ip_blocks()'),
    ('SELECT authx.ip_blocks', 'SELECT * FROM authx.ip_blocks'),
    ('INSERT into authx.ip_blocks', $$INSERT INTO authx.ip_blocks (net, allow) VALUES ('0.0.0.0/0', true)$$),
    ('DELETE from authx.ip_blocks', 'DELETE FROM authx.ip_blocks'),
    ('call _ip_blocks_live', 'SELECT * FROM authx._ip_blocks_live(now())'),
    ('call _ip_blocked_sql', $$SELECT authx._ip_blocked_sql('198.51.100.1', now())$$),
    ('call _ipblock_purge', 'SELECT authx._ipblock_purge(now())'),
    ('call _ip_blocks_changed', 'SELECT authx._ip_blocks_changed()'),
    ('call threat_rule_set (disable a rule)',
     $$SELECT authx.threat_rule_set('login_bruteforce', 'login.failed', 20, '5 minutes', enabled => false)$$),
    ('call threat_rule_drop', $$SELECT authx.threat_rule_drop('login_bruteforce')$$),
    ('call security_summary', 'SELECT authx.security_summary()'),
    ('SELECT authx.threat_rules', 'SELECT * FROM authx.threat_rules'),
    ('UPDATE authx.threat_rules', 'UPDATE authx.threat_rules SET enabled = false'),
    ('INSERT into authx.threat_rules',
     $$INSERT INTO authx.threat_rules (name, event_type, threshold, within) VALUES ('pgtap_privs', 'x', 1, '1 hour')$$),
    ('call _threat_block (block any address)', $$SELECT authx._threat_block('198.51.100.1', 'login_bruteforce', '198.51.100.1')$$),
    ('call _alert (forge an alert)',
     $$SELECT authx._alert(now(), 'forged', 'critical', NULL, NULL, NULL, '{}')$$),
    ('call _account_tag', $$SELECT authx._account_tag('pgtap-privs-1@example.com')$$),
    ('call _ip_key', $$SELECT authx._ip_key('2001:db8::1')$$),
    ('call _policy_changed', 'SELECT authx._policy_changed()'),
    ('call _threat_rule_merge_seed', 'SELECT authx._threat_rule_merge_seed()'),
    ('SELECT authx.mfa_totp', 'SELECT * FROM authx.mfa_totp'),
    ('SELECT authx.mfa_recovery_codes', 'SELECT * FROM authx.mfa_recovery_codes'),
    ('SELECT authx.mfa_challenges', 'SELECT * FROM authx.mfa_challenges'),
    ('UPDATE authx.mfa_totp (enable TOTP without a code)', 'UPDATE authx.mfa_totp SET confirmed_at = now()'),
    ('DELETE from authx.mfa_totp (drop a second factor)', 'DELETE FROM authx.mfa_totp'),
    ('INSERT into authx.mfa_recovery_codes',
     format($$INSERT INTO authx.mfa_recovery_codes (user_id, code_hash) VALUES (%L, '\x00')$$, :'mfa_uid')),
    ('UPDATE authx.mfa_challenges (reuse a challenge)', 'UPDATE authx.mfa_challenges SET used_at = NULL'),
    ('call _totp_seed_new', format('SELECT * FROM authx._totp_seed_new(%L)', :'mfa_uid')),
    ('call _totp_match',
     format($$SELECT authx._totp_match(%L, '\x00', '123456', -1, 6, 30, 1, now())$$, :'mfa_uid')),
    ('call _totp_code', $$SELECT authx._totp_code('\x3132', now())$$),
    ('call _uri_encode', $$SELECT authx._uri_encode('a b')$$),
    ('call _recovery_hash', format($$SELECT authx._recovery_hash(%L, 'abcd-abcd-abcd')$$, :'mfa_uid')),
    ('call _mfa_gate', format('SELECT authx._mfa_gate(%L)', :'mfa_uid')),
    ('call _mfa_failed (lock anybody''s second factor)', format($$SELECT authx._mfa_failed(%L, 'totp')$$, :'mfa_uid')),
    ('call _totp_check', format($$SELECT authx._totp_check(%L, '123456')$$, :'mfa_uid')),
    ('call _recovery_check', format($$SELECT authx._recovery_check(%L, 'abcd-abcd-abcd')$$, :'mfa_uid')),
    ('call _mfa_challenge_new (a challenge without the password)',
     format('SELECT * FROM authx._mfa_challenge_new(%L, NULL, NULL)', :'mfa_uid')),
    ('call _mfa_purge', 'SELECT authx._mfa_purge(now())'),
    ('call _user_inactive_mfa', 'SELECT authx._user_inactive_mfa()'),
    ('SELECT authx.signing_keys (sealed private keys)', 'SELECT * FROM authx.signing_keys'),
    ('INSERT into authx.signing_keys (plant a key)',
     $$INSERT INTO authx.signing_keys (kid, alg, private_sealed) VALUES ('AAAAAAAAAAAAAAAA', 'HS256', '\x00')$$),
    ('SELECT authx.refresh_families', 'SELECT * FROM authx.refresh_families'),
    ('UPDATE authx.refresh_families (revive a family)', 'UPDATE authx.refresh_families SET revoked_at = NULL'),
    ('SELECT authx.trusted_devices', 'SELECT * FROM authx.trusted_devices'),
    ('UPDATE authx.trusted_devices (trust forever)', $$UPDATE authx.trusted_devices SET expires_at = 'infinity'$$),
    ('SELECT authx.user_tokens', 'SELECT * FROM authx.user_tokens'),
    ('UPDATE authx.user_tokens (reuse a token)', 'UPDATE authx.user_tokens SET used_at = NULL'),
    ('call signing_key_rotate', 'SELECT authx.signing_key_rotate()'),
    ('call signing_key_secret (read an HS256 secret)', $$SELECT authx.signing_key_secret('AAAAAAAAAAAAAAAA')$$),
    ('call _signing_keys_changed', 'SELECT authx._signing_keys_changed()'),
    ('call _signing_key_new', $$SELECT * FROM authx._signing_key_new('HS256')$$),
    ('call _signing_key_ensure', 'SELECT authx._signing_key_ensure()'),
    ('call _jwt_sign (forge any claims)', $$SELECT authx._jwt_sign('{"sub": "forged", "role": "postgres"}')$$),
    ('call _ed25519', $$SELECT * FROM authx._ed25519('\x00', '\x00')$$),
    ('call _b64url', $$SELECT authx._b64url('\x00')$$),
    ('call _reserved_claims', 'SELECT authx._reserved_claims()'),
    ('call _access_token (a token for any user)',
     format($$SELECT * FROM authx._access_token(%L, '00000000-0000-0000-0000-000000000000', '{}')$$, :'uid')),
    ('call _refresh_token_new (mint a refresh token)',
     $$SELECT * FROM authx._refresh_token_new('00000000-0000-0000-0000-000000000000', 0)$$),
    ('call _refresh_token_parse', $$SELECT * FROM authx._refresh_token_parse('axr_x')$$),
    ('call _token_refresh', $$SELECT * FROM authx._token_refresh('axr_x', NULL)$$),
    ('call _tokens_purge', 'SELECT authx._tokens_purge(now())'),
    ('call _device_check', format($$SELECT authx._device_check(%L, 'axd_x')$$, :'mfa_uid')),
    ('call _devices_revoke_all', format($$SELECT authx._devices_revoke_all(%L, 'forged')$$, :'mfa_uid')),
    ('call _devices_purge', 'SELECT authx._devices_purge(now())'),
    ('call _user_token_new (a reset token for any user)',
     format($$SELECT * FROM authx._user_token_new(%L, 'password_reset', 'x@example.com', '1 hour')$$, :'uid')),
    ('call _user_token_take', $$SELECT * FROM authx._user_token_take('axp_x', 'password_reset', 'axp_')$$),
    ('call _user_tokens_purge', 'SELECT authx._user_tokens_purge(now())'),
    ('call usage_summary', 'SELECT authx.usage_summary()'),
    ('call metrics', 'SELECT authx.metrics()'),
    ('call health', 'SELECT authx.health()'),
    ('SELECT authx.usage_log', 'SELECT * FROM authx.usage_log'),
    ('SELECT authx.usage_log_default (the partition)', 'SELECT * FROM authx.usage_log_default'),
    ('SELECT authx.usage_hourly', 'SELECT * FROM authx.usage_hourly'),
    ('SELECT authx.usage_hourly_ip', 'SELECT * FROM authx.usage_hourly_ip'),
    ('INSERT into authx.usage_log (forge usage)',
     $$INSERT INTO authx.usage_log (at, endpoint, status, latency_ms) VALUES (now(), 'GET /forged', 200, 1)$$),
    ('UPDATE authx.usage_hourly (rewrite the rollups)', 'UPDATE authx.usage_hourly SET requests = 0'),
    ('DELETE from authx.usage_hourly_ip', 'DELETE FROM authx.usage_hourly_ip'),
    ('call _latency_hist', $$SELECT authx._latency_hist('{1}')$$),
    ('call _hist_add', 'SELECT authx._hist_add(NULL, NULL)'),
    ('call the aggregate _hist_sum', 'SELECT authx._hist_sum(h) FROM (VALUES (NULL::bigint[])) v(h)'),
    ('call _hist_quantile', $$SELECT authx._hist_quantile(array_fill(0::bigint, ARRAY[96]), 0.5)$$),
    ('call _usage_purge', 'SELECT authx._usage_purge(now())'),
    ('call _partitions_ahead', $$SELECT authx._partitions_ahead('authx.usage_log')$$),
    ('call setting_set', $$SELECT authx.setting_set('alert.enabled', 'false')$$),
    ('call setting_list', 'SELECT * FROM authx.setting_list()'),
    ('call alerts_check', 'SELECT authx.alerts_check()'),
    ('call _alerts_check', 'SELECT authx._alerts_check(now())'),
    ('SELECT authx.settings', 'SELECT * FROM authx.settings'),
    ('SELECT authx.alert_state', 'SELECT * FROM authx.alert_state'),
    ('SELECT authx.alerts', 'SELECT * FROM authx.alerts'),
    ('INSERT into authx.settings (change a threshold)',
     $$INSERT INTO authx.settings (name, value) VALUES ('alert.enabled', 'false')$$)) v(what, call);
SELECT throws_ok('SET authx.usage_retention = 0', '55P02', NULL,
                 'app: cannot change authx.usage_retention (sighup: 55P02)');
SELECT throws_ok('SET authx.usage_queue_size = 1024', '55P02', NULL,
                 'app: cannot change authx.usage_queue_size (postmaster: 55P02)');

-- What the application role is for.
SELECT is(authx.user_find('PGTAP-privs-1@example.com'), :'uid'::uuid, 'app: user_find works');
SELECT is((SELECT email FROM authx.user_get(:'uid')), 'pgtap-privs-1@example.com', 'app: user_get works');
SELECT is(authx.password_verify(:'uid', 'privs password 1'), true, 'app: password_verify works');
SELECT lives_ok(format($$SELECT authx.password_set(%L, 'privs password 2')$$, :'uid'), 'app: password_set works');
SELECT isnt(authx.user_create('pgtap-privs-2@example.com', 'privs password 3'), NULL, 'app: user_create works');
SELECT lives_ok($$SELECT authx.audit('pgtap.privs', 'low', details => '{"tag": "pgtap-privs"}')$$, 'app: audit works');
SELECT session_token AS app_tok FROM authx.login('pgtap-privs-1@example.com', 'privs password 2', '192.0.2.10') \gset
SELECT is(authx.session_validate(:'app_tok'), :'uid'::uuid, 'app: login and session_validate work');
SELECT is((SELECT user_id FROM authx.session_info(:'app_tok')), :'uid'::uuid, 'app: session_info works');
SELECT is((SELECT count(*) FROM authx.sessions(:'uid'))::int, 1, 'app: sessions() works');
SELECT session_token AS app_tok2 FROM authx.session_create(:'uid') \gset
SELECT is(authx.session_revoke(:'app_tok2'), true, 'app: session_create and session_revoke work');
SELECT is(authx.session_revoke_id((SELECT session_id FROM authx.sessions(:'uid'))), true, 'app: session_revoke_id works');
SELECT is(authx.session_revoke_all(:'uid'), 0, 'app: session_revoke_all works');
SELECT is(authx.has_permission(:'uid', 'privs:read'), true, 'app: has_permission works');
SELECT is(authx.user_permissions(:'uid'), '{privs:read}', 'app: user_permissions works');
SELECT is((SELECT array_agg(role ORDER BY role) FROM authx.user_roles(:'uid')), ARRAY['guest', 'pgtap_privs_role'],
          'app: user_roles works');
SELECT key_id AS app_key_id, api_key AS app_key FROM authx.apikey_create(:'uid', 'privs key', '{privs:read}') \gset
SELECT is((SELECT code FROM authx.apikey_verify(:'app_key', 'privs:read')), 'valid', 'app: apikey_create and apikey_verify work');
SELECT is((SELECT code FROM authx.apikey_verify(:'app_key', 'privs:read', 1, '192.0.2.10')), 'valid',
          'app: apikey_verify with an ip works');
SELECT is((SELECT count(*) FROM authx.apikey_list(:'uid'))::int, 1, 'app: apikey_list works');
SELECT lives_ok(format('SELECT authx.apikey_update(%L)', :'app_key_id'), 'app: apikey_update may be called');
SELECT matches(authx.apikey_rotate(:'app_key_id'), '^axk_', 'app: apikey_rotate works');
SELECT lives_ok(format('SELECT * FROM authx.apikey_usage(%L)', :'app_key_id'), 'app: apikey_usage works');
SELECT is(authx.apikey_revoke(:'app_key_id'), true, 'app: apikey_revoke works');
-- Rate limits (subjects unique to this run: buckets outlive the transaction).
SELECT 'pgtap-privs:' || gen_random_uuid() AS rl_subject \gset
SELECT is((SELECT (allowed, remaining)::text FROM authx.rate_limit(:'rl_subject', 2, '1 hour')), '(t,1)',
          'app: rate_limit works');
SELECT is((SELECT (allowed, remaining)::text FROM authx.rate_peek(:'rl_subject', 2, '1 hour')), '(t,0)',
          'app: rate_peek works');
SELECT is((SELECT (allowed, remaining)::text FROM authx.rate_check('login', :'rl_subject')), '(t,4)',
          'app: rate_check works (the seeded login policy, 5 per minute)');
SELECT is(authx.ip_blocked('198.51.100.77'), false, 'app: ip_blocked works');
-- MFA: enrol, confirm and verify with codes the superuser computes from the
-- secret the app was shown; recovery codes; a login that asks for the
-- second factor, completed with a recovery code; disable.  Four attempts
-- on the mfa policy (5 a minute per user).
SELECT secret AS mfa_secret, otpauth_uri AS mfa_uri FROM authx.totp_enroll(:'mfa_uid', 'pgtap') \gset
SELECT matches(:'mfa_secret'::text, '^[A-Z2-7]{32}$', 'app: totp_enroll works (a 160-bit base32 secret)');
SELECT is(:'mfa_uri'::text, 'otpauth://totp/pgtap:pgtap-privs-mfa%40example.com?secret=' || :'mfa_secret'
                      || '&issuer=pgtap&algorithm=SHA1&digits=6&period=30', 'app: totp_enroll gives the otpauth URI');
RESET ROLE;
SELECT authx._totp_code(pg_temp.base32_decode(:'mfa_secret'), clock_timestamp()) AS mfa_code,
       authx._totp_code(pg_temp.base32_decode(:'mfa_secret'), clock_timestamp() + interval '30 seconds') AS mfa_next
\gset
SET ROLE authx_app;
SELECT is(authx.totp_confirm(:'mfa_uid', :'mfa_code'), true, 'app: totp_confirm works');
SELECT is(authx.totp_verify(:'mfa_uid', :'mfa_next'), true, 'app: totp_verify works');
SELECT authx.recovery_codes_generate(:'mfa_uid') AS mfa_codes \gset
SELECT is(cardinality(:'mfa_codes'::text[]), 10, 'app: recovery_codes_generate works');
SELECT is(authx.recovery_code_use(:'mfa_uid', (:'mfa_codes'::text[])[1]), true, 'app: recovery_code_use works');
SELECT status AS mfa_status, session_token AS mfa_challenge
  FROM authx.login('pgtap-privs-mfa@example.com', 'privs mfa password', '192.0.2.13') \gset
SELECT is(:'mfa_status'::text, 'mfa_required', 'app: login answers mfa_required once TOTP is on');
SELECT is((SELECT status FROM authx.login_mfa(:'mfa_challenge', (:'mfa_codes'::text[])[2], '192.0.2.13')), 'ok',
          'app: login_mfa works (with a recovery code)');
-- A trusted device: a login with its token skips the second factor.
SELECT authx.device_trust(:'mfa_uid', 'pgtap-privs-device', 'privs laptop') AS mfa_device \gset
SELECT matches(:'mfa_device'::text, '^axd_[A-Za-z0-9_-]{43}$', 'app: device_trust works (an axd_ token)');
SELECT is((SELECT (name, fingerprint)::text FROM authx.devices(:'mfa_uid')), '("privs laptop",pgtap-privs-device)',
          'app: devices works');
SELECT is((SELECT status FROM authx.login('pgtap-privs-mfa@example.com', 'privs mfa password', '192.0.2.13', NULL,
                                          :'mfa_device')), 'ok',
          'app: login with a trusted device token answers ok');
SELECT is(authx.device_revoke((SELECT device_id FROM authx.devices(:'mfa_uid'))), true, 'app: device_revoke works');
SELECT is(authx.totp_disable(:'mfa_uid'), true, 'app: totp_disable works');
-- Access and refresh tokens (the signing key is made on first use, in this
-- transaction).
SELECT access_token AS app_at, refresh_token AS app_rt
  FROM authx.token_issue(:'uid', claims => '{"tenant": "privs"}') \gset
SELECT is((SELECT (c->>'sub', c->>'tenant')::text FROM authx.token_verify(:'app_at') c), format('(%s,privs)', :'uid'),
          'app: token_issue and token_verify work');
SELECT is((SELECT status FROM authx.token_refresh(:'app_rt', '192.0.2.10')), 'ok', 'app: token_refresh works');
SELECT ok(authx.jwks()->'keys' @> jsonb_build_array(jsonb_build_object('kid',
              convert_from(decode(rpad(translate(split_part(:'app_at', '.', 1), '-_', '+/'),
                                       (length(split_part(:'app_at', '.', 1)) + 3) / 4 * 4, '='), 'base64'),
                           'UTF8')::jsonb->>'kid')),
          'app: jwks works (it lists the key the access token names)');
-- Email verification and password reset.
SELECT token AS ev_token FROM authx.email_verification_issue(:'uid') \gset
SELECT matches(:'ev_token'::text, '^axv_[A-Za-z0-9_-]{43}$', 'app: email_verification_issue works (an axv_ token)');
SELECT is((SELECT (status, user_id)::text FROM authx.email_verification_confirm(:'ev_token')), format('(ok,%s)', :'uid'),
          'app: email_verification_confirm works');
SELECT token AS pr_token FROM authx.password_reset_issue('pgtap-privs-reset@example.com', '192.0.2.14') \gset
SELECT matches(:'pr_token'::text, '^axp_[A-Za-z0-9_-]{43}$', 'app: password_reset_issue works (an axp_ token)');
SELECT is((SELECT (status, user_id)::text FROM authx.password_reset_confirm(:'pr_token', 'privs reset password 2')),
          format('(ok,%s)', :'reset_uid'), 'app: password_reset_confirm works');
SELECT is(authx.password_verify(:'reset_uid', 'privs reset password 2'), true, 'app: the new password works');
-- Usage analytics: the application records each request (written later by
-- the worker, whatever this transaction does).
SELECT lives_ok(format($$SELECT authx.usage_record('GET /pgtap/privs', 200, 1.5, %L, %L, '192.0.2.10')$$,
                       '00000000-0000-0000-0000-000000000001', :'uid'),
                'app: usage_record works (every argument)');
SELECT lives_ok($$SELECT authx.usage_record('GET /pgtap/privs', 404, 0)$$,
                'app: usage_record works (endpoint, status and latency only)');

RESET ROLE;

SELECT ok(NOT 'password_hash' = ANY (SELECT unnest(proargnames) FROM pg_catalog.pg_proc
                                      WHERE oid = 'authx.user_get(uuid)'::regprocedure),
          'user_get has no password_hash output column');

-- ================================================================ authx_admin
-- Every column of authx.users except password_hash, read from the catalog.
SELECT format('SELECT %s FROM authx.users', string_agg(quote_ident(attname), ', ' ORDER BY attnum)) AS admin_cols_sql
  FROM pg_catalog.pg_attribute
 WHERE attrelid = 'authx.users'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'password_hash' \gset

SET ROLE authx_admin;

SELECT lives_ok(:'admin_cols_sql', 'admin: can read every users column but password_hash');
SELECT is((SELECT status FROM authx.users WHERE id = :'uid'), 'active', 'admin: sees the user row');
SELECT throws_ok('SELECT password_hash FROM authx.users', '42501', NULL, 'admin: cannot read users.password_hash');
SELECT throws_ok('SELECT * FROM authx.users', '42501', NULL, 'admin: SELECT * on users fails (password_hash)');
SELECT throws_ok($$SELECT 1 FROM authx.users WHERE password_hash LIKE '$argon2id$%'$$, '42501', NULL,
                 'admin: cannot filter on password_hash either');
SELECT throws_ok($$UPDATE authx.users SET status = 'active' WHERE id = gen_random_uuid()$$, '42501', NULL,
                 'admin: cannot UPDATE authx.users directly');
SELECT throws_ok('DELETE FROM authx.audit_log', '42501', NULL, 'admin: cannot DELETE from the audit trail');
SELECT throws_ok($$INSERT INTO authx.audit_log (at, event_type, severity) VALUES (now(), 'forged', 'info')$$,
                 '42501', NULL, 'admin: cannot INSERT into authx.audit_log');
SELECT lives_ok('SELECT count(*) FROM authx.audit_log', 'admin: can read authx.audit_log');
SELECT lives_ok('SELECT * FROM authx.audit_partitions', 'admin: can read authx.audit_partitions');
SELECT ok((SELECT count(*) FROM authx.stats WHERE name IN ('audit_enqueued', 'audit_written', 'password_hashes',
                                                           'password_verifies', 'maintenance_runs')) = 5,
          'admin: can read authx.stats');
SELECT throws_ok($$SELECT authx._password_hash('some password 1', false)$$, '42501', NULL, 'admin: cannot call _password_hash');
SELECT throws_ok($$SELECT authx._partitions_maintain('authx.audit_log', 0, 1, now() + interval '10 years')$$,
                 '42501', NULL, 'admin: cannot call _partitions_maintain');
SELECT throws_ok('SET authx.password_opslimit = 1', '42501', NULL, 'admin: cannot change authx.password_opslimit');
SELECT throws_ok('SELECT token_hash FROM authx.sessions', '42501', NULL, 'admin: cannot read sessions.token_hash');
SELECT throws_ok('SELECT id, user_id FROM authx.sessions', '42501', NULL, 'admin: cannot read any column of authx.sessions');
SELECT throws_ok($$UPDATE authx.sessions SET expires_at = 'infinity'$$, '42501', NULL, 'admin: cannot UPDATE authx.sessions');
SELECT throws_ok('SELECT * FROM authx.lockouts', '42501', NULL, 'admin: cannot read the raw authx.lockouts');
SELECT throws_ok('DELETE FROM authx.lockouts', '42501', NULL, 'admin: cannot DELETE from authx.lockouts');
SELECT lives_ok('SELECT * FROM authx.active_lockouts', 'admin: can read authx.active_lockouts');
SELECT throws_ok($$SELECT authx._maintenance_run_at(now() + interval '10 years')$$, '42501', NULL,
                 'admin: cannot call _maintenance_run_at (a fake clock would drop the audit trail)');
SELECT throws_ok(format('SELECT authx._lockout_clear(%L, NULL)', :'uid'), '42501', NULL, 'admin: cannot call _lockout_clear');
SELECT lives_ok(format('SELECT authx.user_unlock(%L)', :'uid'), 'admin: user_unlock works');
SELECT is(jsonb_typeof(authx.cache_status()), 'object', 'admin: cache_status works');
SELECT lives_ok($$SELECT authx.cache_sync('30 seconds')$$, 'admin: cache_sync works');
SELECT throws_ok('SELECT authx._sessions_cache()', '42501', NULL, 'admin: cannot call _sessions_cache');
SELECT throws_ok('SHOW authx.redis_url', '42501', NULL, 'admin: cannot SHOW authx.redis_url');
SELECT is((SELECT count(*) FROM pg_catalog.pg_settings WHERE name = 'authx.redis_url')::int, 0,
          'admin: authx.redis_url is not in pg_settings');
SELECT is(authx.user_disable(:'uid'), true, 'admin: user_disable works');
SELECT is(authx.user_enable(:'uid'), true, 'admin: user_enable works');
SELECT is(authx.password_verify(:'uid', 'privs password 2'), true, 'admin inherits authx_app: password_verify works');
SELECT lives_ok($$SELECT authx.audit_flush('30 seconds')$$, 'admin: audit_flush works');
-- After audit_flush: this holds the maintenance advisory lock until ROLLBACK.
SELECT lives_ok('SELECT authx.maintenance_run()', 'admin: maintenance_run() works');
-- Roles and grants.
SELECT lives_ok($$SELECT authx.role_create('pgtap_privs_admin', 'pgtap_privs_role', 'made by admin')$$,
                'admin: role_create works');
SELECT is(authx.role_grant('pgtap_privs_admin', 'privs:write'), true, 'admin: role_grant works');
SELECT lives_ok($$SELECT authx.role_set_parent('pgtap_privs_admin', NULL)$$, 'admin: role_set_parent works');
SELECT lives_ok(format($$SELECT authx.user_grant(%L, 'pgtap_privs_admin')$$, :'uid'), 'admin: user_grant works');
SELECT is(authx.has_permission(:'uid', 'privs:write'), true, 'admin inherits authx_app: has_permission works');
SELECT is((SELECT users FROM authx.role_list() WHERE name = 'pgtap_privs_admin'), 1::bigint, 'admin: role_list works');
SELECT is((SELECT count(*) FROM authx.roles WHERE name = 'pgtap_privs_admin')::int, 1, 'admin: can read authx.roles');
SELECT is((SELECT count(*) FROM authx.role_permissions WHERE role = 'pgtap_privs_admin')::int, 1,
          'admin: can read authx.role_permissions');
SELECT is((SELECT count(*) FROM authx.user_roles WHERE user_id = :'uid')::int, 2, 'admin: can read authx.user_roles');
SELECT lives_ok('SELECT count(*) FROM authx.api_key_usage', 'admin: can read authx.api_key_usage');
SELECT throws_ok('SELECT id FROM authx.api_keys', '42501', NULL, 'admin: cannot read authx.api_keys (key hashes)');
SELECT throws_ok($$INSERT INTO authx.roles (name) VALUES ('pgtap_privs_direct')$$, '42501', NULL,
                 'admin: cannot INSERT into authx.roles');
SELECT throws_ok($$UPDATE authx.user_roles SET expires_at = NULL$$, '42501', NULL, 'admin: cannot UPDATE authx.user_roles');
SELECT throws_ok('DELETE FROM authx.role_permissions', '42501', NULL, 'admin: cannot DELETE from authx.role_permissions');
SELECT throws_ok(format('SELECT * FROM authx._rbac_resolve(%L, now())', :'uid'), '42501', NULL,
                 'admin: cannot call _rbac_resolve');
SELECT throws_ok($$SELECT authx._rbac_purge(now() + interval '10 years')$$, '42501', NULL, 'admin: cannot call _rbac_purge');
SELECT throws_ok($$SELECT authx._apikeys_purge(now() + interval '10 years')$$, '42501', NULL,
                 'admin: cannot call _apikeys_purge');
SELECT throws_ok('SELECT authx._user_deleted_roles()', '42501', NULL, 'admin: cannot call _user_deleted_roles');
-- Usage analytics and monitoring.
SELECT is(jsonb_typeof(authx.usage_summary('1 hour')), 'object', 'admin: usage_summary works');
SELECT is(jsonb_typeof(authx.usage_summary(api_key_id => '00000000-0000-0000-0000-000000000001')), 'object',
          'admin: usage_summary for one API key works');
SELECT matches(authx.metrics(), '^# HELP authx_', 'admin: metrics works (Prometheus text)');
SELECT ok(authx.health()->>'status' IN ('ok', 'degraded', 'failing'), 'admin: health works');
SELECT lives_ok($$SELECT authx.usage_record('GET /pgtap/privs', 500, 2)$$,
                'admin inherits authx_app: usage_record works');
SELECT lives_ok(format('SELECT count(*) FROM authx.%I', t), format('admin: can read authx.%s', t))
  FROM unnest(ARRAY['usage_log', 'usage_hourly', 'usage_hourly_ip']) t;
SELECT throws_ok(call, code, NULL, 'admin: cannot ' || what)
  FROM (VALUES
    ('SELECT authx.usage_log_default (the partition)', 'SELECT * FROM authx.usage_log_default', '42501'),
    ('INSERT into authx.usage_log',
     $$INSERT INTO authx.usage_log (at, endpoint, status, latency_ms) VALUES (now(), 'GET /forged', 200, 1)$$, '42501'),
    ('UPDATE authx.usage_hourly', 'UPDATE authx.usage_hourly SET requests = 0', '42501'),
    ('DELETE from authx.usage_hourly_ip', 'DELETE FROM authx.usage_hourly_ip', '42501'),
    ('TRUNCATE authx.usage_log', 'TRUNCATE authx.usage_log', '42501'),
    ('call _latency_hist', $$SELECT authx._latency_hist('{1}')$$, '42501'),
    ('call _hist_add', 'SELECT authx._hist_add(NULL, NULL)', '42501'),
    ('call the aggregate _hist_sum', 'SELECT authx._hist_sum(latency_hist) FROM authx.usage_hourly', '42501'),
    ('call _hist_quantile', $$SELECT authx._hist_quantile(array_fill(0::bigint, ARRAY[96]), 0.5)$$, '42501'),
    ('call _usage_purge', $$SELECT authx._usage_purge(now() + interval '10 years')$$, '42501'),
    ('call _partitions_ahead', $$SELECT authx._partitions_ahead('authx.usage_log')$$, '42501'),
    ('SET authx.usage_retention (sighup)', 'SET authx.usage_retention = 0', '55P02'),
    ('UPDATE authx.settings (unaudited)', $$UPDATE authx.settings SET value = 'false'$$, '42501'),
    ('SELECT authx.alert_state', 'SELECT * FROM authx.alert_state', '42501'),
    ('UPDATE authx.alert_state (silence an alert)', 'UPDATE authx.alert_state SET active = false', '42501'),
    ('call _alerts_check', $$SELECT authx._alerts_check(now() + interval '1 day')$$, '42501')) v(what, call, code);
-- Settings and alerts.
SELECT is(authx.setting_set('alert.queue_fill', '0.9'), '0.9'::jsonb, 'admin: setting_set works');
SELECT ok((SELECT count(*) FROM authx.setting_list()) > 10, 'admin: setting_list works');
SELECT ok((SELECT count(*) FROM authx.alerts) = 6, 'admin: reads the alerts view');
-- The aggregate's support functions: no grant to either role (they take
-- internal, so neither could name a call to them anyway).
SELECT is((SELECT array_agg(pg_catalog.has_function_privilege(r, f, 'EXECUTE') ORDER BY r, f)
             FROM unnest(ARRAY['authx_app', 'authx_admin']) r,
                  unnest(ARRAY['authx._hist_accum(internal,bigint[])', 'authx._hist_final(internal)']) f),
          ARRAY[false, false, false, false],
          'neither authx_app nor authx_admin may execute _hist_accum or _hist_final');
-- Rate limits.
SELECT lives_ok($$SELECT authx.rate_policy_set('pgtap_privs', 2, '1 hour', description => 'made by admin')$$,
                'admin: rate_policy_set works');
SELECT lives_ok(format($$SELECT authx.rate_override_set('pgtap_privs', %L, max => 3)$$, :'rl_subject'),
                'admin: rate_override_set works');
SELECT is((SELECT (max, per, seeded)::text FROM authx.rate_limit_policies WHERE name = 'pgtap_privs'), '(2,01:00:00,f)',
          'admin: can read authx.rate_limit_policies');
SELECT is((SELECT max FROM authx.rate_limit_overrides WHERE policy = 'pgtap_privs' AND subject = :'rl_subject'), 3,
          'admin: can read authx.rate_limit_overrides');
SELECT is((SELECT remaining FROM authx.rate_check('pgtap_privs', :'rl_subject')), 2,
          'admin inherits authx_app: rate_check works (with the override, 3 per hour)');
SELECT is(authx.rate_override_remove('pgtap_privs', :'rl_subject'), true, 'admin: rate_override_remove works');
SELECT throws_ok($$INSERT INTO authx.rate_limit_policies (name, max, per) VALUES ('pgtap_privs_direct', 1, '1 hour')$$,
                 '42501', NULL, 'admin: cannot INSERT into authx.rate_limit_policies');
SELECT throws_ok('UPDATE authx.rate_limit_policies SET max = 1000000', '42501', NULL,
                 'admin: cannot UPDATE authx.rate_limit_policies');
SELECT throws_ok('DELETE FROM authx.rate_limit_overrides', '42501', NULL, 'admin: cannot DELETE from authx.rate_limit_overrides');
SELECT throws_ok($$SELECT authx._ratelimit_purge(now() + interval '10 years')$$, '42501', NULL,
                 'admin: cannot call _ratelimit_purge');
SELECT throws_ok('SELECT authx._unseed()', '42501', NULL, 'admin: cannot call _unseed');
SELECT throws_ok('SELECT authx._rate_policy_merge_seed()', '42501', NULL, 'admin: cannot call _rate_policy_merge_seed');
-- IP blocks (in this transaction, rolled back at the end).
SELECT lives_ok($$SELECT authx.ip_block('198.51.100.0/24', '1 hour', 'pgtap-privs')$$, 'admin: ip_block works');
SELECT is(authx.ip_blocked('198.51.100.77'), true, 'admin inherits authx_app: ip_blocked works (blocked)');
SELECT is((SELECT (net, allow, reason)::text FROM authx.ip_blocks() WHERE net = '198.51.100.0/24'),
          '(198.51.100.0/24,f,pgtap-privs)', 'admin: ip_blocks() works');
SELECT is((SELECT count(*) FROM authx.ip_blocks WHERE net = '198.51.100.0/24')::int, 1, 'admin: can read authx.ip_blocks');
SELECT lives_ok($$SELECT authx.ip_allow('198.51.100.77/32', 'pgtap-privs')$$, 'admin: ip_allow works');
SELECT is(authx.ip_disallow('198.51.100.77/32'), true, 'admin: ip_disallow works');
SELECT is(authx.ip_unblock('198.51.100.0/24'), true, 'admin: ip_unblock works');
SELECT throws_ok($$INSERT INTO authx.ip_blocks (net) VALUES ('198.51.100.0/24')$$, '42501', NULL,
                 'admin: cannot INSERT into authx.ip_blocks');
SELECT throws_ok('UPDATE authx.ip_blocks SET until = NULL', '42501', NULL, 'admin: cannot UPDATE authx.ip_blocks');
SELECT throws_ok('DELETE FROM authx.ip_blocks', '42501', NULL, 'admin: cannot DELETE from authx.ip_blocks');
SELECT throws_ok('SELECT * FROM authx._ip_blocks_live(now())', '42501', NULL, 'admin: cannot call _ip_blocks_live');
SELECT throws_ok($$SELECT authx._ip_blocked_sql('198.51.100.77', now())$$, '42501', NULL,
                 'admin: cannot call _ip_blocked_sql');
SELECT throws_ok($$SELECT authx._ipblock_purge(now() + interval '10 years')$$, '42501', NULL,
                 'admin: cannot call _ipblock_purge');
SELECT throws_ok('SELECT authx._ip_blocks_changed()', '42501', NULL, 'admin: cannot call _ip_blocks_changed');
SELECT throws_ok($$SELECT authx._ip_key('2001:db8::1')$$, '42501', NULL, 'admin: cannot call _ip_key');
-- Threat rules (in this transaction, rolled back at the end; no event of
-- this type comes, so the rule never fires).
SELECT lives_ok($$SELECT authx.threat_rule_set('pgtap_privs', 'pgtap.privs_threat', 1000, '1 hour',
                                               description => 'made by admin')$$,
                'admin: threat_rule_set works');
SELECT is((SELECT (event_type, threshold, within, block_for, enabled, seeded)::text FROM authx.threat_rules
            WHERE name = 'pgtap_privs'),
          '(pgtap.privs_threat,1000,01:00:00,01:00:00,t,f)', 'admin: can read authx.threat_rules');
SELECT is(jsonb_typeof(authx.security_summary('1 hour')), 'object', 'admin: security_summary works');
SELECT is(authx.threat_rule_drop('pgtap_privs'), true, 'admin: threat_rule_drop works');
SELECT throws_ok($$INSERT INTO authx.threat_rules (name, event_type, threshold, within)
                   VALUES ('pgtap_privs_direct', 'x', 1, '1 hour')$$,
                 '42501', NULL, 'admin: cannot INSERT into authx.threat_rules');
SELECT throws_ok('UPDATE authx.threat_rules SET enabled = false', '42501', NULL,
                 'admin: cannot UPDATE authx.threat_rules');
SELECT throws_ok('DELETE FROM authx.threat_rules', '42501', NULL, 'admin: cannot DELETE from authx.threat_rules');
SELECT throws_ok($$SELECT authx._threat_block('198.51.100.1', 'login_bruteforce', '198.51.100.1')$$, '42501', NULL,
                 'admin: cannot call _threat_block (a block with no rule behind it)');
SELECT throws_ok($$SELECT authx._alert(now(), 'forged', 'critical', NULL, NULL, NULL, '{}')$$, '42501', NULL,
                 'admin: cannot call _alert (forge an alert)');
SELECT throws_ok($$SELECT authx._account_tag('pgtap-privs-1@example.com')$$, '42501', NULL,
                 'admin: cannot call _account_tag');
SELECT throws_ok('SELECT authx._policy_changed()', '42501', NULL, 'admin: cannot call _policy_changed');
SELECT throws_ok('SELECT authx._threat_rule_merge_seed()', '42501', NULL, 'admin: cannot call _threat_rule_merge_seed');
-- MFA: the tables, the internals and the settings are not the
-- administrator's either (seeds, recovery and challenge hashes, the key).
SELECT throws_ok(call, '42501', NULL, 'admin: cannot ' || what)
  FROM (VALUES
    ('SELECT authx.mfa_totp (sealed seeds)', 'SELECT * FROM authx.mfa_totp'),
    ('SELECT authx.mfa_recovery_codes', 'SELECT * FROM authx.mfa_recovery_codes'),
    ('SELECT authx.mfa_challenges', 'SELECT * FROM authx.mfa_challenges'),
    ('UPDATE authx.mfa_totp', 'UPDATE authx.mfa_totp SET last_step = -1'),
    ('DELETE from authx.mfa_recovery_codes', 'DELETE FROM authx.mfa_recovery_codes'),
    ('DELETE from authx.mfa_challenges', 'DELETE FROM authx.mfa_challenges'),
    ('call _totp_seed_new', format('SELECT * FROM authx._totp_seed_new(%L)', :'mfa_uid')),
    ('call _totp_match',
     format($$SELECT authx._totp_match(%L, '\x00', '123456', -1, 6, 30, 1, now())$$, :'mfa_uid')),
    ('call _totp_code', $$SELECT authx._totp_code('\x3132', now())$$),
    ('call _uri_encode', $$SELECT authx._uri_encode('a b')$$),
    ('call _recovery_hash', format($$SELECT authx._recovery_hash(%L, 'abcd-abcd-abcd')$$, :'mfa_uid')),
    ('call _mfa_gate', format('SELECT authx._mfa_gate(%L)', :'mfa_uid')),
    ('call _mfa_failed', format($$SELECT authx._mfa_failed(%L, 'totp')$$, :'mfa_uid')),
    ('call _totp_check', format($$SELECT authx._totp_check(%L, '123456')$$, :'mfa_uid')),
    ('call _recovery_check', format($$SELECT authx._recovery_check(%L, 'abcd-abcd-abcd')$$, :'mfa_uid')),
    ('call _mfa_challenge_new', format('SELECT * FROM authx._mfa_challenge_new(%L, NULL, NULL)', :'mfa_uid')),
    ('call _mfa_purge', $$SELECT authx._mfa_purge(now() + interval '10 years')$$),
    ('call _user_inactive_mfa', 'SELECT authx._user_inactive_mfa()'),
    ('SHOW authx.key_file', 'SHOW authx.key_file'),
    ('SET authx.totp_window', 'SET authx.totp_window = 10'),
    ('SET authx.mfa_max_failures', 'SET authx.mfa_max_failures = 1000'),
    ('SET authx.mfa_challenge_ttl', 'SET authx.mfa_challenge_ttl = 3600')) v(what, call);
SELECT is((SELECT count(*) FROM pg_catalog.pg_settings WHERE name = 'authx.key_file')::int, 0,
          'admin: authx.key_file is not in pg_settings');
SELECT is(authx.totp_disable(:'mfa_uid'), false, 'admin inherits authx_app: totp_disable works (nothing left)');
-- Access tokens: the administrator rotates the signing keys but reads none
-- of them, nor the refresh families, trusted devices or user tokens.
SELECT authx.signing_key_rotate() AS admin_kid \gset
SELECT matches(:'admin_kid'::text, '^[A-Za-z0-9_-]{16}$', 'admin: signing_key_rotate works (a new kid)');
SELECT ok(authx.jwks()->'keys' @> jsonb_build_array(jsonb_build_object('kid', :'admin_kid'::text)),
          'admin inherits authx_app: jwks lists the new key');
SELECT throws_ok(call, '42501', NULL, 'admin: cannot ' || what)
  FROM (VALUES
    ('SELECT authx.signing_keys (sealed private keys)', 'SELECT kid FROM authx.signing_keys'),
    ('SELECT authx.refresh_families', 'SELECT * FROM authx.refresh_families'),
    ('SELECT authx.trusted_devices', 'SELECT * FROM authx.trusted_devices'),
    ('SELECT authx.user_tokens', 'SELECT * FROM authx.user_tokens'),
    ('DELETE from authx.signing_keys', 'DELETE FROM authx.signing_keys'),
    ('UPDATE authx.refresh_families', 'UPDATE authx.refresh_families SET revoked_at = NULL'),
    ('DELETE from authx.trusted_devices', 'DELETE FROM authx.trusted_devices'),
    ('UPDATE authx.user_tokens', 'UPDATE authx.user_tokens SET used_at = NULL'),
    ('call signing_key_secret (superuser only)', format('SELECT authx.signing_key_secret(%L)', :'admin_kid')),
    ('call _signing_keys_changed', 'SELECT authx._signing_keys_changed()'),
    ('call _signing_key_new', $$SELECT * FROM authx._signing_key_new('HS256')$$),
    ('call _signing_key_ensure', 'SELECT authx._signing_key_ensure()'),
    ('call _jwt_sign', $$SELECT authx._jwt_sign('{"sub": "forged"}')$$),
    ('call _ed25519', $$SELECT * FROM authx._ed25519('\x00', '\x00')$$),
    ('call _b64url', $$SELECT authx._b64url('\x00')$$),
    ('call _reserved_claims', 'SELECT authx._reserved_claims()'),
    ('call _access_token',
     format($$SELECT * FROM authx._access_token(%L, '00000000-0000-0000-0000-000000000000', '{}')$$, :'uid')),
    ('call _refresh_token_new', $$SELECT * FROM authx._refresh_token_new('00000000-0000-0000-0000-000000000000', 0)$$),
    ('call _refresh_token_parse', $$SELECT * FROM authx._refresh_token_parse('axr_x')$$),
    ('call _token_refresh', $$SELECT * FROM authx._token_refresh('axr_x', NULL)$$),
    ('call _tokens_purge', $$SELECT authx._tokens_purge(now() + interval '10 years')$$),
    ('call _device_check', format($$SELECT authx._device_check(%L, 'axd_x')$$, :'mfa_uid')),
    ('call _devices_revoke_all', format($$SELECT authx._devices_revoke_all(%L, 'forged')$$, :'mfa_uid')),
    ('call _devices_purge', $$SELECT authx._devices_purge(now() + interval '10 years')$$),
    ('call _user_token_new',
     format($$SELECT * FROM authx._user_token_new(%L, 'password_reset', 'x@example.com', '1 hour')$$, :'uid')),
    ('call _user_token_take', $$SELECT * FROM authx._user_token_take('axp_x', 'password_reset', 'axp_')$$),
    ('call _user_tokens_purge', $$SELECT authx._user_tokens_purge(now() + interval '10 years')$$),
    ('SET authx.token_alg', $$SET authx.token_alg = 'HS256'$$),
    ('SET authx.token_ttl', 'SET authx.token_ttl = 86400'),
    ('SET authx.token_role', $$SET authx.token_role = 'postgres'$$)) v(what, call);
SELECT is(authx.role_revoke('pgtap_privs_admin', 'privs:write'), true, 'admin: role_revoke works');
SELECT is(authx.user_revoke(:'uid', 'pgtap_privs_admin'), true, 'admin: user_revoke works');
SELECT lives_ok($$SELECT authx.role_drop('pgtap_privs_admin')$$, 'admin: role_drop works');
SELECT is(authx.user_delete(:'uid'), true, 'admin: user_delete works');

RESET ROLE;

SELECT column_privs_are('authx', 'users', 'password_hash', 'authx_admin', ARRAY[]::text[],
                        'authx_admin has no privilege on users.password_hash');
SELECT column_privs_are('authx', 'users', 'email', 'authx_admin', ARRAY['SELECT'],
                        'authx_admin has SELECT on users.email');
SELECT any_column_privs_are('authx', 'users', 'authx_app', ARRAY[]::text[],
                            'authx_app has no privilege on any users column');
SELECT any_column_privs_are('authx', 'sessions', 'authx_admin', ARRAY[]::text[],
                            'authx_admin has no privilege on any sessions column');
SELECT any_column_privs_are('authx', 'sessions', 'authx_app', ARRAY[]::text[],
                            'authx_app has no privilege on any sessions column');
SELECT any_column_privs_are('authx', 'lockouts', 'authx_admin', ARRAY[]::text[],
                            'authx_admin has no privilege on any lockouts column');
SELECT table_privs_are('authx', 'active_lockouts', 'authx_admin', ARRAY['SELECT'],
                       'authx_admin has only SELECT on active_lockouts');
SELECT table_privs_are('authx', 'active_lockouts', 'authx_app', ARRAY[]::text[],
                       'authx_app has no privilege on active_lockouts');
SELECT table_privs_are('authx', t, 'authx_admin', ARRAY['SELECT'], format('authx_admin has only SELECT on %s', t))
  FROM unnest(ARRAY['roles', 'role_permissions', 'user_roles', 'api_key_usage', 'rate_limit_policies',
                    'rate_limit_overrides', 'ip_blocks', 'threat_rules', 'usage_log', 'usage_hourly',
                    'usage_hourly_ip']) t;
SELECT table_privs_are('authx', t, 'authx_app', ARRAY[]::text[], format('authx_app has no privilege on %s', t))
  FROM unnest(ARRAY['roles', 'role_permissions', 'user_roles', 'api_keys', 'api_key_usage', 'rate_limit_policies',
                    'rate_limit_overrides', 'ip_blocks', 'threat_rules', 'mfa_totp', 'mfa_recovery_codes',
                    'mfa_challenges', 'signing_keys', 'refresh_families', 'trusted_devices', 'user_tokens',
                    'usage_log', 'usage_log_default', 'usage_hourly', 'usage_hourly_ip']) t;
SELECT table_privs_are('authx', t, 'authx_admin', ARRAY[]::text[], format('authx_admin has no privilege on %s', t))
  FROM unnest(ARRAY['api_keys', 'mfa_totp', 'mfa_recovery_codes', 'mfa_challenges', 'signing_keys',
                    'refresh_families', 'trusted_devices', 'user_tokens', 'usage_log_default']) t;
SELECT is_empty(
    $$SELECT a.attrelid::regclass::text, a.attname::text FROM pg_catalog.pg_attribute a
       WHERE a.attrelid IN ('authx.mfa_totp'::regclass, 'authx.mfa_recovery_codes'::regclass,
                            'authx.mfa_challenges'::regclass, 'authx.signing_keys'::regclass,
                            'authx.refresh_families'::regclass, 'authx.trusted_devices'::regclass,
                            'authx.user_tokens'::regclass) AND a.attacl IS NOT NULL$$,
    'no column of mfa_totp, mfa_recovery_codes, mfa_challenges, signing_keys, refresh_families, trusted_devices, '
    'user_tokens has a grant');
SELECT any_column_privs_are('authx', 'api_keys', 'authx_admin', ARRAY[]::text[],
                            'authx_admin has no privilege on any api_keys column');

-- ================================================================ no grants
CREATE ROLE pgtap_privs_nobody NOLOGIN;
SET ROLE pgtap_privs_nobody;
SELECT throws_ok($$SELECT authx.user_find('pgtap-privs-2@example.com')$$, '42501', NULL,
                 'nobody: no USAGE on schema authx');
SELECT throws_ok('SELECT * FROM authx.stats', '42501', NULL, 'nobody: cannot read authx.stats');
RESET ROLE;

-- Even with USAGE on the schema, EXECUTE is refused on every function.
-- Arguments are non-NULL so the planner cannot fold a STRICT call away.
GRANT USAGE ON SCHEMA authx TO pgtap_privs_nobody;
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND pg_catalog.has_function_privilege('pgtap_privs_nobody', p.oid, 'EXECUTE')$$,
    'nobody: has_function_privilege is false for every authx function');

-- An argument of a type not listed leaves the call NULL (and fails the
-- count below) rather than building a call to another signature.
CREATE TEMP TABLE privs_calls ON COMMIT DROP AS
SELECT p.oid::regprocedure::text AS fn,
       CASE WHEN a.n_args = p.pronargs
            THEN format(CASE p.prokind WHEN 'p' THEN 'CALL %s(%s)' ELSE 'SELECT %s(%s)' END, p.oid::regproc, a.args)
       END AS call
  FROM pg_catalog.pg_proc p,
       LATERAL (SELECT count(v) AS n_args, coalesce(string_agg(v, ', ' ORDER BY ord), '') AS args
                  FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS u(t, ord),
                       LATERAL (SELECT CASE format_type(u.t, NULL)
                                   WHEN 'text' THEN $$'x'::text$$
                                   WHEN 'text[]' THEN $$'{x}'::text[]$$
                                   WHEN 'uuid' THEN $$'00000000-0000-0000-0000-000000000000'::uuid$$
                                   WHEN 'boolean' THEN 'true'
                                   WHEN 'integer' THEN '0'
                                   WHEN 'interval' THEN $$'0'::interval$$
                                   WHEN 'timestamp with time zone' THEN 'now()'
                                   WHEN 'inet' THEN $$'127.0.0.1'::inet$$
                                   WHEN 'cidr' THEN $$'127.0.0.0/8'::cidr$$
                                   WHEN 'jsonb' THEN $$'{}'::jsonb$$
                                   WHEN 'regclass' THEN $$'authx.audit_log'::regclass$$
                                   WHEN 'authx.severity' THEN $$'info'::authx.severity$$
                                   WHEN 'anyelement' THEN $$'x'::text$$
                                   WHEN 'bytea' THEN $$'\x00'::bytea$$
                                   WHEN 'bigint' THEN '0::bigint'
                                   WHEN 'bigint[]' THEN $$'{0}'::bigint[]$$
                                   WHEN 'real' THEN '0::real'
                                   WHEN 'real[]' THEN $$'{0}'::real[]$$
                                   WHEN 'double precision' THEN '0::double precision'
                               END AS v) AS m) AS a
 WHERE p.pronamespace = 'authx'::regnamespace;
GRANT SELECT ON privs_calls TO pgtap_privs_nobody;

SELECT is((SELECT count(*) FROM privs_calls WHERE call IS NOT NULL)::int, 213,
          'a call was built for 213 of the 215 authx functions (the aggregate _hist_sum included)');
-- internal is a pseudo-type no SQL expression yields (not even NULL::internal):
-- the aggregate's support functions are reached through _hist_sum only.
SELECT set_eq('SELECT fn FROM privs_calls WHERE call IS NULL',
              ARRAY['authx._hist_accum(internal,bigint[])', 'authx._hist_final(internal)'],
              'the two without a call are _hist_accum and _hist_final (internal arguments: not callable from SQL)');

SET ROLE pgtap_privs_nobody;
SELECT throws_ok(call, '42501', NULL, 'nobody with USAGE: EXECUTE refused on ' || fn)
  FROM privs_calls WHERE call IS NOT NULL ORDER BY fn;
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

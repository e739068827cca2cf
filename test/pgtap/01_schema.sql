-- 01_schema.sql — the shape of the authx extension, so that any drift is caught.
--
-- Covers:
--   * the exact list of extension member objects (functions with their
--     signatures, tables, views, the types, the sequence) from pg_depend;
--   * functions_are / views_are / types_are / sequences_are on schema authx,
--     so no stray object lives next to the extension's;
--   * columns of authx.users, audit_log, sessions, lockouts, roles,
--     role_permissions, user_roles, api_keys, api_key_usage,
--     rate_limit_policies, rate_limit_overrides, threat_rules, the MFA,
--     token, device and verification tables and the views stats and
--     active_lockouts; sessions.version and api_keys.version are
--     bigint NOT NULL DEFAULT 1; the rate-limit tables' and threat_rules'
--     column types, NOT NULL and defaults;
--   * the triggers on authx tables, exactly, with their full definitions
--     (users_status_revoke_sessions, sessions_version, sessions_cache, the
--     RBAC row triggers roles_changed, role_permissions_changed,
--     user_roles_changed, their TRUNCATE statement twins roles_truncated,
--     role_permissions_truncated, user_roles_truncated, users_status_rbac
--     (row, on a status change only), users_deleted_roles, the
--     roles_check_cycle row trigger, api_keys_version, api_keys_cache,
--     users_status_apikeys, rate_limit_policies_unseed and
--     threat_rules_unseed (BEFORE UPDATE, WHEN old.seeded, both on
--     _unseed), rate_limit_policies_merge_seed and threat_rules_merge_seed
--     (BEFORE INSERT, WHEN NOT new.seeded), rate_limit_policies_changed,
--     rate_limit_overrides_changed and threat_rules_changed (AFTER INSERT,
--     UPDATE, DELETE and TRUNCATE, per statement, on _policy_changed),
--     ip_blocks_changed (row) and ip_blocks_truncated (TRUNCATE),
--     users_inactive_mfa (BEFORE UPDATE OF deleted_at, status, row, WHEN
--     the account is being deleted or stops being active),
--     signing_keys_changed (AFTER INSERT, UPDATE, DELETE and TRUNCATE, per
--     statement)); their functions: _sessions_version,
--     _roles_check_cycle, _user_deleted_roles, _user_status_apikeys,
--     _unseed, _rate_policy_merge_seed, _threat_rule_merge_seed and
--     _user_inactive_mfa PL/pgSQL, _sessions_cache, _rbac_changed,
--     _api_keys_cache, _policy_changed, _ip_blocks_changed and
--     _signing_keys_changed C, none SECURITY DEFINER; every trigger enabled;
--   * the C hot paths has_permission (STRICT, PARALLEL RESTRICTED) and
--     apikey_verify (PARALLEL UNSAFE; api_key, scope DEFAULT NULL, cost
--     DEFAULT 1, ip DEFAULT NULL) are VOLATILE and not SECURITY DEFINER;
--     _permission_valid is IMMUTABLE STRICT PARALLEL SAFE C;
--   * cache_sync(timeout interval DEFAULT 30 s) RETURNS void and
--     cache_status() RETURNS jsonb: C, VOLATILE, PARALLEL RESTRICTED,
--     cache_sync STRICT, neither SECURITY DEFINER;
--   * the row types apikey_verification (what apikey_verify returns) and
--     rate_limit_result (what rate_limit, rate_peek and rate_check return),
--     their attributes in order;
--   * rate limits: rate_limit, rate_peek and rate_check VOLATILE PARALLEL
--     RESTRICTED C, not STRICT, not SECURITY DEFINER; rate_policy_set,
--     rate_override_set, rate_override_remove PL/pgSQL definers;
--     _ratelimit_purge and the trigger function _rate_policy_merge_seed
--     PL/pgSQL, not definers; the argument names and defaults of the six
--     public functions (rate_policy_set's store DEFAULT 'local' last);
--   * the severity enum labels and their order; the partial unique email
--     index; audit_log range-partitioned on "at" with a DEFAULT partition;
--   * sessions: unique token_hash index under the name session_validate
--     (C) looks up, 32-byte hash check, FK to users ON DELETE CASCADE;
--     lockouts: one row per (user, ip) with NULL ip counted as a value;
--   * the text columns compared bytewise (COLLATE "C"): role names,
--     permissions, scopes, key prefixes, usage codes, rate-limit policy
--     names, threat rule names;
--   * roles, role_permissions, user_roles, api_keys, api_key_usage: their
--     indexes (user_roles_pkey, which user_grant names in ON CONFLICT, and
--     api_keys_prefix_key, which apikey_verify (C) looks up, included) and
--     all their constraints (name and permission checks, no self-parent,
--     cascades to permissions and grants, none from a parent, key checks,
--     no NULL scope element); rate_limit_policies and rate_limit_overrides:
--     exactly their primary keys as indexes, and all their constraints
--     (name pattern, max > 0, per 1 ms .. 366 days counted in epoch seconds
--     as rate_limit counts it (a year 365.25 days, a month 30), store local
--     or redis, fail_mode, overrides cascading with their policy on delete
--     and rename, subject length, max or bypass);
--   * threat detection: the table threat_rules (columns, types, NOT NULL,
--     defaults, primary key on name as its only index, and exactly its
--     checks: name like a policy name, event type, distinct_by, threshold
--     1 .. 1000000, within and block_for 1 s .. 366 days); threat_rule_set,
--     threat_rule_drop and security_summary PL/pgSQL VOLATILE
--     definers, with their argument names, defaults (block_for
--     1 hour, distinct_by NULL, enabled true, description NULL; since
--     24 hours) and results; _threat_block and _alert PL/pgSQL, not
--     definers; _account_tag IMMUTABLE STRICT PARALLEL SAFE SQL;
--     _policy_changed C trigger; _unseed and _threat_rule_merge_seed
--     PL/pgSQL triggers;
--   * pg_extension_config_dump registrations (what pg_dump keeps), seeded
--     roles, permissions, rate-limit policies and threat rules left out
--     (WHERE NOT seeded), rate-limit overrides, mfa_totp,
--     mfa_recovery_codes, signing_keys, refresh_families, trusted_devices
--     and user_tokens kept whole, mfa_challenges not registered;
--   * every function has a COMMENT;
--   * exactly the expected functions are SECURITY DEFINER, and each pins
--     search_path to exactly "pg_catalog, pg_temp" (only
--     _partitions_maintain adds lock_timeout = 1s); every SQL and PL/pgSQL
--     function pins search_path; session_validate (C) is not SECURITY
--     DEFINER;
--   * no function is executable by PUBLIC (proacl inspected), PUBLIC has no
--     privilege on schema, tables, views or sequence; the per-role EXECUTE
--     grants are exactly the documented ones (the API key functions,
--     has_permission, user_permissions, user_roles, rate_limit, rate_peek,
--     rate_check, ip_blocked, totp_enroll, totp_confirm, totp_verify,
--     totp_disable, recovery_codes_generate, recovery_code_use, login_mfa
--     (login with its five arguments), token_issue, token_refresh,
--     token_verify, jwks, device_trust, devices, device_revoke,
--     email_verification_issue, email_verification_confirm,
--     password_reset_issue, password_reset_confirm for authx_app; role and
--     grant management, rate_policy_set, rate_override_*, ip_block and
--     friends, threat_rule_set, threat_rule_drop, security_summary and
--     signing_key_rotate for authx_admin; none on the internals
--     _threat_block, _alert, _account_tag, _ip_key, _policy_changed,
--     _unseed, _threat_rule_merge_seed nor the MFA, token, device and
--     verification ones, nor on signing_key_secret (superusers only));
--     table grants are SELECT for authx_admin only (the rate-limit tables,
--     ip_blocks and threat_rules included), never on api_keys, the three
--     MFA tables, signing_keys, refresh_families, trusted_devices or
--     user_tokens;
--   * IP blocking: the table ip_blocks (columns, defaults, primary key
--     (net, allow) as its only index, source check, dumped whole), its
--     triggers ip_blocks_changed (row) and ip_blocks_truncated (TRUNCATE)
--     on the C function _ip_blocks_changed; ip_blocked VOLATILE STRICT
--     PARALLEL RESTRICTED C, not a definer, executable by authx_app;
--     _ip_key (the network an address is counted and blocked by)
--     IMMUTABLE STRICT PARALLEL SAFE C returning cidr;
--     ip_block, ip_unblock, ip_allow, ip_disallow, ip_blocks definers for
--     authx_admin, who also reads ip_blocks; _ip_blocks_live and
--     _ip_blocked_sql SQL definers, _ipblock_purge PL/pgSQL, granted to
--     no one; argument names and defaults of the public functions;
--   * MFA: the tables mfa_totp (one sealed seed per user, 6-8 digits, a
--     period of 1-300 s, last_step bigint DEFAULT -1), mfa_recovery_codes
--     (hashes, primary key (user_id, code_hash)) and mfa_challenges (token
--     hash as primary key, mfa_challenges_expires_idx), columns, types,
--     NOT NULL, defaults, exactly their indexes and constraints (FKs to
--     users ON DELETE CASCADE); totp_enroll, totp_confirm, totp_verify,
--     totp_disable, recovery_codes_generate, recovery_code_use and
--     login_mfa VOLATILE PL/pgSQL definers; _totp_seed_new and _totp_match
--     VOLATILE STRICT C, _totp_code IMMUTABLE STRICT PARALLEL SAFE C; _uri_encode and
--     _recovery_hash IMMUTABLE STRICT PARALLEL SAFE SQL; _mfa_gate,
--     _mfa_failed, _totp_check, _recovery_check, _mfa_challenge_new,
--     _mfa_purge and _user_inactive_mfa PL/pgSQL, not definers; argument
--     names, defaults and results of all nineteen; the settings
--     authx.key_file (postmaster), totp_digits, totp_period, totp_window,
--     mfa_max_failures, mfa_challenge_ttl (SUSET) with boot values, units
--     and bounds;
--   * access tokens: the tables signing_keys (16-character kid, EdDSA or
--     HS256, a 32-byte public key for EdDSA only, the private part sealed,
--     retired_at and verify_until set together) and refresh_families
--     (generation >= 0, head and parent hashes, claims DEFAULT '{}', FKs
--     to users and sessions ON DELETE CASCADE, refresh_families_session_idx
--     and refresh_families_user_idx), columns, types, NOT NULL, defaults,
--     exactly their indexes and constraints; token_issue and
--     signing_key_rotate VOLATILE PL/pgSQL, token_refresh VOLATILE SQL and
--     jwks STABLE SQL definers; token_verify VOLATILE PARALLEL RESTRICTED
--     C, not STRICT, not a definer; signing_key_secret, _signing_key_new,
--     _jwt_sign VOLATILE STRICT C; _refresh_token_new VOLATILE C; _ed25519 IMMUTABLE
--     STRICT PARALLEL SAFE C; _refresh_token_parse STABLE C;
--     _signing_keys_changed C trigger; _b64url and _reserved_claims
--     IMMUTABLE PARALLEL SAFE SQL; _signing_key_ensure, _access_token,
--     _token_refresh and _tokens_purge PL/pgSQL, not definers; argument
--     names, defaults and results of all eighteen;
--   * trusted devices: the table trusted_devices (unique 32-byte token
--     hash under trusted_devices_token_hash_key, fingerprint of 1-512
--     characters, name of at most 200, id DEFAULT gen_random_uuid(), FK to
--     users ON DELETE CASCADE, trusted_devices_user_idx), columns, types,
--     NOT NULL, defaults, exactly its indexes and constraints;
--     device_trust and device_revoke PL/pgSQL, devices SQL, definers;
--     _device_check, _devices_revoke_all and _devices_purge PL/pgSQL, not
--     definers; argument names, defaults and results of all six; login's
--     arguments with device_token DEFAULT NULL last;
--   * email verification and password reset: the table user_tokens
--     (32-byte token hash as primary key, purpose email_verification or
--     password_reset, FK to users ON DELETE CASCADE, user_tokens_user_idx
--     on (user_id, purpose)), columns, types, NOT NULL, defaults, exactly
--     its indexes and constraints; email_verification_issue,
--     email_verification_confirm, password_reset_issue and
--     password_reset_confirm VOLATILE PL/pgSQL definers; _user_token_new,
--     _user_token_take and _user_tokens_purge PL/pgSQL, not definers;
--     argument names, defaults and results of all seven;
--   * the settings authx.token_alg (enum EdDSA, HS256), token_ttl,
--     token_role, token_issuer, token_audience, refresh_reuse_grace,
--     verification_ttl, reset_ttl and device_ttl (all SUSET) with boot
--     values, units and bounds;
--   * usage analytics and monitoring: the tables usage_log (range-partitioned
--     on at, usage_log_default the DEFAULT partition, daily partitions
--     usage_log_pYYYYMMDD made by maintenance, each with the at index),
--     usage_hourly (primary key (hour, endpoint, status_class, api_key_id),
--     status class 1-5, usage_hourly_key_idx) and usage_hourly_ip (primary
--     key (hour, ip)): columns, types, NOT NULL, no defaults, exactly their
--     indexes and constraints, all three dumped whole (usage_log through its
--     default partition); usage_record and metrics VOLATILE PARALLEL
--     RESTRICTED C, not STRICT, not definers; _latency_hist, _hist_quantile
--     IMMUTABLE STRICT PARALLEL SAFE C, _hist_add (still used by the worker)
--     and the aggregate's support functions _hist_accum(state internal, hist
--     bigint[]) RETURNS internal and _hist_final(state internal) RETURNS
--     bigint[] IMMUTABLE PARALLEL SAFE C, not STRICT; the aggregate _hist_sum
--     (state internal through _hist_accum, final function _hist_final, read
--     only, no initial value, no combine, serial or moving function);
--     usage_summary STABLE and health VOLATILE PL/pgSQL definers;
--     _usage_purge PL/pgSQL and _partitions_ahead STABLE SQL, not definers;
--     argument names, defaults and results of all twelve; usage_record for
--     authx_app, usage_summary, metrics, health and SELECT on the three
--     tables for authx_admin, no grant on the internals (_hist_accum and
--     _hist_final included); the settings authx.usage_queue_size
--     (postmaster) and authx.usage_retention (SIGHUP) with boot values and
--     bounds;
--   * the rollups usage_hourly_total (per hour) and usage_daily (per day,
--     endpoint, status class, key; usage_daily_key_idx), usage_daily_ip (per
--     day and address), the settings tables settings (dumped; name must be
--     in setting_defs; updated_at now(), updated_by SESSION_USER) and
--     setting_defs (shipped, kind number/integer/boolean), alert_state (one
--     row per alert: auto_blocks, cache_hit_rate, cache_lag, error_rate,
--     queue_fill, redis_down) and the view alerts: columns, types, NOT NULL,
--     defaults, constraints; settings_changed statement trigger;
--     setting_get C STABLE PARALLEL RESTRICTED for authx_app; setting_set,
--     setting_list, alerts_check definers for authx_admin; the internals
--     _settings_changed, _setting_num, _alert_window, _alerts_check granted
--     to nobody; SELECT on the new tables and alerts for authx_admin, none
--     on alert_state;
--   * scale-out: shard_of, shard_of_email (for authx_app), the email
--     directory and its internals _directory_claim/_release/_lookup/
--     _unconfirmed/_confirm, _user_live and _user_create_id (definers, for
--     authx_app: a coordinator calls them), _cluster_repair (internal),
--     shard_nodes and shard_map (dumped), cluster_setup and
--     _cluster_routes granted to nobody (superuser only); bucket moves:
--     bucket_moves (dumped), the bucket_guard triggers (BEFORE row, one per
--     table holding a bucket's rows), _bucket_quiesce/_export/_import/
--     _purge and _definitions_export/_import definers granted to nobody,
--     the procedure bucket_move, cluster_add_node, rebalance_plan,
--     cache_map (superuser); cache_node, _jwt_sub, _owner_of (definer) and
--     _cache_endpoint for authx_app;
--   * roles authx_app and authx_admin exist, admin is a member of app.
BEGIN;
SELECT plan(131);

-- ---------------------------------------------------------------- members
SELECT has_extension('authx', 'extension authx is installed');

SELECT set_eq(
    $$SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
       WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
         AND d.deptype = 'e' AND e.extname = 'authx'$$,
    ARRAY[
        'function authx._access_token(uuid,uuid,jsonb)',
        'function authx._account_tag(text)',
        'function authx._alert(timestamp with time zone,text,text,uuid,inet,text,jsonb)',
        'function authx._api_keys_cache()',
        'function authx._apikey_check(text,timestamp with time zone,integer,interval,integer,integer,interval)',
        'function authx._apikey_consume(uuid,integer,timestamp with time zone)',
        'function authx._apikey_lock(uuid)',
        'function authx._apikey_new(text,uuid)',
        'function authx._apikey_touch(uuid,timestamp with time zone)',
        'function authx._apikey_usage_pending(uuid)',
        'function authx._apikeys_purge(timestamp with time zone)',
        'function authx._audit_tx(text,authx.severity,uuid,jsonb)',
        'function authx._b64url(bytea)',
        'function authx._device_check(uuid,text)',
        'function authx._devices_purge(timestamp with time zone)',
        'function authx._devices_revoke_all(uuid,text)',
        'function authx._ed25519(bytea,bytea)',
        'function authx._email_normalize(text)',
        'function authx._hist_accum(internal,bigint[])',
        'function authx._hist_add(bigint[],bigint[])',
        'function authx._hist_final(internal)',
        'function authx._hist_quantile(bigint[],double precision)',
        'function authx._hist_sum(bigint[])',
        'function authx._ip_blocked_sql(inet,timestamp with time zone)',
        'function authx._ip_blocks_changed()',
        'function authx._ip_blocks_live(timestamp with time zone)',
        'function authx._ip_key(inet)',
        'function authx._ipblock_purge(timestamp with time zone)',
        'function authx._jwt_sign(jsonb)',
        'function authx._latency_hist(real[])',
        'function authx._lockout_clear(uuid,inet)',
        'function authx._lockout_fail(uuid,inet)',
        'function authx._lockout_state(uuid,inet)',
        'function authx._maintenance_run_at(timestamp with time zone)',
        'function authx._mfa_challenge_new(uuid,inet,text)',
        'function authx._mfa_failed(uuid,text)',
        'function authx._mfa_gate(uuid)',
        'function authx._mfa_purge(timestamp with time zone)',
        'function authx._partitions_ahead(text)',
        'function authx._partitions_maintain(regclass,integer,integer,timestamp with time zone)',
        'function authx._password_check(text,text)',
        'function authx._password_hash(text,boolean,text)',
        'function authx._password_rehash(uuid,text,text)',
        'function authx._permission_valid(text)',
        'function authx._permissions_normalize(text[],text)',
        'function authx._policy_changed()',
        'function authx._rate_policy_merge_seed()',
        'function authx._ratelimit_purge(timestamp with time zone)',
        'function authx._rate_check_ip_email(text,inet,text)',
        'function authx._rbac_changed()',
        'function authx._rbac_purge(timestamp with time zone)',
        'function authx._rbac_resolve(uuid,timestamp with time zone)',
        'function authx._recovery_check(uuid,text)',
        'function authx._recovery_hash(uuid,text)',
        'function authx._refresh_token_new(uuid,integer,uuid)',
        'function authx._refresh_token_parse(text)',
        'function authx._require(anyelement,text)',
        'function authx._reserved_claims()',
        'function authx._role_require(text)',
        'function authx._roles_check_cycle()',
        'function authx._session_insert(uuid,inet,text,interval)',
        'function authx._session_token_hash(text)',
        'function authx._token_hash(text,text)',
        'function authx._sessions_cache()',
        'function authx._sessions_purge(timestamp with time zone)',
        'function authx._sessions_version()',
        'function authx._setting_interval(text,interval)',
        'function authx._signing_key_ensure()',
        'function authx._signing_key_new(text)',
        'function authx._signing_keys_changed()',
        'function authx._stats()',
        'function authx._threat_block(inet,text,inet)',
        'function authx._threat_rule_merge_seed()',
        'function authx._token_new(text,uuid)',
        'function authx._token_refresh(text,inet)',
        'function authx._tokens_purge(timestamp with time zone)',
        'function authx._totp_check(uuid,text)',
        'function authx._totp_code(bytea,timestamp with time zone,integer,integer)',
        'function authx._totp_match(uuid,bytea,text,bigint,integer,integer,integer,timestamp with time zone)',
        'function authx._totp_seed_new(uuid)',
        'function authx._unseed()',
        'function authx._uri_encode(text)',
        'function authx._usage_purge(timestamp with time zone)',
        'function authx._user_deleted_roles()',
        'function authx._user_inactive_mfa()',
        'function authx._user_lock(uuid)',
        'function authx._user_set_status(uuid,text,text)',
        'function authx._user_status_apikeys()',
        'function authx._user_status_revoke()',
        'function authx._user_token_new(uuid,text,text,interval)',
        'function authx._user_token_take(text,text,text)',
        'function authx._user_tokens_purge(timestamp with time zone)',
        'function authx._alert_window(jsonb,timestamp with time zone,double precision,bigint[])',
        'function authx._cluster_routes()',
        'function authx._directory_claim(text,uuid)',
        'function authx._directory_lookup(text)',
        'function authx._directory_release(text,uuid)',
        'function authx._directory_unconfirmed(integer)',
        'function authx._directory_confirm(text,uuid)',
        'function authx._user_live(uuid)',
        'function authx._cluster_repair()',
        'function authx._user_create_id(uuid,text,text,text)',
        'function authx.cluster_setup(text[])',
        'function authx._cache_truncated()',
        'function authx._bucket_tables()',
        'function authx._bucket_fence(integer,boolean)',
        'function authx._bucket_guard()',
        'function authx._bucket_rows(integer)',
        'function authx._bucket_quiesce(integer,interval)',
        'function authx._bucket_export(integer,text)',
        'function authx._bucket_delete(integer)',
        'function authx._bucket_import(integer,jsonb)',
        'function authx._bucket_purge(integer,text)',
        'function authx._definition_tables()',
        'function authx._definitions_export()',
        'function authx._definitions_import(jsonb)',
        'function authx._key_fingerprint()',
        'function authx._owner_of(text,uuid)',
        'function authx._cache_endpoint()',
        'function authx.cache_node(text)',
        'function authx._jwt_sub(text)',
        'function authx._cluster_superuser(text)',
        'function authx.cluster_add_node(text)',
        'function authx.rebalance_plan()',
        'function authx.bucket_move(integer,text,interval)',
        'function authx.cache_map()',
        'table authx.bucket_moves',
        'function authx.shard_of(uuid,integer)',
        'function authx.shard_of_email(text,integer)',
        'function authx.token_bucket(text)',
        'function authx._alerts_check(timestamp with time zone)',
        'function authx._setting_num(text)',
        'function authx._settings_changed()',
        'function authx.alerts_check()',
        'function authx.setting_get(text)',
        'function authx.setting_list()',
        'function authx.setting_set(text,jsonb)',
        'function authx.apikey_create(uuid,text,text[],timestamp with time zone,integer,interval,integer,integer,interval)',
        'function authx.apikey_list(uuid)',
        'function authx.apikey_revoke(uuid)',
        'function authx.apikey_rotate(uuid,interval)',
        'function authx.apikey_update(uuid,text,text[],timestamp with time zone,integer,interval,integer,integer,interval,text[])',
        'function authx.apikey_usage(uuid,timestamp with time zone)',
        'function authx.apikey_verify(text,text,integer,inet)',
        'function authx.audit(text,text,uuid,inet,jsonb,text)',
        'function authx.audit_flush(interval)',
        'function authx.cache_status()',
        'function authx.cache_sync(interval)',
        'function authx.device_revoke(uuid)',
        'function authx.device_trust(uuid,text,text,interval)',
        'function authx.devices(uuid)',
        'function authx.email_verification_confirm(text)',
        'function authx.email_verification_issue(uuid)',
        'function authx.has_permission(uuid,text)',
        'function authx.health()',
        'function authx.ip_allow(cidr,text)',
        'function authx.ip_block(cidr,interval,text)',
        'function authx.ip_blocked(inet)',
        'function authx.ip_blocks()',
        'function authx.ip_disallow(cidr)',
        'function authx.ip_unblock(cidr)',
        'function authx.jwks()',
        'function authx.login(text,text,inet,text,text)',
        'function authx.login_mfa(text,text,inet,text)',
        'function authx.maintenance_run()',
        'function authx.metrics()',
        'function authx.password_reset_confirm(text,text)',
        'function authx.password_reset_issue(text,inet)',
        'function authx.password_set(uuid,text)',
        'function authx.password_verify(uuid,text)',
        'function authx.rate_check(text,text,integer)',
        'function authx.rate_limit(text,integer,interval,integer)',
        'function authx.rate_override_remove(text,text)',
        'function authx.rate_override_set(text,text,integer,interval,boolean,timestamp with time zone,text)',
        'function authx.rate_peek(text,integer,interval)',
        'function authx.rate_policy_set(text,integer,interval,text,text,text)',
        'function authx.recovery_code_use(uuid,text)',
        'function authx.recovery_codes_generate(uuid)',
        'function authx.role_create(text,text,text)',
        'function authx.role_drop(text)',
        'function authx.role_grant(text,text)',
        'function authx.role_list()',
        'function authx.role_revoke(text,text)',
        'function authx.role_set_parent(text,text)',
        'function authx.security_summary(interval)',
        'function authx.session_create(uuid,inet,text,interval)',
        'function authx.session_info(text)',
        'function authx.session_revoke(text)',
        'function authx.session_revoke_all(uuid,text)',
        'function authx.session_revoke_id(uuid)',
        'function authx.session_validate(text,inet)',
        'function authx.sessions(uuid)',
        'function authx.signing_key_rotate()',
        'function authx.signing_key_secret(text)',
        'function authx.threat_rule_drop(text)',
        'function authx.threat_rule_set(text,text,integer,interval,interval,text,boolean,text)',
        'function authx.token_issue(uuid,text,jsonb)',
        'function authx.token_refresh(text,inet)',
        'function authx.token_verify(text)',
        'function authx.totp_confirm(uuid,text)',
        'function authx.totp_disable(uuid)',
        'function authx.totp_enroll(uuid,text)',
        'function authx.totp_verify(uuid,text)',
        'function authx.usage_record(text,integer,real,uuid,uuid,inet)',
        'function authx.usage_summary(interval,uuid)',
        'function authx.user_create(text,text,text)',
        'function authx.user_delete(uuid)',
        'function authx.user_disable(uuid)',
        'function authx.user_enable(uuid)',
        'function authx.user_find(text)',
        'function authx.user_get(uuid)',
        'function authx.user_grant(uuid,text,timestamp with time zone)',
        'function authx.user_permissions(uuid)',
        'function authx.user_revoke(uuid,text)',
        'function authx.user_roles(uuid)',
        'function authx.user_unlock(uuid)',
        'sequence authx.audit_log_id_seq',
        'table authx.api_key_usage',
        'table authx.api_keys',
        'table authx.audit_log',
        'table authx.audit_log_default',
        'table authx.ip_blocks',
        'table authx.lockouts',
        'table authx.mfa_challenges',
        'table authx.mfa_recovery_codes',
        'table authx.mfa_totp',
        'table authx.rate_limit_overrides',
        'table authx.rate_limit_policies',
        'table authx.refresh_families',
        'table authx.role_permissions',
        'table authx.roles',
        'table authx.sessions',
        'table authx.signing_keys',
        'table authx.threat_rules',
        'table authx.trusted_devices',
        'table authx.usage_hourly',
        'table authx.usage_hourly_ip',
        'table authx.usage_hourly_total',
        'table authx.usage_daily',
        'table authx.usage_daily_ip',
        'table authx.settings',
        'table authx.setting_defs',
        'table authx.alert_state',
        'table authx.email_directory',
        'table authx.shard_nodes',
        'table authx.shard_map',
        'table authx.usage_log',
        'table authx.usage_log_default',
        'table authx.user_roles',
        'table authx.user_tokens',
        'table authx.users',
        'type authx.apikey_verification',
        'type authx.rate_limit_result',
        'type authx.severity',
        'view authx.active_lockouts',
        'view authx.alerts',
        'view authx.audit_partitions',
        'view authx.stats'
    ],
    'extension members (pg_depend) are exactly the documented objects'
);

-- Members can only live in schema authx (a member elsewhere would be drift).
SELECT is_empty(
    $$SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
       WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
         AND d.deptype = 'e' AND e.extname = 'authx'
         AND (pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid)).schema <> 'authx'$$,
    'every extension member is in schema authx'
);

SELECT functions_are('authx', ARRAY[
    '_access_token', '_account_tag', '_alert', '_alert_window', '_alerts_check', '_api_keys_cache', '_apikey_check', '_apikey_consume', '_apikey_lock',
    '_apikey_new', '_apikey_touch', '_apikey_usage_pending', '_apikeys_purge',
    '_audit_tx', '_b64url', '_cache_truncated', '_bucket_delete', '_bucket_export', '_bucket_fence', '_bucket_guard', '_bucket_import',
    '_bucket_purge', '_bucket_quiesce', '_bucket_rows', '_bucket_tables', '_cache_endpoint', '_cluster_superuser',
    '_definition_tables', '_definitions_export', '_definitions_import', '_jwt_sub', '_key_fingerprint', '_owner_of',
    'bucket_move', 'cache_map', 'cache_node', 'cluster_add_node', 'rebalance_plan', '_cluster_routes', '_device_check', '_directory_claim', '_directory_lookup',
    '_directory_release', '_directory_unconfirmed', '_directory_confirm', '_user_live', '_cluster_repair', '_devices_purge', '_devices_revoke_all', '_ed25519', '_email_normalize',
    '_hist_accum', '_hist_add', '_hist_final', '_hist_quantile', '_hist_sum',
    '_ip_blocked_sql', '_ip_blocks_changed', '_ip_blocks_live', '_ip_key',
    '_ipblock_purge', '_jwt_sign', '_latency_hist', '_lockout_clear', '_lockout_fail', '_lockout_state',
    '_maintenance_run_at', '_mfa_challenge_new', '_mfa_failed', '_mfa_gate', '_mfa_purge',
    '_partitions_ahead', '_partitions_maintain', '_password_check', '_password_hash',
    '_password_rehash', '_permission_valid', '_permissions_normalize', '_policy_changed', '_rate_policy_merge_seed',
    '_rate_check_ip_email', '_ratelimit_purge',
    '_rbac_changed', '_rbac_purge', '_rbac_resolve', '_recovery_check', '_recovery_hash', '_refresh_token_new',
    '_refresh_token_parse', '_require', '_reserved_claims',
    '_role_require', '_roles_check_cycle',
    '_session_insert', '_session_token_hash', '_sessions_cache',
    '_sessions_purge', '_sessions_version',
    '_setting_interval', '_setting_num', '_settings_changed', '_signing_key_ensure', '_signing_key_new', '_signing_keys_changed', '_stats',
    '_threat_block', '_threat_rule_merge_seed', '_token_hash', '_token_new', '_token_refresh', '_tokens_purge',
    '_totp_check', '_totp_code', '_totp_match', '_totp_seed_new', '_unseed', '_uri_encode', '_usage_purge',
    '_user_inactive_mfa', '_user_deleted_roles', '_user_lock', '_user_set_status', '_user_status_apikeys',
    '_user_status_revoke', '_user_create_id', '_user_token_new', '_user_token_take', '_user_tokens_purge',
    'apikey_create', 'apikey_list', 'apikey_revoke', 'apikey_rotate', 'apikey_update', 'apikey_usage',
    'apikey_verify', 'alerts_check',
    'audit', 'audit_flush', 'cache_status', 'cache_sync', 'cluster_setup', 'device_revoke', 'device_trust', 'devices',
    'email_verification_confirm', 'email_verification_issue', 'has_permission', 'health',
    'ip_allow', 'ip_block', 'ip_blocked', 'ip_blocks', 'ip_disallow', 'ip_unblock', 'jwks', 'login', 'login_mfa',
    'maintenance_run', 'metrics', 'password_reset_confirm', 'password_reset_issue', 'password_set', 'password_verify',
    'rate_check', 'rate_limit', 'rate_override_remove', 'rate_override_set', 'rate_peek', 'rate_policy_set',
    'recovery_code_use', 'recovery_codes_generate',
    'role_create', 'role_drop', 'role_grant', 'role_list', 'role_revoke', 'role_set_parent', 'security_summary',
    'session_create', 'session_info', 'session_revoke', 'session_revoke_all', 'session_revoke_id',
    'session_validate', 'sessions', 'setting_get', 'setting_list', 'setting_set', 'shard_of', 'shard_of_email', 'token_bucket',
    'signing_key_rotate', 'signing_key_secret', 'threat_rule_drop', 'threat_rule_set',
    'token_issue', 'token_refresh', 'token_verify',
    'totp_confirm', 'totp_disable', 'totp_enroll', 'totp_verify', 'usage_record', 'usage_summary',
    'user_create', 'user_delete', 'user_disable', 'user_enable', 'user_find', 'user_get', 'user_grant',
    'user_permissions', 'user_revoke', 'user_roles', 'user_unlock'
], 'schema authx has exactly the extension functions');

-- One signature per name: an overload (say maintenance_run(timestamptz)
-- coming back, or the four-argument login next to the five-argument one)
-- would be drift even if the names match.
SELECT is((SELECT count(*) FROM pg_catalog.pg_proc WHERE pronamespace = 'authx'::regnamespace)::int, 215,
          'schema authx has exactly 215 functions, the aggregate _hist_sum and its _hist_accum and _hist_final '
          'included (no overloads)');

-- Every function in the schema is an extension member (no overload added
-- outside the install script).
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                          WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                            AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e')$$,
    'every function in schema authx belongs to the extension'
);

SELECT views_are('authx', ARRAY['active_lockouts', 'alerts', 'audit_partitions', 'stats'],
                 'schema authx has exactly the views active_lockouts, alerts, audit_partitions, stats');
SELECT types_are('authx', ARRAY['apikey_verification', 'rate_limit_result', 'severity'],
                 'schema authx has exactly the types apikey_verification, rate_limit_result and severity');
SELECT sequences_are('authx', ARRAY['audit_log_id_seq'], 'schema authx has exactly the sequence audit_log_id_seq');

-- Tables: the worker adds audit_log_pYYYYMMDD and usage_log_pYYYYMMDD
-- partitions at run time, which are not members; every other table must be
-- one of the twenty-five members.
SELECT is_empty(
    $$SELECT c.relname::text FROM pg_catalog.pg_class c
       WHERE c.relnamespace = 'authx'::regnamespace AND c.relkind IN ('r', 'p', 'f', 'm')
         AND c.relname NOT IN ('users', 'audit_log', 'audit_log_default', 'sessions', 'lockouts',
                               'roles', 'role_permissions', 'user_roles', 'api_keys', 'api_key_usage',
                               'rate_limit_policies', 'rate_limit_overrides', 'ip_blocks', 'threat_rules',
                               'mfa_totp', 'mfa_recovery_codes', 'mfa_challenges', 'signing_keys',
                               'refresh_families', 'trusted_devices', 'user_tokens',
                               'usage_log', 'usage_log_default', 'usage_hourly', 'usage_hourly_ip',
                               'usage_hourly_total', 'usage_daily', 'usage_daily_ip', 'settings', 'setting_defs',
                               'alert_state', 'email_directory', 'shard_nodes', 'shard_map', 'bucket_moves')
         AND c.relname !~ '^(audit|usage)_log_p[0-9]{8}$'$$,
    'schema authx has no tables but users, audit_log, audit_log_default, sessions, lockouts, roles, '
    'role_permissions, user_roles, api_keys, api_key_usage, rate_limit_policies, rate_limit_overrides, '
    'ip_blocks, threat_rules, mfa_totp, mfa_recovery_codes, mfa_challenges, signing_keys, refresh_families, '
    'trusted_devices, user_tokens, usage_log, usage_log_default, usage_hourly, usage_hourly_ip, '
    'usage_hourly_total, usage_daily, usage_daily_ip, settings, setting_defs, alert_state, email_directory, '
    'shard_nodes, shard_map, bucket_moves and the daily '
    'partitions of audit_log and usage_log'
);

-- ---------------------------------------------------------------- shapes
SELECT columns_are('authx', 'users', ARRAY[
    'id', 'email', 'display_name', 'password_hash', 'status', 'mfa_enabled',
    'email_verified_at', 'created_at', 'updated_at', 'password_changed_at',
    'last_login_at', 'deleted_at'
], 'authx.users columns (lockout state lives in authx.lockouts)');
SELECT columns_are('authx', 'sessions', ARRAY[
    'id', 'token_hash', 'user_id', 'created_at', 'expires_at', 'idle_timeout',
    'last_seen_at', 'ip', 'user_agent', 'last_ip', 'revoked_at', 'revoke_reason', 'version'
], 'authx.sessions columns (no token column)');
-- The Redis script orders a key's writes by it: NULL or another type would
-- break the comparison, a default other than 1 the first entry's version.
SELECT is((SELECT ROW(pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                      pg_catalog.pg_get_expr(d.adbin, d.adrelid))::text
             FROM pg_catalog.pg_attribute a
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = 'authx.sessions'::regclass AND a.attname = 'version' AND NOT a.attisdropped),
          '(bigint,t,1)', 'sessions.version is bigint NOT NULL DEFAULT 1');
SELECT columns_are('authx', 'lockouts', ARRAY[
    'user_id', 'ip', 'failures', 'lock_count', 'window_start', 'locked_until', 'updated_at'
], 'authx.lockouts columns');
SELECT columns_are('authx', 'active_lockouts', ARRAY[
    'user_id', 'ip', 'locked_until', 'lock_count', 'failures', 'updated_at'
], 'authx.active_lockouts columns');
SELECT columns_are('authx', 'audit_log', ARRAY[
    'id', 'at', 'event_type', 'severity', 'user_id', 'ip', 'user_agent', 'details'
], 'authx.audit_log columns');
SELECT columns_are('authx', 'stats', ARRAY['name', 'value', 'kind'], 'authx.stats columns');
SELECT col_type_is('authx', 'audit_log', 'severity', 'authx.severity', 'audit_log.severity is authx.severity');

SELECT enum_has_labels('authx', 'severity', ARRAY['info', 'low', 'medium', 'high', 'critical'],
                       'severity labels in ascending order');

SELECT is(pg_catalog.pg_get_indexdef('authx.users_email_key'::regclass),
          'CREATE UNIQUE INDEX users_email_key ON authx.users USING btree (lower(email)) WHERE (deleted_at IS NULL)',
          'email is unique case-insensitively among live users only');

-- session_validate (C) finds these by name: renaming one breaks it.
SELECT is(pg_catalog.pg_get_indexdef('authx.sessions_token_hash_key'::regclass),
          'CREATE UNIQUE INDEX sessions_token_hash_key ON authx.sessions USING btree (token_hash)',
          'sessions_token_hash_key is the unique index on token_hash');
SELECT is(pg_catalog.pg_get_indexdef('authx.users_pkey'::regclass),
          'CREATE UNIQUE INDEX users_pkey ON authx.users USING btree (id)',
          'users_pkey is the primary key index on users.id');
SELECT col_type_is('authx', 'sessions', 'token_hash', 'bytea', 'sessions.token_hash is bytea');
SELECT results_eq(
    $$SELECT pg_catalog.pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c
       WHERE c.conrelid = 'authx.sessions'::regclass AND c.contype IN ('f', 'c') ORDER BY 1$$,
    $$VALUES ('CHECK ((idle_timeout >= 0))'), ('CHECK ((octet_length(token_hash) = 32))'),
             ('FOREIGN KEY (user_id) REFERENCES authx.users(id) ON DELETE CASCADE')$$,
    'sessions: 32-byte hash, idle_timeout >= 0, user_id references users ON DELETE CASCADE');
SELECT is(pg_catalog.pg_get_indexdef('authx.lockouts_key'::regclass),
          'CREATE UNIQUE INDEX lockouts_key ON authx.lockouts USING btree (user_id, ip) NULLS NOT DISTINCT',
          'lockouts: one row per (user_id, ip), the account row (ip NULL) included');

-- Roles and API keys.
SELECT columns_are('authx', 'roles', ARRAY['name', 'parent', 'description', 'created_at', 'seeded'],
                   'authx.roles columns');
SELECT columns_are('authx', 'role_permissions', ARRAY['role', 'permission', 'granted_at', 'seeded'],
                   'authx.role_permissions columns');
SELECT columns_are('authx', 'user_roles', ARRAY['user_id', 'role', 'granted_at', 'expires_at'],
                   'authx.user_roles columns');
SELECT columns_are('authx', 'api_keys', ARRAY[
    'id', 'prefix', 'key_hash', 'prev_hash', 'prev_until', 'user_id', 'name', 'scopes', 'created_at',
    'updated_at', 'expires_at', 'rate_limit', 'rate_window', 'remaining', 'refill_amount', 'refill_interval',
    'refilled_at', 'last_used_at', 'revoked_at', 'revoke_reason', 'owner_disabled', 'version'
], 'authx.api_keys columns (no key column: only hashes)');
SELECT columns_are('authx', 'api_key_usage', ARRAY['key_id', 'hour', 'code', 'count'], 'authx.api_key_usage columns');
SELECT is((SELECT ROW(pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                      pg_catalog.pg_get_expr(d.adbin, d.adrelid))::text
             FROM pg_catalog.pg_attribute a
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = 'authx.api_keys'::regclass AND a.attname = 'version' AND NOT a.attisdropped),
          '(bigint,t,1)', 'api_keys.version is bigint NOT NULL DEFAULT 1');
SELECT results_eq(
    $$SELECT a.attname::text COLLATE "default", pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
       WHERE a.attrelid = (SELECT typrelid FROM pg_catalog.pg_type WHERE oid = 'authx.apikey_verification'::regtype)
         AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum$$,
    $$VALUES ('code', 'text'), ('key_id', 'uuid'), ('user_id', 'uuid'), ('scopes', 'text[]'),
             ('remaining', 'integer'), ('rate_limit_remaining', 'integer'), ('retry_after', 'interval')$$,
    'apikey_verification: code, key_id, user_id, scopes, remaining, rate_limit_remaining, retry_after'
);

-- Rate limits.
SELECT columns_are('authx', 'rate_limit_policies', ARRAY[
    'name', 'max', 'per', 'store', 'fail_mode', 'description', 'seeded'
], 'authx.rate_limit_policies columns');
SELECT columns_are('authx', 'rate_limit_overrides', ARRAY[
    'policy', 'subject', 'max', 'per', 'bypass', 'expires_at', 'reason', 'created_at'
], 'authx.rate_limit_overrides columns');
-- Types, NOT NULL and defaults: a bucket needs max and per; an override
-- may leave both NULL (bypass, or the policy's per).
SELECT results_eq(
    $$SELECT c.relname::text COLLATE "default", a.attname::text COLLATE "default",
             pg_catalog.format_type(a.atttypid, a.atttypmod),
             a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid) COLLATE "default"
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid IN ('authx.rate_limit_policies'::regclass, 'authx.rate_limit_overrides'::regclass)
         AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY c.relname DESC, a.attnum$$,
    $$VALUES ('rate_limit_policies', 'name', 'text', true, NULL::text),
             ('rate_limit_policies', 'max', 'integer', true, NULL),
             ('rate_limit_policies', 'per', 'interval', true, NULL),
             ('rate_limit_policies', 'store', 'text', true, '''local''::text'),
             ('rate_limit_policies', 'fail_mode', 'text', true, '''local''::text'),
             ('rate_limit_policies', 'description', 'text', false, NULL),
             ('rate_limit_policies', 'seeded', 'boolean', true, 'false'),
             ('rate_limit_overrides', 'policy', 'text', true, NULL),
             ('rate_limit_overrides', 'subject', 'text', true, NULL),
             ('rate_limit_overrides', 'max', 'integer', false, NULL),
             ('rate_limit_overrides', 'per', 'interval', false, NULL),
             ('rate_limit_overrides', 'bypass', 'boolean', true, 'false'),
             ('rate_limit_overrides', 'expires_at', 'timestamp with time zone', false, NULL),
             ('rate_limit_overrides', 'reason', 'text', false, NULL),
             ('rate_limit_overrides', 'created_at', 'timestamp with time zone', true, 'now()')$$,
    'rate_limit_policies and rate_limit_overrides: column types, NOT NULL and defaults'
);
SELECT results_eq(
    $$SELECT a.attname::text COLLATE "default", pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
       WHERE a.attrelid = (SELECT typrelid FROM pg_catalog.pg_type WHERE oid = 'authx.rate_limit_result'::regtype)
         AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum$$,
    $$VALUES ('allowed', 'boolean'), ('remaining', 'integer'), ('reset_after', 'interval'), ('retry_after', 'interval')$$,
    'rate_limit_result: allowed, remaining, reset_after, retry_after'
);
SELECT set_eq(
    $$SELECT c.relname::text, a.attname::text FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
       WHERE c.relnamespace = 'authx'::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0
         AND NOT a.attisdropped AND a.attcollation = 'pg_catalog."C"'::regcollation$$,
    $$VALUES ('roles', 'name'), ('roles', 'parent'), ('role_permissions', 'role'),
             ('role_permissions', 'permission'), ('user_roles', 'role'), ('api_keys', 'prefix'),
             ('api_keys', 'scopes'), ('api_key_usage', 'code'), ('rate_limit_policies', 'name'),
             ('rate_limit_overrides', 'policy'), ('threat_rules', 'name')$$,
    'role names, permissions, scopes, key prefixes, usage codes, rate-limit policy names and threat rule names '
    '(only they) are COLLATE "C"'
);
-- apikey_verify (C) finds api_keys_prefix_key by name; user_grant names
-- user_roles_pkey in ON CONFLICT.
SELECT set_eq(
    $$SELECT i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
       WHERE i.indrelid IN ('authx.roles'::regclass, 'authx.role_permissions'::regclass, 'authx.user_roles'::regclass,
                            'authx.api_keys'::regclass, 'authx.api_key_usage'::regclass)$$,
    $$VALUES ('authx.roles_pkey', 'CREATE UNIQUE INDEX roles_pkey ON authx.roles USING btree (name)'),
             ('authx.roles_parent_idx', 'CREATE INDEX roles_parent_idx ON authx.roles USING btree (parent)'),
             ('authx.role_permissions_pkey',
              'CREATE UNIQUE INDEX role_permissions_pkey ON authx.role_permissions USING btree (role, permission)'),
             ('authx.user_roles_pkey', 'CREATE UNIQUE INDEX user_roles_pkey ON authx.user_roles USING btree (user_id, role)'),
             ('authx.user_roles_role_idx', 'CREATE INDEX user_roles_role_idx ON authx.user_roles USING btree (role)'),
             ('authx.api_keys_pkey', 'CREATE UNIQUE INDEX api_keys_pkey ON authx.api_keys USING btree (id)'),
             ('authx.api_keys_prefix_key', 'CREATE UNIQUE INDEX api_keys_prefix_key ON authx.api_keys USING btree (prefix)'),
             ('authx.api_keys_user_idx', 'CREATE INDEX api_keys_user_idx ON authx.api_keys USING btree (user_id)'),
             ('authx.api_key_usage_pkey',
              'CREATE UNIQUE INDEX api_key_usage_pkey ON authx.api_key_usage USING btree (key_id, hour, code)')$$,
    'indexes of roles, role_permissions, user_roles, api_keys, api_key_usage are exactly these'
);
SELECT set_eq(
    $$SELECT c.conrelid::regclass::text, c.conname::text, pg_catalog.pg_get_constraintdef(c.oid)
        FROM pg_catalog.pg_constraint c
       WHERE c.conrelid IN ('authx.roles'::regclass, 'authx.role_permissions'::regclass, 'authx.user_roles'::regclass,
                            'authx.api_keys'::regclass, 'authx.api_key_usage'::regclass)$$,
    $$VALUES ('authx.roles', 'roles_pkey', 'PRIMARY KEY (name)'),
             ('authx.roles', 'roles_name_check', 'CHECK ((name ~ ''^[a-z][a-z0-9_.-]{0,62}$''::text))'),
             ('authx.roles', 'roles_check', 'CHECK ((parent IS DISTINCT FROM name))'),
             ('authx.roles', 'roles_parent_fkey', 'FOREIGN KEY (parent) REFERENCES authx.roles(name)'),
             ('authx.role_permissions', 'role_permissions_pkey', 'PRIMARY KEY (role, permission)'),
             ('authx.role_permissions', 'role_permissions_permission_check', 'CHECK (authx._permission_valid(permission))'),
             ('authx.role_permissions', 'role_permissions_role_fkey',
              'FOREIGN KEY (role) REFERENCES authx.roles(name) ON DELETE CASCADE'),
             ('authx.user_roles', 'user_roles_pkey', 'PRIMARY KEY (user_id, role)'),
             ('authx.user_roles', 'user_roles_user_id_fkey',
              'FOREIGN KEY (user_id) REFERENCES authx.users(id) ON DELETE CASCADE'),
             ('authx.user_roles', 'user_roles_role_fkey', 'FOREIGN KEY (role) REFERENCES authx.roles(name) ON DELETE CASCADE'),
             ('authx.api_keys', 'api_keys_pkey', 'PRIMARY KEY (id)'),
             ('authx.api_keys', 'api_keys_prefix_key', 'UNIQUE (prefix)'),
             ('authx.api_keys', 'api_keys_prefix_check', 'CHECK ((prefix ~ ''^[0-9a-f]{12}$''::text))'),
             ('authx.api_keys', 'api_keys_key_hash_check', 'CHECK ((octet_length(key_hash) = 32))'),
             ('authx.api_keys', 'api_keys_prev_hash_check', 'CHECK ((octet_length(prev_hash) = 32))'),
             ('authx.api_keys', 'api_keys_user_id_fkey', 'FOREIGN KEY (user_id) REFERENCES authx.users(id) ON DELETE CASCADE'),
             ('authx.api_keys', 'api_keys_name_check', 'CHECK (((length(name) >= 1) AND (length(name) <= 200)))'),
             ('authx.api_keys', 'api_keys_scopes_check', 'CHECK ((array_position(scopes, NULL::text) IS NULL))'),
             ('authx.api_keys', 'api_keys_rate_limit_check', 'CHECK ((rate_limit > 0))'),
             ('authx.api_keys', 'api_keys_rate_window_check',
              'CHECK (((rate_window >= ''00:00:01''::interval) AND (rate_window <= ''366 days''::interval)))'),
             ('authx.api_keys', 'api_keys_remaining_check', 'CHECK ((remaining >= 0))'),
             ('authx.api_keys', 'api_keys_refill_amount_check', 'CHECK ((refill_amount > 0))'),
             ('authx.api_keys', 'api_keys_refill_interval_check', 'CHECK ((refill_interval >= ''00:00:01''::interval))'),
             ('authx.api_keys', 'api_keys_check', 'CHECK (((refill_amount IS NULL) = (refill_interval IS NULL)))'),
             ('authx.api_keys', 'api_keys_check1',
              'CHECK (((refill_interval IS NULL) OR ((remaining IS NOT NULL) AND (refilled_at IS NOT NULL))))'),
             ('authx.api_keys', 'api_keys_check2', 'CHECK (((prev_hash IS NULL) = (prev_until IS NULL)))'),
             ('authx.api_key_usage', 'api_key_usage_pkey', 'PRIMARY KEY (key_id, hour, code)'),
             ('authx.api_key_usage', 'api_key_usage_count_check', 'CHECK ((count >= 0))'),
             ('authx.api_key_usage', 'api_key_usage_key_id_fkey',
              'FOREIGN KEY (key_id) REFERENCES authx.api_keys(id) ON DELETE CASCADE')$$,
    'constraints of roles, role_permissions, user_roles, api_keys, api_key_usage are exactly these '
    '(a parent cannot be dropped from under a child; permissions and grants go with their role, grants, keys and usage with their user or key; '
    'no NULL scope element)'
);
-- rate_check and the override functions look a policy up by name, and
-- rate_policy_set / rate_override_set name these primary keys in ON CONFLICT.
SELECT set_eq(
    $$SELECT i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
       WHERE i.indrelid IN ('authx.rate_limit_policies'::regclass, 'authx.rate_limit_overrides'::regclass)$$,
    $$VALUES ('authx.rate_limit_policies_pkey',
              'CREATE UNIQUE INDEX rate_limit_policies_pkey ON authx.rate_limit_policies USING btree (name)'),
             ('authx.rate_limit_overrides_pkey',
              'CREATE UNIQUE INDEX rate_limit_overrides_pkey ON authx.rate_limit_overrides USING btree (policy, subject)')$$,
    'indexes of rate_limit_policies and rate_limit_overrides are exactly their primary keys'
);
SELECT set_eq(
    $$SELECT c.conrelid::regclass::text, c.conname::text, pg_catalog.pg_get_constraintdef(c.oid)
        FROM pg_catalog.pg_constraint c
       WHERE c.conrelid IN ('authx.rate_limit_policies'::regclass, 'authx.rate_limit_overrides'::regclass)$$,
    $$VALUES ('authx.rate_limit_policies', 'rate_limit_policies_pkey', 'PRIMARY KEY (name)'),
             ('authx.rate_limit_policies', 'rate_limit_policies_name_check',
              'CHECK ((name ~ ''^[a-z][a-z0-9_.-]{0,62}$''::text))'),
             ('authx.rate_limit_policies', 'rate_limit_policies_max_check', 'CHECK ((max > 0))'),
             ('authx.rate_limit_policies', 'rate_limit_policies_per_check',
              'CHECK (((EXTRACT(epoch FROM per) >= 0.001) AND (EXTRACT(epoch FROM per) <= (31622400)::numeric)))'),
             ('authx.rate_limit_policies', 'rate_limit_policies_store_check',
              'CHECK ((store = ANY (ARRAY[''local''::text, ''redis''::text])))'),
             ('authx.rate_limit_policies', 'rate_limit_policies_fail_mode_check',
              'CHECK ((fail_mode = ANY (ARRAY[''local''::text, ''open''::text, ''closed''::text])))'),
             ('authx.rate_limit_overrides', 'rate_limit_overrides_pkey', 'PRIMARY KEY (policy, subject)'),
             ('authx.rate_limit_overrides', 'rate_limit_overrides_policy_fkey',
              'FOREIGN KEY (policy) REFERENCES authx.rate_limit_policies(name) ON UPDATE CASCADE ON DELETE CASCADE'),
             ('authx.rate_limit_overrides', 'rate_limit_overrides_subject_check',
              'CHECK (((length(subject) >= 1) AND (length(subject) <= 500)))'),
             ('authx.rate_limit_overrides', 'rate_limit_overrides_max_check', 'CHECK ((max > 0))'),
             ('authx.rate_limit_overrides', 'rate_limit_overrides_per_check',
              'CHECK (((EXTRACT(epoch FROM per) >= 0.001) AND (EXTRACT(epoch FROM per) <= (31622400)::numeric)))'),
             ('authx.rate_limit_overrides', 'rate_limit_overrides_check', 'CHECK ((bypass OR (max IS NOT NULL)))')$$,
    'constraints of rate_limit_policies and rate_limit_overrides are exactly these (policy names like role '
    'names, max > 0, per 1 ms .. 366 days in epoch seconds (31622400), store local/redis, fail_mode local/open/closed; overrides go with '
    'their policy, subjects of 1-500 characters, max or bypass)'
);

SELECT is_partitioned('authx', 'audit_log', 'audit_log is partitioned');
SELECT is(pg_catalog.pg_get_partkeydef('authx.audit_log'::regclass), 'RANGE (at)', 'audit_log is range-partitioned on at');
SELECT is(
    (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) FROM pg_catalog.pg_class c
      WHERE c.oid = 'authx.audit_log_default'::regclass),
    'DEFAULT', 'audit_log_default is the DEFAULT partition of audit_log');

SELECT set_eq(
    $$SELECT c::regclass::text, w FROM pg_catalog.pg_extension,
             unnest(extconfig, extcondition) AS x(c, w) WHERE extname = 'authx'$$,
    $$VALUES ('authx.users', ''), ('authx.audit_log_default', ''), ('authx.audit_log_id_seq', ''),
             ('authx.sessions', ''), ('authx.lockouts', ''), ('authx.roles', 'WHERE NOT seeded'),
             ('authx.role_permissions', 'WHERE NOT seeded'), ('authx.user_roles', ''), ('authx.api_keys', ''),
             ('authx.api_key_usage', ''), ('authx.rate_limit_policies', 'WHERE NOT seeded'),
             ('authx.rate_limit_overrides', ''), ('authx.ip_blocks', ''), ('authx.threat_rules', 'WHERE NOT seeded'),
             ('authx.mfa_totp', ''), ('authx.mfa_recovery_codes', ''), ('authx.signing_keys', ''),
             ('authx.refresh_families', ''), ('authx.trusted_devices', ''), ('authx.user_tokens', ''),
             ('authx.usage_log_default', ''), ('authx.usage_hourly', ''), ('authx.usage_hourly_ip', ''),
             ('authx.usage_hourly_total', ''), ('authx.usage_daily', ''), ('authx.usage_daily_ip', ''),
             ('authx.settings', ''), ('authx.email_directory', ''), ('authx.shard_nodes', ''),
             ('authx.shard_map', ''), ('authx.bucket_moves', '')$$,
    'pg_dump keeps users, audit_log_default, the id sequence, sessions, lockouts, user_roles, api_keys, '
    'api_key_usage, rate_limit_overrides, ip_blocks, mfa_totp, mfa_recovery_codes, signing_keys, refresh_families, '
    'trusted_devices, user_tokens, usage_log_default, usage_hourly, usage_hourly_ip, usage_hourly_total, '
    'usage_daily, usage_daily_ip, settings, email_directory, shard_nodes, shard_map, bucket_moves, and roles, role_permissions, rate_limit_policies and threat_rules but '
    'the seeded rows (pg_extension_config_dump); not mfa_challenges, setting_defs (shipped) or alert_state (runtime)'
);

-- ---------------------------------------------------------------- triggers
-- Every user trigger on a table of schema authx, with its whole definition
-- (timing, events, columns, WHEN, level, function).  Partitions inherit no
-- triggers here; an extra or changed trigger is drift.
SELECT set_eq(
    $$SELECT t.tgrelid::regclass::text, t.tgname::text, pg_catalog.pg_get_triggerdef(t.oid)
        FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
       WHERE c.relnamespace = 'authx'::regnamespace AND NOT t.tgisinternal$$,
    $$VALUES ('authx.users', 'users_status_revoke_sessions',
              'CREATE TRIGGER users_status_revoke_sessions AFTER UPDATE OF status ON authx.users FOR EACH ROW '
              'WHEN (((new.status = ANY (ARRAY[''disabled''::text, ''deleted''::text])) '
              'AND (old.status IS DISTINCT FROM new.status))) EXECUTE FUNCTION authx._user_status_revoke()'),
             ('authx.sessions', 'sessions_version',
              'CREATE TRIGGER sessions_version BEFORE UPDATE ON authx.sessions FOR EACH ROW '
              'EXECUTE FUNCTION authx._sessions_version()'),
             ('authx.sessions', 'sessions_cache',
              'CREATE TRIGGER sessions_cache AFTER INSERT OR DELETE OR UPDATE ON authx.sessions FOR EACH ROW '
              'EXECUTE FUNCTION authx._sessions_cache()'),
             ('authx.roles', 'roles_changed',
              'CREATE TRIGGER roles_changed AFTER INSERT OR DELETE OR UPDATE ON authx.roles '
              'FOR EACH ROW EXECUTE FUNCTION authx._rbac_changed()'),
             ('authx.role_permissions', 'role_permissions_changed',
              'CREATE TRIGGER role_permissions_changed AFTER INSERT OR DELETE OR UPDATE ON authx.role_permissions '
              'FOR EACH ROW EXECUTE FUNCTION authx._rbac_changed()'),
             ('authx.user_roles', 'user_roles_changed',
              'CREATE TRIGGER user_roles_changed AFTER INSERT OR DELETE OR UPDATE ON authx.user_roles '
              'FOR EACH ROW EXECUTE FUNCTION authx._rbac_changed()'),
             ('authx.roles', 'roles_truncated',
              'CREATE TRIGGER roles_truncated AFTER TRUNCATE ON authx.roles '
              'FOR EACH STATEMENT EXECUTE FUNCTION authx._rbac_changed()'),
             ('authx.role_permissions', 'role_permissions_truncated',
              'CREATE TRIGGER role_permissions_truncated AFTER TRUNCATE ON authx.role_permissions '
              'FOR EACH STATEMENT EXECUTE FUNCTION authx._rbac_changed()'),
             ('authx.user_roles', 'user_roles_truncated',
              'CREATE TRIGGER user_roles_truncated AFTER TRUNCATE ON authx.user_roles '
              'FOR EACH STATEMENT EXECUTE FUNCTION authx._rbac_changed()'),
             ('authx.users', 'users_status_rbac',
              'CREATE TRIGGER users_status_rbac AFTER UPDATE OF status ON authx.users FOR EACH ROW '
              'WHEN ((old.status IS DISTINCT FROM new.status)) EXECUTE FUNCTION authx._rbac_changed()'),
             ('authx.users', 'users_deleted_roles',
              'CREATE TRIGGER users_deleted_roles AFTER UPDATE OF status ON authx.users FOR EACH ROW '
              'WHEN (((new.status = ''deleted''::text) AND (old.status IS DISTINCT FROM new.status))) '
              'EXECUTE FUNCTION authx._user_deleted_roles()'),
             ('authx.roles', 'roles_check_cycle',
              'CREATE TRIGGER roles_check_cycle BEFORE INSERT OR UPDATE OF parent ON authx.roles FOR EACH ROW '
              'EXECUTE FUNCTION authx._roles_check_cycle()'),
             ('authx.api_keys', 'api_keys_version',
              'CREATE TRIGGER api_keys_version BEFORE UPDATE ON authx.api_keys FOR EACH ROW '
              'EXECUTE FUNCTION authx._sessions_version()'),
             ('authx.api_keys', 'api_keys_cache',
              'CREATE TRIGGER api_keys_cache AFTER INSERT OR DELETE OR UPDATE ON authx.api_keys FOR EACH ROW '
              'EXECUTE FUNCTION authx._api_keys_cache()'),
             ('authx.users', 'users_status_apikeys',
              'CREATE TRIGGER users_status_apikeys AFTER UPDATE OF status ON authx.users FOR EACH ROW '
              'WHEN ((old.status IS DISTINCT FROM new.status)) EXECUTE FUNCTION authx._user_status_apikeys()'),
             ('authx.rate_limit_policies', 'rate_limit_policies_unseed',
              'CREATE TRIGGER rate_limit_policies_unseed BEFORE UPDATE ON authx.rate_limit_policies FOR EACH ROW '
              'WHEN (old.seeded) EXECUTE FUNCTION authx._unseed()'),
             ('authx.rate_limit_policies', 'rate_limit_policies_merge_seed',
              'CREATE TRIGGER rate_limit_policies_merge_seed BEFORE INSERT ON authx.rate_limit_policies FOR EACH ROW '
              'WHEN ((NOT new.seeded)) EXECUTE FUNCTION authx._rate_policy_merge_seed()'),
             ('authx.rate_limit_policies', 'rate_limit_policies_changed',
              'CREATE TRIGGER rate_limit_policies_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE '
              'ON authx.rate_limit_policies FOR EACH STATEMENT EXECUTE FUNCTION authx._policy_changed()'),
             ('authx.rate_limit_overrides', 'rate_limit_overrides_changed',
              'CREATE TRIGGER rate_limit_overrides_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE '
              'ON authx.rate_limit_overrides FOR EACH STATEMENT EXECUTE FUNCTION authx._policy_changed()'),
             ('authx.threat_rules', 'threat_rules_unseed',
              'CREATE TRIGGER threat_rules_unseed BEFORE UPDATE ON authx.threat_rules FOR EACH ROW '
              'WHEN (old.seeded) EXECUTE FUNCTION authx._unseed()'),
             ('authx.threat_rules', 'threat_rules_merge_seed',
              'CREATE TRIGGER threat_rules_merge_seed BEFORE INSERT ON authx.threat_rules FOR EACH ROW '
              'WHEN ((NOT new.seeded)) EXECUTE FUNCTION authx._threat_rule_merge_seed()'),
             ('authx.threat_rules', 'threat_rules_changed',
              'CREATE TRIGGER threat_rules_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE '
              'ON authx.threat_rules FOR EACH STATEMENT EXECUTE FUNCTION authx._policy_changed()'),
             ('authx.ip_blocks', 'ip_blocks_changed',
              'CREATE TRIGGER ip_blocks_changed AFTER INSERT OR DELETE OR UPDATE ON authx.ip_blocks '
              'FOR EACH ROW EXECUTE FUNCTION authx._ip_blocks_changed()'),
             ('authx.ip_blocks', 'ip_blocks_truncated',
              'CREATE TRIGGER ip_blocks_truncated AFTER TRUNCATE ON authx.ip_blocks '
              'FOR EACH STATEMENT EXECUTE FUNCTION authx._ip_blocks_changed()'),
             ('authx.users', 'users_inactive_mfa',
              'CREATE TRIGGER users_inactive_mfa BEFORE UPDATE OF deleted_at, status ON authx.users FOR EACH ROW '
              'WHEN ((((old.deleted_at IS NULL) AND (new.deleted_at IS NOT NULL)) OR ((old.status = ''active''::text) AND (new.status <> ''active''::text)))) '
              'EXECUTE FUNCTION authx._user_inactive_mfa()'),
             ('authx.sessions', 'sessions_truncated',
              'CREATE TRIGGER sessions_truncated AFTER TRUNCATE ON authx.sessions '
              'FOR EACH STATEMENT EXECUTE FUNCTION authx._cache_truncated()'),
             ('authx.api_keys', 'api_keys_truncated',
              'CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON authx.api_keys '
              'FOR EACH STATEMENT EXECUTE FUNCTION authx._cache_truncated()'),
             ('authx.signing_keys', 'signing_keys_changed',
              'CREATE TRIGGER signing_keys_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE '
              'ON authx.signing_keys FOR EACH STATEMENT EXECUTE FUNCTION authx._signing_keys_changed()'),
             ('authx.settings', 'settings_changed',
              'CREATE TRIGGER settings_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE '
              'ON authx.settings FOR EACH STATEMENT EXECUTE FUNCTION authx._settings_changed()'),
             ('authx.setting_defs', 'setting_defs_changed',
              'CREATE TRIGGER setting_defs_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE '
              'ON authx.setting_defs FOR EACH STATEMENT EXECUTE FUNCTION authx._settings_changed()')
      UNION ALL
      SELECT t, 'bucket_guard', format('CREATE TRIGGER bucket_guard BEFORE INSERT OR DELETE OR UPDATE ON %s '
                                       'FOR EACH ROW EXECUTE FUNCTION authx._bucket_guard(%s)', t, a)
        FROM (VALUES ('authx.users', '''id'''), ('authx.email_directory', '''email'', ''email'''),
                     ('authx.sessions', '''user_id'''), ('authx.api_keys', '''user_id'''),
                     ('authx.user_roles', '''user_id'''), ('authx.mfa_totp', '''user_id'''),
                     ('authx.mfa_recovery_codes', '''user_id'''), ('authx.mfa_challenges', '''user_id'''),
                     ('authx.refresh_families', '''user_id'''), ('authx.trusted_devices', '''user_id'''),
                     ('authx.user_tokens', '''user_id'''), ('authx.lockouts', '''user_id''')) g(t, a)$$,
    'triggers on authx tables are exactly bucket_guard (BEFORE row, on each table holding a bucket''s rows), '
    'users_status_revoke_sessions, sessions_version, sessions_cache, sessions_truncated and api_keys_truncated '
    '(TRUNCATE: the cache resyncs), '
    'roles_changed, role_permissions_changed, user_roles_changed (row), roles_truncated, '
    'role_permissions_truncated, user_roles_truncated (TRUNCATE), users_status_rbac, users_deleted_roles, '
    'roles_check_cycle, api_keys_version, api_keys_cache, users_status_apikeys, rate_limit_policies_unseed, '
    'rate_limit_policies_merge_seed, rate_limit_policies_changed, rate_limit_overrides_changed (statement: '
    'INSERT, UPDATE, DELETE, TRUNCATE), threat_rules_unseed, threat_rules_merge_seed, threat_rules_changed '
    '(statement), ip_blocks_changed (row), ip_blocks_truncated (TRUNCATE), users_inactive_mfa (BEFORE UPDATE OF '
    'deleted_at, status, row, when an account is deleted or stops being active), signing_keys_changed (statement: '
    'INSERT, UPDATE, DELETE, TRUNCATE), settings_changed and setting_defs_changed (statement: INSERT, UPDATE, '
    'DELETE, TRUNCATE)'
);
-- Enabled (origin and local), so they fire in every session.
SELECT is_empty(
    $$SELECT t.tgname::text FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
       WHERE c.relnamespace = 'authx'::regnamespace AND NOT t.tgisinternal AND t.tgenabled <> 'O'$$,
    'every authx trigger is enabled'
);

-- Trigger and cache functions: language, SECURITY DEFINER, volatility,
-- parallel safety, strictness, result type.
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.oid IN ('authx._sessions_version()'::regprocedure, 'authx._sessions_cache()'::regprocedure,
                       'authx.cache_sync(interval)'::regprocedure, 'authx.cache_status()'::regprocedure)$$,
    $$VALUES ('authx._sessions_version()', 'plpgsql', false, 'v', 'u', false, 'trigger'),
             ('authx._sessions_cache()', 'c', false, 'v', 'u', false, 'trigger'),
             ('authx.cache_sync(interval)', 'c', false, 'v', 'r', true, 'void'),
             ('authx.cache_status()', 'c', false, 'v', 'r', false, 'jsonb')$$,
    'cache functions: _sessions_version plpgsql, _sessions_cache C, cache_sync STRICT void, '
    'cache_status jsonb; none SECURITY DEFINER'
);
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.oid IN ('authx._rbac_changed()'::regprocedure, 'authx._roles_check_cycle()'::regprocedure,
                       'authx._api_keys_cache()'::regprocedure, 'authx._user_status_apikeys()'::regprocedure,
                       'authx._user_deleted_roles()'::regprocedure,
                       'authx.has_permission(uuid,text)'::regprocedure,
                       'authx.apikey_verify(text,text,integer,inet)'::regprocedure,
                       'authx._permission_valid(text)'::regprocedure)$$,
    $$VALUES ('authx._rbac_changed()', 'c', false, 'v', 'u', false, 'trigger'),
             ('authx._roles_check_cycle()', 'plpgsql', false, 'v', 'u', false, 'trigger'),
             ('authx._api_keys_cache()', 'c', false, 'v', 'u', false, 'trigger'),
             ('authx._user_status_apikeys()', 'plpgsql', false, 'v', 'u', false, 'trigger'),
             ('authx._user_deleted_roles()', 'plpgsql', false, 'v', 'u', false, 'trigger'),
             ('authx.has_permission(uuid,text)', 'c', false, 'v', 'r', true, 'boolean'),
             ('authx.apikey_verify(text,text,integer,inet)', 'c', false, 'v', 'u', false, 'authx.apikey_verification'),
             ('authx._permission_valid(text)', 'c', false, 'i', 's', true, 'boolean')$$,
    'RBAC and API key triggers and hot paths: _rbac_changed, _api_keys_cache C, _roles_check_cycle, '
    '_user_deleted_roles, _user_status_apikeys plpgsql; has_permission STRICT, apikey_verify returns apikey_verification, both '
    'VOLATILE C; _permission_valid IMMUTABLE STRICT PARALLEL SAFE C; none SECURITY DEFINER'
);
-- Rate limits: rate_limit, rate_peek and rate_check are the C hot paths
-- (not STRICT: a NULL argument raises 22004; rate_check reads the policy
-- tables as their owner, not as a definer); the policy and override
-- functions are PL/pgSQL definers; _ratelimit_purge (maintenance) and the
-- trigger function _rate_policy_merge_seed are PL/pgSQL and not definers
-- (_unseed, shared with threat_rules, is checked with the threat functions).
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace AND (p.proname LIKE 'rate\_%' OR p.proname LIKE '\_rate%')$$,
    $$VALUES ('authx.rate_limit(text,integer,interval,integer)', 'c', false, 'v', 'r', false, 'authx.rate_limit_result'),
             ('authx.rate_peek(text,integer,interval)', 'c', false, 'v', 'r', false, 'authx.rate_limit_result'),
             ('authx.rate_check(text,text,integer)', 'c', false, 'v', 'r', false, 'authx.rate_limit_result'),
             ('authx.rate_policy_set(text,integer,interval,text,text,text)', 'plpgsql', true, 'v', 'u', false, 'void'),
             ('authx.rate_override_set(text,text,integer,interval,boolean,timestamp with time zone,text)',
              'plpgsql', true, 'v', 'u', false, 'void'),
             ('authx.rate_override_remove(text,text)', 'plpgsql', true, 'v', 'u', false, 'boolean'),
             ('authx._ratelimit_purge(timestamp with time zone)', 'plpgsql', false, 'v', 'u', false, 'jsonb'),
             ('authx._rate_check_ip_email(text,inet,text)', 'plpgsql', false, 'v', 'u', false,
              'authx.rate_limit_result'),
             ('authx._rate_policy_merge_seed()', 'plpgsql', false, 'v', 'u', false, 'trigger')$$,
    'rate-limit functions: rate_limit, rate_peek and rate_check VOLATILE PARALLEL RESTRICTED C returning '
    'rate_limit_result, not definers; rate_policy_set, rate_override_set, rate_override_remove PL/pgSQL '
    'SECURITY DEFINER; _ratelimit_purge, _rate_check_ip_email and the trigger function _rate_policy_merge_seed '
    'PL/pgSQL, not definers; '
    'none STRICT'
);
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text, pg_catalog.pg_get_function_arguments(p.oid)
        FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace AND p.proname LIKE 'rate\_%' ORDER BY 1$$,
    $$VALUES ('authx.rate_check(text,text,integer)', 'policy text, subject text, cost integer DEFAULT 1'),
             ('authx.rate_limit(text,integer,interval,integer)',
              'subject text, max integer, per interval, cost integer DEFAULT 1'),
             ('authx.rate_override_remove(text,text)', 'policy text, subject text'),
             ('authx.rate_override_set(text,text,integer,interval,boolean,timestamp with time zone,text)',
              'policy text, subject text, max integer DEFAULT NULL::integer, per interval DEFAULT NULL::interval, '
              'bypass boolean DEFAULT false, expires_at timestamp with time zone DEFAULT NULL::timestamp with time zone, '
              'reason text DEFAULT NULL::text'),
             ('authx.rate_peek(text,integer,interval)', 'subject text, max integer, per interval'),
             ('authx.rate_policy_set(text,integer,interval,text,text,text)',
              'name text, max integer, per interval, fail_mode text DEFAULT ''local''::text, '
              'description text DEFAULT NULL::text, store text DEFAULT ''local''::text')$$,
    'rate-limit functions: argument names and defaults (cost 1; fail_mode and store local; override max, per, '
    'expires_at, reason NULL and bypass false)'
);
SELECT is(pg_catalog.pg_get_function_arguments('authx.cache_sync(interval)'::regprocedure),
          'timeout interval DEFAULT ''00:00:30''::interval',
          'cache_sync(timeout interval DEFAULT ''30 seconds'')');
-- An ip last, so existing calls keep working; with it a blocked address is
-- answered "blocked" and unknown keys count for the threat rules.
SELECT is(pg_catalog.pg_get_function_arguments('authx.apikey_verify(text,text,integer,inet)'::regprocedure),
          'api_key text, scope text DEFAULT NULL::text, cost integer DEFAULT 1, ip inet DEFAULT NULL::inet',
          'apikey_verify(api_key, scope DEFAULT NULL, cost DEFAULT 1, ip DEFAULT NULL)');

-- IP blocking: ip_blocked is the C hot path (STRICT: NULL in, NULL out);
-- management and the table readers are definers; _ipblock_purge
-- (maintenance) is not; the trigger function is C; so is _ip_key, the
-- network (IPv4 /32, IPv6 /64) rate limits and threat rules count by.
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace AND (p.proname LIKE 'ip\_%' OR p.proname LIKE '\_ip%')$$,
    $$VALUES ('authx.ip_blocked(inet)', 'c', false, 'v', 'r', true, 'boolean'),
             ('authx.ip_block(cidr,interval,text)', 'plpgsql', true, 'v', 'u', false, 'void'),
             ('authx.ip_unblock(cidr)', 'plpgsql', true, 'v', 'u', false, 'boolean'),
             ('authx.ip_allow(cidr,text)', 'plpgsql', true, 'v', 'u', false, 'void'),
             ('authx.ip_disallow(cidr)', 'plpgsql', true, 'v', 'u', false, 'boolean'),
             ('authx.ip_blocks()', 'sql', true, 's', 'u', false, 'record'),
             ('authx._ip_blocks_changed()', 'c', false, 'v', 'u', false, 'trigger'),
             ('authx._ip_blocks_live(timestamp with time zone)', 'sql', true, 's', 'u', false, 'record'),
             ('authx._ip_blocked_sql(inet,timestamp with time zone)', 'sql', true, 's', 'u', false, 'boolean'),
             ('authx._ipblock_purge(timestamp with time zone)', 'plpgsql', false, 'v', 'u', false, 'jsonb'),
             ('authx._ip_key(inet)', 'c', false, 'i', 's', true, 'cidr')$$,
    'IP-block functions: ip_blocked VOLATILE STRICT PARALLEL RESTRICTED C; ip_block, ip_unblock, ip_allow, '
    'ip_disallow PL/pgSQL and ip_blocks, _ip_blocks_live, _ip_blocked_sql SQL definers; _ip_blocks_changed C '
    'trigger; _ipblock_purge PL/pgSQL, not a definer; _ip_key IMMUTABLE STRICT PARALLEL SAFE C returning cidr'
);
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text, pg_catalog.pg_get_function_arguments(p.oid),
             pg_catalog.pg_get_function_result(p.oid)
        FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace AND p.proname LIKE 'ip\_%' ORDER BY 1$$,
    $$VALUES ('authx.ip_allow(cidr,text)', 'net cidr, reason text DEFAULT NULL::text', 'void'),
             ('authx.ip_block(cidr,interval,text)',
              'net cidr, duration interval DEFAULT NULL::interval, reason text DEFAULT NULL::text', 'void'),
             ('authx.ip_blocked(inet)', 'ip inet', 'boolean'),
             ('authx.ip_blocks()', '',
              'TABLE(net cidr, allow boolean, until timestamp with time zone, reason text, source text, '
              'created_at timestamp with time zone)'),
             ('authx.ip_disallow(cidr)', 'net cidr', 'boolean'),
             ('authx.ip_unblock(cidr)', 'net cidr', 'boolean')$$,
    'IP-block functions: argument names, defaults (duration and reasons NULL) and results'
);
SELECT columns_are('authx', 'ip_blocks', ARRAY['net', 'allow', 'until', 'reason', 'source', 'created_at'],
                   'authx.ip_blocks columns');
SELECT results_eq(
    $$SELECT a.attname::text COLLATE "default", pg_catalog.format_type(a.atttypid, a.atttypmod),
             a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid) COLLATE "default"
        FROM pg_catalog.pg_attribute a
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid = 'authx.ip_blocks'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum$$,
    $$VALUES ('net', 'cidr', true, NULL::text),
             ('allow', 'boolean', true, 'false'),
             ('until', 'timestamp with time zone', false, NULL),
             ('reason', 'text', false, NULL),
             ('source', 'text', true, '''manual''::text'),
             ('created_at', 'timestamp with time zone', true, 'now()')$$,
    'ip_blocks: column types, NOT NULL and defaults'
);
-- ip_block / ip_allow name the primary key in ON CONFLICT.
SELECT set_eq(
    $$SELECT i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
       WHERE i.indrelid = 'authx.ip_blocks'::regclass$$,
    $$VALUES ('authx.ip_blocks_pkey', 'CREATE UNIQUE INDEX ip_blocks_pkey ON authx.ip_blocks USING btree (net, allow)')$$,
    'the only index of ip_blocks is its primary key (net, allow)'
);
SELECT set_eq(
    $$SELECT c.conname::text, pg_catalog.pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c
       WHERE c.conrelid = 'authx.ip_blocks'::regclass$$,
    $$VALUES ('ip_blocks_pkey', 'PRIMARY KEY (net, allow)'),
             ('ip_blocks_source_check', 'CHECK ((source = ANY (ARRAY[''manual''::text, ''auto''::text])))')$$,
    'constraints of ip_blocks are exactly the primary key and the source check (manual or auto)'
);

-- ---------------------------------------------------------------- threat detection
SELECT columns_are('authx', 'threat_rules', ARRAY[
    'name', 'event_type', 'distinct_by', 'threshold', 'within', 'block_for', 'enabled', 'description', 'seeded'
], 'authx.threat_rules columns');
-- block_for NULL blocks until ip_unblock; distinct_by NULL counts every event.
SELECT results_eq(
    $$SELECT a.attname::text COLLATE "default", pg_catalog.format_type(a.atttypid, a.atttypmod),
             a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid) COLLATE "default"
        FROM pg_catalog.pg_attribute a
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid = 'authx.threat_rules'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum$$,
    $$VALUES ('name', 'text', true, NULL::text),
             ('event_type', 'text', true, NULL),
             ('distinct_by', 'text', false, NULL),
             ('threshold', 'integer', true, NULL),
             ('within', 'interval', true, NULL),
             ('block_for', 'interval', false, NULL),
             ('enabled', 'boolean', true, 'true'),
             ('description', 'text', false, NULL),
             ('seeded', 'boolean', true, 'false')$$,
    'threat_rules: column types, NOT NULL and defaults (enabled true, seeded false, no other default)'
);
-- threat_rule_set names the primary key in ON CONFLICT.
SELECT set_eq(
    $$SELECT i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
       WHERE i.indrelid = 'authx.threat_rules'::regclass$$,
    $$VALUES ('authx.threat_rules_pkey', 'CREATE UNIQUE INDEX threat_rules_pkey ON authx.threat_rules USING btree (name)')$$,
    'the only index of threat_rules is its primary key (name)'
);
SELECT set_eq(
    $$SELECT c.conname::text, pg_catalog.pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c
       WHERE c.conrelid = 'authx.threat_rules'::regclass$$,
    $$VALUES ('threat_rules_pkey', 'PRIMARY KEY (name)'),
             ('threat_rules_name_check', 'CHECK ((name ~ ''^[a-z][a-z0-9_.-]{0,62}$''::text))'),
             ('threat_rules_event_type_check', 'CHECK ((event_type ~ ''^[a-z0-9_.:-]{1,64}$''::text))'),
             ('threat_rules_distinct_by_check', 'CHECK ((distinct_by ~ ''^[a-z_][a-z0-9_]{0,62}$''::text))'),
             ('threat_rules_threshold_check', 'CHECK (((threshold >= 1) AND (threshold <= 1000000)))'),
             ('threat_rules_within_check',
              'CHECK (((EXTRACT(epoch FROM within) >= (1)::numeric) AND (EXTRACT(epoch FROM within) <= (31622400)::numeric)))'),
             ('threat_rules_block_for_check',
              'CHECK (((EXTRACT(epoch FROM block_for) >= (1)::numeric) AND (EXTRACT(epoch FROM block_for) <= (31622400)::numeric)))')$$,
    'constraints of threat_rules are exactly these (names like policy names, event types of 1-64 of a-z 0-9 _ . : -, '
    'distinct_by an identifier, threshold 1 .. 1000000, within and block_for 1 s .. 366 days in epoch seconds)'
);
-- Rule management and the summary are definers for authx_admin; the
-- worker's _threat_block and _alert run as the worker (no definer); the
-- trigger functions, _account_tag (login.failed details) and
-- _policy_changed (the backends' copies) are internal.
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace
         AND (p.proname LIKE 'threat\_%' OR p.proname LIKE '\_threat%'
              OR p.proname IN ('security_summary', '_alert', '_account_tag', '_policy_changed', '_unseed'))$$,
    $$VALUES ('authx.threat_rule_set(text,text,integer,interval,interval,text,boolean,text)',
              'plpgsql', true, 'v', 'u', false, 'void'),
             ('authx.threat_rule_drop(text)', 'plpgsql', true, 'v', 'u', false, 'boolean'),
             ('authx.security_summary(interval)', 'plpgsql', true, 'v', 'u', false, 'jsonb'),
             ('authx._threat_block(inet,text,inet)', 'plpgsql', false, 'v', 'u', false, 'boolean'),
             ('authx._alert(timestamp with time zone,text,text,uuid,inet,text,jsonb)',
              'plpgsql', false, 'v', 'u', false, 'void'),
             ('authx._account_tag(text)', 'sql', false, 'i', 's', true, 'text'),
             ('authx._policy_changed()', 'c', false, 'v', 'u', false, 'trigger'),
             ('authx._unseed()', 'plpgsql', false, 'v', 'u', false, 'trigger'),
             ('authx._threat_rule_merge_seed()', 'plpgsql', false, 'v', 'u', false, 'trigger')$$,
    'threat functions: threat_rule_set, threat_rule_drop and security_summary VOLATILE PL/pgSQL definers (security_summary reads ip_blocked, which counts); '
    '_threat_block, _alert PL/pgSQL, not definers; _account_tag IMMUTABLE STRICT PARALLEL SAFE SQL; '
    '_policy_changed C and _unseed, _threat_rule_merge_seed PL/pgSQL triggers, not definers'
);
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text, pg_catalog.pg_get_function_arguments(p.oid)
        FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND (p.proname LIKE 'threat\_%' OR p.proname IN ('security_summary', '_threat_block', '_alert', '_account_tag'))
       ORDER BY 1$$,
    $$VALUES ('authx._account_tag(text)', 'p_email text'),
             ('authx._alert(timestamp with time zone,text,text,uuid,inet,text,jsonb)',
              'p_at timestamp with time zone, p_type text, p_severity text, p_user uuid, p_ip inet, '
              'p_user_agent text, p_details jsonb'),
             ('authx._threat_block(inet,text,inet)', 'p_net inet, p_rule text, p_ip inet'),
             ('authx.security_summary(interval)', 'since interval DEFAULT ''24:00:00''::interval'),
             ('authx.threat_rule_drop(text)', 'name text'),
             ('authx.threat_rule_set(text,text,integer,interval,interval,text,boolean,text)',
              'name text, event_type text, threshold integer, within interval, '
              'block_for interval DEFAULT ''01:00:00''::interval, distinct_by text DEFAULT NULL::text, '
              'enabled boolean DEFAULT true, description text DEFAULT NULL::text')$$,
    'threat functions: argument names and defaults (block_for 1 hour, distinct_by NULL, enabled true, '
    'description NULL; since 24 hours)'
);

-- ---------------------------------------------------------------- MFA
SELECT columns_are('authx', 'mfa_totp', ARRAY[
    'user_id', 'seed_sealed', 'digits', 'period', 'confirmed_at', 'last_step', 'created_at'
], 'authx.mfa_totp columns (the seed only sealed)');
SELECT columns_are('authx', 'mfa_recovery_codes', ARRAY['user_id', 'code_hash', 'used_at', 'created_at'],
                   'authx.mfa_recovery_codes columns (only hashes)');
SELECT columns_are('authx', 'mfa_challenges', ARRAY[
    'token_hash', 'user_id', 'ip', 'user_agent', 'created_at', 'expires_at', 'used_at'
], 'authx.mfa_challenges columns (no token column: only its hash)');
-- confirmed_at NULL is a pending enrolment; last_step -1 accepts any step.
SELECT results_eq(
    $$SELECT c.relname::text COLLATE "default", a.attname::text COLLATE "default",
             pg_catalog.format_type(a.atttypid, a.atttypmod),
             a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid) COLLATE "default"
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid IN ('authx.mfa_totp'::regclass, 'authx.mfa_recovery_codes'::regclass,
                            'authx.mfa_challenges'::regclass)
         AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY c.relname DESC, a.attnum$$,
    $$VALUES ('mfa_totp', 'user_id', 'uuid', true, NULL::text),
             ('mfa_totp', 'seed_sealed', 'bytea', true, NULL),
             ('mfa_totp', 'digits', 'integer', true, NULL),
             ('mfa_totp', 'period', 'integer', true, NULL),
             ('mfa_totp', 'confirmed_at', 'timestamp with time zone', false, NULL),
             ('mfa_totp', 'last_step', 'bigint', true, '''-1''::integer'),
             ('mfa_totp', 'created_at', 'timestamp with time zone', true, 'now()'),
             ('mfa_recovery_codes', 'user_id', 'uuid', true, NULL),
             ('mfa_recovery_codes', 'code_hash', 'bytea', true, NULL),
             ('mfa_recovery_codes', 'used_at', 'timestamp with time zone', false, NULL),
             ('mfa_recovery_codes', 'created_at', 'timestamp with time zone', true, 'now()'),
             ('mfa_challenges', 'token_hash', 'bytea', true, NULL),
             ('mfa_challenges', 'user_id', 'uuid', true, NULL),
             ('mfa_challenges', 'ip', 'inet', false, NULL),
             ('mfa_challenges', 'user_agent', 'text', false, NULL),
             ('mfa_challenges', 'created_at', 'timestamp with time zone', true, 'now()'),
             ('mfa_challenges', 'expires_at', 'timestamp with time zone', true, NULL),
             ('mfa_challenges', 'used_at', 'timestamp with time zone', false, NULL)$$,
    'mfa_totp, mfa_recovery_codes and mfa_challenges: column types, NOT NULL and defaults'
);
-- totp_enroll names mfa_totp_pkey in ON CONFLICT; the purge scans
-- mfa_challenges by expires_at.
SELECT set_eq(
    $$SELECT i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
       WHERE i.indrelid IN ('authx.mfa_totp'::regclass, 'authx.mfa_recovery_codes'::regclass,
                            'authx.mfa_challenges'::regclass)$$,
    $$VALUES ('authx.mfa_totp_pkey', 'CREATE UNIQUE INDEX mfa_totp_pkey ON authx.mfa_totp USING btree (user_id)'),
             ('authx.mfa_recovery_codes_pkey',
              'CREATE UNIQUE INDEX mfa_recovery_codes_pkey ON authx.mfa_recovery_codes USING btree (user_id, code_hash)'),
             ('authx.mfa_challenges_pkey',
              'CREATE UNIQUE INDEX mfa_challenges_pkey ON authx.mfa_challenges USING btree (token_hash)'),
             ('authx.mfa_challenges_expires_idx',
              'CREATE INDEX mfa_challenges_expires_idx ON authx.mfa_challenges USING btree (expires_at)')$$,
    'indexes of mfa_totp, mfa_recovery_codes, mfa_challenges are exactly their primary keys and '
    'mfa_challenges_expires_idx'
);
SELECT set_eq(
    $$SELECT c.conrelid::regclass::text, c.conname::text, pg_catalog.pg_get_constraintdef(c.oid)
        FROM pg_catalog.pg_constraint c
       WHERE c.conrelid IN ('authx.mfa_totp'::regclass, 'authx.mfa_recovery_codes'::regclass,
                            'authx.mfa_challenges'::regclass)$$,
    $$VALUES ('authx.mfa_totp', 'mfa_totp_pkey', 'PRIMARY KEY (user_id)'),
             ('authx.mfa_totp', 'mfa_totp_user_id_fkey',
              'FOREIGN KEY (user_id) REFERENCES authx.users(id) ON DELETE CASCADE'),
             ('authx.mfa_totp', 'mfa_totp_digits_check', 'CHECK (((digits >= 6) AND (digits <= 8)))'),
             ('authx.mfa_totp', 'mfa_totp_period_check', 'CHECK (((period >= 1) AND (period <= 300)))'),
             ('authx.mfa_recovery_codes', 'mfa_recovery_codes_pkey', 'PRIMARY KEY (user_id, code_hash)'),
             ('authx.mfa_recovery_codes', 'mfa_recovery_codes_user_id_fkey',
              'FOREIGN KEY (user_id) REFERENCES authx.users(id) ON DELETE CASCADE'),
             ('authx.mfa_challenges', 'mfa_challenges_pkey', 'PRIMARY KEY (token_hash)'),
             ('authx.mfa_challenges', 'mfa_challenges_user_id_fkey',
              'FOREIGN KEY (user_id) REFERENCES authx.users(id) ON DELETE CASCADE')$$,
    'constraints of mfa_totp, mfa_recovery_codes, mfa_challenges are exactly these (one authenticator per user, '
    '6-8 digits, a period of 1-300 s; all three go with their user on delete)'
);
-- The API is PL/pgSQL definers for authx_app; the TOTP primitives are C
-- (no definer: they run inside the definers), _totp_code IMMUTABLE for the
-- RFC vectors; the checks, gate, challenge, purge and trigger are PL/pgSQL
-- and _uri_encode, _recovery_hash IMMUTABLE STRICT PARALLEL SAFE SQL, none
-- a definer.
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace AND p.proname ~ '(totp|mfa|recovery|^_uri_)'$$,
    $$VALUES ('authx.totp_enroll(uuid,text)', 'plpgsql', true, 'v', 'u', false, 'record'),
             ('authx.totp_confirm(uuid,text)', 'plpgsql', true, 'v', 'u', false, 'boolean'),
             ('authx.totp_verify(uuid,text)', 'plpgsql', true, 'v', 'u', false, 'boolean'),
             ('authx.totp_disable(uuid)', 'plpgsql', true, 'v', 'u', false, 'boolean'),
             ('authx.recovery_codes_generate(uuid)', 'plpgsql', true, 'v', 'u', false, 'text[]'),
             ('authx.recovery_code_use(uuid,text)', 'plpgsql', true, 'v', 'u', false, 'boolean'),
             ('authx.login_mfa(text,text,inet,text)', 'plpgsql', true, 'v', 'u', false, 'record'),
             ('authx._totp_seed_new(uuid)', 'c', false, 'v', 'u', true, 'record'),
             ('authx._totp_match(uuid,bytea,text,bigint,integer,integer,integer,timestamp with time zone)',
              'c', false, 'v', 'u', true, 'bigint'),
             ('authx._totp_code(bytea,timestamp with time zone,integer,integer)', 'c', false, 'i', 's', true, 'text'),
             ('authx._uri_encode(text)', 'sql', false, 'i', 's', true, 'text'),
             ('authx._recovery_hash(uuid,text)', 'sql', false, 'i', 's', true, 'bytea'),
             ('authx._mfa_gate(uuid)', 'plpgsql', false, 'v', 'u', false, 'text'),
             ('authx._mfa_failed(uuid,text)', 'plpgsql', false, 'v', 'u', false, 'void'),
             ('authx._totp_check(uuid,text)', 'plpgsql', false, 'v', 'u', false, 'text'),
             ('authx._recovery_check(uuid,text)', 'plpgsql', false, 'v', 'u', false, 'text'),
             ('authx._mfa_challenge_new(uuid,inet,text)', 'plpgsql', false, 'v', 'u', false, 'record'),
             ('authx._mfa_purge(timestamp with time zone)', 'plpgsql', false, 'v', 'u', false, 'jsonb'),
             ('authx._user_inactive_mfa()', 'plpgsql', false, 'v', 'u', false, 'trigger')$$,
    'MFA functions: totp_enroll, totp_confirm, totp_verify, totp_disable, recovery_codes_generate, '
    'recovery_code_use, login_mfa VOLATILE PL/pgSQL definers; _totp_seed_new, _totp_match VOLATILE STRICT C, '
    '_totp_code IMMUTABLE STRICT PARALLEL SAFE C; _uri_encode, _recovery_hash IMMUTABLE STRICT PARALLEL SAFE SQL; _mfa_gate, '
    '_mfa_failed, _totp_check, _recovery_check, _mfa_challenge_new, _mfa_purge and the trigger function '
    '_user_inactive_mfa PL/pgSQL; no internal is a definer'
);
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text, pg_catalog.pg_get_function_arguments(p.oid),
             pg_catalog.pg_get_function_result(p.oid)
        FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace AND p.proname ~ '(totp|mfa|recovery|^_uri_)' ORDER BY 1$$,
    $$VALUES ('authx._mfa_challenge_new(uuid,inet,text)',
              'p_user_id uuid, p_ip inet, p_user_agent text, OUT token text, OUT expires_at timestamp with time zone',
              'record'),
             ('authx._mfa_failed(uuid,text)', 'p_user_id uuid, p_factor text', 'void'),
             ('authx._mfa_gate(uuid)', 'p_user_id uuid', 'text'),
             ('authx._mfa_purge(timestamp with time zone)', 'p_now timestamp with time zone', 'jsonb'),
             ('authx._recovery_check(uuid,text)', 'p_user_id uuid, p_code text', 'text'),
             ('authx._recovery_hash(uuid,text)', 'p_user_id uuid, p_code text', 'bytea'),
             ('authx._totp_check(uuid,text)', 'p_user_id uuid, p_code text', 'text'),
             ('authx._totp_code(bytea,timestamp with time zone,integer,integer)',
              'p_seed bytea, p_at timestamp with time zone, p_digits integer DEFAULT 6, p_period integer DEFAULT 30',
              'text'),
             ('authx._totp_match(uuid,bytea,text,bigint,integer,integer,integer,timestamp with time zone)',
              'p_user_id uuid, p_sealed bytea, p_code text, p_after_step bigint, p_digits integer, p_period integer, '
              'p_window integer, p_at timestamp with time zone', 'bigint'),
             ('authx._totp_seed_new(uuid)', 'p_user_id uuid, OUT secret text, OUT sealed bytea', 'record'),
             ('authx._uri_encode(text)', 'p text', 'text'),
             ('authx._user_inactive_mfa()', '', 'trigger'),
             ('authx.login_mfa(text,text,inet,text)',
              'challenge text, code text, ip inet DEFAULT NULL::inet, user_agent text DEFAULT NULL::text',
              'TABLE(status text, user_id uuid, session_token text, expires_at timestamp with time zone)'),
             ('authx.recovery_code_use(uuid,text)', 'user_id uuid, code text', 'boolean'),
             ('authx.recovery_codes_generate(uuid)', 'user_id uuid', 'text[]'),
             ('authx.totp_confirm(uuid,text)', 'user_id uuid, code text', 'boolean'),
             ('authx.totp_disable(uuid)', 'user_id uuid', 'boolean'),
             ('authx.totp_enroll(uuid,text)', 'user_id uuid, issuer text DEFAULT ''authx''::text',
              'TABLE(secret text, otpauth_uri text)'),
             ('authx.totp_verify(uuid,text)', 'user_id uuid, code text', 'boolean')$$,
    'MFA functions: argument names, defaults (issuer ''authx''; ip and user_agent NULL; digits 6 and period 30 '
    'for _totp_code) and results'
);
-- The settings: the key file is read at start only and hidden from
-- non-superusers; the TOTP shape, window, failure budget and challenge
-- lifetime are for superusers.
SELECT set_eq(
    $$SELECT name::text, vartype::text, boot_val::text, coalesce(unit, '')::text AS unit, context::text,
             coalesce(min_val, '')::text AS min_val, coalesce(max_val, '')::text AS max_val
        FROM pg_catalog.pg_settings WHERE name ~ '^authx\.(key_file|totp_|mfa_)'$$,
    $$VALUES ('authx.key_file', 'string', '', '', 'postmaster', '', ''),
             ('authx.totp_digits', 'integer', '6', '', 'superuser', '6', '8'),
             ('authx.totp_period', 'integer', '30', '', 'superuser', '15', '300'),
             ('authx.totp_window', 'integer', '1', '', 'superuser', '0', '10'),
             ('authx.mfa_max_failures', 'integer', '10', '', 'superuser', '1', '1000'),
             ('authx.mfa_challenge_ttl', 'integer', '300', 's', 'superuser', '30', '3600')$$,
    'MFA settings: key_file (postmaster, empty: authx.key in the data directory), totp_digits 6 (6-8), '
    'totp_period 30 (15-300), totp_window 1 (0-10), mfa_max_failures 10 (1-1000), mfa_challenge_ttl 300 s '
    '(30-3600), all but key_file SUSET'
);

-- ---------------------------------------------------------------- access tokens
SELECT columns_are('authx', 'signing_keys', ARRAY[
    'kid', 'alg', 'public_key', 'private_sealed', 'created_at', 'retired_at', 'verify_until'
], 'authx.signing_keys columns (the private part only sealed)');
SELECT columns_are('authx', 'refresh_families', ARRAY[
    'id', 'user_id', 'session_id', 'generation', 'head_hashes', 'parent_hashes', 'rotated_at', 'claims',
    'created_at', 'revoked_at', 'revoke_reason'
], 'authx.refresh_families columns (no token column: only hashes)');
-- public_key NULL is an HS256 key; retired_at and verify_until NULL a
-- current one; a new family is generation 0 with no parent.
SELECT results_eq(
    $$SELECT c.relname::text COLLATE "default", a.attname::text COLLATE "default",
             pg_catalog.format_type(a.atttypid, a.atttypmod),
             a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid) COLLATE "default"
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid IN ('authx.signing_keys'::regclass, 'authx.refresh_families'::regclass)
         AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY c.relname DESC, a.attnum$$,
    $$VALUES ('signing_keys', 'kid', 'text', true, NULL::text),
             ('signing_keys', 'alg', 'text', true, NULL),
             ('signing_keys', 'public_key', 'bytea', false, NULL),
             ('signing_keys', 'private_sealed', 'bytea', true, NULL),
             ('signing_keys', 'created_at', 'timestamp with time zone', true, 'clock_timestamp()'),
             ('signing_keys', 'retired_at', 'timestamp with time zone', false, NULL),
             ('signing_keys', 'verify_until', 'timestamp with time zone', false, NULL),
             ('refresh_families', 'id', 'uuid', true, NULL),
             ('refresh_families', 'user_id', 'uuid', true, NULL),
             ('refresh_families', 'session_id', 'uuid', true, NULL),
             ('refresh_families', 'generation', 'integer', true, '0'),
             ('refresh_families', 'head_hashes', 'bytea[]', true, NULL),
             ('refresh_families', 'parent_hashes', 'bytea[]', true, '''{}''::bytea[]'),
             ('refresh_families', 'rotated_at', 'timestamp with time zone', false, NULL),
             ('refresh_families', 'claims', 'jsonb', true, '''{}''::jsonb'),
             ('refresh_families', 'created_at', 'timestamp with time zone', true, 'clock_timestamp()'),
             ('refresh_families', 'revoked_at', 'timestamp with time zone', false, NULL),
             ('refresh_families', 'revoke_reason', 'text', false, NULL)$$,
    'signing_keys and refresh_families: column types, NOT NULL and defaults'
);
-- The purge and the revocations look families up by session and by user.
SELECT set_eq(
    $$SELECT i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
       WHERE i.indrelid IN ('authx.signing_keys'::regclass, 'authx.refresh_families'::regclass)$$,
    $$VALUES ('authx.signing_keys_pkey', 'CREATE UNIQUE INDEX signing_keys_pkey ON authx.signing_keys USING btree (kid)'),
             ('authx.refresh_families_pkey',
              'CREATE UNIQUE INDEX refresh_families_pkey ON authx.refresh_families USING btree (id)'),
             ('authx.refresh_families_session_idx',
              'CREATE INDEX refresh_families_session_idx ON authx.refresh_families USING btree (session_id)'),
             ('authx.refresh_families_user_idx',
              'CREATE INDEX refresh_families_user_idx ON authx.refresh_families USING btree (user_id)')$$,
    'indexes of signing_keys and refresh_families are exactly their primary keys, refresh_families_session_idx '
    'and refresh_families_user_idx'
);
SELECT set_eq(
    $$SELECT c.conrelid::regclass::text, c.conname::text, pg_catalog.pg_get_constraintdef(c.oid)
        FROM pg_catalog.pg_constraint c
       WHERE c.conrelid IN ('authx.signing_keys'::regclass, 'authx.refresh_families'::regclass)$$,
    $$VALUES ('authx.signing_keys', 'signing_keys_pkey', 'PRIMARY KEY (kid)'),
             ('authx.signing_keys', 'signing_keys_kid_check', 'CHECK ((kid ~ ''^[A-Za-z0-9_-]{16}$''::text))'),
             ('authx.signing_keys', 'signing_keys_alg_check',
              'CHECK ((alg = ANY (ARRAY[''EdDSA''::text, ''HS256''::text])))'),
             ('authx.signing_keys', 'signing_keys_public_key_check', 'CHECK ((octet_length(public_key) = 32))'),
             ('authx.signing_keys', 'signing_keys_check',
              'CHECK (((alg = ''EdDSA''::text) = (public_key IS NOT NULL)))'),
             ('authx.signing_keys', 'signing_keys_check1',
              'CHECK (((retired_at IS NULL) = (verify_until IS NULL)))'),
             ('authx.refresh_families', 'refresh_families_pkey', 'PRIMARY KEY (id)'),
             ('authx.refresh_families', 'refresh_families_user_id_fkey',
              'FOREIGN KEY (user_id) REFERENCES authx.users(id) ON DELETE CASCADE'),
             ('authx.refresh_families', 'refresh_families_session_id_fkey',
              'FOREIGN KEY (session_id) REFERENCES authx.sessions(id) ON DELETE CASCADE'),
             ('authx.refresh_families', 'refresh_families_generation_check', 'CHECK ((generation >= 0))')$$,
    'constraints of signing_keys and refresh_families are exactly these (a 16-character base64url kid, EdDSA '
    'or HS256, a 32-byte public key for EdDSA only, retired_at and verify_until set together; families go with '
    'their user and their session on delete, generation >= 0)'
);
-- The API: token_issue, token_refresh (SQL around the PL/pgSQL body
-- _token_refresh), jwks and signing_key_rotate are definers; token_verify
-- is the C hot path (reading keys and sessions itself, no definer);
-- signing_key_secret is C and, with no grant, for superusers only; the
-- signing, key and refresh-token primitives are C, _ed25519 IMMUTABLE
-- for the RFC vectors; the rest are internal PL/pgSQL or SQL, no definer.
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace
         AND p.proname = ANY (ARRAY['token_issue', 'token_refresh', 'token_verify', 'jwks', 'signing_key_rotate',
                                    'signing_key_secret', '_signing_keys_changed', '_signing_key_new', '_jwt_sign',
                                    '_ed25519', '_refresh_token_new', '_refresh_token_parse', '_b64url',
                                    '_signing_key_ensure', '_reserved_claims', '_access_token', '_token_refresh',
                                    '_tokens_purge'])$$,
    $$VALUES ('authx.token_issue(uuid,text,jsonb)', 'plpgsql', true, 'v', 'u', false, 'record'),
             ('authx.token_refresh(text,inet)', 'sql', true, 'v', 'u', false, 'record'),
             ('authx.token_verify(text)', 'c', false, 'v', 'r', false, 'jsonb'),
             ('authx.jwks()', 'sql', true, 's', 'u', false, 'jsonb'),
             ('authx.signing_key_rotate()', 'plpgsql', true, 'v', 'u', false, 'text'),
             ('authx.signing_key_secret(text)', 'c', false, 'v', 'u', true, 'bytea'),
             ('authx._signing_keys_changed()', 'c', false, 'v', 'u', false, 'trigger'),
             ('authx._signing_key_new(text)', 'c', false, 'v', 'u', true, 'record'),
             ('authx._jwt_sign(jsonb)', 'c', false, 'v', 'u', true, 'text'),
             ('authx._ed25519(bytea,bytea)', 'c', false, 'i', 's', true, 'record'),
             ('authx._refresh_token_new(uuid,integer,uuid)', 'c', false, 'v', 'u', false, 'record'),
             ('authx._refresh_token_parse(text)', 'c', false, 's', 'u', false, 'record'),
             ('authx._b64url(bytea)', 'sql', false, 'i', 's', true, 'text'),
             ('authx._signing_key_ensure()', 'plpgsql', false, 'v', 'u', false, 'void'),
             ('authx._reserved_claims()', 'sql', false, 'i', 's', false, 'text[]'),
             ('authx._access_token(uuid,uuid,jsonb)', 'plpgsql', false, 'v', 'u', false, 'record'),
             ('authx._token_refresh(text,inet)', 'plpgsql', false, 'v', 'u', false, 'record'),
             ('authx._tokens_purge(timestamp with time zone)', 'plpgsql', false, 'v', 'u', false, 'jsonb')$$,
    'token functions: token_issue, signing_key_rotate VOLATILE PL/pgSQL, token_refresh VOLATILE SQL and jwks '
    'STABLE SQL definers; token_verify VOLATILE PARALLEL RESTRICTED C, not STRICT; signing_key_secret, '
    '_signing_key_new, _jwt_sign VOLATILE STRICT C; _refresh_token_new VOLATILE C; _ed25519 IMMUTABLE STRICT PARALLEL SAFE C; '
    '_refresh_token_parse STABLE C, not STRICT; _signing_keys_changed C trigger; _b64url IMMUTABLE STRICT PARALLEL '
    'SAFE SQL, _reserved_claims IMMUTABLE PARALLEL SAFE SQL; _signing_key_ensure, _access_token, _token_refresh, '
    '_tokens_purge PL/pgSQL; no internal is a definer'
);
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text, pg_catalog.pg_get_function_arguments(p.oid),
             pg_catalog.pg_get_function_result(p.oid)
        FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND p.proname = ANY (ARRAY['token_issue', 'token_refresh', 'token_verify', 'jwks', 'signing_key_rotate',
                                    'signing_key_secret', '_signing_keys_changed', '_signing_key_new', '_jwt_sign',
                                    '_ed25519', '_refresh_token_new', '_refresh_token_parse', '_b64url',
                                    '_signing_key_ensure', '_reserved_claims', '_access_token', '_token_refresh',
                                    '_tokens_purge'])
       ORDER BY 1$$,
    $$VALUES ('authx._access_token(uuid,uuid,jsonb)',
              'p_user_id uuid, p_session_id uuid, p_claims jsonb, OUT access_token text, '
              'OUT expires_at timestamp with time zone', 'record'),
             ('authx._b64url(bytea)', 'p bytea', 'text'),
             ('authx._ed25519(bytea,bytea)', 'seed bytea, message bytea, OUT public_key bytea, OUT signature bytea',
              'record'),
             ('authx._jwt_sign(jsonb)', 'claims jsonb', 'text'),
             ('authx._refresh_token_new(uuid,integer,uuid)',
              'family uuid, generation integer, user_id uuid DEFAULT NULL::uuid, OUT token text, OUT token_hash bytea',
              'record'),
             ('authx._refresh_token_parse(text)',
              'token text, OUT family uuid, OUT generation integer, OUT token_hash bytea', 'record'),
             ('authx._reserved_claims()', '', 'text[]'),
             ('authx._signing_key_ensure()', '', 'void'),
             ('authx._signing_key_new(text)', 'alg text, OUT kid text, OUT public_key bytea, OUT private_sealed bytea',
              'record'),
             ('authx._signing_keys_changed()', '', 'trigger'),
             ('authx._token_refresh(text,inet)',
              'p_token text, p_ip inet, OUT status text, OUT access_token text, '
              'OUT expires_at timestamp with time zone, OUT refresh_token text', 'SETOF record'),
             ('authx._tokens_purge(timestamp with time zone)', 'p_now timestamp with time zone', 'jsonb'),
             ('authx.jwks()', '', 'jsonb'),
             ('authx.signing_key_rotate()', '', 'text'),
             ('authx.signing_key_secret(text)', 'kid text', 'bytea'),
             ('authx.token_issue(uuid,text,jsonb)',
              'user_id uuid, session_token text DEFAULT NULL::text, claims jsonb DEFAULT ''{}''::jsonb',
              'TABLE(access_token text, expires_at timestamp with time zone, refresh_token text)'),
             ('authx.token_refresh(text,inet)', 'refresh_token text, ip inet DEFAULT NULL::inet',
              'TABLE(status text, access_token text, expires_at timestamp with time zone, refresh_token text)'),
             ('authx.token_verify(text)', 'access_token text', 'jsonb')$$,
    'token functions: argument names, defaults (session_token NULL, claims ''{}''; ip NULL) and results'
);

-- ---------------------------------------------------------------- trusted devices
SELECT columns_are('authx', 'trusted_devices', ARRAY[
    'id', 'user_id', 'token_hash', 'fingerprint', 'name', 'created_at', 'expires_at', 'last_used_at', 'revoked_at'
], 'authx.trusted_devices columns (no token column: only its hash)');
SELECT results_eq(
    $$SELECT a.attname::text COLLATE "default", pg_catalog.format_type(a.atttypid, a.atttypmod),
             a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid) COLLATE "default"
        FROM pg_catalog.pg_attribute a
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid = 'authx.trusted_devices'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum$$,
    $$VALUES ('id', 'uuid', true, 'gen_random_uuid()'),
             ('user_id', 'uuid', true, NULL::text),
             ('token_hash', 'bytea', true, NULL),
             ('fingerprint', 'text', true, NULL),
             ('name', 'text', false, NULL),
             ('created_at', 'timestamp with time zone', true, 'clock_timestamp()'),
             ('expires_at', 'timestamp with time zone', true, NULL),
             ('last_used_at', 'timestamp with time zone', false, NULL),
             ('revoked_at', 'timestamp with time zone', false, NULL)$$,
    'trusted_devices: column types, NOT NULL and defaults'
);
-- login looks a device token up by its hash.
SELECT set_eq(
    $$SELECT i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
       WHERE i.indrelid = 'authx.trusted_devices'::regclass$$,
    $$VALUES ('authx.trusted_devices_pkey',
              'CREATE UNIQUE INDEX trusted_devices_pkey ON authx.trusted_devices USING btree (id)'),
             ('authx.trusted_devices_token_hash_key',
              'CREATE UNIQUE INDEX trusted_devices_token_hash_key ON authx.trusted_devices USING btree (token_hash)'),
             ('authx.trusted_devices_user_idx',
              'CREATE INDEX trusted_devices_user_idx ON authx.trusted_devices USING btree (user_id)')$$,
    'indexes of trusted_devices are exactly its primary key, trusted_devices_token_hash_key and trusted_devices_user_idx'
);
SELECT set_eq(
    $$SELECT c.conname::text, pg_catalog.pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c
       WHERE c.conrelid = 'authx.trusted_devices'::regclass$$,
    $$VALUES ('trusted_devices_pkey', 'PRIMARY KEY (id)'),
             ('trusted_devices_user_id_fkey', 'FOREIGN KEY (user_id) REFERENCES authx.users(id) ON DELETE CASCADE'),
             ('trusted_devices_token_hash_key', 'UNIQUE (token_hash)'),
             ('trusted_devices_token_hash_check', 'CHECK ((octet_length(token_hash) = 32))'),
             ('trusted_devices_fingerprint_check',
              'CHECK (((length(fingerprint) >= 1) AND (length(fingerprint) <= 512)))'),
             ('trusted_devices_name_check', 'CHECK ((length(name) <= 200))')$$,
    'constraints of trusted_devices are exactly these (devices go with their user on delete, a unique 32-byte hash, '
    'a fingerprint of 1-512 characters, a name of at most 200)'
);
-- device_trust, devices and device_revoke are definers for authx_app;
-- _device_check (login), _devices_revoke_all (totp_disable, password
-- reset) and _devices_purge (maintenance) are PL/pgSQL, no definer.
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace AND p.proname ~ 'device'$$,
    $$VALUES ('authx.device_trust(uuid,text,text,interval)', 'plpgsql', true, 'v', 'u', false, 'text'),
             ('authx.devices(uuid)', 'sql', true, 's', 'u', true, 'record'),
             ('authx.device_revoke(uuid)', 'plpgsql', true, 'v', 'u', true, 'boolean'),
             ('authx._device_check(uuid,text)', 'plpgsql', false, 'v', 'u', false, 'uuid'),
             ('authx._devices_revoke_all(uuid,text)', 'plpgsql', false, 'v', 'u', false, 'integer'),
             ('authx._devices_purge(timestamp with time zone)', 'plpgsql', false, 'v', 'u', false, 'jsonb')$$,
    'device functions: device_trust VOLATILE PL/pgSQL, device_revoke VOLATILE STRICT PL/pgSQL and devices STABLE '
    'STRICT SQL definers; _device_check, _devices_revoke_all, _devices_purge VOLATILE PL/pgSQL, not definers'
);
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text, pg_catalog.pg_get_function_arguments(p.oid),
             pg_catalog.pg_get_function_result(p.oid)
        FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace AND p.proname ~ 'device' ORDER BY 1$$,
    $$VALUES ('authx._device_check(uuid,text)', 'p_user_id uuid, p_token text', 'uuid'),
             ('authx._devices_purge(timestamp with time zone)', 'p_now timestamp with time zone', 'jsonb'),
             ('authx._devices_revoke_all(uuid,text)', 'p_user_id uuid, p_reason text', 'integer'),
             ('authx.device_revoke(uuid)', 'device_id uuid', 'boolean'),
             ('authx.device_trust(uuid,text,text,interval)',
              'user_id uuid, device_fingerprint text, name text DEFAULT NULL::text, ttl interval DEFAULT NULL::interval',
              'text'),
             ('authx.devices(uuid)', 'user_id uuid',
              'TABLE(device_id uuid, name text, fingerprint text, created_at timestamp with time zone, '
              'expires_at timestamp with time zone, last_used_at timestamp with time zone)')$$,
    'device functions: argument names, defaults (name and ttl NULL) and results'
);
-- The device token comes last, so existing calls keep working.
SELECT is(pg_catalog.pg_get_function_arguments('authx.login(text,text,inet,text,text)'::regprocedure),
          'email text, password text, ip inet DEFAULT NULL::inet, user_agent text DEFAULT NULL::text, '
          'device_token text DEFAULT NULL::text',
          'login(email, password, ip DEFAULT NULL, user_agent DEFAULT NULL, device_token DEFAULT NULL)');

-- ---------------------------------------------------------------- email verification and password reset
SELECT columns_are('authx', 'user_tokens', ARRAY[
    'token_hash', 'user_id', 'purpose', 'email', 'created_at', 'expires_at', 'used_at'
], 'authx.user_tokens columns (no token column: only its hash)');
SELECT results_eq(
    $$SELECT a.attname::text COLLATE "default", pg_catalog.format_type(a.atttypid, a.atttypmod),
             a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid) COLLATE "default"
        FROM pg_catalog.pg_attribute a
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid = 'authx.user_tokens'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum$$,
    $$VALUES ('token_hash', 'bytea', true, NULL::text),
             ('user_id', 'uuid', true, NULL),
             ('purpose', 'text', true, NULL),
             ('email', 'text', true, NULL),
             ('created_at', 'timestamp with time zone', true, 'clock_timestamp()'),
             ('expires_at', 'timestamp with time zone', true, NULL),
             ('used_at', 'timestamp with time zone', false, NULL)$$,
    'user_tokens: column types, NOT NULL and defaults'
);
-- A new token deletes the user's unused ones of its purpose.
SELECT set_eq(
    $$SELECT i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
       WHERE i.indrelid = 'authx.user_tokens'::regclass$$,
    $$VALUES ('authx.user_tokens_pkey', 'CREATE UNIQUE INDEX user_tokens_pkey ON authx.user_tokens USING btree (token_hash)'),
             ('authx.user_tokens_user_idx',
              'CREATE INDEX user_tokens_user_idx ON authx.user_tokens USING btree (user_id, purpose)')$$,
    'indexes of user_tokens are exactly its primary key (token_hash) and user_tokens_user_idx (user_id, purpose)'
);
SELECT set_eq(
    $$SELECT c.conname::text, pg_catalog.pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c
       WHERE c.conrelid = 'authx.user_tokens'::regclass$$,
    $$VALUES ('user_tokens_pkey', 'PRIMARY KEY (token_hash)'),
             ('user_tokens_token_hash_check', 'CHECK ((octet_length(token_hash) = 32))'),
             ('user_tokens_user_id_fkey', 'FOREIGN KEY (user_id) REFERENCES authx.users(id) ON DELETE CASCADE'),
             ('user_tokens_purpose_check',
              'CHECK ((purpose = ANY (ARRAY[''email_verification''::text, ''password_reset''::text])))')$$,
    'constraints of user_tokens are exactly these (a 32-byte hash, tokens go with their user on delete, '
    'purpose email_verification or password_reset)'
);
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace
         AND p.proname ~ '^(_user_token|email_verification_|password_reset_)'$$,
    $$VALUES ('authx.email_verification_issue(uuid)', 'plpgsql', true, 'v', 'u', false, 'record'),
             ('authx.email_verification_confirm(text)', 'plpgsql', true, 'v', 'u', false, 'record'),
             ('authx.password_reset_issue(text,inet)', 'plpgsql', true, 'v', 'u', false, 'record'),
             ('authx.password_reset_confirm(text,text)', 'plpgsql', true, 'v', 'u', false, 'record'),
             ('authx._user_token_new(uuid,text,text,interval)', 'plpgsql', false, 'v', 'u', false, 'record'),
             ('authx._user_token_take(text,text,text)', 'plpgsql', false, 'v', 'u', false, 'record'),
             ('authx._user_tokens_purge(timestamp with time zone)', 'plpgsql', false, 'v', 'u', false, 'jsonb')$$,
    'verification functions: email_verification_issue, email_verification_confirm, password_reset_issue, '
    'password_reset_confirm VOLATILE PL/pgSQL definers, not STRICT (bad input is answered, not raised); '
    '_user_token_new, _user_token_take, _user_tokens_purge PL/pgSQL, not definers'
);
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text, pg_catalog.pg_get_function_arguments(p.oid),
             pg_catalog.pg_get_function_result(p.oid)
        FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND p.proname ~ '^(_user_token|email_verification_|password_reset_)' ORDER BY 1$$,
    $$VALUES ('authx._user_token_new(uuid,text,text,interval)',
              'p_user_id uuid, p_purpose text, p_email text, p_ttl interval, OUT token text, '
              'OUT expires_at timestamp with time zone', 'record'),
             ('authx._user_token_take(text,text,text)',
              'p_token text, p_purpose text, p_prefix text, OUT verdict text, OUT user_id uuid, OUT token_hash bytea',
              'record'),
             ('authx._user_tokens_purge(timestamp with time zone)', 'p_now timestamp with time zone', 'jsonb'),
             ('authx.email_verification_confirm(text)', 'token text', 'TABLE(status text, user_id uuid)'),
             ('authx.email_verification_issue(uuid)', 'user_id uuid',
              'TABLE(token text, email text, expires_at timestamp with time zone)'),
             ('authx.password_reset_confirm(text,text)', 'token text, new_password text',
              'TABLE(status text, user_id uuid)'),
             ('authx.password_reset_issue(text,inet)', 'email text, ip inet DEFAULT NULL::inet',
              'TABLE(token text, expires_at timestamp with time zone)')$$,
    'verification functions: argument names, defaults (ip NULL) and results'
);
-- The settings of tokens, devices and verification: all for superusers.
SELECT set_eq(
    $$SELECT name::text, vartype::text, boot_val::text, coalesce(unit, '')::text AS unit, context::text,
             coalesce(min_val, '')::text AS min_val, coalesce(max_val, '')::text AS max_val,
             coalesce(enumvals::text, '') AS enumvals
        FROM pg_catalog.pg_settings WHERE name ~ '^authx\.(token_|refresh_|verification_|reset_|device_)'$$,
    $$VALUES ('authx.token_alg', 'enum', 'EdDSA', '', 'superuser', '', '', '{EdDSA,HS256}'),
             ('authx.token_ttl', 'integer', '900', 's', 'superuser', '1', '86400', ''),
             ('authx.token_role', 'string', 'authenticated', '', 'superuser', '', '', ''),
             ('authx.token_issuer', 'string', '', '', 'superuser', '', '', ''),
             ('authx.token_audience', 'string', '', '', 'superuser', '', '', ''),
             ('authx.refresh_reuse_grace', 'integer', '10', 's', 'superuser', '0', '300', ''),
             ('authx.verification_ttl', 'integer', '86400', 's', 'superuser', '60', '2592000', ''),
             ('authx.reset_ttl', 'integer', '3600', 's', 'superuser', '60', '86400', ''),
             ('authx.device_ttl', 'integer', '2592000', 's', 'superuser', '60', '31536000', '')$$,
    'token settings: token_alg EdDSA (EdDSA or HS256), token_ttl 900 s (1-86400), token_role authenticated, '
    'token_issuer and token_audience empty, refresh_reuse_grace 10 s (0-300), verification_ttl 1 day '
    '(60 s - 30 days), reset_ttl 1 hour (60 s - 1 day), device_ttl 30 days (60 s - 365 days), all SUSET'
);

-- ---------------------------------------------------------------- usage analytics and monitoring
SELECT columns_are('authx', 'usage_log', ARRAY['at', 'endpoint', 'status', 'latency_ms', 'api_key_id', 'user_id', 'ip'],
                   'authx.usage_log columns');
SELECT columns_are('authx', 'usage_hourly', ARRAY[
    'hour', 'endpoint', 'status_class', 'api_key_id', 'requests', 'latency_sum_ms', 'latency_hist'
], 'authx.usage_hourly columns');
SELECT columns_are('authx', 'usage_hourly_ip', ARRAY['hour', 'ip', 'requests', 'errors'], 'authx.usage_hourly_ip columns');
-- No defaults: the worker writes every column; the rollups key "no API
-- key" as the nil uuid, so api_key_id is NOT NULL there (a primary key
-- column) and nullable in the raw rows.
SELECT results_eq(
    $$SELECT c.relname::text COLLATE "default", a.attname::text COLLATE "default",
             pg_catalog.format_type(a.atttypid, a.atttypmod),
             a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid) COLLATE "default"
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid IN ('authx.usage_log'::regclass, 'authx.usage_hourly'::regclass,
                            'authx.usage_hourly_ip'::regclass)
         AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY c.relname DESC, a.attnum$$,
    $$VALUES ('usage_log', 'at', 'timestamp with time zone', true, NULL::text),
             ('usage_log', 'endpoint', 'text', true, NULL),
             ('usage_log', 'status', 'smallint', true, NULL),
             ('usage_log', 'latency_ms', 'real', true, NULL),
             ('usage_log', 'api_key_id', 'uuid', false, NULL),
             ('usage_log', 'user_id', 'uuid', false, NULL),
             ('usage_log', 'ip', 'inet', false, NULL),
             ('usage_hourly_ip', 'hour', 'timestamp with time zone', true, NULL),
             ('usage_hourly_ip', 'ip', 'inet', true, NULL),
             ('usage_hourly_ip', 'requests', 'bigint', true, NULL),
             ('usage_hourly_ip', 'errors', 'bigint', true, NULL),
             ('usage_hourly', 'hour', 'timestamp with time zone', true, NULL),
             ('usage_hourly', 'endpoint', 'text', true, NULL),
             ('usage_hourly', 'status_class', 'smallint', true, NULL),
             ('usage_hourly', 'api_key_id', 'uuid', true, NULL),
             ('usage_hourly', 'requests', 'bigint', true, NULL),
             ('usage_hourly', 'latency_sum_ms', 'double precision', true, NULL),
             ('usage_hourly', 'latency_hist', 'bigint[]', true, NULL)$$,
    'usage_log, usage_hourly and usage_hourly_ip: column types, NOT NULL, no defaults'
);
-- Daily partitions like audit_log's, made and retired by the same
-- _partitions_maintain; every partition gets the at index.
SELECT is_partitioned('authx', 'usage_log', 'usage_log is partitioned');
SELECT is(pg_catalog.pg_get_partkeydef('authx.usage_log'::regclass), 'RANGE (at)', 'usage_log is range-partitioned on at');
SELECT is(
    (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) FROM pg_catalog.pg_class c
      WHERE c.oid = 'authx.usage_log_default'::regclass),
    'DEFAULT', 'usage_log_default is the DEFAULT partition of usage_log');
SELECT is_empty(
    $$SELECT c.relname::text FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = 'authx.usage_log'::regclass
         AND (c.relname !~ '^usage_log_(default|p[0-9]{8})$'
              OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits x JOIN pg_catalog.pg_index ix ON ix.indexrelid = x.inhrelid
                              WHERE x.inhparent = 'authx.usage_log_at_idx'::regclass AND ix.indrelid = c.oid))$$,
    'the partitions of usage_log are usage_log_default and usage_log_pYYYYMMDD, each with its at index attached');
-- usage_record's worker names usage_hourly_pkey and usage_hourly_ip_pkey
-- (ON CONFLICT on their columns); usage_summary for one key reads by
-- usage_hourly_key_idx.
SELECT set_eq(
    $$SELECT i.indexrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
       WHERE i.indrelid IN ('authx.usage_log'::regclass, 'authx.usage_hourly'::regclass,
                            'authx.usage_hourly_ip'::regclass)$$,
    $$VALUES ('authx.usage_log_at_idx', 'CREATE INDEX usage_log_at_idx ON ONLY authx.usage_log USING brin (at)'),
             ('authx.usage_hourly_pkey',
              'CREATE UNIQUE INDEX usage_hourly_pkey ON authx.usage_hourly USING btree (hour, endpoint, status_class, api_key_id)'),
             ('authx.usage_hourly_key_idx',
              'CREATE INDEX usage_hourly_key_idx ON authx.usage_hourly USING btree (api_key_id, hour)'),
             ('authx.usage_hourly_ip_pkey',
              'CREATE UNIQUE INDEX usage_hourly_ip_pkey ON authx.usage_hourly_ip USING btree (hour, ip)')$$,
    'indexes of usage_log, usage_hourly, usage_hourly_ip are exactly usage_log_at_idx (partitioned, BRIN), the two '
    'primary keys and usage_hourly_key_idx (api_key_id, hour)'
);
SELECT set_eq(
    $$SELECT c.conrelid::regclass::text, c.conname::text, pg_catalog.pg_get_constraintdef(c.oid)
        FROM pg_catalog.pg_constraint c
       WHERE c.conrelid IN ('authx.usage_log'::regclass, 'authx.usage_hourly'::regclass,
                            'authx.usage_hourly_ip'::regclass)$$,
    $$VALUES ('authx.usage_hourly', 'usage_hourly_pkey', 'PRIMARY KEY (hour, endpoint, status_class, api_key_id)'),
             ('authx.usage_hourly', 'usage_hourly_status_class_check',
              'CHECK (((status_class >= 1) AND (status_class <= 5)))'),
             ('authx.usage_hourly_ip', 'usage_hourly_ip_pkey', 'PRIMARY KEY (hour, ip)')$$,
    'constraints of usage_log, usage_hourly, usage_hourly_ip are exactly the two primary keys and the status class '
    'check (1 .. 5); none on usage_log (no key: one row per request, never updated)'
);
-- usage_record and metrics are C hot paths (no definer, not STRICT:
-- NULLs raise 22004); the histogram helpers are IMMUTABLE C, _hist_add
-- not STRICT (NULL is an empty histogram; the worker merges rollups with
-- it); _hist_sum is an aggregate over a running int64[96] (state internal:
-- _hist_accum, not STRICT as it makes the state on the first row, and
-- _hist_final, not STRICT as it answers NULL over no rows); usage_summary
-- and health read as definers for authx_admin; _usage_purge (maintenance)
-- and _partitions_ahead (health) are internal.
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, p.prokind::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace
         AND p.proname = ANY (ARRAY['usage_record', '_latency_hist', '_hist_add', '_hist_accum', '_hist_final',
                                    '_hist_sum', '_hist_quantile', 'usage_summary', '_usage_purge', 'metrics',
                                    '_partitions_ahead', 'health'])$$,
    $$VALUES ('authx.usage_record(text,integer,real,uuid,uuid,inet)', 'f', 'c', false, 'v', 'r', false, 'void'),
             ('authx._latency_hist(real[])', 'f', 'c', false, 'i', 's', true, 'bigint[]'),
             ('authx._hist_add(bigint[],bigint[])', 'f', 'c', false, 'i', 's', false, 'bigint[]'),
             ('authx._hist_accum(internal,bigint[])', 'f', 'c', false, 'i', 's', false, 'internal'),
             ('authx._hist_final(internal)', 'f', 'c', false, 'i', 's', false, 'bigint[]'),
             ('authx._hist_sum(bigint[])', 'a', 'internal', false, 'i', 'u', false, 'bigint[]'),
             ('authx._hist_quantile(bigint[],double precision)', 'f', 'c', false, 'i', 's', true, 'double precision'),
             ('authx.usage_summary(interval,uuid)', 'f', 'plpgsql', true, 's', 'u', false, 'jsonb'),
             ('authx._usage_purge(timestamp with time zone)', 'f', 'plpgsql', false, 'v', 'u', false, 'jsonb'),
             ('authx.metrics()', 'f', 'c', false, 'v', 'r', false, 'text'),
             ('authx._partitions_ahead(text)', 'f', 'sql', false, 's', 'u', false, 'integer'),
             ('authx.health()', 'f', 'plpgsql', true, 'v', 'u', false, 'jsonb')$$,
    'usage functions: usage_record and metrics VOLATILE PARALLEL RESTRICTED C, not STRICT, not definers; '
    '_latency_hist, _hist_quantile IMMUTABLE STRICT PARALLEL SAFE C; _hist_add, _hist_accum (returns internal) and '
    '_hist_final IMMUTABLE PARALLEL SAFE C, not STRICT; _hist_sum an aggregate; usage_summary STABLE and health '
    'VOLATILE PL/pgSQL definers; _usage_purge PL/pgSQL and _partitions_ahead STABLE SQL, not definers'
);
SELECT results_eq(
    $$SELECT a.aggkind::text, a.aggtransfn::regprocedure::text, a.aggtranstype::regtype::text, a.agginitval,
             a.aggfinalfn::regprocedure::text, a.aggfinalextra, a.aggfinalmodify::text, a.aggcombinefn::oid,
             a.aggserialfn::oid, a.aggdeserialfn::oid, a.aggmtransfn::oid, a.aggminvtransfn::oid,
             a.aggmfinalfn::oid, a.aggsortop
        FROM pg_catalog.pg_aggregate a WHERE a.aggfnoid = 'authx._hist_sum(bigint[])'::regprocedure$$,
    $$VALUES ('n', 'authx._hist_accum(internal,bigint[])', 'internal', NULL::text, 'authx._hist_final(internal)',
              false, 'r', 0::oid, 0::oid, 0::oid, 0::oid, 0::oid, 0::oid, 0::oid)$$,
    '_hist_sum is a plain aggregate: state internal through _hist_accum, final function _hist_final (no extra '
    'arguments, read only), no initial value (no rows: NULL), no combine, serial, deserial or moving function'
);
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_catalog.pg_proc p
       WHERE p.oid IN ('authx._hist_accum(internal,bigint[])'::regprocedure, 'authx._hist_final(internal)'::regprocedure)
         AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) x
                      WHERE x.grantee <> p.proowner)$$,
    '_hist_accum and _hist_final: EXECUTE for their owner only (not PUBLIC, no role)'
);
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text, pg_catalog.pg_get_function_arguments(p.oid),
             pg_catalog.pg_get_function_result(p.oid)
        FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND p.proname = ANY (ARRAY['usage_record', '_latency_hist', '_hist_add', '_hist_accum', '_hist_final',
                                    '_hist_sum', '_hist_quantile', 'usage_summary', '_usage_purge', 'metrics',
                                    '_partitions_ahead', 'health'])
       ORDER BY 1$$,
    $$VALUES ('authx._hist_accum(internal,bigint[])', 'state internal, hist bigint[]', 'internal'),
             ('authx._hist_add(bigint[],bigint[])', 'a bigint[], b bigint[]', 'bigint[]'),
             ('authx._hist_final(internal)', 'state internal', 'bigint[]'),
             ('authx._hist_quantile(bigint[],double precision)', 'hist bigint[], q double precision',
              'double precision'),
             ('authx._hist_sum(bigint[])', 'bigint[]', 'bigint[]'),
             ('authx._latency_hist(real[])', 'latencies real[]', 'bigint[]'),
             ('authx._partitions_ahead(text)', 'p_parent text', 'integer'),
             ('authx._usage_purge(timestamp with time zone)', 'p_now timestamp with time zone', 'jsonb'),
             ('authx.health()', '', 'jsonb'),
             ('authx.metrics()', '', 'text'),
             ('authx.usage_record(text,integer,real,uuid,uuid,inet)',
              'endpoint text, status integer, latency_ms real, api_key_id uuid DEFAULT NULL::uuid, '
              'user_id uuid DEFAULT NULL::uuid, ip inet DEFAULT NULL::inet', 'void'),
             ('authx.usage_summary(interval,uuid)',
              'since interval DEFAULT ''24:00:00''::interval, api_key_id uuid DEFAULT NULL::uuid', 'jsonb')$$,
    'usage functions: argument names, defaults (api_key_id, user_id, ip NULL; since 24 hours, api_key_id NULL) '
    'and results'
);
SELECT set_eq(
    $$SELECT name::text, vartype::text, boot_val::text, coalesce(unit, '')::text AS unit, context::text,
             coalesce(min_val, '')::text AS min_val, coalesce(max_val, '')::text AS max_val
        FROM pg_catalog.pg_settings WHERE name ~ '^authx\.usage_'$$,
    $$VALUES ('authx.usage_queue_size', 'integer', '16384', '', 'postmaster', '1024', '4194304'),
             ('authx.usage_retention', 'integer', '30', '', 'sighup', '0', '3650')$$,
    'usage settings: usage_queue_size 16384 records (1024 - 4194304, postmaster), usage_retention 30 days '
    '(0 - 3650, 0 keeps all, sighup)'
);

-- ---------------------------------------------------------------- rollups, settings, alerts
-- The coarser rollups written with usage_hourly, the per-day addresses
-- summed by maintenance, the settings and the alert state.
SELECT results_eq(
    $$SELECT c.relname::text COLLATE "default", a.attname::text COLLATE "default",
             pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
             pg_catalog.pg_get_expr(d.adbin, d.adrelid) COLLATE "default"
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid IN ('authx.usage_hourly_total'::regclass, 'authx.usage_daily'::regclass,
                            'authx.usage_daily_ip'::regclass, 'authx.settings'::regclass,
                            'authx.setting_defs'::regclass, 'authx.alert_state'::regclass)
         AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY c.relname, a.attnum$$,
    $$VALUES ('alert_state', 'name', 'text', true, NULL::text),
             ('alert_state', 'active', 'boolean', true, 'false'),
             ('alert_state', 'value', 'double precision', false, NULL),
             ('alert_state', 'threshold', 'double precision', false, NULL),
             ('alert_state', 'since', 'timestamp with time zone', false, NULL),
             ('alert_state', 'raised', 'bigint', true, '0'),
             ('alert_state', 'checked_at', 'timestamp with time zone', false, NULL),
             ('alert_state', 'pending_since', 'timestamp with time zone', false, NULL),
             ('alert_state', 'samples', 'jsonb', true, '''[]''::jsonb'),
             ('setting_defs', 'name', 'text', true, NULL),
             ('setting_defs', 'kind', 'text', true, NULL),
             ('setting_defs', 'default_value', 'jsonb', true, NULL),
             ('setting_defs', 'min_value', 'double precision', false, NULL),
             ('setting_defs', 'max_value', 'double precision', false, NULL),
             ('setting_defs', 'nullable', 'boolean', true, 'false'),
             ('setting_defs', 'description', 'text', true, NULL),
             ('settings', 'name', 'text', true, NULL),
             ('settings', 'value', 'jsonb', true, NULL),
             ('settings', 'updated_at', 'timestamp with time zone', true, 'now()'),
             ('settings', 'updated_by', 'text', true, 'SESSION_USER'),
             ('usage_daily', 'day', 'date', true, NULL),
             ('usage_daily', 'endpoint', 'text', true, NULL),
             ('usage_daily', 'status_class', 'smallint', true, NULL),
             ('usage_daily', 'api_key_id', 'uuid', true, NULL),
             ('usage_daily', 'requests', 'bigint', true, NULL),
             ('usage_daily', 'latency_sum_ms', 'double precision', true, NULL),
             ('usage_daily', 'latency_hist', 'bigint[]', true, NULL),
             ('usage_daily_ip', 'day', 'date', true, NULL),
             ('usage_daily_ip', 'ip', 'inet', true, NULL),
             ('usage_daily_ip', 'requests', 'bigint', true, NULL),
             ('usage_daily_ip', 'errors', 'bigint', true, NULL),
             ('usage_hourly_total', 'hour', 'timestamp with time zone', true, NULL),
             ('usage_hourly_total', 'requests', 'bigint', true, NULL),
             ('usage_hourly_total', 'errors_4xx', 'bigint', true, NULL),
             ('usage_hourly_total', 'errors_5xx', 'bigint', true, NULL),
             ('usage_hourly_total', 'latency_sum_ms', 'double precision', true, NULL),
             ('usage_hourly_total', 'latency_hist', 'bigint[]', true, NULL)$$,
    'usage_hourly_total, usage_daily, usage_daily_ip, settings, setting_defs and alert_state: columns, types, '
    'NOT NULL and defaults'
);
SELECT set_eq(
    $$SELECT c.conrelid::regclass::text, pg_catalog.pg_get_constraintdef(c.oid)
        FROM pg_catalog.pg_constraint c
       WHERE c.conrelid IN ('authx.usage_hourly_total'::regclass, 'authx.usage_daily'::regclass,
                            'authx.usage_daily_ip'::regclass, 'authx.settings'::regclass,
                            'authx.setting_defs'::regclass, 'authx.alert_state'::regclass)
      UNION ALL
      SELECT i.indrelid::regclass::text, pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
       WHERE i.indrelid IN ('authx.usage_daily'::regclass) AND NOT i.indisprimary$$,
    $$VALUES ('authx.usage_hourly_total', 'PRIMARY KEY (hour)'),
             ('authx.usage_daily', 'PRIMARY KEY (day, endpoint, status_class, api_key_id)'),
             ('authx.usage_daily', 'CHECK (((status_class >= 1) AND (status_class <= 5)))'),
             ('authx.usage_daily', 'CREATE INDEX usage_daily_key_idx ON authx.usage_daily USING btree (api_key_id, day)'),
             ('authx.usage_daily_ip', 'PRIMARY KEY (day, ip)'),
             ('authx.settings', 'PRIMARY KEY (name)'),
             ('authx.settings', 'FOREIGN KEY (name) REFERENCES authx.setting_defs(name)'),
             ('authx.setting_defs', 'PRIMARY KEY (name)'),
             ('authx.setting_defs', 'CHECK ((kind = ANY (ARRAY[''number''::text, ''integer''::text, ''boolean''::text])))'),
             ('authx.alert_state', 'PRIMARY KEY (name)')$$,
    'constraints and indexes of the new rollups (usage_daily_key_idx for one key), settings (a known name), '
    'setting_defs (kind number, integer or boolean) and alert_state'
);
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, l.lanname::text, p.prosecdef, p.provolatile::text,
             p.proparallel::text, p.proisstrict, p.prorettype::regtype::text,
             coalesce(array_to_string(p.proconfig, ','), '')
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace
         AND p.proname = ANY (ARRAY['setting_get', 'setting_set', 'setting_list', '_settings_changed', '_setting_num',
                                    '_alert_window', '_alerts_check', 'alerts_check'])$$,
    $$VALUES ('authx.setting_get(text)', 'c', false, 's', 'r', false, 'jsonb', ''),
             ('authx.setting_set(text,jsonb)', 'plpgsql', true, 'v', 'u', false, 'jsonb',
              'search_path=pg_catalog, pg_temp'),
             ('authx.setting_list()', 'sql', true, 's', 'u', false, 'record', 'search_path=pg_catalog, pg_temp'),
             ('authx._settings_changed()', 'c', false, 'v', 'u', false, 'trigger', ''),
             ('authx._setting_num(text)', 'sql', false, 's', 'u', false, 'double precision',
              'search_path=pg_catalog, pg_temp'),
             ('authx._alert_window(jsonb,timestamp with time zone,double precision,bigint[])', 'plpgsql', false, 's',
              'u', false, 'record', 'search_path=pg_catalog, pg_temp'),
             ('authx._alerts_check(timestamp with time zone)', 'plpgsql', true, 'v', 'u', false, 'jsonb',
              'search_path=pg_catalog, pg_temp'),
             ('authx.alerts_check()', 'sql', true, 'v', 'u', false, 'jsonb', 'search_path=pg_catalog, pg_temp')$$,
    'settings and alerts functions: setting_get STABLE PARALLEL RESTRICTED C (NULL raises 22004); setting_set, '
    'setting_list, _alerts_check and alerts_check definers with search_path pinned; _settings_changed a C trigger'
);
SELECT is((SELECT array_agg(name ORDER BY name) FROM authx.alert_state),
          ARRAY['auto_blocks', 'cache_hit_rate', 'cache_lag', 'error_rate', 'queue_fill', 'redis_down'],
          'alert_state has one row per alert');

-- ---------------------------------------------------------------- comments
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '') = ''$$,
    'every authx function has a COMMENT'
);

-- ---------------------------------------------------------------- SECURITY DEFINER
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace AND p.prosecdef$$,
    ARRAY[
        'authx._alerts_check(timestamp with time zone)',
        'authx._audit_tx(text,authx.severity,uuid,jsonb)',
        'authx._directory_claim(text,uuid)',
        'authx._directory_lookup(text)',
        'authx._directory_release(text,uuid)',
        'authx._directory_unconfirmed(integer)',
        'authx._directory_confirm(text,uuid)',
        'authx._user_live(uuid)',
        'authx._user_create_id(uuid,text,text,text)',
        'authx._bucket_quiesce(integer,interval)',
        'authx._bucket_export(integer,text)',
        'authx._bucket_import(integer,jsonb)',
        'authx._bucket_purge(integer,text)',
        'authx._definitions_export()',
        'authx._definitions_import(jsonb)',
        'authx._owner_of(text,uuid)',
        'authx._ip_blocked_sql(inet,timestamp with time zone)',
        'authx._ip_blocks_live(timestamp with time zone)',
        'authx._maintenance_run_at(timestamp with time zone)',
        'authx._partitions_maintain(regclass,integer,integer,timestamp with time zone)',
        'authx._rbac_resolve(uuid,timestamp with time zone)',
        'authx.apikey_create(uuid,text,text[],timestamp with time zone,integer,interval,integer,integer,interval)',
        'authx.apikey_list(uuid)',
        'authx.apikey_revoke(uuid)',
        'authx.apikey_rotate(uuid,interval)',
        'authx.apikey_update(uuid,text,text[],timestamp with time zone,integer,interval,integer,integer,interval,text[])',
        'authx.apikey_usage(uuid,timestamp with time zone)',
        'authx.audit(text,text,uuid,inet,jsonb,text)',
        'authx.device_revoke(uuid)',
        'authx.device_trust(uuid,text,text,interval)',
        'authx.devices(uuid)',
        'authx.email_verification_confirm(text)',
        'authx.email_verification_issue(uuid)',
        'authx.health()',
        'authx.ip_allow(cidr,text)',
        'authx.ip_block(cidr,interval,text)',
        'authx.ip_blocks()',
        'authx.ip_disallow(cidr)',
        'authx.ip_unblock(cidr)',
        'authx.jwks()',
        'authx.login(text,text,inet,text,text)',
        'authx.login_mfa(text,text,inet,text)',
        'authx.maintenance_run()',
        'authx.password_reset_confirm(text,text)',
        'authx.password_reset_issue(text,inet)',
        'authx.password_set(uuid,text)',
        'authx.password_verify(uuid,text)',
        'authx.rate_override_remove(text,text)',
        'authx.rate_override_set(text,text,integer,interval,boolean,timestamp with time zone,text)',
        'authx.rate_policy_set(text,integer,interval,text,text,text)',
        'authx.recovery_code_use(uuid,text)',
        'authx.recovery_codes_generate(uuid)',
        'authx.role_create(text,text,text)',
        'authx.role_drop(text)',
        'authx.role_grant(text,text)',
        'authx.role_list()',
        'authx.role_revoke(text,text)',
        'authx.role_set_parent(text,text)',
        'authx.alerts_check()',
        'authx.security_summary(interval)',
        'authx.session_create(uuid,inet,text,interval)',
        'authx.session_info(text)',
        'authx.session_revoke(text)',
        'authx.session_revoke_all(uuid,text)',
        'authx.session_revoke_id(uuid)',
        'authx.sessions(uuid)',
        'authx.setting_list()',
        'authx.setting_set(text,jsonb)',
        'authx.signing_key_rotate()',
        'authx.threat_rule_drop(text)',
        'authx.threat_rule_set(text,text,integer,interval,interval,text,boolean,text)',
        'authx.token_issue(uuid,text,jsonb)',
        'authx.token_refresh(text,inet)',
        'authx.totp_confirm(uuid,text)',
        'authx.totp_disable(uuid)',
        'authx.totp_enroll(uuid,text)',
        'authx.totp_verify(uuid,text)',
        'authx.usage_summary(interval,uuid)',
        'authx.user_create(text,text,text)',
        'authx.user_delete(uuid)',
        'authx.user_disable(uuid)',
        'authx.user_enable(uuid)',
        'authx.user_find(text)',
        'authx.user_get(uuid)',
        'authx.user_grant(uuid,text,timestamp with time zone)',
        'authx.user_permissions(uuid)',
        'authx.user_revoke(uuid,text)',
        'authx.user_roles(uuid)',
        'authx.user_unlock(uuid)'
    ],
    'exactly the expected functions are SECURITY DEFINER'
);

SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, p.proconfig FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace AND p.prosecdef
         AND p.proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp']$$,
    $$VALUES ('authx._partitions_maintain(regclass,integer,integer,timestamp with time zone)',
              ARRAY['search_path=pg_catalog, pg_temp', 'lock_timeout=1s'])$$,
    'every SECURITY DEFINER function has proconfig exactly {search_path=pg_catalog, pg_temp}, '
    '_partitions_maintain adds lock_timeout=1s'
);

-- Not only SECURITY DEFINER ones: an internal SQL function called from a
-- definer inherits the caller's search_path unless it pins its own.
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       JOIN pg_catalog.pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'authx'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
         AND NOT coalesce(p.proconfig[1] = 'search_path=pg_catalog, pg_temp', false)
         AND p.oid <> 'authx.bucket_move(integer,text,interval)'::regprocedure$$,
    'every SQL and PL/pgSQL function pins search_path = pg_catalog, pg_temp (the procedure bucket_move, '
    'which commits and so may not carry SET, pins it with set_config in each of its transactions)'
);

SELECT ok((SELECT regexp_count(p.prosrc, 'COMMIT;') > 0
              AND regexp_count(p.prosrc, 'COMMIT;')
                  = regexp_count(p.prosrc, 'COMMIT;\s+(PERFORM pg_catalog\.set_config\(''search_path'', ''pg_catalog, pg_temp'', true\)|END\s*$)')
              AND p.prosrc ~ 'BEGIN\s+(--[^\n]*\n\s*)*PERFORM pg_catalog\.set_config\(''search_path'', ''pg_catalog, pg_temp'', true\)'
             FROM pg_catalog.pg_proc p WHERE p.oid = 'authx.bucket_move(integer,text,interval)'::regprocedure),
          'bucket_move pins search_path at its start and after each COMMIT');


-- session_validate is the hot path: C, reading the tables itself, not a
-- definer (its one write runs as the table owner inside the C code).
SELECT is((SELECT ROW(l.lanname, p.prosecdef, p.provolatile)::text FROM pg_catalog.pg_proc p
             JOIN pg_catalog.pg_language l ON l.oid = p.prolang
            WHERE p.oid = 'authx.session_validate(text,inet)'::regprocedure),
          '(c,f,v)', 'session_validate is a VOLATILE C function, not SECURITY DEFINER');

-- Functions are owned by a superuser (what SECURITY DEFINER runs as).
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
       WHERE p.pronamespace = 'authx'::regnamespace AND p.prosecdef AND NOT r.rolsuper$$,
    'SECURITY DEFINER functions are owned by a superuser'
);

-- ---------------------------------------------------------------- PUBLIC
-- A NULL proacl means the default, which includes EXECUTE for PUBLIC.
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND (p.proacl IS NULL
              OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a
                          WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))$$,
    'no authx function is executable by PUBLIC (proacl has no =X entry and is not NULL)'
);

SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
       WHERE p.pronamespace = 'authx'::regnamespace
         AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')$$,
    'has_function_privilege(public, ..., EXECUTE) is false for every authx function'
);

SELECT ok(NOT pg_catalog.has_schema_privilege('public', 'authx', 'USAGE')
          AND NOT pg_catalog.has_schema_privilege('public', 'authx', 'CREATE'),
          'PUBLIC has neither USAGE nor CREATE on schema authx');

SELECT is_empty(
    $$SELECT c.relname::text FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
       WHERE c.relnamespace = 'authx'::regnamespace AND a.grantee = 0$$,
    'PUBLIC has no privilege on any authx table, view or sequence'
);

-- Exactly the documented EXECUTE grants (owner excluded).
SELECT set_eq(
    $$SELECT p.oid::regprocedure::text, a.grantee::regrole::text
        FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
       WHERE p.pronamespace = 'authx'::regnamespace AND a.grantee <> p.proowner$$,
    $$VALUES ('authx.user_create(text,text,text)', 'authx_app'),
             ('authx.user_get(uuid)', 'authx_app'),
             ('authx.user_find(text)', 'authx_app'),
             ('authx.password_verify(uuid,text)', 'authx_app'),
             ('authx.password_set(uuid,text)', 'authx_app'),
             ('authx.audit(text,text,uuid,inet,jsonb,text)', 'authx_app'),
             ('authx.login(text,text,inet,text,text)', 'authx_app'),
             ('authx.session_create(uuid,inet,text,interval)', 'authx_app'),
             ('authx.session_validate(text,inet)', 'authx_app'),
             ('authx.session_info(text)', 'authx_app'),
             ('authx.sessions(uuid)', 'authx_app'),
             ('authx.session_revoke(text)', 'authx_app'),
             ('authx.session_revoke_id(uuid)', 'authx_app'),
             ('authx.session_revoke_all(uuid,text)', 'authx_app'),
             ('authx.apikey_create(uuid,text,text[],timestamp with time zone,integer,interval,integer,integer,interval)',
              'authx_app'),
             ('authx.apikey_verify(text,text,integer,inet)', 'authx_app'),
             ('authx.apikey_rotate(uuid,interval)', 'authx_app'),
             ('authx.apikey_revoke(uuid)', 'authx_app'),
             ('authx.apikey_list(uuid)', 'authx_app'),
             ('authx.apikey_update(uuid,text,text[],timestamp with time zone,integer,interval,integer,integer,interval,text[])',
              'authx_app'),
             ('authx.apikey_usage(uuid,timestamp with time zone)', 'authx_app'),
             ('authx.has_permission(uuid,text)', 'authx_app'),
             ('authx.user_permissions(uuid)', 'authx_app'),
             ('authx.user_roles(uuid)', 'authx_app'),
             ('authx.rate_limit(text,integer,interval,integer)', 'authx_app'),
             ('authx.rate_peek(text,integer,interval)', 'authx_app'),
             ('authx.rate_check(text,text,integer)', 'authx_app'),
             ('authx.ip_blocked(inet)', 'authx_app'),
             ('authx.totp_enroll(uuid,text)', 'authx_app'),
             ('authx.totp_confirm(uuid,text)', 'authx_app'),
             ('authx.totp_verify(uuid,text)', 'authx_app'),
             ('authx.totp_disable(uuid)', 'authx_app'),
             ('authx.recovery_codes_generate(uuid)', 'authx_app'),
             ('authx.recovery_code_use(uuid,text)', 'authx_app'),
             ('authx.login_mfa(text,text,inet,text)', 'authx_app'),
             ('authx.token_issue(uuid,text,jsonb)', 'authx_app'),
             ('authx.token_refresh(text,inet)', 'authx_app'),
             ('authx.token_verify(text)', 'authx_app'),
             ('authx.jwks()', 'authx_app'),
             ('authx.device_trust(uuid,text,text,interval)', 'authx_app'),
             ('authx.devices(uuid)', 'authx_app'),
             ('authx.device_revoke(uuid)', 'authx_app'),
             ('authx.email_verification_issue(uuid)', 'authx_app'),
             ('authx.email_verification_confirm(text)', 'authx_app'),
             ('authx.password_reset_issue(text,inet)', 'authx_app'),
             ('authx.password_reset_confirm(text,text)', 'authx_app'),
             ('authx.usage_record(text,integer,real,uuid,uuid,inet)', 'authx_app'),
             ('authx.setting_get(text)', 'authx_app'),
             ('authx.shard_of(uuid,integer)', 'authx_app'),
             ('authx.shard_of_email(text,integer)', 'authx_app'),
             ('authx.token_bucket(text)', 'authx_app'),
             ('authx._user_create_id(uuid,text,text,text)', 'authx_app'),
             ('authx._directory_claim(text,uuid)', 'authx_app'),
             ('authx._directory_release(text,uuid)', 'authx_app'),
             ('authx._directory_lookup(text)', 'authx_app'),
             ('authx._directory_unconfirmed(integer)', 'authx_app'),
             ('authx._directory_confirm(text,uuid)', 'authx_app'),
             ('authx._user_live(uuid)', 'authx_app'),
             ('authx.cache_node(text)', 'authx_app'),
             ('authx._jwt_sub(text)', 'authx_app'),
             ('authx._owner_of(text,uuid)', 'authx_app'),
             ('authx._cache_endpoint()', 'authx_app'),
             ('authx.user_disable(uuid)', 'authx_admin'),
             ('authx.user_enable(uuid)', 'authx_admin'),
             ('authx.user_delete(uuid)', 'authx_admin'),
             ('authx.audit_flush(interval)', 'authx_admin'),
             ('authx.maintenance_run()', 'authx_admin'),
             ('authx.user_unlock(uuid)', 'authx_admin'),
             ('authx.cache_sync(interval)', 'authx_admin'),
             ('authx.cache_status()', 'authx_admin'),
             ('authx._stats()', 'authx_admin'),
             ('authx.role_create(text,text,text)', 'authx_admin'),
             ('authx.role_set_parent(text,text)', 'authx_admin'),
             ('authx.role_drop(text)', 'authx_admin'),
             ('authx.role_grant(text,text)', 'authx_admin'),
             ('authx.role_revoke(text,text)', 'authx_admin'),
             ('authx.role_list()', 'authx_admin'),
             ('authx.user_grant(uuid,text,timestamp with time zone)', 'authx_admin'),
             ('authx.user_revoke(uuid,text)', 'authx_admin'),
             ('authx.rate_policy_set(text,integer,interval,text,text,text)', 'authx_admin'),
             ('authx.rate_override_set(text,text,integer,interval,boolean,timestamp with time zone,text)', 'authx_admin'),
             ('authx.rate_override_remove(text,text)', 'authx_admin'),
             ('authx.ip_block(cidr,interval,text)', 'authx_admin'),
             ('authx.ip_unblock(cidr)', 'authx_admin'),
             ('authx.ip_allow(cidr,text)', 'authx_admin'),
             ('authx.ip_disallow(cidr)', 'authx_admin'),
             ('authx.ip_blocks()', 'authx_admin'),
             ('authx.threat_rule_set(text,text,integer,interval,interval,text,boolean,text)', 'authx_admin'),
             ('authx.threat_rule_drop(text)', 'authx_admin'),
             ('authx.security_summary(interval)', 'authx_admin'),
             ('authx.signing_key_rotate()', 'authx_admin'),
             ('authx.usage_summary(interval,uuid)', 'authx_admin'),
             ('authx.metrics()', 'authx_admin'),
             ('authx.health()', 'authx_admin'),
             ('authx.setting_set(text,jsonb)', 'authx_admin'),
             ('authx.setting_list()', 'authx_admin'),
             ('authx.alerts_check()', 'authx_admin')$$,
    'EXECUTE grants are exactly the documented ones (none on _threat_block, _alert, _account_tag, _ip_key, '
    '_policy_changed, _unseed, _threat_rule_merge_seed, nor on the MFA internals _totp_*, _mfa_*, _recovery_*, '
    '_uri_encode, _user_inactive_mfa, nor on signing_key_secret (superuser only) and the token, device and '
    'verification internals _signing_key*, _jwt_sign, _ed25519, _b64url, _refresh_token_*, _reserved_claims, '
    '_access_token, _token_refresh, _tokens_purge, _device_check, _devices_*, _user_token*, nor on the usage '
    'internals _latency_hist, _hist_add, _hist_accum, _hist_final, _hist_sum, _hist_quantile, _usage_purge, '
    '_partitions_ahead, nor on _alerts_check, _alert_window, _setting_num, _settings_changed, nor on '
    '_cluster_routes and cluster_setup (superuser only); usage_record, setting_get, shard_of, '
    'shard_of_email and the directory calls of a coordinator (_user_create_id, _directory_*) for authx_app, usage_summary, metrics, health, setting_set, setting_list and alerts_check for '
    'authx_admin)'
);

-- Exactly the documented relation grants (owner excluded; column grants
-- are checked in 02_privileges).
SELECT set_eq(
    $$SELECT c.relname::text, a.grantee::regrole::text, a.privilege_type
        FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
       WHERE c.relnamespace = 'authx'::regnamespace AND a.grantee <> c.relowner$$,
    $$VALUES ('active_lockouts', 'authx_admin', 'SELECT'),
             ('audit_log', 'authx_admin', 'SELECT'),
             ('audit_partitions', 'authx_admin', 'SELECT'),
             ('stats', 'authx_admin', 'SELECT'),
             ('roles', 'authx_admin', 'SELECT'),
             ('role_permissions', 'authx_admin', 'SELECT'),
             ('user_roles', 'authx_admin', 'SELECT'),
             ('api_key_usage', 'authx_admin', 'SELECT'),
             ('rate_limit_policies', 'authx_admin', 'SELECT'),
             ('rate_limit_overrides', 'authx_admin', 'SELECT'),
             ('ip_blocks', 'authx_admin', 'SELECT'),
             ('threat_rules', 'authx_admin', 'SELECT'),
             ('usage_log', 'authx_admin', 'SELECT'),
             ('usage_hourly', 'authx_admin', 'SELECT'),
             ('usage_hourly_ip', 'authx_admin', 'SELECT'),
             ('usage_hourly_total', 'authx_admin', 'SELECT'),
             ('usage_daily', 'authx_admin', 'SELECT'),
             ('usage_daily_ip', 'authx_admin', 'SELECT'),
             ('settings', 'authx_admin', 'SELECT'),
             ('setting_defs', 'authx_admin', 'SELECT'),
             ('alerts', 'authx_admin', 'SELECT')$$,
    'table-level grants are exactly SELECT on active_lockouts, audit_log, audit_partitions, stats, roles, '
    'role_permissions, user_roles, api_key_usage, rate_limit_policies, rate_limit_overrides, ip_blocks, '
    'threat_rules, usage_log, usage_hourly, usage_hourly_ip, usage_hourly_total, usage_daily, usage_daily_ip, '
    'settings, setting_defs, alerts for authx_admin (nothing on a partition, on api_keys, mfa_totp, '
    'mfa_recovery_codes, mfa_challenges, signing_keys, refresh_families, trusted_devices, user_tokens, alert_state)'
);

SELECT schema_privs_are('authx', 'authx_app', ARRAY['USAGE'], 'authx_app has only USAGE on schema authx');
SELECT schema_privs_are('authx', 'authx_admin', ARRAY['USAGE'], 'authx_admin has only USAGE on schema authx');

-- ---------------------------------------------------------------- roles
SELECT has_role('authx_app', 'role authx_app exists');
SELECT is_member_of('authx_app', ARRAY['authx_admin'], 'authx_admin is a member of authx_app');

SELECT * FROM finish();
ROLLBACK;

-- ================================================================
-- Privileges: nothing for PUBLIC; explicit grants per role.
-- ================================================================

-- Revoke EXECUTE from PUBLIC on every function and procedure of the extension.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'authx'::regnamespace
    LOOP
        EXECUTE format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', f);
    END LOOP;
END
$$;
REVOKE ALL ON ALL TABLES IN SCHEMA authx FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA authx FROM PUBLIC;

-- Applications: accounts and events.
GRANT EXECUTE ON FUNCTION
    authx.user_create(text, text, text),
    authx.user_get(uuid),
    authx.user_find(text),
    authx.password_verify(uuid, text),
    authx.password_set(uuid, text),
    authx.audit(text, text, uuid, inet, jsonb, text),
    authx.login(text, text, inet, text, text),
    authx.session_create(uuid, inet, text, interval),
    authx.session_validate(text, inet),
    authx.session_info(text),
    authx.sessions(uuid),
    authx.session_revoke(text),
    authx.session_revoke_id(uuid),
    authx.session_revoke_all(uuid, text),
    authx.apikey_create(uuid, text, text[], timestamptz, integer, interval, integer, integer, interval),
    authx.apikey_verify(text, text, integer, inet),
    authx.apikey_rotate(uuid, interval),
    authx.apikey_revoke(uuid),
    authx.apikey_list(uuid),
    authx.apikey_update(uuid, text, text[], timestamptz, integer, interval, integer, integer, interval, text[]),
    authx.apikey_usage(uuid, timestamptz),
    authx.has_permission(uuid, text),
    authx.user_permissions(uuid),
    authx.user_roles(uuid),
    authx.rate_limit(text, integer, interval, integer),
    authx.rate_peek(text, integer, interval),
    authx.rate_check(text, text, integer),
    authx.ip_blocked(inet),
    authx.totp_enroll(uuid, text),
    authx.totp_confirm(uuid, text),
    authx.totp_verify(uuid, text),
    authx.totp_disable(uuid),
    authx.recovery_codes_generate(uuid),
    authx.recovery_code_use(uuid, text),
    authx.login_mfa(text, text, inet, text),
    authx.token_issue(uuid, text, jsonb),
    authx.token_refresh(text, inet),
    authx.token_verify(text),
    authx.jwks(),
    authx.device_trust(uuid, text, text, interval),
    authx.devices(uuid),
    authx.device_revoke(uuid),
    authx.email_verification_issue(uuid),
    authx.email_verification_confirm(text),
    authx.password_reset_issue(text, inet),
    authx.password_reset_confirm(text, text),
    authx.usage_record(text, integer, real, uuid, uuid, inet),
    authx.setting_get(text),
    authx.shard_of(uuid, integer),
    authx.shard_of_email(text, integer),
    authx.token_bucket(text),
    authx.cache_node(text),
    -- What a scale-out coordinator calls on data nodes (its role is an app),
    -- or evaluates as the caller to route a call.
    authx._jwt_sub(text),
    authx._owner_of(text, uuid),
    authx._cache_endpoint(),
    authx._user_create_id(uuid, text, text, text),
    authx._directory_claim(text, uuid),
    authx._directory_release(text, uuid),
    authx._directory_lookup(text),
    authx._directory_unconfirmed(integer),
    authx._directory_confirm(text, uuid),
    authx._user_live(uuid)
TO authx_app;

-- Administrators: everything applications may do, plus management,
-- monitoring and reading the audit trail.
GRANT authx_app TO authx_admin;
GRANT EXECUTE ON FUNCTION
    authx.user_disable(uuid),
    authx.user_enable(uuid),
    authx.user_delete(uuid),
    authx.audit_flush(interval),
    authx.maintenance_run(),
    authx.user_unlock(uuid),
    authx.cache_sync(interval),
    authx.cache_status(),
    authx._stats(),
    authx.role_create(text, text, text),
    authx.role_set_parent(text, text),
    authx.role_drop(text),
    authx.role_grant(text, text),
    authx.role_revoke(text, text),
    authx.role_list(),
    authx.user_grant(uuid, text, timestamptz),
    authx.user_revoke(uuid, text),
    authx.rate_policy_set(text, integer, interval, text, text, text),
    authx.rate_override_set(text, text, integer, interval, boolean, timestamptz, text),
    authx.rate_override_remove(text, text),
    authx.ip_block(cidr, interval, text),
    authx.ip_unblock(cidr),
    authx.ip_allow(cidr, text),
    authx.ip_disallow(cidr),
    authx.ip_blocks(),
    authx.threat_rule_set(text, text, integer, interval, interval, text, boolean, text),
    authx.threat_rule_drop(text),
    authx.security_summary(interval),
    authx.signing_key_rotate(),
    authx.usage_summary(interval, uuid),
    authx.metrics(),
    authx.health(),
    authx.setting_set(text, jsonb),
    authx.setting_list(),
    authx.alerts_check()
TO authx_admin;
GRANT SELECT ON authx.stats, authx.audit_log, authx.audit_partitions, authx.active_lockouts,
    authx.roles, authx.role_permissions, authx.user_roles, authx.api_key_usage,
    authx.rate_limit_policies, authx.rate_limit_overrides, authx.ip_blocks, authx.threat_rules,
    authx.usage_log, authx.usage_hourly, authx.usage_hourly_total, authx.usage_daily, authx.usage_hourly_ip,
    authx.usage_daily_ip, authx.settings, authx.setting_defs, authx.alerts TO authx_admin;
-- Every column of users but the hash.
GRANT SELECT (id, email, display_name, status, mfa_enabled,
              email_verified_at, created_at, updated_at, password_changed_at,
              last_login_at, deleted_at)
    ON authx.users TO authx_admin;

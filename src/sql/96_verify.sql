-- ================================================================
-- Email verification and password reset tokens
-- ================================================================

CREATE TABLE authx.user_tokens (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES authx.users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('email_verification', 'password_reset')),
    email      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX user_tokens_user_idx ON authx.user_tokens (user_id, purpose);
COMMENT ON TABLE authx.user_tokens IS
'Single-use email verification (axv_) and password reset (axp_) tokens: sha256 only, the address they were sent to, until when they work, when they were used.';
SELECT pg_catalog.pg_extension_config_dump('authx.user_tokens', '');

INSERT INTO authx.rate_limit_policies (name, max, per, description, seeded) VALUES
    ('password_reset', 3, '15 minutes', 'Password reset requests per email and per address.', true);

-- A new token of a purpose for a user; older unused ones of that purpose
-- stop working (the newest email is the one to click).
CREATE FUNCTION authx._user_token_new(p_user_id uuid, p_purpose text, p_email text, p_ttl interval,
                                      OUT token text, OUT expires_at timestamptz)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    -- Serializes issues for one user, so only the newest token stays live.
    PERFORM 1 FROM authx.users u WHERE u.id = p_user_id FOR UPDATE;
    DELETE FROM authx.user_tokens x WHERE x.user_id = p_user_id AND x.purpose = p_purpose AND x.used_at IS NULL;
    t := authx._token_new(CASE p_purpose WHEN 'email_verification' THEN 'axv_' ELSE 'axp_' END, p_user_id);
    expires_at := clock_timestamp() + p_ttl;
    INSERT INTO authx.user_tokens (token_hash, user_id, purpose, email, expires_at)
    VALUES (t.token_hash, p_user_id, p_purpose, p_email, expires_at);
    token := t.token;
END
$$;
COMMENT ON FUNCTION authx._user_token_new(uuid, text, text, interval) IS
'Internal. A new single-use token of a purpose; replaces the user''s unused ones of that purpose.';

-- The token row for a presented token of a purpose, locked, and its
-- verdict: ok, invalid (malformed, unknown, other purpose, account no
-- longer active or no longer at that address), expired, used.
CREATE FUNCTION authx._user_token_take(p_token text, p_purpose text, p_prefix text,
                                       OUT verdict text, OUT user_id uuid, OUT token_hash bytea)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x authx.user_tokens;
BEGIN
    verdict := 'invalid';
    SELECT * INTO x FROM authx.user_tokens t
     WHERE t.token_hash = authx._token_hash(p_prefix, p_token) AND t.purpose = p_purpose FOR UPDATE;
    IF x.token_hash IS NULL
       OR NOT EXISTS (SELECT 1 FROM authx.users u
                       WHERE u.id = x.user_id AND u.status = 'active' AND u.deleted_at IS NULL
                         AND lower(u.email) = lower(x.email)) THEN
        RETURN;
    END IF;
    user_id := x.user_id;
    token_hash := x.token_hash;
    verdict := CASE WHEN x.used_at IS NOT NULL THEN 'used'
                    WHEN x.expires_at <= clock_timestamp() THEN 'expired'
                    ELSE 'ok' END;
END
$$;
COMMENT ON FUNCTION authx._user_token_take(text, text, text) IS 'Internal. Looks up and judges a verification or reset token.';

CREATE FUNCTION authx.email_verification_issue(user_id uuid)
RETURNS TABLE (token text, email text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u authx.users;
    r record;
BEGIN
    PERFORM authx._require(email_verification_issue.user_id, 'user_id');
    u := authx._user_lock(email_verification_issue.user_id);
    IF u.status <> 'active' THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('user "%s" is %s', u.id, u.status),
            HINT = 'Only active users verify their email.';
    END IF;
    r := authx._user_token_new(u.id, 'email_verification', u.email,
                               authx._setting_interval('authx.verification_ttl', '1 day'));
    PERFORM authx._audit_tx('email.verification_issued', 'info', u.id);
    RETURN QUERY SELECT r.token, u.email, r.expires_at;
END
$$;
COMMENT ON FUNCTION authx.email_verification_issue(uuid) IS
'A single-use axv_ token (shown once) to send to the user''s address, good for authx.verification_ttl, and the address it is for; replaces the user''s earlier unused ones. Raises P0002 for a missing user, 55000 for an inactive one.';

CREATE FUNCTION authx.email_verification_confirm(token text)
RETURNS TABLE (status text, user_id uuid)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    r := authx._user_token_take(email_verification_confirm.token, 'email_verification', 'axv_');
    IF r.verdict <> 'ok' THEN
        RETURN QUERY SELECT r.verdict, NULL::uuid;
        RETURN;
    END IF;
    UPDATE authx.user_tokens x SET used_at = now() WHERE x.token_hash = r.token_hash;
    UPDATE authx.users u SET email_verified_at = now(), updated_at = now() WHERE u.id = r.user_id;
    PERFORM authx._audit_tx('email.verified', 'info', r.user_id);
    RETURN QUERY SELECT 'ok'::text, r.user_id;
END
$$;
COMMENT ON FUNCTION authx.email_verification_confirm(text) IS
'Confirms an email verification token: status ok (users.email_verified_at set, with user_id), used, expired, or invalid (malformed, unknown, the account is no longer active or no longer has that address). Never raises on bad input.';

CREATE FUNCTION authx.password_reset_issue(email text, ip inet DEFAULT NULL)
RETURNS TABLE (token text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_email text := lower(btrim(coalesce(password_reset_issue.email, ''), E' \t\r\n'));
    v_user  authx.users;
    v_rl    authx.rate_limit_result;
    r       record;
BEGIN
    -- Per address and per email, known or not, before any lookup.
    v_rl := authx._rate_check_ip_email('password_reset', ip, v_email);
    IF NOT v_rl.allowed THEN
        PERFORM authx.audit('password.reset_limited', 'low', NULL, ip,
                            jsonb_build_object('account', authx._account_tag(v_email)));
        RETURN QUERY SELECT NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT * INTO v_user FROM authx.users u
     WHERE lower(u.email) = v_email AND u.deleted_at IS NULL AND u.status = 'active';
    IF v_user.id IS NULL THEN
        PERFORM authx.audit('password.reset_requested', 'low', NULL, ip,
                            jsonb_build_object('reason', 'unknown_email', 'account', authx._account_tag(v_email)));
        RETURN QUERY SELECT NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    r := authx._user_token_new(v_user.id, 'password_reset', v_user.email,
                               authx._setting_interval('authx.reset_ttl', '1 hour'));
    PERFORM authx.audit('password.reset_requested', 'info', v_user.id, ip, '{}');
    RETURN QUERY SELECT r.token, r.expires_at;
END
$$;
COMMENT ON FUNCTION authx.password_reset_issue(text, inet) IS
'A single-use axp_ reset token (shown once) for the active account with this email, good for authx.reset_ttl, replacing earlier unused ones. For an unknown, inactive or rate-limited (password_reset policy, per address and per email) request the row has the same shape with NULLs: send the email only when token is set, and answer the user the same either way. Never raises on bad input.';

CREATE FUNCTION authx.password_reset_confirm(token text, new_password text)
RETURNS TABLE (status text, user_id uuid)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r        record;
    v_revoked integer;
BEGIN
    r := authx._user_token_take(password_reset_confirm.token, 'password_reset', 'axp_');
    IF r.verdict <> 'ok' THEN
        PERFORM authx.audit('password.reset_failed', 'low', r.user_id, NULL, jsonb_build_object('reason', r.verdict));
        RETURN QUERY SELECT r.verdict, NULL::uuid;
        RETURN;
    END IF;
    -- Raises 22023 for a password the policy refuses; the token stays good.
    PERFORM authx.password_set(r.user_id, new_password);
    UPDATE authx.user_tokens x SET used_at = now() WHERE x.token_hash = r.token_hash;
    DELETE FROM authx.user_tokens x WHERE x.user_id = r.user_id AND x.purpose = 'password_reset' AND x.used_at IS NULL;
    -- Whoever knew the old password is out: refresh families, sessions
    -- (in the order token_refresh locks them), MFA challenges, trusted
    -- devices, failed-login counters.
    UPDATE authx.refresh_families f SET revoked_at = now(), revoke_reason = 'password_reset'
     WHERE f.user_id = r.user_id AND f.revoked_at IS NULL;
    v_revoked := authx.session_revoke_all(r.user_id);
    DELETE FROM authx.mfa_challenges m WHERE m.user_id = r.user_id;
    PERFORM authx._devices_revoke_all(r.user_id, 'password_reset');
    PERFORM authx._lockout_clear(r.user_id, NULL);
    -- The reset mail reached the address: that verifies it.
    UPDATE authx.users u SET email_verified_at = coalesce(u.email_verified_at, now()) WHERE u.id = r.user_id;
    PERFORM authx._audit_tx('password.reset', 'medium', r.user_id, jsonb_build_object('sessions_revoked', v_revoked));
    RETURN QUERY SELECT 'ok'::text, r.user_id;
END
$$;
COMMENT ON FUNCTION authx.password_reset_confirm(text, text) IS
'Sets a new password with a reset token: status ok (with user_id; every session, refresh family and trusted device of the user is revoked, lockouts cleared, the address counts as verified), used, expired, or invalid. Raises 22023 when the new password breaks the password policy and 22004 when it is NULL (the token stays usable either way).';

-- Housekeeping called by maintenance_run.
CREATE FUNCTION authx._user_tokens_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    DELETE FROM authx.user_tokens x WHERE x.expires_at < p_now - interval '1 day';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN jsonb_build_object('tokens_purged', v_n);
END
$$;
COMMENT ON FUNCTION authx._user_tokens_purge(timestamptz) IS 'Internal. Deletes verification and reset tokens a day past expiry.';

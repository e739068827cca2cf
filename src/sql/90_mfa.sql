-- ================================================================
-- TOTP MFA and recovery codes (src/totp.c, seeds sealed by src/crypto.c)
-- ================================================================

CREATE TABLE authx.mfa_totp (
    user_id      uuid PRIMARY KEY REFERENCES authx.users (id) ON DELETE CASCADE,
    seed_sealed  bytea NOT NULL,
    digits       integer NOT NULL CHECK (digits BETWEEN 6 AND 8),
    period       integer NOT NULL CHECK (period BETWEEN 1 AND 300),
    confirmed_at timestamptz,
    last_step    bigint NOT NULL DEFAULT -1,
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE authx.mfa_totp IS
'One TOTP authenticator per user: the seed sealed under the authx key (XChaCha20-Poly1305, the user id as associated data), its shape, when it was confirmed (NULL: enrolment pending) and the last time step accepted (each step is good once).';
SELECT pg_catalog.pg_extension_config_dump('authx.mfa_totp', '');

CREATE TABLE authx.mfa_recovery_codes (
    user_id    uuid NOT NULL REFERENCES authx.users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, code_hash)
);
COMMENT ON TABLE authx.mfa_recovery_codes IS
'Single-use recovery codes: sha256 of the user id and the code, never the code.';
SELECT pg_catalog.pg_extension_config_dump('authx.mfa_recovery_codes', '');

CREATE FUNCTION authx._totp_seed_new(p_user_id uuid, OUT secret text, OUT sealed bytea)
AS 'MODULE_PATHNAME', 'authx_totp_seed_new'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authx._totp_seed_new(uuid) IS
'Internal. A new 160-bit TOTP seed: base32 (shown once) and sealed for the user (stored).';

CREATE FUNCTION authx._totp_match(p_user_id uuid, p_sealed bytea, p_code text, p_after_step bigint,
                                  p_digits integer, p_period integer, p_window integer, p_at timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'authx_totp_match'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authx._totp_match(uuid, bytea, text, bigint, integer, integer, integer, timestamptz) IS
'Internal. The time step within the window whose code matches and is after p_after_step, else NULL.';

CREATE FUNCTION authx._totp_code(p_seed bytea, p_at timestamptz, p_digits integer DEFAULT 6, p_period integer DEFAULT 30)
RETURNS text
AS 'MODULE_PATHNAME', 'authx_totp_code'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authx._totp_code(bytea, timestamptz, integer, integer) IS
'Internal. The TOTP code of a raw seed at a time (RFC 6238), for tests.';

-- Percent-encoding for the otpauth URI (RFC 3986 unreserved kept).
CREATE FUNCTION authx._uri_encode(p text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(string_agg(CASE WHEN t.c ~ '^[A-Za-z0-9._~-]$' THEN t.c
                                    ELSE regexp_replace(upper(encode(convert_to(t.c, 'UTF8'), 'hex')), '(..)', '%\1', 'g')
                               END, '' ORDER BY t.i), '')
      FROM regexp_split_to_table(p, '') WITH ORDINALITY AS t(c, i)
$$;
COMMENT ON FUNCTION authx._uri_encode(text) IS 'Internal. Percent-encodes all but RFC 3986 unreserved characters.';

-- Attempts at a second factor, per user: the mfa rate policy (5 a minute)
-- and a failure budget (authx.mfa_max_failures per authx.lockout_window),
-- both in shared memory, so ROLLBACK gives nothing back.  The budget is
-- always this server's: a session's authx.rate_limit_store/_fail must not
-- be able to open it.  NULL when the
-- attempt may go on, else the answer: rate_limited or locked.
CREATE FUNCTION authx._mfa_gate(p_user_id uuid)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET authx.rate_limit_store = 'local' SET authx.rate_limit_fail = 'local'
AS $$
DECLARE
    v_rl authx.rate_limit_result;
BEGIN
    IF (authx.rate_peek('mfa-failures:' || p_user_id, current_setting('authx.mfa_max_failures')::integer,
                        current_setting('authx.lockout_window')::interval)).allowed IS NOT TRUE THEN
        PERFORM authx.audit('mfa.locked', 'medium', p_user_id);
        RETURN 'locked';
    END IF;
    IF EXISTS (SELECT 1 FROM authx.rate_limit_policies p WHERE p.name = 'mfa') THEN
        v_rl := authx.rate_check('mfa', 'user:' || p_user_id);
        IF NOT v_rl.allowed THEN
            PERFORM authx.audit('mfa.rate_limited', 'low', p_user_id);
            RETURN 'rate_limited';
        END IF;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION authx._mfa_gate(uuid) IS
'Internal. Whether a user may try a second factor now: NULL (yes), rate_limited (mfa policy) or locked (authx.mfa_max_failures failures within authx.lockout_window).';

CREATE FUNCTION authx._mfa_failed(p_user_id uuid, p_factor text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET authx.rate_limit_store = 'local' SET authx.rate_limit_fail = 'local'
AS $$
BEGIN
    PERFORM authx.rate_limit('mfa-failures:' || p_user_id, current_setting('authx.mfa_max_failures')::integer,
                             current_setting('authx.lockout_window')::interval);
    PERFORM authx.audit('mfa.failed', 'medium', p_user_id, NULL, jsonb_build_object('factor', p_factor));
END
$$;
COMMENT ON FUNCTION authx._mfa_failed(uuid, text) IS
'Internal. Counts a failed second factor (rollback-proof) and audits mfa.failed.';

CREATE FUNCTION authx.totp_enroll(user_id uuid, issuer text DEFAULT 'authx')
RETURNS TABLE (secret text, otpauth_uri text)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u authx.users;
    s record;
    v_digits integer := current_setting('authx.totp_digits')::integer;
    v_period integer := current_setting('authx.totp_period')::integer;
BEGIN
    PERFORM authx._require(totp_enroll.user_id, 'user_id');
    PERFORM authx._require(totp_enroll.issuer, 'issuer');
    IF length(totp_enroll.issuer) NOT BETWEEN 1 AND 100 OR position(':' IN totp_enroll.issuer) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'issuer must have 1-100 characters and no colon',
            HINT = 'Pass your application''s name as authenticator apps should show it.';
    END IF;
    u := authx._user_lock(totp_enroll.user_id);
    IF EXISTS (SELECT 1 FROM authx.mfa_totp t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = 'TOTP is already enabled for this user',
            HINT = 'Call authx.totp_disable first to enrol a new authenticator.';
    END IF;
    s := authx._totp_seed_new(u.id);
    INSERT INTO authx.mfa_totp AS t (user_id, seed_sealed, digits, period)
    VALUES (u.id, s.sealed, v_digits, v_period)
    ON CONFLICT ON CONSTRAINT mfa_totp_pkey DO UPDATE
       SET seed_sealed = EXCLUDED.seed_sealed, digits = EXCLUDED.digits, period = EXCLUDED.period,
           confirmed_at = NULL, last_step = -1, created_at = now();
    PERFORM authx._audit_tx('mfa.totp_enrolled', 'medium', u.id);
    RETURN QUERY SELECT s.secret,
        'otpauth://totp/' || authx._uri_encode(totp_enroll.issuer) || ':' || authx._uri_encode(u.email)
        || '?secret=' || s.secret || '&issuer=' || authx._uri_encode(totp_enroll.issuer)
        || '&algorithm=SHA1&digits=' || v_digits || '&period=' || v_period;
END
$$;
COMMENT ON FUNCTION authx.totp_enroll(uuid, text) IS
'Starts TOTP enrolment: a new 160-bit secret (base32, shown once) and its otpauth:// URI for a QR code; replaces a pending enrolment. Confirm with totp_confirm. Raises P0002 for a missing user, 55000 when TOTP is already enabled, 22023 for a bad issuer.';

CREATE FUNCTION authx.totp_confirm(user_id uuid, code text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t      authx.mfa_totp;
    v_step bigint;
BEGIN
    PERFORM authx._require(totp_confirm.user_id, 'user_id');
    SELECT * INTO t FROM authx.mfa_totp m WHERE m.user_id = totp_confirm.user_id AND m.confirmed_at IS NULL
       FOR UPDATE;
    IF NOT FOUND OR authx._mfa_gate(t.user_id) IS NOT NULL THEN
        RETURN false;
    END IF;
    v_step := authx._totp_match(t.user_id, t.seed_sealed, coalesce(totp_confirm.code, ''), t.last_step, t.digits,
                                t.period, current_setting('authx.totp_window')::integer, clock_timestamp());
    IF v_step IS NULL THEN
        PERFORM authx._mfa_failed(t.user_id, 'totp_confirm');
        RETURN false;
    END IF;
    UPDATE authx.mfa_totp m SET confirmed_at = now(), last_step = v_step WHERE m.user_id = t.user_id;
    UPDATE authx.users u SET mfa_enabled = true, updated_at = now() WHERE u.id = t.user_id;
    -- A device trusted before this factor existed must not skip it.
    PERFORM authx._devices_revoke_all(t.user_id, 'mfa_enabled');
    PERFORM authx._audit_tx('mfa.totp_enabled', 'medium', t.user_id);
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.totp_confirm(uuid, text) IS
'Completes enrolment with a code from the authenticator: true enables TOTP (users.mfa_enabled); false for a wrong code, no pending enrolment, or too many attempts. Never raises on a bad code.';

-- The second-factor checks behind totp_verify, recovery_code_use and
-- login_mfa: ok, invalid, rate_limited, locked, or none (no such factor).
CREATE FUNCTION authx._totp_check(p_user_id uuid, p_code text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t      authx.mfa_totp;
    v_gate text;
    v_step bigint;
BEGIN
    -- The row lock makes concurrent uses of one code take turns: the second
    -- sees the step the first accepted (replay).
    SELECT * INTO t FROM authx.mfa_totp m WHERE m.user_id = p_user_id AND m.confirmed_at IS NOT NULL FOR UPDATE;
    -- No second factor counts for an account that cannot log in.
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM authx.users u
                                 WHERE u.id = p_user_id AND u.status = 'active' AND u.deleted_at IS NULL) THEN
        RETURN 'none';
    END IF;
    v_gate := authx._mfa_gate(p_user_id);
    IF v_gate IS NOT NULL THEN
        RETURN v_gate;
    END IF;
    v_step := authx._totp_match(t.user_id, t.seed_sealed, coalesce(p_code, ''), t.last_step, t.digits,
                                t.period, current_setting('authx.totp_window')::integer, clock_timestamp());
    IF v_step IS NULL THEN
        PERFORM authx._mfa_failed(p_user_id, 'totp');
        RETURN 'invalid';
    END IF;
    UPDATE authx.mfa_totp m SET last_step = v_step WHERE m.user_id = p_user_id;
    RETURN 'ok';
END
$$;
COMMENT ON FUNCTION authx._totp_check(uuid, text) IS
'Internal. Checks a TOTP code: ok, invalid, rate_limited, locked, or none (TOTP not enabled, or the account is not active).';

CREATE FUNCTION authx._recovery_check(p_user_id uuid, p_code text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_gate text;
BEGIN
    -- Recovery codes stand in for an enabled authenticator of an active account.
    IF NOT EXISTS (SELECT 1 FROM authx.mfa_totp m JOIN authx.users u ON u.id = m.user_id
                    WHERE m.user_id = p_user_id AND m.confirmed_at IS NOT NULL
                      AND u.status = 'active' AND u.deleted_at IS NULL) THEN
        RETURN 'none';
    END IF;
    v_gate := authx._mfa_gate(p_user_id);
    IF v_gate IS NOT NULL THEN
        RETURN v_gate;
    END IF;
    UPDATE authx.mfa_recovery_codes c SET used_at = now()
     WHERE c.user_id = p_user_id AND c.code_hash = authx._recovery_hash(p_user_id, coalesce(p_code, ''))
       AND c.used_at IS NULL;
    IF NOT FOUND THEN
        PERFORM authx._mfa_failed(p_user_id, 'recovery_code');
        RETURN 'invalid';
    END IF;
    PERFORM authx._audit_tx('mfa.recovery_code_used', 'high', p_user_id,
                            jsonb_build_object('left', (SELECT count(*) FROM authx.mfa_recovery_codes c
                                                         WHERE c.user_id = p_user_id AND c.used_at IS NULL)));
    RETURN 'ok';
END
$$;
COMMENT ON FUNCTION authx._recovery_check(uuid, text) IS
'Internal. Spends a recovery code: ok, invalid, rate_limited, locked, or none (no enabled TOTP, or the account is not active).';

CREATE FUNCTION authx.totp_verify(user_id uuid, code text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(totp_verify.user_id, 'user_id');
    RETURN authx._totp_check(totp_verify.user_id, totp_verify.code) = 'ok';
END
$$;
COMMENT ON FUNCTION authx.totp_verify(uuid, text) IS
'True when code is the user''s current TOTP code (within authx.totp_window steps) and its time step was not used before; false otherwise, also without confirmed TOTP, for a disabled or locked account, when rate-limited (mfa policy) or locked (authx.mfa_max_failures). Never raises on a bad code.';

CREATE FUNCTION authx.totp_disable(user_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(totp_disable.user_id, 'user_id');
    DELETE FROM authx.mfa_totp m WHERE m.user_id = totp_disable.user_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM authx.mfa_recovery_codes c WHERE c.user_id = totp_disable.user_id;
    UPDATE authx.users u SET mfa_enabled = false, updated_at = now() WHERE u.id = totp_disable.user_id;
    -- Trust was given on the strength of this factor: a new one starts afresh.
    PERFORM authx._devices_revoke_all(totp_disable.user_id, 'mfa_disabled');
    PERFORM authx._audit_tx('mfa.totp_disabled', 'high', totp_disable.user_id);
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.totp_disable(uuid) IS
'Removes the user''s TOTP authenticator (pending or enabled) and recovery codes; false when there was none. Audited as mfa.totp_disabled (high).';

-- A code is 12 hex digits from gen_random_uuid (pg_strong_random) shown
-- as xxxx-xxxx-xxxx: 48 bits, against 5 attempts a minute.
CREATE FUNCTION authx._recovery_hash(p_user_id uuid, p_code text)
RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT sha256(convert_to(p_user_id::text || ':' || lower(translate(p_code, ' -', '')), 'UTF8')) $$;
COMMENT ON FUNCTION authx._recovery_hash(uuid, text) IS 'Internal. What a recovery code is stored as.';

CREATE FUNCTION authx.recovery_codes_generate(user_id uuid)
RETURNS text[]
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_codes text[];
BEGIN
    PERFORM authx._require(recovery_codes_generate.user_id, 'user_id');
    IF NOT EXISTS (SELECT 1 FROM authx.mfa_totp m
                    WHERE m.user_id = recovery_codes_generate.user_id AND m.confirmed_at IS NOT NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = 'TOTP is not enabled for this user',
            HINT = 'Recovery codes stand in for an authenticator: enrol one first (totp_enroll, totp_confirm).';
    END IF;
    SELECT array_agg(substr(h, 1, 4) || '-' || substr(h, 5, 4) || '-' || substr(h, 9, 4))
      INTO v_codes
      FROM (SELECT replace(gen_random_uuid()::text, '-', '') AS h FROM generate_series(1, 10)) g;
    DELETE FROM authx.mfa_recovery_codes c WHERE c.user_id = recovery_codes_generate.user_id;
    INSERT INTO authx.mfa_recovery_codes (user_id, code_hash)
    SELECT recovery_codes_generate.user_id, authx._recovery_hash(recovery_codes_generate.user_id, c)
      FROM unnest(v_codes) c;
    PERFORM authx._audit_tx('mfa.recovery_codes_generated', 'medium', recovery_codes_generate.user_id);
    RETURN v_codes;
END
$$;
COMMENT ON FUNCTION authx.recovery_codes_generate(uuid) IS
'Ten new single-use recovery codes (xxxx-xxxx-xxxx, shown once; earlier ones stop working). Raises 55000 when TOTP is not enabled.';

CREATE FUNCTION authx.recovery_code_use(user_id uuid, code text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(recovery_code_use.user_id, 'user_id');
    RETURN authx._recovery_check(recovery_code_use.user_id, recovery_code_use.code) = 'ok';
END
$$;
COMMENT ON FUNCTION authx.recovery_code_use(uuid, text) IS
'Spends one recovery code: true once per code; false for a wrong or used code, or too many attempts. Audited as mfa.recovery_code_used (high).';

-- ----------------------------------------------------------------
-- Login with a second factor
-- ----------------------------------------------------------------

-- Challenges: what authx.login hands out instead of a session when the
-- account has TOTP; only the sha256 of the token is kept.  Not dumped:
-- they live for minutes.
CREATE TABLE authx.mfa_challenges (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES authx.users (id) ON DELETE CASCADE,
    ip         inet,
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX mfa_challenges_expires_idx ON authx.mfa_challenges (expires_at);
COMMENT ON TABLE authx.mfa_challenges IS
'MFA challenges from authx.login (sha256 of the axc_ token): single use, valid for authx.mfa_challenge_ttl.';

CREATE FUNCTION authx._mfa_challenge_new(p_user_id uuid, p_ip inet, p_user_agent text,
                                         OUT token text, OUT expires_at timestamptz)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    t := authx._token_new('axc_', p_user_id);
    expires_at := clock_timestamp() + authx._setting_interval('authx.mfa_challenge_ttl', '5 minutes');
    INSERT INTO authx.mfa_challenges (token_hash, user_id, ip, user_agent, expires_at)
    VALUES (t.token_hash, p_user_id, p_ip, left(p_user_agent, 512), expires_at);
    token := t.token;
END
$$;
COMMENT ON FUNCTION authx._mfa_challenge_new(uuid, inet, text) IS 'Internal. A new MFA challenge token for login.';

CREATE FUNCTION authx.login_mfa(challenge text, code text, ip inet DEFAULT NULL, user_agent text DEFAULT NULL)
RETURNS TABLE (status text, user_id uuid, session_token text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c      authx.mfa_challenges;
    v_code text := translate(coalesce(login_mfa.code, ''), ' -', '');
    v_kind text;
    v_res  text;
    r      record;
BEGIN
    IF ip IS NOT NULL AND authx.ip_blocked(ip) THEN
        PERFORM authx.audit('login.blocked', 'medium', NULL, ip, jsonb_build_object('step', 'mfa'), user_agent);
        RETURN QUERY SELECT 'blocked'::text, NULL::uuid, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT * INTO c FROM authx.mfa_challenges m
     WHERE m.token_hash = authx._token_hash('axc_', login_mfa.challenge) FOR UPDATE;
    IF c.token_hash IS NULL OR c.used_at IS NOT NULL OR c.expires_at <= clock_timestamp()
       OR NOT EXISTS (SELECT 1 FROM authx.users u
                       WHERE u.id = c.user_id AND u.status = 'active' AND u.deleted_at IS NULL) THEN
        PERFORM authx.audit('login.mfa_failed', 'low', c.user_id, ip, jsonb_build_object('reason', 'invalid_challenge'),
                            user_agent);
        RETURN QUERY SELECT 'invalid_challenge'::text, NULL::uuid, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    -- 12 hex digits (dashes and spaces aside) is a recovery code; anything
    -- else is tried as a TOTP code.
    v_kind := CASE WHEN v_code ~* '^[0-9a-f]{12}$' THEN 'recovery_code' ELSE 'totp' END;
    v_res := CASE v_kind WHEN 'recovery_code' THEN authx._recovery_check(c.user_id, v_code)
                         ELSE authx._totp_check(c.user_id, v_code) END;
    IF v_res <> 'ok' THEN
        PERFORM authx.audit('login.mfa_failed', 'medium', c.user_id, ip,
                            jsonb_build_object('reason', v_res, 'factor', v_kind), user_agent);
        RETURN QUERY SELECT CASE v_res WHEN 'invalid' THEN 'invalid_code' WHEN 'none' THEN 'invalid_challenge'
                                       ELSE v_res END,
                            NULL::uuid, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    UPDATE authx.mfa_challenges m SET used_at = now() WHERE m.token_hash = c.token_hash;
    r := authx._session_insert(c.user_id, ip, user_agent, NULL);
    UPDATE authx.users u SET last_login_at = now() WHERE u.id = c.user_id;
    PERFORM authx.audit('login.succeeded', 'info', c.user_id, ip, jsonb_build_object('mfa', v_kind), user_agent);
    RETURN QUERY SELECT 'ok'::text, c.user_id, r.session_token, r.expires_at;
END
$$;
COMMENT ON FUNCTION authx.login_mfa(text, text, inet, text) IS
'Completes a login that answered mfa_required: the challenge (session_token of that answer) and a TOTP code or a recovery code. status: ok (with user_id, session_token, expires_at), invalid_code (the challenge stays usable until it expires), invalid_challenge (unknown, used, expired, or the account is no longer active), rate_limited, locked (too many failed second factors), blocked. Never raises on bad input.';

-- Housekeeping called by maintenance_run: challenges a day past their end.
CREATE FUNCTION authx._mfa_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    DELETE FROM authx.mfa_challenges m WHERE m.expires_at < p_now - interval '1 day';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN jsonb_build_object('challenges_purged', v_n);
END
$$;
COMMENT ON FUNCTION authx._mfa_purge(timestamptz) IS 'Internal. Deletes MFA challenges that ended more than a day ago.';

-- An account that stops being active loses its open challenges; a deleted
-- one keeps no second factor at all.
CREATE FUNCTION authx._user_inactive_mfa()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM authx.mfa_challenges m WHERE m.user_id = NEW.id;
    IF NEW.deleted_at IS NOT NULL THEN
        DELETE FROM authx.mfa_totp m WHERE m.user_id = NEW.id;
        DELETE FROM authx.mfa_recovery_codes c WHERE c.user_id = NEW.id;
        NEW.mfa_enabled := false;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION authx._user_inactive_mfa() IS
'Internal. Trigger: disabling, locking or deleting an account drops its MFA challenges; deleting it also erases its TOTP seed and recovery codes.';
CREATE TRIGGER users_inactive_mfa BEFORE UPDATE OF deleted_at, status ON authx.users
FOR EACH ROW WHEN ((OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)
                   OR (OLD.status = 'active' AND NEW.status <> 'active'))
EXECUTE FUNCTION authx._user_inactive_mfa();

-- ================================================================
-- Sessions, login and lockouts (src/sessions.c, src/lockout.c)
-- ================================================================

CREATE TABLE authx.sessions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash    bytea NOT NULL CONSTRAINT sessions_token_hash_key UNIQUE,
    user_id       uuid NOT NULL REFERENCES authx.users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at    timestamptz NOT NULL,
    idle_timeout  integer NOT NULL DEFAULT 0 CHECK (idle_timeout >= 0),
    last_seen_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    ip            inet,
    user_agent    text,
    last_ip       inet,
    revoked_at    timestamptz,
    revoke_reason text,
    version       bigint NOT NULL DEFAULT 1,
    CHECK (octet_length(token_hash) = 32)
);
CREATE INDEX sessions_user_idx ON authx.sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expires_idx ON authx.sessions (expires_at);
COMMENT ON TABLE authx.sessions IS
'Sessions. token_hash is sha256 of the token string; the token itself is never stored. idle_timeout is in seconds (0 = none). version counts the row''s changes and orders them in the Redis cache.';
SELECT pg_catalog.pg_extension_config_dump('authx.sessions', '');

-- Failed-login counters and lockouts as last persisted by the worker from
-- shared memory; ip NULL is the account-wide counter.
CREATE TABLE authx.lockouts (
    user_id      uuid NOT NULL,
    ip           inet,
    failures     integer NOT NULL,
    lock_count   integer NOT NULL,
    window_start timestamptz,
    locked_until timestamptz,
    updated_at   timestamptz NOT NULL,
    CONSTRAINT lockouts_key UNIQUE NULLS NOT DISTINCT (user_id, ip)
);
COMMENT ON TABLE authx.lockouts IS
'Failed-login counters per (user, address) and per user (ip NULL), persisted from shared memory by the maintenance worker.';
SELECT pg_catalog.pg_extension_config_dump('authx.lockouts', '');

-- Disabling or deleting a user revokes their sessions at that moment, so
-- validation needs to read nothing but the session (and the Redis cache,
-- which holds no user status, learns of it as a revocation).  A trigger, so
-- a direct UPDATE of users.status keeps the invariant too.  Re-enabling does
-- not bring old sessions back.  The status UPDATE locks the user row, which
-- serializes it with session creation (FOR SHARE on the same row).
CREATE FUNCTION authx._user_status_revoke()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE authx.sessions s SET revoked_at = now(), revoke_reason = 'user_' || NEW.status
     WHERE s.user_id = NEW.id AND s.revoked_at IS NULL;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION authx._user_status_revoke() IS
'Internal. Trigger: revokes every live session of a user who becomes disabled or deleted.';

CREATE TRIGGER users_status_revoke_sessions
AFTER UPDATE OF status ON authx.users
FOR EACH ROW WHEN (NEW.status IN ('disabled', 'deleted') AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION authx._user_status_revoke();

CREATE FUNCTION authx._lockout_state(user_id uuid, ip inet)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'authx_lockout_state'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx._lockout_state(uuid, inet) IS
'Internal. Returns until when the account is locked for this address, or NULL.';

CREATE FUNCTION authx._lockout_fail(user_id uuid, ip inet)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'authx_lockout_fail'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx._lockout_fail(uuid, inet) IS
'Internal. Counts a failed login at once in shared memory (rollback-proof); returns the lock end if one now applies.';

CREATE FUNCTION authx._lockout_clear(user_id uuid, ip inet)
RETURNS void
AS 'MODULE_PATHNAME', 'authx_lockout_clear'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx._lockout_clear(uuid, inet) IS
'Internal. Clears the (user, address) counter, or with ip NULL every counter of the user.';

CREATE FUNCTION authx._token_new(prefix text, user_id uuid DEFAULT NULL, OUT token text, OUT token_hash bytea)
RETURNS record
AS 'MODULE_PATHNAME', 'authx_token_new'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION authx._token_new(text, uuid) IS
'Internal. Returns a new 256-bit token with the prefix (ending in the user''s bucket with authx.shard_tokens on), and its sha256.';

CREATE FUNCTION authx._session_token_hash(token text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'authx_session_token_hash'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authx._session_token_hash(text) IS
'Internal. Returns sha256 of a well-formed session token, NULL for anything else.';

CREATE FUNCTION authx._token_hash(prefix text, token text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'authx_token_hash'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authx._token_hash(text, text) IS
'Internal. Returns sha256 of a well-formed token of the prefix (axc_, axd_, axv_, axp_), NULL for anything else.';

CREATE FUNCTION authx.session_validate(token text, ip inet DEFAULT NULL)
RETURNS uuid
AS 'MODULE_PATHNAME', 'authx_session_validate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION authx.session_validate(text, inet) IS
'Returns the user id of a valid session, or NULL when the token is malformed, unknown, revoked (disabling or deleting a user revokes their sessions), or expired (absolute or idle), or when ip is blocked. Never raises on bad input.';

-- Internal: a setting with a unit, as an interval ("7d" parses as 7 days).
CREATE FUNCTION authx._setting_interval(p_name text, p_default interval)
RETURNS interval
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(nullif(current_setting(p_name, true), '')::interval, p_default) $$;
COMMENT ON FUNCTION authx._setting_interval(text, interval) IS
'Internal. Returns a time-valued authx setting as an interval, or the default when it is not defined.';

-- Internal: the body shared by session_create and login.  The user row is
-- locked FOR SHARE so that session_revoke_all (FOR UPDATE) cannot miss a
-- session created concurrently.
CREATE FUNCTION authx._session_insert(p_user_id uuid, p_ip inet, p_user_agent text, p_ttl interval,
                                      OUT session_token text, OUT expires_at timestamptz)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ttl  interval := coalesce(p_ttl, authx._setting_interval('authx.session_ttl', '7 days'));
    v_idle integer := extract(epoch FROM authx._setting_interval('authx.session_idle_timeout', '1 day'))::integer;
    v_max  integer := coalesce(nullif(current_setting('authx.max_sessions_per_user', true), ''), '0')::integer;
    v_status text;
    t      record;
BEGIN
    IF v_ttl <= interval '0' OR v_ttl > interval '10 years' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'session ttl must be between 1 second and 10 years',
            HINT = 'Pass a ttl such as ''8 hours'', or NULL for authx.session_ttl.';
    END IF;
    SELECT u.status INTO v_status FROM authx.users u
     WHERE u.id = p_user_id AND u.deleted_at IS NULL FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format('user "%s" does not exist', p_user_id),
            HINT = 'Sessions can only be created for live users.';
    ELSIF v_status NOT IN ('active', 'locked') THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('user "%s" is %s', p_user_id, v_status),
            HINT = 'Enable the user with authx.user_enable first.';
    END IF;

    -- Scale-out: the token names its bucket, so a coordinator routes it.
    t := authx._token_new('axs_', p_user_id);
    session_token := t.token;
    expires_at := clock_timestamp() + v_ttl;
    INSERT INTO authx.sessions (token_hash, user_id, expires_at, idle_timeout, ip, user_agent)
    VALUES (t.token_hash, p_user_id, expires_at, v_idle, p_ip, left(p_user_agent, 512));

    IF v_max > 0 THEN
        UPDATE authx.sessions s SET revoked_at = now(), revoke_reason = 'session_limit'
         WHERE s.id IN (SELECT o.id FROM authx.sessions o
                         WHERE o.user_id = p_user_id AND o.revoked_at IS NULL AND o.expires_at > now()
                         ORDER BY o.created_at DESC, o.id OFFSET v_max);
    END IF;
END
$$;
COMMENT ON FUNCTION authx._session_insert(uuid, inet, text, interval) IS
'Internal. Creates a session row and returns the token; revokes the oldest beyond authx.max_sessions_per_user.';

CREATE FUNCTION authx.session_create(user_id uuid, ip inet DEFAULT NULL, user_agent text DEFAULT NULL,
                                     ttl interval DEFAULT NULL)
RETURNS TABLE (session_token text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    PERFORM authx._require(session_create.user_id, 'user_id');
    r := authx._session_insert(session_create.user_id, ip, user_agent, ttl);
    PERFORM authx._audit_tx('session.created', 'info', session_create.user_id,
                            jsonb_build_object('ip', ip, 'expires_at', r.expires_at));
    RETURN QUERY SELECT r.session_token, r.expires_at;
END
$$;
COMMENT ON FUNCTION authx.session_create(uuid, inet, text, interval) IS
'Creates a session for a user authenticated elsewhere (OAuth, SSO) and returns its token, shown once. Raises P0002 for a missing user, 55000 for a disabled one, 22023 for a bad ttl.';

-- Names the account a failed login was for without storing the address
-- typed (which may be a password typed in the wrong field): 16 hex digits of
-- its sha256.  Threat rules count distinct accounts by it.
CREATE FUNCTION authx._account_tag(p_email text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT left(encode(sha256(convert_to(p_email, 'UTF8')), 'hex'), 16) $$;
COMMENT ON FUNCTION authx._account_tag(text) IS
'Internal. The tag of a normalized email in login.failed details (16 hex digits of its sha256): distinct accounts, no address stored.';

CREATE FUNCTION authx.login(email text, password text, ip inet DEFAULT NULL, user_agent text DEFAULT NULL,
                            device_token text DEFAULT NULL)
RETURNS TABLE (status text, user_id uuid, session_token text, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user   authx.users;
    v_locked timestamptz;
    v_new    timestamptz;
    v_rc     integer;
    v_email  text := lower(btrim(coalesce(login.email, ''), E' \t\r\n'));
    v_rl     authx.rate_limit_result;
    v_device uuid;
    r        record;
BEGIN
    -- A blocked address is answered before anything costs: no hash, no
    -- lookup, nothing to learn about the account.
    IF ip IS NOT NULL AND authx.ip_blocked(ip) THEN
        PERFORM authx.audit('login.blocked', 'medium', NULL, ip, '{}', user_agent);
        RETURN QUERY SELECT 'blocked'::text, NULL::uuid, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    -- Then the login policy, per address (IPv6: per /64) and per email,
    -- known or not: a limited attempt costs no lookup and no argon2 time.
    v_rl := authx._rate_check_ip_email('login', ip, v_email);
    IF NOT v_rl.allowed THEN
        PERFORM authx.audit('login.rate_limited', 'low', NULL, ip,
                            jsonb_build_object('retry_after_s', extract(epoch FROM v_rl.retry_after)), user_agent);
        RETURN QUERY SELECT 'rate_limited'::text, NULL::uuid, NULL::text,
                            clock_timestamp() + coalesce(v_rl.retry_after, interval '0');
        RETURN;
    END IF;
    SELECT * INTO v_user FROM authx.users u
     WHERE lower(u.email) = lower(btrim(login.email, E' \t\r\n')) AND u.deleted_at IS NULL;
    IF v_user.id IS NOT NULL THEN
        v_locked := authx._lockout_state(v_user.id, ip);
    END IF;

    -- Always one argon2 verification: an unknown email (NULL hash, checked
    -- against a dummy of equal cost) takes as long as a wrong password.
    v_rc := authx._password_check(v_user.password_hash, password);

    IF v_user.id IS NULL THEN
        PERFORM authx.audit('login.failed', 'low', NULL, ip,
                            jsonb_build_object('reason', 'unknown_email', 'account', authx._account_tag(v_email)),
                            user_agent);
        RETURN QUERY SELECT 'invalid_credentials'::text, NULL::uuid, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;

    IF v_rc = 0 THEN
        IF v_locked IS NULL THEN
            v_new := authx._lockout_fail(v_user.id, ip);
        END IF;
        PERFORM authx.audit('login.failed', 'medium', v_user.id, ip,
                            jsonb_build_object('reason', 'bad_password', 'account', authx._account_tag(v_email)),
                            user_agent);
        IF v_new IS NOT NULL THEN
            PERFORM authx.audit('login.lockout', 'high', v_user.id, ip,
                                jsonb_build_object('locked_until', v_new), user_agent);
        END IF;
        RETURN QUERY SELECT 'invalid_credentials'::text, NULL::uuid, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;

    -- The password is right: only now may the caller learn the state.
    IF v_locked IS NOT NULL OR v_user.status = 'locked' THEN
        PERFORM authx.audit('login.failed', 'medium', v_user.id, ip,
                            jsonb_build_object('reason', 'locked'), user_agent);
        RETURN QUERY SELECT 'locked'::text, NULL::uuid, NULL::text, v_locked;
        RETURN;
    END IF;
    IF v_user.status = 'disabled' THEN
        PERFORM authx.audit('login.failed', 'medium', v_user.id, ip,
                            jsonb_build_object('reason', 'disabled'), user_agent);
        RETURN QUERY SELECT 'disabled'::text, NULL::uuid, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;

    -- The password checked must still be the account's once we hold the
    -- row: a reset or password change that committed while argon2 ran
    -- logs nobody in with the old one.  (The lock also orders login before
    -- the trusted-device rows, as password_reset_confirm takes them.)
    PERFORM 1 FROM authx.users u
     WHERE u.id = v_user.id AND u.password_changed_at IS NOT DISTINCT FROM v_user.password_changed_at
       AND u.status = v_user.status AND u.deleted_at IS NULL
       FOR SHARE;
    IF NOT FOUND THEN
        PERFORM authx.audit('login.failed', 'medium', v_user.id, ip,
                            jsonb_build_object('reason', 'password_changed'), user_agent);
        RETURN QUERY SELECT 'invalid_credentials'::text, NULL::uuid, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    IF v_rc = 2 THEN
        PERFORM authx._password_rehash(v_user.id, v_user.password_hash, password);
    END IF;
    PERFORM authx._lockout_clear(v_user.id, ip);
    -- A second factor: a challenge instead of a session (authx.login_mfa).
    -- A device the user trusts (authx.device_trust) skips it.
    IF v_user.mfa_enabled AND EXISTS (SELECT 1 FROM authx.mfa_totp t
                                       WHERE t.user_id = v_user.id AND t.confirmed_at IS NOT NULL) THEN
        v_device := authx._device_check(v_user.id, device_token);
        IF v_device IS NULL THEN
            r := authx._mfa_challenge_new(v_user.id, ip, user_agent);
            PERFORM authx.audit('login.mfa_required', 'info', v_user.id, ip, '{}', user_agent);
            RETURN QUERY SELECT 'mfa_required'::text, v_user.id, r.token, r.expires_at;
            RETURN;
        END IF;
    END IF;
    r := authx._session_insert(v_user.id, ip, user_agent, NULL);
    UPDATE authx.users u SET last_login_at = now() WHERE u.id = v_user.id;
    PERFORM authx.audit('login.succeeded', 'info', v_user.id, ip,
                        CASE WHEN v_device IS NULL THEN '{}'::jsonb
                             ELSE jsonb_build_object('mfa', 'trusted_device', 'device_id', v_device) END,
                        user_agent);
    RETURN QUERY SELECT 'ok'::text, v_user.id, r.session_token, r.expires_at;
END
$$;
COMMENT ON FUNCTION authx.login(text, text, inet, text, text) IS
'Checks email and password and opens a session. status: ok (with user_id, session_token, expires_at), invalid_credentials, locked (expires_at = end of the lockout), disabled, blocked (ip is blocked; no password is checked), rate_limited (the login policy, per address and per email; expires_at = when to retry; no password is checked), mfa_required (TOTP is enabled and device_token is not a live trusted device of the user: session_token holds an axc_ challenge for authx.login_mfa, expires_at its end). locked and disabled are only revealed to the right password. Never raises on bad input.';

CREATE FUNCTION authx.session_info(token text)
RETURNS TABLE (user_id uuid, session_id uuid, created_at timestamptz, expires_at timestamptz,
               idle_expires_at timestamptz, last_seen_at timestamptz, ip inet, user_agent text)
LANGUAGE sql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.user_id, s.id, s.created_at, s.expires_at,
           CASE WHEN s.idle_timeout > 0 THEN s.last_seen_at + make_interval(secs => s.idle_timeout) END,
           s.last_seen_at, s.ip, s.user_agent
      FROM authx.sessions s
     WHERE s.token_hash = authx._session_token_hash(session_info.token)
       AND s.revoked_at IS NULL AND s.expires_at > clock_timestamp()
       AND (s.idle_timeout = 0 OR s.last_seen_at + make_interval(secs => s.idle_timeout) > clock_timestamp());
$$;
COMMENT ON FUNCTION authx.session_info(text) IS
'Returns the details of a valid session (no row otherwise). Does not extend the idle deadline.';

CREATE FUNCTION authx.sessions(user_id uuid)
RETURNS TABLE (session_id uuid, created_at timestamptz, expires_at timestamptz,
               idle_expires_at timestamptz, last_seen_at timestamptz, ip inet, user_agent text,
               last_ip inet)
LANGUAGE sql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.id, s.created_at, s.expires_at,
           CASE WHEN s.idle_timeout > 0 THEN s.last_seen_at + make_interval(secs => s.idle_timeout) END,
           s.last_seen_at, s.ip, s.user_agent, s.last_ip
      FROM authx.sessions s
     WHERE s.user_id = sessions.user_id AND s.revoked_at IS NULL AND s.expires_at > clock_timestamp()
       AND (s.idle_timeout = 0 OR s.last_seen_at + make_interval(secs => s.idle_timeout) > clock_timestamp())
     ORDER BY s.created_at DESC;
$$;
COMMENT ON FUNCTION authx.sessions(uuid) IS
'Lists the live sessions of a user, newest first; never tokens or hashes.';

CREATE FUNCTION authx.session_revoke_id(session_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user uuid;
BEGIN
    UPDATE authx.sessions s SET revoked_at = now(), revoke_reason = 'revoked'
     WHERE s.id = session_revoke_id.session_id AND s.revoked_at IS NULL
    RETURNING s.user_id INTO v_user;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM authx._audit_tx('session.revoked', 'info', v_user,
                            jsonb_build_object('session_id', session_revoke_id.session_id));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.session_revoke_id(uuid) IS
'Revokes a session by the id shown in authx.sessions() ("log out that device"). Returns false when unknown or already revoked.';

CREATE FUNCTION authx.session_revoke(token text)
RETURNS boolean
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(authx.session_revoke_id(
               (SELECT s.id FROM authx.sessions s
                 WHERE s.token_hash = authx._session_token_hash(session_revoke.token))), false);
$$;
COMMENT ON FUNCTION authx.session_revoke(text) IS
'Revokes the session (log out). Returns false when the token is unknown, malformed or already revoked.';

CREATE FUNCTION authx.session_revoke_all(user_id uuid, except_token text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keep bytea := authx._session_token_hash(except_token);
    v_n    integer;
BEGIN
    PERFORM authx._require(session_revoke_all.user_id, 'user_id');
    -- Waits for concurrent session creation (FOR SHARE) to finish, and keeps
    -- new ones out until this commits.
    PERFORM 1 FROM authx.users u WHERE u.id = session_revoke_all.user_id FOR UPDATE;
    UPDATE authx.sessions s SET revoked_at = now(), revoke_reason = 'revoked_all'
     WHERE s.user_id = session_revoke_all.user_id AND s.revoked_at IS NULL
       AND s.token_hash IS DISTINCT FROM v_keep;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        PERFORM authx._audit_tx('session.revoked_all', 'medium', session_revoke_all.user_id,
                                jsonb_build_object('count', v_n, 'kept_current', v_keep IS NOT NULL));
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION authx.session_revoke_all(uuid, text) IS
'Revokes every session of the user except the one whose token is given; returns how many were revoked.';

CREATE FUNCTION authx.user_unlock(user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM authx._require(user_unlock.user_id, 'user_id');
    -- Takes effect at once in shared memory (like every lockout change, not
    -- undone by ROLLBACK); the worker writes the cleared counters.
    PERFORM authx._lockout_clear(user_unlock.user_id, NULL);
    PERFORM authx._audit_tx('user.unlocked', 'medium', user_unlock.user_id);
END
$$;
COMMENT ON FUNCTION authx.user_unlock(uuid) IS
'Clears every failed-login counter and lockout of the user at once, even if the calling transaction rolls back (admin). Needs shared_preload_libraries.';

CREATE VIEW authx.active_lockouts AS
SELECT l.user_id, l.ip, l.locked_until, l.lock_count, l.failures, l.updated_at
  FROM authx.lockouts l WHERE l.locked_until > now();
COMMENT ON VIEW authx.active_lockouts IS
'Lockouts in force, as last persisted by the maintenance worker (a second or so behind shared memory).';

-- Housekeeping called by maintenance_run: sessions past expiry or revoked
-- for a day, lockout rows idle longer than any lock or window.
CREATE FUNCTION authx._sessions_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sessions bigint;
    v_lockouts bigint;
BEGIN
    DELETE FROM authx.sessions s
     WHERE s.id IN (SELECT o.id FROM authx.sessions o
                     WHERE o.expires_at < p_now - interval '1 day'
                        OR o.revoked_at < p_now - interval '1 day'
                     LIMIT 10000);
    GET DIAGNOSTICS v_sessions = ROW_COUNT;
    DELETE FROM authx.lockouts l
     WHERE l.updated_at < p_now - authx._setting_interval('authx.lockout_max_duration', '1 day')
                                - authx._setting_interval('authx.lockout_window', '15 min')
       AND coalesce(l.locked_until, '-infinity') < p_now;
    GET DIAGNOSTICS v_lockouts = ROW_COUNT;
    RETURN jsonb_build_object('sessions_deleted', v_sessions, 'lockouts_deleted', v_lockouts);
END
$$;
COMMENT ON FUNCTION authx._sessions_purge(timestamptz) IS
'Internal. Deletes sessions expired or revoked more than a day before p_now (10000 a pass) and idle lockout rows.';

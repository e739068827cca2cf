-- ================================================================
-- Accounts and passwords
-- ================================================================

CREATE TABLE authx.users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email               text NOT NULL,
    display_name        text,
    password_hash       text,
    status              text NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'disabled', 'locked', 'deleted')),
    mfa_enabled         boolean NOT NULL DEFAULT false,
    email_verified_at   timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz,
    last_login_at       timestamptz,
    deleted_at          timestamptz,
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);
-- Unique among live accounts only: a deleted account frees its email.
CREATE UNIQUE INDEX users_email_key ON authx.users (lower(email)) WHERE deleted_at IS NULL;
COMMENT ON TABLE authx.users IS 'Accounts. password_hash is an argon2id PHC string and is never returned by any function.';
SELECT pg_catalog.pg_extension_config_dump('authx.users', '');

-- Internal: validate and trim an email address; raise 22004/22023.
-- Accepts what mail systems accept in practice: one @, a dot-atom local part
-- (quoted local parts are refused), a domain of two or more labels; UTF-8
-- letters are allowed on both sides (RFC 6531).
CREATE FUNCTION authx._email_normalize(p_email text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v      text;
    v_at   integer;
    v_local  text;
    v_domain text;
BEGIN
    IF p_email IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'email must not be null',
            HINT = 'Pass an email address such as "ada@example.com".';
    END IF;
    v := btrim(p_email, E' \t\r\n');
    IF v = '' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'email must not be empty',
            HINT = 'Pass an email address such as "ada@example.com".';
    END IF;
    IF octet_length(v) > 254 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'email is too long',
            DETAIL = 'An email address has at most 254 bytes (RFC 5321).',
            HINT = 'Check that the value is a single email address.';
    END IF;
    v_at := length(v) - position('@' IN reverse(v)) + 1;
    v_local := left(v, v_at - 1);
    v_domain := substr(v, v_at + 1);
    IF position('@' IN v) = 0
       OR octet_length(v_local) NOT BETWEEN 1 AND 64
       OR v_local !~ '^[^][[:space:][:cntrl:]@"(),:;<>\\.]+(\.[^][[:space:][:cntrl:]@"(),:;<>\\.]+)*$'
       OR octet_length(v_domain) > 253
       OR v_domain !~ '^([^][[:space:][:cntrl:][:punct:]]([^][[:space:][:cntrl:][:punct:]]|-){0,62}\.)+[^][[:space:][:cntrl:][:punct:]]([^][[:space:][:cntrl:][:punct:]]|-){0,62}$'
       OR v_domain ~ '(^|\.)-|-(\.|$)'
    THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('invalid email address "%s"', v),
            HINT = 'An email address looks like "ada@example.com".';
    END IF;
    RETURN v;
END
$$;
COMMENT ON FUNCTION authx._email_normalize(text) IS
'Internal. Returns the trimmed email; raises 22004 for NULL and 22023 for an empty, oversized or malformed address.';

-- Internal: the argument checks shared by the user functions.
CREATE FUNCTION authx._require(p_value anyelement, p_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_value IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22004',
            MESSAGE = format('%s must not be null', p_name),
            HINT = format('Pass a non-null %s.', p_name);
    END IF;
END
$$;
COMMENT ON FUNCTION authx._require(anyelement, text) IS 'Internal. Raises 22004 when the value is NULL.';

-- Internal: a live (not deleted) user row, locked for update; P0002 if none.
CREATE FUNCTION authx._user_lock(p_user_id uuid)
RETURNS authx.users
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u authx.users;
BEGIN
    PERFORM authx._require(p_user_id, 'user_id');
    SELECT * INTO u FROM authx.users WHERE id = p_user_id AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'P0002',
            MESSAGE = format('user "%s" does not exist', p_user_id),
            HINT = 'Deleted users cannot be changed; look the user up with authx.user_find.';
    END IF;
    RETURN u;
END
$$;
COMMENT ON FUNCTION authx._user_lock(uuid) IS 'Internal. Returns the live user row locked FOR UPDATE; raises P0002 when missing or deleted.';

CREATE FUNCTION authx.user_create(email text, password text, display_name text DEFAULT NULL)
RETURNS uuid
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT authx._user_create_id(gen_random_uuid(), email, password, display_name) $$;
COMMENT ON FUNCTION authx.user_create(text, text, text) IS
'Creates an account and returns its id. Raises 22004 (NULL), 22023 (malformed email, password policy), 22021 (invalid UTF-8), 23505 (email taken).';

-- The account with an id chosen by the caller: a scale-out coordinator
-- picks it, to know the user's bucket before the row exists.
CREATE FUNCTION authx._user_create_id(id uuid, email text, password text, display_name text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_email text := authx._email_normalize(email);
    v_name  text := nullif(btrim(display_name), '');
    v_hash  text;
    v_id    uuid;
BEGIN
    PERFORM authx._require(_user_create_id.id, 'id');
    IF v_name IS NOT NULL AND (length(v_name) > 200 OR v_name ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid display name',
            DETAIL = 'A display name has at most 200 characters and no control characters.',
            HINT = 'Pass a shorter name, or NULL.';
    END IF;
    -- Refuse a taken email before spending a hash on it; the unique index
    -- below still decides races.
    IF EXISTS (SELECT 1 FROM authx.users u WHERE lower(u.email) = lower(v_email) AND u.deleted_at IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = 'email is already registered',
            HINT = 'Sign in instead, or use another email address.';
    END IF;
    v_hash := authx._password_hash(password, true);
    BEGIN
        INSERT INTO authx.users (id, email, display_name, password_hash, password_changed_at)
        VALUES (_user_create_id.id, v_email, v_name, v_hash, now())
        RETURNING users.id INTO v_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = '23505', MESSAGE = 'email is already registered',
            HINT = 'Sign in instead, or use another email address.';
    END;
    PERFORM authx._audit_tx('user.created', 'info', v_id);
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION authx._user_create_id(uuid, text, text, text) IS
'Internal (scale-out): user_create with the id given. Raises as user_create, and 23505 for an id in use.';

CREATE FUNCTION authx.user_get(user_id uuid)
RETURNS TABLE (id uuid, email text, display_name text, status text, email_verified boolean,
               mfa_enabled boolean, created_at timestamptz, updated_at timestamptz,
               password_changed_at timestamptz, last_login_at timestamptz)
LANGUAGE sql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.id, u.email, u.display_name, u.status, u.email_verified_at IS NOT NULL,
           u.mfa_enabled, u.created_at, u.updated_at, u.password_changed_at, u.last_login_at
      FROM authx.users u
     WHERE u.id = user_get.user_id AND u.deleted_at IS NULL;
$$;
COMMENT ON FUNCTION authx.user_get(uuid) IS
'Returns the account (never its password hash), or no row when it does not exist or was deleted.';

CREATE FUNCTION authx.user_find(email text)
RETURNS uuid
LANGUAGE sql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.id FROM authx.users u
     WHERE lower(u.email) = lower(btrim(user_find.email, E' \t\r\n')) AND u.deleted_at IS NULL;
$$;
COMMENT ON FUNCTION authx.user_find(text) IS
'Returns the id of the live account with this email (case-insensitive, trimmed), or NULL.';

-- Internal: store a fresh hash of an accepted password, but only if the
-- stored hash is still the one that was verified (compare-and-swap): a
-- concurrent password_set or user_delete must win over a login's rehash.
-- Skipped where nothing may be written (read-only transaction, standby).
CREATE FUNCTION authx._password_rehash(p_user_id uuid, p_old_hash text, p_password text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('transaction_read_only') = 'on' THEN
        RETURN;
    END IF;
    UPDATE authx.users u SET password_hash = authx._password_hash(p_password, false, p_old_hash)
     WHERE u.id = p_user_id AND u.password_hash = p_old_hash AND u.deleted_at IS NULL;
END
$$;
COMMENT ON FUNCTION authx._password_rehash(uuid, text, text) IS
'Internal. Replaces the hash of an accepted password at the current costs (never below the old hash''s), only if it is still p_old_hash; a no-op in read-only transactions.';

CREATE FUNCTION authx.password_verify(user_id uuid, password text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_hash text;
    v_rc   integer;
BEGIN
    SELECT u.password_hash INTO v_hash FROM authx.users u
     WHERE u.id = password_verify.user_id AND u.status IN ('active', 'locked');
    -- A missing user (v_hash NULL) costs the same as a wrong password.
    v_rc := authx._password_check(v_hash, password);
    IF v_rc = 2 THEN
        PERFORM authx._password_rehash(password_verify.user_id, v_hash, password);
    END IF;
    RETURN v_rc > 0;
END
$$;
COMMENT ON FUNCTION authx.password_verify(uuid, text) IS
'Returns true only when the account exists, is not disabled or deleted, and the password matches; never NULL, never raises on bad input. A hash made with older costs is replaced.';

CREATE FUNCTION authx.password_set(user_id uuid, new_password text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u authx.users := authx._user_lock(user_id);
BEGIN
    UPDATE authx.users SET password_hash = authx._password_hash(new_password, true),
                           password_changed_at = now(), updated_at = now()
     WHERE id = u.id;
    PERFORM authx._audit_tx('password.changed', 'medium', u.id);
END
$$;
COMMENT ON FUNCTION authx.password_set(uuid, text) IS
'Replaces the password. Raises P0002 for a missing or deleted user and the user_create errors for a bad password.';

-- Internal: the shared body of user_disable / user_enable / user_delete.
CREATE FUNCTION authx._user_set_status(p_user_id uuid, p_status text, p_event text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u authx.users := authx._user_lock(p_user_id);
BEGIN
    IF u.status = p_status THEN
        RETURN false;
    END IF;
    UPDATE authx.users
       SET status = p_status, updated_at = now(),
           deleted_at = CASE WHEN p_status = 'deleted' THEN now() END,
           password_hash = CASE WHEN p_status = 'deleted' THEN NULL ELSE password_hash END
     WHERE id = u.id;
    PERFORM authx._audit_tx(p_event, CASE WHEN p_status = 'active' THEN 'info' ELSE 'medium' END::authx.severity,
                            u.id, jsonb_build_object('previous_status', u.status));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx._user_set_status(uuid, text, text) IS
'Internal. Moves a live user to p_status; returns false when already there.';

CREATE FUNCTION authx.user_disable(user_id uuid)
RETURNS boolean
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT authx._user_set_status(user_id, 'disabled', 'user.disabled') $$;
COMMENT ON FUNCTION authx.user_disable(uuid) IS
'Disables the account (no password check or login succeeds) and revokes its sessions; returns false if it already was. Raises P0002 for a missing or deleted user.';

CREATE FUNCTION authx.user_enable(user_id uuid)
RETURNS boolean
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT authx._user_set_status(user_id, 'active', 'user.enabled') $$;
COMMENT ON FUNCTION authx.user_enable(uuid) IS
'Re-enables a disabled or locked account; returns false if it was active. Raises P0002 for a missing or deleted user.';

CREATE FUNCTION authx.user_delete(user_id uuid)
RETURNS boolean
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT authx._user_set_status(user_id, 'deleted', 'user.deleted') $$;
COMMENT ON FUNCTION authx.user_delete(uuid) IS
'Soft-deletes the account: the row stays for the audit trail, its password hash is erased, its sessions are revoked and its email can be registered again. Raises P0002 for a missing or already deleted user.';

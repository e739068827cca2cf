-- ================================================================
-- Trusted devices: a login from one skips the second factor
-- ================================================================

CREATE TABLE authx.trusted_devices (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES authx.users (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL CONSTRAINT trusted_devices_token_hash_key UNIQUE
                 CHECK (octet_length(token_hash) = 32),
    fingerprint  text NOT NULL CHECK (length(fingerprint) BETWEEN 1 AND 512),
    name         text CHECK (length(name) <= 200),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX trusted_devices_user_idx ON authx.trusted_devices (user_id);
COMMENT ON TABLE authx.trusted_devices IS
'Devices a user chose to trust after passing MFA: sha256 of the axd_ device token (never the token), the app''s fingerprint of the device, a name for the user, until when the trust lasts.';
SELECT pg_catalog.pg_extension_config_dump('authx.trusted_devices', '');

CREATE FUNCTION authx.device_trust(user_id uuid, device_fingerprint text, name text DEFAULT NULL,
                                   ttl interval DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    u     authx.users;
    v_ttl interval := coalesce(device_trust.ttl, authx._setting_interval('authx.device_ttl', '30 days'));
    v_fp  text := btrim(device_fingerprint);
    t     record;
    v_id  uuid;
BEGIN
    PERFORM authx._require(device_trust.user_id, 'user_id');
    PERFORM authx._require(device_trust.device_fingerprint, 'device_fingerprint');
    IF length(v_fp) NOT BETWEEN 1 AND 512 OR length(device_trust.name) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'device_fingerprint must have 1-512 characters and name at most 200',
            HINT = 'Pass a stable identifier of the device, such as a hash the client keeps.';
    END IF;
    IF v_ttl <= interval '0' OR v_ttl > interval '1 year' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'ttl must be between 1 second and 1 year',
            HINT = 'Pass a ttl such as ''30 days'', or NULL for authx.device_ttl.';
    END IF;
    u := authx._user_lock(device_trust.user_id);
    IF u.status <> 'active' THEN
        RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = format('user "%s" is %s', u.id, u.status),
            HINT = 'Only active users can trust a device.';
    END IF;
    -- One trust per device: trusting it again replaces the old token.
    UPDATE authx.trusted_devices d SET revoked_at = now()
     WHERE d.user_id = u.id AND d.fingerprint = v_fp AND d.revoked_at IS NULL;
    t := authx._token_new('axd_', u.id);
    INSERT INTO authx.trusted_devices (user_id, token_hash, fingerprint, name, expires_at)
    VALUES (u.id, t.token_hash, v_fp, device_trust.name, clock_timestamp() + v_ttl)
    RETURNING id INTO v_id;
    PERFORM authx._audit_tx('device.trusted', 'medium', u.id,
                            jsonb_build_object('device_id', v_id, 'name', device_trust.name, 'ttl_s', extract(epoch FROM v_ttl)));
    RETURN t.token;
END
$$;
COMMENT ON FUNCTION authx.device_trust(uuid, text, text, interval) IS
'Trusts a device for ttl (default authx.device_ttl): returns an axd_ device token, shown once, that authx.login accepts to skip MFA for this user until it expires or is revoked. Call it after the user passed MFA and asked to be remembered. Trusting the same fingerprint again replaces the old token. Raises P0002 for a missing user, 55000 for an inactive one, 22023 for bad arguments.';

-- The device the token trusts for this user, touched; NULL if none.
CREATE FUNCTION authx._device_check(p_user_id uuid, p_token text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id uuid;
BEGIN
    UPDATE authx.trusted_devices d SET last_used_at = now()
     WHERE d.token_hash = authx._token_hash('axd_', p_token) AND d.user_id = p_user_id
       AND d.revoked_at IS NULL AND d.expires_at > clock_timestamp()
    RETURNING d.id INTO v_id;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION authx._device_check(uuid, text) IS
'Internal. The id of the live trusted device of the user whose token this is (last_used_at touched), else NULL.';

CREATE FUNCTION authx.devices(user_id uuid)
RETURNS TABLE (device_id uuid, name text, fingerprint text, created_at timestamptz, expires_at timestamptz,
               last_used_at timestamptz)
LANGUAGE sql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.id, d.name, d.fingerprint, d.created_at, d.expires_at, d.last_used_at
      FROM authx.trusted_devices d
     WHERE d.user_id = devices.user_id AND d.revoked_at IS NULL AND d.expires_at > clock_timestamp()
     ORDER BY d.created_at DESC;
$$;
COMMENT ON FUNCTION authx.devices(uuid) IS
'Lists the devices a user trusts now, newest first; never tokens or hashes.';

CREATE FUNCTION authx.device_revoke(device_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user uuid;
BEGIN
    UPDATE authx.trusted_devices d SET revoked_at = now()
     WHERE d.id = device_revoke.device_id AND d.revoked_at IS NULL
    RETURNING d.user_id INTO v_user;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM authx._audit_tx('device.revoked', 'medium', v_user, jsonb_build_object('device_id', device_revoke.device_id));
    RETURN true;
END
$$;
COMMENT ON FUNCTION authx.device_revoke(uuid) IS
'Stops trusting a device (its next login asks for MFA again). Returns false when unknown or already revoked.';

-- Internal: every trusted device of a user stops counting (second factor
-- removed, password reset).
CREATE FUNCTION authx._devices_revoke_all(p_user_id uuid, p_reason text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n integer;
BEGIN
    UPDATE authx.trusted_devices d SET revoked_at = now()
     WHERE d.user_id = p_user_id AND d.revoked_at IS NULL;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n > 0 THEN
        PERFORM authx._audit_tx('device.revoked_all', 'medium', p_user_id,
                                jsonb_build_object('count', v_n, 'reason', p_reason));
    END IF;
    RETURN v_n;
END
$$;
COMMENT ON FUNCTION authx._devices_revoke_all(uuid, text) IS
'Internal. Revokes every trusted device of a user; returns how many.';

-- Housekeeping called by maintenance_run.
CREATE FUNCTION authx._devices_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n bigint;
BEGIN
    DELETE FROM authx.trusted_devices d
     WHERE d.expires_at < p_now - interval '1 day' OR d.revoked_at < p_now - interval '1 day';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN jsonb_build_object('devices_purged', v_n);
END
$$;
COMMENT ON FUNCTION authx._devices_purge(timestamptz) IS 'Internal. Deletes trusted devices a day past expiry or revocation.';

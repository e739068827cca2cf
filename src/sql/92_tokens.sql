-- ================================================================
-- Access tokens (JWT, src/jwt.c) and refresh-token families
-- ================================================================

CREATE TABLE authx.signing_keys (
    kid            text PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9_-]{16}$'),
    alg            text NOT NULL CHECK (alg IN ('EdDSA', 'HS256')),
    public_key     bytea CHECK (octet_length(public_key) = 32),
    private_sealed bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    retired_at     timestamptz,
    verify_until   timestamptz,
    CHECK ((alg = 'EdDSA') = (public_key IS NOT NULL)),
    CHECK ((retired_at IS NULL) = (verify_until IS NULL))
);
COMMENT ON TABLE authx.signing_keys IS
'Keys that sign access tokens: Ed25519 (public key in the clear, 32-byte seed sealed under the authx key with the kid as associated data) or an HS256 secret (sealed). The newest unretired key of authx.token_alg signs; a retired key verifies until verify_until (its last token''s expiry). No role but the owner may read it.';
SELECT pg_catalog.pg_extension_config_dump('authx.signing_keys', '');

CREATE FUNCTION authx._signing_keys_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'authx_signing_keys_changed'
LANGUAGE C;
COMMENT ON FUNCTION authx._signing_keys_changed() IS
'Internal. Statement trigger: every backend''s copy of the signing keys is stale once this commits.';
CREATE TRIGGER signing_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
ON authx.signing_keys FOR EACH STATEMENT EXECUTE FUNCTION authx._signing_keys_changed();

CREATE TABLE authx.refresh_families (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES authx.users (id) ON DELETE CASCADE,
    session_id    uuid NOT NULL REFERENCES authx.sessions (id) ON DELETE CASCADE,
    generation    integer NOT NULL DEFAULT 0 CHECK (generation >= 0),
    head_hashes   bytea[] NOT NULL,
    parent_hashes bytea[] NOT NULL DEFAULT '{}',
    rotated_at    timestamptz,
    claims        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at    timestamptz,
    revoke_reason text
);
CREATE INDEX refresh_families_session_idx ON authx.refresh_families (session_id);
CREATE INDEX refresh_families_user_idx ON authx.refresh_families (user_id);
COMMENT ON TABLE authx.refresh_families IS
'One row per refresh-token family, however often it rotates: the generation, sha256 of its newest token(s) and of their parent (for the reuse grace), the custom claims its access tokens carry. Tokens name family and generation under a tag only authx can make, so an older token is known for reuse without being stored.';
SELECT pg_catalog.pg_extension_config_dump('authx.refresh_families', '');

CREATE FUNCTION authx._signing_key_new(alg text, OUT kid text, OUT public_key bytea, OUT private_sealed bytea)
RETURNS record
AS 'MODULE_PATHNAME', 'authx_signing_key_new'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authx._signing_key_new(text) IS
'Internal. A new signing key: random kid, Ed25519 key pair or HS256 secret, the private part sealed.';

CREATE FUNCTION authx._jwt_sign(claims jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'authx_jwt_sign'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authx._jwt_sign(jsonb) IS
'Internal. The claims as a JWS compact token signed with the newest current key of authx.token_alg.';

CREATE FUNCTION authx._ed25519(seed bytea, message bytea, OUT public_key bytea, OUT signature bytea)
RETURNS record
AS 'MODULE_PATHNAME', 'authx_ed25519'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION authx._ed25519(bytea, bytea) IS
'Internal. Ed25519 public key and signature from a 32-byte seed, for the RFC 8032/8037 test vectors.';

CREATE FUNCTION authx._refresh_token_new(family uuid, generation integer, user_id uuid DEFAULT NULL,
                                         OUT token text, OUT token_hash bytea)
RETURNS record
AS 'MODULE_PATHNAME', 'authx_refresh_token_new'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION authx._refresh_token_new(uuid, integer, uuid) IS
'Internal. A new refresh token of a family and generation (axr_, tagged under a key derived from the authx key; ending in the user''s bucket with authx.shard_tokens on) and its sha256.';

CREATE FUNCTION authx._refresh_token_parse(token text, OUT family uuid, OUT generation integer, OUT token_hash bytea)
RETURNS record
AS 'MODULE_PATHNAME', 'authx_refresh_token_parse'
LANGUAGE C STABLE;
COMMENT ON FUNCTION authx._refresh_token_parse(text) IS
'Internal. Family, generation and sha256 of a refresh token authx made; all NULL for anything else.';

CREATE FUNCTION authx.token_verify(access_token text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'authx_token_verify'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION authx.token_verify(text) IS
'The claims of a valid access token, or NULL when it is malformed, not signed by a key authx keeps (the header must be exactly the one authx writes for that key), expired (exp, nbf), of another issuer or audience (authx.token_issuer, authx.token_audience, when set), or names no live session (revoked, expired or idle). Never raises on bad input.';

CREATE FUNCTION authx.signing_key_secret(kid text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'authx_signing_key_secret'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION authx.signing_key_secret(text) IS
'The secret of an HS256 signing key, for a consumer that checks HS256 tokens itself (PostgREST jwt-secret). Superuser only; raises P0002 for an unknown kid.';

CREATE FUNCTION authx._b64url(p bytea)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT translate(encode(p, 'base64'), E'+/=\n', '-_') $$;
COMMENT ON FUNCTION authx._b64url(bytea) IS 'Internal. base64url without padding (RFC 4648 §5).';

-- A current key of the configured algorithm, made on first use.  The
-- advisory lock keeps two first issuers from making two.
CREATE FUNCTION authx._signing_key_ensure()
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alg text := current_setting('authx.token_alg');
    k record;
BEGIN
    IF EXISTS (SELECT 1 FROM authx.signing_keys s WHERE s.alg = v_alg AND s.retired_at IS NULL) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('authx.signing_keys'));
    IF EXISTS (SELECT 1 FROM authx.signing_keys s WHERE s.alg = v_alg AND s.retired_at IS NULL) THEN
        RETURN;
    END IF;
    k := authx._signing_key_new(v_alg);
    INSERT INTO authx.signing_keys (kid, alg, public_key, private_sealed)
    VALUES (k.kid, v_alg, k.public_key, k.private_sealed);
    PERFORM authx._audit_tx('token.key_created', 'medium', NULL, jsonb_build_object('kid', k.kid, 'alg', v_alg));
END
$$;
COMMENT ON FUNCTION authx._signing_key_ensure() IS
'Internal. Makes a signing key of authx.token_alg when none is current.';

CREATE FUNCTION authx.signing_key_rotate()
RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_alg text := current_setting('authx.token_alg');
    k record;
    v_old text[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('authx.signing_keys'));
    k := authx._signing_key_new(v_alg);
    -- The old keys verify for as long as a token they signed can live.
    WITH r AS (
        UPDATE authx.signing_keys s
           SET retired_at = clock_timestamp(),
               verify_until = clock_timestamp() + authx._setting_interval('authx.token_ttl', '15 minutes')
         WHERE s.retired_at IS NULL
        RETURNING s.kid)
    SELECT array_agg(r.kid ORDER BY r.kid) INTO v_old FROM r;
    INSERT INTO authx.signing_keys (kid, alg, public_key, private_sealed)
    VALUES (k.kid, v_alg, k.public_key, k.private_sealed);
    PERFORM authx._audit_tx('token.key_rotated', 'medium', NULL,
                            jsonb_build_object('kid', k.kid, 'alg', v_alg, 'retired', coalesce(v_old, '{}')));
    RETURN k.kid;
END
$$;
COMMENT ON FUNCTION authx.signing_key_rotate() IS
'Makes a new signing key of authx.token_alg and retires the current ones: they stay in authx.jwks() and keep verifying for authx.token_ttl, until every token they signed has expired. Returns the new kid.';

CREATE FUNCTION authx.jwks()
RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('keys', coalesce(jsonb_agg(
               jsonb_build_object('kty', 'OKP', 'crv', 'Ed25519', 'x', authx._b64url(k.public_key),
                                  'kid', k.kid, 'alg', 'EdDSA', 'use', 'sig')
               ORDER BY k.created_at DESC), '[]'::jsonb))
      FROM authx.signing_keys k
     WHERE k.alg = 'EdDSA' AND (k.verify_until IS NULL OR k.verify_until > now())
$$;
COMMENT ON FUNCTION authx.jwks() IS
'The public keys that verify access tokens, as a JWK set (RFC 7517, OKP/Ed25519 per RFC 8037): the current key and retired ones whose tokens may still be live. HS256 secrets are never listed.';

-- The claims every access token carries; custom claims cannot set these.
CREATE FUNCTION authx._reserved_claims()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['sub', 'iat', 'exp', 'nbf', 'jti', 'sid', 'iss', 'aud', 'role', 'roles', 'permissions'] $$;
COMMENT ON FUNCTION authx._reserved_claims() IS 'Internal. Claim names authx sets itself.';

CREATE FUNCTION authx._access_token(p_user_id uuid, p_session_id uuid, p_claims jsonb,
                                    OUT access_token text, OUT expires_at timestamptz)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now bigint := floor(extract(epoch FROM clock_timestamp()));
    v_exp bigint := v_now + extract(epoch FROM authx._setting_interval('authx.token_ttl', '15 minutes'))::bigint;
    v_iss text := current_setting('authx.token_issuer');
    v_aud text := current_setting('authx.token_audience');
    v     jsonb;
    v_roles text[];
    v_perms text[];
BEGIN
    PERFORM authx._signing_key_ensure();
    -- Roles held now (own and inherited) and what they grant, in one pass:
    -- the same answer as user_roles() and user_permissions().
    WITH RECURSIVE r (role, depth) AS (
        SELECT ur.role, 1
          FROM authx.user_roles ur JOIN authx.users u ON u.id = ur.user_id
         WHERE ur.user_id = p_user_id AND u.status IN ('active', 'locked')
           AND (ur.expires_at IS NULL OR ur.expires_at > clock_timestamp())
        UNION
        SELECT ro.parent, r.depth + 1
          FROM r JOIN authx.roles ro ON ro.name = r.role
         WHERE ro.parent IS NOT NULL AND r.depth < 64
    )
    SELECT coalesce((SELECT array_agg(DISTINCT x.role ORDER BY x.role) FROM r x), '{}'),
           coalesce((SELECT array_agg(DISTINCT rp.permission ORDER BY rp.permission)
                       FROM r x JOIN authx.role_permissions rp ON rp.role = x.role), '{}')
      INTO v_roles, v_perms;
    v := p_claims
         || jsonb_build_object(
                'role', current_setting('authx.token_role'), 'sub', p_user_id, 'sid', p_session_id, 'iat', v_now, 'exp', v_exp, 'jti', gen_random_uuid(),
                'roles', to_jsonb(v_roles), 'permissions', to_jsonb(v_perms));
    IF v_iss <> '' THEN
        v := v || jsonb_build_object('iss', v_iss);
    END IF;
    IF v_aud <> '' THEN
        v := v || jsonb_build_object('aud', v_aud);
    END IF;
    access_token := authx._jwt_sign(v);
    expires_at := to_timestamp(v_exp);
END
$$;
COMMENT ON FUNCTION authx._access_token(uuid, uuid, jsonb) IS
'Internal. Signs an access token for a user and session: the custom claims, role (authx.token_role), sub, sid, iat, exp, jti, roles, permissions, and iss/aud when set.';

CREATE FUNCTION authx.token_issue(user_id uuid, session_token text DEFAULT NULL, claims jsonb DEFAULT '{}')
RETURNS TABLE (access_token text, expires_at timestamptz, refresh_token text)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_claims jsonb := coalesce(token_issue.claims, '{}'::jsonb);
    v_sid    uuid;
    v_fam    uuid := gen_random_uuid();
    r        record;
    t        record;
    a        record;
BEGIN
    PERFORM authx._require(token_issue.user_id, 'user_id');
    IF jsonb_typeof(v_claims) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'claims must be a JSON object',
            HINT = 'Pass custom claims such as ''{"tenant": "acme"}''.';
    END IF;
    IF v_claims ?| authx._reserved_claims() THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'claims may not set ' || array_to_string(authx._reserved_claims(), ', '),
            HINT = 'authx sets these itself; name your claim differently.';
    END IF;
    IF octet_length(v_claims::text) > 4096 THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'claims must be at most 4096 bytes of JSON',
            HINT = 'Keep tokens small: put large data behind an id.';
    END IF;
    IF token_issue.session_token IS NULL THEN
        -- A session of its own: revoking it (or authx.sessions() "log out
        -- that device") ends the tokens too.
        r := authx._session_insert(token_issue.user_id, NULL, NULL, NULL);
        SELECT s.id INTO v_sid FROM authx.sessions s
         WHERE s.token_hash = authx._session_token_hash(r.session_token);
    ELSE
        SELECT s.id INTO v_sid FROM authx.sessions s
         WHERE s.token_hash = authx._session_token_hash(token_issue.session_token)
           AND s.user_id = token_issue.user_id AND s.revoked_at IS NULL AND s.expires_at > clock_timestamp()
           AND (s.idle_timeout = 0 OR s.last_seen_at + make_interval(secs => s.idle_timeout) > clock_timestamp())
           FOR SHARE;
        IF v_sid IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'session_token is not a live session of this user',
                HINT = 'Pass the token authx.login returned for this user, or NULL to start a session for the tokens.';
        END IF;
    END IF;
    t := authx._refresh_token_new(v_fam, 0, token_issue.user_id);
    INSERT INTO authx.refresh_families (id, user_id, session_id, head_hashes, claims)
    VALUES (v_fam, token_issue.user_id, v_sid, ARRAY[t.token_hash], v_claims);
    a := authx._access_token(token_issue.user_id, v_sid, v_claims);
    PERFORM authx._audit_tx('token.issued', 'info', token_issue.user_id,
                            jsonb_build_object('session_id', v_sid, 'family', v_fam));
    RETURN QUERY SELECT a.access_token, a.expires_at, t.token;
END
$$;
COMMENT ON FUNCTION authx.token_issue(uuid, text, jsonb) IS
'Issues a signed access token (JWT: custom claims, role, sub, sid, iat, exp, jti, roles, permissions, iss/aud when set) and the first refresh token of a new family, bound to the session given (which must be a live session of the user) or to a new session. Raises P0002 for a missing user, 55000 for a disabled one (no session_token given), 22023 for bad claims or a session_token that is not a live session of the user.';

-- The body of token_refresh (whose contract names an argument and a result
-- column alike, which PL/pgSQL cannot compile).
CREATE FUNCTION authx._token_refresh(p_token text, p_ip inet,
                                     OUT status text, OUT access_token text, OUT expires_at timestamptz,
                                     OUT refresh_token text)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p       record;
    f       authx.refresh_families;
    s       authx.sessions;
    t       record;
    a       record;
    v_now   timestamptz := clock_timestamp();
    v_grace interval := authx._setting_interval('authx.refresh_reuse_grace', '10 seconds');
    v_rl    authx.rate_limit_result;
    v_kind  text;
BEGIN
    IF p_ip IS NOT NULL AND authx.ip_blocked(p_ip) THEN
        RETURN QUERY SELECT 'blocked'::text, NULL::text, NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    p := authx._refresh_token_parse(p_token);
    IF p.family IS NOT NULL THEN
        SELECT * INTO f FROM authx.refresh_families rf WHERE rf.id = p.family FOR UPDATE;
    END IF;
    IF f.id IS NULL THEN
        RETURN QUERY SELECT 'invalid'::text, NULL::text, NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    IF f.revoked_at IS NOT NULL THEN
        RETURN QUERY SELECT 'revoked'::text, NULL::text, NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    SELECT * INTO s FROM authx.sessions x WHERE x.id = f.session_id;
    IF s.revoked_at IS NOT NULL THEN
        RETURN QUERY SELECT 'revoked'::text, NULL::text, NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    IF s.expires_at <= v_now
       OR (s.idle_timeout > 0 AND s.last_seen_at + make_interval(secs => s.idle_timeout) <= v_now) THEN
        RETURN QUERY SELECT 'expired'::text, NULL::text, NULL::timestamptz, NULL::text;
        RETURN;
    END IF;

    -- The newest token rotates.  Its parent, again, within the grace (a
    -- client that sent two refreshes at once) gets a sibling of the newest,
    -- up to 8 newest tokens at once; beyond that it is reuse.
    -- Any other token of the family was used before: someone holds a copy,
    -- so the family and its session end (RFC 9700 §4.14.2).
    -- A token of the newest or parent generation whose hash is not kept,
    -- or of a later one, was minted by a rotation that rolled back: it was
    -- never handed out, so it is invalid, not reuse.
    v_kind := CASE
        WHEN p.generation = f.generation AND p.token_hash = ANY (f.head_hashes) THEN 'rotate'
        WHEN p.generation = f.generation - 1 AND p.token_hash = ANY (f.parent_hashes)
             AND v_now < f.rotated_at + v_grace AND cardinality(f.head_hashes) < 8 THEN 'sibling'
        WHEN p.generation > f.generation
             OR (p.generation = f.generation AND p.token_hash <> ALL (f.head_hashes))
             OR (p.generation = f.generation - 1 AND p.token_hash <> ALL (f.parent_hashes)) THEN 'invalid'
        ELSE 'reused' END;
    IF v_kind = 'invalid' THEN
        RETURN QUERY SELECT 'invalid'::text, NULL::text, NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    IF v_kind = 'reused' THEN
        UPDATE authx.refresh_families rf SET revoked_at = now(), revoke_reason = 'reused' WHERE rf.id = f.id;
        UPDATE authx.sessions x SET revoked_at = now(), revoke_reason = 'refresh_reused'
         WHERE x.id = f.session_id AND x.revoked_at IS NULL;
        PERFORM authx.audit('token.refresh_reused', 'high', f.user_id, p_ip,
                            jsonb_build_object('family', f.id, 'session_id', f.session_id,
                                               'generation', p.generation, 'newest', f.generation));
        RETURN QUERY SELECT 'reused'::text, NULL::text, NULL::timestamptz, NULL::text;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM authx.rate_limit_policies rp WHERE rp.name = 'refresh') THEN
        v_rl := authx.rate_check('refresh', 'family:' || f.id);
        IF NOT v_rl.allowed THEN
            RETURN QUERY SELECT 'rate_limited'::text, NULL::text, v_now + v_rl.retry_after, NULL::text;
            RETURN;
        END IF;
    END IF;
    IF v_kind = 'rotate' THEN
        t := authx._refresh_token_new(f.id, f.generation + 1, f.user_id);
        UPDATE authx.refresh_families rf
           SET generation = f.generation + 1, parent_hashes = f.head_hashes,
               head_hashes = ARRAY[t.token_hash], rotated_at = v_now
         WHERE rf.id = f.id;
    ELSE
        t := authx._refresh_token_new(f.id, f.generation, f.user_id);
        UPDATE authx.refresh_families rf SET head_hashes = rf.head_hashes || t.token_hash WHERE rf.id = f.id;
    END IF;
    -- A refresh is activity: it keeps an idle-limited session alive.
    IF s.idle_timeout > 0
       AND s.last_seen_at <= v_now - authx._setting_interval('authx.touch_interval', '60 seconds') THEN
        UPDATE authx.sessions x SET last_seen_at = v_now, last_ip = coalesce(p_ip, x.last_ip)
         WHERE x.id = s.id;
    END IF;
    a := authx._access_token(f.user_id, f.session_id, f.claims);
    RETURN QUERY SELECT 'ok'::text, a.access_token, a.expires_at, t.token;
END
$$;
COMMENT ON FUNCTION authx._token_refresh(text, inet) IS 'Internal. The body of authx.token_refresh.';

CREATE FUNCTION authx.token_refresh(refresh_token text, ip inet DEFAULT NULL)
RETURNS TABLE (status text, access_token text, expires_at timestamptz, refresh_token text)
LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM authx._token_refresh($1, $2) $$;
COMMENT ON FUNCTION authx.token_refresh(text, inet) IS
'Rotates a refresh token: status ok with a new access token and the next refresh token; reused (a token of the family that was already used, other than the parent of the newest within authx.refresh_reuse_grace, which gets a sibling of the newest while there are fewer than 8: the family and its session are revoked and token.refresh_reused, high, is audited); revoked (family or session revoked); expired (session expired or idle); invalid (malformed, unknown, not made by authx, or minted by a rotation that rolled back); rate_limited (the refresh policy, per family; expires_at = when to retry; the token stays good); blocked (ip is blocked). Never raises on bad input.';

-- Housekeeping called by maintenance_run: families revoked a day ago
-- (expired sessions take theirs with them), keys no token can need.
CREATE FUNCTION authx._tokens_purge(p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_fam  bigint;
    v_keys bigint;
BEGIN
    DELETE FROM authx.refresh_families f
     WHERE f.id IN (SELECT o.id FROM authx.refresh_families o
                     WHERE o.revoked_at < p_now - interval '1 day' LIMIT 10000);
    GET DIAGNOSTICS v_fam = ROW_COUNT;
    -- Only when there is one: the delete would invalidate every backend's
    -- copy of the keys even when it removes nothing.
    v_keys := 0;
    IF EXISTS (SELECT 1 FROM authx.signing_keys k WHERE k.verify_until < p_now) THEN
        DELETE FROM authx.signing_keys k WHERE k.verify_until < p_now;
        GET DIAGNOSTICS v_keys = ROW_COUNT;
    END IF;
    RETURN jsonb_build_object('families_purged', v_fam, 'keys_purged', v_keys);
END
$$;
COMMENT ON FUNCTION authx._tokens_purge(timestamptz) IS
'Internal. Deletes refresh families revoked over a day ago and signing keys past verify_until.';

-- 18_tokens.sql — JWT access tokens, refresh-token families, signing keys,
-- trusted devices, email verification and password reset.
--
-- Covers:
--   * authx._ed25519 against RFC 8037 Appendix A (A.1: the public key x of
--     the private key d; A.4: the signature of the JWS signing input of
--     {"alg":"EdDSA"} and "Example of Ed25519 signing") and RFC 8032 section
--     7.1 TEST 1 (empty message) and TEST 2 (one byte), with a base64url
--     decoder in SQL; 22023 for a seed that is not 32 bytes;
--   * the claims of token_issue: sub, sid (the session made for the tokens,
--     listed by authx.sessions(), or the one given), iat now, exp = iat +
--     authx.token_ttl and expires_at = exp, a jti of its own per token,
--     role = authx.token_role (a custom "role" claim is refused, 22023),
--     roles (inherited ones included) and permissions from RBAC grants (a
--     time-bound grant gone once it ends), iss and aud only when
--     authx.token_issuer / token_audience are set; the header is the one
--     authx writes, {"alg":...,"kid":...,"typ":"JWT"};
--   * token_verify: the claims; NULL after session_revoke_id, user_disable,
--     exp (authx.token_ttl = 2 s, then pg_sleep); a retired key's tokens
--     verify until verify_until, then not (and the key leaves jwks);
--   * jwks: the current and retired EdDSA keys still verifying, newest
--     first, OKP/Ed25519 members only, never an HS256 key or a secret;
--     signing_key_rotate: a new kid, the old keys retired for
--     authx.token_ttl, audited;
--   * HS256 (authx.token_alg): its own key, made on first use; tokens
--     verify; with pgcrypto (when available) the signature is recomputed in
--     SQL with hmac(header.payload, signing_key_secret(kid), 'sha256'), and
--     a token re-signed that way with other claims is accepted, one signed
--     with another secret is not, nor an HS256 header naming an EdDSA kid
--     MACed with its public key (algorithm confusion);
--   * encryption at rest: no 32-byte window of an EdDSA key's
--     private_sealed yields its public key (the seed is not in the clear),
--     an HS256 key's private_sealed does not hold its secret; a sealed key
--     copied to another kid, a flipped byte, or a public key that does not
--     match make signing fail with XX001, and putting it back heals it
--     (within the transaction, a change to signing_keys reloads this
--     backend's copy);
--   * privileges: authx_app and authx_admin cannot read signing_keys,
--     refresh_families, user_tokens or trusted_devices, nor call
--     signing_key_secret; authx_app cannot rotate keys; the API works as
--     authx_app;
--   * refresh families: generation counts rotations, one row per family
--     after 20 of them (one head, one parent); the parent within the grace
--     gets a sibling, at most 8 tokens a generation (the next request is
--     reuse); an older token is reuse: family and session revoked (no
--     longer in authx.sessions()), the access tokens refused,
--     token.refresh_reused audited high with the generations; the refresh
--     rate policy answers rate_limited (expires_at ahead) without spending
--     the token, which rotates once the policy is gone;
--   * password reset: ok revokes sessions, refresh families and trusted
--     devices, clears the lockout, sets email_verified_at; the
--     password_reset policy: the 4th request for an email (and from an
--     address) in 15 minutes answers NULLs and is audited, without
--     replacing the token sent before;
--   * trusted devices: login with the device token skips MFA, audited as
--     login.succeeded with details mfa = trusted_device and the device id;
--     totp_disable revokes the devices (device.revoked_all, mfa_disabled);
--   * email verification: ok sets email_verified_at, once;
--   * maintenance (last: it makes audit partitions in this transaction):
--     authx._maintenance_run_at(now() + 2 days) reports tokens, devices and
--     user_tokens, purging a revoked family, ended devices and tokens and a
--     retired key, keeping live ones;
--   * after a transaction that rotated the signing key and signed with the
--     new key was rolled back, the backend signs with the committed key
--     again (its copy of the keys is not kept from an aborted change).
-- Everything is rolled back at the end (rate-limit buckets and queued audit
-- events outlive it, keyed by this run's users, emails and addresses).

-- The worker must not need to make today's partitions while this
-- transaction holds locks on audit_log (see 02_privileges).
DO $$ BEGIN PERFORM authx.maintenance_run(); END $$;

-- A rotation, signed with, then rolled back.
SELECT EXISTS (SELECT 1 FROM authx.signing_keys WHERE alg = 'EdDSA' AND retired_at IS NULL) AS had_key \gset
BEGIN;
SELECT authx.signing_key_rotate() AS phantom_kid \gset
SELECT authx._jwt_sign('{"exp": 1}') IS NOT NULL AS x \gset
ROLLBACK;

BEGIN;
SELECT plan(171);

-- ================================================================ the rolled-back rotation
-- Signed at once, before anything else could make this backend reload.
\if :had_key
SELECT authx._jwt_sign('{"exp": 1}') AS tok0 \gset
SELECT isnt(tok0_kid, :'phantom_kid', 'after a rolled-back signing_key_rotate, the rolled-back key does not sign')
  FROM (SELECT convert_from(decode(rpad(translate(split_part(:'tok0', '.', 1), '-_', '+/'),
                                        (length(split_part(:'tok0', '.', 1)) + 3) / 4 * 4, '='), 'base64'),
                            'UTF8')::jsonb->>'kid' AS tok0_kid) k;
SELECT ok(EXISTS (SELECT 1 FROM authx.signing_keys
                   WHERE position(kid IN convert_from(decode(rpad(translate(split_part(:'tok0', '.', 1), '-_', '+/'),
                                        (length(split_part(:'tok0', '.', 1)) + 3) / 4 * 4, '='), 'base64'), 'UTF8')) > 0),
          'tokens are signed with a key that exists (and is in jwks for everyone else)');
\else
SELECT skip('no EdDSA key was committed before this run: the rolled-back one could not be told apart', 2);
\endif
-- Whatever the above: a change to signing_keys in this transaction makes
-- this backend read them again.
UPDATE authx.signing_keys SET kid = kid WHERE false;

SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
UPDATE authx.rate_limit_policies SET max = 1000000 WHERE name IN ('login', 'mfa', 'refresh');
SET authx.mfa_max_failures = 1000;

-- This run's tag: emails and addresses of its own (rate-limit buckets
-- outlive the transaction).
SELECT left(replace(gen_random_uuid()::text, '-', ''), 10) AS run \gset
SELECT set_config('pgtap.run', :'run', false) AS x \gset

CREATE FUNCTION pg_temp.email(p_name text) RETURNS text LANGUAGE sql STABLE AS
$$ SELECT 'pgtap-tok-' || p_name || '-' || current_setting('pgtap.run') || '@example.com' $$;
CREATE FUNCTION pg_temp.mkuser(p_name text) RETURNS uuid LANGUAGE sql AS
$$ SELECT authx.user_create(pg_temp.email(p_name), 'tokens password ' || p_name) $$;
CREATE FUNCTION pg_temp.pw(p_name text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT 'tokens password ' || p_name $$;
-- An address of this run in 198.18.0.0/15.
CREATE FUNCTION pg_temp.ip(p_n int) RETURNS inet LANGUAGE sql STABLE AS
$$ SELECT ('198.' || (18 + p_n % 2) || '.' || ('x' || substr(current_setting('pgtap.run'), 1, 2))::bit(8)::int
           || '.' || (p_n * 7 + ('x' || substr(current_setting('pgtap.run'), 3, 2))::bit(8)::int) % 250 + 1)::inet $$;

-- base64url (RFC 4648 section 5) without padding, both ways.
CREATE FUNCTION pg_temp.b64d(p text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS
$$ SELECT decode(rpad(translate(p, '-_', '+/'), (length(p) + 3) / 4 * 4, '='), 'base64') $$;
CREATE FUNCTION pg_temp.b64e(p bytea) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS
$$ SELECT translate(encode(p, 'base64'), E'+/=\n', '-_') $$;
-- A token's segment n, header and claims.
CREATE FUNCTION pg_temp.seg(p_tok text, p_n int) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS
$$ SELECT split_part(p_tok, '.', p_n) $$;
CREATE FUNCTION pg_temp.hdr(p_tok text) RETURNS jsonb LANGUAGE sql IMMUTABLE STRICT AS
$$ SELECT convert_from(pg_temp.b64d(pg_temp.seg(p_tok, 1)), 'UTF8')::jsonb $$;
CREATE FUNCTION pg_temp.claims(p_tok text) RETURNS jsonb LANGUAGE sql IMMUTABLE STRICT AS
$$ SELECT convert_from(pg_temp.b64d(pg_temp.seg(p_tok, 2)), 'UTF8')::jsonb $$;
CREATE FUNCTION pg_temp.kid(p_tok text) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS
$$ SELECT pg_temp.hdr(p_tok)->>'kid' $$;
-- token_refresh's status.
CREATE FUNCTION pg_temp.refresh(p_tok text) RETURNS text LANGUAGE sql AS
$$ SELECT status FROM authx.token_refresh(p_tok) $$;
-- The family of a refresh token (by its hash among the heads).
CREATE FUNCTION pg_temp.family(p_tok text) RETURNS uuid LANGUAGE sql AS
$$ SELECT id FROM authx.refresh_families WHERE sha256(convert_to(p_tok, 'UTF8')) = ANY (head_hashes) $$;
-- RFC 4648 base32 (no padding) to bytes; TOTP enabled for a user.
CREATE FUNCTION pg_temp.b32d(p text) RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    acc   bigint := 0;
    nbits int := 0;
    v     int;
    out   bytea := '';
    c     text;
BEGIN
    FOREACH c IN ARRAY regexp_split_to_array(rtrim(p, '='), '') LOOP
        v := strpos('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', c) - 1;
        acc := (acc << 5) | v;
        nbits := nbits + 5;
        IF nbits >= 8 THEN
            out := out || set_byte('\x00'::bytea, 0, ((acc >> (nbits - 8)) & 255)::int);
            nbits := nbits - 8;
            acc := acc & ((1::bigint << nbits) - 1);
        END IF;
    END LOOP;
    RETURN out;
END
$$;
CREATE FUNCTION pg_temp.enable_totp(p_user uuid) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_secret text;
BEGIN
    SELECT secret INTO v_secret FROM authx.totp_enroll(p_user);
    RETURN authx.totp_confirm(p_user, authx._totp_code(pg_temp.b32d(v_secret), clock_timestamp()));
END
$$;

SELECT pg_temp.mkuser('a') AS u_a, pg_temp.mkuser('b') AS u_b, pg_temp.mkuser('rbac') AS u_rbac,
       pg_temp.mkuser('dis') AS u_dis, pg_temp.mkuser('fam') AS u_fam, pg_temp.mkuser('pr') AS u_pr,
       pg_temp.mkuser('prl') AS u_prl, pg_temp.mkuser('dev') AS u_dev, pg_temp.mkuser('ev') AS u_ev,
       pg_temp.mkuser('app') AS u_app, pg_temp.mkuser('mt') AS u_mt \gset

-- ================================================================ RFC 8037 / RFC 8032 vectors
-- RFC 8037 A.1: d and x of the example Ed25519 key (base64url).
SELECT pg_temp.b64d('nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A') AS rfc_d \gset
SELECT is(encode(:'rfc_d'::bytea, 'hex'), '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
          'the base64url decoder: RFC 8037 A.1 d is RFC 8032 TEST 1''s secret key');
SELECT is((authx._ed25519(:'rfc_d', '')).public_key, pg_temp.b64d('11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo'),
          'RFC 8037 A.1: the public key x of d');
SELECT is(convert_from(pg_temp.b64d('eyJhbGciOiJFZERTQSJ9'), 'UTF8') || ' ' ||
          convert_from(pg_temp.b64d('RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc'), 'UTF8'),
          '{"alg":"EdDSA"} Example of Ed25519 signing', 'RFC 8037 A.4: the protected header and the payload');
SELECT is(pg_temp.b64e((authx._ed25519(:'rfc_d',
              convert_to('eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc', 'UTF8'))).signature),
          'hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg',
          'RFC 8037 A.4: the signature of the JWS signing input');
SELECT is((SELECT ARRAY[public_key, signature]
             FROM authx._ed25519('\x9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', '')),
          ARRAY['\xd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a'::bytea,
                '\xe5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'::bytea],
          'RFC 8032 7.1 TEST 1: public key and signature of the empty message');
SELECT is((SELECT ARRAY[public_key, signature]
             FROM authx._ed25519('\x4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb', '\x72')),
          ARRAY['\x3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c'::bytea,
                '\x92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'::bytea],
          'RFC 8032 7.1 TEST 2: public key and signature of 0x72');
SELECT throws_ok($$SELECT authx._ed25519('\x00', '')$$, '22023', 'an Ed25519 seed has 32 bytes', '_ed25519: 1-byte seed');
SELECT throws_ok($$SELECT authx._ed25519(decode(repeat('00', 33), 'hex'), '')$$, '22023', NULL, '_ed25519: 33-byte seed');

-- ================================================================ a fresh key for this run
SELECT authx.signing_key_rotate() AS k1 \gset
SELECT is((SELECT count(*)::int FROM authx.signing_keys WHERE retired_at IS NULL), 1,
          'signing_key_rotate: one current key, the new one');
SELECT ok(:'k1' ~ '^[A-Za-z0-9_-]{16}$' AND EXISTS (SELECT 1 FROM authx.signing_keys WHERE kid = :'k1' AND alg = 'EdDSA'),
          'it returns the new kid (16 base64url characters), of authx.token_alg (EdDSA)');
SELECT is((SELECT count(*)::int FROM authx.audit_log WHERE event_type = 'token.key_rotated' AND details->>'kid' = :'k1'),
          1, 'token.key_rotated is audited with the new kid');

-- ================================================================ claims
SET authx.token_ttl = '10min';
SELECT access_token AS t1, expires_at AS t1_exp, refresh_token AS r1 FROM authx.token_issue(:'u_a') \gset
SELECT pg_temp.claims(:'t1') AS c1 \gset
SELECT is(pg_temp.hdr(:'t1'), jsonb_build_object('alg', 'EdDSA', 'kid', :'k1', 'typ', 'JWT'), 'header: alg, kid, typ');
SELECT is(convert_from(pg_temp.b64d(pg_temp.seg(:'t1', 1)), 'UTF8'), format('{"alg":"EdDSA","kid":"%s","typ":"JWT"}', :'k1'),
          'header: byte for byte the one authx writes');
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'c1'::jsonb) k),
          ARRAY['exp', 'iat', 'jti', 'permissions', 'role', 'roles', 'sid', 'sub'],
          'claims: sub, sid, iat, exp, jti, role, roles, permissions (no iss, no aud by default)');
SELECT is(:'c1'::jsonb->>'sub', :'u_a', 'sub is the user');
SELECT is((:'c1'::jsonb->>'sid')::uuid, (SELECT session_id FROM authx.sessions(:'u_a')),
          'sid is the session made for the tokens, listed by authx.sessions()');
SELECT ok(abs((:'c1'::jsonb->>'iat')::numeric - extract(epoch FROM clock_timestamp())) < 5, 'iat is now');
SELECT is((:'c1'::jsonb->>'exp')::bigint - (:'c1'::jsonb->>'iat')::bigint, 600::bigint, 'exp = iat + authx.token_ttl');
SELECT is(:'t1_exp'::timestamptz, to_timestamp((:'c1'::jsonb->>'exp')::bigint), 'expires_at is exp');
SELECT is(:'c1'::jsonb->>'role', 'authenticated', 'role: authx.token_role (authenticated by default)');
SELECT is(authx.token_verify(:'t1'), :'c1'::jsonb, 'token_verify answers the claims');
RESET authx.token_ttl;
CREATE TEMP TABLE jtis AS
SELECT pg_temp.claims(t.access_token)->>'jti' AS jti FROM generate_series(1, 5) n,
       LATERAL authx.token_issue(CASE WHEN n > 0 THEN :'u_a'::uuid END) t;
SELECT is((SELECT count(DISTINCT jti)::int FROM jtis WHERE jti ~ '^[0-9a-f-]{36}$'), 5, 'five tokens, five jtis');
-- A session given; custom claims; the role claim.
SELECT session_token AS s_a FROM authx.login(pg_temp.email('a'), pg_temp.pw('a'), pg_temp.ip(1)) \gset
SELECT access_token AS t2 FROM authx.token_issue(:'u_a', :'s_a', '{"tenant": "acme"}') \gset
SELECT is((pg_temp.claims(:'t2')->>'sid')::uuid, (SELECT session_id FROM authx.session_info(:'s_a')),
          'with a session token: sid is that session');
SELECT is(pg_temp.claims(:'t2')->>'tenant', 'acme', 'custom claims are carried');
SELECT throws_ok(format('SELECT authx.token_issue(%L, %L, ''{"role": "postgres"}'')', :'u_a', :'s_a'), '22023', NULL,
                 'a custom role claim is refused: no token for a more powerful database role');
SET authx.token_role = 'api_user';
SET authx.token_issuer = 'https://issuer.example';
SET authx.token_audience = 'my-api';
SELECT access_token AS t3 FROM authx.token_issue(:'u_a') \gset
RESET authx.token_role;
RESET authx.token_issuer;
RESET authx.token_audience;
SELECT is(pg_temp.claims(:'t3')->>'role', 'api_user', 'role follows authx.token_role');
SELECT is(pg_temp.claims(:'t3')->>'iss', 'https://issuer.example', 'iss from authx.token_issuer');
SELECT is(pg_temp.claims(:'t3')->>'aud', 'my-api', 'aud from authx.token_audience');
-- RBAC.
SELECT authx.role_create('tap18_parent') AS x \gset
SELECT authx.role_create('tap18_child', 'tap18_parent') AS x \gset
SELECT authx.role_create('tap18_temp') AS x \gset
SELECT authx.role_grant('tap18_parent', 'docs:read') AS x \gset
SELECT authx.role_grant('tap18_child', 'docs:write') AS x \gset
SELECT authx.role_grant('tap18_temp', 'reports:read') AS x \gset
SELECT access_token AS t_r0 FROM authx.token_issue(:'u_rbac') \gset
SELECT is(pg_temp.claims(:'t_r0')->'roles', '[]'::jsonb, 'no grants: roles []');
SELECT is(pg_temp.claims(:'t_r0')->'permissions', '[]'::jsonb, 'no grants: permissions []');
SELECT authx.user_grant(:'u_rbac', 'tap18_child') AS x \gset
SELECT authx.user_grant(:'u_rbac', 'tap18_temp', clock_timestamp() + interval '1.5 seconds') AS x \gset
SELECT access_token AS t_r1 FROM authx.token_issue(:'u_rbac') \gset
SELECT is(pg_temp.claims(:'t_r1')->'roles', '["tap18_child", "tap18_parent", "tap18_temp"]'::jsonb,
          'roles: the grants and the roles they inherit');
SELECT is(pg_temp.claims(:'t_r1')->'permissions', '["docs:read", "docs:write", "reports:read"]'::jsonb,
          'permissions: the effective ones');

-- ================================================================ token_verify: the session, the user, exp
SELECT ok(authx.token_verify(:'t2') IS NOT NULL, 'a token of a live session verifies');
SELECT ok(authx.session_revoke_id((pg_temp.claims(:'t2')->>'sid')::uuid), 'session_revoke_id');
SELECT is(authx.token_verify(:'t2'), NULL, 'after session_revoke_id: NULL');
SELECT access_token AS t_dis FROM authx.token_issue(:'u_dis') \gset
SELECT ok(authx.token_verify(:'t_dis') IS NOT NULL, 'before user_disable: verifies');
SELECT authx.user_disable(:'u_dis') AS x \gset
SELECT is(authx.token_verify(:'t_dis'), NULL, 'after user_disable: NULL');
SELECT authx.user_enable(:'u_dis') AS x \gset
SELECT is(authx.token_verify(:'t_dis'), NULL, 'and still NULL once enabled again');
SET authx.token_ttl = 2;
SELECT access_token AS t_short FROM authx.token_issue(:'u_a') \gset
RESET authx.token_ttl;
SELECT ok(authx.token_verify(:'t_short') IS NOT NULL, 'authx.token_ttl = 2 s: verifies at once');
SELECT pg_sleep(2.1) AS x \gset
SELECT is(authx.token_verify(:'t_short'), NULL, 'and not after exp');
SELECT access_token AS t_r2 FROM authx.token_issue(:'u_rbac') \gset
SELECT is(pg_temp.claims(:'t_r2')->'roles', '["tap18_child", "tap18_parent"]'::jsonb,
          'a time-bound grant that ended is no longer in roles');
SELECT is(pg_temp.claims(:'t_r2')->'permissions', '["docs:read", "docs:write"]'::jsonb, 'nor its permissions');

-- ================================================================ rotation, verify_until, jwks
SELECT authx.signing_key_rotate() AS k2 \gset
SELECT access_token AS t_k2 FROM authx.token_issue(:'u_a') \gset
SELECT is(pg_temp.kid(:'t_k2'), :'k2', 'after signing_key_rotate the new key signs');
SELECT ok(authx.token_verify(:'t1') IS NOT NULL, 'a token of the retired key still verifies');
SELECT ok((SELECT retired_at IS NOT NULL AND verify_until > clock_timestamp() + interval '14 minutes'
                  AND verify_until <= clock_timestamp() + interval '15 minutes'
             FROM authx.signing_keys WHERE kid = :'k1'), 'the retired key verifies for authx.token_ttl (15 min)');
SELECT is((SELECT details->'retired' FROM authx.audit_log WHERE event_type = 'token.key_rotated' AND details->>'kid' = :'k2'),
          jsonb_build_array(:'k1'), 'token.key_rotated names the keys it retired');
SELECT is((SELECT array_agg(k->>'kid' ORDER BY o) FROM jsonb_array_elements(authx.jwks()->'keys') WITH ORDINALITY j(k, o)
            WHERE k->>'kid' IN (:'k1', :'k2')), ARRAY[:'k2', :'k1'], 'jwks: the current and the retired key, newest first');
SELECT is((SELECT pg_temp.b64d(k->>'x') FROM jsonb_array_elements(authx.jwks()->'keys') k WHERE k->>'kid' = :'k1'),
          (SELECT public_key FROM authx.signing_keys WHERE kid = :'k1'), 'jwks: x is the public key');
UPDATE authx.signing_keys SET verify_until = now() - interval '1 second' WHERE kid = :'k1';
SELECT is(authx.token_verify(:'t1'), NULL, 'once verify_until has passed: NULL');
SELECT ok(NOT authx.jwks()::text LIKE '%' || :'k1' || '%', 'and the key is no longer in jwks');
SELECT ok(authx.token_verify(:'t_k2') IS NOT NULL, 'the current key''s tokens verify');

-- ================================================================ HS256
SET authx.token_alg = 'HS256';
SELECT access_token AS t_hs, refresh_token AS r_hs FROM authx.token_issue(:'u_b') \gset
SELECT pg_temp.kid(:'t_hs') AS k_hs \gset
SELECT is(pg_temp.hdr(:'t_hs'), jsonb_build_object('alg', 'HS256', 'kid', :'k_hs', 'typ', 'JWT'), 'HS256: header');
SELECT ok((SELECT alg = 'HS256' AND public_key IS NULL AND retired_at IS NULL FROM authx.signing_keys WHERE kid = :'k_hs'),
          'HS256: a key of its own, made on first use, no public key');
SELECT is((SELECT count(*)::int FROM authx.audit_log WHERE event_type = 'token.key_created' AND details->>'kid' = :'k_hs'), 1,
          'token.key_created audited');
SELECT ok(authx.token_verify(:'t_hs') IS NOT NULL, 'HS256 tokens verify');
SELECT is(octet_length(authx.signing_key_secret(:'k_hs')), 32, 'signing_key_secret: 32 bytes');
SELECT authx.token_verify(:'t_k2') IS NOT NULL AS ed_ok \gset
SELECT ok(:'ed_ok', 'EdDSA tokens still verify with HS256 the signing algorithm');
SELECT ok(NOT authx.jwks()::text LIKE '%' || :'k_hs' || '%' AND NOT authx.jwks()::text LIKE '%HS256%',
          'jwks never lists an HS256 key');
SELECT is((SELECT array_agg(DISTINCT (SELECT string_agg(m, ',' ORDER BY m) FROM jsonb_object_keys(k) m)) ||
                  array_agg(DISTINCT k->>'kty' || '/' || (k->>'crv') || '/' || (k->>'alg') || '/' || (k->>'use'))
             FROM jsonb_array_elements(authx.jwks()->'keys') k),
          ARRAY['alg,crv,kid,kty,use,x', 'OKP/Ed25519/EdDSA/sig'], 'jwks: OKP/Ed25519 public members only');
SELECT set_eq($$SELECT k->>'kid' FROM jsonb_array_elements(authx.jwks()->'keys') k$$,
              $$SELECT kid FROM authx.signing_keys WHERE alg = 'EdDSA' AND (verify_until IS NULL OR verify_until > now())$$,
              'jwks: exactly the EdDSA keys current or still verifying');
-- HMAC-SHA-256 computed independently (pgcrypto), when available.
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto') AS have_pgcrypto \gset
\if :have_pgcrypto
CREATE SCHEMA tap18_crypto;
CREATE EXTENSION pgcrypto SCHEMA tap18_crypto;
CREATE FUNCTION pg_temp.hs_sign(p_header text, p_claims jsonb, p_key bytea) RETURNS text LANGUAGE sql AS $$
    SELECT s || '.' || pg_temp.b64e(tap18_crypto.hmac(convert_to(s, 'UTF8'), p_key, 'sha256'))
      FROM (SELECT p_header || '.' || pg_temp.b64e(convert_to(p_claims::text, 'UTF8')) AS s) x
$$;
SELECT is(pg_temp.b64e(tap18_crypto.hmac(convert_to(pg_temp.seg(:'t_hs', 1) || '.' || pg_temp.seg(:'t_hs', 2), 'UTF8'),
                                         authx.signing_key_secret(:'k_hs'), 'sha256')),
          pg_temp.seg(:'t_hs', 3), 'HS256: the signature is HMAC-SHA-256 of header.payload under signing_key_secret');
SELECT is(authx.token_verify(pg_temp.hs_sign(pg_temp.seg(:'t_hs', 1),
                                             pg_temp.claims(:'t_hs') || '{"tenant": "signed in SQL"}',
                                             authx.signing_key_secret(:'k_hs')))->>'tenant',
          'signed in SQL', 'a token MACed in SQL with the secret is accepted, with its claims');
SELECT is(authx.token_verify(pg_temp.hs_sign(pg_temp.seg(:'t_hs', 1), pg_temp.claims(:'t_hs'),
                                             tap18_crypto.digest('another secret', 'sha256'))),
          NULL, 'MACed with another secret: NULL');
SELECT is(authx.token_verify(pg_temp.hs_sign(pg_temp.b64e(convert_to(format('{"alg":"HS256","kid":"%s","typ":"JWT"}', :'k2'), 'UTF8')),
                                             pg_temp.claims(:'t_k2'),
                                             (SELECT public_key FROM authx.signing_keys WHERE kid = :'k2'))),
          NULL, 'algorithm confusion: HS256 naming an EdDSA kid, MACed with its public key: NULL');
\else
SELECT skip('pgcrypto is not available: no independent HMAC', 4);
\endif
-- A rotation with HS256 the algorithm retires every current key; EdDSA
-- signing makes a new EdDSA key on first use.
SELECT authx.signing_key_rotate() AS k_hs2 \gset
SELECT is((SELECT array_agg(kid ORDER BY kid) FROM authx.signing_keys WHERE retired_at IS NULL), ARRAY[:'k_hs2'],
          'signing_key_rotate with HS256: the new HS256 key is the only current one');
SELECT ok(authx.token_verify(:'t_hs') IS NOT NULL AND authx.token_verify(:'t_k2') IS NOT NULL,
          'tokens of both retired keys still verify');
RESET authx.token_alg;
SELECT access_token AS t_k3 FROM authx.token_issue(:'u_a') \gset
SELECT pg_temp.kid(:'t_k3') AS k3 \gset
SELECT ok((SELECT alg = 'EdDSA' AND retired_at IS NULL FROM authx.signing_keys WHERE kid = :'k3') AND :'k3' <> :'k2',
          'back to EdDSA: a new EdDSA key made on first use');
SELECT is((SELECT array_agg(k->>'kid' ORDER BY o) FROM jsonb_array_elements(authx.jwks()->'keys') WITH ORDINALITY j(k, o)
            WHERE k->>'kid' IN (:'k2', :'k3', :'k_hs', :'k_hs2')), ARRAY[:'k3', :'k2'],
          'jwks: the new EdDSA key and the retired one, no HS256 key');
SELECT throws_ok(format('SELECT authx.signing_key_secret(%L)', :'k3'), 'P0002', NULL,
                 'signing_key_secret of an EdDSA key: P0002');

-- ================================================================ encryption at rest
SELECT is((SELECT octet_length(private_sealed) FROM authx.signing_keys WHERE kid = :'k3'), 73,
          'EdDSA: private_sealed is 73 bytes (version, nonce, 32-byte seed sealed, tag)');
SELECT is((SELECT count(*)::int FROM authx.signing_keys k, generate_series(1, octet_length(k.private_sealed) - 31) i
            WHERE k.kid = :'k3' AND (authx._ed25519(substr(k.private_sealed, i, 32), '')).public_key = k.public_key),
          0, 'EdDSA: no 32 bytes of private_sealed are a seed of the public key (the seed is not in the clear)');
SELECT is((SELECT position(authx.signing_key_secret(:'k_hs') IN private_sealed) FROM authx.signing_keys WHERE kid = :'k_hs'),
          0, 'HS256: private_sealed does not hold the secret');
SELECT ok((SELECT NOT (s::text LIKE '%' || encode(authx.signing_key_secret(:'k_hs'), 'hex') || '%')
             FROM authx.signing_keys s WHERE kid = :'k_hs'), 'nor does the row as text');
-- Tampering: a new key, not yet opened by this backend.
SELECT authx.signing_key_rotate() AS k4 \gset
SELECT private_sealed AS k4_sealed, public_key AS k4_pk FROM authx.signing_keys WHERE kid = :'k4' \gset
UPDATE authx.signing_keys SET private_sealed = (SELECT private_sealed FROM authx.signing_keys WHERE kid = :'k3')
 WHERE kid = :'k4';
SELECT throws_ok(format('SELECT authx.token_issue(%L)', :'u_a'), 'XX001',
                 format('authx signing key "%s" does not open with this server''s key file', :'k4'),
                 'another kid''s sealed key: signing fails with XX001');
UPDATE authx.signing_keys SET private_sealed = set_byte(:'k4_sealed'::bytea, 40, get_byte(:'k4_sealed'::bytea, 40) # 1)
 WHERE kid = :'k4';
SELECT throws_ok(format('SELECT authx.token_issue(%L)', :'u_a'), 'XX001', NULL, 'a flipped bit: XX001');
UPDATE authx.signing_keys SET private_sealed = :'k4_sealed',
                              public_key = (SELECT public_key FROM authx.signing_keys WHERE kid = :'k3')
 WHERE kid = :'k4';
SELECT throws_ok(format('SELECT authx.token_issue(%L)', :'u_a'), 'XX001',
                 format('authx signing key "%s" does not match its public key', :'k4'),
                 'a public key that is not the seed''s: XX001');
UPDATE authx.signing_keys SET public_key = :'k4_pk' WHERE kid = :'k4';
SELECT access_token AS t_k4 FROM authx.token_issue(:'u_a') \gset
SELECT ok(pg_temp.kid(:'t_k4') = :'k4' AND authx.token_verify(:'t_k4') IS NOT NULL, 'put back: it signs again');

-- ================================================================ privileges
SET ROLE authx_app;
SELECT throws_ok('SELECT count(*) FROM authx.signing_keys', '42501', NULL, 'app: cannot read signing_keys');
SELECT throws_ok('SELECT count(*) FROM authx.refresh_families', '42501', NULL, 'app: cannot read refresh_families');
SELECT throws_ok('SELECT count(*) FROM authx.user_tokens', '42501', NULL, 'app: cannot read user_tokens');
SELECT throws_ok('SELECT count(*) FROM authx.trusted_devices', '42501', NULL, 'app: cannot read trusted_devices');
SELECT throws_ok(format('SELECT authx.signing_key_secret(%L)', :'k_hs'), '42501', NULL, 'app: cannot call signing_key_secret');
SELECT throws_ok('SELECT authx.signing_key_rotate()', '42501', NULL, 'app: cannot call signing_key_rotate');
SELECT throws_ok($$SELECT authx._jwt_sign('{}')$$, '42501', NULL, 'app: cannot call _jwt_sign');
SELECT throws_ok('SET authx.token_role = ''postgres''', '42501', NULL, 'app: cannot set authx.token_role');
-- The API, as the application.
SELECT access_token AS t_app, refresh_token AS r_app FROM authx.token_issue(:'u_app', NULL, '{"tenant": "app"}') \gset
SELECT is(authx.token_verify(:'t_app')->>'tenant', 'app', 'app: token_issue, token_verify');
SELECT is(pg_temp.refresh(:'r_app'), 'ok', 'app: token_refresh');
SELECT ok(jsonb_array_length(authx.jwks()->'keys') >= 1, 'app: jwks');
SELECT ok(authx.device_trust(:'u_app', 'app-device') ~ '^axd_[A-Za-z0-9_-]{43}$', 'app: device_trust');
SELECT ok(authx.device_revoke((SELECT device_id FROM authx.devices(:'u_app'))), 'app: devices, device_revoke');
SELECT ok((SELECT token ~ '^axv_' FROM authx.email_verification_issue(:'u_app')), 'app: email_verification_issue');
SELECT ok((SELECT token ~ '^axp_' FROM authx.password_reset_issue(pg_temp.email('app'))), 'app: password_reset_issue');
RESET ROLE;
SET ROLE authx_admin;
SELECT throws_ok('SELECT count(*) FROM authx.signing_keys', '42501', NULL, 'admin: cannot read signing_keys');
SELECT throws_ok('SELECT count(*) FROM authx.refresh_families', '42501', NULL, 'admin: cannot read refresh_families');
SELECT throws_ok('SELECT count(*) FROM authx.user_tokens', '42501', NULL, 'admin: cannot read user_tokens');
SELECT throws_ok('SELECT count(*) FROM authx.trusted_devices', '42501', NULL, 'admin: cannot read trusted_devices');
SELECT throws_ok(format('SELECT authx.signing_key_secret(%L)', :'k_hs'), '42501', NULL, 'admin: cannot call signing_key_secret');
SELECT ok(authx.signing_key_rotate() ~ '^[A-Za-z0-9_-]{16}$', 'admin: signing_key_rotate');
RESET ROLE;

-- ================================================================ refresh families
SELECT access_token AS f_at0, refresh_token AS f0 FROM authx.token_issue(:'u_fam') \gset
SELECT pg_temp.family(:'f0') AS fam \gset
SELECT (pg_temp.claims(:'f_at0')->>'sid')::uuid AS fam_sid \gset
SELECT is((SELECT ARRAY[generation, cardinality(head_hashes), cardinality(parent_hashes)]
             FROM authx.refresh_families WHERE id = :'fam'), ARRAY[0, 1, 0], 'a new family: generation 0, one head');
SELECT is((SELECT session_id FROM authx.refresh_families WHERE id = :'fam'), :'fam_sid'::uuid,
          'bound to the session of its access tokens');
CREATE TEMP TABLE fam_tokens (generation int PRIMARY KEY, token text NOT NULL, access text);
INSERT INTO fam_tokens VALUES (0, :'f0', :'f_at0');
CREATE FUNCTION pg_temp.rotate_n(p_n int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    v_tok  text;
    v_gen  int;
    r      record;
    v_st   text[] := '{}';
BEGIN
    FOR i IN 1 .. p_n LOOP
        SELECT generation, token INTO v_gen, v_tok FROM fam_tokens ORDER BY generation DESC LIMIT 1;
        SELECT * INTO r FROM authx.token_refresh(v_tok);
        v_st := v_st || r.status;
        INSERT INTO fam_tokens VALUES (v_gen + 1, r.refresh_token, r.access_token);
    END LOOP;
    RETURN v_st;
END
$$;
SELECT is(pg_temp.rotate_n(20), array_fill('ok'::text, ARRAY[20]), 'twenty rotations: ok each time');
SELECT is((SELECT generation FROM authx.refresh_families WHERE id = :'fam'), 20, 'generation counts them: 20');
SELECT is((SELECT count(*)::int FROM authx.refresh_families WHERE user_id = :'u_fam'), 1, 'one row per family');
SELECT is((SELECT ARRAY[cardinality(head_hashes), cardinality(parent_hashes)] FROM authx.refresh_families WHERE id = :'fam'),
          ARRAY[1, 1], 'one head, one parent');
SELECT ok((SELECT head_hashes[1] = sha256(convert_to(t.token, 'UTF8')) FROM authx.refresh_families, fam_tokens t
            WHERE id = :'fam' AND t.generation = 20), 'the head is the 20th token');
SELECT is((SELECT count(DISTINCT token)::int FROM fam_tokens), 21, 'twenty-one distinct tokens');
SELECT ok((SELECT bool_and(pg_temp.claims(access)->>'sid' = :'fam_sid') FROM fam_tokens),
          'all access tokens name the family''s session');
-- Reuse of an old one.
SELECT is(pg_temp.refresh((SELECT token FROM fam_tokens WHERE generation = 5)), 'reused', 'the 5th token again: reused');
SELECT is((SELECT revoke_reason FROM authx.refresh_families WHERE id = :'fam'), 'reused', 'the family is revoked');
SELECT is((SELECT revoke_reason FROM authx.sessions WHERE id = :'fam_sid'), 'refresh_reused', 'and its session');
SELECT is_empty(format('SELECT 1 FROM authx.sessions(%L) WHERE session_id = %L', :'u_fam', :'fam_sid'),
                'authx.sessions() no longer lists it');
SELECT is(pg_temp.refresh((SELECT token FROM fam_tokens WHERE generation = 20)), 'revoked', 'the newest token: revoked');
SELECT is(authx.token_verify((SELECT access FROM fam_tokens WHERE generation = 20)), NULL, 'its access token: NULL');
SELECT authx.audit_flush('30 seconds') AS f \gset
SELECT results_eq(format($$SELECT severity::text, user_id, (details->>'generation')::int, (details->>'newest')::int,
                                  (details->>'session_id')::uuid
                             FROM authx.audit_log WHERE event_type = 'token.refresh_reused' AND details->>'family' = %L$$,
                         :'fam'),
                  format($$VALUES ('high', %L::uuid, 5, 20, %L::uuid)$$, :'u_fam', :'fam_sid'),
                  'token.refresh_reused: high, the user, the generation used and the newest, the session');
-- Siblings within the grace: at most 8 tokens of a generation.
SELECT refresh_token AS g0 FROM authx.token_issue(:'u_fam') \gset
SELECT refresh_token AS g1 FROM authx.token_refresh(:'g0') \gset
SELECT is((SELECT array_agg(pg_temp.refresh(CASE WHEN n > 0 THEN :'g0' END) ORDER BY n) FROM generate_series(1, 7) n),
          array_fill('ok'::text, ARRAY[7]), 'the parent within the grace: seven siblings');
SELECT is((SELECT ARRAY[generation, cardinality(head_hashes)] FROM authx.refresh_families WHERE id = pg_temp.family(:'g1')),
          ARRAY[1, 8], 'eight heads of generation 1');
SELECT pg_temp.family(:'g1') AS fam_g \gset
SELECT is(pg_temp.refresh(:'g0'), 'reused', 'a ninth token of the generation: reused');
SELECT is((SELECT revoke_reason FROM authx.refresh_families WHERE id = :'fam_g'), 'reused', 'the family revoked');
-- A sibling rotates; then the other sibling, within the grace, gets a
-- sibling of the newest.
SELECT refresh_token AS h0 FROM authx.token_issue(:'u_fam') \gset
SELECT refresh_token AS h1 FROM authx.token_refresh(:'h0') \gset
SELECT refresh_token AS h1b FROM authx.token_refresh(:'h0') \gset
SELECT refresh_token AS h2 FROM authx.token_refresh(:'h1b') \gset
SELECT is(pg_temp.refresh(:'h1'), 'ok', 'the other token of the parent generation, within the grace: ok');
SELECT is((SELECT ARRAY[generation, cardinality(head_hashes), cardinality(parent_hashes)]
             FROM authx.refresh_families WHERE id = pg_temp.family(:'h2')), ARRAY[2, 2, 2],
          'a sibling of generation 2');
UPDATE authx.refresh_families SET rotated_at = rotated_at - interval '11 seconds' WHERE id = pg_temp.family(:'h2');
SELECT is(pg_temp.refresh(:'h1'), 'reused', 'after authx.refresh_reuse_grace (10 s): reused');
-- The refresh policy.
UPDATE authx.rate_limit_policies SET max = 3 WHERE name = 'refresh';
SELECT refresh_token AS q0 FROM authx.token_issue(:'u_fam') \gset
SELECT refresh_token AS q1 FROM authx.token_refresh(:'q0') \gset
SELECT refresh_token AS q2 FROM authx.token_refresh(:'q1') \gset
SELECT refresh_token AS q3 FROM authx.token_refresh(:'q2') \gset
SELECT status AS q_st, access_token IS NULL AND refresh_token IS NULL AS q_nulls,
       expires_at > clock_timestamp() AS q_later FROM authx.token_refresh(:'q3') \gset
SELECT is(:'q_st'::text, 'rate_limited', 'the refresh policy (3 a minute per family): the 4th refresh is rate_limited');
SELECT ok(:'q_nulls' AND :'q_later', 'no tokens; expires_at: when to retry, ahead');
SELECT is((SELECT generation FROM authx.refresh_families WHERE id = pg_temp.family(:'q3')), 3,
          'the token is not spent: still the head of generation 3');
DELETE FROM authx.rate_limit_policies WHERE name = 'refresh';
SELECT is(pg_temp.refresh(:'q3'), 'ok', 'without the policy it rotates');

-- ================================================================ trusted devices
SELECT ok(pg_temp.enable_totp(:'u_dev'), 'TOTP enabled');
SELECT authx.device_trust(:'u_dev', 'tap18-laptop', 'Laptop') AS dev \gset
SELECT device_id AS dev_id FROM authx.devices(:'u_dev') \gset
SELECT is((SELECT status FROM authx.login(pg_temp.email('dev'), pg_temp.pw('dev'), pg_temp.ip(2))), 'mfa_required',
          'login without the device token: mfa_required');
SELECT is((SELECT status FROM authx.login(pg_temp.email('dev'), pg_temp.pw('dev'), pg_temp.ip(2), 'tap18', :'dev')), 'ok',
          'with it: ok, no second factor');
SELECT authx.audit_flush('30 seconds') AS f \gset
SELECT results_eq(format($$SELECT details->>'mfa', (details->>'device_id')::uuid, ip FROM authx.audit_log
                            WHERE user_id = %L AND event_type = 'login.succeeded'$$, :'u_dev'),
                  format($$VALUES ('trusted_device', %L::uuid, %L::inet)$$, :'dev_id', pg_temp.ip(2)),
                  'audited as login.succeeded with mfa = trusted_device and the device id');
SELECT ok(authx.totp_disable(:'u_dev'), 'totp_disable');
SELECT is_empty(format('SELECT 1 FROM authx.devices(%L)', :'u_dev'), 'it revokes the trusted devices');
SELECT ok((SELECT bool_and(revoked_at IS NOT NULL) FROM authx.trusted_devices WHERE user_id = :'u_dev'), 'revoked_at set');
SELECT is((SELECT details FROM authx.audit_log WHERE user_id = :'u_dev' AND event_type = 'device.revoked_all'),
          '{"count": 1, "reason": "mfa_disabled"}'::jsonb, 'device.revoked_all (mfa_disabled)');
SELECT ok(pg_temp.enable_totp(:'u_dev'), 'TOTP enabled again');
SELECT is((SELECT status FROM authx.login(pg_temp.email('dev'), pg_temp.pw('dev'), pg_temp.ip(2), 'tap18', :'dev')),
          'mfa_required', 'the old device token no longer skips it');

-- ================================================================ email verification
SELECT token AS ev FROM authx.email_verification_issue(:'u_ev') \gset
SELECT is((SELECT email_verified_at FROM authx.users WHERE id = :'u_ev'), NULL, 'not verified yet');
SELECT is((SELECT row(status, user_id)::text FROM authx.email_verification_confirm(:'ev')), row('ok', :'u_ev'::uuid)::text,
          'email_verification_confirm: ok, the user');
SELECT ok((SELECT email_verified_at IS NOT NULL FROM authx.users WHERE id = :'u_ev'), 'email_verified_at set');
SELECT is((SELECT status FROM authx.email_verification_confirm(:'ev')), 'used', 'once');

-- ================================================================ password reset
SELECT ok(pg_temp.enable_totp(:'u_pr'), 'TOTP enabled');
SELECT authx.device_trust(:'u_pr', 'tap18-pr') AS pr_dev \gset
SELECT session_token AS pr_s FROM authx.login(pg_temp.email('pr'), pg_temp.pw('pr'), pg_temp.ip(3), NULL, :'pr_dev') \gset
SELECT access_token AS pr_at, refresh_token AS pr_rt FROM authx.token_issue(:'u_pr', :'pr_s') \gset
SELECT refresh_token AS pr_rt2 FROM authx.token_issue(:'u_pr') \gset
SELECT is((SELECT array_agg(l.status ORDER BY n) FROM generate_series(1, 5) n,
                  authx.login(pg_temp.email('pr'), CASE WHEN n > 0 THEN 'wrong' END, pg_temp.ip(3)) l),
          array_fill('invalid_credentials'::text, ARRAY[5]), 'five failed logins');
SELECT ok(authx._lockout_state(:'u_pr', pg_temp.ip(3)) IS NOT NULL, 'locked for that address');
SELECT is((SELECT ARRAY[(SELECT count(*)::int FROM authx.sessions(:'u_pr')),
                        (SELECT count(*)::int FROM authx.refresh_families WHERE user_id = :'u_pr' AND revoked_at IS NULL),
                        (SELECT count(*)::int FROM authx.devices(:'u_pr'))]),
          ARRAY[2, 2, 1], 'before: two sessions, two families, a device');
SELECT is((SELECT email_verified_at FROM authx.users WHERE id = :'u_pr'), NULL, 'address not verified');
SELECT token AS pr_tok FROM authx.password_reset_issue(pg_temp.email('pr')) \gset
SELECT is((SELECT row(status, user_id)::text FROM authx.password_reset_confirm(:'pr_tok', 'a new tokens passphrase')),
          row('ok', :'u_pr'::uuid)::text, 'password_reset_confirm: ok');
SELECT is((SELECT ARRAY[(SELECT count(*)::int FROM authx.sessions(:'u_pr')),
                        (SELECT count(*)::int FROM authx.refresh_families WHERE user_id = :'u_pr' AND revoked_at IS NULL),
                        (SELECT count(*)::int FROM authx.devices(:'u_pr'))]),
          ARRAY[0, 0, 0], 'after: no session, no live family, no device');
SELECT is((SELECT array_agg(DISTINCT revoke_reason) FROM authx.refresh_families WHERE user_id = :'u_pr'),
          ARRAY['password_reset'], 'the families revoked for password_reset');
SELECT ok((SELECT bool_and(revoked_at IS NOT NULL) FROM authx.trusted_devices WHERE user_id = :'u_pr'),
          'the device revoked');
SELECT is(authx.token_verify(:'pr_at'), NULL, 'the access token: NULL');
SELECT is(ARRAY[pg_temp.refresh(:'pr_rt'), pg_temp.refresh(:'pr_rt2')], ARRAY['revoked', 'revoked'],
          'the refresh tokens: revoked');
SELECT is(authx._lockout_state(:'u_pr', pg_temp.ip(3)), NULL, 'the lockout is cleared');
SELECT ok((SELECT email_verified_at IS NOT NULL FROM authx.users WHERE id = :'u_pr'), 'email_verified_at set');
SELECT ok(authx.password_verify(:'u_pr', 'a new tokens passphrase') AND NOT authx.password_verify(:'u_pr', pg_temp.pw('pr')),
          'the new password, not the old');
SELECT is((SELECT status FROM authx.login(pg_temp.email('pr'), 'a new tokens passphrase', pg_temp.ip(3), NULL, :'pr_dev')),
          'mfa_required', 'from the locked address: the password is right, the device no longer trusted');
-- The password_reset policy: 3 per 15 minutes per email.
SELECT is((SELECT array_agg(p.token IS NOT NULL ORDER BY n) FROM generate_series(1, 3) n,
                  authx.password_reset_issue(CASE WHEN n > 0 THEN pg_temp.email('prl') END) p),
          ARRAY[true, true, true], 'three reset tokens for an email');
SELECT is((SELECT token FROM authx.password_reset_issue(pg_temp.email('prl'))), NULL, 'the 4th: NULL token');
SELECT is((SELECT row(token, expires_at)::text FROM authx.password_reset_issue(' ' || upper(pg_temp.email('prl')))),
          row(NULL::text, NULL::timestamptz)::text, 'the same email in capitals: NULLs, same shape');
SELECT is((SELECT count(*)::int FROM authx.user_tokens WHERE user_id = :'u_prl' AND used_at IS NULL), 1,
          'the token sent last is kept');
-- Per address: three requests, then any email from it is refused.
SELECT is((SELECT array_agg(p.token IS NULL ORDER BY n) FROM generate_series(1, 3) n,
                  authx.password_reset_issue(pg_temp.email('nobody' || n), pg_temp.ip(4)) p),
          ARRAY[true, true, true], 'three requests from an address (unknown emails: NULLs)');
SELECT is((SELECT token FROM authx.password_reset_issue(pg_temp.email('ev'), pg_temp.ip(4))), NULL,
          'the 4th from that address, for a known email: NULL');
SELECT ok((SELECT token IS NOT NULL FROM authx.password_reset_issue(pg_temp.email('ev'), pg_temp.ip(5))),
          'from another address: a token');
SELECT authx.audit_flush('30 seconds') AS f \gset
SELECT ok((SELECT count(*) FROM authx.audit_log WHERE event_type = 'password.reset_limited'
             AND (ip IS NULL OR ip = pg_temp.ip(4))
             AND details->>'account' IN (authx._account_tag(pg_temp.email('prl')), authx._account_tag(pg_temp.email('ev'))))
          >= 3, 'password.reset_limited audited');

-- ================================================================ maintenance
-- (Last: a pass two days ahead makes audit partitions in this transaction.)
SELECT refresh_token AS mt_rt FROM authx.token_issue(:'u_mt') \gset
SELECT pg_temp.family(:'mt_rt') AS mt_fam \gset
UPDATE authx.refresh_families SET revoked_at = now(), revoke_reason = 'tap18' WHERE id = :'mt_fam';
SELECT refresh_token AS mt_rt2 FROM authx.token_issue(:'u_mt') \gset
SELECT pg_temp.family(:'mt_rt2') AS mt_fam2 \gset
SELECT authx.device_trust(:'u_mt', 'mt-1') AS mt_d1 \gset
SELECT authx.device_trust(:'u_mt', 'mt-2') AS mt_d2 \gset
SELECT authx.device_revoke((SELECT device_id FROM authx.devices(:'u_mt') WHERE fingerprint = 'mt-1')) AS x \gset
SET authx.verification_ttl = '60s';
SELECT token AS mt_v FROM authx.email_verification_issue(:'u_mt') \gset
RESET authx.verification_ttl;
SELECT token AS mt_p FROM authx.password_reset_issue(pg_temp.email('mt')) \gset
SET authx.verification_ttl = '5d';
SELECT token AS mt_v2 FROM authx.email_verification_issue(:'u_ev') \gset
RESET authx.verification_ttl;
SELECT authx.signing_key_rotate() AS k5 \gset
SELECT authx._maintenance_run_at(now() + interval '2 days') AS mr \gset
SELECT ok((:'mr'::jsonb->'tokens') ?& ARRAY['families_purged', 'keys_purged']
          AND (:'mr'::jsonb->'devices') ? 'devices_purged' AND (:'mr'::jsonb->'user_tokens') ? 'tokens_purged',
          '_maintenance_run_at reports tokens, devices and user_tokens');
SELECT ok((:'mr'::jsonb->'tokens'->>'families_purged')::int >= 1 AND (:'mr'::jsonb->'tokens'->>'keys_purged')::int >= 1
          AND (:'mr'::jsonb->'devices'->>'devices_purged')::int >= 1
          AND (:'mr'::jsonb->'user_tokens'->>'tokens_purged')::int >= 2, 'with what it purged');
SELECT is((SELECT array_agg(id ORDER BY id = :'mt_fam2') FROM authx.refresh_families WHERE user_id = :'u_mt'),
          ARRAY[:'mt_fam2'::uuid], 'the family revoked (a day before that time) is purged, the live one kept');
SELECT is((SELECT array_agg(fingerprint) FROM authx.trusted_devices WHERE user_id = :'u_mt'), ARRAY['mt-2'],
          'the revoked device is purged, the live one kept');
SELECT is((SELECT count(*)::int FROM authx.user_tokens WHERE user_id = :'u_mt'), 0,
          'verification and reset tokens ended a day before that time are purged');
SELECT is((SELECT count(*)::int FROM authx.user_tokens WHERE token_hash = sha256(convert_to(:'mt_v2', 'UTF8'))), 1,
          'one good for 5 days is kept');
SELECT is((SELECT array_agg(kid) FROM authx.signing_keys WHERE kid IN (:'k1', :'k2', :'k3', :'k4', :'k5', :'k_hs', :'k_hs2')),
          ARRAY[:'k5'], 'retired keys whose verify_until is past are purged, the current one kept');

SELECT * FROM finish();
ROLLBACK;

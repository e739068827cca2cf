--
-- Tokens: JWT access tokens (token_issue, token_verify, the header and the
-- claims, custom claims and their limits), refresh-token families
-- (token_refresh: rotation, the reuse grace, reuse revoking the family and
-- its session, revoked, expired, blocked, rate_limited), signing keys
-- (jwks, signing_key_rotate, HS256); trusted devices (device_trust,
-- devices, device_revoke, login skipping the second factor with a device
-- token); email verification and password reset tokens (issue, confirm:
-- ok, used, expired, invalid; the password_reset policy); audit events;
-- privileges; maintenance; then every invalid input (one line each,
-- through regress.try).
--
-- Tokens, kids, user ids and timestamps are never printed: only statuses,
-- booleans, counts, claim names, SQLSTATEs and messages.  JWT segments are
-- decoded here (base64url in SQL) to look at the header and the claims.
--
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
\set SHOW_CONTEXT never
-- These logins test trusted devices, not the login and mfa rate policies:
-- both are lifted until the end of the file, and restored.
UPDATE authx.rate_limit_policies SET max = 1000000 WHERE name IN ('login', 'mfa');
SELECT coalesce(max(id), 0) AS audit0 FROM authx.audit_log \gset

-- base64url (RFC 4648 section 5, padding optional) to bytes.
CREATE FUNCTION regress.b64url_decode(p text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT decode(rpad(translate(p, '-_', '+/'), (length(p) + 3) / 4 * 4, '='), 'base64')
$$;
-- A JWT segment (1 header, 2 payload) as text, and the payload as jsonb.
CREATE FUNCTION regress.jwt_part(p_token text, p_n integer) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT convert_from(regress.b64url_decode(split_part(p_token, '.', p_n)), 'UTF8')
$$;
CREATE FUNCTION regress.jwt_claims(p_token text) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT regress.jwt_part(p_token, 2)::jsonb $$;
-- The names of a token's claims, sorted.
CREATE FUNCTION regress.claim_names(p_claims jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(p_claims) k
$$;
-- A token with one character of segment p_n (1, 2, 3) changed at position
-- p_pos of that segment (A <-> B).
CREATE FUNCTION regress.tamper(p_token text, p_n integer, p_pos integer DEFAULT 5) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT string_agg(CASE WHEN i = p_n
                           THEN overlay(s PLACING CASE WHEN substr(s, p_pos, 1) = 'A' THEN 'B' ELSE 'A' END
                                        FROM p_pos FOR 1)
                           ELSE s END, '.' ORDER BY i)
      FROM unnest(string_to_array(p_token, '.')) WITH ORDINALITY AS t(s, i)
$$;
-- base64url of text, no padding (as a JWS segment).
CREATE FUNCTION regress.b64url(p text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT translate(encode(convert_to(p, 'UTF8'), 'base64'), E'+/=\n', '-_')
$$;
-- RFC 4648 base32 (upper case, no padding) to bytes, and the TOTP code of a
-- secret now (as in 10_mfa).
CREATE FUNCTION regress.tok_b32(p text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT decode(coalesce(string_agg(lpad(to_hex(substr(b.bits, 8 * i + 1, 8)::bit(8)::int), 2, '0'), ''
                                      ORDER BY i), ''), 'hex')
      FROM (SELECT string_agg((strpos('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', c) - 1)::bit(5)::text, '' ORDER BY o)
                   AS bits
              FROM regexp_split_to_table(p, '') WITH ORDINALITY AS t(c, o)) b,
           generate_series(0, length(b.bits) / 8 - 1) AS i
$$;
CREATE FUNCTION regress.tok_totp(p_secret text) RETURNS text
LANGUAGE sql VOLATILE AS $$ SELECT authx._totp_code(regress.tok_b32(p_secret), clock_timestamp()) $$;

-- ================================================================ token_issue
SELECT authx.user_create('tok-a@example.com', 'correct horse battery') AS a \gset
SELECT authx.user_create('tok-b@example.com', 'correct horse battery') AS b \gset
SELECT access_token AS at1, expires_at AS at1_exp, refresh_token AS rt1 FROM authx.token_issue(:'a') \gset
-- Three base64url segments; the header is the one authx writes for its key
-- (EdDSA by default, a 16-character kid); an axr_ refresh token.
SELECT :'at1' ~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}$' AS jws_compact,
       regexp_replace(regress.jwt_part(:'at1', 1), '"kid":"[A-Za-z0-9_-]{16}"', '"kid":"<kid>"') AS header,
       :'rt1' ~ '^axr_[A-Za-z0-9_-]{91}$' AS refresh_format;
-- The claims: sub, sid (a new session of the user), iat, exp = iat +
-- authx.token_ttl (15 min), a jti, the role authx.token_role, roles and
-- permissions; expires_at is exp.
SELECT regress.claim_names(c) AS claims, c->>'sub' = :'a' AS sub, c->>'role' AS role,
       c->'roles' AS roles, c->'permissions' AS permissions,
       (c->>'exp')::bigint - (c->>'iat')::bigint AS ttl_s,
       to_timestamp((c->>'exp')::bigint) = :'at1_exp'::timestamptz AS expires_at_is_exp,
       abs((c->>'iat')::bigint - extract(epoch FROM clock_timestamp())) < 60 AS iat_now,
       (c->>'jti')::uuid IS NOT NULL AS jti_uuid,
       (c->>'sid')::uuid = (SELECT session_id FROM authx.sessions(:'a')) AS sid_is_the_new_session
  FROM regress.jwt_claims(:'at1') c;
-- token_verify answers the claims the token carries.
SELECT authx.token_verify(:'at1') = regress.jwt_claims(:'at1') AS verified;
-- Only sha256 of the refresh token is stored, in its family (generation 0).
SELECT f.user_id = :'a' AS same_user, f.generation, cardinality(f.head_hashes) AS heads,
       f.head_hashes[1] = sha256(convert_to(:'rt1', 'UTF8')) AS head_is_sha256,
       cardinality(f.parent_hashes) AS parents, f.claims, f.revoked_at IS NULL AS live,
       f::text LIKE '%' || substr(:'rt1', 5) || '%' AS token_anywhere
  FROM authx.refresh_families f WHERE f.user_id = :'a';
-- Bound to a session given: the tokens carry its id; custom claims are
-- added, and a custom role replaces authx.token_role.
SELECT session_token AS a_s1 FROM authx.login('tok-a@example.com', 'correct horse battery', '192.0.2.41') \gset
SELECT access_token AS at2, refresh_token AS rt2
  FROM authx.token_issue(:'a', :'a_s1', '{"tenant": "acme", "n": [1, 2]}') \gset
SELECT (c->>'sid')::uuid = (SELECT session_id FROM authx.session_info(:'a_s1')) AS sid_is_the_login,
       c->>'tenant' AS tenant, c->>'role' AS role, c->'n' AS n, regress.claim_names(c) AS claims
  FROM authx.token_verify(:'at2') c;
SELECT count(*) AS sessions FROM authx.sessions(:'a');
-- Two tokens never share a jti.
SELECT regress.jwt_claims(:'at1')->>'jti' <> regress.jwt_claims(:'at2')->>'jti' AS jti_unique;
-- Roles and permissions come from RBAC grants; iss and aud from the GUCs.
SELECT authx.role_create('tok_reader');
SELECT authx.role_grant('tok_reader', 'docs:read');
SELECT authx.user_grant(:'a', 'tok_reader');
SET authx.token_issuer = 'https://auth.example.com';
SET authx.token_audience = 'example-api';
SET authx.token_role = 'web_user';
SELECT c->'roles' AS roles, c->'permissions' AS permissions, c->>'iss' AS iss, c->>'aud' AS aud,
       c->>'role' AS role, regress.claim_names(c) AS claims
  FROM authx.token_issue(:'a') t, regress.jwt_claims(t.access_token) c;
RESET authx.token_issuer;
RESET authx.token_audience;
RESET authx.token_role;
SELECT authx.user_revoke(:'a', 'tok_reader');
-- authx.token_ttl sets exp.
SET authx.token_ttl = '1h';
SELECT (c->>'exp')::bigint - (c->>'iat')::bigint AS ttl_s
  FROM authx.token_issue(:'a') t, regress.jwt_claims(t.access_token) c;
RESET authx.token_ttl;

-- ================================================================ token_verify
-- NULL for anything that is not a live token of ours, never an error.
SELECT access_token AS b_at FROM authx.token_issue(:'b') \gset
SELECT v.what, authx.token_verify(v.tok) IS NULL AS refused
  FROM (VALUES ('NULL', NULL), ('empty', ''), ('garbage', 'not a token'), ('two dots', '..'),
               ('three dots', '...'), ('two segments', split_part(:'at1', '.', 1) || '.' || split_part(:'at1', '.', 2)),
               ('four segments', :'at1' || '.' || split_part(:'at1', '.', 3)),
               ('a refresh token', :'rt1'),
               ('payload tampered', regress.tamper(:'at1', 2)),
               ('signature tampered', regress.tamper(:'at1', 3)),
               ('signature cut', left(:'at1', -1)),
               ('signature longer', :'at1' || 'A'),
               ('no signature', left(:'at1', -86)),
               ('another token''s payload', split_part(:'at1', '.', 1) || '.' || split_part(:'b_at', '.', 2) || '.'
                                           || split_part(:'at1', '.', 3)),
               ('header with padding', split_part(:'at1', '.', 1) || '=.' || split_part(:'at1', '.', 2) || '.'
                                       || split_part(:'at1', '.', 3)),
               ('alg none', regress.b64url('{"alg":"none","typ":"JWT"}') || '.' || split_part(:'at1', '.', 2) || '.'),
               ('alg none, our kid',
                regress.b64url(replace(regress.jwt_part(:'at1', 1), '"EdDSA"', '"none"')) || '.'
                || split_part(:'at1', '.', 2) || '.' || split_part(:'at1', '.', 3)),
               ('header re-spaced',
                regress.b64url(replace(regress.jwt_part(:'at1', 1), ',', ', ')) || '.'
                || split_part(:'at1', '.', 2) || '.' || split_part(:'at1', '.', 3)),
               ('unknown kid',
                regress.b64url(regexp_replace(regress.jwt_part(:'at1', 1), '"kid":"[^"]*"', '"kid":"AAAAAAAAAAAAAAAA"'))
                || '.' || split_part(:'at1', '.', 2) || '.' || split_part(:'at1', '.', 3)),
               ('20000 characters', repeat('a', 20000)),
               ('a token and 20000 characters', :'at1' || repeat('A', 20000)),
               ('one megabyte of dots', repeat('.', 1000000))) v(what, tok);
-- Tokens authx signed itself (authx._jwt_sign, internal) are still refused
-- when expired (exp <= now), not yet valid (nbf), without a numeric exp,
-- naming no session or one that does not exist, or not an object; an nbf
-- passed is fine.
SELECT v.what, authx.token_verify(authx._jwt_sign(v.claims)) IS NULL AS refused
  FROM (VALUES ('exp passed', jsonb_build_object('exp', floor(extract(epoch FROM now())) - 1)),
               ('exp now', jsonb_build_object('exp', floor(extract(epoch FROM now())))),
               ('no exp', '{"sub": "x"}'),
               ('exp a string', jsonb_build_object('exp', (floor(extract(epoch FROM now())) + 600)::text)),
               ('nbf ahead', jsonb_build_object('exp', floor(extract(epoch FROM now())) + 600,
                                                'nbf', floor(extract(epoch FROM now())) + 300)),
               ('nbf passed, no sid', jsonb_build_object('exp', floor(extract(epoch FROM now())) + 600,
                                                 'nbf', floor(extract(epoch FROM now())) - 300)),
               ('nbf passed, live sid', jsonb_build_object('exp', floor(extract(epoch FROM now())) + 600,
                                                 'nbf', floor(extract(epoch FROM now())) - 300,
                                                 'sid', (SELECT session_id FROM authx.session_info(:'a_s1')))),
               ('sid not a uuid', jsonb_build_object('exp', floor(extract(epoch FROM now())) + 600, 'sid', 'x')),
               ('unknown sid', jsonb_build_object('exp', floor(extract(epoch FROM now())) + 600,
                                                  'sid', '00000000-0000-0000-0000-000000000000')),
               ('an array', '[1, 2]')) v(what, claims);
-- The session ends, its tokens with it: revoked, expired, idle, the user
-- disabled.
SELECT session_token AS a_s2 FROM authx.session_create(:'a') \gset
SELECT access_token AS at3 FROM authx.token_issue(:'a', :'a_s2') \gset
SELECT authx.token_verify(:'at2') IS NOT NULL AS before, authx.token_verify(:'at3') IS NOT NULL AS other_session;
SELECT authx.session_revoke(:'a_s1') AS revoked;
SELECT authx.token_verify(:'at2') IS NULL AS after_revoke, authx.token_verify(:'at3') IS NOT NULL AS other_session;
UPDATE authx.sessions SET expires_at = clock_timestamp() - interval '1 second'
 WHERE id = (regress.jwt_claims(:'at3')->>'sid')::uuid;
SELECT authx.token_verify(:'at3') IS NULL AS after_session_expiry;
SELECT access_token AS at4 FROM authx.token_issue(:'a') \gset
UPDATE authx.sessions SET last_seen_at = clock_timestamp() - interval '2 days'
 WHERE id = (regress.jwt_claims(:'at4')->>'sid')::uuid;
SELECT authx.token_verify(:'at4') IS NULL AS after_idle_timeout;
SELECT access_token AS b_at2 FROM authx.token_issue(:'b') \gset
SELECT authx.user_disable(:'b');
SELECT authx.token_verify(:'b_at') IS NULL AS disabled_1, authx.token_verify(:'b_at2') IS NULL AS disabled_2;
SELECT authx.user_enable(:'b');
SELECT authx.token_verify(:'b_at') IS NULL AS not_back_when_enabled;

-- ================================================================ token_refresh
-- Rotation: ok, a new access token and the next refresh token; generation
-- 1, the used token now the parent.
SELECT access_token AS f_at, refresh_token AS f0 FROM authx.token_issue(:'b', NULL, '{"tenant": "acme"}') \gset
SELECT status AS st, access_token AS f_at1, expires_at AS f_exp1, refresh_token AS f1
  FROM authx.token_refresh(:'f0', '192.0.2.42') \gset
SELECT :'st' AS status, :'f1' ~ '^axr_[A-Za-z0-9_-]{91}$' AS refresh_format, :'f1' <> :'f0' AS new_token,
       authx.token_verify(:'f_at1') IS NOT NULL AS access_verifies,
       regress.jwt_claims(:'f_at1')->>'tenant' AS tenant_kept,
       regress.jwt_claims(:'f_at1')->>'sid' = regress.jwt_claims(:'f_at')->>'sid' AS same_session,
       to_timestamp((regress.jwt_claims(:'f_at1')->>'exp')::bigint) = :'f_exp1'::timestamptz AS expires_at_is_exp;
SELECT generation, cardinality(head_hashes) AS heads, parent_hashes = ARRAY[sha256(convert_to(:'f0', 'UTF8'))] AS parent,
       head_hashes = ARRAY[sha256(convert_to(:'f1', 'UTF8'))] AS head, rotated_at IS NOT NULL AS rotated
  FROM authx.refresh_families WHERE id = (SELECT id FROM authx.refresh_families
                                           WHERE head_hashes[1] = sha256(convert_to(:'f1', 'UTF8')));
SELECT id AS fam_f FROM authx.refresh_families WHERE head_hashes[1] = sha256(convert_to(:'f1', 'UTF8')) \gset
-- The parent again within authx.refresh_reuse_grace (10 s): a sibling of
-- the newest (two refreshes sent at once), same generation.
SELECT status AS st, refresh_token AS f1b FROM authx.token_refresh(:'f0') \gset
SELECT :'st' AS status, :'f1b' <> :'f1' AS another_token, generation, cardinality(head_hashes) AS heads
  FROM authx.refresh_families WHERE id = :'fam_f';
-- Either sibling rotates on.
SELECT status AS st, refresh_token AS f2 FROM authx.token_refresh(:'f1b') \gset
SELECT :'st' AS status, generation, cardinality(head_hashes) AS heads, cardinality(parent_hashes) AS parents
  FROM authx.refresh_families WHERE id = :'fam_f';
-- The grandparent, even within the grace, was used before: reused.  The
-- family and its session are revoked; every token of the family is then
-- revoked, the access tokens refused.  (No address: the refresh_reuse
-- threat rule would block it for an hour.)
SELECT session_id AS f_sid FROM authx.refresh_families WHERE id = :'fam_f' \gset
SELECT status, access_token, expires_at, refresh_token FROM authx.token_refresh(:'f0');
SELECT revoked_at IS NOT NULL AS family_revoked, revoke_reason FROM authx.refresh_families WHERE id = :'fam_f';
SELECT revoked_at IS NOT NULL AS session_revoked, revoke_reason FROM authx.sessions WHERE id = :'f_sid';
SELECT v.what, r.status
  FROM (VALUES ('newest', :'f2'), ('sibling', :'f1'), ('first', :'f0')) v(what, tok),
       authx.token_refresh(v.tok) r;
SELECT authx.token_verify(:'f_at') IS NULL AS access_0_refused, authx.token_verify(:'f_at1') IS NULL AS access_1_refused;
-- The parent after the grace: reused.
SELECT refresh_token AS g0 FROM authx.token_issue(:'b') \gset
SELECT status AS st, refresh_token AS g1 FROM authx.token_refresh(:'g0') \gset
UPDATE authx.refresh_families SET rotated_at = rotated_at - interval '11 seconds'
 WHERE head_hashes[1] = sha256(convert_to(:'g1', 'UTF8'));
SELECT status FROM authx.token_refresh(:'g0');
SELECT status FROM authx.token_refresh(:'g1');
-- With authx.refresh_reuse_grace = 0 the parent is reused at once.
SET authx.refresh_reuse_grace = 0;
SELECT refresh_token AS h0 FROM authx.token_issue(:'b') \gset
SELECT status AS st, refresh_token AS h1 FROM authx.token_refresh(:'h0') \gset
SELECT status FROM authx.token_refresh(:'h0');
RESET authx.refresh_reuse_grace;
-- At most 8 tokens of a generation: the 8th sibling asked for is reuse.
SELECT refresh_token AS k0 FROM authx.token_issue(:'b') \gset
SELECT status AS st FROM authx.token_refresh(:'k0') \gset
SELECT n AS sibling, r.status
  FROM generate_series(1, 8) n, authx.token_refresh(CASE WHEN n > 0 THEN :'k0' END) r;
-- A session revoked, expired or idle.
SELECT session_token AS b_s1 FROM authx.session_create(:'b') \gset
SELECT refresh_token AS m0 FROM authx.token_issue(:'b', :'b_s1') \gset
SELECT authx.session_revoke(:'b_s1') AS session_revoked;
SELECT status, access_token, expires_at, refresh_token FROM authx.token_refresh(:'m0');
SELECT refresh_token AS n0, regress.jwt_claims(access_token)->>'sid' AS n_sid FROM authx.token_issue(:'b') \gset
UPDATE authx.sessions SET expires_at = clock_timestamp() - interval '1 second' WHERE id = :'n_sid';
SELECT status FROM authx.token_refresh(:'n0');
SELECT refresh_token AS o0, regress.jwt_claims(access_token)->>'sid' AS o_sid FROM authx.token_issue(:'b') \gset
UPDATE authx.sessions SET last_seen_at = clock_timestamp() - interval '2 days' WHERE id = :'o_sid';
SELECT status FROM authx.token_refresh(:'o0');
-- Disabling the user revokes the session: revoked.
SELECT authx.user_create('tok-c@example.com', 'correct horse battery') AS c \gset
SELECT refresh_token AS c0 FROM authx.token_issue(:'c') \gset
SELECT authx.user_disable(:'c');
SELECT status FROM authx.token_refresh(:'c0');
-- A blocked address is answered first; the token stays good.
SELECT refresh_token AS p0 FROM authx.token_issue(:'b') \gset
SELECT authx.ip_block('203.0.113.211/32', '1 hour', 'regress tokens');
SELECT status, access_token, expires_at, refresh_token FROM authx.token_refresh(:'p0', '203.0.113.211');
SELECT authx.ip_unblock('203.0.113.211/32') AS unblocked;
SELECT status FROM authx.token_refresh(:'p0', '203.0.113.211');
-- A refresh keeps an idle-limited session alive (last_seen_at moves).
SELECT refresh_token AS q0, regress.jwt_claims(access_token)->>'sid' AS q_sid FROM authx.token_issue(:'b') \gset
UPDATE authx.sessions SET last_seen_at = clock_timestamp() - interval '1 hour' WHERE id = :'q_sid';
SELECT status FROM authx.token_refresh(:'q0', '192.0.2.43');
SELECT last_seen_at > clock_timestamp() - interval '1 minute' AS touched, last_ip FROM authx.sessions WHERE id = :'q_sid';
-- The refresh policy (per family): past it, rate_limited with when to
-- retry, and the token stays good.
UPDATE authx.rate_limit_policies SET max = 2 WHERE name = 'refresh';
SELECT refresh_token AS r0 FROM authx.token_issue(:'b') \gset
SELECT status AS st, refresh_token AS r1 FROM authx.token_refresh(:'r0') \gset
SELECT status AS st, refresh_token AS r2 FROM authx.token_refresh(:'r1') \gset
SELECT status, access_token, expires_at > clock_timestamp() AS retry_later, refresh_token
  FROM authx.token_refresh(:'r2');
SELECT generation FROM authx.refresh_families WHERE head_hashes[1] = sha256(convert_to(:'r2', 'UTF8'));
UPDATE authx.rate_limit_policies SET max = 10, seeded = true WHERE name = 'refresh';
SELECT name, max, per = interval '1 minute' AS per_minute, seeded FROM authx.rate_limit_policies WHERE name = 'refresh';
-- Not a refresh token of ours: invalid, never an error.
SELECT v.what, r.status, r.access_token, r.expires_at, r.refresh_token
  FROM (VALUES ('NULL', NULL), ('empty', ''), ('prefix only', 'axr_'), ('forged', 'axr_' || repeat('A', 91)),
               ('tampered', regress.tamper(:'p0', 1, 40)), ('tag tampered', regress.tamper(:'p0', 1, 90)),
               ('one more character', :'p0' || 'A'), ('one less', left(:'p0', -1)),
               ('upper case prefix', 'AXR_' || substr(:'p0', 5)), ('a session token', :'a_s2'),
               ('an access token', :'at1'), ('one megabyte', repeat('x', 1000000))) v(what, tok),
       authx.token_refresh(v.tok) r;
-- The token tampered with was not taken for a reuse: it still rotates.
SELECT status FROM authx.token_refresh(:'p0');

-- ================================================================ signing keys
-- jwks: the public keys that verify, OKP / Ed25519.
SELECT jsonb_array_length(authx.jwks()->'keys') AS keys,
       (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(authx.jwks()->'keys'->0) k) AS members,
       authx.jwks()->'keys'->0->>'kty' AS kty, authx.jwks()->'keys'->0->>'crv' AS crv,
       authx.jwks()->'keys'->0->>'alg' AS alg, authx.jwks()->'keys'->0->>'use' AS use,
       authx.jwks()->'keys'->0->>'kid' = regress.jwt_part(:'at1', 1)::jsonb->>'kid' AS kid_of_the_tokens,
       regress.b64url_decode(authx.jwks()->'keys'->0->>'x')
           = (SELECT public_key FROM authx.signing_keys WHERE kid = regress.jwt_part(:'at1', 1)::jsonb->>'kid')
           AS x_is_the_public_key;
-- Stored: the public key, and the 32-byte seed only sealed (version, nonce,
-- ciphertext, tag: 1 + 24 + 32 + 16 bytes).
SELECT alg, octet_length(public_key) AS public_key_bytes, octet_length(private_sealed) AS sealed_bytes,
       retired_at IS NULL AS current
  FROM authx.signing_keys ORDER BY created_at;
-- Rotation: a new key signs; the old one stays in jwks and keeps verifying
-- until authx.token_ttl has passed.
SELECT regress.jwt_part(:'at1', 1)::jsonb->>'kid' AS kid1 \gset
SELECT authx.signing_key_rotate() AS kid2 \gset
SELECT :'kid2' ~ '^[A-Za-z0-9_-]{16}$' AS kid_format, :'kid2' <> :'kid1' AS new_kid;
SELECT kid = :'kid2' AS is_new, alg, retired_at IS NOT NULL AS retired,
       verify_until BETWEEN retired_at + interval '15 minutes' - interval '1 second'
                        AND retired_at + interval '15 minutes' + interval '1 second' AS verify_for_token_ttl
  FROM authx.signing_keys ORDER BY created_at;
SELECT access_token AS at5 FROM authx.token_issue(:'a') \gset
SELECT regress.jwt_part(:'at5', 1)::jsonb->>'kid' = :'kid2' AS signed_with_new_key,
       authx.token_verify(:'at5') IS NOT NULL AS new_verifies,
       authx.token_verify(:'at1') IS NOT NULL AS old_verifies;
SELECT array_agg(k->>'kid' = :'kid2' ORDER BY ord) AS jwks_newest_first
  FROM jsonb_array_elements(authx.jwks()->'keys') WITH ORDINALITY AS j(k, ord);
-- Once verify_until has passed: out of jwks, its tokens refused.
UPDATE authx.signing_keys SET verify_until = clock_timestamp() - interval '1 second' WHERE kid = :'kid1';
SELECT authx.token_verify(:'at1') IS NULL AS old_refused, authx.token_verify(:'at5') IS NOT NULL AS new_verifies;
SELECT jsonb_array_length(authx.jwks()->'keys') AS keys, authx.jwks()->'keys'->0->>'kid' = :'kid2' AS the_new_one;
-- (The maintenance worker deletes such a key within a second; done here so
-- that what follows does not depend on when.)
DELETE FROM authx.signing_keys WHERE kid = :'kid1';
-- HS256: a key of its own, made on first use; its tokens verify; never in
-- jwks; its secret only through signing_key_secret.
SET authx.token_alg = 'HS256';
SELECT access_token AS hs1, refresh_token AS hs_rt FROM authx.token_issue(:'a') \gset
SELECT regexp_replace(regress.jwt_part(:'hs1', 1), '"kid":"[A-Za-z0-9_-]{16}"', '"kid":"<kid>"') AS header,
       length(split_part(:'hs1', '.', 3)) AS signature_chars,
       authx.token_verify(:'hs1') IS NOT NULL AS verifies,
       authx.token_verify(regress.tamper(:'hs1', 3)) IS NULL AS tampered_refused;
SELECT alg, public_key IS NULL AS no_public_key, octet_length(private_sealed) AS sealed_bytes
  FROM authx.signing_keys WHERE alg = 'HS256';
SELECT octet_length(authx.signing_key_secret(regress.jwt_part(:'hs1', 1)::jsonb->>'kid')) AS secret_bytes;
SELECT jsonb_array_length(authx.jwks()->'keys') AS jwks_keys, authx.jwks()::text LIKE '%HS256%' AS hs256_listed;
-- A refresh signs with the key of authx.token_alg now.
RESET authx.token_alg;
SELECT regress.jwt_part(access_token, 1)::jsonb->>'alg' AS alg FROM authx.token_refresh(:'hs_rt');
-- HS256 tokens still verify with EdDSA the default.
SELECT authx.token_verify(:'hs1') IS NOT NULL AS hs256_verifies;

-- ================================================================ trusted devices
SELECT authx.user_create('tok-m@example.com', 'correct horse battery') AS m \gset
SELECT secret AS m_secret FROM authx.totp_enroll(:'m', 'Example Corp') \gset
SELECT authx.totp_confirm(:'m', regress.tok_totp(:'m_secret')) AS confirmed;
-- TOTP enabled: login asks for the second factor.
SELECT status FROM authx.login('tok-m@example.com', 'correct horse battery', '192.0.2.44');
-- Trusting a device: an axd_ token, shown once, stored as sha256.
SELECT authx.device_trust(:'m', '  laptop-fingerprint-1 ', 'Work laptop') AS dev1 \gset
SELECT :'dev1' ~ '^axd_[A-Za-z0-9_-]{43}$' AS device_token_format;
SELECT count(*) AS stored, count(*) FILTER (WHERE token_hash = sha256(convert_to(:'dev1', 'UTF8'))) AS as_sha256,
       count(*) FILTER (WHERE d::text LIKE '%' || substr(:'dev1', 5) || '%') AS token_anywhere
  FROM authx.trusted_devices d WHERE user_id = :'m';
SELECT name, fingerprint, expires_at BETWEEN clock_timestamp() + interval '30 days' - interval '1 minute'
                                         AND clock_timestamp() + interval '30 days' AS thirty_days,
       last_used_at IS NULL AS never_used
  FROM authx.devices(:'m');
-- With the device token: a session straight away, the device touched.
SELECT status, user_id = :'m' AS same_user, session_token ~ '^axs_' AS session
  FROM authx.login('tok-m@example.com', 'correct horse battery', '192.0.2.44', 'regress/tokens', :'dev1');
SELECT last_used_at IS NOT NULL AS used FROM authx.devices(:'m');
-- The wrong password with it: invalid_credentials.
SELECT status, session_token FROM authx.login('tok-m@example.com', 'wrong password', '192.0.2.44', NULL, :'dev1');
-- Another user's device, a malformed or unknown one: the second factor.
SELECT authx.device_trust(:'b', 'b-phone', 'Phone') AS dev_b \gset
SELECT v.what, l.status
  FROM (VALUES ('another user''s device', :'dev_b'), ('NULL', NULL), ('empty', ''),
               ('unknown', 'axd_' || repeat('A', 43)), ('upper case prefix', 'AXD_' || substr(:'dev1', 5)),
               ('a session token', 'axs_' || substr(:'dev1', 5)), ('too long', :'dev1' || 'A')) v(what, tok),
       authx.login('tok-m@example.com', 'correct horse battery', '192.0.2.44', NULL, v.tok) l;
-- A user without TOTP logs in as always, device or not.
SELECT status FROM authx.login('tok-b@example.com', 'correct horse battery', NULL, NULL, :'dev1');
-- Trusting the same fingerprint again replaces the token; a second device
-- is listed too, newest first.
SELECT authx.device_trust(:'m', 'laptop-fingerprint-1', 'Work laptop') AS dev1b \gset
SELECT authx.device_trust(:'m', 'phone-fingerprint-2', NULL, '1 hour') AS dev2 \gset
SELECT name, fingerprint, expires_at < clock_timestamp() + interval '2 hours' AS short FROM authx.devices(:'m');
SELECT v.what, l.status
  FROM (VALUES ('replaced', :'dev1'), ('replacement', :'dev1b'), ('second device', :'dev2')) v(what, tok),
       authx.login('tok-m@example.com', 'correct horse battery', '192.0.2.44', NULL, v.tok) l;
-- Revoked: asks again.  device_revoke answers false the second time.
SELECT device_id AS dev2_id FROM authx.devices(:'m') WHERE fingerprint = 'phone-fingerprint-2' \gset
SELECT authx.device_revoke(:'dev2_id') AS revoked, authx.device_revoke(:'dev2_id') AS again,
       authx.device_revoke('00000000-0000-0000-0000-000000000000') AS unknown, authx.device_revoke(NULL) AS null_id;
SELECT status FROM authx.login('tok-m@example.com', 'correct horse battery', '192.0.2.44', NULL, :'dev2');
SELECT fingerprint FROM authx.devices(:'m');
-- Expired: asks again, and is no longer listed.
UPDATE authx.trusted_devices SET expires_at = clock_timestamp() - interval '1 second'
 WHERE token_hash = sha256(convert_to(:'dev1b', 'UTF8'));
SELECT status FROM authx.login('tok-m@example.com', 'correct horse battery', '192.0.2.44', NULL, :'dev1b');
SELECT count(*) AS listed FROM authx.devices(:'m');
-- Removing TOTP revokes the devices trusted on its strength.
SELECT authx.device_trust(:'m', 'tablet-3', 'Tablet') AS dev3 \gset
SELECT count(*) AS listed FROM authx.devices(:'m');
SELECT authx.totp_disable(:'m') AS totp_disabled;
SELECT count(*) AS listed FROM authx.devices(:'m');
SELECT count(*) FILTER (WHERE revoked_at IS NULL) AS unrevoked FROM authx.trusted_devices WHERE user_id = :'m';
-- Unknown users have no devices; NULL: no rows.
SELECT count(*) AS unknown_user FROM authx.devices('00000000-0000-0000-0000-000000000000');
SELECT count(*) AS null_user FROM authx.devices(NULL);

-- ================================================================ email verification
SELECT authx.user_create('Tok-V@Example.com', 'correct horse battery') AS v \gset
SELECT email_verified FROM authx.user_get(:'v');
SELECT token AS ev1, email AS ev_email, expires_at AS ev_exp FROM authx.email_verification_issue(:'v') \gset
SELECT :'ev1' ~ '^axv_[A-Za-z0-9_-]{43}$' AS token_format, :'ev_email' AS email,
       :'ev_exp'::timestamptz BETWEEN clock_timestamp() + interval '1 day' - interval '1 minute'
                                  AND clock_timestamp() + interval '1 day' AS one_day;
SELECT purpose, email, used_at IS NULL AS unused, token_hash = sha256(convert_to(:'ev1', 'UTF8')) AS as_sha256
  FROM authx.user_tokens WHERE user_id = :'v';
-- A new one replaces the unused one.
SELECT token AS ev2 FROM authx.email_verification_issue(:'v') \gset
SELECT count(*) AS rows FROM authx.user_tokens WHERE user_id = :'v';
SELECT status, user_id FROM authx.email_verification_confirm(:'ev1');
SELECT status, user_id = :'v' AS same_user FROM authx.email_verification_confirm(:'ev2');
SELECT email_verified FROM authx.user_get(:'v');
SELECT status, user_id FROM authx.email_verification_confirm(:'ev2');
-- Expired.
SELECT token AS ev3 FROM authx.email_verification_issue(:'v') \gset
UPDATE authx.user_tokens SET expires_at = clock_timestamp() - interval '1 second'
 WHERE token_hash = sha256(convert_to(:'ev3', 'UTF8'));
SELECT status, user_id FROM authx.email_verification_confirm(:'ev3');
-- authx.verification_ttl.
SET authx.verification_ttl = '2h';
SELECT expires_at BETWEEN clock_timestamp() + interval '2 hours' - interval '1 minute'
                      AND clock_timestamp() + interval '2 hours' AS two_hours
  FROM authx.email_verification_issue(:'v');
RESET authx.verification_ttl;
-- The account changed its address meanwhile, or is no longer active:
-- invalid.
SELECT token AS ev4 FROM authx.email_verification_issue(:'v') \gset
UPDATE authx.users SET email = 'tok-v2@example.com' WHERE id = :'v';
SELECT status, user_id FROM authx.email_verification_confirm(:'ev4');
UPDATE authx.users SET email = :'ev_email' WHERE id = :'v';
SELECT status FROM authx.email_verification_confirm(:'ev4');
SELECT token AS ev5 FROM authx.email_verification_issue(:'v') \gset
SELECT authx.user_disable(:'v');
SELECT status, user_id FROM authx.email_verification_confirm(:'ev5');
SELECT authx.user_enable(:'v');
-- Not a verification token: invalid, never an error.
SELECT token AS pr_v FROM authx.password_reset_issue('tok-v@example.com') \gset
SELECT w.what, c.status, c.user_id
  FROM (VALUES ('NULL', NULL), ('empty', ''), ('prefix only', 'axv_'), ('unknown', 'axv_' || repeat('A', 43)),
               ('a reset token', :'pr_v'), ('a reset token as axv_', 'axv_' || substr(:'pr_v', 5)),
               ('too long', :'ev5' || 'A'), ('one megabyte', repeat('x', 1000000))) w(what, tok),
       authx.email_verification_confirm(w.tok) c;

-- ================================================================ password reset
SELECT authx.user_create('tok-r@example.com', 'correct horse battery') AS r \gset
SELECT secret AS r_secret FROM authx.totp_enroll(:'r') \gset
SELECT authx.totp_confirm(:'r', regress.tok_totp(:'r_secret')) AS confirmed;
SELECT authx.device_trust(:'r', 'r-laptop') AS r_dev \gset
SELECT session_token AS r_s FROM authx.login('tok-r@example.com', 'correct horse battery', '192.0.2.45', NULL, :'r_dev')
\gset
SELECT refresh_token AS r_rt, access_token AS r_at FROM authx.token_issue(:'r', :'r_s') \gset
SELECT refresh_token AS r_rt2 FROM authx.token_issue(:'r') \gset
-- Failed logins counted against the account (lockout threshold 5).
SELECT n, l.status
  FROM generate_series(1, 5) n, authx.login('tok-r@example.com', CASE WHEN n > 0 THEN 'wrong password' END, '192.0.2.45') l;
SELECT status FROM authx.login('tok-r@example.com', 'correct horse battery', '192.0.2.45', NULL, :'r_dev');
-- Issue: for the active account with that email (any case, blanks around).
SELECT token AS pr1, expires_at AS pr1_exp FROM authx.password_reset_issue('  TOK-R@example.com ') \gset
SELECT :'pr1' ~ '^axp_[A-Za-z0-9_-]{43}$' AS token_format,
       :'pr1_exp'::timestamptz BETWEEN clock_timestamp() + interval '1 hour' - interval '1 minute'
                                   AND clock_timestamp() + interval '1 hour' AS one_hour;
SELECT purpose, email, token_hash = sha256(convert_to(:'pr1', 'UTF8')) AS as_sha256
  FROM authx.user_tokens WHERE user_id = :'r';
-- The same shape, NULLs, for an unknown or disabled account, no email or
-- not an email.
SELECT token, expires_at FROM authx.password_reset_issue('tok-nobody@example.com');
SELECT token, expires_at FROM authx.password_reset_issue('tok-c@example.com');
SELECT token, expires_at FROM authx.password_reset_issue(NULL);
SELECT token, expires_at FROM authx.password_reset_issue('not an email', '192.0.2.46');
-- A password the policy refuses: 22023, and the token stays usable.
SELECT regress.try(format('authx.password_reset_confirm(%L, %L)', :'pr1', 'short')) AS weak;
SELECT regress.try(format('authx.password_reset_confirm(%L, NULL)', :'pr1')) AS null_password;
SELECT used_at IS NULL AS unused FROM authx.user_tokens WHERE token_hash = sha256(convert_to(:'pr1', 'UTF8'));
-- ok: the new password works, the old does not; every session, refresh
-- family and trusted device ends; the lockout is cleared; the address
-- counts as verified.
SELECT email_verified FROM authx.user_get(:'r');
SELECT count(*) AS sessions_before FROM authx.sessions(:'r');
SELECT status, user_id = :'r' AS same_user FROM authx.password_reset_confirm(:'pr1', 'a brand new passphrase');
SELECT count(*) AS sessions_after FROM authx.sessions(:'r');
SELECT count(*) AS families, count(*) FILTER (WHERE revoke_reason = 'password_reset') AS revoked_for_reset
  FROM authx.refresh_families WHERE user_id = :'r';
SELECT count(*) AS devices_listed FROM authx.devices(:'r');
SELECT authx.session_validate(:'r_s') IS NULL AS session_ended, authx.token_verify(:'r_at') IS NULL AS access_refused;
SELECT status FROM authx.token_refresh(:'r_rt');
SELECT status FROM authx.token_refresh(:'r_rt2');
SELECT email_verified FROM authx.user_get(:'r');
SELECT status FROM authx.login('tok-r@example.com', 'correct horse battery', '192.0.2.45');
SELECT status FROM authx.login('tok-r@example.com', 'a brand new passphrase', '192.0.2.45', NULL, :'r_dev');
-- Used, expired, or not ours.
SELECT status, user_id FROM authx.password_reset_confirm(:'pr1', 'yet another passphrase');
SELECT token AS pr2 FROM authx.password_reset_issue('tok-r@example.com') \gset
UPDATE authx.user_tokens SET expires_at = clock_timestamp() - interval '1 second'
 WHERE token_hash = sha256(convert_to(:'pr2', 'UTF8'));
SELECT status, user_id FROM authx.password_reset_confirm(:'pr2', 'yet another passphrase');
SELECT w.what, c.status, c.user_id
  FROM (VALUES ('NULL', NULL), ('empty', ''), ('unknown', 'axp_' || repeat('A', 43)),
               ('a verification token', :'ev5'), ('as axp_', 'axp_' || substr(:'ev5', 5)),
               ('one megabyte', repeat('x', 1000000))) w(what, tok),
       authx.password_reset_confirm(w.tok, 'yet another passphrase') c;
SELECT authx.password_verify(:'r', 'a brand new passphrase') AS password_unchanged;
-- authx.reset_ttl sets how long a reset token lasts.
SET authx.reset_ttl = '10min';
SELECT token AS pr3, expires_at < clock_timestamp() + interval '11 minutes' AS ten_minutes
  FROM authx.password_reset_issue('tok-r@example.com') \gset
RESET authx.reset_ttl;
SELECT :'ten_minutes' AS ten_minutes;
-- The password_reset policy: 3 per 15 minutes per email (tok-r has had
-- 3 already) and per address: then NULLs, for known and unknown alike.
SELECT token, expires_at FROM authx.password_reset_issue('tok-r@example.com');
SELECT status FROM authx.password_reset_confirm(:'pr3', 'yet another passphrase');
SELECT n, p.token IS NOT NULL AS issued
  FROM generate_series(1, 3) n, authx.password_reset_issue(CASE WHEN n > 0 THEN 'tok-b@example.com' END, '198.51.100.61') p;
SELECT token IS NOT NULL AS issued FROM authx.password_reset_issue('tok-a@example.com', '198.51.100.61');
SELECT token IS NOT NULL AS issued FROM authx.password_reset_issue('tok-a@example.com', '198.51.100.62');

-- ================================================================ audit
SELECT authx.audit_flush();
SELECT u.who, a.event_type, a.severity, a.details - ARRAY['family', 'session_id', 'device_id', 'kid', 'retired',
                                                           'sessions_revoked', 'ttl_s', 'ip', 'expires_at']
           AS details, count(*)
  FROM authx.audit_log a
  JOIN (VALUES ('a', :'a'::uuid), ('b', :'b'::uuid), ('m', :'m'::uuid), ('r', :'r'::uuid),
               ('v', :'v'::uuid)) u(who, id) ON u.id = a.user_id
 WHERE a.id > :audit0
   AND (a.event_type LIKE 'token.%' OR a.event_type LIKE 'device.%' OR a.event_type LIKE 'email.%'
        OR a.event_type LIKE 'password.%' OR (a.event_type = 'login.succeeded' AND a.details ? 'mfa'))
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 4::text;
-- A reuse names the generations; the keys' events have no user.
SELECT severity, details->'generation' AS generation, details->'newest' AS newest
  FROM authx.audit_log WHERE id > :audit0 AND event_type = 'token.refresh_reused' ORDER BY id LIMIT 1;
SELECT event_type, severity, details->>'alg' AS alg, count(*)
  FROM authx.audit_log WHERE id > :audit0 AND event_type LIKE 'token.key_%' GROUP BY 1, 2, 3 ORDER BY 1, 3;
SELECT event_type, severity, details->>'reason' AS reason, count(*)
  FROM authx.audit_log WHERE id > :audit0 AND user_id IS NULL AND event_type LIKE 'password.%'
 GROUP BY 1, 2, 3 ORDER BY 1, 3;

-- ================================================================ privileges
SELECT authx.user_create('tok-h@example.com', 'correct horse battery') AS h \gset
SET ROLE authx_app;
SELECT access_token AS h_at FROM authx.token_issue(:'h') \gset
SELECT status FROM authx.token_refresh('axr_x');
SELECT authx.token_verify('x') IS NULL AS refused, jsonb_array_length(authx.jwks()->'keys') > 0 AS jwks;
SELECT authx.device_trust(:'h', 'h-device') ~ '^axd_' AS device_token;
SELECT count(*) AS devices FROM authx.devices(:'h');
SELECT authx.device_revoke('00000000-0000-0000-0000-000000000000') AS revoked;
SELECT token ~ '^axv_' AS token FROM authx.email_verification_issue(:'h');
SELECT status FROM authx.email_verification_confirm('axv_x');
SELECT token ~ '^axp_' AS token FROM authx.password_reset_issue('tok-h@example.com');
SELECT status FROM authx.password_reset_confirm('axp_x', 'correct horse battery');
SELECT * FROM authx.signing_keys;
SELECT * FROM authx.refresh_families;
SELECT * FROM authx.trusted_devices;
SELECT * FROM authx.user_tokens;
SELECT authx.signing_key_rotate();
SELECT authx.signing_key_secret('AAAAAAAAAAAAAAAA');
SELECT authx._jwt_sign('{}');
SELECT authx._ed25519('\x00', '\x00');
SELECT authx._refresh_token_parse('axr_x');
SELECT authx._signing_key_new('EdDSA');
SELECT authx._device_check(:'h', 'axd_x');
SET authx.token_ttl = 60;
SET authx.token_role = 'postgres';
RESET ROLE;
SET ROLE authx_admin;
SELECT count(*) FROM authx.signing_keys;
SELECT count(*) FROM authx.refresh_families;
SELECT count(*) FROM authx.trusted_devices;
SELECT count(*) FROM authx.user_tokens;
SELECT authx.signing_key_secret('AAAAAAAAAAAAAAAA');
SELECT authx.signing_key_rotate() ~ '^[A-Za-z0-9_-]{16}$' AS rotated;
SET authx.token_alg = 'HS256';
RESET ROLE;
SELECT authx.token_verify(:'h_at')->>'sub' = :'h' AS app_token_verifies;

-- ================================================================ maintenance
-- A day after they end: revoked refresh families (those of revoked
-- sessions went with their sessions, purged first; here one revoked by
-- hand while its session lives), trusted devices revoked or expired,
-- verification and reset tokens; and signing keys past verify_until (the
-- two the administrator's rotation retired above).  A verification token
-- good for 3 days, live families and devices stay.
SELECT refresh_token AS mt0 FROM authx.token_issue(:'b') \gset
UPDATE authx.refresh_families SET revoked_at = now(), revoke_reason = 'regress'
 WHERE head_hashes[1] = sha256(convert_to(:'mt0', 'UTF8'));
SET authx.verification_ttl = '3d';
SELECT token AS ev_long FROM authx.email_verification_issue(:'h') \gset
RESET authx.verification_ttl;
SELECT count(*) AS live_families FROM authx.refresh_families f JOIN authx.sessions s ON s.id = f.session_id
 WHERE f.revoked_at IS NULL AND s.revoked_at IS NULL AND s.expires_at > now() + interval '2 days' \gset
SELECT count(*) AS live_devices FROM authx.trusted_devices WHERE revoked_at IS NULL AND expires_at > now() \gset
SELECT authx._maintenance_run_at(now() + interval '2 days') AS mr \gset
SELECT :'mr'::jsonb -> 'tokens' AS tokens, :'mr'::jsonb -> 'devices' AS devices,
       :'mr'::jsonb -> 'user_tokens' AS user_tokens;
SELECT (SELECT count(*) FROM authx.refresh_families WHERE revoked_at IS NULL) = :live_families AS live_families_kept,
       (SELECT count(*) FROM authx.refresh_families WHERE revoked_at IS NOT NULL) AS revoked_families_left,
       (SELECT count(*) FROM authx.trusted_devices) = :live_devices AS live_devices_kept,
       (SELECT count(*) FROM authx.user_tokens) AS user_tokens_left,
       (SELECT status FROM authx.email_verification_confirm(:'ev_long')) AS long_token,
       (SELECT count(*) FROM authx.signing_keys WHERE retired_at IS NOT NULL) AS retired_keys_left;
-- The tokens those keys signed are refused; new ones are signed by the key
-- that replaced them.
SELECT access_token AS at6 FROM authx.token_issue(:'a') \gset
SELECT authx.token_verify(:'at5') IS NULL AS eddsa_refused, authx.token_verify(:'hs1') IS NULL AS hs256_refused,
       authx.token_verify(:'at6') IS NOT NULL AS new_verifies;

-- ================================================================ invalid input
SELECT session_token AS b_live FROM authx.session_create(:'b') \gset
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.token_issue(NULL)$$),
    ($$authx.token_issue('00000000-0000-0000-0000-000000000000')$$),
    ($$authx.token_issue(authx.user_find('tok-c@example.com'))$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, '[]')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, '"acme"')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, 'null')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, '{"sub": "someone"}')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, '{"exp": 9999999999}')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, '{"sid": null}')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, '{"role": "postgres"}')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, '{"roles": ["admin"]}')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, '{"permissions": ["*"]}')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, '{"ok": 1, "aud": "x"}')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, jsonb_build_object('x', repeat('a', 4087)))$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, jsonb_build_object('x', repeat('a', 4088)))$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), NULL, NULL)$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), 'garbage')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), '')$$),
    ($$authx.token_issue(authx.user_find('tok-a@example.com'), 'axs_' || repeat('A', 43))$$),
    ($$authx.device_trust(NULL, 'fp')$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), NULL)$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), '')$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), '   ')$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), repeat('f', 513))$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), repeat('f', 512))$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), 'fp', repeat('n', 201))$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), 'fp', repeat('n', 200))$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), 'fp', NULL, '0')$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), 'fp', NULL, '-1 day')$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), 'fp', NULL, '1 year 1 second')$$),
    ($$authx.device_trust(authx.user_find('tok-b@example.com'), 'fp', NULL, '1 year')$$),
    ($$authx.device_trust('00000000-0000-0000-0000-000000000000', 'fp')$$),
    ($$authx.device_trust(authx.user_find('tok-c@example.com'), 'fp')$$),
    ($$authx.email_verification_issue(NULL)$$),
    ($$authx.email_verification_issue('00000000-0000-0000-0000-000000000000')$$),
    ($$authx.email_verification_issue(authx.user_find('tok-c@example.com'))$$),
    ($$authx.signing_key_secret('AAAAAAAAAAAAAAAA')$$),
    ($$authx.signing_key_secret((SELECT kid FROM authx.signing_keys WHERE alg = 'EdDSA' LIMIT 1))$$),
    ($$authx._signing_key_new('RS256')$$),
    ($$authx._ed25519('\x00', '\x00')$$)
) v(call);
-- A session token that is not a live session of this user.
SELECT regress.try(format('authx.token_issue(%L, %L)', :'a', :'b_live')) AS another_users_session;
SELECT regress.try(format('authx.token_issue(%L, %L)', :'a', :'a_s1')) AS revoked_session;
SELECT regress.try(format('authx.token_issue(%L, %L)', :'a', :'a_s2')) AS expired_session;
SELECT regress.try(format('authx.token_issue(%L, %L)', :'b', :'b_live')) AS the_users_own;

-- ================================================================ review fixes
-- A refresh token minted by a rotation that rolled back was never handed
-- out: invalid, and the family lives on.
SELECT authx.user_create('tok-x@example.com', 'correct horse battery') AS x \gset
SELECT refresh_token AS x0 FROM authx.token_issue(:'x') \gset
BEGIN;
SELECT refresh_token AS x1 FROM authx.token_refresh(:'x0') \gset
ROLLBACK;
SELECT (SELECT status FROM authx.token_refresh(:'x1')) AS never_handed_out,
       (SELECT status FROM authx.token_refresh(:'x0')) AS the_real_one;
-- Issuer and audience, when set, must match.
SET authx.token_issuer = 'https://a.example';
SET authx.token_audience = 'api-a';
SELECT access_token AS xa FROM authx.token_issue(:'x') \gset
SELECT authx.token_verify(:'xa') IS NOT NULL AS same_iss_aud;
SET authx.token_audience = 'api-b';
SELECT authx.token_verify(:'xa') IS NULL AS other_audience_refused;
SET authx.token_audience = '';
SET authx.token_issuer = 'https://b.example';
SELECT authx.token_verify(:'xa') IS NULL AS other_issuer_refused;
RESET authx.token_issuer;
RESET authx.token_audience;
SELECT authx.token_verify(:'xa') IS NOT NULL AS unset_accepts;
-- A token too long to verify is not issued.
SELECT authx.role_create('tok_many') AS created;
SELECT count(authx.role_grant('tok_many', format('resource%s:read', i))) AS granted FROM generate_series(1, 1200) i;
SELECT authx.user_grant(:'x', 'tok_many') AS granted;
SELECT regress.try(format('authx.token_issue(%L)', :'x')) AS too_long;
SELECT authx.role_drop('tok_many') AS dropped;
-- A device trusted before TOTP was enabled does not skip it.
SELECT authx.device_trust(:'x', 'fp-before-mfa') AS xd \gset
SELECT secret AS x_secret FROM authx.totp_enroll(:'x') \gset
SELECT authx.totp_confirm(:'x', regress.tok_totp(:'x_secret')) AS confirmed;
SELECT count(*) AS devices_left FROM authx.devices(:'x');
SELECT status FROM authx.login('tok-x@example.com', 'correct horse battery', NULL, NULL, :'xd');
SELECT authx.user_delete(:'x') AS deleted;

-- ================================================================ clean up
SELECT who, authx.user_delete(id) AS deleted
  FROM (VALUES ('a', :'a'::uuid), ('b', :'b'::uuid), ('c', :'c'::uuid), ('h', :'h'::uuid), ('m', :'m'::uuid),
               ('r', :'r'::uuid), ('v', :'v'::uuid)) u(who, id);
-- A deleted account's tokens: refused.
SELECT authx.token_verify(:'at5') IS NULL AS access_refused, (SELECT status FROM authx.token_refresh(:'p0')) AS refresh;
SELECT authx.role_drop('tok_reader');
UPDATE authx.rate_limit_policies SET max = 5, seeded = true WHERE name IN ('login', 'mfa');
DROP FUNCTION regress.tok_totp(text);
DROP FUNCTION regress.tok_b32(text);
DROP FUNCTION regress.b64url(text);
DROP FUNCTION regress.tamper(text, integer, integer);
DROP FUNCTION regress.claim_names(jsonb);
DROP FUNCTION regress.jwt_claims(text);
DROP FUNCTION regress.jwt_part(text, integer);
DROP FUNCTION regress.b64url_decode(text);

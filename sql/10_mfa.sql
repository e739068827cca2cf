--
-- MFA: the TOTP primitive against RFC 6238 (and RFC 4226) test vectors;
-- enrolment (totp_enroll, the otpauth URI, the sealed seed, a pending
-- enrolment replaced), confirmation (totp_confirm), verification
-- (totp_verify: each time step once, the window, spaces and dashes);
-- recovery codes (generated, spent once, normalised, replaced); login
-- answering mfa_required and login_mfa (a TOTP code or a recovery code, the
-- challenge single use, unknown, expired, for a disabled account, from a
-- blocked address); other TOTP shapes (8 digits, 60 s); totp_disable;
-- account deletion; maintenance; the attempt limits (the seeded mfa policy,
-- the failure budget); audit events; privileges; then every invalid input
-- (one line each, through regress.try) and the answers that never raise.
--
-- Codes are computed here from the secret totp_enroll returns (a base32
-- decoder below, then authx._totp_code at clock_timestamp()) and never
-- printed, only what the functions answer.  Secrets, tokens, user ids and
-- timestamps are masked or compared, never printed.  A code that must be
-- refused as a replay is the very code accepted before (\gset), so a time
-- step ending between two statements changes nothing.
--
-- These logins and second factors test MFA, not the login and mfa rate
-- policies: both are lifted until the limits part (the mfa policy and the
-- failure budget are then exercised with their own users), and restored.
--
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
\set SHOW_CONTEXT never
UPDATE authx.rate_limit_policies SET max = 1000000 WHERE name IN ('login', 'mfa');
SET authx.mfa_max_failures = 1000;
SELECT coalesce(max(id), 0) AS audit0 FROM authx.audit_log \gset

-- RFC 4648 base32 (upper case, no padding) to bytes.
CREATE FUNCTION regress.base32_decode(p text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT decode(coalesce(string_agg(lpad(to_hex(substr(b.bits, 8 * i + 1, 8)::bit(8)::int), 2, '0'), ''
                                      ORDER BY i), ''), 'hex')
      FROM (SELECT string_agg((strpos('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', c) - 1)::bit(5)::text, '' ORDER BY o)
                   AS bits
              FROM regexp_split_to_table(p, '') WITH ORDINALITY AS t(c, o)) b,
           generate_series(0, length(b.bits) / 8 - 1) AS i
$$;
-- The code of a base32 secret p_steps time steps from now.
CREATE FUNCTION regress.totp(p_secret text, p_steps integer DEFAULT 0, p_digits integer DEFAULT 6,
                             p_period integer DEFAULT 30) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT authx._totp_code(regress.base32_decode(p_secret),
                            clock_timestamp() + p_steps * p_period * interval '1 second', p_digits, p_period)
$$;
-- A well-formed code that is none of the codes of three steps around now.
CREATE FUNCTION regress.wrong_code(p_secret text) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT c FROM (SELECT lpad(n::text, 6, '0') AS c FROM generate_series(0, 99) n) v
     WHERE c NOT IN (SELECT regress.totp(p_secret, k) FROM generate_series(-3, 3) k)
     ORDER BY c LIMIT 1
$$;

-- ================================================================ RFC vectors
-- RFC 6238 Appendix B, SHA-1: the seed is the ASCII of 12345678901234567890,
-- 8 digits, 30-second steps.
SELECT t AS unix_time, authx._totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(t), 8, 30) AS totp
  FROM unnest('{59, 1111111109, 1111111111, 1234567890, 2000000000, 20000000000}'::bigint[]) t;
-- RFC 4226 Appendix D (HOTP, 6 digits): counter c is the step of c * 30 s.
SELECT c AS counter, authx._totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(c * 30)) AS hotp
  FROM generate_series(0, 9) c;
-- The step holding a time is floor(unix time / period): the last instant of
-- step 37037036 and the first of step 37037037 (1111111110 = 37037037 * 30),
-- and that step with a 60-second period.
SELECT authx._totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(1111111109.999), 8) AS end_of_step,
       authx._totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(1111111110), 8) AS next_step,
       authx._totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(2222222220), 8, 60)
       = authx._totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(1111111110), 8, 30)
           AS same_step_of_60s;
-- Before 1970 is step 0; STRICT: NULL in, NULL out.
SELECT authx._totp_code(convert_to('12345678901234567890', 'UTF8'), '1969-12-31 23:59:59+00') AS before_1970,
       authx._totp_code(NULL, now()) IS NULL AS null_seed, authx._totp_code('\x00', NULL) IS NULL AS null_time;
-- The decoder used below, on the RFC seed.
SELECT regress.base32_decode('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ') = convert_to('12345678901234567890', 'UTF8')
       AS base32_decoder;

-- ================================================================ helpers
-- Percent-encoding for the otpauth URI: RFC 3986 unreserved characters kept.
SELECT p, authx._uri_encode(p) AS encoded
  FROM unnest(ARRAY['Example Corp', 'a.b_c~d-e', 'user+tag@example.com', '/:?&=#%', '']) p;
SELECT authx._uri_encode(chr(223) || chr(233) || chr(8364)) AS non_ascii_as_utf8;
-- Recovery codes are hashed with the user id, case, spaces and dashes aside.
SELECT authx._recovery_hash('00000000-0000-0000-0000-000000000001', 'ABCD-ef01 2345')
       = authx._recovery_hash('00000000-0000-0000-0000-000000000001', 'abcdef012345') AS normalised,
       authx._recovery_hash('00000000-0000-0000-0000-000000000001', 'abcdef012345')
       = authx._recovery_hash('00000000-0000-0000-0000-000000000002', 'abcdef012345') AS same_for_another_user,
       octet_length(authx._recovery_hash('00000000-0000-0000-0000-000000000001', 'abcdef012345')) AS hash_bytes;

-- ================================================================ enrolment
SELECT authx.user_create('mfa-a@example.com', 'correct horse battery') AS a \gset
SELECT secret AS a_secret1, otpauth_uri AS a_uri1 FROM authx.totp_enroll(:'a', 'Example Corp') \gset
-- A 160-bit secret in base32, and the URI an authenticator app reads.
SELECT :'a_secret1' ~ '^[A-Z2-7]{32}$' AS secret_base32_160_bits,
       octet_length(regress.base32_decode(:'a_secret1')) AS seed_bytes,
       replace(:'a_uri1', :'a_secret1', '<secret>') AS otpauth_uri;
-- The default issuer.
SELECT replace(otpauth_uri, secret, '<secret>') AS default_issuer FROM authx.totp_enroll(:'a');
-- Stored sealed (version, nonce, ciphertext, tag: 1 + 24 + 20 + 16 bytes),
-- never in clear; pending until confirmed; mfa not yet enabled.
SELECT secret AS a_secret FROM authx.totp_enroll(:'a', 'Example Corp') \gset
SELECT :'a_secret' <> :'a_secret1' AS new_secret, count(*) AS rows, bool_and(t.confirmed_at IS NULL) AS pending,
       min(t.digits) AS digits, min(t.period) AS period, min(t.last_step) AS last_step,
       min(octet_length(t.seed_sealed)) AS sealed_bytes,
       bool_and(position(regress.base32_decode(:'a_secret') IN t.seed_sealed) = 0) AS seed_not_in_clear,
       (SELECT mfa_enabled FROM authx.user_get(:'a')) AS mfa_enabled
  FROM authx.mfa_totp t WHERE t.user_id = :'a';
-- A pending enrolment asks nothing at login.
SELECT status FROM authx.login('mfa-a@example.com', 'correct horse battery', '192.0.2.31');

-- ================================================================ totp_confirm
-- The replaced secret's code and a wrong code are refused; the right one
-- enables TOTP and its step is spent.
SELECT authx.totp_confirm(:'a', regress.totp(:'a_secret1')) AS old_secret,
       authx.totp_confirm(:'a', regress.wrong_code(:'a_secret')) AS wrong_code;
SELECT regress.totp(:'a_secret') AS a_c0 \gset
SELECT authx.totp_confirm(:'a', :'a_c0') AS confirmed;
SELECT t.confirmed_at IS NOT NULL AS confirmed,
       t.last_step BETWEEN floor(extract(epoch FROM clock_timestamp()) / 30) - 1
                       AND floor(extract(epoch FROM clock_timestamp()) / 30) AS last_step_is_now,
       (SELECT mfa_enabled FROM authx.user_get(:'a')) AS mfa_enabled
  FROM authx.mfa_totp t WHERE t.user_id = :'a';
-- Nothing pending any more.
SELECT authx.totp_confirm(:'a', regress.totp(:'a_secret', 1)) AS again;

-- ================================================================ totp_verify
-- Each time step is good once: the confirming code is a replay, the next
-- step's code passes once, an earlier step never.
SELECT regress.totp(:'a_secret', 1) AS a_c1 \gset
SELECT authx.totp_verify(:'a', :'a_c0') AS confirm_code_replayed;
SELECT authx.totp_verify(:'a', :'a_c1') AS next_step;
SELECT authx.totp_verify(:'a', :'a_c1') AS replayed;
SELECT authx.totp_verify(:'a', regress.totp(:'a_secret', -1)) AS earlier_step;
-- authx.totp_window steps either side (1): three steps ahead is refused,
-- accepted with a window of 3, and may carry spaces and dashes.
SELECT regress.totp(:'a_secret', 3) AS a_c3 \gset
SELECT authx.totp_verify(:'a', :'a_c3') AS three_steps_ahead;
SET authx.totp_window = 3;
SELECT authx.totp_verify(:'a', ' ' || substr(:'a_c3', 1, 3) || ' - ' || substr(:'a_c3', 4)) AS window_3_spaced;
RESET authx.totp_window;
SELECT t.last_step - floor(extract(epoch FROM clock_timestamp()) / 30) BETWEEN 2 AND 3 AS last_step_ahead
  FROM authx.mfa_totp t WHERE t.user_id = :'a';
-- Bad codes are false, never an error.
SELECT v.what, authx.totp_verify(:'a', v.code) AS verified
  FROM (VALUES ('NULL', NULL), ('empty', ''), ('letters', 'abcdef'), ('5 digits', '12345'), ('7 digits', '1234567'),
               ('8 digits', '12345678'), ('5 digits and a space', '123 45'), ('a sign', '+12345'),
               ('fullwidth digits', repeat(chr(65297), 6)), ('100000 digits', repeat('1', 100000))) v(what, code);
SELECT authx.totp_verify(:'a', regress.wrong_code(:'a_secret')) AS wrong_code;
-- Another user's seed does not open for this one: the sealed value of one
-- row copied to another (as a superuser could) matches nothing.
SELECT authx.user_create('mfa-e@example.com', 'correct horse battery') AS e \gset
SELECT secret AS e_secret FROM authx.totp_enroll(:'e', 'Example Corp') \gset
UPDATE authx.mfa_totp SET seed_sealed = (SELECT seed_sealed FROM authx.mfa_totp WHERE user_id = :'a')
 WHERE user_id = :'e';
SELECT authx.totp_confirm(:'e', regress.totp(:'a_secret', 2)) AS a_code_for_e,
       authx.totp_confirm(:'e', regress.totp(:'e_secret')) AS e_code_for_e;
SELECT count(*) AS e_pending FROM authx.mfa_totp WHERE user_id = :'e' AND confirmed_at IS NULL;

-- ================================================================ recovery codes
SELECT authx.recovery_codes_generate(:'a') AS a_codes \gset
SELECT cardinality(:'a_codes'::text[]) AS codes,
       (SELECT count(DISTINCT c) FROM unnest(:'a_codes'::text[]) c) AS distinct_codes,
       (SELECT bool_and(c ~ '^[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$') FROM unnest(:'a_codes'::text[]) c) AS format;
-- Stored as their hashes only.
SELECT count(*) AS stored, count(*) FILTER (WHERE used_at IS NULL) AS unused,
       count(*) FILTER (WHERE code_hash IN (SELECT authx._recovery_hash(:'a', c) FROM unnest(:'a_codes'::text[]) c))
           AS hashed
  FROM authx.mfa_recovery_codes WHERE user_id = :'a';
-- Once each; case, spaces and dashes do not matter.
SELECT authx.recovery_code_use(:'a', (:'a_codes'::text[])[1]) AS first_use,
       authx.recovery_code_use(:'a', (:'a_codes'::text[])[1]) AS second_use;
SELECT authx.recovery_code_use(:'a', upper(replace((:'a_codes'::text[])[2], '-', ''))) AS upper_no_dashes,
       authx.recovery_code_use(:'a', replace((:'a_codes'::text[])[3], '-', ' ')) AS spaces;
SELECT v.what, authx.recovery_code_use(:'a', v.code) AS used
  FROM (VALUES ('NULL', NULL), ('empty', ''), ('13 hex digits', 'ffff-ffff-ffff-0'), ('words', 'not a code'),
               ('100000 hex digits', repeat('f', 100000))) v(what, code);
-- Another user's code is not this user's.
SELECT authx.recovery_code_use(:'e', (:'a_codes'::text[])[4]) AS a_code_for_e;
SELECT count(*) FILTER (WHERE used_at IS NULL) AS unused, count(*) FILTER (WHERE used_at IS NOT NULL) AS used
  FROM authx.mfa_recovery_codes WHERE user_id = :'a';
-- New codes replace the old ones, used or not.
SELECT authx.recovery_codes_generate(:'a') AS a_codes2 \gset
SELECT authx.recovery_code_use(:'a', (:'a_codes'::text[])[5]) AS old_code,
       authx.recovery_code_use(:'a', (:'a_codes2'::text[])[1]) AS new_code;
SELECT count(*) FILTER (WHERE used_at IS NULL) AS unused, count(*) FILTER (WHERE used_at IS NOT NULL) AS used
  FROM authx.mfa_recovery_codes WHERE user_id = :'a';

-- ================================================================ login with a second factor
SELECT authx.user_create('mfa-b@example.com', 'correct horse battery') AS b \gset
SELECT secret AS b_secret FROM authx.totp_enroll(:'b', 'Example Corp') \gset
SELECT regress.totp(:'b_secret') AS b_c0 \gset
SELECT authx.totp_confirm(:'b', :'b_c0') AS confirmed;
SELECT authx.recovery_codes_generate(:'b') AS b_codes \gset
-- The right password: a challenge instead of a session.
SELECT status, user_id = :'b' AS same_user, session_token ~ '^axc_[A-Za-z0-9_-]{43}$' AS challenge_format,
       expires_at BETWEEN clock_timestamp() + interval '4 minutes 50 seconds'
                      AND clock_timestamp() + interval '5 minutes' AS expires_in_5_min
  FROM authx.login('mfa-b@example.com', 'correct horse battery', '192.0.2.31', 'regress/mfa');
SELECT session_token AS ch1 FROM authx.login(' MFA-B@example.com', 'correct horse battery', '192.0.2.31', 'regress/mfa')
\gset
SELECT count(*) AS sessions FROM authx.sessions(:'b');
-- Stored as sha256, with the address and user agent.
SELECT count(*) AS challenges, count(*) FILTER (WHERE token_hash = sha256(convert_to(:'ch1', 'UTF8'))) AS this_one,
       count(*) FILTER (WHERE c::text LIKE '%' || substr(:'ch1', 5) || '%') AS token_anywhere,
       min(ip) AS ip, min(user_agent) AS user_agent, bool_and(used_at IS NULL) AS unused
  FROM authx.mfa_challenges c WHERE user_id = :'b';
-- The wrong password: no challenge.
SELECT status, session_token IS NULL AS no_token FROM authx.login('mfa-b@example.com', 'wrong', '192.0.2.31');
-- A wrong code leaves the challenge usable; the right one opens a session.
SELECT status, user_id, session_token, expires_at FROM authx.login_mfa(:'ch1', regress.wrong_code(:'b_secret'));
SELECT status, user_id, session_token, expires_at FROM authx.login_mfa(:'ch1', NULL);
SELECT regress.totp(:'b_secret', 1) AS b_c1 \gset
SELECT status AS st, user_id AS uid, session_token AS tok, expires_at AS exp
  FROM authx.login_mfa(:'ch1', :'b_c1', '192.0.2.31', 'regress/mfa') \gset
SELECT :'st' AS status, :'uid' = :'b' AS same_user, :'tok' ~ '^axs_[A-Za-z0-9_-]{43}$' AS session_format,
       authx.session_validate(:'tok') = :'b' AS valid,
       :'exp'::timestamptz BETWEEN now() + interval '7 days' - interval '1 minute'
                               AND now() + interval '7 days 1 minute' AS one_week;
SELECT count(*) AS sessions, min(ip) AS ip, min(user_agent) AS user_agent FROM authx.sessions(:'b');
SELECT last_login_at > now() - interval '1 minute' AS last_login_set FROM authx.user_get(:'b');
-- Single use.
SELECT status FROM authx.login_mfa(:'ch1', regress.totp(:'b_secret', 1));
SELECT used_at IS NOT NULL AS used FROM authx.mfa_challenges WHERE token_hash = sha256(convert_to(:'ch1', 'UTF8'));
-- A recovery code instead (12 hex digits, dashes and spaces aside), once.
SELECT session_token AS ch2 FROM authx.login('mfa-b@example.com', 'correct horse battery', '192.0.2.31') \gset
SELECT status AS st, session_token AS tok FROM authx.login_mfa(:'ch2', upper((:'b_codes'::text[])[1])) \gset
SELECT :'st' AS status, authx.session_validate(:'tok') = :'b' AS valid;
SELECT session_token AS ch3 FROM authx.login('mfa-b@example.com', 'correct horse battery', '192.0.2.31') \gset
SELECT status FROM authx.login_mfa(:'ch3', (:'b_codes'::text[])[1]);
SELECT status FROM authx.login_mfa(:'ch3', replace((:'b_codes'::text[])[2], '-', ' '));
SELECT count(*) FILTER (WHERE used_at IS NOT NULL) AS recovery_codes_used
  FROM authx.mfa_recovery_codes WHERE user_id = :'b';
-- Expired: refused before any code is looked at (the recovery code stays).
SELECT session_token AS ch4 FROM authx.login('mfa-b@example.com', 'correct horse battery', '192.0.2.31') \gset
UPDATE authx.mfa_challenges SET expires_at = clock_timestamp() - interval '1 second'
 WHERE token_hash = sha256(convert_to(:'ch4', 'UTF8'));
SELECT status FROM authx.login_mfa(:'ch4', (:'b_codes'::text[])[3]);
-- Not a challenge of ours: never an error.
SELECT session_token AS b_session FROM authx.session_create(:'b') \gset
SELECT v.what, m.status, m.user_id, m.session_token, m.expires_at
  FROM (VALUES ('NULL', NULL), ('empty', ''), ('prefix only', 'axc_'), ('unknown', 'axc_' || repeat('A', 43)),
               ('too long', :'ch4' || 'A'), ('upper case prefix', 'AXC_' || substr(:'ch4', 5)),
               ('a session token', :'b_session'), ('one megabyte', repeat('x', 1000000))) v(what, challenge),
       authx.login_mfa(v.challenge, (:'b_codes'::text[])[3]) m;
-- The account disabled meanwhile.
SELECT session_token AS ch5 FROM authx.login('mfa-b@example.com', 'correct horse battery', '192.0.2.31') \gset
SELECT authx.user_disable(:'b');
SELECT status FROM authx.login_mfa(:'ch5', (:'b_codes'::text[])[3]);
SELECT authx.user_enable(:'b');
-- A blocked address is answered first.
SELECT authx.ip_block('203.0.113.201/32', '1 hour', 'regress mfa');
SELECT status FROM authx.login_mfa(:'ch5', (:'b_codes'::text[])[4], '203.0.113.201');
SELECT authx.ip_unblock('203.0.113.201/32') AS unblocked;
SELECT count(*) FILTER (WHERE used_at IS NOT NULL) AS recovery_codes_used
  FROM authx.mfa_recovery_codes WHERE user_id = :'b';

-- ================================================================ other shapes
-- authx.totp_digits and authx.totp_period shape new enrolments only.
SET authx.totp_digits = 8;
SET authx.totp_period = 60;
SELECT authx.user_create('mfa-g@example.com', 'correct horse battery') AS g \gset
SELECT secret AS g_secret, otpauth_uri AS g_uri FROM authx.totp_enroll(:'g', 'Example Corp') \gset
RESET authx.totp_digits;
RESET authx.totp_period;
SELECT replace(:'g_uri', :'g_secret', '<secret>') AS otpauth_uri;
SELECT digits, period FROM authx.mfa_totp WHERE user_id = :'g';
SELECT authx.totp_confirm(:'g', regress.totp(:'g_secret', 0, 6, 60)) AS six_digits,
       authx.totp_confirm(:'g', regress.totp(:'g_secret', 0, 8, 30)) AS eight_digits_30s;
SELECT authx.totp_confirm(:'g', regress.totp(:'g_secret', 0, 8, 60)) AS eight_digits_60s;

-- ================================================================ totp_disable
-- Removes the authenticator and the recovery codes; login asks no more; a
-- challenge handed out before opens no session: invalid_challenge, for a
-- TOTP code and a recovery code alike (there is no second factor any more).
SELECT session_token AS ch6 FROM authx.login('mfa-b@example.com', 'correct horse battery', '192.0.2.31') \gset
SELECT authx.totp_disable(:'b') AS disabled, authx.totp_disable(:'b') AS again;
SELECT (SELECT count(*) FROM authx.mfa_totp WHERE user_id = :'b') AS totp,
       (SELECT count(*) FROM authx.mfa_recovery_codes WHERE user_id = :'b') AS recovery_codes,
       (SELECT mfa_enabled FROM authx.user_get(:'b')) AS mfa_enabled;
SELECT status, session_token ~ '^axs_' AS session FROM authx.login('mfa-b@example.com', 'correct horse battery');
SELECT status FROM authx.login_mfa(:'ch6', regress.totp(:'b_secret', 1));
SELECT status FROM authx.login_mfa(:'ch6', (:'b_codes'::text[])[5]);
-- A pending enrolment is removed too; and enrolling starts over.
SELECT authx.totp_disable(:'e') AS pending_removed;
SELECT count(*) AS rows FROM authx.totp_enroll(:'b');
SELECT confirmed_at IS NULL AS pending, last_step FROM authx.mfa_totp WHERE user_id = :'b';

-- ================================================================ deletion
-- Deleting an account erases its seed, recovery codes and challenges.
SELECT session_token AS a_ch FROM authx.login('mfa-a@example.com', 'correct horse battery', '192.0.2.31') \gset
SELECT (SELECT count(*) FROM authx.mfa_totp WHERE user_id = :'a') AS totp,
       (SELECT count(*) FROM authx.mfa_recovery_codes WHERE user_id = :'a') AS recovery_codes,
       (SELECT count(*) FROM authx.mfa_challenges WHERE user_id = :'a') AS challenges;
SELECT authx.user_delete(:'a');
SELECT (SELECT count(*) FROM authx.mfa_totp WHERE user_id = :'a') AS totp,
       (SELECT count(*) FROM authx.mfa_recovery_codes WHERE user_id = :'a') AS recovery_codes,
       (SELECT count(*) FROM authx.mfa_challenges WHERE user_id = :'a') AS challenges,
       (SELECT mfa_enabled FROM authx.users WHERE id = :'a') AS mfa_enabled;
SELECT status FROM authx.login_mfa(:'a_ch', (:'a_codes2'::text[])[2]);
SELECT authx.totp_verify(:'a', regress.totp(:'a_secret', 1)) AS verify_deleted;

-- ================================================================ maintenance
-- Challenges are kept a day past their end; maintenance_run reports them.
SELECT authx.maintenance_run() -> 'mfa' AS mfa;
SELECT count(*) AS ending_soon FROM authx.mfa_challenges WHERE expires_at < clock_timestamp() + interval '1 hour' \gset
SELECT (authx._mfa_purge(clock_timestamp() + interval '1 day 1 hour') ->> 'challenges_purged')::bigint = :ending_soon
       AS purged_what_ended, :ending_soon > 0 AS some;
SELECT count(*) AS left_of_ours FROM authx.mfa_challenges WHERE user_id IN (:'b', :'e', :'g');

-- ================================================================ limits
-- The seeded policies again.
UPDATE authx.rate_limit_policies SET max = 5, seeded = true WHERE name IN ('login', 'mfa');
SELECT name, max, per, seeded FROM authx.rate_limit_policies WHERE name IN ('login', 'mfa') ORDER BY name;
-- The mfa policy: 5 attempts a minute per user, right or wrong, through
-- totp_confirm, totp_verify, recovery_code_use and login_mfa alike.
SELECT authx.user_create('mfa-c@example.com', 'correct horse battery') AS c \gset
SELECT secret AS c_secret FROM authx.totp_enroll(:'c', 'Example Corp') \gset
SELECT authx.totp_confirm(:'c', regress.totp(:'c_secret')) AS attempt_1_confirm;
SELECT session_token AS c_ch FROM authx.login('mfa-c@example.com', 'correct horse battery', '192.0.2.32') \gset
SELECT n AS attempt, authx.totp_verify(:'c', regress.wrong_code(:'c_secret')) AS verified
  FROM generate_series(2, 4) n;
SELECT status AS attempt_5 FROM authx.login_mfa(:'c_ch', regress.wrong_code(:'c_secret'));
SELECT authx.totp_verify(:'c', regress.totp(:'c_secret', 1)) AS attempt_6_right_code;
SELECT status AS attempt_7 FROM authx.login_mfa(:'c_ch', regress.totp(:'c_secret', 1));
-- The failure budget: authx.mfa_max_failures failed factors within
-- authx.lockout_window lock the second factor (a right code included);
-- ROLLBACK gives nothing back.
SET authx.mfa_max_failures = 2;
SELECT authx.user_create('mfa-d@example.com', 'correct horse battery') AS d \gset
SELECT secret AS d_secret FROM authx.totp_enroll(:'d', 'Example Corp') \gset
SELECT authx.totp_confirm(:'d', regress.totp(:'d_secret')) AS confirmed;
SELECT authx.recovery_codes_generate(:'d') AS d_codes \gset
SELECT session_token AS d_ch FROM authx.login('mfa-d@example.com', 'correct horse battery', '192.0.2.33') \gset
BEGIN;
SELECT authx.totp_verify(:'d', regress.wrong_code(:'d_secret')) AS failure_1;
ROLLBACK;
SELECT authx.recovery_code_use(:'d', 'ffff-ffff-ffff') AS failure_2;
SELECT authx.totp_verify(:'d', regress.totp(:'d_secret', 1)) AS right_code_locked,
       authx.recovery_code_use(:'d', (:'d_codes'::text[])[1]) AS recovery_code_locked;
SELECT status FROM authx.login_mfa(:'d_ch', regress.totp(:'d_secret', 1));
SELECT count(*) FILTER (WHERE used_at IS NOT NULL) AS recovery_codes_used
  FROM authx.mfa_recovery_codes WHERE user_id = :'d';
RESET authx.mfa_max_failures;

-- ================================================================ audit
-- Queued (attempts) and transactional (changes) events of these users.
SELECT authx.audit_flush();
SELECT u.who, a.event_type, a.severity, a.details, count(*)
  FROM authx.audit_log a
  JOIN (VALUES ('a', :'a'::uuid), ('b', :'b'::uuid), ('c', :'c'::uuid), ('d', :'d'::uuid), ('e', :'e'::uuid),
               ('g', :'g'::uuid)) u(who, id) ON u.id = a.user_id
 WHERE a.id > :audit0 AND (a.event_type LIKE 'mfa.%' OR a.event_type LIKE 'login.%')
   AND a.event_type <> 'login.failed'
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 4::text;
-- Failures with no user: a challenge that is not one.
SELECT event_type, severity, details, ip, count(*) > 0 AS some FROM authx.audit_log
 WHERE id > :audit0 AND user_id IS NULL
   AND (event_type = 'login.mfa_failed' OR (event_type = 'login.blocked' AND ip = '203.0.113.201'))
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 4;

-- ================================================================ privileges
SELECT authx.user_create('mfa-h@example.com', 'correct horse battery') AS h \gset
SET ROLE authx_app;
SELECT secret ~ '^[A-Z2-7]{32}$' AS secret FROM authx.totp_enroll(:'h', 'App');
SELECT authx.totp_confirm(:'h', 'abcdef') AS confirmed, authx.totp_verify(:'h', 'abcdef') AS verified,
       authx.recovery_code_use(:'h', 'abcdef') AS used;
SELECT authx.recovery_codes_generate(:'h');
SELECT status FROM authx.login_mfa('axc_x', '123456');
SELECT authx.totp_disable(:'h') AS disabled;
SELECT * FROM authx.mfa_totp;
SELECT * FROM authx.mfa_recovery_codes;
SELECT * FROM authx.mfa_challenges;
SELECT authx._totp_code('\x00', now());
SELECT * FROM authx._totp_seed_new(:'h');
SELECT authx._totp_match(:'h', '\x00', '123456', -1, 6, 30, 1, now());
SELECT authx._totp_check(:'h', '123456');
SELECT authx._recovery_check(:'h', 'abcd-abcd-abcd');
SELECT authx._recovery_hash(:'h', 'abcd-abcd-abcd');
SELECT authx._mfa_gate(:'h');
SELECT authx._mfa_failed(:'h', 'totp');
SELECT * FROM authx._mfa_challenge_new(:'h', NULL, NULL);
SELECT authx._mfa_purge(now());
SELECT authx._uri_encode('x');
SELECT authx._user_inactive_mfa();
SET authx.totp_window = 10;
SHOW authx.key_file;
RESET ROLE;
SET ROLE authx_admin;
SELECT authx.totp_disable(:'h') AS disabled;
SELECT count(*) FROM authx.mfa_totp;
SELECT count(*) FROM authx.mfa_challenges;
SELECT authx._totp_code('\x00', now());
SELECT authx._mfa_purge(now() + interval '10 years');
SELECT * FROM authx._mfa_challenge_new(:'h', NULL, NULL);
SET authx.mfa_max_failures = 1000;
SHOW authx.key_file;
RESET ROLE;

-- ================================================================ invalid input
SELECT authx.user_create('mfa-f@example.com', 'correct horse battery') AS f \gset
CREATE TEMP TABLE deleted_user AS SELECT :'a'::uuid AS id;
SELECT secret AS f_secret FROM authx.totp_enroll(:'f') \gset
SELECT regress.totp(:'f_secret', 0) AS f_c0 \gset
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.totp_enroll(NULL)$$),
    ($$authx.totp_enroll(authx.user_find('mfa-f@example.com'), NULL)$$),
    ($$authx.totp_enroll(authx.user_find('mfa-f@example.com'), '')$$),
    ($$authx.totp_enroll(authx.user_find('mfa-f@example.com'), 'Example:Corp')$$),
    ($$authx.totp_enroll(authx.user_find('mfa-f@example.com'), repeat('x', 101))$$),
    ($$authx.totp_enroll('00000000-0000-0000-0000-000000000000')$$),
    ($$authx.totp_enroll((SELECT id FROM deleted_user))$$),
    ($$authx.totp_enroll(authx.user_find('mfa-g@example.com'))$$),
    ($$authx.totp_confirm(NULL, '123456')$$),
    ($$authx.totp_verify(NULL, '123456')$$),
    ($$authx.totp_disable(NULL)$$),
    ($$authx.recovery_codes_generate(NULL)$$),
    ($$authx.recovery_code_use(NULL, 'abcd-abcd-abcd')$$),
    ($$authx.recovery_codes_generate(authx.user_find('mfa-f@example.com'))$$),
    ($$authx.recovery_codes_generate(authx.user_find('mfa-h@example.com'))$$),
    ($$authx.recovery_codes_generate('00000000-0000-0000-0000-000000000000')$$),
    ($$authx.recovery_codes_generate((SELECT id FROM deleted_user))$$),
    ($$authx._totp_code('\x00', now(), 5)$$),
    ($$authx._totp_code('\x00', now(), 9)$$),
    ($$authx._totp_code('\x00', now(), 6, 0)$$),
    ($$authx._totp_code('\x00', now(), 6, 301)$$),
    ($$authx._totp_match(gen_random_uuid(), '\x00', '123456', -1, 6, 30, 11, now())$$),
    ($$authx._totp_match(gen_random_uuid(), '\x00', '123456', -1, 6, 30, -1, now())$$),
    ($$authx._totp_match(gen_random_uuid(), '\x00', '123456', -1, 5, 30, 1, now())$$)
) v(call);
-- A failed call changed nothing: f's enrolment is still pending.
SELECT confirmed_at IS NULL AS pending FROM authx.mfa_totp WHERE user_id = :'f';
-- Never an error: unknown users, no enrolment, no codes are just false.
SELECT authx.totp_confirm('00000000-0000-0000-0000-000000000000', '123456') AS confirm_unknown,
       authx.totp_verify('00000000-0000-0000-0000-000000000000', '123456') AS verify_unknown,
       authx.totp_disable('00000000-0000-0000-0000-000000000000') AS disable_unknown,
       authx.recovery_code_use('00000000-0000-0000-0000-000000000000', 'abcd-abcd-abcd') AS use_unknown;
SELECT authx.totp_verify(:'f', :'f_c0') AS verify_pending, authx.totp_confirm(:'g', '12345678') AS confirm_enabled,
       authx.recovery_code_use(:'f', 'abcd-abcd-abcd') AS use_without_codes;
SELECT status, user_id, session_token, expires_at FROM authx.login_mfa(NULL, NULL, NULL, NULL);
-- _totp_match on a seal that does not open (or is not one): no step.
SELECT v.what, authx._totp_match(:'f', v.s, :'f_c0', -1, 6, 30, 1, now()) IS NULL AS no_step
  FROM (VALUES ('empty', '\x'::bytea), ('one byte', '\x01'), ('61 bytes of x', repeat('x', 61)::bytea),
               ('another user''s seal', (SELECT seed_sealed FROM authx.mfa_totp WHERE user_id = :'g'))) v(what, s);

-- ================================================================ clean up
SELECT who, authx.user_delete(id) AS deleted
  FROM (VALUES ('b', :'b'::uuid), ('c', :'c'::uuid), ('d', :'d'::uuid), ('e', :'e'::uuid), ('f', :'f'::uuid),
               ('g', :'g'::uuid), ('h', :'h'::uuid)) u(who, id);
SELECT count(*) AS mfa_rows_left
  FROM (SELECT user_id FROM authx.mfa_totp UNION ALL SELECT user_id FROM authx.mfa_recovery_codes
        UNION ALL SELECT user_id FROM authx.mfa_challenges) x
 WHERE user_id IN (:'a', :'b', :'c', :'d', :'e', :'f', :'g', :'h');
DROP FUNCTION regress.wrong_code(text);
DROP FUNCTION regress.totp(text, integer, integer, integer);
DROP FUNCTION regress.base32_decode(text);

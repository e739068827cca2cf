-- 16_mfa.sql — TOTP second factor, recovery codes and login_mfa, as authx_app.
--
-- Covers:
--   * authx._totp_code against RFC 6238 Appendix B (SHA-1, 8 digits: T = 59,
--     1111111109, 1111111111, 1234567890, 2000000000, 20000000000) and
--     RFC 4226 Appendix D (the ten HOTP values as the 6-digit codes of time
--     steps 0-9), 7 digits, step boundaries (1111111109.999 is still the
--     step of 1111111109, 1111111110 the next; before 2000 too: 29.999 s
--     is step 0, 30 s step 1; a 60 s period), and 22023 for digits outside
--     6-8 or a period outside 1-300 s; the base32 decoder these tests use
--     (RFC 4648 vectors);
--   * totp_enroll: a 32-character base32 secret (20 bytes); the otpauth URI
--     with issuer and email percent-encoded (UTF-8, '+', '@', space), the
--     default issuer authx, digits and period from authx.totp_digits and
--     authx.totp_period (8 and 60 s: the row and the URI say so, and only
--     an 8-digit 60 s code confirms); a re-enrolment of a pending one
--     replaces it (one row, new secret, the old secret's codes refused);
--     55000 once enabled; 22023 for an empty, 101-character or colon
--     issuer (100 accepted), 22004 for NULL, P0002 for an unknown or a
--     deleted user; mfa.totp_enrolled / mfa.totp_enabled audited;
--   * totp_confirm / totp_verify with codes computed in SQL from the secret
--     the app was shown: verify before confirm false; a wrong code false;
--     the current code confirms (users.mfa_enabled); confirming again
--     false; the confirming code replayed false; the next step's code true,
--     replayed false; '123 456' and '12-34-56' accepted; another user's
--     code false; a user without TOTP, an unknown user false, NULL user
--     22004; the window: with authx.totp_window 1 a code 2 steps ahead or
--     behind is refused, the previous step accepted; with 2 both accepted,
--     3 ahead refused, and a step before the last used is refused; with 0
--     only the current step; malformed codes (letters, 5, 7, 8 and 9
--     digits, NULL, empty, blanks, full-width digits, a newline, 100 000
--     characters) never raise and answer false, and the right code works
--     afterwards;
--   * sealing: seed_sealed is 61 bytes (version 1, nonce, 20 bytes and a
--     tag) and holds neither the seed nor its base32 text (nor does the
--     audit log); copied to another user's row it does not open (false for
--     both users' codes), put back it opens; a flipped byte or another
--     version byte does not open;
--   * totp_disable: true, row, recovery codes and mfa_enabled gone, verify
--     and recovery codes false afterwards; false the second time; a pending
--     enrolment can be disabled; enrolment works again; audited (high);
--   * recovery codes: 55000 without TOTP (none, pending); ten distinct
--     xxxx-xxxx-xxxx hex codes, stored only as sha256(user id:code), the
--     codes nowhere in the table; single use; capitals, spaces or no dashes
--     accepted; another user's code refused; regenerating replaces all ten
--     (old unused ones stop working); audited (left counts);
--   * the mfa rate policy (5 a minute per user): five wrong attempts, then
--     the right code answers false (not spent; another user unaffected),
--     login_mfa answers rate_limited, mfa.rate_limited is audited; with the
--     policy deleted, or raised (a new bucket), the same code works;
--   * the failure budget (authx.mfa_max_failures = 3): two failures, the
--     right code works; the third failure locks: the right TOTP code and a
--     recovery code answer false, login_mfa locked, mfa.locked and
--     mfa.failed audited; a larger budget (another bucket) lets the code
--     through; failures rolled back to a savepoint count;
--   * login: mfa_required with an axc_ challenge for a TOTP user (expiring
--     after authx.mfa_challenge_ttl, stored as sha256 with ip and user
--     agent, no session yet), ok for users without TOTP or with a pending
--     enrolment; login_mfa: invalid_code then ok with the same challenge
--     (a valid session, last_login_at), the challenge single use; unknown,
--     malformed and expired challenges invalid_challenge (never raising);
--     a recovery code (any case, blanks) logs in once; disabling (or
--     locking) an account drops its challenges: invalid_challenge, also
--     once enabled again (TOTP stays: the next login asks for it); a user
--     whose TOTP was removed: invalid_challenge; a blocked address:
--     blocked, without spending the challenge; audit events;
--   * authx.user_delete erases mfa_totp, mfa_recovery_codes and
--     mfa_challenges rows (and mfa_enabled);
--   * maintenance_run reports 'mfa' and purges challenges ended more than a
--     day ago, not younger ones.
-- Codes come from the secret totp_enroll showed, through a base32 decoder
-- and authx._totp_code (superuser: SECURITY DEFINER helpers); a code that
-- must be usable is the first step after the last one used, waited for
-- when it is ahead of the window; the window checks run within one time
-- step (pg_temp.settle waits for a fresh one when less than 12 s remain).
-- Everything is rolled back at the end (rate limits and failure budgets
-- live in shared memory, keyed by the ids of users that never commit; audit
-- events queued by authx.audit outlive the transaction, under those ids).

-- The worker must not need to make today's partitions while this
-- transaction holds locks on audit_log (see 02_privileges).
DO $$ BEGIN PERFORM authx.maintenance_run(); END $$;

BEGIN;
SELECT plan(192);

SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
-- No limit on logins and second factors until the parts that test them
-- (and the ROLLBACK at the end); a failure budget no test reaches unless it
-- lowers it.
UPDATE authx.rate_limit_policies SET max = 1000000 WHERE name IN ('login', 'mfa');
SET authx.mfa_max_failures = 1000;

SELECT 'pgtap-mfa-' || gen_random_uuid() AS ua \gset

CREATE FUNCTION pg_temp.email(p_name text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT 'pgtap-mfa-' || p_name || '@example.com' $$;
CREATE FUNCTION pg_temp.pw(p_name text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT 'mfa password ' || p_name $$;
CREATE FUNCTION pg_temp.mkuser(p_name text) RETURNS uuid LANGUAGE sql AS
$$ SELECT authx.user_create(pg_temp.email(p_name), pg_temp.pw(p_name)) $$;

-- RFC 4648 base32 (no padding) to bytes.
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
        IF v < 0 THEN
            RAISE EXCEPTION 'not base32: %', c;
        END IF;
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

-- The secrets the app was shown, by user, with the shape they were enrolled
-- with.  Codes are computed by the superuser (authx._totp_code is
-- internal): the helpers below are SECURITY DEFINER.
CREATE TEMP TABLE mfa_secrets (user_id uuid PRIMARY KEY, secret text NOT NULL, digits int NOT NULL, period int NOT NULL);
GRANT ALL ON mfa_secrets TO authx_app;

-- The current time step of a period, by the clock.
CREATE FUNCTION pg_temp.step(p_period int DEFAULT 30) RETURNS bigint LANGUAGE sql VOLATILE AS
$$ SELECT floor(extract(epoch FROM clock_timestamp()) / p_period)::bigint $$;
-- A user's code at time step p_step.
CREATE FUNCTION pg_temp.code_at(p_user uuid, p_step bigint) RETURNS text LANGUAGE sql VOLATILE SECURITY DEFINER AS
$$ SELECT authx._totp_code(pg_temp.b32d(s.secret), to_timestamp(p_step * s.period), s.digits, s.period)
     FROM pg_temp.mfa_secrets s WHERE s.user_id = p_user $$;
-- A user's code p_k steps from now.
CREATE FUNCTION pg_temp.code(p_user uuid, p_k int DEFAULT 0) RETURNS text LANGUAGE sql VOLATILE SECURITY DEFINER AS
$$ SELECT pg_temp.code_at(p_user, pg_temp.step(s.period) + p_k) FROM pg_temp.mfa_secrets s WHERE s.user_id = p_user $$;
-- A code the user may use now: that of the first step after the last one
-- used (not before the current step), waiting when it is still ahead of the
-- window (authx.totp_window).
CREATE FUNCTION pg_temp.next_code(p_user uuid) RETURNS text LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
DECLARE
    v_last   bigint;
    v_period int;
    v_step   bigint;
BEGIN
    SELECT t.last_step, t.period INTO v_last, v_period FROM authx.mfa_totp t WHERE t.user_id = p_user;
    v_step := greatest(pg_temp.step(v_period), v_last + 1);
    WHILE pg_temp.step(v_period) < v_step - current_setting('authx.totp_window')::int LOOP
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN pg_temp.code_at(p_user, v_step);
END
$$;
-- A well-formed code that is none of the user's codes within 3 steps of now.
CREATE FUNCTION pg_temp.wrong_code(p_user uuid) RETURNS text LANGUAGE sql VOLATILE SECURITY DEFINER AS $$
    SELECT w.c
      FROM pg_temp.mfa_secrets s,
           LATERAL (SELECT lpad(floor(random() * 10 ^ s.digits)::bigint::text, s.digits, '0') AS c
                      FROM generate_series(1, 20)) w
     WHERE s.user_id = p_user AND w.c NOT IN (SELECT pg_temp.code(p_user, k) FROM generate_series(-3, 3) k)
     LIMIT 1
$$;
-- Waits, when fewer than p_secs remain in the current 30 s step, for the
-- next one to begin: the statements that follow run within one step.
CREATE FUNCTION pg_temp.settle(p_secs float8 DEFAULT 12) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_left float8 := 30 - mod(extract(epoch FROM clock_timestamp()), 30)::float8;
BEGIN
    IF v_left < p_secs THEN
        PERFORM pg_sleep(v_left + 0.05);
    END IF;
    RETURN true;
END
$$;
-- totp_enroll as the caller, remembering the secret; returns the URI.
CREATE FUNCTION pg_temp.enrol(p_user uuid, p_issuer text DEFAULT 'authx') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM authx.totp_enroll(p_user, p_issuer);
    INSERT INTO pg_temp.mfa_secrets
    VALUES (p_user, r.secret, current_setting('authx.totp_digits')::int, current_setting('authx.totp_period')::int)
    ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, digits = EXCLUDED.digits, period = EXCLUDED.period;
    RETURN r.otpauth_uri;
END
$$;
-- Enrol and confirm: TOTP enabled.  Confirmed with the previous step's
-- code (window 1), so that the current and the next step are left for the
-- tests without waiting; not in the last second of a step (a refused code
-- counts as a failure), and again if the step changed all the same.
CREATE FUNCTION pg_temp.enable(p_user uuid) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_step bigint;
BEGIN
    PERFORM pg_temp.enrol(p_user);
    PERFORM pg_temp.settle(1);
    LOOP
        v_step := pg_temp.step();
        IF authx.totp_confirm(p_user, pg_temp.code_at(p_user, v_step - 1)) THEN
            RETURN true;
        END IF;
        IF pg_temp.step() = v_step THEN
            RETURN false;
        END IF;
    END LOOP;
END
$$;
-- login as one short status (the run's user agent).
CREATE FUNCTION pg_temp.login(p_name text, p_ip inet DEFAULT '192.0.2.10') RETURNS text LANGUAGE sql AS
$$ SELECT status FROM authx.login(pg_temp.email(p_name), pg_temp.pw(p_name), p_ip, current_setting('pgtap.ua')) $$;
-- The challenge of a login that answered mfa_required (NULL otherwise).
CREATE FUNCTION pg_temp.challenge(p_name text) RETURNS text LANGUAGE sql AS
$$ SELECT session_token FROM authx.login(pg_temp.email(p_name), pg_temp.pw(p_name), '192.0.2.10', current_setting('pgtap.ua'))
    WHERE status = 'mfa_required' $$;
-- login_mfa's status.
CREATE FUNCTION pg_temp.lmfa(p_challenge text, p_code text, p_ip inet DEFAULT '192.0.2.10') RETURNS text LANGUAGE sql AS
$$ SELECT status FROM authx.login_mfa(p_challenge, p_code, p_ip, current_setting('pgtap.ua')) $$;
SELECT set_config('pgtap.ua', :'ua', false) AS ua_set \gset

SELECT pg_temp.mkuser('enr+x') AS u_enr, pg_temp.mkuser('iss') AS u_iss, pg_temp.mkuser('gone') AS u_gone,
       pg_temp.mkuser('tv') AS u_tv, pg_temp.mkuser('fmt') AS u_fmt, pg_temp.mkuser('mal') AS u_mal,
       pg_temp.mkuser('malp') AS u_malp, pg_temp.mkuser('win') AS u_win, pg_temp.mkuser('win0') AS u_win0,
       pg_temp.mkuser('sa') AS u_sa, pg_temp.mkuser('sb') AS u_sb, pg_temp.mkuser('dis') AS u_dis,
       pg_temp.mkuser('none') AS u_none, pg_temp.mkuser('pend') AS u_pend, pg_temp.mkuser('rc') AS u_rc,
       pg_temp.mkuser('rl') AS u_rl, pg_temp.mkuser('rl2') AS u_rl2, pg_temp.mkuser('lock') AS u_lock,
       pg_temp.mkuser('lock2') AS u_lock2, pg_temp.mkuser('lg') AS u_lg, pg_temp.mkuser('lgdis') AS u_lgdis,
       pg_temp.mkuser('lgoff') AS u_lgoff, pg_temp.mkuser('plain') AS u_plain, pg_temp.mkuser('del') AS u_del \gset
SELECT authx.user_delete(:'u_gone') AS x \gset

-- ================================================================ RFC 6238 / RFC 4226 vectors
CREATE FUNCTION pg_temp.rfc(p_t bigint, p_digits int DEFAULT 8, p_period int DEFAULT 30) RETURNS text LANGUAGE sql AS
$$ SELECT authx._totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(p_t), p_digits, p_period) $$;
SELECT is(pg_temp.rfc(59), '94287082', 'RFC 6238 B, SHA-1: T = 59 -> 94287082');
SELECT is(pg_temp.rfc(1111111109), '07081804', 'RFC 6238 B, SHA-1: T = 1111111109 -> 07081804 (leading zero kept)');
SELECT is(pg_temp.rfc(1111111111), '14050471', 'RFC 6238 B, SHA-1: T = 1111111111 -> 14050471');
SELECT is(pg_temp.rfc(1234567890), '89005924', 'RFC 6238 B, SHA-1: T = 1234567890 -> 89005924');
SELECT is(pg_temp.rfc(2000000000), '69279037', 'RFC 6238 B, SHA-1: T = 2000000000 -> 69279037');
SELECT is(pg_temp.rfc(20000000000), '65353130', 'RFC 6238 B, SHA-1: T = 20000000000 -> 65353130');
SELECT is((SELECT array_agg(pg_temp.rfc(30 * i, 6) ORDER BY i) FROM generate_series(0, 9) i),
          ARRAY['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'],
          'RFC 4226 D: the HOTP values of counters 0-9 are the 6-digit codes of steps 0-9');
SELECT is(pg_temp.rfc(59, 7), '4287082', '7 digits at T = 59');
SELECT is(authx._totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(1111111109.999), 8, 30), '07081804',
          'T = 1111111109.999 is still the step of T = 1111111109');
SELECT is(pg_temp.rfc(1111111110), '14050471', 'T = 1111111110 begins the step of T = 1111111111');
SELECT is(authx._totp_code(convert_to('12345678901234567890', 'UTF8'), to_timestamp(29.999), 6, 30), '755224',
          'T = 29.999 s is still step 0');
SELECT is(pg_temp.rfc(30, 6), '287082', 'T = 30 s is step 1');
SELECT is(pg_temp.rfc(119, 6, 60), '287082', 'a 60 s period: T = 119 is step 1');
SELECT throws_ok($$SELECT pg_temp.rfc(59, 5)$$, '22023', NULL, '5 digits: 22023');
SELECT throws_ok($$SELECT pg_temp.rfc(59, 9)$$, '22023', NULL, '9 digits: 22023');
SELECT throws_ok($$SELECT pg_temp.rfc(59, 6, 0)$$, '22023', NULL, 'period 0: 22023');
SELECT throws_ok($$SELECT pg_temp.rfc(59, 6, 301)$$, '22023', NULL, 'period 301: 22023');
SELECT is(pg_temp.b32d('MZXW6YTBOI======'), convert_to('foobar', 'UTF8'), 'the test''s base32 decoder: RFC 4648 "foobar"');
SELECT is(pg_temp.b32d('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'), convert_to('12345678901234567890', 'UTF8'),
          'the test''s base32 decoder: the RFC 6238 seed');

-- ================================================================ enrolment
SET ROLE authx_app;
SELECT secret AS e_secret, otpauth_uri AS e_uri FROM authx.totp_enroll(:'u_enr', 'Acme Ünï Corp') \gset
SELECT matches(:'e_secret'::text, '^[A-Z2-7]{32}$', 'enrol: the secret is 32 base32 characters');
SELECT is(length(pg_temp.b32d(:'e_secret')), 20, 'which are 20 bytes (160 bits)');
SELECT is(:'e_uri'::text, 'otpauth://totp/Acme%20%C3%9Cn%C3%AF%20Corp:pgtap-mfa-enr%2Bx%40example.com?secret=' || :'e_secret'
                    || '&issuer=Acme%20%C3%9Cn%C3%AF%20Corp&algorithm=SHA1&digits=6&period=30',
          'the otpauth URI: issuer and email percent-encoded (UTF-8), SHA1, 6 digits, 30 s');
SELECT pg_temp.enrol(:'u_iss') AS iss_uri \gset
SELECT is(:'iss_uri'::text, 'otpauth://totp/authx:pgtap-mfa-iss%40example.com?secret='
                      || (SELECT secret FROM mfa_secrets WHERE user_id = :'u_iss')
                      || '&issuer=authx&algorithm=SHA1&digits=6&period=30',
          'the default issuer is authx');
RESET ROLE;
SELECT results_eq(format('SELECT confirmed_at IS NULL, digits, period, last_step FROM authx.mfa_totp WHERE user_id = %L', :'u_enr'),
                  $$VALUES (true, 6, 30, -1::bigint)$$, 'a pending enrolment: not confirmed, 6 digits, 30 s, no step used');
SELECT is((SELECT mfa_enabled FROM authx.users WHERE id = :'u_enr'), false, 'mfa_enabled stays false while pending');

SET authx.totp_digits = 8;
SET authx.totp_period = 60;
SET ROLE authx_app;
SELECT secret AS e_secret2, otpauth_uri AS e_uri2 FROM authx.totp_enroll(:'u_enr') \gset
SELECT isnt(:'e_secret2'::text, :'e_secret'::text, 're-enrolment while pending: a new secret');
SELECT is(:'e_uri2'::text, 'otpauth://totp/authx:pgtap-mfa-enr%2Bx%40example.com?secret=' || :'e_secret2'
                     || '&issuer=authx&algorithm=SHA1&digits=8&period=60',
          'the URI carries authx.totp_digits (8) and authx.totp_period (60)');
RESET ROLE;
SELECT results_eq(format('SELECT count(*)::int, min(digits), min(period), bool_and(confirmed_at IS NULL) FROM authx.mfa_totp WHERE user_id = %L', :'u_enr'),
                  $$VALUES (1, 8, 60, true)$$, 'the pending enrolment was replaced: one row, 8 digits, 60 s');
INSERT INTO mfa_secrets VALUES (:'u_enr', :'e_secret2', 8, 60);
SELECT authx._totp_code(pg_temp.b32d(:'e_secret'), clock_timestamp(), 8, 60) AS old8,
       authx._totp_code(pg_temp.b32d(:'e_secret'), clock_timestamp(), 6, 30) AS old6 \gset
SET ROLE authx_app;
SELECT is(authx.totp_confirm(:'u_enr', :'old8'), false, 'the replaced secret''s code (8 digits, 60 s) does not confirm');
SELECT is(authx.totp_confirm(:'u_enr', :'old6'), false, 'nor its 6-digit 30 s code');
SELECT is(authx.totp_confirm(:'u_enr', right(pg_temp.next_code(:'u_enr'), 6)), false,
          'the right code cut to 6 digits does not confirm an 8-digit enrolment');
SELECT is(authx.totp_confirm(:'u_enr', pg_temp.next_code(:'u_enr')), true, 'the new secret''s 8-digit 60 s code confirms');
RESET ROLE;
RESET authx.totp_digits;
RESET authx.totp_period;
SELECT results_eq(format($$SELECT u.mfa_enabled, t.confirmed_at IS NOT NULL, t.last_step BETWEEN %s - 1 AND %s
                             FROM authx.users u JOIN authx.mfa_totp t ON t.user_id = u.id WHERE u.id = %L$$,
                         pg_temp.step(60), pg_temp.step(60), :'u_enr'),
                  $$VALUES (true, true, true)$$, 'confirmed: mfa_enabled, confirmed_at, the step used (60 s steps) kept');
SET ROLE authx_app;
SELECT throws_ok(format('SELECT * FROM authx.totp_enroll(%L)', :'u_enr'), '55000', 'TOTP is already enabled for this user',
                 'enrolling again once enabled: 55000');
SELECT throws_ok(format('SELECT * FROM authx.totp_enroll(%L, %L)', :'u_iss', ''), '22023',
                 'issuer must have 1-100 characters and no colon', 'an empty issuer: 22023');
SELECT throws_ok(format('SELECT * FROM authx.totp_enroll(%L, %L)', :'u_iss', 'Acme:Corp'), '22023', NULL,
                 'an issuer with a colon: 22023');
SELECT throws_ok(format('SELECT * FROM authx.totp_enroll(%L, %L)', :'u_iss', repeat('a', 101)), '22023', NULL,
                 'a 101-character issuer: 22023');
SELECT throws_ok(format('SELECT * FROM authx.totp_enroll(%L, NULL)', :'u_iss'), '22004', NULL, 'a NULL issuer: 22004');
SELECT throws_ok('SELECT * FROM authx.totp_enroll(NULL)', '22004', NULL, 'a NULL user: 22004');
SELECT throws_ok(format('SELECT * FROM authx.totp_enroll(%L)', gen_random_uuid()), 'P0002', NULL, 'an unknown user: P0002');
SELECT throws_ok(format('SELECT * FROM authx.totp_enroll(%L)', :'u_gone'), 'P0002', NULL, 'a deleted user: P0002');
SELECT matches(pg_temp.enrol(:'u_iss', repeat('a', 100)), '^otpauth://totp/a{100}:.*&issuer=a{100}&',
               'a 100-character issuer is accepted');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM authx.mfa_totp WHERE user_id = :'u_gone'), 0, 'nothing was enrolled for the deleted user');
SELECT authx.audit_flush('30 seconds') AS f \gset
SELECT results_eq(format($$SELECT event_type, severity::text, count(*)::int FROM authx.audit_log WHERE user_id = %L
                             AND event_type LIKE 'mfa.%%' GROUP BY 1, 2 ORDER BY 1$$, :'u_enr'),
                  $$VALUES ('mfa.failed', 'medium', 3), ('mfa.totp_enabled', 'medium', 1), ('mfa.totp_enrolled', 'medium', 2)$$,
                  'audited: mfa.totp_enrolled twice, mfa.totp_enabled once (in the transaction), three mfa.failed');

-- ================================================================ confirm and verify
SET ROLE authx_app;
SELECT pg_temp.enrol(:'u_tv') AS x \gset
SELECT is(authx.totp_verify(:'u_tv', pg_temp.code(:'u_tv')), false, 'verify while the enrolment is pending: false');
SELECT is(authx.totp_confirm(:'u_tv', pg_temp.wrong_code(:'u_tv')), false, 'confirm with a wrong code: false');
SELECT is((SELECT mfa_enabled FROM authx.user_get(:'u_tv')), false, 'still not enabled');
SELECT pg_temp.next_code(:'u_tv') AS c1 \gset
SELECT is(authx.totp_confirm(:'u_tv', :'c1'), true, 'confirm with the current code: true');
SELECT is((SELECT mfa_enabled FROM authx.user_get(:'u_tv')), true, 'users.mfa_enabled is set');
SELECT is(authx.totp_confirm(:'u_tv', pg_temp.next_code(:'u_tv')), false, 'confirm again once enabled: false');
SELECT is(authx.totp_verify(:'u_tv', :'c1'), false, 'the confirming code, verified: false (its step was used)');
SELECT pg_temp.next_code(:'u_tv') AS c2 \gset
SELECT is(authx.totp_verify(:'u_tv', :'c2'), true, 'the next step''s code: true');
SELECT is(authx.totp_verify(:'u_tv', :'c2'), false, 'the same code again: false (replay)');
SELECT is(authx.totp_verify(:'u_tv', pg_temp.code(:'u_iss')), false, 'a code of another user''s secret: false');
SELECT is(authx.totp_verify(:'u_none', '123456'), false, 'a user without TOTP: false');
SELECT is(authx.totp_verify(gen_random_uuid(), '123456'), false, 'an unknown user: false');
SELECT throws_ok($$SELECT authx.totp_verify(NULL, '123456')$$, '22004', NULL, 'verify, NULL user: 22004');
SELECT throws_ok($$SELECT authx.totp_confirm(NULL, '123456')$$, '22004', NULL, 'confirm, NULL user: 22004');

-- Blanks and dashes in a code.
SELECT pg_temp.enrol(:'u_fmt') AS x \gset
SELECT is(authx.totp_confirm(:'u_fmt', regexp_replace(pg_temp.next_code(:'u_fmt'), '^(...)(...)$', '\1 \2')), true,
          '"123 456": confirms');
SELECT is(authx.totp_verify(:'u_fmt', regexp_replace(pg_temp.next_code(:'u_fmt'), '^(..)(..)(..)$', ' \1-\2-\3 ')), true,
          '" 12-34-56 ": verifies');

-- Malformed codes.
RESET ROLE;
CREATE TEMP TABLE bad_codes (code text);
GRANT SELECT ON bad_codes TO authx_app;
INSERT INTO bad_codes VALUES ('abcdef'), ('12345'), ('1234567'), ('12345678'), ('123456789'), (NULL), (''), ('      '),
    ('12a456'), ('１２３４５６'), (E'12345\n6'), ('12345.'), ('+123456'), ('0x1234'), (repeat('1', 100000)), (repeat(' ', 40) || '123456');
SET ROLE authx_app;
SELECT pg_temp.enable(:'u_mal') AS x, pg_temp.enrol(:'u_malp') AS y \gset
SELECT lives_ok(format('SELECT authx.totp_verify(%L, code) FROM bad_codes', :'u_mal'), 'malformed codes never raise (totp_verify)');
SELECT is_empty(format('SELECT code FROM bad_codes WHERE authx.totp_verify(%L, code) IS NOT false', :'u_mal'),
                'and answer false');
SELECT lives_ok(format('SELECT authx.totp_confirm(%L, code) FROM bad_codes', :'u_malp'), 'nor do they raise in totp_confirm');
SELECT is_empty(format('SELECT code FROM bad_codes WHERE authx.totp_confirm(%L, code) IS NOT false', :'u_malp'),
                'where they answer false too');
SELECT is(authx.totp_verify(:'u_mal', pg_temp.next_code(:'u_mal')), true, 'the right code still verifies afterwards');
SELECT is(authx.totp_confirm(:'u_malp', pg_temp.next_code(:'u_malp')), true, 'and the right code still confirms');

-- The window.  u_win0 and u_win are pending; the statements below run
-- within one time step n (pg_temp.settle; checked at the end).
SELECT pg_temp.enrol(:'u_win') AS x, pg_temp.enrol(:'u_win0') AS y \gset
SELECT pg_temp.settle() AS x \gset
SELECT pg_temp.step() AS n \gset
SELECT is(authx.totp_confirm(:'u_win', pg_temp.code_at(:'u_win', :n - 1)), true, 'window 1: the previous step''s code confirms');
SELECT is(authx.totp_verify(:'u_win', pg_temp.code_at(:'u_win', :n + 2)), false, 'window 1: a code 2 steps ahead: false');
RESET ROLE;
UPDATE authx.mfa_totp SET last_step = :n - 10 WHERE user_id = :'u_win';
SET ROLE authx_app;
SELECT is(authx.totp_verify(:'u_win', pg_temp.code_at(:'u_win', :n - 2)), false,
          'window 1: a code 2 steps behind: false (no step after it used)');
RESET ROLE;
SET authx.totp_window = 2;
SET ROLE authx_app;
SELECT is(authx.totp_verify(:'u_win', pg_temp.code_at(:'u_win', :n - 2)), true, 'window 2: 2 steps behind: true');
SELECT is(authx.totp_verify(:'u_win', pg_temp.code_at(:'u_win', :n + 2)), true, 'window 2: 2 steps ahead: true');
SELECT is(authx.totp_verify(:'u_win', pg_temp.code_at(:'u_win', :n + 3)), false, 'window 2: 3 steps ahead: false');
SELECT is(authx.totp_verify(:'u_win', pg_temp.code_at(:'u_win', :n + 1)), false,
          'window 2: a step before the last one used (n + 1 after n + 2): false');
RESET ROLE;
SET authx.totp_window = 0;
SET ROLE authx_app;
SELECT is(authx.totp_confirm(:'u_win0', pg_temp.code_at(:'u_win0', :n + 1)), false, 'window 0: the next step: false');
SELECT is(authx.totp_confirm(:'u_win0', pg_temp.code_at(:'u_win0', :n - 1)), false, 'window 0: the previous step: false');
SELECT is(authx.totp_confirm(:'u_win0', pg_temp.code_at(:'u_win0', :n)), true, 'window 0: the current step: true');
RESET ROLE;
RESET authx.totp_window;
SELECT is(pg_temp.step(), :n::bigint, '(the window checks ran within one time step)');

-- ================================================================ the sealed seed
SET ROLE authx_app;
SELECT pg_temp.enable(:'u_sa') AS x, pg_temp.enable(:'u_sb') AS y \gset
RESET ROLE;
SELECT results_eq(format($$SELECT length(seed_sealed), get_byte(seed_sealed, 0) FROM authx.mfa_totp WHERE user_id = %L$$, :'u_sa'),
                  $$VALUES (61, 1)$$, 'seed_sealed: 61 bytes (version 1, 24-byte nonce, 20 bytes, 16-byte tag)');
SELECT is_empty($$SELECT s.user_id FROM mfa_secrets s JOIN authx.mfa_totp t USING (user_id)
                   WHERE position(pg_temp.b32d(s.secret) IN t.seed_sealed) > 0
                      OR position(convert_to(s.secret, 'UTF8') IN t.seed_sealed) > 0
                      OR (t.*)::text LIKE '%' || s.secret || '%'$$,
                'no mfa_totp row holds its seed or its base32 secret');
SELECT is_empty($$SELECT 1 FROM authx.audit_log a JOIN mfa_secrets s USING (user_id) WHERE (a.*)::text LIKE '%' || s.secret || '%'$$,
                'nor does the audit log');
SELECT seed_sealed AS sa_seal FROM authx.mfa_totp WHERE user_id = :'u_sa' \gset
SELECT seed_sealed AS sb_seal FROM authx.mfa_totp WHERE user_id = :'u_sb' \gset
SELECT isnt(:'sa_seal'::bytea, :'sb_seal'::bytea, 'two users, two sealed seeds');
-- Each check below starts from last_step -1: no step is a replay.
UPDATE authx.mfa_totp SET seed_sealed = :'sa_seal', last_step = -1 WHERE user_id = :'u_sb';
SET ROLE authx_app;
SELECT is(authx.totp_verify(:'u_sb', pg_temp.code(:'u_sa')), false, 'u_sa''s sealed seed copied to u_sb: u_sa''s code fails for u_sb');
SELECT is(authx.totp_verify(:'u_sb', pg_temp.code(:'u_sb')), false, 'and so does u_sb''s own code');
RESET ROLE;
UPDATE authx.mfa_totp SET seed_sealed = :'sb_seal', last_step = -1 WHERE user_id = :'u_sb';
SET ROLE authx_app;
SELECT is(authx.totp_verify(:'u_sb', pg_temp.code(:'u_sb')), true, 'u_sb''s own sealed seed put back: its code works');
RESET ROLE;
UPDATE authx.mfa_totp SET last_step = -1,
       seed_sealed = set_byte(:'sb_seal'::bytea, 40, get_byte(:'sb_seal'::bytea, 40) # 1) WHERE user_id = :'u_sb';
SET ROLE authx_app;
SELECT is(authx.totp_verify(:'u_sb', pg_temp.code(:'u_sb')), false, 'one bit flipped in the ciphertext: false');
RESET ROLE;
UPDATE authx.mfa_totp SET last_step = -1, seed_sealed = set_byte(:'sb_seal'::bytea, 0, 2) WHERE user_id = :'u_sb';
SET ROLE authx_app;
SELECT is(authx.totp_verify(:'u_sb', pg_temp.code(:'u_sb')), false, 'another version byte: false');
RESET ROLE;
UPDATE authx.mfa_totp SET last_step = -1, seed_sealed = :'sb_seal' WHERE user_id = :'u_sb';

-- ================================================================ disable
SET ROLE authx_app;
SELECT pg_temp.enable(:'u_dis') AS x \gset
SELECT authx.recovery_codes_generate(:'u_dis') AS dis_codes \gset
SELECT is(authx.totp_disable(:'u_dis'), true, 'totp_disable: true');
RESET ROLE;
SELECT results_eq(format($$SELECT (SELECT count(*)::int FROM authx.mfa_totp WHERE user_id = %1$L),
                                  (SELECT count(*)::int FROM authx.mfa_recovery_codes WHERE user_id = %1$L),
                                  (SELECT mfa_enabled FROM authx.users WHERE id = %1$L)$$, :'u_dis'),
                  $$VALUES (0, 0, false)$$, 'the seed and the recovery codes are gone, mfa_enabled is false');
SELECT is((SELECT severity::text FROM authx.audit_log WHERE user_id = :'u_dis' AND event_type = 'mfa.totp_disabled'), 'high',
          'audited: mfa.totp_disabled (high)');
SET ROLE authx_app;
SELECT is(authx.totp_verify(:'u_dis', pg_temp.code(:'u_dis')), false, 'after disable: the current code is refused');
SELECT is(authx.totp_verify(:'u_dis', pg_temp.code(:'u_dis', 1)), false, 'even with the next code of the old secret');
SELECT is(authx.recovery_code_use(:'u_dis', (:'dis_codes'::text[])[1]), false, 'after disable: a recovery code is refused');
SELECT is(authx.totp_disable(:'u_dis'), false, 'disable again: false');
SELECT matches(pg_temp.enrol(:'u_dis'), '^otpauth://', 'enrolment works again');
SELECT is(authx.totp_disable(:'u_dis'), true, 'a pending enrolment can be disabled');
SELECT throws_ok($$SELECT authx.totp_disable(NULL)$$, '22004', NULL, 'disable, NULL user: 22004');

-- ================================================================ recovery codes
SELECT pg_temp.enrol(:'u_pend') AS x \gset
SELECT throws_ok(format('SELECT authx.recovery_codes_generate(%L)', :'u_none'), '55000', 'TOTP is not enabled for this user',
                 'recovery codes without TOTP: 55000');
SELECT throws_ok(format('SELECT authx.recovery_codes_generate(%L)', :'u_pend'), '55000', NULL,
                 'recovery codes with a pending enrolment: 55000');
SELECT throws_ok($$SELECT authx.recovery_codes_generate(NULL)$$, '22004', NULL, 'recovery codes, NULL user: 22004');
SELECT pg_temp.enable(:'u_rc') AS x \gset
SELECT authx.recovery_codes_generate(:'u_rc') AS rc1 \gset
SELECT is(cardinality(:'rc1'::text[]), 10, 'ten recovery codes');
SELECT is((SELECT count(DISTINCT c)::int FROM unnest(:'rc1'::text[]) c), 10, 'all different');
SELECT is_empty(format($$SELECT c FROM unnest(%L::text[]) c WHERE c !~ '^[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$'$$, :'rc1'),
                'each xxxx-xxxx-xxxx of lowercase hex');
RESET ROLE;
SELECT set_eq(format('SELECT code_hash FROM authx.mfa_recovery_codes WHERE user_id = %L', :'u_rc'),
              format($$SELECT sha256(convert_to(%L || ':' || replace(c, '-', ''), 'UTF8')) FROM unnest(%L::text[]) c$$, :'u_rc', :'rc1'),
              'stored: exactly sha256(user id:code) of the ten');
SELECT is_empty(format($$SELECT c FROM authx.mfa_recovery_codes r, unnest(%L::text[]) c
                         WHERE (r.*)::text LIKE '%%' || replace(c, '-', '') || '%%' OR (r.*)::text LIKE '%%' || c || '%%'
                            OR position(convert_to(replace(c, '-', ''), 'UTF8') IN r.code_hash) > 0$$, :'rc1'),
                'the codes themselves are nowhere in the table');
SET ROLE authx_app;
SELECT is(authx.recovery_code_use(:'u_rc', (:'rc1'::text[])[1]), true, 'a recovery code: true');
SELECT is(authx.recovery_code_use(:'u_rc', (:'rc1'::text[])[1]), false, 'the same code again: false');
SELECT is(authx.recovery_code_use(:'u_rc', upper(replace((:'rc1'::text[])[2], '-', ' '))), true,
          'in capitals, spaces for dashes: true');
SELECT is(authx.recovery_code_use(:'u_rc', replace((:'rc1'::text[])[3], '-', '')), true, 'without dashes: true');
SELECT is(authx.recovery_code_use(:'u_rc', 'abcd-abcd-abcd'), false, 'a wrong code: false');
SELECT is(authx.recovery_code_use(:'u_rc', NULL), false, 'NULL: false');
SELECT is(authx.recovery_code_use(:'u_rc', repeat('a', 100000)), false, 'a 100 000-character code: false');
SELECT is(authx.recovery_code_use(:'u_sa', (:'rc1'::text[])[4]), false, 'another user''s code: false');
SELECT is(authx.recovery_code_use(:'u_rc', (:'rc1'::text[])[4]), true, 'which still works for its user');
SELECT throws_ok($$SELECT authx.recovery_code_use(NULL, 'abcd-abcd-abcd')$$, '22004', NULL, 'recovery_code_use, NULL user: 22004');
SELECT authx.recovery_codes_generate(:'u_rc') AS rc2 \gset
SELECT is(:'rc2'::text[] && :'rc1'::text[], false, 'regenerated: ten new codes');
SELECT is(authx.recovery_code_use(:'u_rc', (:'rc1'::text[])[5]), false, 'an unused code of the old set no longer works');
SELECT is(authx.recovery_code_use(:'u_rc', (:'rc2'::text[])[1]), true, 'a new one does');
RESET ROLE;
SELECT results_eq(format('SELECT count(*)::int, count(used_at)::int FROM authx.mfa_recovery_codes WHERE user_id = %L', :'u_rc'),
                  $$VALUES (10, 1)$$, 'the table holds the ten new codes, one used');
SELECT authx.audit_flush('30 seconds') AS f \gset
SELECT results_eq(format($$SELECT severity::text, (details->>'left')::int FROM authx.audit_log
                             WHERE user_id = %L AND event_type = 'mfa.recovery_code_used' ORDER BY at, id$$, :'u_rc'),
                  $$VALUES ('high', 9), ('high', 8), ('high', 7), ('high', 6), ('high', 9)$$,
                  'mfa.recovery_code_used (high) for each use, with the codes left');
SELECT is((SELECT count(*)::int FROM authx.audit_log WHERE user_id = :'u_rc' AND event_type = 'mfa.recovery_codes_generated'), 2,
          'mfa.recovery_codes_generated for each set');
SELECT is((SELECT count(*)::int FROM authx.audit_log WHERE user_id = :'u_rc' AND event_type = 'mfa.failed'
              AND details->>'factor' = 'recovery_code'), 5,
          'mfa.failed (factor recovery_code) for each refused code, the old set''s included');

-- ================================================================ the mfa rate policy
SET ROLE authx_app;
SELECT pg_temp.enable(:'u_rl') AS x, pg_temp.enable(:'u_rl2') AS y \gset
RESET ROLE;
SELECT last_step AS rl_last FROM authx.mfa_totp WHERE user_id = :'u_rl' \gset
-- The seeded policy again (5 a minute per user): fresh buckets for
-- u_rl and u_rl2, whose attempts so far went to the raised policy's.
UPDATE authx.rate_limit_policies SET max = 5, seeded = true WHERE name = 'mfa';
SET ROLE authx_app;
SELECT is((SELECT array_agg(authx.totp_verify(:'u_rl', pg_temp.wrong_code(:'u_rl'))) FROM generate_series(1, 5)),
          array_fill(false, ARRAY[5]), 'mfa policy 5 a minute: five wrong codes');
SELECT pg_temp.next_code(:'u_rl') AS rl_code \gset
SELECT is(authx.totp_verify(:'u_rl', :'rl_code'), false, 'the sixth attempt within the minute, with the right code: false');
SELECT is(pg_temp.lmfa(pg_temp.challenge('rl'), :'rl_code'), 'rate_limited', 'login_mfa with the right code: rate_limited');
SELECT is(authx.totp_verify(:'u_rl2', pg_temp.next_code(:'u_rl2')), true, 'another user is not limited');
RESET ROLE;
SELECT is((SELECT last_step FROM authx.mfa_totp WHERE user_id = :'u_rl'), :'rl_last'::bigint, 'the right code was not spent');
SELECT authx.audit_flush('30 seconds') AS f \gset
SELECT is((SELECT array_agg(DISTINCT severity::text) || count(*)::text FROM authx.audit_log
            WHERE user_id = :'u_rl' AND event_type = 'mfa.rate_limited'),
          ARRAY['low', '2'], 'mfa.rate_limited (low) audited for both limited attempts');
SELECT is((SELECT count(*)::int FROM authx.audit_log WHERE user_id = :'u_rl' AND event_type = 'mfa.failed'), 5,
          'mfa.failed for the five wrong codes only');
SELECT is((SELECT details->>'reason' FROM authx.audit_log WHERE user_id = :'u_rl' AND event_type = 'login.mfa_failed'),
          'rate_limited', 'login.mfa_failed with reason rate_limited');
-- Without the policy nothing is limited.
SAVEPOINT nopol;
DELETE FROM authx.rate_limit_policies WHERE name = 'mfa';
SET ROLE authx_app;
SELECT is(authx.totp_verify(:'u_rl', :'rl_code'), true, 'with the mfa policy deleted: the same code verifies');
ROLLBACK TO SAVEPOINT nopol;
UPDATE authx.rate_limit_policies SET max = 1000000 WHERE name = 'mfa';
SET ROLE authx_app;
SELECT is(authx.totp_verify(:'u_rl', :'rl_code'), true, 'with the limit raised (a new bucket): the same code verifies');

-- ================================================================ the failure budget
SELECT pg_temp.enable(:'u_lock') AS x, pg_temp.enable(:'u_lock2') AS y \gset
SELECT authx.recovery_codes_generate(:'u_lock') AS lock_codes \gset
SELECT pg_temp.challenge('lock') AS lock_ch \gset
RESET ROLE;
SET authx.mfa_max_failures = 3;
SET ROLE authx_app;
SELECT is(ARRAY[authx.totp_verify(:'u_lock', pg_temp.wrong_code(:'u_lock')), authx.totp_verify(:'u_lock', pg_temp.wrong_code(:'u_lock'))],
          ARRAY[false, false], 'budget 3: two wrong codes');
SELECT is(authx.totp_verify(:'u_lock', pg_temp.next_code(:'u_lock')), true, 'two failures of three: the right code works');
SELECT is(authx.recovery_code_use(:'u_lock', 'abcd-abcd-abcd'), false, 'a wrong recovery code: the third failure');
SELECT pg_temp.next_code(:'u_lock') AS lock_code \gset
SELECT is(authx.totp_verify(:'u_lock', :'lock_code'), false, 'three failures: locked, the right code answers false');
SELECT is(authx.recovery_code_use(:'u_lock', (:'lock_codes'::text[])[1]), false, 'and so does a right recovery code');
SELECT is(pg_temp.lmfa(:'lock_ch', :'lock_code'), 'locked', 'login_mfa with the right code: locked');
RESET ROLE;
SELECT is((SELECT count(used_at)::int FROM authx.mfa_recovery_codes WHERE user_id = :'u_lock'), 0,
          'the recovery code was not spent');
SELECT authx.audit_flush('30 seconds') AS f \gset
SELECT is((SELECT array_agg(DISTINCT severity::text) || count(*)::text FROM authx.audit_log
            WHERE user_id = :'u_lock' AND event_type = 'mfa.locked'),
          ARRAY['medium', '3'], 'mfa.locked (medium) audited for each locked attempt');
SELECT set_eq(format($$SELECT details->>'factor', count(*)::int FROM authx.audit_log
                        WHERE user_id = %L AND event_type = 'mfa.failed' GROUP BY 1$$, :'u_lock'),
              $$VALUES ('totp', 2), ('recovery_code', 1)$$, 'mfa.failed for the three failures, with their factor');
SELECT is((SELECT details->>'reason' FROM authx.audit_log WHERE user_id = :'u_lock' AND event_type = 'login.mfa_failed'),
          'locked', 'login.mfa_failed with reason locked');
SET authx.mfa_max_failures = 1000;
SET ROLE authx_app;
SELECT is(authx.totp_verify(:'u_lock', :'lock_code'), true,
          'with the budget back at 1000 (another bucket): the same code works, the lock was what refused it');
-- Failures rolled back to a savepoint are counted all the same.
RESET ROLE;
SET authx.mfa_max_failures = 3;
SET ROLE authx_app;
SAVEPOINT rb;
SELECT authx.totp_verify(:'u_lock2', pg_temp.wrong_code(:'u_lock2')) AS f1, authx.totp_verify(:'u_lock2', pg_temp.wrong_code(:'u_lock2')) AS f2,
       authx.totp_verify(:'u_lock2', pg_temp.wrong_code(:'u_lock2')) AS f3 \gset
ROLLBACK TO SAVEPOINT rb;
SELECT is(authx.totp_verify(:'u_lock2', pg_temp.next_code(:'u_lock2')), false,
          'three failures rolled back to a savepoint: locked all the same');
RESET ROLE;
SET authx.mfa_max_failures = 1000;

-- ================================================================ login and login_mfa
SET ROLE authx_app;
SELECT pg_temp.enable(:'u_lg') AS a, pg_temp.enable(:'u_lgdis') AS b, pg_temp.enable(:'u_lgoff') AS c,
       pg_temp.enable(:'u_del') AS d \gset
SELECT clock_timestamp() AS t0 \gset
SELECT status AS lg_status, user_id AS lg_uid, session_token AS ch1, expires_at AS ch1_exp
  FROM authx.login(pg_temp.email('lg'), pg_temp.pw('lg'), '192.0.2.10', :'ua') \gset
SELECT clock_timestamp() AS t1 \gset
SELECT is(:'lg_status'::text, 'mfa_required', 'login, TOTP enabled: mfa_required');
SELECT is(:'lg_uid'::uuid, :'u_lg'::uuid, 'with the user id');
SELECT matches(:'ch1'::text, '^axc_[A-Za-z0-9_-]{43}$', 'and an axc_ challenge as session_token');
SELECT ok(:'ch1_exp'::timestamptz BETWEEN :'t0'::timestamptz + interval '5 minutes' AND :'t1'::timestamptz + interval '5 minutes',
          'expires_at: the challenge''s end, authx.mfa_challenge_ttl (5 min) ahead');
SELECT is((SELECT count(*)::int FROM authx.sessions(:'u_lg')), 0, 'no session yet');
SELECT is(ARRAY[pg_temp.login('plain'), pg_temp.login('pend')], ARRAY['ok', 'ok'],
          'without TOTP, and with a pending enrolment: ok');
RESET ROLE;
SELECT results_eq(format($$SELECT user_id, host(ip), user_agent, used_at IS NULL, expires_at FROM authx.mfa_challenges
                             WHERE token_hash = sha256(convert_to(%L, 'UTF8'))$$, :'ch1'),
                  format($$VALUES (%L::uuid, '192.0.2.10', %L, true, %L::timestamptz)$$, :'u_lg', :'ua', :'ch1_exp'),
                  'stored as its sha256, with the address, the user agent and the end');
SELECT is_empty(format($$SELECT 1 FROM authx.mfa_challenges c WHERE (c.*)::text LIKE '%%' || %L || '%%'$$, substr(:'ch1', 5, 20)),
                'the challenge itself is not stored');
SET ROLE authx_app;
SELECT results_eq(format('SELECT * FROM authx.login_mfa(%L, %L, %L, %L)', :'ch1', pg_temp.wrong_code(:'u_lg'), '192.0.2.10', :'ua'),
                  $$VALUES ('invalid_code'::text, NULL::uuid, NULL::text, NULL::timestamptz)$$,
                  'login_mfa, a wrong code: invalid_code and nothing else');
SELECT status AS m_status, user_id AS m_uid, session_token AS m_tok, expires_at AS m_exp
  FROM authx.login_mfa(:'ch1', pg_temp.next_code(:'u_lg'), '192.0.2.10', :'ua') \gset
SELECT is(:'m_status'::text, 'ok', 'then the right code on the same challenge: ok');
SELECT is(:'m_uid'::uuid, :'u_lg'::uuid, 'ok: the user id');
SELECT is(authx.session_validate(:'m_tok'), :'u_lg'::uuid, 'ok: a valid session token');
SELECT ok(:'m_exp'::timestamptz > now() + interval '6 days', 'ok: expires_at is the session''s');
SELECT isnt((SELECT last_login_at FROM authx.user_get(:'u_lg')), NULL, 'last_login_at is set');
SELECT is(pg_temp.lmfa(:'ch1', pg_temp.next_code(:'u_lg')), 'invalid_challenge',
          'the challenge again, with a code not used yet: invalid_challenge (single use)');

-- Unknown and malformed challenges.
RESET ROLE;
CREATE TEMP TABLE bad_challenges (c text);
GRANT SELECT ON bad_challenges TO authx_app;
INSERT INTO bad_challenges VALUES (NULL), (''), ('garbage'), ('axc_' || repeat('A', 43)), ('axc_' || repeat('A', 42)),
    (:'m_tok'), (left(:'ch1', 46) || CASE WHEN right(:'ch1', 1) = 'A' THEN 'B' ELSE 'A' END), (' ' || :'ch1'),
    (repeat('x', 100000)), ('axc_' || repeat('é', 43)), ($$' OR '1'='1$$);
SET ROLE authx_app;
SELECT lives_ok($$SELECT l.* FROM bad_challenges b, authx.login_mfa(b.c, '123456', NULL, current_setting('pgtap.ua')) l$$,
                'unknown, malformed, used and huge challenges never raise');
SELECT is_empty($$SELECT b.c FROM bad_challenges b, authx.login_mfa(b.c, '123456', '192.0.2.10', current_setting('pgtap.ua')) l
                   WHERE l.status IS DISTINCT FROM 'invalid_challenge' OR l.user_id IS NOT NULL OR l.session_token IS NOT NULL$$,
                'and answer invalid_challenge with no user and no token');

-- Recovery codes.
SELECT authx.recovery_codes_generate(:'u_lg') AS lg_codes \gset
SELECT status AS r_status, session_token AS r_tok
  FROM authx.login_mfa(pg_temp.challenge('lg'), upper((:'lg_codes'::text[])[1]), '192.0.2.10', :'ua') \gset
SELECT is(:'r_status'::text, 'ok', 'login_mfa with a recovery code (in capitals): ok');
SELECT is(authx.session_validate(:'r_tok'), :'u_lg'::uuid, 'with a valid session');
SELECT pg_temp.challenge('lg') AS ch4 \gset
SELECT is(pg_temp.lmfa(:'ch4', (:'lg_codes'::text[])[1]), 'invalid_code', 'the used recovery code again: invalid_code');
SELECT is(pg_temp.lmfa(:'ch4', NULL), 'invalid_code', 'a NULL code: invalid_code');
SELECT is(pg_temp.lmfa(:'ch4', replace((:'lg_codes'::text[])[2], '-', ' ')), 'ok',
          'another recovery code, spaces for dashes, same challenge: ok');
RESET ROLE;
SELECT is((SELECT count(used_at)::int FROM authx.mfa_recovery_codes WHERE user_id = :'u_lg'), 2, 'two recovery codes used');

-- An expired challenge.
SET authx.mfa_challenge_ttl = '30s';
SET ROLE authx_app;
SELECT clock_timestamp() AS t2 \gset
SELECT session_token AS ch5, expires_at AS ch5_exp
  FROM authx.login(pg_temp.email('lg'), pg_temp.pw('lg'), '192.0.2.10', :'ua') \gset
SELECT ok(:'ch5_exp'::timestamptz BETWEEN :'t2'::timestamptz + interval '30 seconds' AND clock_timestamp() + interval '30 seconds',
          'authx.mfa_challenge_ttl = 30s: the challenge ends 30 s ahead');
SELECT is(pg_temp.lmfa(:'ch5', pg_temp.wrong_code(:'u_lg')), 'invalid_code', 'before its end it is good (a wrong code: invalid_code)');
RESET ROLE;
RESET authx.mfa_challenge_ttl;
UPDATE authx.mfa_challenges SET expires_at = clock_timestamp() - interval '1 second'
 WHERE token_hash = sha256(convert_to(:'ch5', 'UTF8'));
SET ROLE authx_app;
SELECT is(pg_temp.lmfa(:'ch5', pg_temp.next_code(:'u_lg')), 'invalid_challenge', 'ended: invalid_challenge, even with the right code');

-- The account disabled or locked, TOTP removed, after the challenge.
SELECT pg_temp.challenge('lgdis') AS ch6 \gset
SELECT is(pg_temp.lmfa(:'ch6', pg_temp.wrong_code(:'u_lgdis')), 'invalid_code', '(u_lgdis''s challenge is good)');
RESET ROLE;
SELECT authx.user_disable(:'u_lgdis') AS x \gset
SET ROLE authx_app;
SELECT is(pg_temp.lmfa(:'ch6', pg_temp.next_code(:'u_lgdis')), 'invalid_challenge', 'the account disabled since: invalid_challenge');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM authx.mfa_challenges WHERE user_id = :'u_lgdis'), 0, 'disabling dropped the challenge');
SELECT authx.user_enable(:'u_lgdis') AS x \gset
SET ROLE authx_app;
SELECT is(pg_temp.lmfa(:'ch6', pg_temp.next_code(:'u_lgdis')), 'invalid_challenge',
          'enabled again: the challenge from before stays invalid');
SELECT pg_temp.challenge('lgdis') AS ch6b \gset
SELECT matches(:'ch6b'::text, '^axc_', 'TOTP stayed on: a new login asks for it again');
RESET ROLE;
UPDATE authx.users SET status = 'locked' WHERE id = :'u_lgdis';
SELECT is((SELECT count(*)::int FROM authx.mfa_challenges WHERE user_id = :'u_lgdis'), 0,
          'status locked drops the challenges too');
SELECT results_eq(format('SELECT count(*)::int, bool_and(mfa_enabled) FROM authx.mfa_totp t JOIN authx.users u ON u.id = t.user_id WHERE t.user_id = %L', :'u_lgdis'),
                  $$VALUES (1, true)$$, 'but not the seed');
SET ROLE authx_app;
SELECT pg_temp.challenge('lgoff') AS ch7 \gset
SELECT is(pg_temp.lmfa(:'ch7', pg_temp.wrong_code(:'u_lgoff')), 'invalid_code', '(u_lgoff''s challenge is good)');
SELECT is(authx.totp_disable(:'u_lgoff'), true, '(TOTP removed)');
SELECT is(pg_temp.lmfa(:'ch7', pg_temp.code(:'u_lgoff')), 'invalid_challenge', 'TOTP removed since: invalid_challenge');
SELECT is(pg_temp.login('lgoff'), 'ok', 'and login no longer asks for a second factor');

-- A blocked address.
SELECT pg_temp.challenge('lg') AS ch8 \gset
RESET ROLE;
SELECT authx.ip_block('192.0.2.66/32', '1 hour', 'pgtap 16_mfa') AS x \gset
SET ROLE authx_app;
SELECT results_eq(format('SELECT * FROM authx.login_mfa(%L, %L, %L, %L)', :'ch8', (:'lg_codes'::text[])[3], '192.0.2.66', :'ua'),
                  $$VALUES ('blocked'::text, NULL::uuid, NULL::text, NULL::timestamptz)$$,
                  'login_mfa from a blocked address: blocked and nothing else');
SELECT is(pg_temp.lmfa(:'ch8', (:'lg_codes'::text[])[3], '192.0.2.67'), 'ok',
          'the same challenge and recovery code from another address: ok (nothing was spent)');

-- Audit.
RESET ROLE;
SELECT authx.audit_flush('30 seconds') AS f \gset
SELECT set_eq(format($$SELECT event_type, severity::text, coalesce(details->>'mfa', details->>'reason'), details->>'factor', count(*)::int
                        FROM authx.audit_log WHERE user_id = %L AND user_agent = %L AND event_type LIKE 'login.%%'
                       GROUP BY 1, 2, 3, 4$$, :'u_lg', :'ua'),
              $$VALUES ('login.mfa_required', 'info', NULL, NULL, 5), ('login.succeeded', 'info', 'totp', NULL, 1),
                       ('login.succeeded', 'info', 'recovery_code', NULL, 3),
                       ('login.mfa_failed', 'medium', 'invalid', 'totp', 3),
                       ('login.mfa_failed', 'medium', 'invalid', 'recovery_code', 1),
                       ('login.mfa_failed', 'low', 'invalid_challenge', NULL, 2)$$,
              'u_lg: login.mfa_required, login.succeeded (mfa totp / recovery_code), login.mfa_failed (reason, factor)');
SELECT results_eq(format($$SELECT severity::text, user_id, details->>'step' FROM authx.audit_log
                            WHERE event_type = 'login.blocked' AND ip = '192.0.2.66' AND user_agent = %L$$, :'ua'),
                  $$VALUES ('medium', NULL::uuid, 'mfa')$$, 'login.blocked (medium, step mfa, no user)');
SELECT ok((SELECT count(*) FROM authx.audit_log WHERE event_type = 'login.mfa_failed' AND user_id IS NULL
              AND user_agent = :'ua' AND details->>'reason' = 'invalid_challenge') >= 22,
          'login.mfa_failed (invalid_challenge, no user) for the unknown challenges');

-- ================================================================ deleting the account
SET ROLE authx_app;
SELECT authx.recovery_codes_generate(:'u_del') AS x \gset
SELECT pg_temp.challenge('del') AS ch9 \gset
RESET ROLE;
CREATE FUNCTION pg_temp.mfa_rows(p_user uuid) RETURNS int[] LANGUAGE sql AS $$
    SELECT ARRAY[(SELECT count(*)::int FROM authx.mfa_totp WHERE user_id = p_user),
                 (SELECT count(*)::int FROM authx.mfa_recovery_codes WHERE user_id = p_user),
                 (SELECT count(*)::int FROM authx.mfa_challenges WHERE user_id = p_user)]
$$;
SELECT is(pg_temp.mfa_rows(:'u_del'), ARRAY[1, 10, 1], 'before user_delete: a seed, ten recovery codes, a challenge');
SELECT authx.user_delete(:'u_del') AS x \gset
SELECT is(pg_temp.mfa_rows(:'u_del'), ARRAY[0, 0, 0], 'user_delete erases the seed, the recovery codes and the challenge');
SELECT is((SELECT mfa_enabled FROM authx.users WHERE id = :'u_del'), false, 'and mfa_enabled');
SET ROLE authx_app;
SELECT is(pg_temp.lmfa(:'ch9', pg_temp.code(:'u_del')), 'invalid_challenge', 'its challenge: invalid_challenge');
RESET ROLE;

-- ================================================================ maintenance
INSERT INTO authx.mfa_challenges (token_hash, user_id, created_at, expires_at) VALUES
    (sha256(convert_to('pgtap-mfa-old-' || :'ua', 'UTF8')), :'u_plain', now() - interval '3 days', clock_timestamp() - interval '25 hours'),
    (sha256(convert_to('pgtap-mfa-recent-' || :'ua', 'UTF8')), :'u_plain', now() - interval '1 day', clock_timestamp() - interval '23 hours');
SELECT authx.maintenance_run() AS mr \gset
SELECT ok(:'mr'::jsonb ? 'mfa', 'maintenance_run reports mfa');
SELECT ok((:'mr'::jsonb -> 'mfa' ->> 'challenges_purged')::int >= 1, 'with challenges_purged');
SELECT is((SELECT array_agg(token_hash = sha256(convert_to('pgtap-mfa-recent-' || :'ua', 'UTF8'))) FROM authx.mfa_challenges
            WHERE user_id = :'u_plain'), ARRAY[true],
          'a challenge that ended more than a day ago is purged, one that ended 23 hours ago is not');

SELECT * FROM finish();
ROLLBACK;

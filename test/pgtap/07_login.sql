-- 07_login.sql — authx.login and the lockout policy, as authx_app.
--
-- Covers:
--   * answers: ok (user id, token, expiry; last_login_at set), and
--     invalid_credentials for a wrong password, an unknown, deleted or
--     malformed email, NULL email / password / both, a 100 000-character
--     email, a 5000-byte password, quotes — never an error; email matched
--     case-insensitively and trimmed; a 100 000-character user agent is
--     stored cut to 512;
--   * disabled / status locked are revealed only to the right password;
--   * per (account, address) lockout at authx.lockout_threshold: only that
--     address is locked (another logs in), 10.0.0.1 and 10.0.0.1/24 are one
--     address, "locked" only for the right password, with expires_at =
--     end of the lock (lockout_duration ahead); failures while locked are
--     not counted; a success clears the address's counter;
--   * account-wide lockout at authx.lockout_account_threshold failures
--     from distinct addresses locks every address; 0 turns it off;
--     without an address the account counter uses lockout_threshold;
--   * counting: failures outside lockout_window start a new window;
--     failures in a rolled-back subtransaction still count;
--   * the lock duration doubles on a repeat lockout (1 s, then 2 s) and is
--     capped by lockout_max_duration (3 s) — pg_sleep lets each expire;
--   * a lockout does not end an existing session;
--   * rehash on login after a cost increase, not on a failed login;
--   * audit events (queued, visible after audit_flush in READ COMMITTED):
--     login.succeeded, login.failed with reason unknown_email /
--     bad_password / locked / disabled, login.lockout with locked_until;
--   * the worker persists the lockout: authx.active_lockouts (as
--     authx_admin) shows it; authx.user_unlock (admin) clears it, and after
--     the worker's next pass (polled, at most 10 s) active_lockouts no
--     longer shows it; user.unlocked is logged;
--   * user_unlock acts on shared memory at once: a login right after it
--     works, even when the unlocking (sub)transaction was rolled back, for
--     an address lock and an account-wide lock alike;
--   * the worker (and with it the audit drain) is not blocked by this
--     open transaction after user_unlock.
-- Everything is rolled back at the end (lockout counters live in shared
-- memory, keyed by the ids of users that never commit).

-- The worker must not need to make today's partitions while this
-- transaction holds locks on audit_log (see 02_privileges).
DO $$ BEGIN PERFORM authx.maintenance_run(); END $$;

BEGIN;
SELECT plan(81);

SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
-- Lockouts, not the login rate policy (15_threat tests that): no limit
-- until the ROLLBACK at the end.
UPDATE authx.rate_limit_policies SET max = 1000000 WHERE name = 'login';
SET authx.lockout_threshold = 3;
SET authx.lockout_account_threshold = 5;
SET authx.lockout_window = '15min';
SET authx.lockout_duration = '60s';
SET authx.lockout_max_duration = '1d';
SET authx.max_sessions_per_user = 0;

-- Every login below carries this user agent, so the audit events of this
-- run (they outlive the transaction) are told apart from earlier runs.
SELECT 'pgtap-login-' || gen_random_uuid() AS ua \gset

CREATE FUNCTION pg_temp.mkuser(p_name text) RETURNS uuid LANGUAGE sql AS
$$ SELECT authx.user_create('pgtap-login-' || p_name || '@example.com', 'login password ' || p_name) $$;
SELECT pg_temp.mkuser('ok') AS u_ok, pg_temp.mkuser('pair') AS u_pair, pg_temp.mkuser('acct') AS u_acct,
       pg_temp.mkuser('noip') AS u_noip, pg_temp.mkuser('off') AS u_off, pg_temp.mkuser('clear') AS u_clear,
       pg_temp.mkuser('win') AS u_win, pg_temp.mkuser('rb') AS u_rb, pg_temp.mkuser('dbl') AS u_dbl,
       pg_temp.mkuser('dis') AS u_dis, pg_temp.mkuser('st') AS u_st, pg_temp.mkuser('del') AS u_del,
       pg_temp.mkuser('rh') AS u_rh, pg_temp.mkuser('bad') AS u_bad \gset

-- login(name suffix, password, ip) as a short status; same user agent.
CREATE FUNCTION pg_temp.st(p_name text, p_password text, p_ip inet) RETURNS text LANGUAGE sql AS
$$ SELECT status FROM authx.login('pgtap-login-' || p_name || '@example.com', p_password, p_ip,
                                  current_setting('pgtap.ua')) $$;
-- The right password of a user.
CREATE FUNCTION pg_temp.pw(p_name text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT 'login password ' || p_name $$;
SELECT set_config('pgtap.ua', :'ua', false) AS ua_set \gset

SET ROLE authx_app;

-- ================================================================ answers
SELECT status AS ok_status, user_id AS ok_uid, session_token AS ok_tok, expires_at AS ok_exp
  FROM authx.login(E' PGTAP-LOGIN-OK@example.com\t', pg_temp.pw('ok'), '198.51.100.1', :'ua') \gset
SELECT is(:'ok_status'::text, 'ok', 'right password (email in another case, with blanks): ok');
SELECT is(:'ok_uid'::uuid, :'u_ok'::uuid, 'ok: the user id');
SELECT is(authx.session_validate(:'ok_tok'), :'u_ok'::uuid, 'ok: the token is a valid session');
SELECT ok(:'ok_exp'::timestamptz > now() + interval '6 days', 'ok: expires_at is the session expiry');
SELECT isnt((SELECT last_login_at FROM authx.user_get(:'u_ok')), NULL, 'ok: last_login_at is set');
SELECT results_eq(
    format($$SELECT * FROM authx.login('pgtap-login-ok@example.com', 'wrong password', '198.51.100.1', %L)$$, :'ua'),
    $$VALUES ('invalid_credentials'::text, NULL::uuid, NULL::text, NULL::timestamptz)$$,
    'wrong password: invalid_credentials and nothing else');
SELECT is(pg_temp.st('nobody', 'login password ok', '198.51.100.1'), 'invalid_credentials', 'unknown email: invalid_credentials');

CREATE TEMP TABLE bad_logins (email text, password text);
INSERT INTO bad_logins VALUES
    (NULL, NULL), (NULL, 'login password bad'), ('pgtap-login-bad@example.com', NULL), ('', ''),
    ('pgtap-login-bad@example.com', ''), ('not an email', 'login password bad'),
    (repeat('a', 100000), repeat('b', 5000)), ('pgtap-login-bad@example.com', repeat('b', 5000)),
    ($$' OR '1'='1$$, $$' OR '1'='1$$), ($$pgtap-login-bad@example.com' --$$, 'login password bad');
SELECT lives_ok(format($$SELECT l.* FROM bad_logins b, authx.login(b.email, b.password, '198.51.100.2', %L) l$$, :'ua'),
                'NULLs, empty, huge and quoted inputs never raise');
SELECT is_empty(format($$SELECT l.status FROM bad_logins b, authx.login(b.email, b.password, '198.51.100.3', %L) l
                         WHERE l.status IS DISTINCT FROM 'invalid_credentials' OR l.user_id IS NOT NULL
                            OR l.session_token IS NOT NULL$$, :'ua'),
                'and answer invalid_credentials with no user and no token');
SELECT is((SELECT status FROM authx.login('pgtap-login-ok@example.com', pg_temp.pw('ok'), NULL, repeat('u', 100000))),
          'ok', 'a 100 000-character user agent is accepted');
RESET ROLE;
SELECT is((SELECT max(length(user_agent)) FROM authx.sessions WHERE user_id = :'u_ok'), 512,
          'and stored cut to 512 characters');
SET ROLE authx_app;

-- ================================================================ disabled, locked status, deleted
RESET ROLE;
SELECT authx.user_disable(:'u_dis') AS x \gset
UPDATE authx.users SET status = 'locked' WHERE id = :'u_st';
SELECT authx.user_delete(:'u_del') AS x \gset
SET ROLE authx_app;
SELECT is(pg_temp.st('dis', 'wrong password', '198.51.100.4'), 'invalid_credentials', 'disabled, wrong password: invalid_credentials');
SELECT is(pg_temp.st('dis', pg_temp.pw('dis'), '198.51.100.4'), 'disabled', 'disabled, right password: disabled');
SELECT is(pg_temp.st('st', 'wrong password', '198.51.100.4'), 'invalid_credentials', 'status locked, wrong password: invalid_credentials');
SELECT results_eq(
    format($$SELECT status, user_id, session_token FROM authx.login('pgtap-login-st@example.com', %L, '198.51.100.4', %L)$$,
           pg_temp.pw('st'), :'ua'),
    $$VALUES ('locked'::text, NULL::uuid, NULL::text)$$, 'status locked, right password: locked, no session');
SELECT is(pg_temp.st('del', pg_temp.pw('del'), '198.51.100.4'), 'invalid_credentials', 'deleted, right password: invalid_credentials');

-- ================================================================ per-address lockout
SELECT is(ARRAY[pg_temp.st('pair', 'bad 1', '203.0.113.10'), pg_temp.st('pair', 'bad 2', '203.0.113.10/24')],
          ARRAY['invalid_credentials', 'invalid_credentials'], 'two failures from 203.0.113.10 (with and without prefix)');
SELECT is(pg_temp.st('pair', pg_temp.pw('pair'), '203.0.113.10'), 'ok', 'below the threshold the right password works');
-- That success cleared the address's counter: three more are needed.
SELECT is(ARRAY[pg_temp.st('pair', 'bad 3', '203.0.113.10'), pg_temp.st('pair', 'bad 4', '203.0.113.10')],
          ARRAY['invalid_credentials', 'invalid_credentials'], 'two more failures after the success');
SELECT is(pg_temp.st('pair', pg_temp.pw('pair'), '203.0.113.10'), 'ok',
          'a success cleared the address counter: 2 + 2 failures do not lock');
-- The account counter was not cleared: it stands at 4 of 5.  Keep it below.
SELECT clock_timestamp() AS t_lock \gset
SELECT is(ARRAY[pg_temp.st('clear', 'bad 1', '203.0.113.20'), pg_temp.st('clear', 'bad 2', '203.0.113.20'),
                pg_temp.st('clear', 'bad 3', '203.0.113.20/32')],
          ARRAY['invalid_credentials', 'invalid_credentials', 'invalid_credentials'],
          'three failures from one address: still invalid_credentials (the third locks)');
SELECT status AS l_status, expires_at AS l_exp, (user_id IS NULL AND session_token IS NULL) AS l_none
  FROM authx.login('pgtap-login-clear@example.com', pg_temp.pw('clear'), '203.0.113.20', :'ua') \gset
SELECT is(:'l_status'::text, 'locked', 'then the right password from that address: locked');
SELECT ok(:'l_exp'::timestamptz BETWEEN :'t_lock'::timestamptz + interval '60 seconds'
                                     AND :'t_lock'::timestamptz + interval '61 seconds',
          'expires_at is the end of the lock, lockout_duration (60 s) ahead');
SELECT ok(:'l_none', 'locked: no user id, no token');
SELECT is(pg_temp.st('clear', 'bad 4', '203.0.113.20'), 'invalid_credentials',
          'a wrong password while locked: invalid_credentials (the lock is not revealed)');
SELECT is(pg_temp.st('clear', pg_temp.pw('clear'), '203.0.113.21'), 'ok', 'another address logs in');
SELECT is(pg_temp.st('clear', pg_temp.pw('clear'), '203.0.113.20'), 'locked', 'the locked address stays locked');
SELECT is((SELECT expires_at FROM authx.login('pgtap-login-clear@example.com', pg_temp.pw('clear'), '203.0.113.20', :'ua')),
          :'l_exp'::timestamptz, 'failures while locked did not extend the lock');
-- Failures while locked are not counted: 3 counted + 1 ignored < 5, so the
-- account is not locked (another address just logged in above).
SELECT is(pg_temp.st('clear', 'bad 5', '203.0.113.22'), 'invalid_credentials', 'one failure from a third address');
SELECT is(pg_temp.st('clear', pg_temp.pw('clear'), '203.0.113.23'), 'ok',
          'account at 4 counted failures: not locked (the one made while locked was not counted)');

-- A lockout does not end a session that exists.
SELECT is(authx.session_validate(:'ok_tok'), :'u_ok'::uuid, '(u_ok session still valid)');
SELECT session_token AS s_before FROM authx.login('pgtap-login-acct@example.com', pg_temp.pw('acct'), '192.0.2.100', :'ua') \gset

-- ================================================================ account-wide lockout
SELECT is((SELECT array_agg(pg_temp.st('acct', 'bad ' || i, ('192.0.2.' || i)::inet) ORDER BY i) FROM generate_series(1, 4) i),
          array_fill('invalid_credentials'::text, ARRAY[4]), 'four failures from four addresses');
SELECT is(pg_temp.st('acct', pg_temp.pw('acct'), '192.0.2.50'), 'ok', 'four of five: a fresh address still logs in');
SELECT is(pg_temp.st('acct', 'bad 5', '192.0.2.5'), 'invalid_credentials', 'the fifth failure, from a fifth address');
SELECT is(ARRAY[pg_temp.st('acct', pg_temp.pw('acct'), '192.0.2.51'), pg_temp.st('acct', pg_temp.pw('acct'), '2001:db8::1'),
                pg_temp.st('acct', pg_temp.pw('acct'), NULL)],
          ARRAY['locked', 'locked', 'locked'], 'account threshold reached: locked from every address, v6 and none included');
SELECT is(authx.session_validate(:'s_before'), :'u_acct'::uuid, 'a lockout does not end an existing session');

SELECT is((SELECT array_agg(pg_temp.st('noip', 'bad ' || i, NULL) ORDER BY i) FROM generate_series(1, 3) i),
          array_fill('invalid_credentials'::text, ARRAY[3]), 'three failures without an address');
SELECT is(pg_temp.st('noip', pg_temp.pw('noip'), '192.0.2.60'), 'locked',
          'without an address the account counter locks at lockout_threshold (3), everywhere');

RESET ROLE;
SET authx.lockout_account_threshold = 0;
SET ROLE authx_app;
SELECT is((SELECT array_agg(pg_temp.st('off', 'bad ' || i, ('192.0.2.' || (100 + i))::inet) ORDER BY i) FROM generate_series(1, 8) i),
          array_fill('invalid_credentials'::text, ARRAY[8]), 'account threshold 0: eight failures from eight addresses');
SELECT is(pg_temp.st('off', pg_temp.pw('off'), '192.0.2.200'), 'ok', 'account threshold 0: no account-wide lock');
RESET ROLE;
SET authx.lockout_account_threshold = 5;
SET ROLE authx_app;

-- ================================================================ window and rollback
RESET ROLE;
SET authx.lockout_window = '1s';
SET ROLE authx_app;
SELECT is(ARRAY[pg_temp.st('win', 'bad 1', '198.51.100.30'), pg_temp.st('win', 'bad 2', '198.51.100.30')],
          ARRAY['invalid_credentials', 'invalid_credentials'], 'two failures');
SELECT pg_sleep(1.2) AS slept \gset
SELECT is(pg_temp.st('win', 'bad 3', '198.51.100.30'), 'invalid_credentials', 'a third after the 1 s window');
SELECT is(pg_temp.st('win', pg_temp.pw('win'), '198.51.100.30'), 'ok', 'failures of an old window do not count');
RESET ROLE;
SET authx.lockout_window = '15min';
SET ROLE authx_app;

SAVEPOINT rb1;
SELECT pg_temp.st('rb', 'bad 1', '198.51.100.40') AS x \gset
ROLLBACK TO SAVEPOINT rb1;
SAVEPOINT rb2;
SELECT pg_temp.st('rb', 'bad 2', '198.51.100.40') AS x \gset
SELECT pg_temp.st('rb', 'bad 3', '198.51.100.40') AS x \gset
ROLLBACK TO SAVEPOINT rb2;
SELECT is(pg_temp.st('rb', pg_temp.pw('rb'), '198.51.100.40'), 'locked', 'failures in rolled-back subtransactions still count');

-- ================================================================ doubling and cap
RESET ROLE;
SET authx.lockout_duration = '1s';
SET authx.lockout_max_duration = '3s';
SET authx.lockout_account_threshold = 20;
SET ROLE authx_app;
CREATE FUNCTION pg_temp.lock_round(p_ip inet) RETURNS interval LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    r  record;
BEGIN
    FOR i IN 1..3 LOOP
        PERFORM pg_temp.st('dbl', 'bad ' || i, p_ip);
    END LOOP;
    SELECT * INTO r FROM authx.login('pgtap-login-dbl@example.com', pg_temp.pw('dbl'), p_ip, current_setting('pgtap.ua'));
    IF r.status <> 'locked' THEN
        RETURN NULL;
    END IF;
    RETURN r.expires_at - t0;
END
$$;
-- lock_round: three failures, then the right password; returns how far
-- beyond the start of the round the reported lock ends (NULL: not locked).
SELECT ok(d >= interval '1 second' AND d < interval '1.4 seconds', 'first lockout: lockout_duration (1 s)')
  FROM (SELECT pg_temp.lock_round('198.51.100.50') AS d) r;
SELECT pg_sleep(1.1) AS slept \gset
SELECT ok(d >= interval '2 seconds' AND d < interval '2.4 seconds', 'a repeat lockout doubles: 2 s, not 1 s')
  FROM (SELECT pg_temp.lock_round('198.51.100.50') AS d) r;
SELECT pg_sleep(2.1) AS slept \gset
SELECT ok(d >= interval '3 seconds' AND d < interval '3.4 seconds',
          'the third would be 4 s: capped at lockout_max_duration (3 s)')
  FROM (SELECT pg_temp.lock_round('198.51.100.50') AS d) r;
SELECT is(pg_temp.st('dbl', pg_temp.pw('dbl'), '198.51.100.51'), 'ok', 'the doubling is per address: another logs in');
RESET ROLE;
SET authx.lockout_duration = '60s';
SET authx.lockout_max_duration = '1d';
SET authx.lockout_account_threshold = 5;
SET ROLE authx_app;

-- ================================================================ rehash on login
RESET ROLE;
SELECT password_hash AS rh_before FROM authx.users WHERE id = :'u_rh' \gset
SET authx.password_opslimit = 2;
SET ROLE authx_app;
SELECT is(pg_temp.st('rh', 'wrong password', '198.51.100.60'), 'invalid_credentials', 'cost raised: a wrong password');
RESET ROLE;
SELECT is((SELECT password_hash FROM authx.users WHERE id = :'u_rh'), :'rh_before', 'a failed login does not rehash');
SET ROLE authx_app;
SELECT is(pg_temp.st('rh', pg_temp.pw('rh'), '198.51.100.60'), 'ok', 'cost raised: the right password logs in');
RESET ROLE;
SELECT matches((SELECT password_hash FROM authx.users WHERE id = :'u_rh'), '^\$argon2id\$v=19\$m=64,t=2,p=1\$',
               'the successful login rehashed at t=2');
SET ROLE authx_app;
SELECT is(pg_temp.st('rh', pg_temp.pw('rh'), '198.51.100.60'), 'ok', 'the rehashed password logs in');
RESET ROLE;
SET authx.password_opslimit = 1;
SELECT is(authx.password_verify(:'u_rh', pg_temp.pw('rh')), true, 'and verifies');

-- ================================================================ audit events
SELECT lives_ok($$SELECT authx.audit_flush('30 seconds')$$, 'audit_flush: the queued login events are written');
CREATE TEMP TABLE ev ON COMMIT DROP AS
SELECT event_type, severity::text AS severity, user_id, ip, details
  FROM authx.audit_log WHERE user_agent = :'ua';
SELECT set_eq(
    format($$SELECT event_type, severity, details->>'reason' FROM ev WHERE user_id = %L$$, :'u_ok'),
    $$VALUES ('login.succeeded', 'info', NULL), ('login.failed', 'medium', 'bad_password')$$,
    'u_ok: login.succeeded (info) and login.failed/bad_password (medium)');
SELECT is((SELECT count(*) FROM ev WHERE user_id = :'u_ok' AND event_type = 'login.succeeded')::int, 1,
          'one login.succeeded per success (the 100 000-character user agent one is not in this run''s tag)');
SELECT ok((SELECT count(*) FROM ev WHERE user_id IS NULL AND event_type = 'login.failed' AND severity = 'low'
              AND details->>'reason' = 'unknown_email')
          >= 1 + (SELECT count(*) FROM bad_logins WHERE email IS DISTINCT FROM 'pgtap-login-bad@example.com') * 2,
          'login.failed/unknown_email (low, no user) for every unknown or malformed email');
SELECT is((SELECT ip FROM ev WHERE user_id IS NULL AND details->>'reason' = 'unknown_email' ORDER BY ip LIMIT 1),
          '198.51.100.1'::inet, 'with the address');
SELECT is((SELECT count(*) FROM ev WHERE user_id = :'u_bad' AND details->>'reason' = 'bad_password')::int, 6,
          'u_bad: NULL, empty and oversized passwords are logged as bad_password');
SELECT set_eq(
    format($$SELECT details->>'reason', severity FROM ev WHERE user_id = %L$$, :'u_dis'),
    $$VALUES ('bad_password', 'medium'), ('disabled', 'medium')$$,
    'u_dis: login.failed bad_password and disabled');
SELECT set_eq(
    format($$SELECT details->>'reason', severity FROM ev WHERE user_id = %L$$, :'u_st'),
    $$VALUES ('bad_password', 'medium'), ('locked', 'medium')$$,
    'u_st: login.failed bad_password and locked');
SELECT is((SELECT count(*) FROM ev WHERE user_id = :'u_del')::int, 0,
          'u_del: nothing under the deleted user''s id (it is an unknown email now)');
SELECT results_eq(
    format($$SELECT event_type, severity, host(ip), details->>'reason' FROM ev WHERE user_id = %L
              AND (event_type = 'login.lockout' OR details->>'reason' = 'locked') ORDER BY event_type, ip$$, :'u_clear'),
    $$VALUES ('login.failed', 'medium', '203.0.113.20', 'locked'), ('login.failed', 'medium', '203.0.113.20', 'locked'),
             ('login.failed', 'medium', '203.0.113.20', 'locked'), ('login.lockout', 'high', '203.0.113.20', NULL)$$,
    'u_clear: one login.lockout (high) when the lock began, login.failed/locked for each right password while locked');
SELECT is((SELECT (details->>'locked_until')::timestamptz FROM ev WHERE user_id = :'u_clear' AND event_type = 'login.lockout'),
          :'l_exp'::timestamptz, 'login.lockout records locked_until');
SELECT is((SELECT count(*) FROM ev WHERE user_id = :'u_clear' AND details->>'reason' = 'bad_password')::int, 5,
          'u_clear: five bad_password events (the one made while locked too)');
SELECT is((SELECT count(*) FROM ev WHERE user_id = :'u_dbl' AND event_type = 'login.lockout')::int, 3,
          'u_dbl: three lockouts logged');
SELECT is((SELECT count(*) FROM ev WHERE user_id = :'u_rb' AND details->>'reason' = 'bad_password')::int, 3,
          'u_rb: the rolled-back failures were logged all the same');
SELECT is((SELECT count(*) FROM ev WHERE user_id = :'u_acct' AND event_type = 'login.lockout' AND ip = '192.0.2.5')::int, 1,
          'u_acct: the account lockout is logged at the failure that caused it');

-- ================================================================ persisted lockouts, unlock
-- The worker copies the shared-memory entries to authx.lockouts (about a
-- second behind).  pg_temp.wait_lockout polls authx.active_lockouts, in
-- READ COMMITTED (each statement sees the worker's latest commit), until the
-- user has a row there (p_present) or none, for at most 10 s; it returns
-- whether that happened.
CREATE FUNCTION pg_temp.wait_lockout(p_user uuid, p_present boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..100 LOOP
        IF EXISTS (SELECT 1 FROM authx.active_lockouts WHERE user_id = p_user) = p_present THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;
RESET ROLE;
SELECT ok(pg_temp.wait_lockout(:'u_clear', true) AND pg_temp.wait_lockout(:'u_rb', true)
          AND pg_temp.wait_lockout(:'u_acct', true),
          'the worker persists the lockouts of u_clear, u_rb and u_acct (within 10 s)');
SET ROLE authx_admin;
SELECT results_eq(
    format($$SELECT host(ip), lock_count, locked_until FROM authx.active_lockouts WHERE user_id = %L$$, :'u_clear'),
    format($$VALUES ('203.0.113.20', 1, %L::timestamptz)$$, :'l_exp'),
    'admin: active_lockouts shows u_clear locked at 203.0.113.20 until the end of the lock');
SELECT lives_ok(format('SELECT authx.user_unlock(%L)', :'u_clear'), 'admin: user_unlock');
RESET ROLE;
SELECT is((SELECT count(*) FROM authx.audit_log WHERE user_id = :'u_clear' AND event_type = 'user.unlocked')::int, 1,
          'user_unlock logs user.unlocked');
-- No login here: only the unlock can clear the persisted row.
SELECT ok(pg_temp.wait_lockout(:'u_clear', false),
          'after the worker''s next pass active_lockouts no longer shows u_clear (within 10 s)');
SET ROLE authx_admin;
SELECT is((SELECT count(*) FROM authx.active_lockouts WHERE user_id = :'u_clear')::int, 0,
          'admin: active_lockouts no longer shows u_clear');
SELECT is(pg_temp.st('clear', pg_temp.pw('clear'), '203.0.113.20'), 'ok', 'after user_unlock the address logs in');

-- The unlock is in shared memory at once: a login right after it works,
-- even when the transaction that unlocked rolls back (here a savepoint).
SELECT is(ARRAY[pg_temp.st('rb', pg_temp.pw('rb'), '198.51.100.40'), pg_temp.st('acct', pg_temp.pw('acct'), '192.0.2.52')],
          ARRAY['locked', 'locked'], 'u_rb (at its address) and u_acct (account-wide) are still locked');
SAVEPOINT unlock_rb;
SELECT authx.user_unlock(:'u_rb') AS x, authx.user_unlock(:'u_acct') AS y \gset
ROLLBACK TO SAVEPOINT unlock_rb;
SELECT is(pg_temp.st('rb', pg_temp.pw('rb'), '198.51.100.40'), 'ok',
          'right after a rolled-back user_unlock the address lock is gone: login ok');
SELECT is(ARRAY[pg_temp.st('acct', pg_temp.pw('acct'), '192.0.2.52'), pg_temp.st('acct', pg_temp.pw('acct'), NULL)],
          ARRAY['ok', 'ok'], 'and the account-wide lock too: a new address and no address log in');
RESET ROLE;
SELECT is((SELECT count(*) FROM authx.audit_log WHERE user_id IN (:'u_rb', :'u_acct') AND event_type = 'user.unlocked')::int, 0,
          'the rolled-back unlocks leave no user.unlocked event (it is transactional)');

-- The worker's passes above wrote the cleared rows while this transaction
-- stayed open; the audit drain runs in the same worker.
SELECT lives_ok($$SELECT authx.audit('pgtap.login.after_unlock', 'info'), authx.audit_flush('3 seconds')$$,
                'an event queued after user_unlock is written while the transaction is open');

SELECT * FROM finish();
ROLLBACK;

-- 06_sessions.sql — sessions, exercised as the application role.
--
-- Covers (every authx call below runs as authx_app unless marked; time is
-- moved by UPDATEs as the superuser, the only one who can read the table):
--   * login -> token "axs_" + 43 base64url characters, user id, expiry from
--     authx.session_ttl; session_validate returns the user; session_info
--     and sessions() describe it; session_revoke ends it (true once, then
--     false), after which validate, info and sessions() no longer show it;
--   * only sha256(token) is stored, never the token; authx_app cannot
--     SELECT authx.sessions at all;
--   * session_validate as authx_app with authx.touch_interval = 0 writes
--     last_seen_at and last_ip (as the table owner) — seen after RESET
--     ROLE — and does not write within touch_interval nor in a read-only
--     transaction; session_info never touches; an invalid session is
--     never touched;
--   * search_path attack: with search_path = evil, pg_catalog, where evil
--     defines =, <, <= operators for uuid, bytea and timestamptz that log
--     who called them, the touch (run as the table owner, a superuser)
--     calls none of them;
--   * expiry: absolute (expires_at), idle (idle_timeout fixed at creation
--     from authx.session_idle_timeout; 0 = none), both at their boundary;
--     session_create's own ttl and its limits (22023), NULL / unknown user
--     (22004 / P0002);
--   * authx.max_sessions_per_user revokes the oldest (revoke_reason
--     session_limit), 0 = no limit;
--   * the owner: disabled -> invalid until enabled, status 'locked' stays
--     valid, soft-deleted -> invalid and no new session (P0002), disabled
--     -> no new session (55000); a hard DELETE of the user cascades to
--     its sessions;
--   * sessions() and session_info() never expose a token or hash column,
--     nor the token in any value;
--   * session_revoke_all keeps the given token, revoke_id, revoke_all(NULL)
--     22004; malformed tokens (NULL, empty, wrong prefix, length, alphabet,
--     1 MB, quotes) give NULL / false / no row, never an error;
--   * transactional audit events session.created / revoked / revoked_all;
--   * _sessions_purge deletes sessions expired or revoked over a day ago,
--     keeps the rest;
--   * authx.stats session counters grow.
-- (An error inside the touch is in 08_touch_error.sql.)
-- Everything is rolled back at the end.
BEGIN;
SELECT plan(105);

SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
SET authx.session_ttl = '2h';
SET authx.session_idle_timeout = '1h';
SET authx.max_sessions_per_user = 0;
SET authx.touch_interval = 0;

SELECT authx.user_create('pgtap-sess-1@example.com', 'sessions password 1') AS u1,
       authx.user_create('pgtap-sess-2@example.com', 'sessions password 2') AS u2 \gset

CREATE TEMP TABLE stats_before ON COMMIT DROP AS SELECT name, value FROM authx.stats;
CREATE FUNCTION pg_temp.stat_delta(p_name text) RETURNS bigint LANGUAGE sql AS
$$ SELECT s.value - b.value FROM authx.stats s JOIN stats_before b USING (name) WHERE s.name = p_name $$;
-- The session row behind a token (superuser only).
CREATE FUNCTION pg_temp.sess(p_token text) RETURNS authx.sessions LANGUAGE sql AS
$$ SELECT s FROM authx.sessions s WHERE s.token_hash = sha256(convert_to(p_token, 'UTF8')) $$;
CREATE FUNCTION pg_temp.age(p_token text, p_idle interval) RETURNS void LANGUAGE sql AS
$$ UPDATE authx.sessions SET last_seen_at = clock_timestamp() - p_idle
    WHERE token_hash = sha256(convert_to(p_token, 'UTF8')) $$;

-- ================================================================ search_path attack
-- First, so that this backend prepares the touch statement under this
-- search_path (a cached plan is re-parsed when search_path changes anyway).
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE TABLE evil.calls (who name, super boolean, op text);
GRANT INSERT ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.log(p_op text) RETURNS void LANGUAGE sql AS
$$ INSERT INTO evil.calls SELECT current_user, r.rolsuper, p_op FROM pg_catalog.pg_roles r WHERE r.rolname = current_user $$;
CREATE FUNCTION evil.uuid_eq(a uuid, b uuid) RETURNS boolean LANGUAGE sql AS
$$ SELECT evil.log('uuid ='); SELECT pg_catalog.uuid_eq(a, b) $$;
CREATE FUNCTION evil.bytea_eq(a bytea, b bytea) RETURNS boolean LANGUAGE sql AS
$$ SELECT evil.log('bytea ='); SELECT pg_catalog.byteaeq(a, b) $$;
CREATE FUNCTION evil.ts_eq(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE sql AS
$$ SELECT evil.log('timestamptz ='); SELECT pg_catalog.timestamptz_eq(a, b) $$;
CREATE FUNCTION evil.ts_lt(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE sql AS
$$ SELECT evil.log('timestamptz <'); SELECT pg_catalog.timestamptz_lt(a, b) $$;
CREATE FUNCTION evil.ts_le(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE sql AS
$$ SELECT evil.log('timestamptz <='); SELECT pg_catalog.timestamptz_le(a, b) $$;
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.uuid_eq);
CREATE OPERATOR evil.= (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = evil.bytea_eq);
CREATE OPERATOR evil.= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_eq);
CREATE OPERATOR evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_lt);
CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_le);

SELECT session_token AS t_evil FROM authx.session_create(:'u1') \gset
SELECT pg_temp.age(:'t_evil', '10 minutes') AS aged \gset
SET ROLE authx_app;
SET search_path = evil, pg_catalog;
-- The trap works: an unqualified uuid = here is evil's (logged as authx_app).
SELECT '00000000-0000-0000-0000-000000000000'::uuid = '00000000-0000-0000-0000-000000000000'::uuid AS sanity \gset
SELECT authx.session_validate(:'t_evil', '203.0.113.66') AS evil_result \gset
RESET search_path;
RESET ROLE;
SELECT is(:'sanity'::text, 't', 'the evil operator is found through search_path');
SELECT is((SELECT count(*) FROM evil.calls WHERE who = 'authx_app' AND op = 'uuid =')::int, 1,
          'the trap logged the one unqualified comparison made by the test itself');
SELECT is(:'evil_result'::uuid, :'u1'::uuid, 'session_validate under search_path = evil, pg_catalog works');
SELECT is((pg_temp.sess(:'t_evil')).last_ip, '203.0.113.66'::inet, 'and it touched the session (last_ip written)');
SELECT is_empty($$SELECT who || ' ' || op FROM evil.calls WHERE super OR who <> 'authx_app'$$,
                'the touch, run as the table owner, called no operator from schema evil');
SELECT is((SELECT count(*) FROM evil.calls)::int, 1, 'no evil operator was called by session_validate at all');

-- ================================================================ login, validate, info, revoke
SET ROLE authx_app;
SELECT status, user_id AS login_uid, session_token AS tok, expires_at AS tok_exp,
       clock_timestamp() AS t_login
  FROM authx.login('PgTap-Sess-1@example.com', 'sessions password 1', '198.51.100.7/24', 'pgtap/1.0') \gset
SELECT is(:'status'::text, 'ok', 'app: login ok');
SELECT is(:'login_uid'::uuid, :'u1'::uuid, 'app: login returns the user id');
SELECT matches(:'tok'::text, '^axs_[A-Za-z0-9_-]{43}$', 'app: the token is axs_ + 43 base64url characters');
SELECT ok(:'tok_exp'::timestamptz BETWEEN :'t_login'::timestamptz + interval '2 hours' - interval '5 seconds'
                                      AND :'t_login'::timestamptz + interval '2 hours',
          'app: expires_at is authx.session_ttl (2h) ahead');
SELECT is(authx.session_validate(:'tok'), :'u1'::uuid, 'app: session_validate returns the user');
SELECT is(authx.session_validate(:'tok', '198.51.100.8'), :'u1'::uuid, 'app: validate with an ip argument');
SELECT throws_ok('SELECT count(*) FROM authx.sessions', '42501', NULL, 'app: cannot SELECT authx.sessions');
SELECT results_eq(
    format($$SELECT user_id, expires_at, ip, user_agent FROM authx.session_info(%L)$$, :'tok'),
    format($$VALUES (%L::uuid, %L::timestamptz, '198.51.100.7/24'::inet, 'pgtap/1.0'::text)$$, :'u1', :'tok_exp'),
    'app: session_info returns user, expiry, ip and user agent');
SELECT session_id AS sid, created_at AS s_created, idle_expires_at AS s_idle, last_seen_at AS s_seen
  FROM authx.session_info(:'tok') \gset
SELECT is(:'s_idle'::timestamptz, :'s_seen'::timestamptz + interval '1 hour',
          'app: idle_expires_at = last_seen_at + authx.session_idle_timeout (1h)');
SELECT set_eq(format($$SELECT session_id FROM authx.sessions(%L)$$, :'u1'),
              format($$VALUES (%L::uuid), ((SELECT session_id FROM authx.session_info(%L)))$$, :'sid', :'t_evil'),
              'app: sessions() lists both live sessions of u1');
SELECT is((SELECT session_id FROM authx.sessions(:'u1') LIMIT 1), :'sid'::uuid, 'app: sessions() lists the newest first');
SELECT is((SELECT count(*) FROM authx.sessions(:'u2'))::int, 0, 'app: sessions() of another user is empty');
RESET ROLE;
SELECT is((pg_temp.sess(:'tok')).id, :'sid'::uuid, 'the stored row is found by sha256(token)');
SELECT is((SELECT count(*) FROM authx.sessions s WHERE s::text LIKE '%' || substr(:'tok', 5) || '%')::int, 0,
          'the token itself is stored nowhere in the row');
SELECT is((pg_temp.sess(:'tok')).last_ip, '198.51.100.8'::inet, 'validate with touch_interval 0 recorded last_ip');
SET ROLE authx_app;
SELECT is(authx.session_revoke(:'tok'), true, 'app: session_revoke returns true');
SELECT is(authx.session_revoke(:'tok'), false, 'app: a second session_revoke returns false');
SELECT is(authx.session_validate(:'tok'), NULL, 'app: a revoked session does not validate');
SELECT is((SELECT count(*) FROM authx.session_info(:'tok'))::int, 0, 'app: session_info: no row when revoked');
SELECT is((SELECT count(*) FROM authx.sessions(:'u1') WHERE session_id = :'sid')::int, 0,
          'app: sessions() no longer lists it');
RESET ROLE;
SELECT is((pg_temp.sess(:'tok')).revoke_reason, 'revoked', 'revoke_reason is revoked');

-- ================================================================ the touch, as authx_app
SELECT session_token AS t_touch FROM authx.session_create(:'u1', '192.0.2.1') \gset
SELECT pg_temp.age(:'t_touch', '30 minutes') AS aged \gset
SELECT (pg_temp.sess(:'t_touch')).last_seen_at AS seen_before, clock_timestamp() AS t_before_touch \gset
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_touch', '192.0.2.77'), :'u1'::uuid, 'app: validate a session idle for 30 min');
RESET ROLE;
SELECT ok((pg_temp.sess(:'t_touch')).last_seen_at >= :'t_before_touch'::timestamptz,
          'touch_interval 0: validate as authx_app moved last_seen_at to now (written as the table owner)');
SELECT is((pg_temp.sess(:'t_touch')).last_ip, '192.0.2.77'::inet, 'and recorded last_ip');
SELECT is((pg_temp.sess(:'t_touch')).ip, '192.0.2.1'::inet, 'the creation ip is kept');
SELECT pg_temp.age(:'t_touch', '30 minutes') AS aged \gset
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_touch'), :'u1'::uuid, 'app: validate without an ip');
RESET ROLE;
SELECT is((pg_temp.sess(:'t_touch')).last_ip, '192.0.2.77'::inet, 'a NULL ip keeps the last known last_ip');
-- Within authx.touch_interval nothing is written.
SET authx.touch_interval = 60;
SELECT pg_temp.age(:'t_touch', '30 seconds') AS aged \gset
SELECT (pg_temp.sess(:'t_touch')).last_seen_at AS seen_30s \gset
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_touch', '192.0.2.88'), :'u1'::uuid, 'app: validate, last seen 30 s ago');
RESET ROLE;
SELECT is((pg_temp.sess(:'t_touch')).last_seen_at, :'seen_30s'::timestamptz, 'touch_interval 60: last_seen_at not written');
SELECT is((pg_temp.sess(:'t_touch')).last_ip, '192.0.2.77'::inet, 'touch_interval 60: last_ip not written');
SET authx.touch_interval = 0;
-- A read-only transaction validates without writing (and without raising).
SAVEPOINT read_only;
SET LOCAL transaction_read_only = on;
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_touch', '192.0.2.99'), :'u1'::uuid, 'app: validate in a read-only transaction');
RESET ROLE;
SELECT is((pg_temp.sess(:'t_touch')).last_seen_at, :'seen_30s'::timestamptz, 'read-only: last_seen_at not written');
ROLLBACK TO SAVEPOINT read_only;
-- session_info does not extend the idle deadline.
SET ROLE authx_app;
SELECT is((SELECT count(*) FROM authx.session_info(:'t_touch'))::int, 1, 'app: session_info of the session');
RESET ROLE;
SELECT is((pg_temp.sess(:'t_touch')).last_seen_at, :'seen_30s'::timestamptz, 'session_info did not touch');

-- ================================================================ absolute and idle expiry
SELECT session_token AS t_abs FROM authx.session_create(:'u1') \gset
UPDATE authx.sessions SET expires_at = clock_timestamp() + interval '1 minute'
 WHERE token_hash = sha256(convert_to(:'t_abs', 'UTF8'));
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_abs'), :'u1'::uuid, 'app: valid a minute before expires_at');
RESET ROLE;
UPDATE authx.sessions SET expires_at = clock_timestamp() - interval '1 millisecond'
 WHERE token_hash = sha256(convert_to(:'t_abs', 'UTF8'));
SELECT (pg_temp.sess(:'t_abs')).last_seen_at AS abs_seen \gset
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_abs'), NULL, 'app: invalid once expires_at has passed');
SELECT is((SELECT count(*) FROM authx.session_info(:'t_abs'))::int, 0, 'app: session_info: no row when expired');
SELECT is((SELECT count(*) FROM authx.sessions(:'u1') s JOIN authx.session_info(:'t_touch') i USING (session_id))::int, 1,
          'app: (sessions() still lists the live one)');
RESET ROLE;
SELECT is((pg_temp.sess(:'t_abs')).last_seen_at, :'abs_seen'::timestamptz, 'an expired session is not touched');
SELECT is((SELECT count(*) FROM authx.sessions(:'u1') WHERE session_id = (pg_temp.sess(:'t_abs')).id)::int, 0,
          'sessions() does not list an expired session');

SELECT session_token AS t_idle FROM authx.session_create(:'u1') \gset
SELECT is((pg_temp.sess(:'t_idle')).idle_timeout, 3600, 'idle_timeout is fixed at creation from session_idle_timeout');
SET authx.session_idle_timeout = '1min';
SELECT pg_temp.age(:'t_idle', '59 minutes') AS aged \gset
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_idle'), :'u1'::uuid,
          'app: idle 59 min with a 1 h timeout is valid (a later setting does not apply)');
RESET ROLE;
SELECT pg_temp.age(:'t_idle', '61 minutes') AS aged \gset
SELECT (pg_temp.sess(:'t_idle')).last_seen_at AS idle_seen \gset
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_idle'), NULL, 'app: idle 61 min is invalid');
SELECT is((SELECT count(*) FROM authx.session_info(:'t_idle'))::int, 0, 'app: session_info: no row when idle');
SELECT is(authx.session_validate(:'t_idle'), NULL, 'app: still invalid (an idle session is not revived)');
RESET ROLE;
SELECT is((pg_temp.sess(:'t_idle')).last_seen_at, :'idle_seen'::timestamptz, 'an idle-expired session is not touched');
SELECT is((SELECT count(*) FROM authx.sessions(:'u1') WHERE session_id = (pg_temp.sess(:'t_idle')).id)::int, 0,
          'sessions() does not list an idle-expired session');

SET authx.session_idle_timeout = 0;
SELECT session_token AS t_noidle FROM authx.session_create(:'u1') \gset
SELECT pg_temp.age(:'t_noidle', '5 days') AS aged \gset
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_noidle'), :'u1'::uuid, 'app: idle timeout 0: unused for 5 days is still valid');
SELECT is((SELECT idle_expires_at FROM authx.session_info(:'t_noidle')), NULL, 'app: idle timeout 0: idle_expires_at is NULL');
RESET ROLE;
SET authx.session_idle_timeout = '1h';

-- session_create's own ttl and its limits.
SET ROLE authx_app;
SELECT expires_at AS ttl_exp, clock_timestamp() AS ttl_now FROM authx.session_create(:'u1', ttl => '10 minutes') \gset
SELECT ok(:'ttl_exp'::timestamptz BETWEEN :'ttl_now'::timestamptz + interval '9 minutes 55 seconds'
                                      AND :'ttl_now'::timestamptz + interval '10 minutes',
          'app: session_create ttl => 10 minutes');
SELECT throws_ok(format($$SELECT authx.session_create(%L, ttl => '0')$$, :'u1'), '22023', NULL, 'app: ttl 0 is 22023');
SELECT throws_ok(format($$SELECT authx.session_create(%L, ttl => '-1 hour')$$, :'u1'), '22023', NULL, 'app: negative ttl is 22023');
SELECT throws_ok(format($$SELECT authx.session_create(%L, ttl => '10 years 1 day')$$, :'u1'), '22023', NULL,
                 'app: ttl over 10 years is 22023');
SELECT throws_ok('SELECT authx.session_create(NULL)', '22004', NULL, 'app: session_create(NULL) is 22004');
SELECT throws_ok(format('SELECT authx.session_create(%L)', gen_random_uuid()), 'P0002', NULL, 'app: unknown user is P0002');
RESET ROLE;

-- ================================================================ max_sessions_per_user
SET authx.max_sessions_per_user = 2;
SET ROLE authx_app;
SELECT session_token AS m1 FROM authx.login('pgtap-sess-2@example.com', 'sessions password 2') \gset
SELECT session_token AS m2 FROM authx.login('pgtap-sess-2@example.com', 'sessions password 2') \gset
SELECT is(ARRAY[authx.session_validate(:'m1'), authx.session_validate(:'m2')], ARRAY[:'u2'::uuid, :'u2'::uuid],
          'app: limit 2: two sessions are valid');
SELECT session_token AS m3 FROM authx.login('pgtap-sess-2@example.com', 'sessions password 2') \gset
SELECT is(authx.session_validate(:'m1'), NULL, 'app: a third login revokes the oldest');
SELECT is(ARRAY[authx.session_validate(:'m2'), authx.session_validate(:'m3')], ARRAY[:'u2'::uuid, :'u2'::uuid],
          'app: the two newest stay valid');
SELECT is((SELECT count(*) FROM authx.sessions(:'u2'))::int, 2, 'app: sessions() lists two');
SELECT session_token AS m4 FROM authx.session_create(:'u2') \gset
SELECT is(ARRAY[authx.session_validate(:'m2'), authx.session_validate(:'m4')], ARRAY[NULL, :'u2'::uuid],
          'app: session_create obeys the limit too');
RESET ROLE;
SELECT is((pg_temp.sess(:'m1')).revoke_reason, 'session_limit', 'the revoked one has revoke_reason session_limit');
SET authx.max_sessions_per_user = 0;
SET ROLE authx_app;
SELECT session_token AS m5 FROM authx.session_create(:'u2') \gset
SELECT session_token AS m6 FROM authx.session_create(:'u2') \gset
SELECT is((SELECT count(*) FROM authx.sessions(:'u2'))::int, 4, 'app: limit 0: no limit');
RESET ROLE;

-- ================================================================ revoke_all, revoke_id
SET ROLE authx_app;
SELECT is(authx.session_revoke_all(:'u2', :'m6'), 3, 'app: session_revoke_all revokes all but the given one');
SELECT is(authx.session_validate(:'m6'), :'u2'::uuid, 'app: the kept session is valid');
SELECT is(ARRAY[authx.session_validate(:'m3'), authx.session_validate(:'m4'), authx.session_validate(:'m5')],
          ARRAY[NULL, NULL, NULL]::uuid[], 'app: the others are not');
SELECT is(authx.session_revoke_all(:'u2', :'m6'), 0, 'app: again: nothing left to revoke');
SELECT is(authx.session_revoke_id(gen_random_uuid()), false, 'app: revoke_id of an unknown id is false');
SELECT is(authx.session_revoke_id((SELECT session_id FROM authx.sessions(:'u2'))), true, 'app: revoke_id of the last one');
SELECT is(authx.session_validate(:'m6'), NULL, 'app: revoked by id');
SELECT throws_ok('SELECT authx.session_revoke_all(NULL)', '22004', NULL, 'app: session_revoke_all(NULL) is 22004');
RESET ROLE;

-- ================================================================ the owner's state
SELECT session_token AS t_own FROM authx.session_create(:'u2') \gset
SELECT authx.user_disable(:'u2') AS changed \gset
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_own'), NULL, 'app: a disabled user''s session is invalid');
SELECT is((SELECT count(*) FROM authx.session_info(:'t_own'))::int, 0, 'app: and session_info shows nothing');
SELECT throws_ok(format('SELECT authx.session_create(%L)', :'u2'), '55000', NULL, 'app: no new session for a disabled user');
RESET ROLE;
SELECT is((SELECT revoke_reason FROM authx.sessions WHERE token_hash = sha256(convert_to(:'t_own', 'UTF8'))),
          'user_disabled', 'disabling revoked the session (revoke_reason user_disabled)');
SELECT authx.user_enable(:'u2') AS changed \gset
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_own'), NULL, 'app: re-enabling the user does not bring the old session back');
SELECT session_token AS t_own FROM authx.session_create(:'u2') \gset
SELECT is(authx.session_validate(:'t_own'), :'u2'::uuid, 'app: a new session after re-enabling is valid');
RESET ROLE;
UPDATE authx.users SET status = 'locked' WHERE id = :'u2';
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_own'), :'u2'::uuid, 'app: status locked does not end a session');
RESET ROLE;
UPDATE authx.users SET status = 'active' WHERE id = :'u2';
SELECT authx.user_delete(:'u2') AS changed \gset
SET ROLE authx_app;
SELECT is(authx.session_validate(:'t_own'), NULL, 'app: a soft-deleted user''s session is invalid');
SELECT throws_ok(format('SELECT authx.session_create(%L)', :'u2'), 'P0002', NULL, 'app: no new session for a deleted user');
RESET ROLE;

-- A hard DELETE cascades.
SELECT authx.user_create('pgtap-sess-3@example.com', 'sessions password 3') AS u3 \gset
SELECT session_token AS h1 FROM authx.session_create(:'u3') \gset
SELECT session_token AS h2 FROM authx.session_create(:'u3') \gset
SELECT is((SELECT count(*) FROM authx.sessions WHERE user_id = :'u3')::int, 2, 'u3 has two sessions');
DELETE FROM authx.users WHERE id = :'u3';
SELECT is((SELECT count(*) FROM authx.sessions WHERE user_id = :'u3')::int, 0, 'a hard DELETE of the user deleted its sessions');
SET ROLE authx_app;
SELECT is(ARRAY[authx.session_validate(:'h1'), authx.session_validate(:'h2')], ARRAY[NULL, NULL]::uuid[],
          'app: their tokens no longer validate');
RESET ROLE;

-- ================================================================ no secrets in the listings
SELECT set_eq(
    $$SELECT a.n FROM pg_catalog.pg_proc p, unnest(p.proargnames, p.proargmodes) AS a(n, m)
       WHERE p.oid = 'authx.sessions(uuid)'::regprocedure AND a.m = 't'$$,
    ARRAY['session_id', 'created_at', 'expires_at', 'idle_expires_at', 'last_seen_at', 'ip', 'user_agent', 'last_ip'],
    'sessions() returns exactly session_id, created_at, expires_at, idle_expires_at, last_seen_at, ip, user_agent, last_ip');
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text || ' ' || a.n
        FROM pg_catalog.pg_proc p, unnest(p.proargnames, p.proargmodes, p.proallargtypes) AS a(n, m, t)
       WHERE p.oid IN ('authx.sessions(uuid)'::regprocedure, 'authx.session_info(text)'::regprocedure)
         AND a.m = 't' AND (a.n ~* 'token|hash|secret' OR a.t = 'bytea'::regtype)$$,
    'sessions() and session_info() have no token, hash or bytea column');
SELECT session_token AS t_list FROM authx.session_create(:'u1', '192.0.2.5', 'pgtap-list') \gset
SET ROLE authx_app;
SELECT is_empty(format($$SELECT 1 FROM authx.sessions(%L) s WHERE s::text LIKE '%%' || %L || '%%'
                          UNION ALL SELECT 1 FROM authx.session_info(%L) i WHERE i::text LIKE '%%' || %L || '%%'$$,
                       :'u1', substr(:'t_list', 5, 20), :'t_list', substr(:'t_list', 5, 20)),
                'app: no value returned by sessions() or session_info() contains the token');
RESET ROLE;

-- ================================================================ malformed tokens
SET ROLE authx_app;
CREATE TEMP TABLE bad_tokens (t text);
INSERT INTO bad_tokens VALUES (NULL), (''), ('axs_'), ('axs_' || repeat('A', 42)), ('axs_' || repeat('A', 44)),
    ('axk_' || repeat('A', 43)), ('AXS_' || repeat('A', 43)), ('axs_' || repeat('A', 42) || '+'),
    ('axs_' || repeat('A', 42) || '='), ('axs_' || repeat('A', 43)), (repeat('x', 1000000)),
    ($$axs_' OR '1'='1' --$$), (overlay(:'t_list' placing (CASE WHEN substr(:'t_list', 10, 1) = 'A' THEN 'B' ELSE 'A' END) from 10));
SELECT is((SELECT count(*) FROM bad_tokens WHERE authx.session_validate(t) IS NOT NULL)::int, 0,
          'app: malformed or unknown tokens never validate');
SELECT lives_ok('SELECT authx.session_validate(t), authx.session_revoke(t) FROM bad_tokens',
                'app: and never raise, in session_validate or session_revoke');
SELECT is((SELECT count(*) FROM bad_tokens WHERE authx.session_revoke(t))::int, 0, 'app: session_revoke of them is false');
SELECT is((SELECT count(*) FROM bad_tokens, authx.session_info(t))::int, 0, 'app: session_info of them has no row');
SELECT is(authx.session_validate(:'t_list'), :'u1'::uuid, 'app: the real token (one character away) still validates');
RESET ROLE;

-- ================================================================ audit events (transactional)
SELECT results_eq(
    format($$SELECT event_type, severity::text FROM authx.audit_log
              WHERE user_id = %L AND event_type LIKE 'session.%%' ORDER BY id$$, :'u2'),
    $$VALUES ('session.created', 'info'), ('session.created', 'info'), ('session.created', 'info'),
             ('session.revoked_all', 'medium'), ('session.revoked', 'info'), ('session.created', 'info'),
             ('session.created', 'info')$$,
    'u2: session_create (not login) logs session.created; revoke_all and revoke_id log their event');
SELECT is((SELECT details->>'count' FROM authx.audit_log WHERE user_id = :'u2' AND event_type = 'session.revoked_all'),
          '3', 'session.revoked_all records the count');
SELECT is((SELECT count(*) FROM authx.audit_log WHERE user_id = :'u1' AND event_type = 'session.revoked'
              AND details->>'session_id' = :'sid')::int, 1, 'session_revoke logs session.revoked with the session id');

-- ================================================================ purge
SELECT session_token AS p_old FROM authx.session_create(:'u1') \gset
SELECT session_token AS p_recent FROM authx.session_create(:'u1') \gset
SELECT session_token AS p_rev FROM authx.session_create(:'u1') \gset
UPDATE authx.sessions SET expires_at = clock_timestamp() - interval '25 hours', created_at = clock_timestamp() - interval '3 days'
 WHERE token_hash = sha256(convert_to(:'p_old', 'UTF8'));
UPDATE authx.sessions SET expires_at = clock_timestamp() - interval '23 hours'
 WHERE token_hash = sha256(convert_to(:'p_recent', 'UTF8'));
UPDATE authx.sessions SET revoked_at = clock_timestamp() - interval '25 hours'
 WHERE token_hash = sha256(convert_to(:'p_rev', 'UTF8'));
SELECT ok((authx._sessions_purge(now()) ->> 'sessions_deleted')::int >= 2, '_sessions_purge reports what it deleted');
SELECT is(ARRAY[(pg_temp.sess(:'p_old')).id IS NULL, (pg_temp.sess(:'p_recent')).id IS NULL,
                (pg_temp.sess(:'p_rev')).id IS NULL, (pg_temp.sess(:'t_list')).id IS NULL],
          ARRAY[true, false, true, false],
          'purged: expired > 1 day and revoked > 1 day; kept: expired < 1 day and live');

-- ================================================================ stats
-- (Lower bounds: the counters are cluster-wide.)  This file makes 19
-- successful validations, 17 of them with a write; 18 rejections of
-- well-formed tokens; 22 of malformed ones.
SELECT ok(pg_temp.stat_delta('session_valid') >= 19, 'session_valid counted the 19 successful validations');
SELECT ok(pg_temp.stat_delta('session_invalid') >= 18, 'session_invalid counted the 18 rejected tokens');
SELECT ok(pg_temp.stat_delta('session_malformed') >= 22, 'session_malformed counted the 22 malformed tokens');
SELECT ok(pg_temp.stat_delta('session_touches') >= 17, 'session_touches counted the 17 writes');

SELECT * FROM finish();
ROLLBACK;

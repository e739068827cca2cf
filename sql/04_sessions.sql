--
-- Login and sessions: the API, lockout, then every invalid input.
--
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
\set SHOW_CONTEXT never
-- These logins test lockouts, not the login rate policy (07_ratelimit and
-- pgTAP 15_threat do): every attempt passes until the end of the file.
UPDATE authx.rate_limit_policies SET max = 1000000 WHERE name = 'login';
SELECT authx.user_create('sess@example.com', 'correct horse battery') AS uid \gset

-- Login: a 256-bit token with a type prefix, valid for authx.session_ttl.
SELECT status, user_id = :'uid' AS same_user,
       session_token ~ '^axs_[A-Za-z0-9_-]{43}$' AS token_format,
       expires_at BETWEEN now() + interval '7 days' - interval '1 minute' AND now() + interval '7 days 1 minute' AS one_week
  FROM authx.login(' SESS@example.com', 'correct horse battery', '198.51.100.7', 'regress/1.0');
SELECT session_token AS tok FROM authx.login('sess@example.com', 'correct horse battery', '198.51.100.7') \gset
SELECT authx.session_validate(:'tok') = :'uid' AS valid;

-- Only sha256(token) is stored, never the token.
SELECT count(*) AS stored_as_sha256 FROM authx.sessions WHERE token_hash = sha256(convert_to(:'tok', 'UTF8'));
SELECT count(*) AS token_anywhere FROM authx.sessions s WHERE s::text LIKE '%' || substr(:'tok', 5) || '%';

-- Details and listing (no secrets).
SELECT user_id = :'uid' AS same_user, ip, user_agent, created_at <= now() AS created,
       idle_expires_at > now() + interval '23 hours' AS idle_deadline
  FROM authx.session_info(:'tok');
SELECT count(*) AS live_sessions FROM authx.sessions(:'uid');
SELECT ip, user_agent FROM authx.sessions(:'uid') ORDER BY created_at LIMIT 1;

-- Absolute expiry, idle expiry, and the touch that slides the idle deadline.
SELECT session_token AS t_exp FROM authx.session_create(:'uid') \gset
UPDATE authx.sessions SET expires_at = now() - interval '1 second' WHERE token_hash = sha256(convert_to(:'t_exp', 'UTF8'));
SELECT authx.session_validate(:'t_exp') IS NULL AS expired, count(*) AS info_rows FROM authx.session_info(:'t_exp');
SELECT session_token AS t_idle FROM authx.session_create(:'uid') \gset
UPDATE authx.sessions SET last_seen_at = now() - interval '25 hours' WHERE token_hash = sha256(convert_to(:'t_idle', 'UTF8'));
SELECT authx.session_validate(:'t_idle') IS NULL AS idle_expired;
UPDATE authx.sessions SET last_seen_at = now() - interval '23 hours' WHERE token_hash = sha256(convert_to(:'t_idle', 'UTF8'));
SELECT authx.session_validate(:'t_idle', '203.0.113.5') = :'uid' AS still_valid;
SELECT last_seen_at > now() - interval '1 minute' AS touched, last_ip
  FROM authx.sessions WHERE token_hash = sha256(convert_to(:'t_idle', 'UTF8'));
-- Within authx.touch_interval there is no write.
UPDATE authx.sessions SET last_seen_at = now() - interval '30 seconds' WHERE token_hash = sha256(convert_to(:'t_idle', 'UTF8'));
SELECT authx.session_validate(:'t_idle') = :'uid' AS valid;
SELECT last_seen_at < now() - interval '29 seconds' AS not_touched
  FROM authx.sessions WHERE token_hash = sha256(convert_to(:'t_idle', 'UTF8'));

-- A session with its own ttl, for an app that authenticated elsewhere.
SELECT expires_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes' AS one_hour FROM authx.session_create(:'uid', '192.0.2.9', 'sso', '1 hour');

-- Revoke: once, then it is gone.
SELECT authx.session_revoke(:'tok') AS revoked, authx.session_revoke(:'tok') AS again;
SELECT authx.session_validate(:'tok') IS NULL AS invalid_after_revoke;

-- The owner's state: disabling (or deleting) a user revokes the user's
-- sessions, for good; a lockout does not.
SELECT session_token AS t_user FROM authx.session_create(:'uid') \gset
SELECT authx.user_disable(:'uid');
SELECT authx.session_validate(:'t_user') IS NULL AS disabled_user;
SELECT revoke_reason FROM authx.sessions WHERE token_hash = sha256(convert_to(:'t_user', 'UTF8'));
SELECT authx.user_enable(:'uid');
SELECT authx.session_validate(:'t_user') IS NULL AS still_revoked_after_enable;
SELECT session_token AS t_user FROM authx.session_create(:'uid') \gset
SELECT authx.session_validate(:'t_user') = :'uid' AS new_session_valid;
-- Even a direct UPDATE of the status (bypassing user_disable) revokes them.
SELECT session_token AS t_direct FROM authx.session_create(:'uid') \gset
UPDATE authx.users SET status = 'disabled' WHERE id = :'uid';
SELECT authx.session_validate(:'t_direct') IS NULL AS direct_update_revokes;
UPDATE authx.users SET status = 'active' WHERE id = :'uid';

-- Revoke all but the current session.
SELECT session_token AS t_user FROM authx.session_create(:'uid') \gset
SELECT session_token AS keep FROM authx.session_create(:'uid') \gset
SELECT authx.session_revoke_all(:'uid', :'keep') > 0 AS revoked_some;
SELECT authx.session_validate(:'keep') = :'uid' AS kept, authx.session_validate(:'t_user') IS NULL AS others_gone;
SELECT count(*) AS live_sessions FROM authx.sessions(:'uid');
SELECT authx.session_revoke_id((SELECT session_id FROM authx.sessions(:'uid'))) AS by_id;
SELECT authx.session_validate(:'keep') IS NULL AS gone;

-- authx.max_sessions_per_user revokes the oldest.
SET authx.max_sessions_per_user = 2;
SELECT session_token AS s1 FROM authx.session_create(:'uid') \gset
SELECT session_token AS s2 FROM authx.session_create(:'uid') \gset
SELECT session_token AS s3 FROM authx.session_create(:'uid') \gset
SELECT authx.session_validate(:'s1') IS NULL AS oldest_revoked,
       authx.session_validate(:'s2') = :'uid' AS second_kept,
       authx.session_validate(:'s3') = :'uid' AS newest_kept;
SELECT revoke_reason FROM authx.sessions WHERE token_hash = sha256(convert_to(:'s1', 'UTF8'));
RESET authx.max_sessions_per_user;

-- Login answers: the state is only revealed to the right password.
SELECT status, user_id IS NULL AS no_user, session_token IS NULL AS no_token
  FROM authx.login('nobody@example.com', 'correct horse battery');
SELECT status FROM authx.login('sess@example.com', 'wrong password');
SELECT authx.user_disable(:'uid');
SELECT status FROM authx.login('sess@example.com', 'wrong password');
SELECT status FROM authx.login('sess@example.com', 'correct horse battery');
SELECT authx.user_enable(:'uid');

-- Lockout: 3 failures from one address lock the account for that address
-- only; the right password then learns "locked", other addresses log in.
SET authx.lockout_threshold = 3;
SET authx.lockout_account_threshold = 5;
SELECT authx.user_create('lock@example.com', 'correct horse battery') AS lid \gset
SELECT n, status FROM generate_series(1, 3) n, authx.login('lock@example.com', 'bad' || n, '203.0.113.66');
SELECT status, expires_at > now() + interval '14 minutes' AS lock_ends_later
  FROM authx.login('lock@example.com', 'correct horse battery', '203.0.113.66');
SELECT status FROM authx.login('lock@example.com', 'bad', '203.0.113.66');
SELECT status FROM authx.login('lock@example.com', 'correct horse battery', '198.51.100.1');
-- A lockout never ends a session that already exists.
SELECT session_token AS lt FROM authx.session_create(:'lid') \gset
SELECT authx.session_validate(:'lt') = :'lid' AS session_survives_lockout;
-- Failures spread over addresses lock the whole account at the account threshold.
SELECT n, status FROM generate_series(1, 2) n, authx.login('lock@example.com', 'bad', ('192.0.2.' || n)::inet);
SELECT status FROM authx.login('lock@example.com', 'correct horse battery', '192.0.2.200');
-- Rolled-back failures still count.
SELECT authx.user_create('rollback@example.com', 'correct horse battery') AS rid \gset
BEGIN;
SELECT status FROM authx.login('rollback@example.com', 'bad', '203.0.113.77');
ROLLBACK;
BEGIN;
SELECT status FROM authx.login('rollback@example.com', 'bad', '203.0.113.77');
ROLLBACK;
BEGIN;
SELECT status FROM authx.login('rollback@example.com', 'bad', '203.0.113.77');
ROLLBACK;
SELECT status FROM authx.login('rollback@example.com', 'correct horse battery', '203.0.113.77');
-- An administrator can unlock.
SELECT authx.user_unlock(:'lid');
SELECT status FROM authx.login('lock@example.com', 'correct horse battery', '203.0.113.66');
RESET authx.lockout_threshold;
RESET authx.lockout_account_threshold;

-- Every attempt left an audit event, committed or not.
SELECT authx.audit_flush();
SELECT event_type, severity, details->>'reason' AS reason, count(*)
  FROM authx.audit_log WHERE user_id = :'rid' GROUP BY 1, 2, 3 ORDER BY 1, 3;

-- Malformed tokens: NULL, fast, never an error.
SELECT t AS token, authx.session_validate(t) IS NULL AS rejected, authx.session_revoke(t) AS revoked,
       (SELECT count(*) FROM authx.session_info(t)) AS info
  FROM (VALUES (NULL), (''), ('axs_'), ('axs_' || repeat('A', 42)), ('axs_' || repeat('A', 44)),
               ('axk_' || repeat('A', 43)), ('axs_' || repeat('A', 42) || '+'),
               ('axs_' || repeat('A', 43)), ('AXS_' || repeat('A', 43))) v(t);
SELECT authx.session_validate(repeat('x', 1000000)) IS NULL AS one_megabyte;

-- Login never raises on bad input.
SELECT status FROM authx.login(NULL, NULL);
SELECT status FROM authx.login('not an email', 'whatever');
SELECT status FROM authx.login(repeat('a', 100000), repeat('b', 5000));

-- Invalid input to the management functions: one line each.
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.session_create(NULL)$$),
    ($$authx.session_create('00000000-0000-0000-0000-000000000000')$$),
    ($$authx.session_create(authx.user_find('sess@example.com'), ttl => '0')$$),
    ($$authx.session_create(authx.user_find('sess@example.com'), ttl => '-1 hour')$$),
    ($$authx.session_create(authx.user_find('sess@example.com'), ttl => '11 years')$$),
    ($$authx.session_revoke_all(NULL)$$),
    ($$authx.user_unlock(NULL)$$)
) v(call);
SELECT authx.user_disable(:'uid');
SELECT regress.try($$authx.session_create(authx.user_find('sess@example.com'))$$) AS disabled_user;
-- The seeded login policy again.
UPDATE authx.rate_limit_policies SET max = 5, seeded = true WHERE name = 'login';

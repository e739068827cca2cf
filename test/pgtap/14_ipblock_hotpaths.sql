-- 14_ipblock_hotpaths.sql — the hot paths honour IP blocks.
--
-- Covers:
--   * login from a blocked address answers 'blocked' for a right and a
--     wrong password and an unknown email alike, opens no session, counts
--     no failed login (no lockout can be provoked through a blocked
--     address) and writes a login.blocked event; from an allowlisted
--     address inside a blocked network it works; from another address it
--     works;
--   * session_validate with a blocked ip answers NULL for a valid token,
--     without ip or with another ip the same token is valid;
--   * a lifted block gives both back.
-- Everything is rolled back at the end (the blocks are this transaction's
-- own, answered from the table, which is the same answer).
BEGIN;
SELECT plan(15);

SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
SET authx.touch_interval = 0;

SELECT authx.user_create('pgtap-ipblock-1@example.com', 'ipblock password 1') AS u1 \gset

SELECT authx.ip_block('203.0.113.0/24', NULL, 'pgtap 14');
SELECT authx.ip_allow('203.0.113.7/32', 'pgtap 14 office');

SELECT is((SELECT status FROM authx.login('pgtap-ipblock-1@example.com', 'ipblock password 1', '203.0.113.9')),
          'blocked', 'login with the right password from a blocked address: blocked');
SELECT is((SELECT status FROM authx.login('pgtap-ipblock-1@example.com', 'wrong password', '203.0.113.9')),
          'blocked', 'login with a wrong password from a blocked address: blocked');
SELECT is((SELECT status FROM authx.login('nobody-ipblock@example.com', 'whatever', '203.0.113.9')),
          'blocked', 'login with an unknown email from a blocked address: blocked');
SELECT is((SELECT session_token FROM authx.login('pgtap-ipblock-1@example.com', 'ipblock password 1', '203.0.113.10')),
          NULL::text, 'a blocked login opens no session');
SELECT is((SELECT count(*)::int FROM authx.sessions WHERE user_id = :'u1'), 0, 'no session row for the user');
SELECT is(authx._lockout_state(:'u1', '203.0.113.9'), NULL::timestamptz, 'failed attempts from a blocked address are not counted');
SELECT lives_ok($$SELECT authx.audit_flush('30 s')$$, 'audit_flush');
SELECT is((SELECT count(*)::int FROM authx.audit_log WHERE event_type = 'login.blocked' AND ip = '203.0.113.9'),
          3, 'one login.blocked event per blocked attempt');

SELECT is((SELECT status FROM authx.login('pgtap-ipblock-1@example.com', 'ipblock password 1', '203.0.113.7')),
          'ok', 'the allowlisted address inside the blocked network logs in');
SELECT session_token AS tok FROM authx.login('pgtap-ipblock-1@example.com', 'ipblock password 1', '198.51.100.1') \gset
SELECT isnt(:'tok'::text, NULL::text, 'another address logs in');

SELECT is(authx.session_validate(:'tok', '203.0.113.9'), NULL::uuid, 'session_validate from a blocked address: NULL');
SELECT is(authx.session_validate(:'tok', '::ffff:203.0.113.9'), NULL::uuid, 'the mapped IPv6 form of a blocked address: NULL');
SELECT is(authx.session_validate(:'tok'), :'u1'::uuid, 'the same token without an address is valid');
SELECT is(authx.session_validate(:'tok', '198.51.100.1'), :'u1'::uuid, 'the same token from another address is valid');

SELECT authx.ip_unblock('203.0.113.0/24');
SELECT is(authx.session_validate(:'tok', '203.0.113.9'), :'u1'::uuid, 'after ip_unblock the address validates again');

SELECT * FROM finish();
ROLLBACK;

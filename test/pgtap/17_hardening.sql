-- Hardening of the C paths that run SQL as the extension's owner, and of
-- the MFA failure budget.
--
--   * a caller's operators cannot stand in for pg_catalog's in the queries
--     rate_check and the threat rules run as the owner: this file is a fresh
--     backend (no kept plans yet), and its first statements put a schema of
--     booby-trapped operators (text =, numeric *, timestamptz >) before
--     pg_catalog in search_path; rate_check (with and without overrides),
--     an audit event with an address (threat rules) and has_permission then
--     run without calling them, and answer correctly;
--   * the MFA failure budget is always this server's: failures counted with
--     the default store lock the second factor also for a session that
--     sets authx.rate_limit_store = redis and authx.rate_limit_fail = open.
BEGIN;
SELECT plan(9);

CREATE SCHEMA tap17_evil;
CREATE TABLE tap17_evil.calls (what text);
CREATE FUNCTION tap17_evil.teq(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO tap17_evil.calls VALUES ('text = as ' || current_user); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE FUNCTION tap17_evil.nmul(numeric, numeric) RETURNS numeric LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO tap17_evil.calls VALUES ('numeric * as ' || current_user); RETURN $1 OPERATOR(pg_catalog.*) $2; END $$;
CREATE FUNCTION tap17_evil.tgt(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO tap17_evil.calls VALUES ('timestamptz > as ' || current_user); RETURN $1 OPERATOR(pg_catalog.>) $2; END $$;
CREATE OPERATOR tap17_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = tap17_evil.teq);
CREATE OPERATOR tap17_evil.* (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = tap17_evil.nmul);
CREATE OPERATOR tap17_evil.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = tap17_evil.tgt);
GRANT USAGE ON SCHEMA tap17_evil TO PUBLIC;
GRANT INSERT ON tap17_evil.calls TO PUBLIC;

-- The policies and overrides the queries will read.
SELECT authx.rate_policy_set('tap17', 3, '1 hour');
SELECT authx.rate_override_set('tap17', 'tap17-vip', 10);
SELECT authx.threat_rule_set('tap17_rule', 'tap17.event', 100, '1 hour');

-- Only authx runs under the trapped path: pgTAP's own functions would use
-- its operators too, so the answers are kept and checked afterwards.
SET search_path = tap17_evil, pg_catalog, public;
SELECT (allowed, remaining)::text AS plain FROM authx.rate_check('tap17', 'tap17-plain') \gset
SELECT (allowed, remaining)::text AS vip FROM authx.rate_check('tap17', 'tap17-vip') \gset
SELECT (count(*) OPERATOR(pg_catalog.=) 1)::text AS audited
  FROM (SELECT authx.audit('tap17.event', 'low', NULL, '198.51.100.171', '{}')) a \gset
SELECT authx.has_permission('00000000-0000-4000-8000-000000000017', 'tap17:read')::text AS perm \gset
RESET search_path;
SELECT is(:'plain'::text, '(t,2)', 'rate_check with the caller''s operators first in search_path: the policy''s answer');
SELECT is(:'vip'::text, '(t,9)', 'and the override''s (looked up with pg_catalog operators)');
SELECT is(:'audited'::text, 'true', 'an audit event with an address ran the threat rules');
SELECT is(:'perm'::text, 'false', 'has_permission answered');
SELECT is_empty('SELECT what FROM tap17_evil.calls', 'none of the caller''s operators was called');

-- The MFA failure budget.
SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
SET authx.mfa_max_failures = 2;
SELECT authx.user_create('tap17-mfa@example.com', 'correct horse battery') AS uid \gset
SELECT is(authx._mfa_gate(:'uid'), NULL, 'a fresh user may try a second factor');
SELECT authx._mfa_failed(:'uid', 'tap17'), authx._mfa_failed(:'uid', 'tap17');
SELECT is(authx._mfa_gate(:'uid'), 'locked', 'two failures with a budget of two: locked');
SET authx.rate_limit_store = 'redis';
SET authx.rate_limit_fail = 'open';
SELECT is(authx._mfa_gate(:'uid'), 'locked',
          'still locked for a session that points rate limits at Redis and fails open');
SELECT authx._mfa_failed(:'uid', 'tap17');
RESET authx.rate_limit_store;
RESET authx.rate_limit_fail;
SELECT is((authx.rate_peek('mfa-failures:' || :'uid', 2, '15 minutes')).remaining, 0,
          'and its failures still count in this server''s budget');

SELECT * FROM finish();
ROLLBACK;

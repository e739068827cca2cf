-- 08_touch_error.sql — an error inside session_validate's touch.
--
-- session_validate writes last_seen_at in an internal subtransaction.  A
-- BEFORE UPDATE trigger on authx.sessions (superuser, rolled back at the
-- end) injects the error:
--   * 40001 (serialization failure) is swallowed: validate returns the user,
--     does not raise, and nothing is written;
--   * anything else (here 57014, what statement_timeout or a cancel raises
--     while the touch waits for its lock) reaches the caller, and a PL/pgSQL
--     exception block that catches it rolls back its own work;
--   * regression (the touch used to re-throw before rolling back its
--     subtransaction: the handler then rolled back the wrong one, the
--     block's work survived, and after a SAVEPOINT / ROLLBACK TO the
--     transaction's final ROLLBACK crashed the backend): as authx_app with
--     touch_interval = 0, the caught error inside a SAVEPOINT, then
--     ROLLBACK TO SAVEPOINT undoes all the work after the savepoint, the
--     transaction stays usable (validate, inserts, more savepoints), and
--     its ROLLBACK leaves the backend alive.
--
-- The regression runs first, in a transaction of its own with no pgTAP
-- output: its results are kept in psql variables and asserted in the pgTAP
-- transaction afterwards, together with "same backend pid" (a crash at its
-- ROLLBACK ends psql, so the plan is never printed and the file fails).

-- ================================================================ regression (no output)
SELECT pg_backend_pid() AS pid_before \gset
BEGIN;
SET LOCAL authx.password_memlimit = 64;
SET LOCAL authx.password_opslimit = 1;
SET LOCAL authx.touch_interval = 0;
SELECT authx.user_create('pgtap-touch-error-sp@example.com', 'touch error password') AS rg_u \gset
SELECT session_token AS rg_tok FROM authx.session_create(:'rg_u') \gset
SELECT set_config('pgtap.tok', :'rg_tok', true) AS x \gset
UPDATE authx.sessions SET last_seen_at = clock_timestamp() - interval '10 minutes'
 WHERE token_hash = sha256(convert_to(:'rg_tok', 'UTF8'));
CREATE FUNCTION pg_temp.touch_error() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = current_setting('pgtap.touch_errcode'), MESSAGE = 'injected touch error';
END
$$;
CREATE TRIGGER pgtap_touch_error BEFORE UPDATE ON authx.sessions
    FOR EACH ROW EXECUTE FUNCTION pg_temp.touch_error();
CREATE TEMP TABLE rg_work (x text);
GRANT ALL ON rg_work TO authx_app;
SELECT set_config('pgtap.touch_errcode', '57014', true) AS x \gset

SET ROLE authx_app;
INSERT INTO rg_work VALUES ('1 before the savepoint');
SAVEPOINT before_block;
INSERT INTO rg_work VALUES ('2 in the savepoint');
DO $$
BEGIN
    INSERT INTO rg_work VALUES ('3 in the DO, outside the exception block');
    BEGIN
        INSERT INTO rg_work VALUES ('4 inside the failed block');
        PERFORM authx.session_validate(current_setting('pgtap.tok'));
        INSERT INTO rg_work VALUES ('5 validate did not raise');
    EXCEPTION WHEN query_canceled THEN
        INSERT INTO rg_work VALUES ('6 caught');
    END;
END
$$;
SELECT string_agg(x, ' | ' ORDER BY x COLLATE "C") AS rg_in_sp FROM rg_work \gset
ROLLBACK TO SAVEPOINT before_block;
SELECT string_agg(x, ' | ' ORDER BY x COLLATE "C") AS rg_after_rb FROM rg_work \gset
-- Still usable: validate (its touch now gets a swallowed 40001), writes,
-- another savepoint rolled back and released.
SELECT set_config('pgtap.touch_errcode', '40001', true) AS x \gset
SELECT authx.session_validate(:'rg_tok') AS rg_validate \gset
INSERT INTO rg_work VALUES ('7 after ROLLBACK TO');
SAVEPOINT later;
INSERT INTO rg_work VALUES ('8 in a later savepoint');
ROLLBACK TO SAVEPOINT later;
RELEASE SAVEPOINT later;
SELECT string_agg(x, ' | ' ORDER BY x COLLATE "C") AS rg_end FROM rg_work \gset
RESET ROLE;
ROLLBACK;

BEGIN;
SELECT plan(11);

SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
SET authx.touch_interval = 0;

SELECT authx.user_create('pgtap-touch-error@example.com', 'touch error password') AS u \gset
SELECT session_token AS tok FROM authx.session_create(:'u') \gset
SELECT set_config('pgtap.tok', :'tok', true) AS x \gset
UPDATE authx.sessions SET last_seen_at = clock_timestamp() - interval '10 minutes'
 WHERE token_hash = sha256(convert_to(:'tok', 'UTF8'));
SELECT last_seen_at AS seen FROM authx.sessions WHERE token_hash = sha256(convert_to(:'tok', 'UTF8')) \gset

CREATE FUNCTION pg_temp.touch_error() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = current_setting('pgtap.touch_errcode'), MESSAGE = 'injected touch error';
END
$$;
CREATE TRIGGER pgtap_touch_error BEFORE UPDATE ON authx.sessions
    FOR EACH ROW EXECUTE FUNCTION pg_temp.touch_error();

-- ================================================================ swallowed
SELECT set_config('pgtap.touch_errcode', '40001', true) AS x \gset
SELECT is(authx.session_validate(:'tok'), :'u'::uuid, 'a serialization failure in the touch: validate still answers');
SELECT is((SELECT last_seen_at FROM authx.sessions WHERE token_hash = sha256(convert_to(:'tok', 'UTF8'))),
          :'seen'::timestamptz, 'and nothing was written');

-- ================================================================ re-thrown
SELECT set_config('pgtap.touch_errcode', '57014', true) AS x \gset
CREATE TEMP TABLE block_work (x text);
DO $$
BEGIN
    BEGIN
        INSERT INTO block_work VALUES ('inside the failed block');
        PERFORM authx.session_validate(current_setting('pgtap.tok'));
        INSERT INTO block_work VALUES ('validate did not raise');
    EXCEPTION WHEN query_canceled THEN
        INSERT INTO block_work VALUES ('caught');
    END;
END
$$;
SELECT is((SELECT count(*) FROM block_work WHERE x = 'caught')::int, 1, 'a cancel during the touch reaches the caller');
SELECT is((SELECT count(*) FROM block_work WHERE x = 'validate did not raise')::int, 0, 'validate did not return');
SELECT is((SELECT count(*) FROM block_work WHERE x = 'inside the failed block')::int, 0,
          'the exception block that caught it was rolled back (its insert is gone)');

-- ================================================================ regression results
SELECT is(:'rg_in_sp'::text,
          '1 before the savepoint | 2 in the savepoint | 3 in the DO, outside the exception block | 6 caught',
          'regression, as authx_app in a savepoint: the block that caught the touch error lost its own insert only');
SELECT is(:'rg_after_rb'::text, '1 before the savepoint',
          'ROLLBACK TO SAVEPOINT undid everything after the savepoint, the DO block''s other work included');
SELECT is(:'rg_validate'::uuid, :'rg_u'::uuid, 'after ROLLBACK TO the transaction is usable: validate answers');
SELECT is(:'rg_end'::text, '1 before the savepoint | 7 after ROLLBACK TO',
          'and takes inserts and a further savepoint rolled back and released');
SELECT is(pg_backend_pid(), :'pid_before'::int, 'the transaction''s ROLLBACK did not crash the backend (same pid)');
SELECT is((SELECT count(*) FROM authx.users WHERE email = 'pgtap-touch-error-sp@example.com')::int, 0,
          'and rolled it all back (the regression''s user is gone)');

SELECT * FROM finish();
ROLLBACK;

-- 04_audit.sql — authx.audit(), the shared-memory queue and authx.stats.
--
-- Covers:
--   * audit() argument checks with their SQLSTATEs: NULL type or severity
--     (22004), malformed event type (22023: case, length 0 / 65, characters
--     outside [a-z0-9_.:-]), unknown severity (22023, case-sensitive), details
--     not a JSON object (22023), details over 8192 bytes (54000, exact
--     boundary), negative audit_flush timeout (22023);
--   * an event queued by audit() reaches authx.audit_log after audit_flush(),
--     written and committed by the worker, so later statements of this
--     (READ COMMITTED) transaction see it — including one queued in a
--     subtransaction that was rolled back;
--   * round trip of every column: at (time of the call), event_type,
--     severity, user_id, ip (v4 and v6 with prefix), details, user_agent;
--     NULL details stored as {};
--   * user_agent longer than 512 bytes truncated to at most 512 bytes, on a
--     character boundary;
--   * authx.stats: audit_enqueued / audit_written grow with the events,
--     refused calls are not enqueued, no synchronous fallback was used,
--     password_hashes / password_verifies grow;
--   * the maintenance worker runs: maintenance_runs increases over 2.5 s
--     (naptime 1 s), the last run is recent, authx.stats shows its pid.
-- The worker must not be left needing to create today's partitions while
-- this transaction holds locks on audit_log (ATTACH PARTITION needs ACCESS
-- EXCLUSIVE on the default partition, and a blocked maintenance pass also
-- stops the audit drain that audit_flush waits for).  On a fresh cluster
-- the worker may not have run yet, so make today's partitions first.
DO $$ BEGIN PERFORM authx.maintenance_run(); END $$;
-- Right after the cluster starts the worker may still be waiting for its
-- restart (it exits if it starts before the database exists): give it 30 s.
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT value FROM authx.stats WHERE name = 'maintenance_worker_pid') > 0;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

BEGIN;
SELECT plan(42);

SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;

-- Audit rows outlive this transaction, so everything is keyed by a tag
-- unique to this run.
SELECT 'pgtap-audit-' || gen_random_uuid() AS tag, gen_random_uuid() AS marker \gset

CREATE TEMP TABLE stats_before ON COMMIT DROP AS SELECT name, value FROM authx.stats;
CREATE FUNCTION pg_temp.stat_delta(p_name text) RETURNS bigint LANGUAGE sql AS
$$ SELECT s.value - b.value FROM authx.stats s JOIN stats_before b USING (name) WHERE s.name = p_name $$;

-- ================================================================ worker
-- First, before this transaction holds any lock on audit_log.
SELECT pg_sleep(2.5);
SELECT ok(pg_temp.stat_delta('maintenance_runs') >= 1, 'maintenance_runs grows (naptime 1 s)');
SELECT ok((SELECT value BETWEEN 0 AND 5000 FROM authx.stats WHERE name = 'maintenance_last_run_age_ms'),
          'the last maintenance run is recent');
SELECT ok((SELECT value FROM authx.stats WHERE name = 'maintenance_worker_pid')
          IN (SELECT pid FROM pg_stat_activity WHERE backend_type = 'authx maintenance worker'),
          'authx.stats shows the pid of the running maintenance worker');

-- ================================================================ validation
SELECT throws_ok($$SELECT authx.audit(NULL, 'info')$$, '22004', 'audit event type and severity must not be null', 'NULL event type: 22004');
SELECT throws_ok($$SELECT authx.audit('pgtap.audit', NULL)$$, '22004', 'audit event type and severity must not be null', 'NULL severity: 22004');
SELECT throws_ok($$SELECT authx.audit('Login.Failed', 'info')$$, '22023', 'invalid audit event type "Login.Failed"', 'upper-case event type: 22023');
SELECT throws_ok($$SELECT authx.audit('', 'info')$$, '22023', NULL, 'empty event type: 22023');
SELECT throws_ok(format('SELECT authx.audit(%L, %L)', repeat('a', 65), 'info'), '22023', NULL, '65-character event type: 22023');
SELECT throws_ok($$SELECT authx.audit('login failed', 'info')$$, '22023', NULL, 'space in event type: 22023');
SELECT throws_ok($$SELECT authx.audit('login/failed', 'info')$$, '22023', NULL, 'slash in event type: 22023');
SELECT throws_ok($$SELECT authx.audit('login.échec', 'info')$$, '22023', NULL, 'non-ASCII event type: 22023');
SELECT throws_ok($$SELECT authx.audit('pgtap.audit', 'HIGH')$$, '22023', 'invalid audit severity "HIGH"', 'severity is case-sensitive: 22023');
SELECT throws_ok($$SELECT authx.audit('pgtap.audit', 'urgent')$$, '22023', 'invalid audit severity "urgent"', 'unknown severity: 22023');
SELECT throws_ok($$SELECT authx.audit('pgtap.audit', 'info', details => '[]')$$, '22023', 'audit details must be a JSON object', 'array details: 22023');
SELECT throws_ok($$SELECT authx.audit('pgtap.audit', 'info', details => '"text"')$$, '22023', 'audit details must be a JSON object', 'string details: 22023');
SELECT throws_ok($$SELECT authx.audit('pgtap.audit', 'info', details => 'null')$$, '22023', 'audit details must be a JSON object', 'JSON null details: 22023');

-- The largest details accepted take exactly 8192 bytes.
SELECT n AS n8192 FROM generate_series(8000, 8300) AS n
 WHERE pg_column_size(jsonb_build_object('tag', :'tag', 'pad', repeat('x', n))) = 8192 \gset
SELECT throws_ok(format('SELECT authx.audit(%L, %L, details => %L)', 'pgtap.audit.big', 'info',
                        jsonb_build_object('tag', :'tag', 'pad', repeat('x', :n8192 + 1))),
                 '54000', 'audit details are too large', '8193-byte details: 54000');
SELECT throws_ok($$SELECT authx.audit_flush('-1 second')$$, '22023', 'timeout must not be negative', 'negative flush timeout: 22023');

-- ================================================================ accepted events
SELECT lives_ok(format('SELECT authx.audit(%L, %L, details => %L)', 'pgtap.audit.big', 'info',
                       jsonb_build_object('tag', :'tag', 'pad', repeat('x', :n8192))),
                '8192-byte details are accepted');
SELECT lives_ok(format('SELECT authx.audit(%L, %L, details => %L)', repeat('z', 64), 'low', jsonb_build_object('tag', :'tag')),
                '64-character event type is accepted');
SELECT lives_ok(format('SELECT authx.audit(%L, %L, details => %L)', 'a-z_0.9:x', 'medium', jsonb_build_object('tag', :'tag')),
                'every allowed punctuation character is accepted');
SELECT lives_ok(format($$SELECT authx.audit('pgtap.audit.sev', s, details => %L)
                           FROM unnest(ARRAY['info', 'low', 'medium', 'high', 'critical']) AS s$$,
                       jsonb_build_object('tag', :'tag')),
                'each of the five severities is accepted');

SELECT clock_timestamp() AS t_before \gset
SELECT authx.audit('pgtap.audit.full', 'high', :'marker'::uuid, '203.0.113.7',
                   jsonb_build_object('tag', :'tag', 'n', 42, 'nested', jsonb_build_object('ok', true, 'list', jsonb_build_array(1, 'two'))),
                   'Mozilla/5.0 (pgTAP)');
SELECT clock_timestamp() AS t_after \gset
SELECT authx.audit('pgtap.audit.minimal', 'info', details => jsonb_build_object('tag', :'tag'));
SELECT authx.audit('pgtap.audit.nulldetails', 'critical', :'marker'::uuid, '2001:db8::1/64', NULL);
SELECT authx.audit('pgtap.audit.ua512', 'info', details => jsonb_build_object('tag', :'tag'), user_agent => repeat('u', 512));
SELECT authx.audit('pgtap.audit.ua600', 'info', details => jsonb_build_object('tag', :'tag'), user_agent => repeat('v', 600));
-- 'a' + 300 two-byte characters = 601 bytes: the cut falls inside a character.
SELECT authx.audit('pgtap.audit.uamb', 'info', details => jsonb_build_object('tag', :'tag'), user_agent => 'a' || repeat('é', 300));

SAVEPOINT before_rollback;
SELECT authx.audit('pgtap.audit.rolledback', 'high', details => jsonb_build_object('tag', :'tag'));
ROLLBACK TO SAVEPOINT before_rollback;

SELECT lives_ok($$SELECT authx.audit_flush()$$, 'audit_flush returns (the worker wrote the queue)');

-- 1 big + 1 z64 + 1 punct + 5 severities + full + minimal + nulldetails + 3 UA + rolledback = 15
SELECT is((SELECT count(*) FROM authx.audit_log WHERE details->>'tag' = :'tag' OR user_id = :'marker')::int, 15,
          'all 15 accepted events are in audit_log after audit_flush, none of the refused ones');
SELECT is((SELECT count(*) FROM authx.audit_log WHERE details->>'tag' = :'tag' AND event_type = 'pgtap.audit.rolledback')::int, 1,
          'an event queued in a rolled-back subtransaction was still written');
SELECT is((SELECT array_agg(severity::text ORDER BY severity) FROM authx.audit_log
            WHERE details->>'tag' = :'tag' AND event_type = 'pgtap.audit.sev'),
          ARRAY['info', 'low', 'medium', 'high', 'critical'], 'severities are stored as given');
SELECT ok((SELECT at BETWEEN :'t_before'::timestamptz AND :'t_after'::timestamptz
             FROM authx.audit_log WHERE user_id = :'marker' AND event_type = 'pgtap.audit.full'),
          'at is the time of the audit() call');
SELECT results_eq(
    format($$SELECT event_type, severity::text, user_id, ip, user_agent, details
               FROM authx.audit_log WHERE user_id = %L AND event_type = 'pgtap.audit.full'$$, :'marker'),
    format($$VALUES ('pgtap.audit.full', 'high', %L::uuid, '203.0.113.7'::inet, 'Mozilla/5.0 (pgTAP)',
                     jsonb_build_object('tag', %L, 'n', 42, 'nested', jsonb_build_object('ok', true, 'list', jsonb_build_array(1, 'two'))))$$,
           :'marker', :'tag'),
    'every column round-trips');
SELECT results_eq(
    format($$SELECT user_id, ip, user_agent FROM authx.audit_log
              WHERE details->>'tag' = %L AND event_type = 'pgtap.audit.minimal'$$, :'tag'),
    $$VALUES (NULL::uuid, NULL::inet, NULL::text)$$,
    'omitted user_id, ip and user_agent are NULL');
SELECT results_eq(
    format($$SELECT ip, details FROM authx.audit_log WHERE user_id = %L AND event_type = 'pgtap.audit.nulldetails'$$, :'marker'),
    $$VALUES ('2001:db8::1/64'::inet, '{}'::jsonb)$$,
    'IPv6 with a prefix round-trips; NULL details are stored as {}');
SELECT is((SELECT user_agent FROM authx.audit_log WHERE details->>'tag' = :'tag' AND event_type = 'pgtap.audit.ua512'),
          repeat('u', 512), 'a 512-byte user agent is kept whole');
SELECT is((SELECT user_agent FROM authx.audit_log WHERE details->>'tag' = :'tag' AND event_type = 'pgtap.audit.ua600'),
          repeat('v', 512), 'a 600-byte user agent is cut to its first 512 bytes');
SELECT is((SELECT user_agent FROM authx.audit_log WHERE details->>'tag' = :'tag' AND event_type = 'pgtap.audit.uamb'),
          'a' || repeat('é', 255), 'a multibyte user agent is cut on a character boundary (511 bytes)');
SELECT ok((SELECT bool_and(octet_length(user_agent) <= 512) FROM authx.audit_log
            WHERE details->>'tag' = :'tag' AND user_agent IS NOT NULL),
          'no stored user agent exceeds 512 bytes');
SELECT is((SELECT length(details->>'pad') FROM authx.audit_log WHERE details->>'tag' = :'tag' AND event_type = 'pgtap.audit.big'),
          :n8192, 'the 8192-byte details were stored whole');

-- ================================================================ stats
SELECT ok(pg_temp.stat_delta('audit_enqueued') >= 15, 'audit_enqueued grew by at least the 15 events');
SELECT ok(pg_temp.stat_delta('audit_written') >= 15, 'audit_written grew by at least the 15 events');
SELECT is(pg_temp.stat_delta('audit_sync_fallbacks'), 0::bigint, 'no event fell back to a synchronous insert');
SELECT ok(pg_temp.stat_delta('audit_batches') >= 1, 'audit_batches grew');
SELECT authx.user_create('pgtap-audit-1@example.com', 'audit password 1') AS ua \gset
SELECT ok(pg_temp.stat_delta('password_hashes') >= 1, 'password_hashes grew after user_create');
SELECT is(authx.password_verify(:'ua', 'audit password 1'), true, 'verify the new user');
SELECT ok(pg_temp.stat_delta('password_verifies') >= 1, 'password_verifies grew after password_verify');

SELECT * FROM finish();
ROLLBACK;

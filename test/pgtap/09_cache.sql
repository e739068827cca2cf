-- 09_cache.sql — the Redis write-through cache as seen from SQL.
--
-- The shared test cluster runs with the cache on (authx.redis_url points at
-- the runner's Redis).  Everything here happens in one transaction that is
-- rolled back, so no cache operation of this file ever reaches the ring:
-- what Redis receives at commit, subtransaction aborts, PREPARE TRANSACTION
-- and cache_sync timing out are in test/t/080_examples.pl.
--
-- Covers:
--   * sessions.version: 1 on a new session (session_create and login),
--     every UPDATE of a row bumps it by exactly one (a touch by
--     session_validate, a no-op UPDATE, a multi-row UPDATE, an UPDATE that
--     tries to SET version itself — up or down), per row (other sessions
--     keep theirs); no UPDATE, no bump (validate within touch_interval,
--     session_info, revoking an already revoked session); session_revoke,
--     session_revoke_id, session_revoke_all (the kept session unchanged),
--     the max_sessions_per_user eviction, and the trigger revocation on
--     user_disable and user_delete (already revoked sessions unchanged;
--     user_enable changes nothing) all bump;
--   * the trigger functions refuse to be called directly (0A000 / 39P01);
--   * cache_status(): exactly the documented keys, each of its JSON type;
--     enabled and connected on this cluster, a writer pid, run_id 40 hex
--     digits, capacity = authx.cache_queue_size, depth within it, lag
--     p50 <= p99 (both null or both numbers), last_error and last_error_at
--     null together, last_error_at a timestamp; the text never contains the
--     URL or "redis://" (with a password: test/t/080_examples.pl);
--   * cache_sync: with the default, '30 s' and then '0' when nothing is
--     queued; this transaction's own (uncommitted) writes are not waited
--     for and do not show in queue_depth; NULL -> NULL (STRICT); negative
--     timeouts (also a negative sum of positive and negative fields) ->
--     22023; a huge positive timeout is accepted ('300000 years' is
--     clamped, not overflowed into a negative one);
--   * authx_app cannot call cache_sync / cache_status (42501); authx_admin
--     can;
--   * authx.stats has exactly the cache counters and gauges;
--   * settings: boot values and contexts of authx.cache_queue_size,
--     cache_ttl, redis_prefix, redis_timeout_ms; authx.redis_url is hidden
--     from pg_settings (even for a superuser) and cannot be SET in a
--     session (55P02).
BEGIN;
SELECT plan(67);

SET authx.password_memlimit = 64;
SET authx.password_opslimit = 1;
SET authx.session_ttl = '2h';
SET authx.session_idle_timeout = '1h';
SET authx.max_sessions_per_user = 0;
SET authx.touch_interval = 0;

SELECT authx.user_create('pgtap-cache-1@example.com', 'cache password 1') AS u1,
       authx.user_create('pgtap-cache-2@example.com', 'cache password 2') AS u2,
       authx.user_create('pgtap-cache-3@example.com', 'cache password 3') AS u3 \gset

-- The version of the session behind a token (superuser only).
CREATE FUNCTION pg_temp.v(p_token text) RETURNS bigint LANGUAGE sql AS
$$ SELECT version FROM authx.sessions WHERE token_hash = sha256(convert_to(p_token, 'UTF8')) $$;
CREATE FUNCTION pg_temp.hash(p_token text) RETURNS bytea LANGUAGE sql AS
$$ SELECT sha256(convert_to(p_token, 'UTF8')) $$;

-- ================================================================ versions
SELECT session_token AS a FROM authx.session_create(:'u1') \gset
SELECT session_token AS b FROM authx.session_create(:'u1') \gset
SELECT session_token AS l FROM authx.login('pgtap-cache-1@example.com', 'cache password 1') \gset
SELECT is(ARRAY[pg_temp.v(:'a'), pg_temp.v(:'b'), pg_temp.v(:'l')], ARRAY[1, 1, 1]::bigint[],
          'a new session has version 1 (session_create and login)');

-- touch_interval = 0: every validation touches, i.e. UPDATEs the row.
SELECT is(authx.session_validate(:'a'), :'u1'::uuid, 'session a is valid');
SELECT is(pg_temp.v(:'a'), 2::bigint, 'a touch by session_validate bumps the version');
SELECT is(authx.session_validate(:'a'), :'u1'::uuid, 'session a is still valid');
SELECT is(pg_temp.v(:'a'), 3::bigint, 'every touch bumps it again');
SELECT is(pg_temp.v(:'b'), 1::bigint, 'versions are per row: session b keeps 1');

SET authx.touch_interval = '1h';
SELECT is(authx.session_validate(:'a'), :'u1'::uuid, 'session a valid within touch_interval');
SELECT is(pg_temp.v(:'a'), 3::bigint, 'a validation that does not touch does not bump');
SELECT is((SELECT user_id FROM authx.session_info(:'a')), :'u1'::uuid, 'session_info finds session a');
SELECT is(pg_temp.v(:'a'), 3::bigint, 'session_info does not bump');

UPDATE authx.sessions SET revoke_reason = revoke_reason WHERE token_hash = pg_temp.hash(:'a');
SELECT is(pg_temp.v(:'a'), 4::bigint, 'a no-op UPDATE bumps too (any UPDATE does)');
UPDATE authx.sessions SET version = 100 WHERE token_hash = pg_temp.hash(:'a');
SELECT is(pg_temp.v(:'a'), 5::bigint, 'SET version = 100 is overridden: old + 1');
UPDATE authx.sessions SET version = 1 WHERE token_hash = pg_temp.hash(:'a');
SELECT is(pg_temp.v(:'a'), 6::bigint, 'SET version = 1 cannot move it back: old + 1');
UPDATE authx.sessions SET version = version + 10 WHERE token_hash = pg_temp.hash(:'a');
SELECT is(pg_temp.v(:'a'), 7::bigint, 'SET version = version + 10 is overridden too: old + 1');
UPDATE authx.sessions SET version = NULL WHERE token_hash = pg_temp.hash(:'a');
SELECT is(pg_temp.v(:'a'), 8::bigint, 'SET version = NULL is overridden (no NOT NULL violation): old + 1');
UPDATE authx.sessions SET last_ip = '192.0.2.1' WHERE user_id = :'u1';
SELECT is(ARRAY[pg_temp.v(:'a'), pg_temp.v(:'b'), pg_temp.v(:'l')], ARRAY[9, 2, 2]::bigint[],
          'a multi-row UPDATE bumps each row by exactly one');
UPDATE authx.sessions SET last_ip = '192.0.2.2' WHERE user_id = :'u1' AND false;
SELECT is(ARRAY[pg_temp.v(:'a'), pg_temp.v(:'b'), pg_temp.v(:'l')], ARRAY[9, 2, 2]::bigint[],
          'an UPDATE that matches no row bumps nothing');

-- Revocations.
SELECT is(authx.session_revoke(:'a'), true, 'session_revoke(a)');
SELECT is(pg_temp.v(:'a'), 10::bigint, 'session_revoke bumps');
SELECT is(authx.session_revoke(:'a'), false, 'session_revoke(a) again: already revoked');
SELECT is(pg_temp.v(:'a'), 10::bigint, 'revoking a revoked session does not bump (no UPDATE)');
SELECT is(authx.session_revoke_id((SELECT id FROM authx.sessions WHERE token_hash = pg_temp.hash(:'b'))), true,
          'session_revoke_id(b)');
SELECT is(pg_temp.v(:'b'), 3::bigint, 'session_revoke_id bumps');

SELECT session_token AS c FROM authx.session_create(:'u1') \gset
SELECT is(authx.session_revoke_all(:'u1', :'c'), 1, 'session_revoke_all(u1, except c) revokes l only');
SELECT is(ARRAY[pg_temp.v(:'a'), pg_temp.v(:'b'), pg_temp.v(:'l'), pg_temp.v(:'c')], ARRAY[10, 3, 3, 1]::bigint[],
          'session_revoke_all bumps the revoked session, not the kept one nor the already revoked');

-- max_sessions_per_user: the eviction is an UPDATE too.
SET authx.max_sessions_per_user = 1;
SELECT session_token AS d FROM authx.session_create(:'u1') \gset
SELECT is(authx.session_validate(:'c'), NULL, 'limit 1: a new session evicts c');
SELECT is(ARRAY[pg_temp.v(:'c'), pg_temp.v(:'d')], ARRAY[2, 1]::bigint[], 'the eviction bumps c; d starts at 1');
SET authx.max_sessions_per_user = 0;

-- The trigger revocation on the owner's status.
SELECT session_token AS e1 FROM authx.session_create(:'u2') \gset
SELECT session_token AS e2 FROM authx.session_create(:'u2') \gset
SELECT is(authx.session_revoke(:'e2'), true, 'session_revoke(e2)');
SELECT is(authx.user_disable(:'u2'), true, 'user_disable(u2)');
SELECT is(ARRAY[pg_temp.v(:'e1'), pg_temp.v(:'e2')], ARRAY[2, 2]::bigint[],
          'user_disable revokes and bumps the live session; the revoked one keeps its version');
SELECT is((SELECT revoke_reason FROM authx.sessions WHERE token_hash = pg_temp.hash(:'e1')), 'user_disabled',
          'the live session was revoked by the trigger (user_disabled)');
SELECT is(authx.user_enable(:'u2'), true, 'user_enable(u2)');
SELECT is(ARRAY[pg_temp.v(:'e1'), pg_temp.v(:'e2')], ARRAY[2, 2]::bigint[], 'user_enable changes no session');

SELECT session_token AS f FROM authx.session_create(:'u3') \gset
SELECT is(authx.user_delete(:'u3'), true, 'user_delete(u3)');
SELECT is(pg_temp.v(:'f'), 2::bigint, 'user_delete revokes and bumps the live session');

-- The trigger functions only work as triggers.
SELECT throws_ok('SELECT authx._sessions_version()', '0A000', NULL,
                 '_sessions_version() called directly: 0A000');
SELECT throws_ok('SELECT authx._sessions_cache()', '39P01',
                 'authx._sessions_cache() must be called as an AFTER ROW trigger',
                 '_sessions_cache() called directly: refused (39P01)');

-- ================================================================ cache_status
SELECT authx.cache_status() AS st \gset

SELECT set_eq(
    format('SELECT jsonb_object_keys(%L::jsonb)', :'st'),
    ARRAY['enabled', 'connected', 'writer_pid', 'queue_depth', 'queue_capacity', 'lag_p50_ms', 'lag_p99_ms',
          'run_id', 'last_error', 'last_error_at'],
    'cache_status() has exactly the documented keys'
);
SELECT is_empty(
    format($$SELECT k, jsonb_typeof(%1$L::jsonb -> k)
               FROM (VALUES ('enabled', ARRAY['boolean']), ('connected', ARRAY['boolean']),
                            ('writer_pid', ARRAY['number']), ('queue_depth', ARRAY['number']),
                            ('queue_capacity', ARRAY['number']), ('lag_p50_ms', ARRAY['number', 'null']),
                            ('lag_p99_ms', ARRAY['number', 'null']), ('run_id', ARRAY['string']),
                            ('last_error', ARRAY['string', 'null']),
                            ('last_error_at', ARRAY['string', 'null'])) t(k, types)
              WHERE NOT coalesce(jsonb_typeof(%1$L::jsonb -> k) = ANY (types), false)$$, :'st'),
    'every cache_status() value has its documented JSON type'
);
SELECT is(ARRAY[(:'st'::jsonb ->> 'enabled')::boolean, (:'st'::jsonb ->> 'connected')::boolean],
          ARRAY[true, true], 'the test cluster''s cache is enabled and connected');
SELECT ok((:'st'::jsonb ->> 'writer_pid')::int > 0 AND (:'st'::jsonb ->> 'writer_pid')::int <> pg_backend_pid(),
          'writer_pid is a process of its own');
SELECT ok((:'st'::jsonb ->> 'run_id') ~ '^[0-9a-f]{40}$', 'run_id is Redis''s 40-hex-digit run_id');
SELECT is((:'st'::jsonb ->> 'queue_capacity')::bigint, current_setting('authx.cache_queue_size')::bigint,
          'queue_capacity is authx.cache_queue_size');
SELECT ok((:'st'::jsonb -> 'queue_depth')::text ~ '^[0-9]+$'
          AND (:'st'::jsonb ->> 'queue_depth')::bigint <= (:'st'::jsonb ->> 'queue_capacity')::bigint,
          'queue_depth is a whole number within the capacity');
SELECT ok(CASE WHEN :'st'::jsonb -> 'lag_p50_ms' = 'null' THEN :'st'::jsonb -> 'lag_p99_ms' = 'null'
               ELSE (:'st'::jsonb ->> 'lag_p50_ms')::numeric >= 0
                    AND (:'st'::jsonb ->> 'lag_p50_ms')::numeric <= (:'st'::jsonb ->> 'lag_p99_ms')::numeric END,
          'lag_p50_ms <= lag_p99_ms, both null or both numbers');
SELECT ok((:'st'::jsonb -> 'last_error' = 'null') = (:'st'::jsonb -> 'last_error_at' = 'null')
          AND (:'st'::jsonb -> 'last_error_at' = 'null' OR (:'st'::jsonb ->> 'last_error_at')::timestamptz IS NOT NULL),
          'last_error and last_error_at are null together; last_error_at is a timestamp');
SELECT ok(position(current_setting('authx.redis_url') IN :'st') = 0 AND position('redis://' IN :'st') = 0,
          'cache_status() never shows the URL');

-- ================================================================ cache_sync
SELECT lives_ok($$SELECT authx.cache_sync('30 seconds')$$, 'cache_sync(30 s): what earlier files committed is applied');
SELECT lives_ok($$SELECT authx.cache_sync('0')$$, 'cache_sync(0) returns at once when nothing is queued');
SELECT lives_ok('SELECT authx.cache_sync()', 'cache_sync() with the default timeout');
-- This transaction has written sessions above: those operations reach the
-- ring only at COMMIT, so cache_sync neither waits for them nor sees them.
SELECT lives_ok($$SELECT authx.cache_sync('0')$$, 'cache_sync(0) does not wait for this transaction''s own writes');
SELECT is((authx.cache_status() ->> 'queue_depth')::bigint, 0::bigint,
          'uncommitted writes do not show in queue_depth');
SELECT is(authx.cache_sync(NULL)::text, NULL, 'cache_sync(NULL) is NULL (STRICT)');
SELECT throws_ok($$SELECT authx.cache_sync('-1 second')$$, '22023', 'timeout must not be negative',
                 'cache_sync(-1 s): 22023');
SELECT throws_ok($$SELECT authx.cache_sync('-1 mon')$$, '22023', NULL, 'cache_sync(-1 mon): 22023');
SELECT throws_ok($$SELECT authx.cache_sync('1 day -25 hours')$$, '22023', NULL,
                 'cache_sync(1 day -25 hours), negative in total: 22023');
-- Far beyond int64 microseconds: clamped, never overflowed into a negative.
SELECT lives_ok($$SELECT authx.cache_sync('300000 years')$$,
                'cache_sync(300000 years), a huge positive timeout, is accepted');

SET ROLE authx_app;
SELECT throws_ok($$SELECT authx.cache_sync('0')$$, '42501', NULL, 'app: cannot call cache_sync');
SELECT throws_ok('SELECT authx.cache_status()', '42501', NULL, 'app: cannot call cache_status');
RESET ROLE;
SET ROLE authx_admin;
SELECT lives_ok($$SELECT authx.cache_sync('30 seconds')$$, 'admin: can call cache_sync');
SELECT is((authx.cache_status() ->> 'enabled')::boolean, true, 'admin: can call cache_status');
RESET ROLE;

-- ================================================================ stats
SELECT set_eq(
    $$SELECT name, kind FROM authx.stats WHERE name LIKE 'cache%'$$,
    $$VALUES ('cache_queued', 'counter'), ('cache_sent', 'counter'), ('cache_batches', 'counter'),
             ('cache_errors', 'counter'), ('cache_resyncs', 'counter'), ('cache_dropped', 'counter'),
             ('cache_discarded', 'counter'), ('cache_queue_depth', 'gauge'), ('cache_connected', 'gauge'),
             ('cache_lag_p50_us', 'gauge'), ('cache_lag_p99_us', 'gauge'), ('cache_hits', 'counter'),
             ('cache_misses', 'counter'), ('cache_queue_capacity', 'gauge')$$,
    'authx.stats has exactly the cache counters and gauges'
);
SELECT is((SELECT value FROM authx.stats WHERE name = 'cache_connected'), 1::bigint,
          'stats: cache_connected = 1');
SELECT is((SELECT value FROM authx.stats WHERE name = 'cache_queue_capacity'),
          current_setting('authx.cache_queue_size')::bigint, 'stats: cache_queue_capacity = authx.cache_queue_size');

-- ================================================================ settings
SELECT set_eq(
    $$SELECT name, boot_val, coalesce(unit, ''), context FROM pg_catalog.pg_settings
       WHERE name IN ('authx.cache_queue_size', 'authx.cache_ttl', 'authx.redis_prefix',
                      'authx.redis_timeout_ms', 'authx.redis_url')$$,
    $$VALUES ('authx.cache_queue_size', '65536', '', 'postmaster'),
             ('authx.cache_ttl', '300', 's', 'sighup'),
             ('authx.redis_prefix', 'authx:', '', 'sighup'),
             ('authx.redis_timeout_ms', '200', 'ms', 'sighup')$$,
    'cache settings: boot values and contexts; authx.redis_url is not in pg_settings, even for a superuser'
);
SELECT ok(current_setting('authx.redis_url') LIKE 'redis://%', 'a superuser can read authx.redis_url');
SELECT throws_ok($$SET authx.redis_url = ''$$, '55P02', NULL,
                 'authx.redis_url cannot be changed in a session (55P02)');

SELECT * FROM finish();
ROLLBACK;

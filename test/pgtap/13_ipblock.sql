-- 13_ipblock.sql — IP blocking, end to end.
--
-- Covers:
--   * ip_blocked from the shared-memory copy: IPv4 and IPv6 networks,
--     single addresses, an IPv4-mapped IPv6 address counted as IPv4 (also
--     when the answer comes from the table, inside a transaction that
--     changed the blocks);
--   * expiry: a block of '1 second' counts, then stops counting after
--     pg_sleep(1.5) in the same backend, with no change in between (the
--     maintenance worker, whose purge of the ended block would move the
--     generation, is held back by a second connection locking
--     authx.ip_blocks) and without a reload (ip_block_reloads unchanged);
--   * another backend (dblink): a block, an allowlist entry, an unblock
--     and a disallow committed there count here at the very next call; an
--     uncommitted one does not, until it commits; a block committed there
--     while this backend's REPEATABLE READ transaction ran counts here
--     once that transaction ends; a transaction that changed the blocks
--     cannot be prepared (0A000) and its change never counts;
--   * the C answer equals authx._ip_blocked_sql for 200 random addresses
--     (IPv4 and IPv6) against 50 random networks of random lengths (blocks,
--     blocks with an end to come, ended blocks and allowlist entries), the
--     answers coming from the shared copy (no table lookup), both true and
--     false among them;
--   * TRUNCATE authx.ip_blocks counts at once.
-- The shared copy only serves committed state, so this file commits; what
-- it makes (entries in authx.ip_blocks, schema tap13 with dblink when it
-- was missing) is removed at the end.
SELECT plan(38);

SET lock_timeout = '30s';
SELECT is((SELECT count(*) FROM authx.ip_blocks)::int, 0, 'authx.ip_blocks is empty to begin with');

CREATE SCHEMA tap13;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'dblink') THEN
        CREATE EXTENSION dblink SCHEMA tap13;
    END IF;
END
$$;
SET search_path = public, tap13;

SELECT format('host=127.0.0.1 port=%s dbname=%s user=%s options=-clock_timeout=30s', current_setting('port'),
              current_database(), current_user) AS cs \gset
SELECT dblink_connect('tap13_lock', :'cs') AS lock_conn, dblink_connect('tap13_w', :'cs') AS writer_conn \gset

-- Another backend runs an authx call (and commits unless in a transaction).
CREATE FUNCTION pg_temp.remote(p_call text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec('tap13_w', format('DO %L', 'BEGIN PERFORM ' || p_call || '; END'));
END
$$;
-- Hold back the maintenance worker: its purge (DELETE on ip_blocks) waits
-- for this lock.  While held, nothing here may write authx.ip_blocks.
CREATE FUNCTION pg_temp.hold_worker() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec('tap13_lock', 'BEGIN');
    PERFORM dblink_exec('tap13_lock', 'LOCK TABLE authx.ip_blocks IN SHARE MODE');
END
$$;
CREATE FUNCTION pg_temp.release_worker() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec('tap13_lock', 'COMMIT');
END
$$;
CREATE FUNCTION pg_temp.stat(p_name text) RETURNS bigint LANGUAGE sql AS $$
    SELECT value FROM authx.stats WHERE name = p_name;
$$;

-- ================================================================ basics
SELECT authx.ip_block('198.51.100.0/24') AS b1, authx.ip_block('2001:db8:1::/48') AS b2 \gset
SELECT is(authx.ip_blocked('198.51.100.1'), true, 'a committed IPv4 /24 block counts');
SELECT is(authx.ip_blocked('::ffff:198.51.100.1'), true, 'the IPv4-mapped form of a blocked address is blocked');
SELECT is(authx.ip_blocked('198.51.101.1'), false, 'an address outside the block is not blocked');
SELECT is(authx.ip_blocked('2001:db8:1:ffff::1'), true, 'a committed IPv6 /48 block counts');
SELECT is(authx.ip_blocked('2001:db8:2::1'), false, 'an IPv6 address outside the block is not blocked');
-- From the table (this transaction changed the blocks): the same answers.
-- (Answers kept in variables: pgTAP's results would be rolled back too.)
BEGIN;
SELECT authx.ip_block('192.0.2.1') AS b3 \gset
SELECT authx.ip_blocked('192.0.2.1') AS tx_own, authx.ip_blocked('198.51.100.1') AS tx_committed,
       authx.ip_blocked('::ffff:198.51.100.1') AS tx_mapped, authx.ip_blocked('198.51.101.1') AS tx_outside \gset
ROLLBACK;
SELECT is(:'tx_own'::boolean, true, 'in a transaction: its own uncommitted block counts');
SELECT is(:'tx_committed'::boolean, true, 'in a transaction that changed the blocks: a committed block counts');
SELECT is(:'tx_mapped'::boolean, true,
          'in a transaction that changed the blocks: the IPv4-mapped form of a blocked address is still blocked');
SELECT is(:'tx_outside'::boolean, false, 'in a transaction that changed the blocks: an address outside is not blocked');
SELECT is(authx.ip_blocked('192.0.2.1'), false, 'the rolled-back block never counts');

-- ================================================================ expiry
SELECT authx.ip_block('203.0.113.5', '1 second') AS b4 \gset
SELECT is(authx.ip_blocked('203.0.113.5'), true, 'a block of 1 second counts at once');
SELECT pg_temp.hold_worker() AS held \gset
SELECT pg_temp.stat('ip_block_reloads') AS reloads0, pg_temp.stat('ip_block_table_lookups') AS lookups0 \gset
SELECT is(authx.ip_blocked('::ffff:203.0.113.5'), true, 'the mapped form of the 1-second block counts too');
SELECT pg_sleep(1.5) AS slept \gset
SELECT is(authx.ip_blocked('203.0.113.5'), false, 'after 1.5 s the 1-second block no longer counts, in the same backend');
SELECT is(authx.ip_blocked('::ffff:203.0.113.5'), false, 'nor for the mapped form');
SELECT is(authx.ip_blocked('198.51.100.1'), true, 'a block without an end still counts');
SELECT is(ARRAY[pg_temp.stat('ip_block_reloads') - :reloads0, pg_temp.stat('ip_block_table_lookups') - :lookups0],
          ARRAY[0, 0]::bigint[], 'expiry needed no change, no reload and no table lookup');
SELECT is((SELECT count(*) FROM authx.ip_blocks WHERE net = '203.0.113.5')::int, 1, 'the ended block is still in the table');
SELECT pg_temp.release_worker() AS released \gset
SELECT is((SELECT count(*) FROM authx.ip_blocks() WHERE net = '203.0.113.5')::int, 0, 'ip_blocks() does not list it');

-- ================================================================ another backend
SELECT pg_temp.remote($$authx.ip_block('192.0.2.0/24')$$) AS r \gset
SELECT is(authx.ip_blocked('192.0.2.77'), true, 'a block committed by another backend counts at the next call');
SELECT pg_temp.remote($$authx.ip_allow('192.0.2.77')$$) AS r \gset
SELECT is(authx.ip_blocked('192.0.2.77'), false, 'an allowlist entry committed by another backend counts at once');
SELECT pg_temp.remote($$authx.ip_disallow('192.0.2.77')$$) AS r \gset
SELECT is(authx.ip_blocked('192.0.2.77'), true, 'a disallow committed by another backend counts at once');
SELECT pg_temp.remote($$authx.ip_unblock('192.0.2.0/24')$$) AS r \gset
SELECT is(authx.ip_blocked('192.0.2.77'), false, 'an unblock committed by another backend counts at once');
SELECT dblink_exec('tap13_w', 'BEGIN') AS wb \gset
SELECT pg_temp.remote($$authx.ip_block('192.0.2.0/25')$$) AS r \gset
SELECT is(authx.ip_blocked('192.0.2.77'), false, 'a block not yet committed by another backend does not count');
SELECT dblink_exec('tap13_w', 'COMMIT') AS wc \gset
SELECT is(authx.ip_blocked('192.0.2.77'), true, 'it counts as soon as it commits');
-- A transaction that changed the blocks cannot be prepared.
SELECT dblink_exec('tap13_w', 'BEGIN') AS wb \gset
SELECT pg_temp.remote($$authx.ip_block('192.0.2.128/25')$$) AS r \gset
SELECT throws_ok($$SELECT dblink_exec('tap13_w', 'PREPARE TRANSACTION ''tap13_ipblock''')$$, '0A000', NULL,
                 'a transaction that changed the IP blocks cannot be prepared');
SELECT is(authx.ip_blocked('192.0.2.200'), false, 'and its block never counts');
-- REPEATABLE READ: a block committed elsewhere while the transaction ran
-- counts once it ends (whatever the transaction saw).
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) AS snap FROM authx.audit_log \gset
SELECT pg_temp.remote($$authx.ip_block('203.0.113.0/24')$$) AS r \gset
SELECT authx.ip_blocked('203.0.113.9') AS in_rr \gset
COMMIT;
SELECT is(authx.ip_blocked('203.0.113.9'), true,
          'a block committed by another backend during a REPEATABLE READ transaction counts after it');
SELECT pg_temp.remote($$authx.ip_unblock('203.0.113.0/24')$$) AS r \gset
SELECT is(authx.ip_blocked('203.0.113.9'), false, 'and its unblock counts at once');

-- ================================================================ C = SQL
-- 50 random networks (half IPv4 in 10.0.0.0/12, half IPv6 in
-- 2001:db8:0-7::/48, random lengths; a tenth of them allowlist entries,
-- some with an end to come, some ended) and 200 random addresses drawn
-- from the same ranges, so both answers occur.  Seeded: the same every run.
SELECT setseed(0.4242) AS seed \gset
CREATE TEMP TABLE tap13_nets AS
SELECT i, CASE WHEN i % 2 = 0
               THEN network(set_masklen('10.0.0.0'::inet + floor(random() * 1048576)::bigint, 12 + floor(random() * 21)::int))
               ELSE network(set_masklen(('2001:db8:' || to_hex(floor(random() * 8)::int) || '::')::inet
                                        + floor(random() * 1048576)::bigint,
                                        CASE WHEN random() < 0.2 THEN 48 + floor(random() * 17)::int
                                             ELSE 108 + floor(random() * 21)::int END))
          END::cidr AS net,
       i % 10 = 0 AS allow,
       CASE WHEN i % 10 IN (3, 4) THEN clock_timestamp() + interval '1 hour'
            WHEN i % 10 = 7 THEN clock_timestamp() - interval '1 hour' END AS until
  FROM generate_series(1, 50) i;
INSERT INTO authx.ip_blocks (net, allow, until, reason)
SELECT net, allow, until, 'tap13 random' FROM tap13_nets ON CONFLICT DO NOTHING;
CREATE TEMP TABLE tap13_addrs AS
SELECT DISTINCT CASE WHEN i % 2 = 0 THEN '10.0.0.0'::inet + floor(random() * 1048576)::bigint
                     ELSE ('2001:db8:' || to_hex(floor(random() * 8)::int) || '::')::inet + floor(random() * 1048576)::bigint
                END AS ip
  FROM generate_series(1, 200) i;
SELECT ok((SELECT count(*) FROM authx.ip_blocks WHERE reason = 'tap13 random') >= 45,
          'random networks: at least 45 distinct of 50');
SELECT ok((SELECT count(*) FROM tap13_addrs) >= 195, 'random addresses: at least 195 distinct of 200');
SELECT pg_temp.stat('ip_block_table_lookups') AS lookups1 \gset
CREATE TEMP TABLE tap13_answers AS
SELECT ip, authx.ip_blocked(ip) AS c, authx._ip_blocked_sql(ip, clock_timestamp()) AS s FROM tap13_addrs;
SELECT is(pg_temp.stat('ip_block_table_lookups') - :lookups1, 0::bigint,
          'the C answers came from the shared copy, not from the table');
SELECT is_empty($$SELECT ip::text, c, s FROM tap13_answers WHERE c IS DISTINCT FROM s$$,
                'ip_blocked equals _ip_blocked_sql for every random address');
SELECT ok((SELECT count(*) FILTER (WHERE c) >= 20 AND count(*) FILTER (WHERE NOT c) >= 20 FROM tap13_answers),
          'at least 20 random addresses are blocked and 20 are not');
SELECT ok((SELECT count(*) FILTER (WHERE c AND family(ip) = 6) >= 5 AND count(*) FILTER (WHERE c AND family(ip) = 4) >= 5
             FROM tap13_answers),
          'blocked ones among both the IPv4 and the IPv6 addresses');
SELECT ok(EXISTS (SELECT 1 FROM tap13_answers a JOIN authx.ip_blocks b ON b.net >>= a.ip AND b.allow
                   WHERE EXISTS (SELECT 1 FROM authx.ip_blocks x WHERE x.net >>= a.ip AND NOT x.allow
                                  AND (x.until IS NULL OR x.until > now()))),
          'some random address is both blocked and allowlisted (the allowlist is exercised)');

-- ================================================================ TRUNCATE
SELECT is(authx.ip_blocked('192.0.2.77'), true, 'before TRUNCATE: blocked');
TRUNCATE authx.ip_blocks;
SELECT is(authx.ip_blocked('192.0.2.77'), false, 'TRUNCATE authx.ip_blocks counts at once');

-- ================================================================ clean up
SELECT dblink_disconnect('tap13_lock') AS d1, dblink_disconnect('tap13_w') AS d2 \gset
RESET search_path;
SET client_min_messages = warning;
DROP SCHEMA tap13 CASCADE;
RESET client_min_messages;

SELECT * FROM finish();

--
-- IP blocking: ip_block, ip_unblock, ip_allow, ip_disallow, ip_blocks and
-- ip_blocked.  IPv4 and IPv6 networks of several lengths and single
-- addresses, IPv4-mapped IPv6 addresses counted as IPv4, the allowlist
-- winning over a wider and a narrower block, unblocking exactly one
-- network, blocking again replacing the end, blocks in a rolled-back
-- transaction (or savepoint) not counting, the transaction's own
-- uncommitted changes counting in it, ip_blocks() listing, audit events,
-- maintenance, statistics, privileges, then every invalid input (one line
-- each, through regress.try).
--
-- ip_blocked answers from a shared-memory copy of committed state, so this
-- file commits; the table is empty before and left empty at the end.
-- Timestamps are never printed, only whether they are within bounds; no
-- block here ends within the file (the maintenance worker would purge it
-- at any time): expiry is tested in pgTAP.
--
\set SHOW_CONTEXT never
SELECT coalesce(max(id), 0) AS audit0 FROM authx.audit_log \gset
SELECT count(*) AS entries_before FROM authx.ip_blocks;
-- Each probe: address, ip_blocked.
CREATE TABLE regress.ip_probes (ip inet PRIMARY KEY);
CREATE FUNCTION regress.probe() RETURNS TABLE (ip inet, blocked boolean)
LANGUAGE sql AS $$ SELECT p.ip, authx.ip_blocked(p.ip) FROM regress.ip_probes p ORDER BY family(p.ip), p.ip $$;
INSERT INTO regress.ip_probes VALUES
    ('10.1.2.3'), ('10.20.30.40'), ('10.21.0.1'), ('11.1.2.3'), ('9.255.255.255'),
    ('172.16.5.5'), ('172.31.255.255'), ('172.32.0.1'),
    ('192.0.2.0'), ('192.0.2.5'), ('192.0.2.99'), ('192.0.2.255'), ('192.0.3.1'),
    ('198.51.100.7'), ('198.51.100.8'), ('203.0.113.9'),
    ('::ffff:10.1.2.3'), ('::ffff:10.20.30.40'), ('::ffff:11.1.2.3'), ('::ffff:192.0.2.5'), ('::ffff:198.51.100.7'),
    ('::10.1.2.3'), ('::1'),
    ('2001:db8:a::1'), ('2001:db8:a:ffff:ffff:ffff:ffff:ffff'), ('2001:db8:b::1'),
    ('2001:db8:b:1::1'), ('2001:db8:b:2::1'), ('2001:db8:c::1'), ('2001:db8:c::2'),
    ('fd00::1'), ('fdff:ffff::1'), ('fe00::1');

-- ================================================================ nothing blocked
SELECT * FROM regress.probe() WHERE blocked;
SELECT authx.ip_blocked(NULL) AS null_ip;

-- ================================================================ blocks
-- IPv4 /8, /12, /24 (for an hour), /32; IPv6 /8, /48, /64, /128.
SELECT authx.ip_block('10.0.0.0/8', reason => 'wide');
SELECT authx.ip_block('172.16.0.0/12');
SELECT authx.ip_block('192.0.2.0/24', '1 hour', 'for an hour');
SELECT authx.ip_block('198.51.100.7');
SELECT authx.ip_block('fd00::/8');
SELECT authx.ip_block('2001:db8:a::/48');
SELECT authx.ip_block('2001:db8:b:1::/64');
SELECT authx.ip_block('2001:db8:c::1');
-- An address as given is a /32 or /128.
SELECT net, masklen(net) FROM authx.ip_blocks WHERE net IN ('198.51.100.7', '2001:db8:c::1') ORDER BY net;
-- Covered addresses are blocked, the edges of each network included;
-- ::ffff:a.b.c.d counts as a.b.c.d, ::a.b.c.d (IPv4-compatible) does not.
SELECT * FROM regress.probe();

-- ================================================================ allowlist
-- An allowlisted /16 inside the blocked /8 (narrower than the block) and a
-- blocked /24 inside the allowlisted /16 (narrower than the allow): the
-- allowlist wins over both, also for the mapped form; an allowlisted /32
-- inside a blocked /24.
SELECT authx.ip_allow('10.20.0.0/16', 'office');
SELECT authx.ip_block('10.20.30.0/24');
SELECT authx.ip_allow('192.0.2.99');
SELECT ip, authx.ip_blocked(ip) AS blocked
  FROM unnest('{10.1.2.3, 10.20.30.40, 10.20.0.1, 10.21.0.1, ::ffff:10.20.30.40, 192.0.2.99, 192.0.2.98}'::inet[]) ip;
-- An allowlisted network wins over a block of the very same network.
SELECT authx.ip_allow('2001:db8:c::1');
SELECT authx.ip_blocked('2001:db8:c::1') AS same_net_allowed;
SELECT authx.ip_disallow('2001:db8:c::1') AS disallowed;
SELECT authx.ip_blocked('2001:db8:c::1') AS same_net_blocked_again;
-- An allowlist entry over the whole IPv4 space: nothing IPv4 is blocked,
-- IPv6 still is.
SELECT authx.ip_allow('0.0.0.0/0');
SELECT ip, authx.ip_blocked(ip) AS blocked
  FROM unnest('{10.1.2.3, 172.16.5.5, 198.51.100.7, ::ffff:198.51.100.7, 2001:db8:a::1, fd00::1}'::inet[]) ip;
SELECT authx.ip_disallow('0.0.0.0/0') AS disallowed;
-- ip_disallow: true once; the blocks apply again.
SELECT authx.ip_disallow('10.20.0.0/16') AS disallowed, authx.ip_disallow('10.20.0.0/16') AS again,
       authx.ip_disallow('10.0.0.0/8') AS never_allowed;
SELECT ip, authx.ip_blocked(ip) AS blocked FROM unnest('{10.20.30.40, 10.20.0.1, ::ffff:10.20.30.40}'::inet[]) ip;
-- Allowing again replaces the reason.
SELECT authx.ip_allow('192.0.2.99', 'monitoring');
SELECT net, allow, reason FROM authx.ip_blocks WHERE allow ORDER BY net;

-- ================================================================ unblock
-- Exactly the given network: a narrower or wider block stays; an
-- allowlist entry is not a block.
SELECT authx.ip_unblock('10.20.30.0/24') AS unblocked, authx.ip_unblock('10.20.30.0/24') AS again;
SELECT authx.ip_blocked('10.20.30.40') AS still_in_wide_block;
SELECT authx.ip_unblock('10.0.0.0/8') AS unblocked, authx.ip_unblock('10.1.0.0/16') AS narrower,
       authx.ip_unblock('0.0.0.0/0') AS wider, authx.ip_unblock('192.0.2.99') AS allowlisted;
SELECT authx.ip_unblock('2001:db8:a::/64') AS narrower_v6, authx.ip_unblock('2001:db8::/32') AS wider_v6;
SELECT * FROM regress.probe() WHERE blocked;
SELECT count(*) AS allow_entries FROM authx.ip_blocks WHERE allow;

-- ================================================================ blocking again
-- Replaces the end and the reason, both ways; one row throughout.
SELECT authx.ip_block('198.51.100.7', '1 hour', 'first');
SELECT until BETWEEN now() + interval '59 minutes' AND clock_timestamp() + interval '1 hour' AS ends_in_1_hour, reason
  FROM authx.ip_blocks WHERE net = '198.51.100.7';
SELECT authx.ip_block('198.51.100.7', '2 days', 'second');
SELECT until BETWEEN now() + interval '47 hours' AND clock_timestamp() + interval '2 days' AS ends_in_2_days, reason
  FROM authx.ip_blocks WHERE net = '198.51.100.7';
SELECT authx.ip_block('198.51.100.7', '30 minutes');
SELECT until BETWEEN now() + interval '29 minutes' AND clock_timestamp() + interval '30 minutes' AS ends_in_30_min, reason
  FROM authx.ip_blocks WHERE net = '198.51.100.7';
SELECT authx.ip_block('198.51.100.7');
SELECT until IS NULL AS until_lifted, reason, source FROM authx.ip_blocks WHERE net = '198.51.100.7';
SELECT count(*) AS rows_for_net FROM authx.ip_blocks WHERE net = '198.51.100.7';
SELECT authx.ip_blocked('198.51.100.7') AS blocked;

-- ================================================================ transactions
-- A block rolled back never counts, neither in this backend nor after.
BEGIN;
SELECT authx.ip_block('203.0.113.0/24');
SELECT authx.ip_blocked('203.0.113.9') AS own_uncommitted_block;
ROLLBACK;
SELECT authx.ip_blocked('203.0.113.9') AS after_rollback;
BEGIN;
SAVEPOINT s;
SELECT authx.ip_block('203.0.113.0/24');
ROLLBACK TO SAVEPOINT s;
SELECT authx.ip_blocked('203.0.113.9') AS after_rollback_to_savepoint;
COMMIT;
SELECT authx.ip_blocked('203.0.113.9') AS after_commit;
-- Own uncommitted changes count in the transaction at once, the
-- committed blocks too (the mapped form included), and the rest of the
-- answers stay right.
BEGIN;
SELECT authx.ip_unblock('192.0.2.0/24');
SELECT authx.ip_block('11.0.0.0/8');
SELECT authx.ip_allow('fd00::1');
SELECT * FROM regress.probe() WHERE blocked;
ROLLBACK;
SELECT * FROM regress.probe() WHERE blocked;
-- A block committed in a transaction that also failed part-way counts.
BEGIN;
SELECT authx.ip_block('203.0.113.0/24', reason => 'kept');
SAVEPOINT s;
SELECT 1 / 0;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT authx.ip_blocked('203.0.113.9') AS committed_block;

-- ================================================================ ip_blocks()
SELECT net, allow, until IS NULL AS until_lifted, reason, source, created_at <= now() AS created_before
  FROM authx.ip_blocks();
-- Ended blocks are not listed and do not count; maintenance deletes them
-- and nothing else.  Inserted directly (ip_block refuses a past end), in
-- a transaction so the maintenance worker never sees them; ended ones left
-- by anyone else are deleted first, so the count is this file's.
DELETE FROM authx.ip_blocks WHERE until <= now();
BEGIN;
INSERT INTO authx.ip_blocks (net, until, reason, source)
VALUES ('203.0.113.128/25', now() - interval '1 second', 'ended', 'auto'),
       ('2001:db8:d::/48', now() - interval '1 day', 'ended', 'manual');
SELECT count(*) AS listed_ended FROM authx.ip_blocks() WHERE reason = 'ended';
SELECT authx.ip_blocked('2001:db8:d::1') AS ended_v6;
SELECT authx.maintenance_run() -> 'ip_blocks' AS ip_blocks;
SELECT count(*) AS ended_left FROM authx.ip_blocks WHERE reason = 'ended';
SELECT count(*) AS entries_kept FROM authx.ip_blocks;
ROLLBACK;

-- ================================================================ audit
SELECT event_type, severity, user_id, details - 'until' AS details, jsonb_typeof(details->'until') AS until
  FROM authx.audit_log WHERE id > :audit0 AND event_type LIKE 'ip.%'
 ORDER BY id;
-- Calls that changed nothing (false) and rolled-back ones left no event.
SELECT count(*) AS events_for_rolled_back FROM authx.audit_log
 WHERE id > :audit0 AND event_type LIKE 'ip.%' AND details->>'net' IN ('11.0.0.0/8', 'fd00::1/128');

-- ================================================================ statistics
-- ip_blocked counts the answers that were true (from the shared copy and
-- from the table alike); a committed change makes exactly one reload
-- however many calls follow; answers inside a transaction that changed the
-- blocks come from the table.
SELECT value AS blocked1 FROM authx.stats WHERE name = 'ip_blocked' \gset
SELECT value AS reloads1 FROM authx.stats WHERE name = 'ip_block_reloads' \gset
SELECT value AS table1 FROM authx.stats WHERE name = 'ip_block_table_lookups' \gset
SELECT authx.ip_block('203.0.113.0/24', reason => 'stats');
SELECT ip, authx.ip_blocked(ip) AS blocked FROM unnest('{203.0.113.1, 203.0.113.2, 198.51.100.8}'::inet[]) ip;
SELECT (SELECT value FROM authx.stats WHERE name = 'ip_blocked') - :blocked1 AS ip_blocked,
       (SELECT value FROM authx.stats WHERE name = 'ip_block_reloads') - :reloads1 AS ip_block_reloads,
       (SELECT value FROM authx.stats WHERE name = 'ip_block_table_lookups') - :table1 AS ip_block_table_lookups;
BEGIN;
SELECT authx.ip_allow('203.0.113.2');
SELECT ip, authx.ip_blocked(ip) AS blocked FROM unnest('{203.0.113.1, 203.0.113.2, 198.51.100.8}'::inet[]) ip;
ROLLBACK;
SELECT (SELECT value FROM authx.stats WHERE name = 'ip_blocked') - :blocked1 AS ip_blocked,
       (SELECT value FROM authx.stats WHERE name = 'ip_block_reloads') - :reloads1 AS ip_block_reloads,
       (SELECT value FROM authx.stats WHERE name = 'ip_block_table_lookups') - :table1 AS ip_block_table_lookups;

-- ================================================================ privileges
-- Applications may ask; administrators may also manage and read the table.
SET ROLE authx_app;
SELECT authx.ip_blocked('203.0.113.1') AS app_blocked, authx.ip_blocked('198.51.100.8') AS app_not_blocked;
SELECT authx.ip_block('198.51.100.8');
SELECT authx.ip_unblock('203.0.113.0/24');
SELECT authx.ip_allow('0.0.0.0/0');
SELECT authx.ip_disallow('192.0.2.99');
SELECT count(*) FROM authx.ip_blocks();
SELECT count(*) FROM authx.ip_blocks;
DELETE FROM authx.ip_blocks;
SELECT count(*) FROM authx._ip_blocks_live(now());
SELECT authx._ip_blocked_sql('203.0.113.1', now());
SELECT authx._ipblock_purge(now());
RESET ROLE;
SET ROLE authx_admin;
SELECT authx.ip_block('198.51.100.8', '1 hour', 'by admin');
SELECT authx.ip_blocked('198.51.100.8') AS admin_blocked;
SELECT net, reason FROM authx.ip_blocks WHERE reason = 'by admin';
SELECT net, reason FROM authx.ip_blocks() WHERE reason = 'by admin';
SELECT authx.ip_allow('198.51.100.8', 'by admin');
SELECT authx.ip_disallow('198.51.100.8') AS disallowed, authx.ip_unblock('198.51.100.8') AS unblocked;
UPDATE authx.ip_blocks SET until = NULL;
INSERT INTO authx.ip_blocks (net) VALUES ('198.51.100.9');
SELECT count(*) FROM authx._ip_blocks_live(now());
SELECT authx._ip_blocked_sql('203.0.113.1', now());
SELECT authx._ipblock_purge(now());
RESET ROLE;

-- ================================================================ invalid input
SELECT count(*) AS entries_before FROM authx.ip_blocks \gset
SELECT call, regress.try(call) AS result FROM (VALUES
    ($$authx.ip_block(NULL)$$),
    ($$authx.ip_block(NULL, '1 hour', 'r')$$),
    ($$authx.ip_block('198.51.100.9', '0')$$),
    ($$authx.ip_block('198.51.100.9', '-1 hour')$$),
    ($$authx.ip_block('198.51.100.9', '-1 microsecond')$$),
    ($$authx.ip_block('198.51.100.9', '1 day -24 hours')$$),
    ($$authx.ip_block('198.51.100.9/24')$$),
    ($$authx.ip_block('198.51.100.300')$$),
    ($$authx.ip_unblock(NULL)$$),
    ($$authx.ip_allow(NULL)$$),
    ($$authx.ip_allow(NULL, 'r')$$),
    ($$authx.ip_allow('2001:db8::1/32')$$),
    ($$authx.ip_disallow(NULL)$$),
    ($$authx.ip_blocked('not an address')$$)
) v(call);
-- A failed call changed nothing.
SELECT count(*) - :entries_before AS new_entries FROM authx.ip_blocks;

-- Clean up: every entry made here (the table was empty).
DELETE FROM authx.ip_blocks;
SELECT * FROM regress.probe() WHERE blocked;
DROP FUNCTION regress.probe();
DROP TABLE regress.ip_probes;

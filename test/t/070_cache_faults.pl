
# The Redis write-through cache under faults.  After every fault, once the
# writer has caught up, every recorded token is checked against its Redis
# key (AuthxTest::Cache::cache_invariant): no revoked (or never committed)
# session may read valid, and a valid session either reads valid with its
# user_id or misses.
#
#  - transaction semantics: ROLLBACK sends nothing, ROLLBACK TO drops the
#    subtransaction's operations only, disabling a user tombstones every
#    key, a stale repopulation never overwrites a tombstone;
#  - Redis stopped while sessions change, started again empty or from an
#    RDB file saved before the outage (a new run_id: resync, and cache_sync
#    must not return before the resync removed the stale entries), or
#    restarted from an old RDB with nothing to write meanwhile;
#  - a backend SIGKILLed mid-transaction with operations queued
#    (crash-restart);
#  - the writer terminated (SIGTERM) and killed (SIGKILL);
#  - queue overflow (authx.cache_queue_size = 1024) while Redis hangs;
#  - a hung Redis (SIGSTOP) does not slow down commits, login or
#    validation, and everything catches up after SIGCONT;
#  - TRUNCATE of authx.sessions (no row triggers) makes the writer resync:
#    no truncated session reads valid afterwards, and cache_sync waits for
#    that resync; a rolled-back TRUNCATE asks for nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use AuthxTest::Util qw(stat_value stats psql_verbose wait_until);
use AuthxTest::Redis;
use AuthxTest::Cache qw(:all);

my $redis = AuthxTest::Redis->new(name => 'faults');
my $node  = cache_node('faults', $redis, conf => <<CONF);
authx.cache_queue_size = 1024
authx.maintenance_naptime = 3600
CONF

my $st = cache_status($node);
ok($st->{enabled} && $st->{connected}, 'cache enabled and writer connected');
is($st->{queue_capacity}, 1024, 'queue_capacity follows authx.cache_queue_size');
is($st->{run_id}, $redis->run_id, 'cache_status shows the Redis run_id');

my $alice = new_user($node, 'alice@example.com');
my $bob   = new_user($node, 'bob@example.com');

# ------------------------------------------------------------------
# Healthy: creations arrive as live entries, revocations as tombstones.
# ------------------------------------------------------------------
my @base = make_sessions($node, $alice, 6, 'base');
revoke_where($node, token_in(@base[ 0, 1 ]));
ok(caught_up($node), 'cache_sync after the first sessions');
my $r = cache_invariant($node, $redis, 'healthy');
is_deeply([ @$r{qw(valid hit invalid tombstones)} ], [ 4, 4, 2, 2 ],
	'healthy: 4 live entries, 2 tombstones');
my $e = cache_entry($redis, $base[-1]);
is($e->{user_id}, $alice, 'entry holds the user_id');
is($e->{v}, 1, 'a new session is version 1');
like($e->{expires_at}, qr/^\d{10}$/, 'expires_at in unix seconds');

# ------------------------------------------------------------------
# ROLLBACK sends nothing.
# ------------------------------------------------------------------
my $before = stats($node);
my $rolled = $node->safe_psql('postgres', qq{
BEGIN;
SELECT session_token FROM authx.session_create('$alice');
SELECT authx.session_revoke('$base[-1]');
ROLLBACK;
});
like($rolled, qr/^axs_\S+\n(t|f)$/, 'a session created (and one revoked) in a rolled-back transaction');
($rolled) = split(/\n/, $rolled);
record_tokens($node, 'rolledback', $rolled);
make_sessions($node, $bob, 1, 'after-rollback');
ok(caught_up($node), 'cache_sync after the rollback');
is_deeply(cache_entry($redis, $rolled), {}, 'the rolled-back session has no key');
is(cache_entry($redis, $base[-1])->{v}, 1, 'the rolled-back revocation did not reach Redis');
is(stat_delta($before, stats($node), 'cache_queued'), 1,
	'only the committed transaction queued an operation');

# ------------------------------------------------------------------
# Subtransactions: ROLLBACK TO drops its own operations (also those a
# released inner savepoint handed up); the outer commit's others arrive.
# ------------------------------------------------------------------
my @sub = make_sessions($node, $bob, 4, 'sub');
ok(caught_up($node), 'sub sessions cached');
my $out = $node->safe_psql('postgres', qq{
BEGIN;
SELECT authx.session_revoke('$sub[0]');
SAVEPOINT a;
SELECT authx.session_revoke('$sub[1]');
SAVEPOINT b;
SELECT authx.session_revoke('$sub[2]');
RELEASE b;
ROLLBACK TO a;
SAVEPOINT c;
SELECT session_token FROM authx.session_create('$bob');
RELEASE c;
SAVEPOINT d;
SELECT session_token FROM authx.session_create('$bob');
ROLLBACK TO d;
COMMIT;
});
my @o = split(/\n/, $out);
is(scalar @o, 5, 'subtransaction script ran');
record_tokens($node, 'sub-kept', $o[3]);
record_tokens($node, 'sub-dropped', $o[4]);
ok(caught_up($node), 'cache_sync after the subtransactions');
is(cache_entry($redis, $sub[0])->{revoked}, 1, 'outer revocation arrived (tombstone)');
ok(!exists cache_entry($redis, $sub[1])->{revoked}, 'revocation rolled back to a savepoint: no tombstone');
ok(!exists cache_entry($redis, $sub[2])->{revoked}, 'revocation of a released inner savepoint rolled back with its parent: no tombstone');
is(cache_entry($redis, $sub[1])->{user_id}, $bob, 'and the entry is still live');
is(cache_entry($redis, $o[3])->{user_id}, $bob, 'session created in a released savepoint arrived');
is_deeply(cache_entry($redis, $o[4]), {}, 'session created in a rolled-back savepoint: no key');
cache_invariant($node, $redis, 'subtransactions');

# ------------------------------------------------------------------
# Disabling a user tombstones all of their keys; a hard DELETE too.
# ------------------------------------------------------------------
my $carol = new_user($node, 'carol@example.com');
my @carol = make_sessions($node, $carol, 5, 'carol');
ok(caught_up($node), 'carol sessions cached');
is(scalar(grep { cache_entry($redis, $_)->{user_id} } @carol), 5, 'all 5 of carol\'s sessions live in Redis');
$node->safe_psql('postgres', "SELECT authx.user_disable('$carol')");
ok(caught_up($node), 'cache_sync after user_disable');
is(scalar(grep { (cache_entry($redis, $_)->{revoked} // 0) == 1 } @carol), 5,
	'user_disable turned all 5 keys into tombstones');
my @del = make_sessions($node, $alice, 1, 'hard-delete');
ok(caught_up($node), 'session to delete cached');
$node->safe_psql('postgres',
	"DELETE FROM authx.sessions WHERE token_hash = sha256(convert_to('$del[0]', 'UTF8'))");
ok(caught_up($node), 'cache_sync after a hard DELETE');
is_deeply(cache_entry($redis, $del[0]), { revoked => 1, v => 2 }, 'a hard DELETE leaves a tombstone (version + 1)');
cache_invariant($node, $redis, 'disable and delete');

# ------------------------------------------------------------------
# A stale repopulation never overwrites a tombstone: a transaction
# validates (queues a repopulation of version 1) and commits only after
# another one revoked the session (version 2) and the tombstone is in.
# ------------------------------------------------------------------
my @stale = make_sessions($node, $alice, 1, 'stale');
ok(caught_up($node), 'stale session cached');
$redis->command('DEL', session_key($stale[0]));    # a miss: validate must repopulate
my $bg = $node->background_psql('postgres');
$before = stats($node);
$bg->query_safe('BEGIN');
is($bg->query_safe("SELECT authx.session_validate('$stale[0]')"), $alice,
	'validation in an open transaction');
$node->safe_psql('postgres', "SELECT authx.session_revoke('$stale[0]')");
ok(caught_up($node), 'revocation applied');
is(cache_entry($redis, $stale[0])->{revoked}, 1, 'tombstone in place');
$bg->query_safe('COMMIT');
ok(caught_up($node), 'the late repopulation was processed');
is(stat_delta($before, stats($node), 'cache_queued'), 2, 'the repopulation was queued (and the revocation)');
is_deeply(cache_entry($redis, $stale[0]), { revoked => 1, v => 2 },
	'the stale repopulation did not overwrite the tombstone');
# and a fresh validation of a live session repopulates a miss
my @repop = make_sessions($node, $alice, 1, 'repop');
ok(caught_up($node), 'repop session cached');
$redis->command('DEL', session_key($repop[0]));
is($bg->query_safe("SELECT authx.session_validate('$repop[0]')"), $alice, 'validate a session whose key was lost');
ok(caught_up($node), 'repopulation applied');
is(cache_entry($redis, $repop[0])->{user_id}, $alice, 'session_validate repopulated the miss');
$bg->quit;

# ------------------------------------------------------------------
# A creation is written without reading the key first.  When the key is
# there after all (an operation on the new row overtook the creation in
# the queue, or a restored row brings its token hash back), the entry
# becomes a bare version nothing overwrites, for the rest of the old key's
# life: gateways ask Postgres.
# ------------------------------------------------------------------
my $max_v = '9223372036854775807';
for my $case ([ 'tombstone', [ 'revoked', 1, 'v', 7 ] ],
	[ 'live entry', [ 'v', 1, 'user_id', $alice, 'expires_at', 4102444800 ] ])
{
	my ($what, $fields) = @$case;
	my $tok = 'axs_' . ('O' x 42) . ($what eq 'tombstone' ? 'T' : 'L');
	my $key = session_key($tok);
	$redis->command('HSET', $key, @$fields);
	$redis->command('EXPIRE', $key, 1000);
	$node->safe_psql('postgres',
		"INSERT INTO authx.sessions (token_hash, user_id, expires_at)
		 VALUES (sha256(convert_to('$tok', 'UTF8')), '$alice', now() + interval '1 hour')");
	ok(caught_up($node), "creation over a $what applied");
	is_deeply(cache_entry($redis, $tok), { v => $max_v },
		"creation over a $what leaves a bare version that cannot be overwritten");
	cmp_ok($redis->command('TTL', $key), '>', 900, "it keeps the $what's lifetime");
	is($node->safe_psql('postgres', "SELECT authx.session_validate('$tok')"), $alice,
		'Postgres still says the session is valid');
	$node->safe_psql('postgres', "SELECT authx.session_revoke('$tok')") if $what eq 'tombstone';
	ok(caught_up($node), 'later operations applied');
	is(cache_entry($redis, $tok)->{v}, $max_v, 'a repopulation (or revocation) does not overwrite it');
}

# A live entry queued by a transaction that began before a resync is
# dropped: it may rest on what the resync threw away (a revocation of the
# same row that overtook a creation in the queue).  The session misses, and
# the next validation repopulates it.
$bg = $node->background_psql('postgres');
$bg->query_safe('BEGIN');
my $early = $bg->query_safe("SELECT session_token FROM authx.session_create('$alice')");
my $rs0 = stat_value($node, 'cache_resyncs');
$node->safe_psql('postgres', 'TRUNCATE authx.api_keys CASCADE');    # asks for a resync
ok(caught_up($node), 'resynced');
cmp_ok(stat_value($node, 'cache_resyncs'), '>', $rs0, 'the TRUNCATE made the writer resync');
$bg->query_safe('COMMIT');
$bg->quit;
ok(caught_up($node), 'the creation older than the resync was processed');
is_deeply(cache_entry($redis, $early), {}, 'and dropped: the session misses');
is($node->safe_psql('postgres', "SELECT authx.session_validate('$early')"), $alice, 'it is valid in Postgres');
ok(caught_up($node), 'repopulation applied');
is(cache_entry($redis, $early)->{user_id}, $alice, 'the validation repopulated it');

# A send that fails after Redis got it (a timeout while Redis is stopped:
# Redis runs it when it wakes up) is sent again; creations must then go as
# plain versioned sets, or the second run would find their keys and turn
# them into bare versions.
$before = stats($node);
$redis->freeze;
my @twice = make_sessions($node, $bob, 20, 'sent-twice');
usleep(1_000_000);    # > authx.redis_timeout_ms: the send fails
$redis->thaw;
ok(caught_up($node), 'caught up after the failed send');
cmp_ok(stat_delta($before, stats($node), 'cache_errors'), '>', 0, 'the send timed out');
is(scalar(grep { (cache_entry($redis, $_)->{user_id} // '') eq $bob } @twice), 20,
	'all 20 creations sent twice read as live entries');

# ------------------------------------------------------------------
# 1a. Redis stopped while sessions are created and revoked; started again
# without its data.
# ------------------------------------------------------------------
my @o1 = make_sessions($node, $alice, 6, 'o1-pre');
ok(caught_up($node), 'o1 sessions cached');
my $offset  = -s $node->logfile;
my $resyncs = stat_value($node, 'cache_resyncs');
$redis->stop;
revoke_where($node, token_in(@o1[ 0 .. 2 ]));
my @o1d = make_sessions($node, $bob, 4, 'o1-during');
revoke_where($node, token_in($o1d[0]));
ok(wait_until('writer notices the outage', 10, sub { !cache_status($node)->{connected} }),
	'outage: cache_status().connected is false');
$st = cache_status($node);
cmp_ok($st->{queue_depth}, '>=', 4, "outage: operations wait in the queue ($st->{queue_depth})");
like($st->{last_error}, qr/\S/, "outage: last_error set ($st->{last_error})");
ok(defined $st->{last_error_at}, 'outage: last_error_at set');
is(stat_value($node, 'cache_connected'), 0, 'outage: stats cache_connected = 0');
my ($rc, $err) = cache_sync($node, 1);
like($err, qr/55000/, 'outage: cache_sync times out with 55000');
ok($node->log_contains(qr/authx redis writer: /, $offset), 'outage logged');
$redis->remove_rdb;
$redis->start;
ok(caught_up($node, resync_after => $resyncs), 'fresh Redis: writer reconnected, resynced, caught up');
ok($node->log_contains(qr/authx redis writer: writing to Redis again/, $offset), 'recovery logged once a write succeeds');
is(cache_status($node)->{run_id}, $redis->run_id, 'cache_status shows the new run_id');
cache_invariant($node, $redis, 'Redis restarted empty');
my @o1a = make_sessions($node, $bob, 1, 'o1-after');
ok(caught_up($node), 'cache_sync after the restart');
is(cache_entry($redis, $o1a[0])->{user_id}, $bob, 'new sessions reach the restarted Redis');

# ------------------------------------------------------------------
# 1b. Started again from an RDB file saved before the outage: it holds
# live entries of sessions revoked since (after the SAVE and during the
# outage).  run_id changes: the resync must remove them all.  Many
# unrelated keys under the prefix make the resync's SCAN + UNLINK take a
# while: cache_sync must not return before it is done.
# ------------------------------------------------------------------
my @o2 = make_sessions($node, $alice, 8, 'o2-pre');
ok(caught_up($node), 'o2 sessions cached');
is( $redis->command('EVAL',
		"for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'authx:junk:' .. i, 'x') end return 1",
		0, 200000),
	1, '200000 unrelated keys under the prefix');
is($redis->command('SAVE'), 'OK', 'SAVE: the RDB holds o2 live');
revoke_where($node, token_in($o2[0]));
ok(caught_up($node), 'revoked after the SAVE');
is(cache_entry($redis, $o2[0])->{revoked}, 1, 'tombstone (not in the RDB)');
$resyncs = stat_value($node, 'cache_resyncs');
my $old_run = $redis->run_id;
$redis->stop;
revoke_where($node, token_in(@o2[ 1 .. 3 ]));
my @o2d = make_sessions($node, $alice, 3, 'o2-during');
revoke_where($node, token_in($o2d[0]));
$redis->start;
ok(-s $redis->dir . '/dump.rdb', 'Redis started from the old RDB');
isnt($redis->run_id, $old_run, 'with a new run_id');
($rc, $err) = cache_sync($node, 30);
is($rc, 0, 'cache_sync returns once Redis is back') or diag($err);
$r = cache_invariant($node, $redis, 'right after cache_sync, Redis from an old RDB');
ok(caught_up($node, resync_after => $resyncs), 'resync done');
$r = cache_invariant($node, $redis, 'Redis from an old RDB, after the resync');
is_deeply([ $redis->scan_keys('authx:junk:*') ], [], 'the resync removed every key under the prefix');

# ------------------------------------------------------------------
# 1c. Restarted from an old RDB while nothing is queued: the writer's idle
# connection breaks, but nothing makes it write.  It must still notice the
# new run_id and resync (stale live entries otherwise stay for cache_ttl).
# ------------------------------------------------------------------
my @o3 = make_sessions($node, $bob, 3, 'o3-pre');
ok(caught_up($node), 'o3 sessions cached');
is($redis->command('SAVE'), 'OK', 'SAVE with o3 live');
revoke_where($node, token_in($o3[0]));
ok(caught_up($node), 'o3[0] revoked after the SAVE');
$resyncs = stat_value($node, 'cache_resyncs');
$redis->restart;
ok(wait_resync($node, $resyncs, 5), 'idle writer resyncs after Redis restarted (within 5 s)');
ok(caught_up($node), 'cache_sync');
cache_invariant($node, $redis, 'idle writer, Redis restarted from an old RDB');
$redis->remove_rdb;
# whatever happened: an operation makes the writer reconnect and resync
make_sessions($node, $bob, 1, 'o3-after');
ok(caught_up($node, resync_after => $resyncs), 'resynced at the latest with the next operation');
cache_invariant($node, $redis, 'after the next operation');

# ------------------------------------------------------------------
# 2. A backend SIGKILLed mid-transaction while operations wait in the
# queue (Redis hung): crash-restart; the queue in shared memory is gone,
# the new writer resyncs.
# ------------------------------------------------------------------
my @k = make_sessions($node, $alice, 6, 'k-pre');
ok(caught_up($node), 'k sessions cached');
$redis->freeze;
revoke_where($node, token_in(@k[ 0 .. 2 ]));
my @kd = make_sessions($node, $bob, 3, 'k-during');
revoke_where($node, token_in($kd[0]));
cmp_ok(cache_status($node)->{queue_depth}, '>=', 5, 'operations queued while Redis hangs');
my $victim = $node->background_psql('postgres', on_error_stop => 0);
$victim->query_safe('BEGIN');
my $vtoken = $victim->query_safe("SELECT session_token FROM authx.session_create('$alice')");
$victim->query_safe("SELECT authx.session_revoke('$k[3]')");
my $vpid = $victim->query_safe('SELECT pg_backend_pid()');
my $wpid = cache_writer_pid($node);
$offset = -s $node->logfile;
ok(kill('KILL', $vpid), "SIGKILL backend $vpid mid-transaction");
ok($node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset),
	'crash-restart');
eval { $victim->quit };
ok(wait_until('the server accepts connections again', 60,
		sub { $node->safe_psql('postgres', 'SELECT 1') eq '1' }), 'server back');
record_tokens($node, 'killed', $vtoken);
ok(wait_until('a new writer', 60, sub { my $p = cache_writer_pid($node); $p && $p != $wpid }),
	'a new writer after the crash-restart');
# What is owed now is the new writer's first resync (Redis still hangs),
# counted as one operation so that cache_sync waits for it.
is(cache_status($node)->{queue_depth}, 1, 'the queue did not survive the crash-restart: only the first resync is owed');
my $early = $node->psql('postgres', "SELECT authx.cache_sync('300 ms')");
isnt($early, 0, 'cache_sync does not return before that resync');
$redis->thaw;
ok($node->wait_for_log(qr/authx redis writer: resynced the cache/, $offset), 'the new writer resynced');
ok(caught_up($node), 'caught up after the crash-restart');
cache_invariant($node, $redis, 'backend killed mid-transaction');
is_deeply(cache_entry($redis, $vtoken), {}, 'the killed transaction\'s session has no key');
ok(!exists cache_entry($redis, $k[3])->{revoked}, 'nor its revocation a tombstone');

# ------------------------------------------------------------------
# 3. The writer terminated (SIGTERM: restarted after 1 s, shared memory
# kept) and killed (SIGKILL: crash-restart), each with operations queued.
# ------------------------------------------------------------------
for my $sig (qw(TERM KILL))
{
	my @w = make_sessions($node, $alice, 4, "w$sig-pre");
	ok(caught_up($node), "w$sig sessions cached");
	$redis->freeze;
	revoke_where($node, token_in(@w[ 0 .. 1 ]));
	make_sessions($node, $alice, 2, "w$sig-during");
	$wpid    = cache_writer_pid($node);
	$offset  = -s $node->logfile;
	ok(kill($sig, $wpid), "SIG$sig the writer ($wpid)");
	if ($sig eq 'KILL')
	{
		ok($node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset),
			'SIGKILL of the writer: crash-restart');
	}
	else
	{
		ok($node->wait_for_log(qr/background worker "authx redis writer" \(PID $wpid\) exited with exit code 1/, $offset),
			'SIGTERM: the writer exited with code 1 (restartable)');
	}
	ok(wait_until('a new writer', 60, sub { my $p = cache_writer_pid($node); $p && $p != $wpid }),
		"SIG$sig: a new writer runs");
	$redis->thaw;
	ok($node->wait_for_log(qr/authx redis writer: resynced the cache/, $offset), "SIG$sig: the new writer resynced");
	ok(caught_up($node), "SIG$sig: caught up");
	cache_invariant($node, $redis, "writer SIG$sig");
}

# ------------------------------------------------------------------
# 4. Queue overflow: more than 1024 operations while Redis hangs.  Commits
# go on, operations are dropped, the writer resyncs after SIGCONT.
# ------------------------------------------------------------------
my @q = make_sessions($node, $bob, 5, 'q-pre');
ok(caught_up($node), 'q sessions cached');
$before = stats($node);
$redis->freeze;
my @qd = (make_sessions($node, $alice, 300, 'q-during'), make_sessions($node, $alice, 300, 'q-during'));
revoke_where($node, token_in(@qd[ 0 .. 449 ]));
revoke_where($node, token_in(@q[ 0 .. 2 ]));    # last: surely dropped
my $mid = stats($node);
cmp_ok(stat_delta($before, $mid, 'cache_dropped'), '>', 0,
	'overflow: cache_dropped grew by ' . stat_delta($before, $mid, 'cache_dropped'));
cmp_ok($mid->{cache_queue_depth}, '<=', 1024, "overflow: queue depth $mid->{cache_queue_depth} <= capacity");
$redis->thaw;
ok(caught_up($node, resync_after => $mid->{cache_resyncs}), 'overflow: resynced and caught up');
my $after = stats($node);
cmp_ok(stat_delta($mid, $after, 'cache_discarded'), '>', 0, 'overflow: the resync discarded the queue');
$r = cache_invariant($node, $redis, 'after a queue overflow');
cmp_ok($r->{invalid}, '>=', 453, 'overflow: the revoked ones are among the checked');

# ------------------------------------------------------------------
# 5. A hung Redis does not slow down commits, login or validation.
# ------------------------------------------------------------------
$node->safe_psql('postgres', "SELECT authx.password_set('$bob', 'Cache-Test-Passw0rd')");
my @v = make_sessions($node, $bob, 3, 'v-pre');
ok(caught_up($node), 'v sessions cached');
my $creates = sub {
	my $note = shift;
	my $t0 = time;
	$node->safe_psql('postgres', join("\n",
		map { "INSERT INTO t_tokens SELECT session_token, '$note' FROM authx.session_create('$alice');" } 1 .. 50));
	return time - $t0;
};
$creates->('slow-warm');
my $healthy = $creates->('slow-healthy');
ok(caught_up($node), 'cache_sync');
$before = stats($node);
$redis->freeze;
my $t0 = time;
my $hung = $creates->('slow-hung');
note(sprintf('50 session_create: %.3f s healthy, %.3f s with Redis hung', $healthy, $hung));
cmp_ok($hung, '<', 2, sprintf('50 session_create with Redis hung take under 2 s (%.3f s)', $hung));
cmp_ok($hung, '<', ($healthy * 3 > 0.3 ? $healthy * 3 : 0.3),
	sprintf('and under 3x the healthy time (or 0.3 s) (%.3f s vs %.3f s)', $hung, $healthy));
my $t1 = time;
is($node->safe_psql('postgres', "SELECT status FROM authx.login('bob\@example.com', 'Cache-Test-Passw0rd')"),
	'ok', 'login works with Redis hung');
is($node->safe_psql('postgres', "SELECT authx.session_validate('$v[0]')"), $bob,
	'session_validate works with Redis hung');
is($node->safe_psql('postgres', "SELECT authx.session_revoke('$v[1]')"), 't',
	'session_revoke works with Redis hung');
cmp_ok(time - $t1, '<', 2, 'login, validate and revoke took under 2 s');
cmp_ok(time - $t0, '<', 8, 'the hang stays below the 10 s outage resync');
$redis->thaw;
ok(caught_up($node), 'caught up after SIGCONT');
$r = cache_invariant($node, $redis, 'after Redis hung');
is(stat_value($node, 'cache_resyncs'), $before->{cache_resyncs}, 'a short hang needs no resync');
is(cache_check($node, $redis, where => "note = 'slow-hung'")->{hit}, 50,
	'all 50 sessions committed while Redis hung reached it');
is(cache_entry($redis, $v[1])->{revoked}, 1, 'the revocation made while Redis hung arrived');

# The same with CLIENT PAUSE WRITE (Redis answers reads, holds writes).
is($redis->command('CLIENT', 'PAUSE', 3000, 'WRITE'), 'OK', 'CLIENT PAUSE 3000 WRITE');
my $paused = $creates->('slow-paused');
cmp_ok($paused, '<', 2, sprintf('50 session_create during CLIENT PAUSE take under 2 s (%.3f s)', $paused));
revoke_where($node, "note = 'slow-paused' AND token < 'axs_M'");
is($redis->command('CLIENT', 'UNPAUSE'), 'OK', 'CLIENT UNPAUSE');
ok(caught_up($node), 'caught up after UNPAUSE');
cache_invariant($node, $redis, 'after CLIENT PAUSE');
is(cache_check($node, $redis, where => "note = 'slow-paused' AND token >= 'axs_M'")->{miss}, 0,
	'every session committed during the pause reached Redis');

# TRUNCATE fires no row trigger: the writer resyncs at its commit.
my @tr = make_sessions($node, $bob, 5, 'truncate');
ok(caught_up($node), 'caught up before the TRUNCATE');
is(cache_check($node, $redis, where => "note = 'truncate'")->{hit}, 5, 'the 5 sessions are in Redis');
my $rs = stat_value($node, 'cache_resyncs');
$node->safe_psql('postgres', 'BEGIN; TRUNCATE authx.sessions CASCADE; ROLLBACK;');
ok(caught_up($node), 'caught up after a rolled-back TRUNCATE');
is(stat_value($node, 'cache_resyncs'), $rs, 'a rolled-back TRUNCATE asks for no resync');
# Nothing is queued for a TRUNCATE, yet cache_sync must wait for the
# resync it asked for: with Redis holding writes for 1.5 s, the UNLINKs
# cannot have happened when the TRUNCATE commits.
is($redis->command('CLIENT', 'PAUSE', 1500, 'WRITE'), 'OK', 'CLIENT PAUSE 1500 WRITE');
$node->safe_psql('postgres', 'TRUNCATE authx.sessions CASCADE');
my (undef, undef, $sync_err) = $node->psql('postgres', "SELECT authx.cache_sync('200 ms')");
like($sync_err, qr/DETAIL:\s+A resync of the cache is still to be done/,
	'cache_sync times out waiting for the resync, and says so');
ok(caught_up($node), 'caught up after the TRUNCATE');
is($redis->command('EXISTS', map { session_key($_) } @tr), 0,
	'cache_sync returned only once no truncated session was left in Redis');
cmp_ok(stat_value($node, 'cache_resyncs'), '>', $rs, 'TRUNCATE authx.sessions made the writer resync');
cache_invariant($node, $redis, 'after TRUNCATE');

done_testing();

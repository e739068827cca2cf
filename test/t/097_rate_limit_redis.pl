
# Rate limits stored in Redis (policies with store = 'redis', and
# authx.rate_limit / rate_peek under authx.rate_limit_store = redis), with
# two clusters sharing one password-protected Redis.
#
#  - shared limits: pgbench on both clusters at once against one redis
#    policy allowing 10 (and, through rate_limit with random costs, one
#    subject allowing 100): exactly 10 (exactly 100 in costs) allowed in
#    total, every answer from Redis (rate_limit_redis counts each call,
#    rate_limit_fallbacks none), one Redis key for the bucket; spending
#    alternately from the two clusters draws on one allowance;
#  - exactness: the same sequence of calls (costs 0, 1..max, above max) to a
#    redis policy and to a local policy with the same limit gives the same
#    allowed/remaining, reset_after and retry_after (up to the few seconds
#    between the two calls; windows are 30 days, one request is 3 days), a
#    cost above max is refused with retry_after NULL; on a fresh bucket
#    reset_after is exactly ceil(cost * per / max) µs in both stores (max 7:
#    the remainder path), and the Redis key holds "<TAT µs> <remainder>"
#    with a TTL of about reset_after; remainders carry (7 of 7 spent in
#    uneven costs leaves remainder 0); rate_peek in Redis spends nothing and
#    creates no key, and answers as the local store does;
#  - an open session follows a policy's change of store at once, and a
#    connection Redis closed (its idle timeout) is made again on the next
#    call: answered by Redis, not by the fallback;
#  - authx.rate_limit_prefix: two clusters with different prefixes do not
#    share a bucket; back on the same prefix they do (a reload suffices);
#  - the cache writer's resync (Redis restarted from an RDB file, i.e. a new
#    run_id; a change of authx.redis_prefix, which clears the old prefix
#    "authx:", the parent of "authx:rl:") removes the cache's keys but not
#    one rate-limit bucket: the buckets stay spent;
#  - Redis unavailable: stopped (connection refused), frozen (a timeout of
#    authx.redis_timeout_ms), a wrong password, an empty authx.redis_url.
#    fail_mode local answers from a separate bucket in shared memory, open
#    allows with remaining/reset_after/retry_after NULL, closed refuses
#    with remaining 0 and retry_after 1 s; authx.rate_limit follows
#    authx.rate_limit_fail the same way.  rate_limit_fallbacks grows by
#    exactly the number of such answers, rate_limit_redis by none,
#    rate_limit_redis_errors by at least one (none for an empty URL); one
#    LOG line "authx: Redis rate-limit store unavailable" per outage, also
#    when the outage outlasts the 1 s during which Redis is left alone; once
#    Redis is back, answers come from it again within seconds (from its
#    saved state, not from the fallback bucket);
#  - no server log ever shows the Redis password (log_min_messages = debug1
#    on the first cluster).
#
# Windows are 30 days long, so nothing trickles back while a run lasts and
# the counts are exact however slow the machine.  authx.redis_timeout_ms is
# 2 s so that a loaded machine does not make Redis look down by accident
# (that would show as fallbacks, which are counted and must be 0).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(sha256_hex);
use IPC::Run ();
use Time::HiRes qw(time usleep);

use AuthxTest::Util qw(stat_value stats wait_until);
use AuthxTest::Redis;
use AuthxTest::Cache qw(cache_node cache_status caught_up new_user make_sessions
  wait_resync stat_delta);

my $secret = 'Rl-Redis-Secret-97q';
my $wrong  = 'Rl-Wrong-Secret-97w';
my $redis  = AuthxTest::Redis->new(name => 'rl', password => $secret);
my $url    = $redis->url;
like($url, qr/\Q$secret\E\@/, 'the Redis URL carries a password');

my $common = <<CONF;
authx.maintenance_naptime = 3600
authx.redis_timeout_ms = 2000
CONF
# Two clusters, one Redis; each cache under its own prefix (a cache is one
# cluster's), the rate-limit buckets under the default authx:rl:.
my $na = cache_node('rl_a', $redis, conf => $common . "log_min_messages = debug1\n");
my $nb = cache_node('rl_b', $redis, conf => $common . "authx.redis_prefix = 'authxb:'\n");

sub qa { return $na->safe_psql('postgres', $_[0]); }
sub qb { return $nb->safe_psql('postgres', $_[0]); }

# The 30-day window in µs, as authx counts it.
my $PER = 30 * 86400 * 1_000_000;

# The Redis key of a rate_check bucket: <prefix><hex sha256(policy \x01
# subject \0 max/per_us)>.
sub bucket_key
{
	my ($policy, $subject, $max, $prefix) = @_;
	return ($prefix // 'authx:rl:') . sha256_hex("$policy\x01$subject\x00$max/$PER");
}

# One rate_check as "allowed|remaining|reset_after|retry_after", NULL shown.
sub rc
{
	my ($policy, $subject, $cost) = @_;
	$cost //= 1;
	return "SELECT allowed, coalesce(remaining::text, 'NULL'), coalesce(reset_after::text, 'NULL'), "
	  . "coalesce(retry_after::text, 'NULL') FROM authx.rate_check('$policy', '$subject', $cost);\n";
}

# The same for rate_limit (store and fail mode from the session's settings).
sub rl
{
	my ($subject, $max, $cost) = @_;
	$cost //= 1;
	return "SELECT allowed, coalesce(remaining::text, 'NULL'), coalesce(reset_after::text, 'NULL'), "
	  . "coalesce(retry_after::text, 'NULL') FROM authx.rate_limit('$subject', $max, '30 days', $cost);\n";
}

my $unavail = qr/authx: Redis rate-limit store unavailable/;

# LOG lines about the store since $offset.
sub log_lines
{
	my ($node, $offset) = @_;
	return grep { /$unavail/ } split(/\n/, slurp_file($node->logfile, $offset));
}

# Wait until $node answers from Redis again (fb_open's answers have a
# remaining only then).
sub wait_redis_back
{
	my ($node, $what, $secs) = @_;
	return wait_until($what, $secs // 20, sub {
		$node->safe_psql('postgres', q{SELECT remaining IS NOT NULL FROM authx.rate_check('fb_open', 'probe', 0)}) eq 't';
	});
}

# allowed|remaining of each answer line.
sub ar { return join(' ', map { join('|', (split(/\|/, $_))[ 0, 1 ]) } split(/\n/, $_[0])); }

for my $n ($na, $nb)
{
	$n->safe_psql('postgres', q{
SELECT authx.rate_policy_set('shared', 10, '30 days', store => 'redis');
SELECT authx.rate_policy_set('duo', 10, '30 days', store => 'redis');
SELECT authx.rate_policy_set('px', 3, '30 days', store => 'redis');
SELECT authx.rate_policy_set('fb_closed', 5, '30 days', fail_mode => 'closed', store => 'redis');
SELECT authx.rate_policy_set('fb_open', 5, '30 days', fail_mode => 'open', store => 'redis');
SELECT authx.rate_policy_set('fb_local', 5, '30 days', store => 'redis');
CREATE TABLE rl_hits (run text NOT NULL, allowed boolean NOT NULL, cost int NOT NULL DEFAULT 1);
});
}
is(qa(q{SELECT store || '/' || fail_mode FROM authx.rate_limit_policies WHERE name = 'fb_closed'}),
	'redis/closed', 'rate_policy_set stores store => redis and the fail_mode');

# ------------------------------------------------------------------
# Two clusters share one limit.
# ------------------------------------------------------------------
my $bench_dir = PostgreSQL::Test::Utils::tempdir('pgbench');

# pgbench in the background on $node: 4 clients, $per_client transactions.
sub bench_start
{
	my ($node, $name, $per_client, $script) = @_;
	my $file = "$bench_dir/$name.sql";
	open(my $fh, '>', $file) or die "cannot write $file: $!";
	print $fh $script;
	close($fh);
	my $b = { name => $name, total => 4 * $per_client, out => '', err => '' };
	$b->{h} = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '4', '-j', '4', '-t', $per_client, '-f', $file,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'<', \undef, '>', \$b->{out}, '2>', \$b->{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return $b;
}

sub bench_finish
{
	my ($b) = @_;
	eval { $b->{h}->finish; 1 } or diag("pgbench $b->{name}: $@");
	my $t = $b->{total};
	ok($b->{out} =~ m{processed: $t/$t} && $b->{out} =~ /number of failed transactions: 0\b/,
		"pgbench $b->{name}: $t transactions, none failed")
	  or diag("stdout:\n$b->{out}\nstderr:\n$b->{err}");
	return;
}

sub allowed_of
{
	my ($node, $run, $what) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(sum($what) FILTER (WHERE allowed), 0) || '/' || count(*) FROM rl_hits WHERE run = '$run'");
}

my ($sa0, $sb0) = (stats($na), stats($nb));
my @b = (
	bench_start($na, 'check_a', 100, q{
INSERT INTO rl_hits (run, allowed) SELECT 'check', r.allowed FROM authx.rate_check('shared', 'hammer') r;
}),
	bench_start($nb, 'check_b', 100, q{
INSERT INTO rl_hits (run, allowed) SELECT 'check', r.allowed FROM authx.rate_check('shared', 'hammer') r;
}));
bench_finish($_) for @b;
my ($ca, $cb) = (allowed_of($na, 'check', 'cost'), allowed_of($nb, 'check', 'cost'));
my ($ka) = $ca =~ m{^(\d+)/};
my ($kb) = $cb =~ m{^(\d+)/};
like("$ca $cb", qr{^\d+/400 \d+/400$}, "each cluster made 400 calls (A: $ca, B: $cb allowed/calls)");
is($ka + $kb, 10, 'rate_check on a redis policy of 10, 800 calls from two clusters at once: exactly 10 allowed in all');
my ($sa1, $sb1) = (stats($na), stats($nb));
is(stat_delta($sa0, $sa1, 'rate_limit_redis') . '/' . stat_delta($sb0, $sb1, 'rate_limit_redis'), '400/400',
	'rate_limit_redis counted every call on each cluster');
is(stat_delta($sa0, $sa1, 'rate_limit_fallbacks') + stat_delta($sb0, $sb1, 'rate_limit_fallbacks')
	  + stat_delta($sa0, $sa1, 'rate_limit_redis_errors') + stat_delta($sb0, $sb1, 'rate_limit_redis_errors'),
	0, 'no fallback and no Redis error on either cluster');
is($redis->command('EXISTS', bucket_key('shared', 'hammer', 10)), 1,
	'one Redis key <authx:rl:><sha256(policy, subject, limit)> holds the shared bucket');
my $pttl = $redis->command('PTTL', bucket_key('shared', 'hammer', 10));
ok($pttl > 29 * 86400 * 1000 && $pttl <= 30 * 86400 * 1000 + 2,
	"the drained bucket expires when it is full again, in about 30 days ($pttl ms)");
is(qa(q{SELECT allowed, remaining, retry_after > interval '2 days' FROM authx.rate_check('shared', 'hammer')})
	  . ' ' . qb(q{SELECT allowed, remaining, retry_after > interval '2 days' FROM authx.rate_check('shared', 'hammer')}),
	'f|0|t f|0|t', 'afterwards both clusters refuse, with a retry_after of about 3 days');

# rate_limit with authx.rate_limit_store = redis, random costs of 1 to 3.
my $limit_script = q{
\set c random(1, 3)
SET authx.rate_limit_store = redis;
INSERT INTO rl_hits (run, allowed, cost)
SELECT 'limit', r.allowed, :c FROM authx.rate_limit('hammer-limit', 100, '30 days', :c) r;
};
($sa0, $sb0) = (stats($na), stats($nb));
@b = (bench_start($na, 'limit_a', 100, $limit_script), bench_start($nb, 'limit_b', 100, $limit_script));
bench_finish($_) for @b;
($ca, $cb) = (allowed_of($na, 'limit', 'cost'), allowed_of($nb, 'limit', 'cost'));
($ka) = $ca =~ m{^(\d+)/};
($kb) = $cb =~ m{^(\d+)/};
is($ka + $kb, 100,
	"rate_limit in Redis, 800 calls of cost 1-3 from two clusters: the allowed costs add up to exactly 100 (A: $ca, B: $cb)");
($sa1, $sb1) = (stats($na), stats($nb));
is(stat_delta($sa0, $sa1, 'rate_limit_redis') . '/' . stat_delta($sb0, $sb1, 'rate_limit_redis'), '400/400',
	'rate_limit_redis counted every call');
is(stat_delta($sa0, $sa1, 'rate_limit_fallbacks') + stat_delta($sb0, $sb1, 'rate_limit_fallbacks'), 0,
	'and no fallback');
is(qa(q{SELECT allowed, remaining FROM authx.rate_peek('hammer-limit', 100, '30 days')}), 't|99',
	'the session default (rate_limit_store = local) still uses this cluster\'s own bucket');

# Alternately: one allowance.
is(ar(qa(rc('duo', 's', 4)) . "\n" . qb(rc('duo', 's', 1)) . "\n" . qb(rc('duo', 's', 5)) . "\n"
	  . qa(rc('duo', 's', 1)) . "\n" . qb(rc('duo', 's', 0))),
	't|6 t|5 t|0 f|0 t|0',
	'spent alternately from A (4), B (1), B (5): A is refused the 11th, a cost of 0 is still allowed');

# ------------------------------------------------------------------
# Redis answers exactly what the local store answers.
# ------------------------------------------------------------------
qa(q{
SELECT authx.rate_policy_set('ex_local', 10, '30 days');
SELECT authx.rate_policy_set('ex_redis', 10, '30 days', store => 'redis');
SELECT authx.rate_policy_set('ex7_local', 7, '30 days');
SELECT authx.rate_policy_set('ex7_redis', 7, '30 days', store => 'redis');
});

# Each step calls both policies in one statement: local, then Redis.
# The expected allowed|remaining and whether retry_after is NULL.
my @steps = (
	[ 1,  't|9', 1 ], [ 3, 't|6', 1 ], [ 0, 't|6', 1 ],
	[ 11, 'f|6', 1 ],    # above max: never allowed, no retry_after
	[ 4,  't|2', 1 ], [ 3, 'f|2', 0 ], [ 2, 't|0', 1 ], [ 1, 'f|0', 0 ],
	[ 10, 'f|0', 0 ], [ 0, 't|0', 1 ],
	[ 11, 'f|0', 1 ],    # above max on an empty bucket
);
my $script = '';
for my $s (@steps)
{
	my $c = $s->[0];
	$script .= qq{
SELECT l.allowed, l.remaining, r.allowed, r.remaining,
       l.retry_after IS NULL, r.retry_after IS NULL,
       abs(extract(epoch FROM l.reset_after - r.reset_after)) < 10,
       coalesce(abs(extract(epoch FROM l.retry_after - r.retry_after)) < 10, l.retry_after IS NULL AND r.retry_after IS NULL),
       l.reset_after, r.reset_after, coalesce(l.retry_after::text, 'NULL'), coalesce(r.retry_after::text, 'NULL')
  FROM authx.rate_check('ex_local', 'seq', $c) l, authx.rate_check('ex_redis', 'seq', $c) r;
};
}
my @rows = split(/\n/, qa($script));
is(scalar @rows, scalar @steps, 'the sequence ran');
for my $i (0 .. $#steps)
{
	my ($c, $want, $null) = @{ $steps[$i] };
	my @f = split(/\|/, $rows[$i] // '');
	my $got = join(' ', "local $f[0]|$f[1]", "redis $f[2]|$f[3]", 'retry_null ' . $f[4] . $f[5],
		'reset_close ' . $f[6], 'retry_close ' . $f[7]);
	my $tf = $null ? 't' : 'f';
	is($got, "local $want redis $want retry_null $tf$tf reset_close t retry_close t",
		sprintf('step %d, cost %d: both stores answer %s (reset_after %s / %s, retry_after %s / %s)',
			$i + 1, $c, $want, @f[ 8 .. 11 ]));
}
my $v = $redis->command('GET', bucket_key('ex_redis', 'seq', 10));
like($v // 'undef', qr/^\d{16} 0$/, "the Redis bucket holds \"<TAT µs> <remainder>\" ($v)");

# Fresh buckets of 7 per 30 days: reset_after is exactly ceil(cost*per/7) µs.
for my $c (1, 2, 3, 6, 7)
{
	is(qa(qq{
SELECT (extract(epoch FROM l.reset_after) * 1000000)::bigint || '|' || (extract(epoch FROM r.reset_after) * 1000000)::bigint
       || '|' || ceil($c * ${PER}::numeric / 7)::bigint || '|' || l.remaining || '|' || r.remaining
  FROM authx.rate_check('ex7_local', 'fresh$c', $c) l, authx.rate_check('ex7_redis', 'fresh$c', $c) r}),
		join('|', (int(($c * $PER + 6) / 7)) x 3, 7 - $c, 7 - $c),
		"max 7, cost $c on a fresh bucket: reset_after is exactly ceil($c * per / 7) µs in both stores");
	my $k = bucket_key('ex7_redis', "fresh$c", 7);
	my ($tat, $rem) = split(/ /, $redis->command('GET', $k) // '');
	is($rem, ($c * $PER) % 7, "and the Redis bucket keeps the remainder ($c * per mod 7 = " . (($c * $PER) % 7) . ')');
	my $ttl = $redis->command('PTTL', $k);
	my $inc_ms = int($c * $PER / 7 / 1000);
	ok($ttl > $inc_ms - 600_000 && $ttl <= $inc_ms + 2, "the key expires when the bucket is full again ($ttl ms)");
}

# The remainder carries: 7 of 7 spent as 1+1+1+2+1+1 leaves the Redis TAT
# at a whole µs (remainder 0), and every answer is the local store's.
my @carry = ([ 1, 't|6' ], [ 1, 't|5' ], [ 1, 't|4' ], [ 2, 't|2' ], [ 1, 't|1' ], [ 1, 't|0' ],
	[ 1, 'f|0' ], [ 0, 't|0' ]);
my $carry = qa(join('', map { qq{
SELECT l.allowed, l.remaining, r.allowed, r.remaining,
       abs(extract(epoch FROM l.reset_after - r.reset_after)) < 10
  FROM authx.rate_check('ex7_local', 'carry', $_->[0]) l, authx.rate_check('ex7_redis', 'carry', $_->[0]) r;
} } @carry));
is(join(' ', split(/\n/, $carry)), join(' ', map { "$_->[1]|$_->[1]|t" } @carry),
	'max 7, costs 1, 1, 1, 2, 1, 1, 1, 0: both stores answer the same');
like($redis->command('GET', bucket_key('ex7_redis', 'carry', 7)) // 'undef', qr/^\d+ 0$/,
	'the remainders carried into whole µs (remainder 0 after spending 7 of 7)');

# rate_peek in Redis: what rate_limit would answer, spending nothing.
my $peek_seq = join('',
	map { $_ eq 'p' ? "SELECT allowed, remaining, retry_after IS NULL FROM authx.rate_peek('pk', 3, '30 days');\n"
		            : "SELECT allowed, remaining, retry_after IS NULL FROM authx.rate_limit('pk', 3, '30 days', $_);\n" }
	  qw(p p 1 p p 2 p 0));
$sa0 = stats($na);
is(qa("SET authx.rate_limit_store = redis;\nSELECT allowed, remaining FROM authx.rate_peek('pk-fresh', 3, '30 days');"), 't|2',
	'rate_peek on a fresh subject in Redis');
is($redis->command('EXISTS', 'authx:rl:' . sha256_hex("pk-fresh\x003/$PER")), 0, 'creates no Redis key');
my $redis_peek = qa("SET authx.rate_limit_store = redis;\n$peek_seq");
my $local_peek = qa("SET authx.rate_limit_store = local;\n$peek_seq");
is(join(' ', split(/\n/, $redis_peek)), 't|2|t t|2|t t|2|t t|1|t t|1|t t|0|t f|0|f t|0|t',
	'rate_peek in Redis spends nothing: peek, peek, spend 1, peek, peek, spend 2, peek (refused), cost 0');
is($redis_peek, $local_peek, 'the same sequence in the local store answers the same');
is(stat_delta($sa0, stats($na), 'rate_limit_redis'), 9, 'the 9 Redis calls were answered by Redis');

# A session's copy of the policies follows a change of store at once, and
# its Redis connection outlives Redis closing it (an idle timeout): the
# next call connects again instead of falling back.
qa(q{SELECT authx.rate_policy_set('sw', 5, '30 days')});
my $bg = $na->background_psql('postgres');
is($bg->query_safe(q{SELECT allowed, remaining FROM authx.rate_check('sw', 's', 2)}), 't|3',
	'policy sw, local store: 2 of 5 spent in shared memory');
qa(q{SELECT authx.rate_policy_set('sw', 5, '30 days', store => 'redis')});
$sa0 = stats($na);
is($bg->query_safe(q{SELECT allowed, remaining FROM authx.rate_check('sw', 's')}), 't|4',
	'changed to store redis: the same session spends from a fresh Redis bucket');
is(stat_delta($sa0, stats($na), 'rate_limit_redis'), 1, 'answered by Redis');
is($redis->command('CONFIG', 'SET', 'timeout', '1'), 'OK', 'Redis closes connections idle for 1 s');
my $clients = sub { scalar(grep { /\bcmd=evalsha\b/ } split(/\n/, $redis->command('CLIENT', 'LIST') // '')) };
ok(wait_until('Redis closed the idle rate-limit connection', 30, sub { $clients->() == 0 }),
	'the session\'s idle connection was closed by Redis');
$sa0 = stats($na);
is($bg->query_safe(q{SELECT allowed, remaining FROM authx.rate_check('sw', 's')}), 't|3',
	'the session\'s next call is answered from Redis (t|3), not by the fallback (t|2, from shared memory)');
my $sa_idle = stats($na);
is(stat_delta($sa0, $sa_idle, 'rate_limit_fallbacks') . '/' . stat_delta($sa0, $sa_idle, 'rate_limit_redis'), '0/1',
	'no fallback, one Redis answer');
$redis->command('CONFIG', 'SET', 'timeout', '0');
$bg->quit;
ok(wait_redis_back($na, 'Redis answers (after the idle connection)'), 'Redis answers');

# ------------------------------------------------------------------
# Different authx.rate_limit_prefix: not shared.
# ------------------------------------------------------------------
sub set_prefix
{
	my ($node, $prefix) = @_;
	$node->append_conf('postgresql.conf', "authx.rate_limit_prefix = '$prefix'");
	$node->reload;
	return wait_until("authx.rate_limit_prefix = $prefix", 30,
		sub { $node->safe_psql('postgres', 'SHOW authx.rate_limit_prefix') eq $prefix });
}
ok(set_prefix($nb, 'other:rl:'), 'cluster B reloaded with authx.rate_limit_prefix = other:rl:');
is(ar(qa(rc('px', 'p', 3)) . "\n" . qa(rc('px', 'p', 1))), 't|0 f|0', 'A drains px/p (3 of 3)');
is(ar(qb(rc('px', 'p', 1))), 't|2', 'B, under another prefix, has a full bucket of its own');
is($redis->command('EXISTS', bucket_key('px', 'p', 3, 'other:rl:')), 1, 'kept under other:rl:');
is($redis->command('EXISTS', bucket_key('px', 'p', 3)), 1, 'and A\'s under authx:rl:');
ok(set_prefix($nb, 'authx:rl:'), 'B back on authx:rl:');
is(ar(qb(rc('px', 'p', 1))), 'f|0', 'now B shares A\'s drained bucket');

# ------------------------------------------------------------------
# The cache's resync leaves the rate-limit buckets alone.
# ------------------------------------------------------------------
my $uid = new_user($na, 'rl@example.com');
make_sessions($na, $uid, 3, 'rl');
ok(caught_up($na), 'A\'s cache has caught up');
is(scalar(my @s = $redis->scan_keys('authx:s:*')), 3, 'A\'s cache holds 3 session keys under authx:s:');
qa(q{SELECT authx.rate_policy_set('keep', 10, '30 days', store => 'redis')});
is(ar(qa(rc('keep', 'k', 4))), 't|6', 'a redis bucket spent 4 of 10');
my @rl_keys = $redis->scan_keys('authx:rl:*');
cmp_ok(scalar @rl_keys, '>=', 10, scalar(@rl_keys) . ' rate-limit keys in Redis');

# Redis restarts from an RDB file: a new run_id, both writers resync.
my $resyncs = stat_value($na, 'cache_resyncs');
my $run_id  = $redis->run_id;
is($redis->command('SAVE'), 'OK', 'SAVE');
$redis->restart;
isnt($redis->run_id, $run_id, 'Redis restarted from its RDB file (new run_id)');
ok(wait_resync($na, $resyncs, 30), 'A\'s cache writer resynced');
is(scalar(@s = $redis->scan_keys('authx:s:*')), 0, 'the resync removed the cache\'s session keys');
is_deeply([ $redis->scan_keys('authx:rl:*') ], \@rl_keys, 'but not one rate-limit key');
is(ar(qa(rc('keep', 'k', 1))), 't|5', 'the bucket is still spent (4 + 1 of 10)');
is(ar(qb(rc('px', 'p', 1))), 'f|0', 'and so is the drained one');

# A new authx.redis_prefix: the old one (authx:, the parent of authx:rl:)
# is cleared.
make_sessions($na, $uid, 2, 'rl2');
ok(caught_up($na), 'A\'s cache has caught up again');
is(scalar(@s = $redis->scan_keys('authx:s:*')), 2, '2 new session keys under authx:s:');
$resyncs = stat_value($na, 'cache_resyncs');
$na->append_conf('postgresql.conf', "authx.redis_prefix = 'cache2:'");
$na->reload;
ok(wait_resync($na, $resyncs, 30), 'A resynced for the new prefix cache2:');
is(scalar(@s = $redis->scan_keys('authx:s:*')), 0, 'the old prefix\'s session keys are gone');
is_deeply([ $redis->scan_keys('authx:rl:*') ], \@rl_keys, 'every rate-limit key is still there');
is(ar(qa(rc('keep', 'k', 1))), 't|4', 'the bucket is still spent (5 + 1 of 10)');

# ------------------------------------------------------------------
# Redis unavailable.
# ------------------------------------------------------------------
is(ar(qa(rc('fb_local', 'x', 2))), 't|3', 'fb_local/x spent 2 of 5 in Redis');
is($redis->command('SAVE'), 'OK', 'SAVE (the state Redis will come back with)');

my $offset = -s $na->logfile;
$sa0 = stats($na);
$redis->stop;
my $outage = qa(rc('fb_local', 'x') x 6);
is(ar($outage), 't|4 t|3 t|2 t|1 t|0 f|0',
	'stopped, fail_mode local: answered from a fresh bucket in shared memory (5 allowed, not 3)');
$outage = qa(rc('fb_open', 'y') x 3);
is(join(' ', split(/\n/, $outage)), 't|NULL|NULL|NULL t|NULL|NULL|NULL t|NULL|NULL|NULL',
	'fail_mode open: allowed, remaining, reset_after and retry_after NULL');
$outage = qa(rc('fb_closed', 'z') x 3);
is(join(' ', map { join('|', (split(/\|/, $_))[ 0, 1, 3 ]) } split(/\n/, $outage)),
	'f|0|00:00:01 f|0|00:00:01 f|0|00:00:01', 'fail_mode closed: refused, remaining 0, retry_after 1 s');
$outage = qa("SET authx.rate_limit_store = redis;\nSET authx.rate_limit_fail = closed;\n" . rl('gz', 5)
	  . "SET authx.rate_limit_fail = open;\n" . rl('gz', 5)
	  . "SET authx.rate_limit_fail = local;\n" . rl('gz', 5)
	  . "SELECT allowed, remaining FROM authx.rate_peek('gz', 5, '30 days');");
my @o = split(/\n/, $outage);
is(join(' ', (split(/\|/, $o[0]))[ 0, 1, 3 ], '/', $o[1], '/', ar($o[2]), '/', $o[3]),
	'f 0 00:00:01 / t|NULL|NULL|NULL / t|4 / t|3',
	'rate_limit in Redis follows authx.rate_limit_fail: closed, open, local (and rate_peek, local)');
my $sa_out = stats($na);
is(stat_delta($sa0, $sa_out, 'rate_limit_fallbacks'), 16, 'rate_limit_fallbacks grew by the 16 answers');
is(stat_delta($sa0, $sa_out, 'rate_limit_redis'), 0, 'rate_limit_redis did not grow');
cmp_ok(stat_delta($sa0, $sa_out, 'rate_limit_redis_errors'), '>=', 1, 'rate_limit_redis_errors grew');
is(stat_delta($sa0, $sa_out, 'rate_limit_allowed') . '/' . stat_delta($sa0, $sa_out, 'rate_limit_denied'),
	'11/5', 'rate_limit_allowed / rate_limit_denied: 11 / 5');

# The outage outlasts the second during which Redis is left alone: asked
# again, still down: still the same outage.
usleep(1_500_000);
is(ar(qa(rc('fb_closed', 'z2') x 2)), 'f|0 f|0', 'still stopped 1.5 s later: refused');
cmp_ok(stat_delta($sa_out, stats($na), 'rate_limit_redis_errors'), '>=', 1, 'Redis was asked again (an error)');
is(stat_delta($sa_out, stats($na), 'rate_limit_fallbacks'), 2, 'two more fallbacks');
my @lines = log_lines($na, $offset);
is(scalar @lines, 1, 'one LOG line for the outage') or diag(join("\n", @lines));
like($lines[0] // '', qr/\Q127.0.0.1:${\ $redis->port}\E/, 'it names the address') or diag($lines[0] // '');
unlike(join("\n", @lines), qr/\Q$secret\E/, 'and not the password');

# Back: from Redis again, from the state it saved.
$sa0 = stats($na);
$redis->start;
my $t0 = time();
ok(wait_redis_back($na, 'answers from Redis again', 10), 'Redis started again: answers come from it within 10 s');
note(sprintf('back after %.1f s', time() - $t0));
cmp_ok(stat_delta($sa0, stats($na), 'rate_limit_redis'), '>', 0, 'rate_limit_redis grows again');
is(ar(qa(rc('fb_local', 'x'))), 't|2', 'fb_local/x: Redis\'s state (3 left, now 2), not the fallback bucket (empty)');

# A second outage logs again, once.
$offset = -s $na->logfile;
$redis->stop;
is(ar(qa(rc('fb_closed', 'z3'))), 'f|0', 'stopped again: refused');
is(scalar(@lines = log_lines($na, $offset)), 1, 'a second outage: its own LOG line');
$redis->start;
ok(wait_redis_back($na, 'back after the second outage'), 'and back');

# A hung Redis: the call waits authx.redis_timeout_ms (2 s), not forever.
$offset = -s $na->logfile;
$sa0 = stats($na);
$redis->freeze;
$t0 = time();
my $frozen = qa(rc('fb_closed', 'hung'));
my $took = time() - $t0;
$redis->thaw;
is(join('|', (split(/\|/, $frozen))[ 0, 1, 3 ]), 'f|0|00:00:01', 'frozen Redis, fail_mode closed: refused');
ok($took >= 1.5 && $took < 20, sprintf('after about authx.redis_timeout_ms (%.1f s)', $took));
is(stat_delta($sa0, stats($na), 'rate_limit_fallbacks'), 1, 'one fallback');
is(stat_delta($sa0, stats($na), 'rate_limit_redis_errors'), 1, 'one Redis error');
is(scalar(@lines = log_lines($na, $offset)), 1, 'one LOG line');
ok(wait_redis_back($na, 'back after the freeze'), 'thawed: answers come from Redis again');

# A wrong password: an AUTH error, logged without the password.
$offset = -s $na->logfile;
$na->append_conf('postgresql.conf',
	"authx.redis_url = 'redis://:$wrong\@127.0.0.1:" . $redis->port . "'");
$na->reload;
ok(wait_until('the writer sees the wrong password', 30,
		sub { !cache_status($na)->{connected} && (cache_status($na)->{last_error} // '') =~ /AUTH/ }),
	'A reloaded with a wrong password in authx.redis_url');
$sa0 = stats($na);
is(ar(qa(rc('fb_closed', 'wp'))), 'f|0', 'wrong password, fail_mode closed: refused');
is(stat_delta($sa0, stats($na), 'rate_limit_redis_errors'), 1, 'a Redis error');
@lines = log_lines($na, $offset);
is(scalar @lines, 1, 'one LOG line');
like($lines[0] // '', qr/AUTH/, 'naming AUTH') or diag($lines[0] // '');
unlike(join("\n", @lines), qr/\Q$wrong\E|\Q$secret\E/, 'without the password');
$na->append_conf('postgresql.conf', "authx.redis_url = '$url'");
$na->reload;
ok(wait_until('A\'s writer connected again', 30, sub { cache_status($na)->{connected} }),
	'the right password again');
ok(wait_redis_back($na, 'back after the wrong password'), 'answers come from Redis again');

# An empty authx.redis_url on B: no Redis to ask, no error, no LOG line.
$offset = -s $nb->logfile;
$nb->append_conf('postgresql.conf', "authx.redis_url = ''");
$nb->reload;
ok(wait_until('B without Redis', 30, sub { !cache_status($nb)->{enabled} }), 'B reloaded with an empty authx.redis_url');
$sb0 = stats($nb);
is(qb(rc('fb_closed', 'nourl') x 2), "f|0|00:00:01|00:00:01\nf|0|00:00:01|00:00:01",
	'an empty URL, fail_mode closed: refused');
my $sb_now = stats($nb);
is(stat_delta($sb0, $sb_now, 'rate_limit_fallbacks') . '/' . stat_delta($sb0, $sb_now, 'rate_limit_redis_errors'),
	'2/0', 'two fallbacks, no Redis error');
is(scalar(@lines = log_lines($nb, $offset)), 0, 'no LOG line');
$nb->append_conf('postgresql.conf', "authx.redis_url = '$url'");
$nb->reload;
ok(wait_until('B\'s writer connected again', 30, sub { cache_status($nb)->{connected} }), 'B has its URL back');
qb(q{SELECT authx.rate_policy_set('keep', 10, '30 days', store => 'redis')});
is(ar(qb(rc('keep', 'k', 1))), 't|3', 'B answers from Redis again: A\'s bucket keep/k (4 left, now 3)');

# ------------------------------------------------------------------
# No server log shows the password.
# ------------------------------------------------------------------
for my $n ($na, $nb)
{
	my @hits = grep { /\Q$secret\E|\Q$wrong\E/ } split(/\n/, slurp_file($n->logfile));
	is(scalar @hits, 0, 'the server log of ' . $n->name . ' never shows a Redis password')
	  or diag(join("\n", @hits[ 0 .. ($#hits < 2 ? $#hits : 2) ]));
}

$na->stop;
$nb->stop;
done_testing();

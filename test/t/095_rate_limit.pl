
# Rate limits (authx.rate_limit, authx.rate_check) under real concurrency.
#
#  - exactness: pgbench, 4 clients, thousands of calls against one subject
#    allowing N: exactly N are allowed (also with random costs, where the
#    allowed costs add up to exactly N, and with half of the transactions
#    rolled back, which give nothing back);
#  - the same through rate_check: a policy, a subject's override (its own
#    max) and a bypassed subject, spent concurrently;
#  - eviction: with authx.rate_limit_slots = 1024 (the minimum), 50,000
#    distinct subjects spent from 4 sessions at once: all allowed, the server
#    stays up, every bucket beyond the table's size is an eviction, and a
#    drained bucket (the farthest from full) is never the one evicted; a
#    cost-0 ask needs no bucket, so it evicts nothing;
#  - a restart gives every bucket back (nothing is persisted), while the
#    policies and overrides, rows, stay;
#  - without shared_preload_libraries: 55000.
#
# Windows are 30 days long: with N = 1000 one request's worth trickles back
# every 43 minutes, so however slow the machine, nothing comes back while a
# run lasts and the counts are exact.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run ();

use AuthxTest::Util qw(authx_node stat_value psql_verbose);

my $node = authx_node('ratelimit');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# pgbench on $node with 4 clients: $per_client transactions each of $script.
sub hammer
{
	my ($name, $per_client, $script) = @_;
	my $total = 4 * $per_client;
	$node->pgbench(
		"-n -c 4 -j 4 -t $per_client",
		0,
		[ qr{processed: $total/$total}, qr{number of failed transactions: 0\b} ],
		[],
		"pgbench $name: 4 clients, $total transactions",
		{ "095_$name.sql" => $script });
	return;
}

sql(q{CREATE TABLE rl_hits (run text NOT NULL, allowed boolean NOT NULL, cost int NOT NULL DEFAULT 1,
                           remaining int, rolled_back boolean)});

sub hits
{
	my ($run) = @_;
	return sql(qq{SELECT count(*) FILTER (WHERE allowed) || '/' || count(*) FROM rl_hits WHERE run = '$run'});
}

# ------------------------------------------------------------------
# rate_limit: 5000 calls, exactly 1000 allowed.
# ------------------------------------------------------------------
my $allowed0 = stat_value($node, 'rate_limit_allowed');
my $denied0  = stat_value($node, 'rate_limit_denied');
hammer('limit', 1250, q{
INSERT INTO rl_hits (run, allowed)
SELECT 'limit', r.allowed FROM authx.rate_limit('hammer', 1000, '30 days') r;
});
is(hits('limit'), '1000/5000', 'rate_limit: of 5000 concurrent calls exactly 1000 were allowed');
is(stat_value($node, 'rate_limit_allowed') - $allowed0, 1000, 'rate_limit_allowed counted 1000');
is(stat_value($node, 'rate_limit_denied') - $denied0, 4000, 'rate_limit_denied counted 4000');
is(sql(q{SELECT allowed, remaining, retry_after > interval '0'
           FROM authx.rate_peek('hammer', 1000, '30 days')}),
	'f|0|t', 'rate_peek: the bucket is empty, with a retry_after');

# Random costs of 1 to 3: the allowed costs add up to exactly the limit.
hammer('cost', 1000, q{
\set c random(1, 3)
INSERT INTO rl_hits (run, allowed, cost)
SELECT 'cost', r.allowed, :c FROM authx.rate_limit('hammer-cost', 1000, '30 days', :c) r;
});
is(sql(q{SELECT sum(cost) FILTER (WHERE allowed) || '/' || count(*) FROM rl_hits WHERE run = 'cost'}),
	'1000/4000', 'random costs: the allowed ones add up to exactly 1000');

# Each call in a transaction, half of them rolled back: a rollback gives
# nothing back, so still exactly 500 allowed in all.  The answer is recorded
# after the transaction ended (rows inserted inside it would go with it).
hammer('rollback', 1000, q{
\set rb random(0, 1)
BEGIN;
SELECT r.allowed::int AS ok FROM authx.rate_limit('hammer-rollback', 500, '30 days') r \gset
\if :rb
ROLLBACK;
\else
COMMIT;
\endif
INSERT INTO rl_hits (run, allowed, rolled_back) VALUES ('rollback', :ok::boolean, :rb::boolean);
});
is(hits('rollback'), '500/4000', 'with half the transactions rolled back: exactly 500 allowed');
cmp_ok(sql(q{SELECT count(*) FROM rl_hits WHERE run = 'rollback' AND allowed AND rolled_back}),
	'>', 0, 'some of the allowed calls were rolled back');

# ------------------------------------------------------------------
# rate_check: the policy's limit, an override, a bypass, concurrently.
# ------------------------------------------------------------------
sql(q{SELECT authx.rate_policy_set('hammer', 10, '30 days', description => '095_rate_limit.pl')});
sql(q{SELECT authx.rate_override_set('hammer', 'vip', max => 700, reason => 'partner')});
sql(q{SELECT authx.rate_override_set('hammer', 'crawler', bypass => true)});
hammer('check', 500, q{
INSERT INTO rl_hits (run, allowed)
SELECT 'check-vip', r.allowed FROM authx.rate_check('hammer', 'vip') r;
INSERT INTO rl_hits (run, allowed)
SELECT 'check-plain', r.allowed FROM authx.rate_check('hammer', 'plain') r;
INSERT INTO rl_hits (run, allowed, remaining)
SELECT 'check-bypass', r.allowed, r.remaining FROM authx.rate_check('hammer', 'crawler') r;
});
is(hits('check-vip'), '700/2000', 'rate_check, override max 700: exactly 700 of 2000 allowed');
is(hits('check-plain'), '10/2000', 'rate_check, the policy\'s max 10: exactly 10 of 2000 allowed');
is(hits('check-bypass'), '2000/2000', 'rate_check, bypass: all 2000 allowed');
is(sql(q{SELECT count(*) FROM rl_hits WHERE run = 'check-bypass' AND remaining IS NOT NULL}), 0,
	'bypass answers have remaining NULL');
is(sql(q{SELECT r.allowed FROM authx.rate_peek('hammer' || chr(1) || 'crawler', 10, '30 days') r}),
	't', 'the bypassed subject spent nothing of the policy\'s bucket');

# ------------------------------------------------------------------
# A restart gives every bucket back; policies and overrides stay.
# ------------------------------------------------------------------
$node->restart;
# rate_peek answers what rate_limit would: remaining after that request.
is(sql(q{SELECT allowed, remaining FROM authx.rate_peek('hammer', 1000, '30 days')}),
	't|999', 'after a restart the drained bucket is full again (peek)');
is(sql(q{SELECT allowed, remaining FROM authx.rate_limit('hammer', 1000, '30 days')}),
	't|999', 'and spends from a full allowance');
is(sql(q{SELECT allowed, remaining FROM authx.rate_check('hammer', 'vip')}),
	't|699', 'rate_check: the override (a row) is still there, its bucket is full again');
is(sql(q{SELECT allowed, remaining FROM authx.rate_check('hammer', 'plain')}),
	't|9', 'rate_check: the policy (a row) is still there, its bucket is full again');
is(sql(q{SELECT allowed, coalesce(remaining::text, 'NULL') FROM authx.rate_check('hammer', 'crawler')}),
	't|NULL', 'the bypass is still there');
$node->stop;

# ------------------------------------------------------------------
# Eviction: 1024 slots, 50,000 distinct subjects from 4 sessions at once.
# ------------------------------------------------------------------
my $tiny = authx_node('tiny', conf => "authx.rate_limit_slots = 1024\n");
sub tsql { return $tiny->safe_psql('postgres', $_[0]); }
is(tsql('SHOW authx.rate_limit_slots'), '1024', 'a cluster with authx.rate_limit_slots = 1024');

# A drained bucket: 30 days until it is full again.  The subjects sprayed
# below have 20 minutes left, so this one is never the closest to full.
is(tsql(q{SELECT allowed, remaining FROM authx.rate_limit('hot', 5, '30 days', 5)}),
	't|0', 'a subject spends its whole allowance');
my $evict0 = stat_value($tiny, 'rate_limit_evictions');
my $log_offset = -s $tiny->logfile;
my (@out, @err, @h);
for my $i (0 .. 3)
{
	($out[$i], $err[$i]) = ('', '');
	$h[$i] = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $tiny->connstr('postgres'),
		  '-c', "SELECT count(*) FILTER (WHERE r.allowed)
		           FROM generate_series(1, 12500) g,
		                LATERAL authx.rate_limit('spray:$i:' || g, 3, '1 hour') r" ],
		'>', \$out[$i], '2>', \$err[$i],
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
}
for my $i (0 .. 3)
{
	$h[$i]->finish;
	chomp $out[$i];
	is($out[$i], '12500', "spraying session $i: 12,500 new subjects, all allowed") or diag($err[$i]);
}
is(tsql('SELECT 1'), '1', 'the server is up');
unlike(slurp_file($tiny->logfile, $log_offset), qr/terminated by signal|server process .* exited|PANIC/,
	'no backend died');
my $evicted = stat_value($tiny, 'rate_limit_evictions') - $evict0;
# 1024 slots, one of them the hot subject's: every new subject beyond the
# 1023 free slots had to take a live bucket's.
cmp_ok($evicted, '>=', 50000 - 1023, "rate_limit_evictions grew by at least 48,977 ($evicted)");
cmp_ok($evicted, '<=', 50000, 'and by at most one per new subject');
is(tsql(q{SELECT allowed, remaining FROM authx.rate_peek('hot', 5, '30 days')}),
	'f|0', 'the drained bucket was never evicted: still refused');

# A cost of 0 spends nothing, so a subject without a bucket needs none:
# asking for 2000 new subjects must not push out live buckets.
$evict0 = stat_value($tiny, 'rate_limit_evictions');
is(tsql(q{SELECT count(*) FILTER (WHERE r.allowed)
            FROM generate_series(1, 2000) g, LATERAL authx.rate_limit('ask:' || g, 3, '1 hour', 0) r}),
	'2000', 'cost 0 on 2000 new subjects: all allowed');
is(stat_value($tiny, 'rate_limit_evictions') - $evict0, 0, 'and no live bucket was evicted for them');
$tiny->stop;

# ------------------------------------------------------------------
# Without shared_preload_libraries: 55000.
# ------------------------------------------------------------------
my $np = authx_node('nopreload', preload => 0);
for my $case (
	[ q{SELECT * FROM authx.rate_limit('x', 5, '1 minute')}, 'rate_limit' ],
	[ q{SELECT * FROM authx.rate_peek('x', 5, '1 minute')},  'rate_peek' ],
	[ q{SELECT * FROM authx.rate_check('login', 'x')},       'rate_check' ])
{
	my ($q, $what) = @$case;
	my ($rc, $out, $err) = psql_verbose($np, $q);
	isnt($rc, 0, "$what fails without preloading");
	like($err, qr/ERROR:\s+55000: authx must be loaded via shared_preload_libraries/, "$what raises 55000");
	like($err, qr/HINT:\s+Add authx to shared_preload_libraries/, "$what hint names shared_preload_libraries");
}
my ($rc, $out, $err) = psql_verbose($np, 'SHOW authx.rate_limit_slots');
isnt($rc, 0, 'postmaster-only setting authx.rate_limit_slots does not exist');
$np->safe_psql('postgres', q{SELECT authx.rate_policy_set('np', 3, '1 minute')});
is($np->safe_psql('postgres', q{SELECT max || '/' || per FROM authx.rate_limit_policies WHERE name = 'np'}),
	'3/00:01:00', 'policies (rows) can still be managed');
$np->stop;

done_testing();

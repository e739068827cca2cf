
# The writer's lag figures (cache_lag_p50_us / cache_lag_p99_us in
# authx.stats, lag_p50_ms / lag_p99_ms in cache_status()) count every
# operation applied in the last minute, not only the latest few hundred:
# 100 operations held back by a hung Redis among 2,100 are 4.8% of the
# minute, so p99 must show them however many fast ones came after.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use AuthxTest::Util qw(stat_value);
use AuthxTest::Redis;
use AuthxTest::Cache qw(:all);

my $redis = AuthxTest::Redis->new(name => 'lag');
my $node  = cache_node('lag', $redis, conf => "authx.maintenance_naptime = 3600\n");
my $uid   = new_user($node, 'lag@example.com');

is(stat_value($node, 'cache_lag_p99_us'), -1, 'no operation yet: lag p99 is -1');

# 100 creations in one transaction, committed while Redis is stopped, and
# a second more before it goes on.
$redis->freeze;
$node->safe_psql('postgres',
	"SELECT count(*) FROM (SELECT authx.session_create('$uid') FROM generate_series(1, 100)) s");
usleep(1_100_000);
$redis->thaw;
ok(caught_up($node), 'caught up after the hang');
my $held = stat_value($node, 'cache_lag_p99_us');
cmp_ok($held, '>=', 900_000, "the held-back operations lag about a second ($held us)");

# Then 2,000 quick ones, in 20 transactions.
$node->safe_psql('postgres',
	"SELECT count(*) FROM (SELECT authx.session_create('$uid') FROM generate_series(1, 100)) s") for 1 .. 20;
ok(caught_up($node), "caught up after 2,000 more");
my $p50 = stat_value($node, 'cache_lag_p50_us');
my $p99 = stat_value($node, 'cache_lag_p99_us');
cmp_ok($p50, '<', 500_000, "p50 is one of the quick ones ($p50 us)");
cmp_ok($p99, '>=', 900_000, "p99 still shows the 4.8% held back ($p99 us)");
my $st = cache_status($node);
cmp_ok($st->{lag_p99_ms}, '>=', 900, "cache_status() agrees ($st->{lag_p99_ms} ms)");
cmp_ok($st->{lag_p50_ms}, '<=', $st->{lag_p99_ms}, 'lag_p50_ms <= lag_p99_ms');

done_testing();

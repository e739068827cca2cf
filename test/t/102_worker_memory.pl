# 102_worker_memory: the maintenance worker does not grow with its turns.
#
# Every step that commits a transaction leaves TopMemoryContext current;
# a step that allocated outside its own transaction after that (the API key
# usage copy, ~150 kB) used to keep it forever: the worker grew by that much
# every turn, idle or not.  Here each usage_record call on an empty queue
# wakes the worker for a turn of its own; after several hundred turns its
# private memory (RssAnon) must not have grown by more than a few MB (it
# grew by ~45 MB per 300 turns with the bug).  The memory-context dump of
# the worker must show a small TopMemoryContext as well.

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node stat_value wait_until worker_pid);

my $node = authx_node('workermem', conf => <<'CONF');
authx.maintenance_naptime = 60
CONF

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub rss_anon_kb
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	while (my $l = <$fh>)
	{
		return $1 if $l =~ /^RssAnon:\s+(\d+)\s+kB/;
	}
	return undef;
}

my $pid = worker_pid($node);
ok($pid > 0, 'the maintenance worker runs');

# One record at a time, each waiting until the worker has written it: one
# turn per record.
sub turns
{
	my ($n) = @_;
	for my $i (1 .. $n)
	{
		my $before = stat_value($node, 'usage_written');
		sql("SELECT authx.usage_record('GET /mem', 200, 1)");
		wait_until("record $i written", 10,
			sub { stat_value($node, 'usage_written') > $before });
	}
}

turns(50);    # warm-up: caches, plans, partitions
my $rss0 = rss_anon_kb($pid);
SKIP:
{
	skip 'no /proc/<pid>/status RssAnon here', 2 unless defined $rss0;
	turns(400);
	my $rss1 = rss_anon_kb($pid);
	is(worker_pid($node), $pid, 'the same worker ran all the turns');
	cmp_ok($rss1 - $rss0, '<', 8 * 1024,
		"400 turns grew the worker's private memory by less than 8 MB (from $rss0 kB to $rss1 kB)");
}

# The worker's own account of its memory.
my $log_offset = -s $node->logfile;
sql("SELECT pg_log_backend_memory_contexts($pid)");
my $top;
wait_until('the worker logs its memory contexts', 30, sub {
	my $log = slurp_file($node->logfile, $log_offset);
	($top) = $log =~ /\[$pid\] LOG:  level: 0; TopMemoryContext: (\d+) total/;
	return defined $top;
});
cmp_ok($top, '<', 4 * 1024 * 1024, "the worker's TopMemoryContext stays small ($top bytes)");

$node->stop;
done_testing();

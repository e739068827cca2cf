
# The Redis test helper itself: start, commands, restart without
# persistence, crash, stop.  Later tests (Redis write-through) rely on it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Redis;

my $redis = AuthxTest::Redis->new(name => 'helper');
my $port  = $redis->port;
like($port, qr/^\d+$/, 'port is a number');
ok($redis->is_running, 'server process is running');
ok(-s $redis->pidfile, 'pid file written');
is(PostgreSQL::Test::Utils::slurp_file($redis->pidfile) + 0,
	$redis->pid, 'pid file names our child');

# redis-cli, scalar and list context
is($redis->cli('PING'), 'PONG', 'cli PING');
is($redis->cli('SET', 'authx:test', 'hello world'), 'OK', 'cli SET');
is($redis->cli('GET', 'authx:test'), 'hello world', 'cli GET returns the value');
my ($out, $err, $rc) = $redis->cli('INCR', 'authx:counter');
is_deeply([ $out, $rc ], [ '1', 0 ], 'cli in list context: output and exit status');

# the raw client agrees with redis-cli
is($redis->command('GET', 'authx:test'), 'hello world', 'raw GET');
is_deeply($redis->command('MGET', 'authx:test', 'authx:none'),
	[ 'hello world', undef ], 'raw MGET decodes arrays and nil');
like($redis->command('NOSUCHCOMMAND'), qr/^-ERR/, 'raw client returns error replies');

# the configuration we asked for
my $cfg = $redis->command('CONFIG', 'GET', 'save');
is($cfg->[1], '', 'RDB snapshots disabled');
is($redis->command('CONFIG', 'GET', 'appendonly')->[1], 'no', 'AOF disabled');
is($redis->command('CONFIG', 'GET', 'bind')->[1], '127.0.0.1', 'bound to loopback');
is($redis->info('server')->{tcp_port}, $port, 'INFO server reports our port');

# restart: same port, new process, no data
my $run_id = $redis->run_id;
like($run_id, qr/^[0-9a-f]{40}$/, 'run_id looks like a run_id');
my $old_pid = $redis->pid;
$redis->restart;
ok($redis->is_running, 'running after restart');
is($redis->port, $port, 'same port after restart');
isnt($redis->pid, $old_pid, 'new process after restart');
isnt($redis->run_id, $run_id, 'run_id changed after restart');
is($redis->cli('EXISTS', 'authx:test'), '0', 'data gone after restart (no persistence)');
ok(!-e $redis->dir . '/dump.rdb', 'no dump.rdb written');

# a crash
$redis->cli('SET', 'authx:test', 'again');
$old_pid = $redis->pid;
$redis->kill9;
ok(!$redis->is_running, 'not running after kill9');
ok(!kill(0, $old_pid), 'process is gone after kill9');
ok(!$redis->ping, 'PING fails after kill9');
($out, $err, $rc) = $redis->cli('PING');
isnt($rc, 0, 'redis-cli PING exits non-zero after kill9');
like($err . $out, qr/Could not connect|Connection refused/i,
	'redis-cli reports the refused connection');

# start again after the crash, then stop
$redis->start;
ok($redis->ping, 'starts again after kill9');
is($redis->cli('GET', 'authx:test'), '', 'crash lost the data (nil prints as empty)');
$old_pid = $redis->pid;
ok($redis->stop, 'stop');
ok(!$redis->is_running, 'not running after stop');
ok(!kill(0, $old_pid), 'process is gone after stop');
ok(!$redis->ping, 'PING fails after stop');
ok(!$redis->stop, 'stop on a stopped server is a no-op');

# a second server with a password; DESTROY stops it
{
	my $r2 = AuthxTest::Redis->new(name => 'auth', password => 's3cret');
	isnt($r2->port, $port, 'second server gets another port');
	is($r2->cli('SET', 'k', 'v'), 'OK', 'cli authenticates with the password');
	is($r2->command('GET', 'k'), 'v', 'raw client authenticates with the password');
	my $noauth = AuthxTest::Redis->new(name => 'noauth', port => $r2->port, start => 0);
	like($noauth->command('GET', 'k'), qr/^-NOAUTH/, 'without the password: NOAUTH');
	my $pid2 = $r2->pid;
	undef $r2;
	ok(!kill(0, $pid2), 'DESTROY stopped the server');
}

# starting on a port already in use fails loudly instead of hanging
{
	my $r3 = AuthxTest::Redis->new(name => 'busy');
	my $clash = AuthxTest::Redis->new(name => 'clash', port => $r3->port, start => 0, timeout => 10);
	ok(!eval { $clash->start; 1 }, 'start on a busy port croaks');
	like($@, qr/exited during start|did not answer/, 'with a useful message');
	ok($r3->ping, 'the first server is unaffected');
	$r3->stop;
}

# a script that forgets to stop its server, or dies, leaves nothing behind
for my $case ('exit 0', 'die "boom\n"')
{
	my $pidfile = PostgreSQL::Test::Utils::tempdir('orphan') . '/pid';
	# PostgreSQL::Test::Utils sends the child's stdout to its log: use a file.
	my $script = q{
		use strict; use warnings;
		use PostgreSQL::Test::Cluster; use AuthxTest::Redis;
		our $r = AuthxTest::Redis->new(name => 'orphan');
		open(my $fh, '>', $ARGV[0]) or die; print $fh $r->pid; close($fh);
	} . "$case;\n";
	my ($cout, $cerr) = ('', '');
	IPC::Run::run([ $^X, '-e', $script, $pidfile ], '>', \$cout, '2>', \$cerr,
		IPC::Run::timeout(60));
	my $cpid = -s $pidfile ? PostgreSQL::Test::Utils::slurp_file($pidfile) : undef;
	ok($cpid, "child script ($case) started a server")
	  or diag("stdout: $cout\nstderr: $cerr");
	ok($cpid && !kill(0, $cpid), "server gone after the script ended ($case)");
}

done_testing();


# The maintenance worker and the shared-memory audit queue: start, reload,
# termination and restart, crash-restart, ROLLBACK, overflow to the
# synchronous fallback, and the final flush at shutdown.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node stat_value stats psql_verbose wait_until
  audit_count worker_pid);

# A long naptime first, so that the reload below visibly changes the pace;
# the smallest queue, so that 200 events of 4 kB cannot all fit.
my $node = authx_node('worker', conf => <<CONF);
authx.maintenance_naptime = 3600
authx.audit_queue_size = 64
restart_after_crash = on
CONF

# ------------------------------------------------------------------
# The worker runs, once, and is visible.
# ------------------------------------------------------------------
ok(wait_until('worker pid published', 30, sub { worker_pid($node) > 0 }),
	'worker publishes its pid');
my $pid = worker_pid($node);
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity
		  WHERE backend_type = 'authx maintenance worker'"),
	$pid,
	'exactly one worker in pg_stat_activity, with the published pid');
is( $node->safe_psql('postgres',
		"SELECT datname FROM pg_stat_activity WHERE pid = $pid"),
	'postgres',
	'worker is connected to authx.database');
ok($node->log_contains(qr/authx maintenance worker started in database "postgres"/),
	'worker logged its start');
is(stat_value($node, 'audit_queue_capacity_bytes'), 64 * 1024,
	'audit_queue_size = 64 kB sizes the ring');

# The extension was created after the start: the worker notices within a
# second or so and runs maintenance once; with a naptime of an hour, once.
ok(wait_until('first maintenance run', 30, sub { stat_value($node, 'maintenance_runs') >= 1 }),
	'worker runs maintenance once the extension exists');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM authx.audit_partitions'),
	'>=', 4, 'maintenance created the daily partitions (default + premade)');

# ------------------------------------------------------------------
# SIGHUP: a new naptime takes effect without a restart.
# ------------------------------------------------------------------
my $runs = stat_value($node, 'maintenance_runs');
$node->append_conf('postgresql.conf', 'authx.maintenance_naptime = 1');
$node->reload;
# A reload runs maintenance once at once; only the new naptime gives more.
ok( wait_until(
		'maintenance_runs to grow by 3', 30,
		sub { stat_value($node, 'maintenance_runs') >= $runs + 3 }),
	'after reload with naptime = 1 maintenance runs every second');
is($node->safe_psql('postgres', 'SHOW authx.maintenance_naptime'), '1s',
	'new naptime visible');
is(worker_pid($node), $pid, 'same worker process after reload');
is(stat_value($node, 'maintenance_errors'), 0, 'no maintenance errors so far');

# ------------------------------------------------------------------
# An event survives the caller's ROLLBACK; a transactional one does not.
# ------------------------------------------------------------------
$node->safe_psql('postgres', q{
BEGIN;
SELECT authx.audit('tx.rolledback', 'high', details => '{"n": 1}');
SELECT authx.user_create('rollback@example.com', 'correct horse battery');
ROLLBACK;
});
$node->safe_psql('postgres', "SELECT authx.audit_flush('30 seconds')");
is(audit_count($node, "event_type = 'tx.rolledback' AND severity = 'high' AND details = '{\"n\": 1}'"),
	1, 'audit() event written although the transaction rolled back');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM authx.users WHERE email = 'rollback\@example.com'"),
	0, 'the rolled-back user does not exist');
is(audit_count($node, "event_type = 'user.created'"),
	0, 'nor its transactional user.created event');

# ------------------------------------------------------------------
# pg_terminate_backend: the worker flushes, exits, is restarted after
# bgw_restart_time (5 s); events queued meanwhile are written afterwards.
# ------------------------------------------------------------------
my $offset = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"),
	't', 'terminate the worker');
ok(wait_until('worker pid cleared', 10, sub { worker_pid($node) == 0 }),
	'worker unpublishes its pid when it exits');
my $down = $node->safe_psql('postgres', q{
SELECT count(authx.audit('worker.down', 'info', details => jsonb_build_object('i', g)))
  FROM generate_series(1, 10) g;
SELECT value FROM authx.stats WHERE name = 'maintenance_worker_pid';
SELECT value FROM authx.stats WHERE name = 'audit_queue_events';
SELECT count(*) FROM authx.audit_log WHERE event_type = 'worker.down';
});
my (undef, $pid_then, $queued, $written) = split(/\n/, $down);
SKIP:
{
	skip 'worker came back before the events were queued', 2 if $pid_then != 0;
	cmp_ok($queued, '>=', 10, 'events queued while no worker runs');
	is($written, 0, 'and not written yet');
}
ok($node->log_contains(qr/authx maintenance worker shutting down/, $offset),
	'worker logged its shutdown');
my ($rc, $out, $err) = psql_verbose($node, "SELECT authx.audit_flush('60 seconds')");
is($rc, 0, 'audit_flush waits for the restarted worker') or diag($err);
my $pid2 = worker_pid($node);
ok($pid2 != 0 && $pid2 != $pid, "a new worker runs (pid $pid2, was $pid)");
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity
		  WHERE backend_type = 'authx maintenance worker' AND pid = $pid2"),
	1, 'the new worker is in pg_stat_activity');
is( $node->safe_psql('postgres',
		"SELECT count(DISTINCT details->>'i') FROM authx.audit_log WHERE event_type = 'worker.down'"),
	10, 'all 10 events queued while the worker was down were written');
ok($node->log_contains(qr/background worker "authx maintenance worker" \(PID $pid\) exited with exit code 1/, $offset),
	'postmaster saw exit code 1 (restartable)');

# ------------------------------------------------------------------
# kill -9: crash-restart of the whole cluster, the worker comes back.
# ------------------------------------------------------------------
$offset = -s $node->logfile;
ok(kill('KILL', $pid2), 'SIGKILL the worker');
ok( wait_until(
		'crash-restart with a new worker', 60,
		sub { my $p = worker_pid($node); $p != 0 && $p != $pid2 }),
	'a new worker after crash-restart');
ok($node->log_contains(qr/\(PID $pid2\) was terminated by signal 9/, $offset),
	'postmaster noticed the crash');
ok($node->log_contains(qr/all server processes terminated; reinitializing/, $offset),
	'and reinitialized');
my $uid = $node->safe_psql('postgres',
	"SELECT authx.user_create('after.crash\@example.com', 'Crash-Proof-Pass-1')");
like($uid, qr/^[0-9a-f-]{36}$/, 'user_create works after the crash');
is($node->safe_psql('postgres', "SELECT authx.password_verify('$uid', 'Crash-Proof-Pass-1')"),
	't', 'password_verify works after the crash');
$node->safe_psql('postgres', q{
SELECT authx.audit('after.crash', 'low');
SELECT authx.audit_flush('30 seconds');
});
is(audit_count($node, "event_type = 'after.crash'"), 1, 'audit queue works after the crash');

# ------------------------------------------------------------------
# Queue overflow: 200 events of ~4 kB through a 64 kB ring.  Those that do
# not fit are inserted synchronously; none is lost or duplicated.
# ------------------------------------------------------------------
my $s0 = stats($node);
$node->safe_psql('postgres', q{
SELECT count(authx.audit('t.x', 'info',
                         details => jsonb_build_object('pad', repeat('x', 4000), 'i', g)))
  FROM generate_series(1, 200) g;
});
($rc, $out, $err) = psql_verbose($node, "SELECT authx.audit_flush('30 seconds')");
is($rc, 0, 'flush after the overflow') or diag($err);
my $s1 = stats($node);
is( $node->safe_psql('postgres', q{
SELECT count(*), count(DISTINCT details->>'i'), min((details->>'i')::int), max((details->>'i')::int),
       bool_and(details->>'pad' = repeat('x', 4000))
  FROM authx.audit_log WHERE event_type = 't.x'}),
	'200|200|1|200|t', 'all 200 events present exactly once, intact');
my $fallbacks = $s1->{audit_sync_fallbacks} - $s0->{audit_sync_fallbacks};
my $enqueued  = $s1->{audit_enqueued} - $s0->{audit_enqueued};
cmp_ok($fallbacks, '>', 0, "some went through the synchronous fallback ($fallbacks)");
cmp_ok($enqueued,  '>', 0, "some went through the queue ($enqueued)");
is($fallbacks + $enqueued, 200, 'queued + fallback = 200');
is($s1->{audit_written} - $s0->{audit_written}, $enqueued, 'the worker wrote every queued one');
is($s1->{audit_queue_bytes}, 0, 'queue empty after flush');

# ------------------------------------------------------------------
# In a database other than authx.database nobody drains a queue: audit()
# inserts synchronously (so, documented, it does not survive ROLLBACK there).
# ------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION authx');
$s0 = stats($node);
$node->safe_psql('other', q{
BEGIN; SELECT authx.audit('other.rolledback', 'info'); ROLLBACK;
SELECT authx.audit('other.committed', 'info');
});
$s1 = stats($node);
is($node->safe_psql('other',
		"SELECT string_agg(event_type, ',') FROM authx.audit_log WHERE event_type LIKE 'other.%'"),
	'other.committed', 'other database: event written synchronously, in the caller transaction');
is($s1->{audit_enqueued} - $s0->{audit_enqueued}, 0, 'other database: nothing queued');
is(audit_count($node, "event_type LIKE 'other.%'"), 0, 'nothing leaked into authx.database');

# ------------------------------------------------------------------
# Shutdown: events still queued when the server stops are written before
# the worker exits.  A session blocks the worker first, so the events are
# really in the queue when the stop comes:
#  - maintenance: the worker waits for the maintenance advisory lock, not
#    draining; only the final flush after the loop can write the events;
#  - drain: the worker waits for a lock on audit_log inside a drain.
# ------------------------------------------------------------------
my %blockers = (
	'1 maintenance' => [
		"SELECT pg_advisory_lock(hashtext('authx._partitions_maintain'),
		                         'authx.audit_log'::regclass::oid::integer);",
		"query = 'SELECT authx.maintenance_run()'" ],
	'2 drain' => [
		'BEGIN; LOCK TABLE authx.audit_log IN SHARE MODE;',
		"query = 'authx: writing audit events'" ],
);
for my $case (sort keys %blockers)
{
	my ($block_sql, $activity) = @{ $blockers{$case} };
	my $type = 'shutdown.' . ($case =~ s/^\d //r);
	ok(wait_until('queue empty', 30, sub { stat_value($node, 'audit_queue_events') == 0 }),
		"$case: queue empty before the test");
	my $wpid = worker_pid($node);
	my $bg   = $node->background_psql('postgres');
	$bg->query_safe($block_sql);
	# maintenance runs every second; a drain starts with the first event
	$node->safe_psql('postgres', "SELECT authx.audit('$type', 'info', details => '{\"i\": 0}')")
	  if $case =~ /drain/;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT wait_event_type = 'Lock' AND $activity FROM pg_stat_activity WHERE pid = $wpid"),
		"$case: worker is blocked");
	$s0 = stats($node);
	$node->safe_psql('postgres', qq{
SELECT count(authx.audit('$type', 'info', details => jsonb_build_object('i', g)))
  FROM generate_series(1, 300) g;
});
	$s1 = stats($node);
	is($s1->{audit_sync_fallbacks} - $s0->{audit_sync_fallbacks}, 0, "$case: all 300 fit in the queue");
	cmp_ok($s1->{audit_queue_events}, '>=', 300, "$case: 300 events queued");
	is(audit_count($node, "event_type = '$type'"), 0, "$case: none written yet");
	($rc, $out, $err) = psql_verbose($node, "SELECT authx.audit_flush('500 ms')");
	isnt($rc, 0, "$case: audit_flush times out while the worker is blocked");
	like($err, qr/55000: audit events were not written within the timeout/, "$case: SQLSTATE 55000");
	like($err, qr/30[01] events are still queued/, "$case: detail says how many are waiting");

	$offset = -s $node->logfile;
	$node->stop('fast');
	eval { $bg->quit };
	ok($node->log_contains(qr/authx maintenance worker shutting down/, $offset),
		"$case: worker shut down cleanly");
	$node->start;
	my $expect = $case =~ /drain/ ? 301 : 300;
	is( $node->safe_psql('postgres',
			"SELECT count(*), count(DISTINCT details->>'i') FROM authx.audit_log WHERE event_type = '$type'"),
		"$expect|$expect", "$case: all queued events were written at shutdown");
	ok(wait_until('worker after restart', 30, sub { worker_pid($node) > 0 }),
		"$case: worker runs again after the restart");
}

$node->stop;
done_testing();


# Lockouts and sessions survive restarts.
#
# Failed logins are counted in shared memory at once (a ROLLBACK of the
# caller does not undo them), the maintenance worker copies changed counters
# into authx.lockouts, and after a server start it loads that table back
# once.  So a lockout that reached the table must hold across a clean
# restart and across a crash (immediate stop); sessions are ordinary rows
# and simply stay valid.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node stat_value stats psql_verbose wait_until
  audit_count worker_pid);

# Threshold 3 per (account, address); the account-wide threshold stays at
# its default of 20.  Prepared transactions for the last part.
my $node = authx_node('lockout', conf => <<CONF);
authx.lockout_threshold = 3
authx.maintenance_naptime = 3600
max_prepared_transactions = 2
restart_after_crash = on
CONF
# Lockouts, not the login rate policy (096/15_threat test that): no limit.
$node->safe_psql('postgres', q{SELECT authx.rate_policy_set('login', 1000000, '1 minute')});

my %pw = (alice => 'Alice-Right-Pass-1', bob => 'Bob-Right-Pass-1', carol => 'Carol-Right-Pass-1');
my %uid;
for my $u (sort keys %pw)
{
	$uid{$u} = $node->safe_psql('postgres',
		"SELECT authx.user_create('$u\@example.com', '$pw{$u}')");
}

# authx.login as one row "status|user_id|session_token|expires_at".
sub login
{
	my ($user, $pass, $ip, $prefix) = @_;
	return $node->safe_psql('postgres',
		($prefix // '') . "SELECT * FROM authx.login('$user\@example.com', '$pass', '$ip')");
}

sub status
{
	return (split /\|/, login(@_))[0];
}

# Three wrong passwords from $ip, each in a transaction that rolls back.
sub fail3
{
	my ($user, $ip, $prefix) = @_;
	return $node->safe_psql('postgres', ($prefix // '') . join('',
			map { "BEGIN;\nSELECT status FROM authx.login('$user\@example.com', 'wrong-$_', '$ip');\nROLLBACK;\n" }
			  1 .. 3));
}

# Until the (user, ip) row of authx.lockouts matches the SQL condition.
sub wait_persisted
{
	my ($user, $ip, $cond, $what) = @_;
	my $ipcond = defined $ip ? "ip = '$ip'" : 'ip IS NULL';
	return wait_until($what, 30, sub {
		$node->safe_psql('postgres',
			"SELECT count(*) FROM authx.lockouts WHERE user_id = '$uid{$user}' AND $ipcond AND ($cond)") == 1
	});
}

sub lockout_row
{
	my ($user, $ip) = @_;
	my $ipcond = defined $ip ? "ip = '$ip'" : 'ip IS NULL';
	return $node->safe_psql('postgres',
		"SELECT failures, lock_count, locked_until FROM authx.lockouts
		  WHERE user_id = '$uid{$user}' AND $ipcond");
}

sub validate
{
	my ($token, $ip) = @_;
	return $node->safe_psql('postgres', "SELECT authx.session_validate('$token', '$ip')");
}

# After a start authx.lockouts is loaded back by the worker's first turn or
# by the first login, whichever comes first; the checks at the end hold the
# table to show that a login in that window fails closed.
sub wait_loaded
{
	my ($what) = @_;
	return wait_until("worker's first turn after $what", 60,
		sub { stat_value($node, 'maintenance_runs') >= 1 });
}

# ------------------------------------------------------------------
# Carol first: a 1-second lockout (lockout_duration is per session for a
# superuser) that is over by the time of the restart; her lock_count must
# survive it so that the next lockout lasts twice as long.
# ------------------------------------------------------------------
is(fail3('carol', '10.0.0.7', "SET authx.lockout_duration = 1;\n"),
	join("\n", ('invalid_credentials') x 3), 'carol: three failures from 10.0.0.7 (1 s lockout)');
ok(wait_persisted('carol', '10.0.0.7', 'lock_count = 1 AND locked_until - updated_at = \'1 s\''),
	'carol: her 1 s lockout is persisted');

# ------------------------------------------------------------------
# Alice: a session, then a lockout for 10.0.0.1 from rolled-back attempts.
# ------------------------------------------------------------------
my ($st, $id, $tok_a) = split /\|/, login('alice', $pw{alice}, '10.1.0.1');
is($st, 'ok', 'alice logs in from 10.1.0.1');
is($id, $uid{alice}, 'login returns her user id');
like($tok_a, qr/^axs_[A-Za-z0-9_-]{43}$/, 'and a session token');
is(validate($tok_a, '10.1.0.1'), $uid{alice}, 'her session validates');
my ($tok_r) = split /\|/, $node->safe_psql('postgres',
	"SELECT session_token FROM authx.session_create('$uid{alice}', '10.1.0.2')");
is($node->safe_psql('postgres', "SELECT authx.session_revoke('$tok_r')"), 't',
	'a second session, revoked');
is(validate($tok_r, '10.1.0.2'), '', 'the revoked session does not validate');

my $s0 = stats($node);
is(fail3('alice', '10.0.0.1'), join("\n", ('invalid_credentials') x 3),
	'alice: three wrong passwords from 10.0.0.1, each in a transaction rolled back');
my $s1 = stats($node);
is($s1->{login_failures_counted} - $s0->{login_failures_counted}, 3,
	'all three failures counted despite the rollbacks');
is($s1->{lockouts} - $s0->{lockouts}, 1, 'the third one locked the account (for 10.0.0.1)');

($st, $id, undef, my $until) = split /\|/, login('alice', $pw{alice}, '10.0.0.1');
is($st, 'locked', 'right password from 10.0.0.1: locked');
is($id, '', 'no user id for a locked login');
is( $node->safe_psql('postgres',
		"SELECT '$until'::timestamptz - now() BETWEEN '14 min' AND '15 min'"),
	't', "locked for lockout_duration, 15 min (until $until)");
is(status('alice', $pw{alice}, '10.0.0.2'), 'ok', 'right password from 10.0.0.2: ok');

$node->safe_psql('postgres', "SELECT authx.audit_flush('30 s')");
is( audit_count($node,
		"event_type = 'login.failed' AND user_id = '$uid{alice}' AND ip = '10.0.0.1'
		 AND details->>'reason' = 'bad_password'"),
	3, 'the three login.failed events were written although rolled back');
is(audit_count($node, "event_type = 'login.lockout' AND user_id = '$uid{alice}' AND ip = '10.0.0.1'"),
	1, 'and one login.lockout event');

ok(wait_persisted('alice', '10.0.0.1', "locked_until = '$until'"),
	'the worker persisted the lockout in authx.lockouts');
is(lockout_row('alice', '10.0.0.1'), "0|1|$until", 'persisted: lock_count 1, locked_until exact');
ok(wait_persisted('alice', undef, 'failures = 3 AND locked_until IS NULL'),
	'and the account-wide counter (3 of 20, no lock)');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM authx.active_lockouts WHERE user_id = '$uid{alice}' AND ip = '10.0.0.1'"),
	1, 'authx.active_lockouts lists it');

ok( wait_until('carol unlocked', 10,
		sub { $node->safe_psql('postgres',
			"SELECT bool_and(locked_until < now()) FROM authx.lockouts
			  WHERE user_id = '$uid{carol}' AND ip = '10.0.0.7'") eq 't' }),
	"carol's 1 s lockout is over before the restart");

# ------------------------------------------------------------------
# Clean restart.
# ------------------------------------------------------------------
$node->restart;
ok(wait_loaded('restart'), 'worker ran after the restart');
is(stat_value($node, 'maintenance_errors'), 0, 'without errors');
($st, undef, undef, my $until2) = split /\|/, login('alice', $pw{alice}, '10.0.0.1');
is($st, 'locked', 'after restart: alice still locked for 10.0.0.1');
is($until2, $until, 'until the same moment');
is(status('alice', $pw{alice}, '10.0.0.3'), 'ok', 'after restart: ok from 10.0.0.3');
is(validate($tok_a, '10.1.0.1'), $uid{alice}, 'after restart: the session from before validates');
is(validate($tok_r, '10.1.0.2'), '', 'after restart: the revoked one still does not');

# Carol: her lock_count came back, so the next lockout lasts 2 s.
is(fail3('carol', '10.0.0.7', "SET authx.lockout_duration = 1;\n"),
	join("\n", ('invalid_credentials') x 3), 'carol: three more failures after the restart');
ok(wait_persisted('carol', '10.0.0.7', 'lock_count = 2'),
	'carol: second lockout persisted with lock_count 2');
is( $node->safe_psql('postgres',
		"SELECT locked_until - updated_at FROM authx.lockouts
		  WHERE user_id = '$uid{carol}' AND ip = '10.0.0.7'"),
	'00:00:02', 'carol: the repeat lockout lasts twice lockout_duration (doubling survived the restart)');

# ------------------------------------------------------------------
# Crash: bob is locked for 10.0.0.5, persisted, then an immediate stop.
# ------------------------------------------------------------------
my ($tok_b) = split /\|/, $node->safe_psql('postgres',
	"SELECT session_token FROM authx.session_create('$uid{bob}', '10.2.0.1')");
is(validate($tok_b, '10.2.0.1'), $uid{bob}, 'bob has a session');
is(fail3('bob', '10.0.0.5'), join("\n", ('invalid_credentials') x 3),
	'bob: three wrong passwords from 10.0.0.5, rolled back');
($st, undef, undef, my $until_b) = split /\|/, login('bob', $pw{bob}, '10.0.0.5');
is($st, 'locked', 'bob: locked for 10.0.0.5');
ok(wait_persisted('bob', '10.0.0.5', "locked_until = '$until_b'"), "bob's lockout persisted");

my $offset = -s $node->logfile;
$node->stop('immediate');
$node->start;
ok($node->log_contains(qr/database system was not properly shut down; automatic recovery in progress/, $offset),
	'the immediate stop was a crash (recovery ran)');
ok(wait_loaded('crash'), 'worker ran after the crash');
($st, undef, undef, my $until_b2) = split /\|/, login('bob', $pw{bob}, '10.0.0.5');
is($st, 'locked', 'after the crash: bob still locked for 10.0.0.5');
is($until_b2, $until_b, 'until the same moment');
is(status('bob', $pw{bob}, '10.0.0.6'), 'ok', 'after the crash: bob ok from 10.0.0.6');
is(status('alice', $pw{alice}, '10.0.0.1'), 'locked', 'after the crash: alice still locked for 10.0.0.1');
is(validate($tok_b, '10.2.0.1'), $uid{bob}, "after the crash: bob's session validates");
is(validate($tok_a, '10.1.0.1'), $uid{alice}, "after the crash: alice's session validates");

# ------------------------------------------------------------------
# An administrator's unlock holds across a restart too.
# ------------------------------------------------------------------
$node->safe_psql('postgres', "SELECT authx.user_unlock('$uid{bob}')");
is(status('bob', $pw{bob}, '10.0.0.5'), 'ok', 'user_unlock: bob ok from 10.0.0.5');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM authx.active_lockouts WHERE user_id = '$uid{bob}'"),
	0, 'no active lockout listed for bob');
$node->restart;
ok(wait_loaded('restart'), 'worker ran after the restart');
is(status('bob', $pw{bob}, '10.0.0.5'), 'ok', 'after restart: bob is still unlocked');
is(status('alice', $pw{alice}, '10.0.0.1'), 'locked', 'and alice still locked for 10.0.0.1');

# ------------------------------------------------------------------
# The window between a start and the worker's load of authx.lockouts.
# A prepared transaction holding authx.lockouts keeps the worker from
# loading it (as a slow or failing worker would); logins meanwhile see no
# lockout at all, and a failure counted meanwhile makes the load skip the
# persisted row ("entries already in memory are newer"), so the lockout
# is gone for good.  statement_timeout: a fix that makes login wait for the
# load must not hang the test.
# ------------------------------------------------------------------
$node->safe_psql('postgres', q{
BEGIN;
LOCK TABLE authx.lockouts IN ACCESS EXCLUSIVE MODE;
PREPARE TRANSACTION 'hold_lockouts';
});
$node->restart;
my $wpid;
ok( wait_until(
		'worker blocked on authx.lockouts', 30,
		sub {
			$wpid = worker_pid($node);
			$wpid > 0 && $node->safe_psql('postgres',
				"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $wpid") eq 't';
		}),
	'window: the worker waits to load authx.lockouts');
my ($rc, $out, $err) = psql_verbose($node,
	"SET statement_timeout = '5s';
	 SELECT status FROM authx.login('alice\@example.com', '$pw{alice}', '10.0.0.1')");
my ($rc2, $out2, $err2) = psql_verbose($node,
	"SET statement_timeout = '5s';
	 SELECT status FROM authx.login('alice\@example.com', 'wrong-in-window', '10.0.0.1')");
$node->safe_psql('postgres', "ROLLBACK PREPARED 'hold_lockouts'");
ok(wait_loaded('releasing the worker'), 'window: the worker ran once released');
my $after = status('alice', $pw{alice}, '10.0.0.1');
# The first lockout decision after a start loads authx.lockouts itself, in
# the caller's transaction: with the table held, the login waits (and here
# times out) rather than answer from an empty memory.  It fails closed.
isnt($out, 'ok', 'window: the right password from the locked address does not log in')
  or diag($err);
like($err, qr/statement timeout/, 'window: the login waited for the persisted lockouts')
  or diag("out=$out err=$err");
is($after, 'locked',
	'after the window: alice is still locked for 10.0.0.1 (a failure in the window did not erase it)');

$node->stop;
done_testing();

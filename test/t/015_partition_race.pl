
# Partition maintenance against concurrent audit_log inserts.
#
# _partitions_maintain creates the partition for a day and attaches it.  An
# INSERT that had already routed its row to the DEFAULT partition (with the
# old partition map) and then waited for the default's lock used to fail
# once it got it: "new row for relation audit_log_default violates partition
# constraint" (user_create's user.created event, or a synchronous audit()).
# Maintenance now locks the parent SHARE ROW EXCLUSIVE before any partition
# DDL, so inserts wait before routing and land in the new partition.
#
# Maintenance also runs with lock_timeout = 1s: behind a long reader of
# audit_log (the ATTACH needs an ACCESS EXCLUSIVE lock on the default
# partition) it gives up instead of holding the parent lock, and with it
# every insert, for as long as the reader runs.
#
# No preloading here: no worker, so the timing is ours alone.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Time::HiRes qw(time);

use AuthxTest::Util qw(authx_node audit_count psql_verbose);

my $node = authx_node('race', preload => 0);
is($node->safe_psql('postgres', 'SELECT count(*) FROM authx.audit_partitions'),
	1, 'only the default partition after CREATE EXTENSION');

# Run maintenance in an open transaction, start $sql in another session,
# wait until it is blocked behind the maintenance, commit; returns the
# second session's stderr and stdout.
sub race
{
	my ($sql) = @_;
	my $maint = $node->background_psql('postgres');
	$maint->query_safe('BEGIN; SELECT authx.maintenance_run();');
	my $victim = $node->background_psql('postgres', on_error_stop => 0);
	my $vpid   = $victim->query_safe('SELECT pg_backend_pid()');
	$victim->query_until(qr/sent/, "\\echo sent\n$sql;\n");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $vpid"),
		'insert waits for the maintenance transaction');
	$maint->query_safe('COMMIT');
	my $out = $victim->query('SELECT 1');
	my $err = $victim->{stderr};
	$maint->quit;
	$victim->quit;
	return ($err, $out);
}

# Back to "no partition but the default".
sub drop_partitions
{
	$node->safe_psql('postgres', q{
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT partition FROM authx.audit_partitions WHERE partition <> 'audit_log_default' LOOP
    EXECUTE format('ALTER TABLE authx.audit_log DETACH PARTITION authx.%I', r.partition);
    EXECUTE format('DROP TABLE authx.%I', r.partition);
  END LOOP;
END $$;
});
}

my ($err, $out) = race("SELECT authx.audit('race.audit', 'info')");
unlike($err, qr/violates partition constraint/, 'a synchronous audit() during maintenance succeeds');
is($err, '', 'without any error');
is(audit_count($node, "event_type = 'race.audit'"), 1, 'and its event is stored');
is( $node->safe_psql('postgres',
		"SELECT tableoid::regclass FROM authx.audit_log WHERE event_type = 'race.audit'"),
	'authx.audit_log_p' . $node->safe_psql('postgres',
		"SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')"),
	"in today's new partition, not the default");

# The same for an account.
drop_partitions();
($err, $out) = race("SELECT authx.user_create('race\@example.com', 'Race-Condition-Pass')");
unlike($err, qr/violates partition constraint/, 'user_create during maintenance succeeds');
is($err, '', 'without any error');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM authx.users WHERE email = 'race\@example.com'"),
	1, 'and the account exists');

# ------------------------------------------------------------------
# lock_timeout: a long reader of audit_log holds the default partition.
# Maintenance waits at most a second for it, then fails (the next pass
# retries); an insert queued behind maintenance meanwhile goes through.
# ------------------------------------------------------------------
drop_partitions();
my $reader = $node->background_psql('postgres');
$reader->query_safe('BEGIN; SELECT count(*) FROM authx.audit_log;');
my $maint = $node->background_psql('postgres', on_error_stop => 0);
my $mpid  = $maint->query_safe('SELECT pg_backend_pid()');
my $t0    = time();
$maint->query_until(qr/sent/, "\\echo sent\nSELECT authx.maintenance_run();\n");
ok( $node->poll_query_until(
		'postgres',
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $mpid"),
	'maintenance waits for the reader');
my ($rc, $o, $e) = psql_verbose($node, "SELECT authx.audit('race.timeout', 'info')", timeout => 60);
my $waited = time() - $t0;
is($rc, 0, 'an audit() insert queued behind the waiting maintenance succeeds') or diag($e);
cmp_ok($waited, '<', 10, sprintf('and did not wait for the reader (%.1f s)', $waited));
$maint->query('SELECT 1');
like($maint->{stderr}, qr/lock timeout/, 'maintenance gave up with a lock timeout');
is(audit_count($node, "event_type = 'race.timeout'"), 1, 'the event is stored (in the default partition)');
$reader->query_safe('COMMIT');
$reader->quit;
$maint->quit;
like($node->safe_psql('postgres', 'SELECT authx.maintenance_run()'), qr/"created": [1-9]/,
	'once the reader is gone, maintenance creates the partitions');

$node->stop;
done_testing();

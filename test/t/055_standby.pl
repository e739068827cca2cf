
# authx on a hot standby: no maintenance worker runs there and nothing can
# be written, so authx.audit() refuses with 25006 instead of queueing events
# no one would ever write; reads work: session_validate (without its
# last_seen_at touch) and password_verify (without a rehash).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node stat_value psql_verbose worker_pid);

my $primary = authx_node('primary', init => { allows_streaming => 1 });

my $uid = $primary->safe_psql('postgres',
	"SELECT authx.user_create('standby\@example.com', 'Standby-Pass-123')");
my ($token) = split /\|/, $primary->safe_psql('postgres',
	"SELECT session_token FROM authx.session_create('$uid', '192.0.2.10')");
# a weak hash, which password_verify would replace on a primary
my $weak_uid = $primary->safe_psql('postgres',
	"SELECT authx.user_create('weak\@example.com', 'Weak-Hash-Pass-1')");
$primary->safe_psql('postgres', qq{
SET authx.password_opslimit = 1;
UPDATE authx.users SET password_hash = authx._password_hash('Weak-Hash-Pass-1', false)
 WHERE id = '$weak_uid';
});
my $weak_hash = $primary->safe_psql('postgres',
	"SELECT password_hash FROM authx.users WHERE id = '$weak_uid'");
like($weak_hash, qr/^\$argon2id\$v=19\$m=19456,t=1,p=1\$/, 'a t=1 hash on the primary');

$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
is($standby->safe_psql('postgres', "SHOW shared_preload_libraries"), 'authx',
	'authx is preloaded on the standby');
is(worker_pid($standby), 0, 'no maintenance worker on the standby');

# audit() refuses.
my ($rc, $out, $err) = psql_verbose($standby, "SELECT authx.audit('standby.event', 'info')");
isnt($rc, 0, 'audit() on the standby fails');
like($err, qr/ERROR:\s+25006: cannot record audit events during recovery/, 'with SQLSTATE 25006');
like($err, qr/HINT:\s+Call authx functions that record events on the primary server/, 'and a hint');
is(stat_value($standby, 'audit_queue_events'), 0, 'nothing was queued on the standby');

# session_validate reads; with touch_interval 0 it would write last_seen_at
# on a primary, here it skips that.
is( $standby->safe_psql('postgres',
		"SET authx.touch_interval = 0; SELECT authx.session_validate('$token', '192.0.2.11')"),
	$uid, 'session_validate works on the standby');
is(stat_value($standby, 'session_touches'), 0, 'without touching the session');
is($standby->safe_psql('postgres', "SELECT authx.session_validate('axs_garbage', NULL)"),
	'', 'a malformed token is just invalid there too');

# password_verify accepts, and does not try to rehash.
($rc, $out, $err) = psql_verbose($standby,
	"SELECT authx.password_verify('$weak_uid', 'Weak-Hash-Pass-1')");
is($rc, 0, 'password_verify of a weak hash on the standby does not raise') or diag($err);
is($out, 't', 'and accepts the password');
is($standby->safe_psql('postgres', "SELECT password_hash FROM authx.users WHERE id = '$weak_uid'"),
	$weak_hash, 'the hash is unchanged');

# login writes (a session, events): it refuses with 25006, whatever the
# password, so that a standby answers nothing about the account.
for my $pw ('Standby-Pass-123', 'wrong password')
{
	($rc, $out, $err) = psql_verbose($standby,
		"SELECT status FROM authx.login('standby\@example.com', '$pw', '192.0.2.12')");
	like($err, qr/ERROR:\s+25006:/, "login on the standby ('$pw') fails with 25006");
}
($rc, $out, $err) = psql_verbose($standby,
	"SELECT status FROM authx.login('nobody\@example.com', 'wrong password', '192.0.2.12')");
like($err, qr/ERROR:\s+25006:/, 'so does a login with an unknown email');

# On the primary, the same call rehashes.
is($primary->safe_psql('postgres', "SELECT authx.password_verify('$weak_uid', 'Weak-Hash-Pass-1')"),
	't', 'password_verify on the primary');
isnt($primary->safe_psql('postgres', "SELECT password_hash FROM authx.users WHERE id = '$weak_uid'"),
	$weak_hash, 'rehashes there');

$standby->stop;
$primary->stop;
done_testing();

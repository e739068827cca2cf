
# authx without shared_preload_libraries: the SQL API works, what needs
# shared memory raises 55000 naming shared_preload_libraries, and audit()
# falls back to a synchronous insert in the caller's transaction.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node psql_verbose audit_count);

my $node = authx_node('nopreload', preload => 0, create => 0);

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'authx is not preloaded');
my ($rc, $out, $err) = psql_verbose($node, 'CREATE EXTENSION authx');
is($rc, 0, 'CREATE EXTENSION authx works without preloading') or diag($err);

# accounts and passwords
my $uid = $node->safe_psql('postgres',
	"SELECT authx.user_create('np\@example.com', 'No-Preload-Pass', 'No Preload')");
like($uid, qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
	'user_create returns a uuid');
is($node->safe_psql('postgres', "SELECT authx.password_verify('$uid', 'No-Preload-Pass')"),
	't', 'password_verify accepts the right password');
is($node->safe_psql('postgres', "SELECT authx.password_verify('$uid', 'no-preload-pass')"),
	'f', 'password_verify rejects a wrong password');
like($node->safe_psql('postgres', "SELECT password_hash FROM authx.users WHERE id = '$uid'"),
	qr/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/, 'hash made with the default costs');
$node->safe_psql('postgres', "SELECT authx.password_set('$uid', 'Changed-Pass-123')");
is($node->safe_psql('postgres', "SELECT authx.password_verify('$uid', 'Changed-Pass-123')"),
	't', 'password_set works');

# what needs shared memory
for my $case (
	[ 'SELECT * FROM authx.stats',      'authx.stats' ],
	[ 'SELECT authx.audit_flush()',      'audit_flush()' ],
	[ "SELECT authx.audit_flush('1s')", 'audit_flush(interval)' ])
{
	my ($sql, $what) = @$case;
	($rc, $out, $err) = psql_verbose($node, $sql);
	isnt($rc, 0, "$what fails without preloading");
	like($err, qr/ERROR:\s+55000: authx must be loaded via shared_preload_libraries/,
		"$what raises 55000");
	like($err, qr/HINT:\s+Add authx to shared_preload_libraries/,
		"$what hint names shared_preload_libraries");
}

# no worker, no queue
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'authx maintenance worker'"),
	0, 'no maintenance worker');
($rc, $out, $err) = psql_verbose($node, 'SHOW authx.audit_queue_size');
isnt($rc, 0, 'postmaster-only setting authx.audit_queue_size does not exist');

# audit(): synchronous, in the caller's transaction
is( $node->safe_psql('postgres', q{
BEGIN;
SELECT authx.audit('np.sync', 'low', details => '{"k": "v"}');
SELECT count(*) FROM authx.audit_log WHERE event_type = 'np.sync';
COMMIT;
}),
	"\n1", 'audit() row visible in the same transaction');
is(audit_count($node, "event_type = 'np.sync' AND severity = 'low' AND details = '{\"k\": \"v\"}'"),
	1, 'and committed with it');
$node->safe_psql('postgres', q{
BEGIN;
SELECT authx.audit('np.rolledback', 'high');
ROLLBACK;
});
is(audit_count($node, "event_type = 'np.rolledback'"), 0,
	'without the queue an event goes with its ROLLBACK (synchronous fallback)');
is(audit_count($node, "event_type = 'user.created' AND user_id = '$uid'"), 1,
	'transactional user.created event present');

# invalid input is still checked on this path
($rc, $out, $err) = psql_verbose($node, "SELECT authx.audit('Bad Type', 'info')");
like($err, qr/22023: invalid audit event type/, 'event type validated');
($rc, $out, $err) = psql_verbose($node, "SELECT authx.audit('ok.type', 'urgent')");
like($err, qr/22023: invalid audit severity/, 'severity validated');

# maintenance can still be run by hand
like($node->safe_psql('postgres', 'SELECT authx.maintenance_run()'),
	qr/"created"/, 'maintenance_run works without the worker');

# Log redaction: the hook exists only once the library is loaded in the
# session.  Loaded first, a later statement is masked ...
my $offset = -s $node->logfile;
$node->safe_psql('postgres',
	"LOAD 'authx';\nSELECT authx.password_verify('$uid', 'Loaded-Then-Secret')");
my $log = slurp_file($node->logfile, $offset);
unlike($log, qr/Loaded-Then-Secret/, 'after LOAD, a literal password is masked in the log');
like($log, qr/statement: SELECT authx\.password_verify\('\*\*\*', '\*\*\*'\)/, "with '***'");

# ... but the statement that loads authx is logged before the hook exists,
# so without preloading each session's first authx call leaks its literals.
# The README documents this ("Secrets in logs": without preloading, the
# first authx statement of a session is logged before the library loads);
# it is not going to change, as nothing can run before the library loads.
# Kept as a TODO so that the leak stays visible in every run.
TODO:
{
	local $TODO = 'documented limitation: without preloading, the statement that loads authx is logged unmasked';
	unlike(slurp_file($node->logfile), qr/No-Preload-Pass/,
		'first authx call of a session: password not in the log');
}

# session_preload_libraries loads authx before a session's first statement:
# no shared memory, but the first statement is masked too.
$node->safe_psql('postgres', "ALTER SYSTEM SET session_preload_libraries = 'authx'");
$node->reload;
$offset = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT authx.password_verify('$uid', 'Session-Preload-Secret')"),
	'f', 'with session_preload_libraries: a first statement calling authx');
$log = slurp_file($node->logfile, $offset);
unlike($log, qr/Session-Preload-Secret/, 'with session_preload_libraries the first statement is masked');
like($log, qr/statement: SELECT authx\.password_verify\('\*\*\*', '\*\*\*'\)/, "with '***'");
($rc, $out, $err) = psql_verbose($node, 'SELECT * FROM authx.stats');
like($err, qr/55000: authx must be loaded via shared_preload_libraries/,
	'session_preload_libraries gives no shared memory (55000)');

$node->stop;
done_testing();

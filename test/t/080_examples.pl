
# The gateway examples (examples/node, examples/python) against a real
# cluster with the Redis cache on, and what they rely on: the documented key
# schema, write-through at commit only (subtransaction aborts and rollbacks
# send nothing), repopulation by session_validate, tombstones, fallback to
# PostgreSQL when Redis misses or is down, AUTHX_PREFIX / authx.redis_prefix,
# a Redis password.  Also PREPARE TRANSACTION (0A000 with the cache on, fine
# with it off), cache_sync timing out (55000) while Redis is down, and
# cache_status never showing the URL or its password.
#
# Needs node (v18+) and npm (npm ci fetches examples/node's locked
# dependencies when examples/node/node_modules is missing), and
# /usr/bin/python3 with python3-redis and python3-psycopg2.  A missing tool
# fails the test; it is never skipped silently.
use strict;
use warnings;
use Cwd qw(abs_path);
use Digest::SHA qw(sha256_hex);
use File::Basename qw(dirname);
use File::Copy qw(copy);
use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Redis;
use AuthxTest::Util qw(authx_node psql_verbose wait_until);

my $src = $ENV{AUTHX_SRC} // abs_path(dirname(__FILE__) . '/../..');
my $examples = "$src/examples";
my $python   = '/usr/bin/python3';

# ---------------------------------------------------------------- tools
sub find_program
{
	my ($prog) = @_;
	for my $d (split(/:/, $ENV{PATH} // ''), '/usr/bin', '/usr/local/bin')
	{
		return "$d/$prog" if -f "$d/$prog" && -x _;
	}
	return undef;
}

sub run_cmd
{
	my ($cmd, $env, $timeout, $dir) = @_;
	my ($out, $err) = ('', '');
	local %ENV = %ENV;
	for my $k (keys %$env)
	{
		if (defined $env->{$k}) { $ENV{$k} = $env->{$k}; }
		else                    { delete $ENV{$k}; }
	}
	my $ok = eval {
		IPC::Run::run($cmd, '<', \undef, '>', \$out, '2>', \$err,
			($dir ? (init => sub { chdir $dir or die "chdir $dir: $!" }) : ()),
			IPC::Run::timeout($timeout));
		1;
	};
	my $rc = $ok ? $? >> 8 : -1;
	$err .= $@ unless $ok;
	chomp $out;
	return ($rc, $out, $err);
}

my $node_bin = find_program('node');
my $npm_bin  = find_program('npm');
ok(defined $node_bin && defined $npm_bin, 'node and npm are installed')
  or diag('node/npm not found in PATH: install Node.js 18+ (with npm) to run examples/node');

my $nodedir;
if (defined $node_bin && defined $npm_bin)
{
	if (-d "$examples/node/node_modules")
	{
		$nodedir = "$examples/node";
		pass('examples/node/node_modules is present');
	}
	else
	{
		# A private copy, so the source tree stays as it is.
		$nodedir = PostgreSQL::Test::Utils::tempdir('example_node');
		copy("$examples/node/$_", "$nodedir/$_") or die "copy $_: $!"
		  for qw(package.json package-lock.json check_session.js);
		my ($rc, $out, $err) = run_cmd(
			[ $npm_bin, 'ci', '--no-audit', '--no-fund', '--loglevel=error' ],
			{
				HOME => $nodedir,
				npm_config_cache => "$nodedir/.npm-cache",
				npm_config_update_notifier => 'false'
			},
			600, $nodedir);
		is($rc, 0, 'npm ci installs the locked dependencies of examples/node')
		  or diag("npm ci: $out\n$err");
		undef $nodedir if $rc != 0;
	}
}

my ($py_rc, undef, $py_err) = run_cmd([ $python, '-c', 'import redis, psycopg2' ], {}, 60);
is($py_rc, 0, "$python can import redis and psycopg2")
  or diag("install python3-redis and python3-psycopg2: $py_err");

# ---------------------------------------------------------------- servers
my $redis = AuthxTest::Redis->new(name => 'examples');
my $node  = authx_node('examples', conf => <<CONF);
listen_addresses = '127.0.0.1'
max_prepared_transactions = 4
authx.redis_url = '@{[ $redis->url ]}'
CONF
my $pgport = $node->port;

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub sync { sql("SELECT authx.cache_sync('30 seconds')"); return; }

sub cache_flags
{
	return sql(q{SELECT concat_ws(',', s->>'enabled', s->>'connected') FROM authx.cache_status() s});
}

sub wait_connected
{
	my ($what) = @_;
	return wait_until($what, 60, sub { cache_flags() eq 'true,true' });
}

# ALTER SYSTEM SET (or RESET, value undef), reload, and wait until new
# backends see $want (default: the value).
sub set_and_reload
{
	my ($name, $value, $want) = @_;
	sql(defined $value
		? "ALTER SYSTEM SET $name = '$value'"
		: "ALTER SYSTEM RESET $name");
	$node->reload;
	$want //= $value;
	wait_until("$name reloaded", 30, sub { sql("SELECT current_setting('$name')") eq $want })
	  or die "$name did not change";
	return;
}

ok(wait_connected('the redis writer connects'), 'the redis writer is connected');

sql(q{CREATE ROLE gateway LOGIN IN ROLE authx_app});
my $uid = sql(q{SET authx.password_memlimit = 64; SET authx.password_opslimit = 1;
  SELECT authx.user_create('gw@example.com', 'gateway password 1')});

sub new_session
{
	return sql("SELECT session_token FROM authx.session_create('$uid')");
}
sub key { my ($token, $prefix) = @_; return ($prefix // 'authx:') . 's:' . sha256_hex($token); }

sub hgetall
{
	my ($key) = @_;
	my $r = $redis->command('HGETALL', $key);
	die "HGETALL failed" unless ref $r eq 'ARRAY';
	return {@$r};
}

my $url_tcp = "postgresql://gateway\@127.0.0.1:$pgport/postgres";
my %pg_unset = map { $_ => undef } qw(DATABASE_URL PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE);

# Run one example: (exit code, stdout, stderr).  mode url: DATABASE_URL;
# mode pgvars: PGHOST (the socket directory), PGPORT, PGUSER, PGDATABASE.
sub check
{
	my ($client, $token, %opt) = @_;
	my %env = (
		%pg_unset,
		REDIS_URL    => $opt{redis_url} // $redis->url,
		AUTHX_PREFIX => $opt{prefix});
	if (($opt{mode} // 'url') eq 'url') { $env{DATABASE_URL} = $url_tcp; }
	else
	{
		%env = (%env, PGHOST => $node->host, PGPORT => $pgport, PGUSER => 'gateway',
			PGDATABASE => 'postgres');
	}
	my @cmd = $client eq 'node'
	  ? ($node_bin, "$nodedir/check_session.js", $token)
	  : ($python, "$examples/python/check_session.py", $token);
	return run_cmd(\@cmd, \%env, 60);
}

# "rc stdout" of one run, for is().
sub answer
{
	my ($rc, $out) = check(@_);
	return "$rc $out";
}

# ---------------------------------------------------------------- Redis contents
my $t_live = new_session();
my $t_rev  = new_session();
sql("SELECT authx.session_revoke('$t_rev')");
sync();
my $exp = sql("SELECT floor(extract(epoch FROM expires_at))::bigint FROM authx.sessions
                WHERE token_hash = sha256(convert_to('$t_live', 'UTF8'))");
is_deeply(hgetall(key($t_live)), { user_id => $uid, expires_at => $exp, v => 1 },
	'a live entry: user_id, expires_at (unix s), v = the row version');
my $ttl = $redis->cli('TTL', key($t_live));
ok($ttl > 0 && $ttl <= 300, "a live entry expires within authx.cache_ttl (TTL $ttl)");
is_deeply(hgetall(key($t_rev)), { revoked => 1, v => 2 }, 'a revoked session: a tombstone, v = 2');
$ttl = $redis->cli('TTL', key($t_rev));
ok($ttl > 300, "the tombstone lives until the session's own expiry (TTL $ttl)");
is($redis->cli('EXISTS', key('axs_unknown')), '0', 'an unknown token has no key');

# ---------------------------------------------------------------- the examples
my $unknown = 'axs_' . ('A' x 43);
my $evil    = q{x'); DROP TABLE authx.sessions; --};

for my $client (qw(node python))
{
  SKIP:
	{
		skip "$client is not usable (see the failures above)", 15
		  if ($client eq 'node' && !defined $nodedir) || ($client eq 'python' && $py_rc != 0);

		my $t   = new_session();
		my $rev = new_session();
		sql("SELECT authx.session_revoke('$rev')");
		sync();

		my ($rc, $out, $err) = check($client, $t);
		is("$rc $out", "0 valid $uid (redis)", "$client: a cached session is valid (redis)");
		is($err, '', "$client: nothing on stderr") or diag($err);

		$redis->cli('DEL', key($t));
		is(answer($client, $t), "0 valid $uid (postgres)",
			"$client: after its key is deleted, postgres answers");
		sync();
		is(hgetall(key($t))->{user_id}, $uid, "$client: session_validate repopulated the key");
		is(answer($client, $t), "0 valid $uid (redis)", "$client: and the next check is a redis hit");

		is(answer($client, $rev), '1 invalid (redis tombstone)', "$client: a revoked session: the tombstone answers");
		is(answer($client, $unknown), '1 invalid (postgres)', "$client: an unknown token: postgres answers");

		# An entry past its expires_at is a miss, whatever redis still holds.
		my $stale = 'axs_' . ('B' x 43);
		$redis->cli('HSET', key($stale), 'user_id', $uid, 'expires_at', time() - 10, 'v', 1);
		is(answer($client, $stale), '1 invalid (postgres)', "$client: an expired entry is a miss");

		# The tombstone gone, postgres still says no, and does not repopulate.
		$redis->cli('DEL', key($rev));
		is(answer($client, $rev), '1 invalid (postgres)', "$client: a revoked session without tombstone: postgres says no");
		sync();
		is($redis->cli('EXISTS', key($rev)), '0', "$client: a revoked session is not repopulated");

		$redis->cli('DEL', key($t));
		is(answer($client, $t, mode => 'pgvars'), "0 valid $uid (postgres)",
			"$client: PGHOST/PGPORT/PGUSER/PGDATABASE instead of DATABASE_URL");

		is(answer($client, $t, prefix => 'other:'), "0 valid $uid (postgres)",
			"$client: another AUTHX_PREFIX misses and falls back");

		($rc, $out, $err) = check($client, $t, redis_url => 'redis://127.0.0.1:' . PostgreSQL::Test::Cluster::get_free_port());
		is("$rc $out", "0 valid $uid (postgres)", "$client: redis down: postgres answers");
		like($err, qr/redis unavailable/, "$client: and says so on stderr");

		is(answer($client, $evil), '1 invalid (postgres)', "$client: a token with quotes is just an unknown token");
	}
}
is(sql(q{SELECT to_regclass('authx.sessions') IS NOT NULL}), 't', 'the token was a bind parameter: sessions still exists');

# ---------------------------------------------------------------- commit only
{
	my $t = new_session();
	sync();
	sql("BEGIN; SAVEPOINT s; SELECT authx.session_revoke('$t'); ROLLBACK TO s; COMMIT;");
	sql("BEGIN; SELECT authx.session_revoke('$t'); ROLLBACK;");
	sync();
	is_deeply(hgetall(key($t)), { user_id => $uid, expires_at => hgetall(key($t))->{expires_at}, v => 1 },
		'a revoke rolled back (to a savepoint, or whole) sends nothing: the entry is live, v = 1');
	sql("BEGIN; SAVEPOINT s; SELECT authx.session_revoke('$t'); RELEASE s; COMMIT;");
	sync();
	is_deeply(hgetall(key($t)), { revoked => 1, v => 2 }, 'a revoke in a released savepoint is sent at commit');

	# A session created and revoked in one transaction: both operations, in order.
	my $t2 = sql("BEGIN;\nSELECT session_token FROM authx.session_create('$uid') \\gset\n"
		  . "SELECT authx.session_revoke(:'session_token');\nCOMMIT;\nSELECT :'session_token';");
	($t2) = $t2 =~ /(axs_\S+)\s*$/;
	sync();
	is_deeply(hgetall(key($t2)), { revoked => 1, v => 2 }, 'created and revoked in one transaction: a tombstone');

	# A validation rolled back must not stop the same backend from
	# repopulating the key later (the memo is only valid once sent).
	my $t3 = new_session();
	sync();
	$redis->cli('DEL', key($t3));
	sql("BEGIN; SELECT authx.session_validate('$t3'); ROLLBACK;
	     SELECT authx.session_validate('$t3'); SELECT authx.cache_sync('30 seconds');");
	is($redis->cli('EXISTS', key($t3)), '1',
		'a validation after a rolled-back one in the same backend repopulates');
}

# ---------------------------------------------------------------- PREPARE TRANSACTION
{
	my $n_before = sql('SELECT count(*) FROM authx.sessions');
	my ($rc, $out, $err) = psql_verbose($node,
		"BEGIN; SELECT authx.session_create('$uid'); PREPARE TRANSACTION 'authx_p1';");
	isnt($rc, 0, 'PREPARE TRANSACTION after session_create fails with the cache on');
	like($err, qr/ERROR:\s+0A000: cannot prepare a transaction that changed authx sessions while the Redis cache is on/,
		'... with 0A000');
	is(sql('SELECT count(*) FROM pg_prepared_xacts'), '0', '... nothing is prepared');
	is(sql('SELECT count(*) FROM authx.sessions'), $n_before, '... and the session was not created');

	my $t = new_session();
	($rc, $out, $err) = psql_verbose($node,
		"BEGIN; SELECT authx.session_revoke('$t'); PREPARE TRANSACTION 'authx_p2';");
	like($err, qr/ERROR:\s+0A000:/, 'PREPARE TRANSACTION after session_revoke: 0A000');
	is(sql("SELECT authx.session_validate('$t')"), $uid, '... and the session is still valid');

	($rc, $out, $err) = psql_verbose($node,
		"BEGIN; SAVEPOINT s; SELECT authx.session_revoke('$t'); ROLLBACK TO s; PREPARE TRANSACTION 'authx_p3';");
	is($rc, 0, 'a session change rolled back to a savepoint does not prevent PREPARE') or diag($err);
	sql("ROLLBACK PREPARED 'authx_p3'");

	($rc, $out, $err) = psql_verbose($node,
		"BEGIN; SELECT authx.audit('gw.test', 'low'); PREPARE TRANSACTION 'authx_p4';");
	is($rc, 0, 'a transaction that does not touch sessions can be prepared') or diag($err);
	sql("COMMIT PREPARED 'authx_p4'");

	# session_validate changes no session; it only queues a repopulation.
	my $t5 = new_session();
	($rc, $out, $err) = psql_verbose($node,
		"BEGIN; SELECT authx.session_validate('$t5'); PREPARE TRANSACTION 'authx_p5';");
	is($rc, 0, 'a transaction that only validated a session can be prepared') or diag($err);
	sql("ROLLBACK PREPARED 'authx_p5'") if sql("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'authx_p5'");

	# With the cache off the trigger queues nothing, so PREPARE works.
	set_and_reload('authx.redis_url', '');
	ok(wait_until('cache disabled', 30, sub { cache_flags() =~ /^false,/ }), 'cache_status: enabled = false');
	($rc, $out, $err) = psql_verbose($node, 'SELECT authx.cache_sync(\'0\')');
	is($rc, 0, 'cache_sync returns at once with the cache off');
	($rc, $out, $err) = psql_verbose($node,
		"BEGIN; SELECT session_token FROM authx.session_create('$uid'); PREPARE TRANSACTION 'authx_p6';");
	is($rc, 0, 'with authx.redis_url = \'\', PREPARE TRANSACTION after session_create succeeds') or diag($err);
	my ($t6) = $out =~ /(axs_\S+)/;
	sql("COMMIT PREPARED 'authx_p6'");
	is(sql("SELECT authx.session_validate('$t6')"), $uid, '... and after COMMIT PREPARED the session is valid');

	set_and_reload('authx.redis_url', undef, $redis->url);
	ok(wait_connected('cache on again'), 'cache back on: the writer reconnects');
  SKIP:
	{
		skip 'python example not usable', 1 if $py_rc != 0;
		is(answer('python', $t6), "0 valid $uid (postgres)", 'the session made with the cache off: postgres answers');
	}
}

# ---------------------------------------------------------------- Redis down
{
	my $t = new_session();
	sync();
	$redis->stop;
	sql("SELECT authx.session_revoke('$t')");
	my ($rc, $out, $err) = psql_verbose($node, q{SELECT authx.cache_sync('300 ms')});
	like($err, qr/ERROR:\s+55000: cache operations were not applied to Redis within the timeout/,
		'Redis down: cache_sync times out with 55000');
	like($err, qr/DETAIL:\s+\d+ operations are still queued/, '... and says how many operations wait');
	ok(wait_until('writer notices', 30, sub { cache_flags() eq 'true,false' }),
		'cache_status: enabled, not connected');
	my $st = sql('SELECT authx.cache_status()');
	like($st, qr/"last_error": "[^"]+"/, 'cache_status: last_error is set');
	unlike($st, qr/redis:\/\//, 'cache_status: no URL in it');
	ok(sql(q{SELECT (authx.cache_status()->>'queue_depth')::int}) >= 1, 'cache_status: the revocation waits in the queue');

	for my $client (qw(node python))
	{
	  SKIP:
		{
			skip "$client not usable", 1
			  if ($client eq 'node' && !defined $nodedir) || ($client eq 'python' && $py_rc != 0);
			is(answer($client, $t), '1 invalid (postgres)', "$client: Redis down, the revoked session: postgres says no");
		}
	}

	$redis->start;
	ok(wait_connected('writer reconnects'), 'Redis back (new run_id): the writer reconnects');
	($rc, $out, $err) = psql_verbose($node, q{SELECT authx.cache_sync('30 seconds')});
	is($rc, 0, 'cache_sync succeeds after the resync') or diag($err);
	is($redis->cli('EXISTS', key($t)), '0', 'after the resync the revoked session has no key: a miss, which postgres answers');
}

# ---------------------------------------------------------------- authx.redis_prefix
{
	set_and_reload('authx.redis_prefix', 'gw:');
	my $t;
	ok(wait_until('keys under gw:', 30, sub {
		$t = new_session();
		sync();
		$redis->cli('EXISTS', key($t, 'gw:')) eq '1';
	}), 'authx.redis_prefix = gw: writes <prefix>s:<sha256>');
	is($redis->cli('EXISTS', key($t)), '0', '... and nothing under authx:');
	for my $client (qw(node python))
	{
	  SKIP:
		{
			skip "$client not usable", 2
			  if ($client eq 'node' && !defined $nodedir) || ($client eq 'python' && $py_rc != 0);
			is(answer($client, $t, prefix => 'gw:'), "0 valid $uid (redis)", "$client: AUTHX_PREFIX=gw: hits");
			is(answer($client, $t), "0 valid $uid (postgres)", "$client: the default prefix misses");
		}
	}
	set_and_reload('authx.redis_prefix', undef, 'authx:');
}

# ---------------------------------------------------------------- a password
{
	my $secret = 'Sup3r-Redis-Secret';
	my $wrong  = 'Wr0ng-Redis-Secret';
	my $locked = AuthxTest::Redis->new(name => 'examples_pw', password => $secret);
	my $lport  = $locked->port;
	my $offset = -s $node->logfile;

	set_and_reload('authx.redis_url', "redis://:$wrong\@127.0.0.1:$lport");
	ok(wait_until('auth failure', 30, sub {
		sql(q{SELECT authx.cache_status()->>'last_error'}) =~ /AUTH/
		  && cache_flags() eq 'true,false' }), 'a wrong Redis password: not connected, last_error names AUTH');
	my $st = sql('SELECT authx.cache_status()');
	unlike($st, qr/\Q$wrong\E|redis:\/\//, 'cache_status shows neither the password nor the URL')
	  or diag($st);

	set_and_reload('authx.redis_url', "redis://:$secret\@127.0.0.1:$lport");
	ok(wait_until('auth ok', 30, sub { cache_flags() eq 'true,true' }), 'the right password: connected');
	$st = sql('SELECT authx.cache_status()');
	unlike($st, qr/\Q$secret\E/, 'cache_status does not show the password');
	my $t = new_session();
	sync();
	is($locked->cli('HGET', key($t), 'user_id'), $uid, 'the entry is in the password-protected Redis');
	for my $client (qw(node python))
	{
	  SKIP:
		{
			skip "$client not usable", 2
			  if ($client eq 'node' && !defined $nodedir) || ($client eq 'python' && $py_rc != 0);
			is(answer($client, $t, redis_url => "redis://:$secret\@127.0.0.1:$lport"), "0 valid $uid (redis)",
				"$client: REDIS_URL with a password hits");
			my ($rc, $out, $err) = check($client, $t, redis_url => "redis://:$wrong\@127.0.0.1:$lport");
			is("$rc $out", "0 valid $uid (postgres)", "$client: a wrong password falls back to postgres");
		}
	}

	my $log = slurp_file($node->logfile, $offset);
	unlike($log, qr/\Q$secret\E|\Q$wrong\E/, 'the server log shows no Redis password');
	set_and_reload('authx.redis_url', undef, $redis->url);
	$locked->stop;
}

$node->stop;
done_testing();


# Configuration of the Redis write-through cache: AUTH with a password and
# with an ACL user (right, wrong, missing), secrets kept out of the log,
# the views and cache_status(), authx.redis_url hidden from non-superusers,
# Unix sockets and database selection, a prefix change (resync), invalid
# values rejected on reload (the old one stays) and at start-up.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use AuthxTest::Util qw(stat_value stats psql_verbose wait_until);
use AuthxTest::Redis;
use AuthxTest::Cache qw(:all);

# Every secret used below; none may show up in the server log, the views
# or cache_status().
my %secret = (
	requirepass => 'Req-Pass-Secret-1a',
	wrong       => 'Wrong-Pass-Secret-2b',
	acl         => 'Acl-Pass-Secret-3c',
	acl_wrong   => 'Acl-Wrong-Secret-4d',
	invalid     => 'Invalid-Url-Secret-5e',
	alter       => 'Alter-System-Secret-6f',
	startup     => 'Startup-Url-Secret-7g',
	readonly    => 'Acl-Ro-Secret-8h',
);

my $rpw   = AuthxTest::Redis->new(name => 'pw', password => $secret{requirepass});
my $sockdir = PostgreSQL::Test::Utils::tempdir_short();
my $sock  = "$sockdir/redis.sock";
my $plain = AuthxTest::Redis->new(name => 'plain',
	args => [ '--unixsocket', $sock, '--unixsocketperm', '700' ]);
my $pwport = $rpw->port;
my $pw_url = "redis://:$secret{requirepass}\@127.0.0.1:$pwport";

my $node = cache_node('config', $rpw, url => $pw_url, conf => <<CONF);
log_min_messages = debug2
log_statement = 'all'
authx.maintenance_naptime = 3600
CONF
my $uid = new_user($node, 'conf@example.com');

# Point the cache somewhere else: the last line of postgresql.conf wins.
sub set_conf
{
	my ($line) = @_;
	$node->append_conf('postgresql.conf', $line);
	$node->reload;
	return;
}

sub status_text
{
	return $node->safe_psql('postgres', 'SELECT authx.cache_status()::text');
}

# Wait for the writer to be connected to $redis (its run_id) after a change.
sub wait_on
{
	my ($redis, $what) = @_;
	my $run = $redis->run_id;
	return wait_until($what, 10, sub {
		my $s = cache_status($node);
		$s->{connected} && $s->{run_id} eq $run;
	});
}

sub wait_error
{
	my ($re, $what) = @_;
	return wait_until($what, 10, sub {
		my $s = cache_status($node);
		!$s->{connected} && ($s->{last_error} // '') =~ $re;
	});
}

# ------------------------------------------------------------------
# requirepass: the right password.
# ------------------------------------------------------------------
my $st = cache_status($node);
ok($st->{connected}, 'connected with the password in the URL');
my @t = make_sessions($node, $uid, 2, 'pw');
ok(caught_up($node), 'cache_sync');
is(cache_entry($rpw, $t[0])->{user_id}, $uid, 'session written to the password-protected Redis');

# ------------------------------------------------------------------
# authx.redis_url is superuser-only and hidden.
# ------------------------------------------------------------------
is($node->safe_psql('postgres', 'SHOW authx.redis_url'), $pw_url, 'a superuser can SHOW authx.redis_url');
$node->safe_psql('postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE admin LOGIN;
GRANT authx_admin TO admin;
});
my ($rc, $out, $err) = psql_verbose($node, 'SET ROLE app; SHOW authx.redis_url');
like($err, qr/42501/, 'a non-superuser cannot SHOW authx.redis_url (42501)');
unlike($out . $err, qr/\Q$secret{requirepass}\E/, 'and does not see the password');
($rc, $out, $err) = psql_verbose($node, "SET ROLE app; SELECT current_setting('authx.redis_url')");
like($err, qr/42501/, 'nor read it with current_setting (42501)');
is( $node->safe_psql('postgres',
		"SET ROLE app; SELECT count(*) FROM pg_settings WHERE name = 'authx.redis_url'"),
	0, 'pg_settings hides it from a non-superuser');
($rc, $out, $err) = psql_verbose($node, 'SET ROLE app; SHOW ALL');
unlike($out, qr/authx\.redis_url|\Q$secret{requirepass}\E/, 'SHOW ALL does not list it');
my $admin_view = $node->safe_psql('postgres',
	"SET ROLE admin; SELECT authx.cache_status()::text || (SELECT string_agg(name || '=' || value, ',') FROM authx.stats)");
like($admin_view, qr/"connected": true/, 'authx_admin reads cache_status() and authx.stats');
unlike($admin_view, qr/\Q$secret{requirepass}\E|redis:\/\//, 'neither shows the URL or the password');

# ------------------------------------------------------------------
# Wrong and missing passwords.
# ------------------------------------------------------------------
set_conf("authx.redis_url = 'redis://:$secret{wrong}\@127.0.0.1:$pwport'");
ok(wait_error(qr/AUTH/, 'wrong password: AUTH error'), 'wrong password: not connected, last_error names AUTH');
$st = cache_status($node);
note("last_error: $st->{last_error}");
unlike(status_text(), qr/\Q$secret{wrong}\E/, 'cache_status() does not show the wrong password');
ok(wait_until('cache_errors counted', 10, sub { stat_value($node, 'cache_errors') > 0 }), 'cache_errors counted');

set_conf("authx.redis_url = 'redis://127.0.0.1:$pwport'");
ok(wait_error(qr/NOAUTH/, 'no password: NOAUTH'), 'no password: not connected, last_error says NOAUTH');
note('last_error: ' . cache_status($node)->{last_error});

# ------------------------------------------------------------------
# An ACL user with just the commands and keys it needs.
# ------------------------------------------------------------------
is( $rpw->command('ACL', 'SETUSER', 'authxw', 'on', ">$secret{acl}", 'resetkeys', '~authx:*',
		'resetchannels', '-@all', '+evalsha', '+script|load', '+info', '+scan', '+unlink',
		'+select', '+ping', '+hget', '+hset', '+hexists', '+del', '+expireat'),
	'OK', 'ACL SETUSER authxw: authx:* keys, only the commands the writer uses');
my $resyncs = stat_value($node, 'cache_resyncs');
set_conf("authx.redis_url = 'redis://authxw:$secret{acl}\@127.0.0.1:$pwport'");
ok(wait_on($rpw, 'ACL user connected'), 'connected as the ACL user');
ok(caught_up($node, resync_after => $resyncs), 'resynced as the ACL user (SCAN + UNLINK allowed)');
@t = make_sessions($node, $uid, 1, 'acl');
revoke_where($node, token_in(@t));
my @t2 = make_sessions($node, $uid, 1, 'acl');
ok(caught_up($node), 'cache_sync as the ACL user');
is(cache_entry($rpw, $t[0])->{revoked}, 1, 'ACL user: tombstone written');
is(cache_entry($rpw, $t2[0])->{user_id}, $uid, 'ACL user: entry written');
cache_invariant($node, $rpw, 'ACL user');

set_conf("authx.redis_url = 'redis://authxw:$secret{acl_wrong}\@127.0.0.1:$pwport'");
ok(wait_error(qr/AUTH/, 'ACL user, wrong password'), 'ACL user with a wrong password: last_error names AUTH');
note('last_error: ' . cache_status($node)->{last_error});
unlike(status_text(), qr/\Q$secret{acl_wrong}\E|\Q$secret{acl}\E/, 'cache_status() shows no ACL password');

# An ACL user that may not touch the prefix: the writer reports NOPERM,
# and retries with a backoff (100 ms doubling to 2 s) rather than in a
# busy loop that logs every attempt.
$rpw->command('ACL', 'SETUSER', 'authxro', 'on', ">$secret{readonly}", 'resetkeys', '~other:*', '+@all');
set_conf("authx.redis_url = 'redis://authxro:$secret{readonly}\@127.0.0.1:$pwport'");
make_sessions($node, $uid, 1, 'noperm');
ok(wait_error(qr/NOPERM/, 'NOPERM'), 'an ACL user without the keys: last_error reports NOPERM');
note('last_error: ' . cache_status($node)->{last_error});
my $e0 = stat_value($node, 'cache_errors');
my $o0 = -s $node->logfile;
my $t0 = time;
sleep 2;    # a fixed interval: we measure the retry rate
my $e1 = stat_value($node, 'cache_errors');
my $logged = () = substr(slurp_file($node->logfile), $o0) =~ /authx redis writer: .*NOPERM/g;
my $secs = time - $t0;
cmp_ok($e1 - $e0, '<=', 15, sprintf('NOPERM: %d failed attempts in %.1f s (backoff, no busy loop)', $e1 - $e0, $secs));
cmp_ok($logged, '<=', 3, "NOPERM: no log flood ($logged lines in 2 s)");

# back to requirepass
set_conf("authx.redis_url = '$pw_url'");
ok(wait_on($rpw, 'back on the password'), 'connected again with the right password');
ok(caught_up($node), 'caught up');
# ALTER SYSTEM with the password: the logged statement must not show it
$node->safe_psql('postgres', "ALTER SYSTEM SET authx.redis_url = '$pw_url'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
like(slurp_file($node->data_dir . '/postgresql.auto.conf'), qr/authx\.redis_url/, 'ALTER SYSTEM wrote the URL');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET authx.redis_url');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
cache_invariant($node, $rpw, 'password again');

# ------------------------------------------------------------------
# Invalid values are rejected on reload; the old value stays.
# ------------------------------------------------------------------
my $offset = -s $node->logfile;
set_conf("authx.redis_url = 'redis://:$secret{invalid}\@127.0.0.1:notaport'");
ok($node->wait_for_log(qr/authx\.redis_url/, $offset), 'reload with an invalid URL logged');
my $slice = substr(slurp_file($node->logfile), $offset);
like($slice, qr/invalid value for parameter "authx\.redis_url"/, 'the invalid URL is rejected');
unlike($slice, qr/\Q$secret{invalid}\E/, 'the rejection does not log the password');
is($node->safe_psql('postgres', 'SHOW authx.redis_url'), $pw_url, 'the old URL stays');
@t = make_sessions($node, $uid, 1, 'after-invalid');
ok(caught_up($node), 'cache_sync after the rejected reload');
is(cache_entry($rpw, $t[0])->{user_id}, $uid, 'the writer still writes to the old Redis');
for my $bad ('http://127.0.0.1:6379', 'redis://', 'redis://host:0', 'redis://host:70000',
	'redis://host/x', 'unix://relative.sock', 'unix:///tmp/r.sock?database=1', 'redis://a:b')
{
	($rc, $out, $err) = psql_verbose($node, "ALTER SYSTEM SET authx.redis_url = '$bad'");
	like($err, qr/22023/, "ALTER SYSTEM refuses '$bad' (22023)");
}
($rc, $out, $err) = psql_verbose($node,
	"ALTER SYSTEM SET authx.redis_url = 'redis://:$secret{alter}\@127.0.0.1:x'");
like($err, qr/22023/, 'ALTER SYSTEM refuses an invalid URL with a password (22023)');
unlike($err, qr/\Q$secret{alter}\E/, 'the error sent to the client does not show the password');
note($err);
($rc, $out, $err) = psql_verbose($node, "ALTER SYSTEM SET authx.redis_prefix = 'bad*prefix'");
like($err, qr/22023/, 'ALTER SYSTEM refuses a prefix with a glob character (22023)');
$offset = -s $node->logfile;
set_conf("authx.redis_prefix = 'has space'");
ok($node->wait_for_log(qr/invalid value for parameter "authx\.redis_prefix"/, $offset),
	'reload with an invalid prefix: rejected');
is($node->safe_psql('postgres', 'SHOW authx.redis_prefix'), 'authx:', 'the old prefix stays');
set_conf("authx.redis_prefix = 'authx:'");

# ------------------------------------------------------------------
# Unix socket, database selection.
# ------------------------------------------------------------------
ok(-S $sock, "Redis listens on $sock");
set_conf("authx.redis_url = 'unix://$sock'");
my $unix_ok = ok(wait_on($plain, 'unix socket'), 'connected through the Unix socket');
diag('last_error: ' . (cache_status($node)->{last_error} // '')) unless $unix_ok;
SKIP:
{
	skip 'no connection through the Unix socket', 7 unless $unix_ok;
	@t = make_sessions($node, $uid, 2, 'unix');
	ok(caught_up($node, secs => 10), 'cache_sync over the Unix socket');
	is(cache_entry($plain, $t[0])->{user_id}, $uid, 'unix socket: entry in database 0');
	$resyncs = stat_value($node, 'cache_resyncs');
	set_conf("authx.redis_url = 'unix://$sock?db=2'");
	ok(wait_resync($node, $resyncs, 10), 'unix socket ?db=2: resynced');
	@t = make_sessions($node, $uid, 1, 'unix-db2');
	ok(caught_up($node, secs => 10), 'cache_sync');
	is(cache_entry($plain, $t[0], db => 2)->{user_id}, $uid, 'unix://...?db=2: entry in database 2');
	is_deeply(cache_entry($plain, $t[0]), {}, 'and not in database 0');
	cache_invariant($node, $plain, 'unix socket, db 2', db => 2, where => "note = 'unix-db2'");
}
my $pport = $plain->port;
$resyncs = stat_value($node, 'cache_resyncs');
set_conf("authx.redis_url = 'redis://127.0.0.1:$pport/3'");
ok(wait_resync($node, $resyncs, 10), 'redis://.../3: resynced');
@t = make_sessions($node, $uid, 1, 'tcp-db3');
ok(caught_up($node), 'cache_sync');
is(cache_entry($plain, $t[0], db => 3)->{user_id}, $uid, 'redis://host:port/3: entry in database 3');
is_deeply(cache_entry($plain, $t[0], db => 2), {}, 'and not in database 2');
set_conf("authx.redis_url = 'unix://$sockdir/missing.sock'");
ok(wait_error(qr/missing\.sock/, 'missing socket'), 'a missing socket: last_error names the path');
like(cache_status($node)->{last_error}, qr/missing\.sock: /,
	'the path is quoted as is (no port appended): ' . cache_status($node)->{last_error});

# ------------------------------------------------------------------
# Prefix change: resync; new keys under the new prefix, none left under
# the old one.
# ------------------------------------------------------------------
set_conf("authx.redis_url = 'redis://127.0.0.1:$pport'");
ok(wait_on($plain, 'back to db 0'), 'connected to db 0 over TCP');
my @p = make_sessions($node, $uid, 3, 'prefix-old');
ok(caught_up($node), 'cache_sync');
my @keys = $plain->scan_keys('authx:s:*');
is(scalar @keys, 3, 'three keys under authx:');
$resyncs = stat_value($node, 'cache_resyncs');
set_conf("authx.redis_prefix = 'app1:'");
ok(wait_resync($node, $resyncs, 10), 'prefix change: resynced');
is($node->safe_psql('postgres', 'SHOW authx.redis_prefix'), 'app1:', 'new prefix in effect');
my @pn = make_sessions($node, $uid, 1, 'prefix-new');
revoke_where($node, token_in($p[0]));
is($node->safe_psql('postgres', "SELECT authx.session_validate('$p[1]')"), $uid, 'validate an old session');
ok(caught_up($node), 'cache_sync');
is(cache_entry($plain, $pn[0], prefix => 'app1:')->{user_id}, $uid, 'new session under app1:');
is(cache_entry($plain, $p[0], prefix => 'app1:')->{revoked}, 1, 'revocation under app1:');
is(cache_entry($plain, $p[1], prefix => 'app1:')->{user_id}, $uid, 'validation repopulates under app1:');
is_deeply([ $plain->scan_keys('authx:*') ], [], 'no key left under the old prefix authx:');
cache_invariant($node, $plain, 'old prefix', prefix => 'authx:');
cache_invariant($node, $plain, 'new prefix', prefix => 'app1:');

# ------------------------------------------------------------------
# An invalid URL in postgresql.conf at start-up: the cache stays off, the
# log does not show the password.
# ------------------------------------------------------------------
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "authx.redis_url = 'redis://:$secret{startup}\@127.0.0.1:bad'");
$node->restart;
ok($node->log_contains(qr/authx\.redis_url/, $offset), 'start-up with an invalid URL: logged');
$st = cache_status($node);
ok(!$st->{enabled}, 'the cache is off');
set_conf("authx.redis_url = '$pw_url'");
ok(wait_on($rpw, 'after start-up'), 'a valid URL on reload turns it on');

# ------------------------------------------------------------------
# No secret anywhere in the whole server log (debug2, log_statement=all).
# ------------------------------------------------------------------
my $log = slurp_file($node->logfile);
like($log, qr/parameter "authx\.redis_url" \(value hidden by authx\)|authx\.redis_url" \(value hidden/,
	'the log has the masked "parameter changed" lines');
for my $k (sort keys %secret)
{
	my @lines = grep { /\Q$secret{$k}\E/ } split(/\n/, $log);
	is(scalar @lines, 0, "the server log never shows the $k password")
	  or diag(join("\n", @lines[ 0 .. ($#lines < 2 ? $#lines : 2) ]));
}
my $views = $node->safe_psql('postgres',
	"SELECT authx.cache_status()::text || (SELECT string_agg(name || '=' || value, ',') FROM authx.stats)");
unlike($views, qr/$_/, "cache_status() and authx.stats never show the $_") for qw(Secret redis://);

done_testing();

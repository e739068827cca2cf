
# Password hashes against independent argon2 implementations: Debian's
# python3-argon2 (argon2-cffi) and the reference argon2 CLI.  Hashes they
# make verify in authx, authx's hashes verify in python, and weaker hashes
# are upgraded on a successful verification.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node psql_verbose);

# Both are in the project's package list (scripts/lib.sh): missing is a
# failure, not a skip.
my $python = '/usr/bin/python3';
die "$python with the argon2 module is required (Debian: python3-argon2)\n"
  unless -x $python && system($python, '-c', 'import argon2') == 0;
my $argon2_cli = '/usr/bin/argon2';
die "$argon2_cli is required (Debian: argon2)\n" unless -x $argon2_cli;

# python3-argon2: hash (with costs) or verify; the password goes on stdin.
my $py = <<'PY';
import sys, argon2
mode = sys.argv[1]
pw = sys.stdin.buffer.read()
if mode == 'hash':
    t, m, p = (int(x) for x in sys.argv[2:5])
    print(argon2.PasswordHasher(time_cost=t, memory_cost=m, parallelism=p,
                                type=argon2.Type.ID).hash(pw))
elif mode == 'verify':
    try:
        argon2.PasswordHasher().verify(sys.argv[2], pw)
        print('match')
    except argon2.exceptions.VerifyMismatchError:
        print('mismatch')
PY

sub run_stdin
{
	my ($cmd, $in) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run($cmd, '<', \$in, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default))
	  or die "@$cmd failed: $err";
	chomp $out;
	return $out;
}

sub py_hash
{
	my ($pw, $t, $m, $p) = @_;
	return run_stdin([ $python, '-c', $py, 'hash', $t, $m, $p ], $pw);
}

sub py_verify
{
	my ($hash, $pw) = @_;
	return run_stdin([ $python, '-c', $py, 'verify', $hash ], $pw);
}

sub cli_hash
{
	my ($pw, $t, $k, $p) = @_;
	return run_stdin([ $argon2_cli, 'saltsaltsalt', '-id', '-t', $t, '-k', $k, '-p', $p, '-e' ], $pw);
}

my $node = authx_node('argon2', conf => "authx.maintenance_naptime = 3600");

my $n = 0;

# A user whose stored hash we replace; returns its id.
sub user_with_hash
{
	my ($hash) = @_;
	$n++;
	my $uid = $node->safe_psql('postgres',
		"SELECT authx.user_create('interop$n\@example.com', 'placeholder-password')");
	$node->safe_psql('postgres',
		"UPDATE authx.users SET password_hash = '$hash' WHERE id = '$uid'");
	return $uid;
}

sub verify
{
	my ($uid, $pw) = @_;
	return $node->safe_psql('postgres', "SELECT authx.password_verify('$uid', '$pw')");
}

sub stored_hash
{
	my ($uid) = @_;
	return $node->safe_psql('postgres', "SELECT password_hash FROM authx.users WHERE id = '$uid'");
}

my $phc_default = qr/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+\/]{22}\$[A-Za-z0-9+\/]{43}$/;

# ------------------------------------------------------------------
# python3-argon2 -> authx
# ------------------------------------------------------------------
{
	my $pw   = 'Interop-Python-Pass-1';
	my $hash = py_hash($pw, 2, 19456, 1);
	like($hash, qr/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/, 'python3-argon2 made an argon2id hash');
	my $uid = user_with_hash($hash);
	is(verify($uid, $pw), 't', 'authx accepts the python hash with the right password');
	is(verify($uid, 'Interop-Python-Pass-2'), 'f', 'and rejects a wrong password');
	is(verify($uid, ''), 'f', 'and the empty password');
	is(stored_hash($uid), $hash, 'a hash at the current costs is kept as is');
}

# non-ASCII (already NFKC) passwords hash the same UTF-8 bytes
{
	my $pw   = "Gr\xc3\xbc\xc3\x9fe-P\xc3\xa4sswort-\xc3\xb1";    # Grüße-Pässwort-ñ
	my $hash = py_hash($pw, 2, 19456, 1);
	my $uid  = user_with_hash($hash);
	is(verify($uid, $pw), 't', 'authx accepts a python hash of a non-ASCII password');
	is(verify($uid, "Gru\xcc\x88\xc3\x9fe-P\xc3\xa4sswort-\xc3\xb1"), 't',
		'also typed with a combining umlaut (NFKC-normalised before hashing)');
	is(verify($uid, "Grusse-Passwort-n"), 'f', 'but not without the accents');
}

# ------------------------------------------------------------------
# argon2 CLI -> authx
# ------------------------------------------------------------------
{
	my $pw   = 'Interop-Cli-Pass-1';
	my $hash = cli_hash($pw, 2, 19456, 1);
	like($hash, qr/^\$argon2id\$v=19\$m=19456,t=2,p=1\$c2FsdHNhbHRzYWx0\$/,
		'argon2 CLI made an argon2id hash with our salt');
	my $uid = user_with_hash($hash);
	is(verify($uid, $pw), 't', 'authx accepts the CLI hash with the right password');
	is(verify($uid, 'Interop-Cli-Pass-2'), 'f', 'and rejects a wrong password');
	is(stored_hash($uid), $hash, 'CLI hash kept as is');
	is(py_verify($hash, $pw), 'match', 'python agrees with the CLI (sanity)');
}

# ------------------------------------------------------------------
# authx -> python3-argon2
# ------------------------------------------------------------------
{
	my $pw  = 'Interop-Authx-Pass-1';
	my $uid = $node->safe_psql('postgres',
		"SELECT authx.user_create('authx-made\@example.com', '$pw')");
	my $hash = stored_hash($uid);
	like($hash, $phc_default, 'authx stores a standard PHC argon2id string at m=19456,t=2,p=1');
	is(py_verify($hash, $pw), 'match', 'python3-argon2 verifies the authx hash');
	is(py_verify($hash, 'Interop-Authx-Pass-2'), 'mismatch', 'and rejects a wrong password');

	my $pw2 = "P\xc3\xa4ss-\xc3\xa9t\xc3\xa9-\xe2\x82\xac";    # Päss-été-€
	$node->safe_psql('postgres', "SELECT authx.password_set('$uid', '$pw2')");
	is(py_verify(stored_hash($uid), $pw2), 'match', 'python verifies a non-ASCII authx hash');
}

# ------------------------------------------------------------------
# Weaker hashes are upgraded by a successful password_verify.
# ------------------------------------------------------------------
for my $case ([ 't=1', 1, 19456, 1 ], [ 'm=8192', 2, 8192, 1 ])
{
	my ($what, $t, $m, $p) = @$case;
	my $pw   = "Interop-Rehash-Pass-$t-$m";
	my $weak = py_hash($pw, $t, $m, $p);
	like($weak, qr/^\$argon2id\$v=19\$m=$m,t=$t,p=$p\$/, "python made a $what hash");
	my $uid = user_with_hash($weak);

	is(verify($uid, 'not-the-password'), 'f', "$what: a wrong password is rejected");
	is(stored_hash($uid), $weak, "$what: a failed verification does not rehash");

	is(verify($uid, $pw), 't', "$what: the right password is accepted");
	my $new = stored_hash($uid);
	isnt($new, $weak, "$what: the hash was replaced");
	like($new, $phc_default, "$what: rehashed to m=19456,t=2,p=1");
	is(verify($uid, $pw), 't', "$what: the new hash verifies in authx");
	is(stored_hash($uid), $new, "$what: and is not rehashed again");
	is(py_verify($new, $pw), 'match', "$what: the new hash verifies in python");
}

# Hashes that are not weaker are kept: a stronger one (python's defaults,
# t=3, m=65536, p=4, or just more passes) is never downgraded to the
# configured costs.  An argon2i hash, same costs, is moved to argon2id.
for my $case ([ 'python default t=3,m=65536,p=4', 3, 65536, 4 ], [ 't=3,m=19456', 3, 19456, 1 ])
{
	my ($what, $t, $m, $p) = @$case;
	my $pw     = "Interop-Stronger-Pass-$t-$m";
	my $strong = py_hash($pw, $t, $m, $p);
	like($strong, qr/^\$argon2id\$v=19\$m=$m,t=$t,p=$p\$/, "python made a $what hash");
	my $uid = user_with_hash($strong);
	is(verify($uid, $pw), 't', "$what: the stronger hash verifies");
	is(stored_hash($uid), $strong, "$what: and is kept, not downgraded to the configured costs");
}
{
	my $pw    = 'Interop-Argon2i-Pass';
	my $cli_i = run_stdin([ $argon2_cli, 'saltsaltsalt', '-i', '-t', 2, '-k', 19456, '-p', 1, '-e' ], $pw);
	like($cli_i, qr/^\$argon2i\$v=19\$m=19456,t=2,p=1\$/, 'argon2 CLI made an argon2i hash');
	my $uid_i = user_with_hash($cli_i);
	is(verify($uid_i, 'Interop-Argon2i-Wrong'), 'f', 'argon2i: a wrong password is rejected');
	is(stored_hash($uid_i), $cli_i, 'argon2i: and the hash is left alone');
	is(verify($uid_i, $pw), 't', 'argon2i: the right password verifies');
	my $new = stored_hash($uid_i);
	like($new, $phc_default, 'argon2i: the hash was moved to argon2id at the configured costs');
	is(verify($uid_i, $pw), 't', 'argon2i: the new hash verifies');
	is(py_verify($new, $pw), 'match', 'argon2i: and verifies in python');
}

# "Weaker" is relative to the configuration: raise the time cost and a
# default-cost hash is upgraded; back at the default, the upgraded one stays.
{
	my $pw  = 'Interop-Raised-Cost';
	my $uid = user_with_hash(py_hash($pw, 2, 19456, 1));
	is( $node->safe_psql('postgres',
			"SET authx.password_opslimit = 3; SELECT authx.password_verify('$uid', '$pw')"),
		't', 'verify with authx.password_opslimit = 3');
	my $t3 = stored_hash($uid);
	like($t3, qr/^\$argon2id\$v=19\$m=19456,t=3,p=1\$/, 'the default-cost hash was upgraded to t=3');
	is(verify($uid, $pw), 't', 'back at the default (t=2) it verifies');
	is(stored_hash($uid), $t3, 'and stays at t=3');
}

# authx.login upgrades a weak hash like password_verify does.
{
	my $pw   = 'Interop-Login-Rehash';
	my $weak = py_hash($pw, 1, 8192, 1);
	my $uid  = user_with_hash($weak);
	is( $node->safe_psql('postgres',
			"SELECT status, user_id FROM authx.login('interop$n\@example.com', '$pw', '192.0.2.1')"),
		"ok|$uid", 'login with a weak (t=1, m=8192) python hash');
	like(stored_hash($uid), $phc_default, 'login rehashed it to the configured costs');
}

# A rehash is not a password change: the account's other fields stay.
{
	my $pw  = 'Interop-Rehash-Keeps';
	my $uid = user_with_hash(py_hash($pw, 1, 19456, 1));
	my $before = $node->safe_psql('postgres',
		"SELECT password_changed_at, status FROM authx.users WHERE id = '$uid'");
	is(verify($uid, $pw), 't', 'verify with rehash');
	is( $node->safe_psql('postgres',
			"SELECT password_changed_at, status FROM authx.users WHERE id = '$uid'"),
		$before, 'rehash leaves password_changed_at and status alone');
}

# Garbage in password_hash never raises, it just fails.
{
	my $uid = user_with_hash('$argon2id$v=19$m=19456,t=2,p=1$bm90LWEtaGFzaA$broken');
	my ($rc, $out, $err) = psql_verbose($node,
		"SELECT authx.password_verify('$uid', 'whatever-password')");
	is($rc, 0, 'a malformed stored hash does not raise') or diag($err);
	is($out, 'f', 'and verifies nothing');
}

$node->stop;
done_testing();

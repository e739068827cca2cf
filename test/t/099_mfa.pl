
# TOTP against independent implementations, and the key that seals the
# seeds.
#
# Codes made by oathtool (OATH Toolkit) and python3-pyotp from the secret
# totp_enroll shows are accepted by totp_confirm and totp_verify, and
# authx._totp_code gives the codes they give; pyotp reads the otpauth URI
# back to the same secret, issuer and account.  The key file: created by
# the postmaster at the first start (mode 0600, 64 hex digits), kept across
# restarts (TOTP still works); not created when authx.key_file is set, nor
# on a server started as a standby; a missing or malformed key file is a
# clear error naming the file; a seed sealed under another key does not open
# (false, no error) and enrolling again works.  The failure budget holds
# against an attacker who rolls back every attempt.  And the server log,
# with every statement logged, never shows a secret, a seed, a code or the
# key.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use AuthxTest::Util qw(authx_node psql_verbose wait_until);

# Both are in the project's package list (scripts/lib.sh): missing is a
# failure, not a skip.
my $python = '/usr/bin/python3';
die "$python with the pyotp module is required (Debian: python3-pyotp)\n"
  unless -x $python && system($python, '-c', 'import pyotp') == 0;
my $oathtool = '/usr/bin/oathtool';
die "$oathtool is required (Debian: oathtool)\n" unless -x $oathtool;

my $node = authx_node('mfa', conf => <<CONF);
authx.maintenance_naptime = 3600
authx.lockout_window = '1h'
log_statement = 'all'
log_min_duration_statement = 0
log_min_error_statement = error
CONF
my $datadir = $node->data_dir;
my $keyfile = "$datadir/authx.key";

# Everything secret this test handles: none of it may reach the server log.
my (@secrets, @seeds, @codes, @keys, @tokens);

sub run_cmd
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default))
	  or die "$cmd[0] failed: $err";
	chomp $out;
	return $out;
}

sub sql
{
	my ($q, %p) = @_;
	return $node->safe_psql('postgres', $q, %p);
}

# RFC 4648 base32 to hex.
sub b32_hex
{
	my ($s) = @_;
	my $bits = join '',
	  map { sprintf '%05b', index('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', $_) } split //, $s;
	my $hex = '';
	$hex .= sprintf '%02x', oct('0b' . substr($bits, 8 * $_, 8)) for 0 .. int(length($bits) / 8) - 1;
	return $hex;
}

# The codes of three implementations at unix time $t.
sub oath_at { return run_cmd($oathtool, '--totp', '-b', '-N', '@' . int($_[1]), $_[0]) }
sub pyotp_at
{
	return run_cmd($python, '-c', 'import sys, pyotp; print(pyotp.TOTP(sys.argv[1]).at(int(sys.argv[2])))',
		$_[0], int($_[1]));
}
sub authx_at
{
	my ($secret, $t) = @_;
	return sql("SELECT authx._totp_code('\\x" . b32_hex($secret) . "'::bytea, to_timestamp($t), 6, 30)");
}

sub step_now { return int(time() / 30) }

# The first step a user may use now: after its last one, not before the
# current one; waits while that is ahead of the window (1).
sub next_step
{
	my ($uid) = @_;
	my $last = sql("SELECT last_step FROM authx.mfa_totp WHERE user_id = '$uid'");
	my $s    = step_now();
	$s = $last + 1 if $last + 1 > $s;
	wait_until("step $s within the window", 45, sub { step_now() >= $s - 1 })
	  or die "step $s never came";
	return $s;
}

# A well-formed code that is none of the secret's codes near now.
sub wrong_code
{
	my ($secret) = @_;
	my $s = step_now();
	my %near = map { pyotp_at($secret, 30 * ($s + $_)) => 1 } -3 .. 3;
	my $c;
	do { $c = sprintf '%06d', int(rand(1_000_000)) } while $near{$c};
	return $c;
}

sub verify
{
	my ($uid, $code, %p) = @_;
	push @codes, $code;
	return sql("SELECT authx.totp_verify('$uid', '$code')", %p);
}

sub confirm
{
	my ($uid, $code) = @_;
	push @codes, $code;
	return sql("SELECT authx.totp_confirm('$uid', '$code')");
}

# Confirm with the code of the step before the current one (window 1),
# away from the end of a step (a refused code would count as a failure),
# and again if the step changed meanwhile all the same: the current and the
# next step are left for the test, without waiting.
sub enable
{
	my ($uid, $secret, $at) = @_;
	for (1 .. 3)
	{
		my $left = 30 * (step_now() + 1) - time();
		sleep($left + 0.05) if $left < 3;
		my $s = step_now();
		my $r = confirm($uid, $at->($secret, 30 * ($s - 1)));
		return $r if $r eq 't' || step_now() == $s;
	}
	return 'f';
}

sub enroll
{
	my ($uid, $issuer) = @_;
	my ($secret, $uri) = split /\|/,
	  sql("SELECT * FROM authx.totp_enroll('$uid'" . (defined $issuer ? ", '$issuer'" : '') . ')');
	push @secrets, $secret;
	push @seeds,   b32_hex($secret);
	return ($secret, $uri);
}

my $n = 0;

sub new_user
{
	my ($email) = @_;
	$n++;
	$email //= "mfa$n\@example.com";
	push @tokens, "Mfa-Password-$n";
	return sql("SET authx.password_memlimit = 64; SET authx.password_opslimit = 1;
		SELECT authx.user_create('$email', 'Mfa-Password-$n')");
}

# ------------------------------------------------------------------
# The key file.
# ------------------------------------------------------------------
ok(-f $keyfile, 'the postmaster created <data directory>/authx.key');
is(sprintf('%04o', (stat $keyfile)[2] & 07777), '0600', 'with mode 0600');
my $key = slurp_file($keyfile);
like($key, qr/\A[0-9a-f]{64}\n\z/, 'holding 64 hex digits and a newline');
push @keys, substr($key, 0, 64);
ok($node->log_contains(qr/LOG:  authx created its key file "\Q$keyfile\E"/), 'and logged that it did');

# Attempts are what this file tests, not the mfa rate policy.
sql("SELECT authx.rate_policy_set('mfa', 1000000, '1 minute')");

# ------------------------------------------------------------------
# Codes from oathtool and pyotp.
# ------------------------------------------------------------------
my $ua = new_user('ann+mfa@example.com');
my ($sa, $uri) = enroll($ua, "Acme \xc3\x9cn\xc3\xaf Corp");
like($sa, qr/^[A-Z2-7]{32}$/, 'totp_enroll: a base32 secret');

my $parsed = run_cmd($python, '-c', <<'PY', $uri);
import sys, pyotp
t = pyotp.parse_uri(sys.argv[1])
out = '\n'.join([t.secret, t.issuer, t.name, str(t.digits), str(t.interval), t.digest().name])
sys.stdout.buffer.write(out.encode('utf-8'))
PY
is( $parsed,
	join("\n", $sa, "Acme \xc3\x9cn\xc3\xaf Corp", 'ann+mfa@example.com', 6, 30, 'sha1'),
	'pyotp.parse_uri reads the otpauth URI back: secret, issuer (UTF-8), account, 6 digits, 30 s, SHA-1');

is(confirm($ua, run_cmd($oathtool, '--totp', '-b', $sa)), 't', 'totp_confirm accepts the code of oathtool --totp');
is(verify($ua, run_cmd($oathtool, '--totp', '-b', '-N', '+30 seconds', $sa)), 't',
	"totp_verify accepts oathtool's code for 30 seconds ahead");

my $ub = new_user();
my ($sb) = enroll($ub);
is(confirm($ub, run_cmd($python, '-c', 'import sys, pyotp; print(pyotp.TOTP(sys.argv[1]).now())', $sb)),
	't', 'totp_confirm accepts the code of pyotp.TOTP(secret).now()');
is(verify($ub, pyotp_at($sb, time() + 30)), 't', "totp_verify accepts pyotp's code for 30 seconds ahead");

# Users for the checks after restarts below, enabled now (each is used
# once later, with a step after its last).
my %pool;
for my $k (qw(restart relative absolute default original))
{
	my $uid = new_user();
	my ($secret) = enroll($uid);
	is(enable($uid, $secret, $k =~ /^[ra]/ ? \&pyotp_at : \&oath_at), 't', "user '$k' enabled");
	$pool{$k} = [ $uid, $secret ];
}

# pool_verify(name): totp_verify of that user with its next code (pyotp).
sub pool_verify
{
	my ($k) = @_;
	my ($uid, $secret) = @{ $pool{$k} };
	return verify($uid, pyotp_at($secret, 30 * next_step($uid)));
}

# The same codes from all three, for several times.
my $rfc = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';    # "12345678901234567890"
for my $case ([ $rfc, 59 ], [ $rfc, 1111111109 ], [ $rfc, 1234567890 ], [ $rfc, 2000000000 ],
	[ $sa, 0 ], [ $sa, 1_700_000_000 ], [ $sa, time() ], [ $sa, time() + 30 ], [ $sb, time() - 30 ],
	[ $sb, 4_102_444_800 ])
{
	my ($secret, $t) = @$case;
	$t = int($t);
	my $name = $secret eq $rfc ? 'the RFC 6238 seed' : $secret eq $sa ? 'secret A' : 'secret B';
	my $mine = authx_at($secret, $t);
	push @codes, $mine unless $secret eq $rfc;
	is($mine, oath_at($secret, $t), "$name at $t: authx._totp_code = oathtool");
	is($mine, pyotp_at($secret, $t), "$name at $t: authx._totp_code = pyotp");
}

# ------------------------------------------------------------------
# An attacker who rolls back every attempt is locked out like one who
# commits them: the budget (authx.mfa_max_failures, 10 per
# authx.lockout_window) is in shared memory.
# ------------------------------------------------------------------
sql("CREATE ROLE mfa_attacker LOGIN IN ROLE authx_app");
my %att;
for my $mode ('rollback', 'commit')
{
	my $uid = new_user();
	my ($secret) = enroll($uid);
	is(enable($uid, $secret, \&oath_at), 't', "$mode: TOTP enabled");
	my $wrong = wrong_code($secret);
	push @codes, $wrong;
	my $one = "SELECT authx.totp_verify('$uid', '$wrong');\n";
	my $att = sub {
		my ($k) = @_;
		return sql(join('', map { $mode eq 'rollback' ? "BEGIN;\n$one" . "ROLLBACK;\n" : $one } 1 .. $k),
			extra_params => [ '-U', 'mfa_attacker' ]);
	};
	is($att->(9), join("\n", ('f') x 9), "$mode: nine wrong codes as authx_app, each "
		  . ($mode eq 'rollback' ? 'rolled back' : 'committed'));
	is(verify($uid, oath_at($secret, 30 * next_step($uid)), extra_params => [ '-U', 'mfa_attacker' ]),
		't', "$mode: the right code still works after nine failures");
	is($att->(1), 'f', "$mode: a tenth wrong code");
	is(verify($uid, oath_at($secret, 30 * next_step($uid)), extra_params => [ '-U', 'mfa_attacker' ]),
		'f', "$mode: after ten failures the right code answers false");
	$att{$mode} = $uid;
}
sql("SELECT authx.audit_flush('30 s')");
for my $mode ('rollback', 'commit')
{
	is( sql("SELECT count(*) FROM authx.audit_log WHERE user_id = '$att{$mode}' AND event_type = 'mfa.failed'"),
		10, "$mode: ten mfa.failed events");
	is( sql("SELECT count(*) FROM authx.audit_log WHERE user_id = '$att{$mode}' AND event_type = 'mfa.locked'"),
		1, "$mode: one mfa.locked event");
}

# ------------------------------------------------------------------
# Recovery codes and a login through login_mfa (more secrets for the log).
# ------------------------------------------------------------------
my @rc = split /[{},]/, sql("SELECT authx.recovery_codes_generate('$ub')");
@rc = grep { length } @rc;
is(scalar(@rc), 10, 'ten recovery codes');
push @tokens, @rc, map { s/-//gr } @rc;
is(sql("SELECT authx.recovery_code_use('$ub', '$rc[0]')"), 't', 'recovery_code_use');
my ($st, undef, $challenge) = split /\|/,
  sql("SET authx.password_memlimit = 64; SET authx.password_opslimit = 1;
	SELECT status, user_id, session_token FROM authx.login('mfa2\@example.com', 'Mfa-Password-2', '192.0.2.1')");
is($st, 'mfa_required', 'login: mfa_required');
like($challenge, qr/^axc_[A-Za-z0-9_-]{43}$/, 'with a challenge');
my ($st2, undef, $session) = split /\|/,
  sql("SELECT status, user_id, session_token FROM authx.login_mfa('$challenge', '$rc[1]', '192.0.2.1')");
is($st2, 'ok', 'login_mfa with a recovery code: ok');
is(sql("SELECT authx.session_validate('$session')"), $ub, 'a valid session');
push @tokens, $challenge, $session;

# ------------------------------------------------------------------
# Restart: the same key, TOTP goes on working.
# ------------------------------------------------------------------
$node->restart;
is(slurp_file($keyfile), $key, 'after a restart the key file is unchanged');
is(pool_verify('restart'), 't', 'and a seed sealed before the restart opens');

# ------------------------------------------------------------------
# authx.key_file set to a file that does not exist: the default one is not
# made, and TOTP calls fail with the file named and a hint.
# ------------------------------------------------------------------
$node->stop;
rename($keyfile, "$keyfile.saved") or die "rename: $!";
$node->append_conf('postgresql.conf', "authx.key_file = 'missing.key'");
$node->start;
ok(!-e $keyfile, 'authx.key_file set: no default key file is created');
ok(!-e "$datadir/missing.key", 'nor the configured one');
my ($ur, $sr) = @{ $pool{relative} };
my $code = pyotp_at($sr, 30 * next_step($ur));
push @codes, $code;
my ($rc, $out, $err) = psql_verbose($node, "SELECT authx.totp_verify('$ur', '$code')");
isnt($rc, 0, 'missing key file: totp_verify fails');
like($err, qr/ERROR:  F0000: authx key file "\Q$datadir\E\/missing\.key" cannot be read: No such file or directory/,
	'with F0000 naming the file');
like($err, qr/HINT:  The primary creates <data directory>\/authx\.key at its first start .*set authx\.key_file/,
	'and a hint');
my $uc = new_user();
($rc, $out, $err) = psql_verbose($node, "SELECT * FROM authx.totp_enroll('$uc')");
isnt($rc, 0, 'missing key file: totp_enroll fails');
like($err, qr/ERROR:  F0000: authx key file "\Q$datadir\E\/missing\.key" cannot be read/, 'with the same error');
is(sql("SELECT count(*) FROM authx.mfa_totp WHERE user_id = '$uc'"), 0, 'and enrols nothing');

# Malformed key files (each backend reads the file on first use).
my @bad = ([ 'too short', ('ab' x 31) . "\n" ], [ 'too long', ('ab' x 33) . "\n" ],
	[ 'not hex', ('zz' x 32) . "\n" ], [ 'empty', '' ], [ 'two keys', ('ab' x 32) . "\n" . ('cd' x 32) . "\n" ]);
for my $b (@bad)
{
	my ($what, $content) = @$b;
	open my $fh, '>', "$datadir/missing.key" or die $!;
	print $fh $content;
	close $fh;
	chmod 0600, "$datadir/missing.key";
	($rc, $out, $err) = psql_verbose($node, "SELECT authx.totp_verify('$ur', '$code')");
	like($err, qr/ERROR:  F0000: authx key file "\Q$datadir\E\/missing\.key" does not hold a key/,
		"key file $what: F0000, naming the file");
	like($err, qr/HINT:  It must contain 64 hexadecimal digits/, "key file $what: a hint");
}
# The whole file is the key: the key, blank lines and anything after them
# is not a key file.
{
	open my $fh, '>', "$datadir/missing.key" or die $!;
	print $fh substr($key, 0, 64) . ("\n" x 7) . "this line is not part of a key\n";
	close $fh;
	my $wrong = wrong_code($sr);
	push @codes, $wrong;
	($rc, $out, $err) = psql_verbose($node, "SELECT authx.totp_verify('$ur', '$wrong')");
	like($err, qr/ERROR:  F0000: authx key file "\Q$datadir\E\/missing\.key" does not hold a key/,
		'key file with more after blank lines: F0000');
}
# The right key there (in capitals, without the newline) works.
open my $kfh, '>', "$datadir/missing.key" or die $!;
print $kfh uc(substr($key, 0, 64));
close $kfh;
chmod 0600, "$datadir/missing.key";
is(verify($ur, $code), 't', 'authx.key_file naming a copy of the key (relative to the data directory) works');

# An absolute authx.key_file.
$node->stop;
my $abs = $node->basedir . '/elsewhere.key';
rename("$datadir/missing.key", $abs) or die "rename: $!";
$node->append_conf('postgresql.conf', "authx.key_file = '$abs'");
$node->start;
is(pool_verify('absolute'), 't', 'an absolute authx.key_file works');
ok(!-e $keyfile, 'and no default key file appeared');

# Back to the default key.
$node->stop;
rename("$keyfile.saved", $keyfile) or die "rename: $!";
$node->append_conf('postgresql.conf', "authx.key_file = ''");
$node->start;
is(pool_verify('default'), 't', 'the default key file again: TOTP works');

# ------------------------------------------------------------------
# Another key: seeds do not open (false, no error), enrolling again works.
# ------------------------------------------------------------------
$node->stop;
my $other = join '', map { sprintf '%02x', int(rand(256)) } 1 .. 32;
push @keys, $other;
open my $ofh, '>', $keyfile or die $!;
print $ofh "$other\n";
close $ofh;
$node->start;
$code = oath_at($sa, 30 * next_step($ua));
push @codes, $code;
($rc, $out, $err) = psql_verbose($node, "SELECT authx.totp_verify('$ua', '$code')");
is($rc, 0, 'another key: totp_verify does not fail');
is($out, 'f', 'but the seed does not open: false for the right code');
is(verify($ub, pyotp_at($sb, 30 * next_step($ub))), 'f', "nor for the other user's");
($rc, $out, $err) = psql_verbose($node, "SELECT * FROM authx.totp_enroll('$ua')");
like($err, qr/55000: TOTP is already enabled for this user/, 'enrolling again needs a disable first (55000)');
is(sql("SELECT authx.totp_disable('$ua')"), 't', 'totp_disable');
my ($sa2) = enroll($ua);
isnt($sa2, $sa, 'a new secret under the new key');
is(enable($ua, $sa2, \&oath_at), 't', 'confirmed with oathtool');
is(verify($ua, oath_at($sa2, 30 * next_step($ua))), 't', 'and verified');

# The original key back: the new seed does not open, the old ones do.
$node->stop;
open $ofh, '>', $keyfile or die $!;
print $ofh $key;
close $ofh;
$node->start;
is(verify($ua, oath_at($sa2, 30 * next_step($ua))), 'f', 'the original key back: the seed sealed under the other one does not open');
is(pool_verify('original'), 't', 'those sealed under it do');

# ------------------------------------------------------------------
# A server started as a standby never makes a key; promoted to a primary
# start (no standby.signal), it does.
# ------------------------------------------------------------------
# One start without authx first: a standby needs the control file to
# carry the settings of the test cluster (max_connections).
my $sbnode = authx_node('mfa_standby', init => { allows_streaming => 1 }, preload => 0, start => 0);
$sbnode->start;
$sbnode->stop;
ok(!-e $sbnode->data_dir . '/authx.key', '(no key file without authx preloaded)');
$sbnode->append_conf('postgresql.conf', "shared_preload_libraries = 'authx'\nauthx.database = 'postgres'");
$sbnode->set_standby_mode;
$sbnode->start;
is($sbnode->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby.signal: the server is in recovery');
ok(!-e $sbnode->data_dir . '/authx.key', 'and no key file was created');
ok(!$sbnode->log_contains(qr/authx created its key file/), 'nor logged');
$sbnode->stop;
unlink($sbnode->data_dir . '/standby.signal') or die "unlink: $!";
$sbnode->start;
is($sbnode->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 'f', 'without standby.signal: a primary');
ok(-f $sbnode->data_dir . '/authx.key', 'which creates its key file');
like(slurp_file($sbnode->data_dir . '/authx.key'), qr/\A[0-9a-f]{64}\n\z/, 'of 64 hex digits');
$sbnode->stop;

# ------------------------------------------------------------------
# The server log.
# ------------------------------------------------------------------
$node->stop;
my $log = slurp_file($node->logfile);
like($log, qr/statement: SELECT authx\.totp_verify\('\*\*\*', '\*\*\*'\)/,
	'statements are logged (totp_verify, literals masked)');
like($log, qr/statement: SELECT \* FROM authx\.totp_enroll\('\*\*\*'\)/, 'totp_enroll too');
like($log, qr/statement: SELECT status, user_id, session_token FROM authx\.login_mfa\('\*\*\*', '\*\*\*', '\*\*\*'\)/,
	'login_mfa too');
my $i = 0;
for my $s (@secrets)
{
	$i++;
	unlike($log, qr/\Q$s\E/i, "secret $i is not in the log");
}
$i = 0;
for my $s (@seeds)
{
	$i++;
	unlike($log, qr/\Q$s\E/i, "seed $i (hex) is not in the log");
}
$i = 0;
for my $t (@tokens)
{
	$i++;
	unlike($log, qr/\Q$t\E/i, "password, recovery code or token $i is not in the log");
}
$i = 0;
for my $k (@keys)
{
	$i++;
	unlike($log, qr/\Q$k\E/i, "key $i is not in the log");
}
# Codes: six digits, looked for in the messages (not in the line prefixes'
# times and pids) and not in checkpoint statistics.
my $bodies = join "\n",
  grep { !/checkpoint (starting|complete)/ }
  map { s/^\S+ \S+ \S+ \[\d+\] //r } split /\n/, $log;
my %seen;
my @leaked = grep { !$seen{$_}++ && $bodies =~ /(?<![0-9])\Q$_\E(?![0-9])/ } @codes;
is_deeply(\@leaked, [], 'none of the ' . scalar(keys %seen) . ' codes sent is in the log');

done_testing();

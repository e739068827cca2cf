
# No user enumeration by timing: authx.login spends one argon2id
# verification whatever the email, so an unknown email, a known email with a
# wrong password and a locked account with a wrong password all answer
# 'invalid_credentials' in about the same time.
#
# At the default costs (m=19456, t=2) one verification takes tens of
# milliseconds; a missing verification would make a call several times
# faster, far beyond the 10% allowed here.  Each measurement is psql's own
# \timing of one statement in one long-lived session (no connection set-up,
# no Perl in the measured path); the kinds of call are interleaved so that
# drift in machine load hits them alike, and medians of 15 are compared.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node stat_value);

# Per-address lockout after 3 failures (the locked case below); every other
# call comes from an address of its own so that it never locks.  The
# account-wide lockout is off, or the known account would lock after 20.
my $node = authx_node('timing', conf => <<CONF);
authx.lockout_threshold = 3
authx.lockout_account_threshold = 0
authx.maintenance_naptime = 3600
CONF
# Timing, not the login rate policy (which answers before any hash) nor
# the threat rules (hundreds of failures from one address get it blocked).
$node->safe_psql('postgres', q{SELECT authx.rate_policy_set('login', 1000000, '1 minute')});
$node->safe_psql('postgres', q{UPDATE authx.threat_rules SET enabled = false});

is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(setting, ',' ORDER BY name) FROM pg_settings
		  WHERE name IN ('authx.password_memlimit', 'authx.password_opslimit')"),
	'19456,2', 'default argon2 costs (m=19456, t=2)');

my $known = 'known.user@example.com';
my $uid = $node->safe_psql('postgres',
	"SELECT authx.user_create('$known', 'The-Right-Password-1')");
my $disabled = 'disabled.user@example.com';
my $duid = $node->safe_psql('postgres',
	"SELECT authx.user_create('$disabled', 'The-Right-Password-2')");
$node->safe_psql('postgres', "SELECT authx.user_disable('$duid')");
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM authx.users
		  WHERE password_hash LIKE '\$argon2id\$v=19\$m=19456,t=2,p=1\$%'"),
	2, 'both accounts have hashes at the default costs');
is($node->safe_psql('postgres',
		"SELECT status FROM authx.login('$disabled', 'The-Right-Password-2', '10.7.0.1')"),
	'disabled', 'the disabled account says so to the right password');

my $ipn = 0;

sub next_ip
{
	$ipn++;
	return sprintf('10.9.%d.%d', int($ipn / 250), $ipn % 250 + 1);
}

sub median
{
	my @s = sort { $a <=> $b } @_;
	my $n = @s;
	return $n % 2 ? $s[ $n / 2 ] : ($s[ $n / 2 - 1 ] + $s[ $n / 2 ]) / 2;
}

# Run the calls [kind, sql] in one psql session, each timed by \timing;
# returns { kind => [ [status, ms], ... ] } in call order.
sub timed_calls
{
	my (@calls) = @_;
	my $script = "\\timing on\n" . join('', map { "$_->[1];\n" } @calls);
	my $out = $node->safe_psql('postgres', $script);
	my @lines = grep { $_ ne '' } split /\n/, $out;
	my @res;
	while (@lines)
	{
		my $status = shift @lines;
		my $time   = shift @lines // '';
		$time =~ /^Time: ([0-9.]+) ms/
		  or die "unexpected psql output: '$status' / '$time'\n$out";
		push @res, [ $status, $1 ];
	}
	die 'expected ' . scalar(@calls) . ' results, got ' . scalar(@res) . "\n$out"
	  unless @res == @calls;
	my %by;
	for my $i (0 .. $#calls)
	{
		push @{ $by{ $calls[$i][0] } }, $res[$i];
	}
	return \%by;
}

sub login_sql
{
	my ($email, $ip) = @_;
	return "SELECT status FROM authx.login('$email', 'wrong password', '$ip')";
}

my $n        = 15;
my $attempts = 3;

sub fmt { join(' ', map { sprintf '%.1f', $_ } @_) }

# One measurement: $make->($i) gives the [kind, sql] calls of round $i; n+2
# rounds, the first two of each kind warm up (plpgsql compilation, caches)
# and are left out.  Returns { kind => [ [status, ms], ... ] }.
sub measure
{
	my ($make, @kinds) = @_;
	my $by = timed_calls(map { $make->($_) } 1 .. $n + 2);
	splice(@{ $by->{$_} }, 0, 2) for @kinds;
	return $by;
}

# |median(kind) - median(unknown)| / median(unknown)
sub gap
{
	my ($by, $kind) = @_;
	my $mu = median(map { $_->[1] } @{ $by->{unknown} });
	return abs(median(map { $_->[1] } @{ $by->{$kind} }) - $mu) / $mu;
}

# Measure until every kind is within 10% of the unknown email, at most
# $attempts times: a machine busy with other work (parallel test runs) can
# push one measurement over, but a real difference, such as a skipped
# verification, fails every attempt.  The assertions use the last attempt;
# every attempt's statuses are checked.
sub run_phase
{
	my ($label, $make, %what) = @_;
	my @kinds = ('unknown', sort keys %what);
	my ($by, $k, %statuses);
	for $k (1 .. $attempts)
	{
		$by = measure($make, @kinds);
		$statuses{ $_->[0] }++ for map { @{ $by->{$_} } } @kinds;
		last unless grep { gap($by, $_) > 0.10 } keys %what;
		diag(sprintf("$label, attempt $k of $attempts over 10%%, measuring again:\n"
			  . join("\n", map { "  $_: " . fmt(map { $_->[1] } @{ $by->{$_} }) } @kinds)));
	}
	is_deeply([ sort keys %statuses ], ['invalid_credentials'],
		"$label: every call answers invalid_credentials");
	my $mu = median(map { $_->[1] } @{ $by->{unknown} });
	for my $kind (sort keys %what)
	{
		is(scalar(@{ $by->{$kind} }), $n, "$what{$kind}: $n calls measured");
		my $d = gap($by, $kind);
		ok($d <= 0.10,
			sprintf('%s: median %.1f ms vs %.1f ms for an unknown email (%.1f%% apart, at most 10%%)',
				$what{$kind}, median(map { $_->[1] } @{ $by->{$kind} }), $mu, 100 * $d))
		  or diag(join("\n", map { "  $_: " . fmt(map { $_->[1] } @{ $by->{$_} }) } @kinds));
	}
	# Sanity: the unknown-email calls really spent a verification (a call
	# without one takes about a millisecond).
	cmp_ok($mu, '>', 5, "$label: unknown email median $mu ms, an argon2id verification's worth");
}

# ------------------------------------------------------------------
# Unknown email vs known email (active, and disabled) with a wrong password.
# ------------------------------------------------------------------
{
	my $l0    = stat_value($node, 'lockouts');
	my $v0    = stat_value($node, 'password_verifies');
	my $calls = 0;
	run_phase(
		'unknown / known / disabled',
		sub {
			my ($i) = @_;
			$calls += 3;
			return (
				[ 'unknown',  login_sql("unknown-$ipn-$i\@example.com", next_ip()) ],
				[ 'known',    login_sql($known,                        next_ip()) ],
				[ 'disabled', login_sql($disabled,                     next_ip()) ]);
		},
		known    => 'known email, wrong password',
		disabled => 'disabled account, wrong password');
	is(stat_value($node, 'password_verifies') - $v0, $calls,
		"one argon2id verification per call, known email or not ($calls calls)");
	is(stat_value($node, 'lockouts') - $l0, 0,
		'no lockout resulted (one failure per address, no account-wide lockout)');
}

# ------------------------------------------------------------------
# A locked account (3 failures from one address) with a wrong password from
# that address, against unknown emails from fresh addresses.
# ------------------------------------------------------------------
{
	my $ip = '10.8.0.1';
	my $locked = $node->safe_psql('postgres', join("\n",
			map { login_sql($known, $ip) . ';' } 1 .. 3));
	is($locked, join("\n", ('invalid_credentials') x 3), 'three failures from 10.8.0.1');
	is( $node->safe_psql('postgres',
			"SELECT status FROM authx.login('$known', 'The-Right-Password-1', '$ip')"),
		'locked', 'the account is now locked for 10.8.0.1 (the right password says so)');

	my $f0 = stat_value($node, 'login_failures_counted');
	run_phase(
		'unknown / locked',
		sub {
			my ($i) = @_;
			return (
				[ 'unknown', login_sql("unknown-$ipn-$i\@example.com", next_ip()) ],
				[ 'locked',  login_sql($known,                        $ip) ]);
		},
		locked => 'locked account, wrong password');
	is(stat_value($node, 'login_failures_counted') - $f0, 0,
		'failures against a lock in force are not counted (the lock is not extended)');
}

$node->stop;
done_testing();

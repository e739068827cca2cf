
# API key usage counters and rate limits in shared memory.
#
#  - authx.apikey_usage counts verifications per key and answer code (also
#    those not yet persisted);
#  - the maintenance worker persists them into authx.api_key_usage (polled
#    with authx.maintenance_naptime = 1), without counting twice;
#  - counts made while the worker persists (two sessions verifying
#    without pause for several persist turns) are not lost: the table ends
#    up with exactly what was counted;
#  - counts survive a clean restart, also those still in shared memory at
#    shutdown (the worker's final flush);
#  - a rate limit is spent in shared memory: a verification whose
#    transaction rolls back still used up allowance (while a metered key's
#    remaining uses come back).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run ();
use Time::HiRes qw(time);

use AuthxTest::Util qw(authx_node stat_value wait_until);

my $node = authx_node('usage', conf => "authx.maintenance_naptime = 1\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub new_user
{
	my ($email) = @_;
	return sql("SELECT authx.user_create('$email', 'Usage-Test-Passw0rd')");
}

# apikey_create with extra SQL arguments; returns (key_id, api_key).
sub create_key
{
	my ($uid, $name, $args) = @_;
	$args = defined $args ? ", $args" : '';
	return split(/\|/, sql("SELECT key_id, api_key FROM authx.apikey_create('$uid', '$name'$args)"));
}

# Verify $n times (with scope, or NULL); returns the codes, comma separated,
# collapsed as code x count in order of first appearance.  The key depends
# on g, so the function runs once per row (an uncorrelated LATERAL function
# would run once).
sub verify_n
{
	my ($key, $n, $scope) = @_;
	$scope = defined $scope ? "'$scope'" : 'NULL';
	return sql(qq{
SELECT string_agg(code || ' x' || c, ', ' ORDER BY first)
  FROM (SELECT v.code, count(*) AS c, min(g) AS first
          FROM generate_series(1, $n) g,
               LATERAL authx.apikey_verify('$key' || repeat('-', g * 0), $scope) v
         GROUP BY v.code) s});
}

# code => count, as a hash ref, from a query returning (code, count).
sub counts
{
	my ($q) = @_;
	my %h = map { split(/\|/, $_) } grep { $_ ne '' } split(/\n/, sql($q));
	return \%h;
}

sub usage     { return counts("SELECT code, count FROM authx.apikey_usage('$_[0]')"); }
sub persisted { return counts("SELECT code, sum(count) FROM authx.api_key_usage WHERE key_id = '$_[0]' GROUP BY code"); }
sub pending   { return counts("SELECT code, sum(count) FROM authx._apikey_usage_pending('$_[0]') GROUP BY code"); }

sub same
{
	my ($a, $b) = @_;
	return join(',', map { "$_=$a->{$_}" } sort keys %$a) eq join(',', map { "$_=$b->{$_}" } sort keys %$b);
}

my $alice = new_user('alice@example.com');
my $bob   = new_user('bob@example.com');

# ------------------------------------------------------------------
# Counts per answer code.
# ------------------------------------------------------------------
my ($k1_id, $k1) = create_key($alice, 'plain', q{ARRAY['docs:read']});
my ($k2_id, $k2) = create_key($alice, 'metered', q{remaining => 2});
my ($k3_id, $k3) = create_key($alice, 'limited', q{rate_limit => 3, rate_window => '1 hour'});
my ($k4_id, $k4) = create_key($alice, 'revoked');
my ($k5_id, $k5) = create_key($alice, 'expiring', q{expires_at => clock_timestamp() + interval '1 second'});
my ($k6_id, $k6) = create_key($bob, 'disabled-owner');
sql("SELECT authx.apikey_revoke('$k4_id')");
sql("SELECT authx.user_disable('$bob')");

is(verify_n($k1, 5, 'docs:read'), 'valid x5', 'plain key: 5 valid');
is(verify_n($k1, 2, 'docs:write'), 'insufficient_scope x2', 'plain key: 2 insufficient_scope');
my $wrong = substr($k1, 0, 17) . ('A' x 43);    # axk_<prefix>_ and another secret
isnt($wrong, $k1, 'a wrong secret for the same prefix');
is(verify_n($wrong, 3), 'not_found x3', 'a wrong secret with the key\'s prefix: not_found');
is(verify_n($k2, 3), 'valid x2, usage_exceeded x1', 'metered key: 2 valid, then usage_exceeded');
is(verify_n($k3, 5), 'valid x3, rate_limited x2', 'rate-limited key: 3 valid, then rate_limited');
is(verify_n($k4, 2), 'revoked x2', 'revoked key: revoked');
sql("SELECT pg_sleep_until(expires_at + interval '0.1 s') FROM authx.api_keys WHERE id = '$k5_id'");
is(verify_n($k5, 1), 'expired x1', 'expired key: expired');
is(verify_n($k6, 4), 'disabled x4', 'key of a disabled owner: disabled');

my %want = (
	$k1_id => { valid => 5, insufficient_scope => 2 },
	$k2_id => { valid => 2, usage_exceeded => 1 },
	$k3_id => { valid => 3, rate_limited => 2 },
	$k4_id => { revoked => 2 },
	$k5_id => { expired => 1 },
	$k6_id => { disabled => 4 });
my %name = ($k1_id => 'plain', $k2_id => 'metered', $k3_id => 'limited', $k4_id => 'revoked',
	$k5_id => 'expiring', $k6_id => 'disabled-owner');
for my $id (sort keys %want)
{
	is_deeply(usage($id), $want{$id}, "apikey_usage counts per code: $name{$id}");
}

# ------------------------------------------------------------------
# The worker persists them, once.
# ------------------------------------------------------------------
ok( wait_until('usage persisted', 60,
		sub { !grep { !same(persisted($_), $want{$_}) || %{ pending($_) } } keys %want }),
	'the maintenance worker wrote every count into authx.api_key_usage and nothing is pending');
for my $id (sort keys %want)
{
	is_deeply(persisted($id), $want{$id}, "persisted counts: $name{$id}");
	is_deeply(usage($id), $want{$id}, "apikey_usage after persisting (not counted twice): $name{$id}");
}
cmp_ok(stat_value($node, 'apikey_usage_persisted'), '>=', 6, 'apikey_usage_persisted counted the entries');
is(sql("SELECT count(*) FROM authx.api_key_usage WHERE code = 'not_found'"), 0,
	'no key is charged for a wrong secret');

# ------------------------------------------------------------------
# Counts made while the worker persists are not lost: two sessions verify
# the plain key without pause for 4 seconds (several persist turns, each
# overlapping verifications); the table ends up with exactly the sum.
# ------------------------------------------------------------------
sql(q{
CREATE FUNCTION public.hammer(key text, secs float8) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint := 0;
    bad bigint;
    stop timestamptz := clock_timestamp() + secs * interval '1 second';
BEGIN
    WHILE clock_timestamp() < stop LOOP
        SELECT count(*) FILTER (WHERE v.code <> 'valid') INTO bad
          FROM generate_series(1, 50) g,
               LATERAL authx.apikey_verify(key || repeat('-', g * 0), 'docs:read') v;
        IF bad > 0 THEN
            RAISE EXCEPTION 'a verification was not valid';
        END IF;
        n := n + 50;
    END LOOP;
    RETURN n;
END $$});
my $turns_before = stat_value($node, 'apikey_usage_persisted');
my (@out, @err, @h);
for my $i (0, 1)
{
	($out[$i], $err[$i]) = ('', '');
	$h[$i] = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		  '-c', "SELECT public.hammer('$k1', 4)" ],
		'>', \$out[$i], '2>', \$err[$i],
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
}
my $total = 0;
for my $i (0, 1)
{
	$h[$i]->finish;
	chomp $out[$i];
	like($out[$i], qr/^\d+$/, "verifier session $i verified $out[$i] times") or diag($err[$i]);
	$total += $out[$i] =~ /^(\d+)$/ ? $1 : 0;
}
cmp_ok(stat_value($node, 'apikey_usage_persisted') - $turns_before, '>=', 2,
	'the worker persisted several times while the sessions verified');
$want{$k1_id}{valid} += $total;
ok( wait_until('all usage persisted', 60,
		sub { same(persisted($k1_id), $want{$k1_id}) && !%{ pending($k1_id) } }),
	'everything persisted');
is_deeply(persisted($k1_id), $want{$k1_id}, "the table holds exactly 5 + $total valid verifications");
is_deeply(usage($k1_id), $want{$k1_id}, 'and apikey_usage agrees');

# ------------------------------------------------------------------
# Rate limits are spent in shared memory: ROLLBACK does not give the
# allowance back (a metered key's uses, in the table, do come back).
# ------------------------------------------------------------------
my ($k7_id, $k7) = create_key($alice, 'limit2', q{rate_limit => 2, rate_window => '1 hour'});
is(sql("BEGIN; SELECT code || '|' || rate_limit_remaining FROM authx.apikey_verify('$k7'); ROLLBACK;"),
	'valid|1', 'rate-limited key verified in a transaction that rolls back');
is(sql("SELECT code || '|' || rate_limit_remaining FROM authx.apikey_verify('$k7')"),
	'valid|0', 'the next verification gets the last of the allowance');
is(sql("SELECT code || '|' || rate_limit_remaining || '|' || (retry_after > interval '0') FROM authx.apikey_verify('$k7')"),
	'rate_limited|0|true', 'then rate_limited, with a retry_after: the rolled-back verification used allowance');
is_deeply(usage($k7_id), { valid => 2, rate_limited => 1 }, 'and it was counted');

my ($k8_id, $k8) = create_key($alice, 'metered2', q{remaining => 2});
is(sql("BEGIN; SELECT code || '|' || remaining FROM authx.apikey_verify('$k8'); ROLLBACK;"),
	'valid|1', 'metered key verified in a transaction that rolls back');
is(sql("SELECT code || '|' || remaining FROM authx.apikey_verify('$k8')"),
	'valid|1', 'its use came back with the rollback');
is(sql("SELECT remaining FROM authx.api_keys WHERE id = '$k8_id'"), 1, 'remaining in the table: 1');

# A subtransaction rolled back does not give it back either.
my ($k9_id, $k9) = create_key($alice, 'limit1', q{rate_limit => 1, rate_window => '1 hour'});
is(sql(qq{
BEGIN;
SAVEPOINT a;
SELECT code FROM authx.apikey_verify('$k9');
ROLLBACK TO a;
SELECT code FROM authx.apikey_verify('$k9');
COMMIT;}), "valid\nrate_limited", 'ROLLBACK TO a savepoint: the allowance stays spent');

# ------------------------------------------------------------------
# A clean restart keeps the counts: those persisted, and those still in
# shared memory at shutdown (the worker persists them on its way out).
# ------------------------------------------------------------------
ok( wait_until('k7 and k9 persisted', 60,
		sub { !%{ pending($k7_id) } && !%{ pending($k9_id) } && !%{ pending($k8_id) } }),
	'counts so far persisted');
sql('ALTER SYSTEM SET authx.maintenance_naptime = 3600');
my $runs = stat_value($node, 'maintenance_runs');
$node->reload;
# It runs once on reload, then sleeps: a run after the reload, and then no
# run for 3 s (with the old naptime of 1 s there would have been more).
ok( wait_until('the worker sleeping with the new naptime', 60,
		sub { stat_value($node, 'maintenance_runs') > $runs
			  && stat_value($node, 'maintenance_last_run_age_ms') > 3000 }),
	'the worker took the new naptime');
is(verify_n($k1, 7, 'docs:read'), 'valid x7', '7 more valid verifications');
is(verify_n($k1, 1, 'docs:delete'), 'insufficient_scope x1', 'and 1 insufficient_scope');
$want{$k1_id}{valid} += 7;
$want{$k1_id}{insufficient_scope} += 1;
is_deeply(pending($k1_id), { valid => 7, insufficient_scope => 1 }, 'they are pending in shared memory');
is_deeply(usage($k1_id), $want{$k1_id}, 'apikey_usage includes them');
@name{ $k7_id, $k8_id, $k9_id } = ('limit2', 'metered2', 'limit1');
my %before_restart = map { $_ => usage($_) } ($k1_id, $k2_id, $k3_id, $k7_id, $k8_id, $k9_id);
$node->restart;
is_deeply(pending($k1_id), {}, 'after the restart nothing is pending');
is_deeply(persisted($k1_id), $want{$k1_id}, 'the counts pending at shutdown were persisted');
for my $id (sort keys %before_restart)
{
	is_deeply(usage($id), $before_restart{$id}, "apikey_usage after a clean restart: $name{$id}");
}

done_testing();


# API keys in the Redis write-through cache: authx:k:<hex sha256(key)>.
#
#  - a plain key (no remaining uses, no rate limit, scopes that fit) has a
#    live entry {key_id, user_id, scopes, expires_at, v}; a metered or
#    rate-limited key (or one whose scopes do not fit) only {v}: gateways
#    must ask Postgres;
#  - changes of the row (verify's touch, apikey_update) follow with a new
#    version; a verification repopulates a lost entry;
#  - revocation tombstones the current and a rotated-out secret; a rotation
#    with grace gives the old secret an entry that ends with the grace; a
#    secret two rotations old is buried;
#  - a disabled or deleted owner leaves only {v}; re-enabled, the keys are
#    live again; a key deleted (as superuser, or with its owner) leaves a
#    tombstone;
#  - after a Redis restart without its RDB file, a Redis restart from an
#    old RDB file, and after the writer is terminated or killed: once
#    cache_sync returns, no revoked key reads valid from Redis.
#
# After every step, every key the test ever made (rotated-out secrets too)
# is checked against Postgres (key_invariant): no key that Postgres rejects
# reads valid; a valid key reads valid (with its own key_id, user_id,
# scopes and expires_at) only when it is a plain key, and otherwise misses;
# no live entry outlives authx.cache_ttl, the key's expiry or a rotated-out
# secret's grace; a bare version lives at most cache_ttl, a tombstone at
# most twice cache_ttl.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(time);

use AuthxTest::Util qw(stat_value wait_until psql_verbose);
use AuthxTest::Redis;
use AuthxTest::Cache qw(cache_node cache_status cache_sync caught_up new_user
  cache_writer_pid);

my $redis = AuthxTest::Redis->new(name => 'apikeys');
my $node  = cache_node('apikeys', $redis, conf => <<CONF);
authx.maintenance_naptime = 3600
CONF
$node->safe_psql('postgres',
	'CREATE TABLE public.t_keys (api_key text PRIMARY KEY, note text NOT NULL)');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub redis_key { return 'authx:k:' . sha256_hex($_[0]); }

# The key's Redis hash ({} for a miss).
sub entry
{
	my ($key) = @_;
	my $r = $redis->command('HGETALL', redis_key($key));
	die "HGETALL failed" unless ref $r eq 'ARRAY';
	return {@$r};
}

# Absolute expiry of the key's Redis entry, unix ms (-1: none, -2: no key).
sub pexpiretime { return $redis->command('PEXPIRETIME', redis_key($_[0])); }

# Create a key (apikey_create's named arguments as SQL), record it; returns
# (key_id, api_key).
sub create_key
{
	my ($uid, $note, $args) = @_;
	$args = defined $args ? ", $args" : '';
	my $out = sql(qq{
WITH k AS (SELECT * FROM authx.apikey_create('$uid', '$note'$args)),
     i AS (INSERT INTO public.t_keys SELECT api_key, '$note' FROM k)
SELECT key_id || '|' || api_key FROM k});
	return split(/\|/, $out);
}

# Rotate, record the new secret; returns it.
sub rotate
{
	my ($key_id, $grace, $note) = @_;
	return sql(qq{
WITH r AS (SELECT authx.apikey_rotate('$key_id', '$grace') AS k),
     i AS (INSERT INTO public.t_keys SELECT k, '$note' FROM r)
SELECT k FROM r});
}

sub verify
{
	my ($key, $scope) = @_;
	$scope = defined $scope ? "'$scope'" : 'NULL';
	return sql("SELECT code FROM authx.apikey_verify('$key', $scope)");
}

# A plain key's expected live entry.
sub live_entry
{
	my ($key_id, $uid, $scopes, $expires, $v) = @_;
	return { key_id => $key_id, user_id => $uid, scopes => $scopes,
		expires_at => $expires, v => $v };
}

sub version
{
	my ($key_id) = @_;
	return sql("SELECT version FROM authx.api_keys WHERE id = '$key_id'");
}

# Every recorded key against Postgres and Redis.  Returns counts and a
# list of problems (see the header).
sub key_check
{
	my (%p) = @_;
	my $where = $p{where} // 'true';
	my $ttl   = sql("SELECT setting FROM pg_settings WHERE name = 'authx.cache_ttl'");
	my $rows  = sql(qq{
SELECT t.api_key, coalesce(k.id::text, '-'), coalesce(k.user_id::text, '-'),
       CASE WHEN k.id IS NULL THEN 'absent'
            WHEN k.revoked_at IS NOT NULL THEN 'revoked'
            WHEN NOT m.current AND k.prev_until <= clock_timestamp() THEN 'revoked'
            WHEN k.expires_at <= clock_timestamp() THEN 'expired'
            WHEN k.owner_disabled THEN 'disabled'
            ELSE 'valid' END,
       (k.remaining IS NULL AND k.rate_limit IS NULL
        AND length(array_to_string(k.scopes, ' ')) < 96)::int,
       coalesce(array_to_string(k.scopes, ' '), ''),
       coalesce(floor(extract(epoch FROM k.expires_at))::bigint, 0),
       coalesce(CASE WHEN m.current THEN 0 ELSE floor(extract(epoch FROM k.prev_until) * 1000)::bigint END, 0)
  FROM public.t_keys t
  CROSS JOIN LATERAL (SELECT sha256(convert_to(t.api_key, 'UTF8')) AS h) d
  LEFT JOIN authx.api_keys k ON k.prefix = substr(t.api_key, 5, 12)
        AND (k.key_hash = d.h OR k.prev_hash = d.h)
  LEFT JOIN LATERAL (SELECT k.key_hash = d.h AS current) m ON true
 WHERE $where
 ORDER BY t.api_key});
	my @rows = map { [ split(/\|/, $_, -1) ] } grep { $_ ne '' } split(/\n/, $rows);
	my @cmds = (['TIME']);
	push @cmds, [ 'HGETALL', redis_key($_->[0]) ], [ 'PEXPIRETIME', redis_key($_->[0]) ]
	  for @rows;
	my @rep = $redis->pipeline(@cmds);
	my $t   = shift @rep;
	my $now_ms = $t->[0] * 1000 + int($t->[1] / 1000);

	my %res = (n => scalar @rows, valid => 0, invalid => 0, hit => 0, miss => 0,
		tombstones => 0, bare => 0, bad => []);
	for my $r (@rows)
	{
		my ($key, $kid, $uid, $state, $cacheable, $scopes, $exp, $bound_ms) = @$r;
		my %e     = @{ shift @rep };
		my $pexp  = shift @rep;
		my $short = substr($key, 0, 18) . '..';
		my $kind =
		    !%e                ? 'miss'
		  : exists $e{revoked} ? 'tombstone'
		  : !exists $e{user_id} ? 'bare'
		  : ($e{expires_at} == 0 || $e{expires_at} * 1000 > $now_ms) ? 'live'
		  :                      'dead';
		$res{tombstones}++ if $kind eq 'tombstone';
		$res{bare}++       if $kind eq 'bare';
		if ($state eq 'valid')
		{
			$res{valid}++;
			if ($kind eq 'live')
			{
				$res{hit}++;
				push @{ $res{bad} }, "$short: a metered, rate-limited or wide-scoped key reads valid"
				  unless $cacheable;
				my $want = "$kid $uid [$scopes] $exp";
				my $got  = join(' ', $e{key_id} // '', $e{user_id} // '', '[' . ($e{scopes} // '') . ']',
					$e{expires_at} // '');
				push @{ $res{bad} }, "$short: entry $got, expected $want" if $got ne $want;
			}
			elsif ($kind eq 'tombstone')
			{
				push @{ $res{bad} }, "valid $short has a tombstone (v=$e{v})";
			}
			else
			{
				$res{miss}++;
			}
		}
		else
		{
			$res{invalid}++;
			push @{ $res{bad} }, "$state $short reads VALID (key_id $e{key_id}, v=$e{v})"
			  if $kind eq 'live';
		}
		if ($kind eq 'live')
		{
			push @{ $res{bad} }, "$short: live entry without an expiry ($pexp)" if $pexp < 0;
			push @{ $res{bad} }, "$short: live entry ends " . ($pexp - $now_ms) . " ms from now > cache_ttl $ttl s"
			  if $pexp - $now_ms > $ttl * 1000;
			push @{ $res{bad} }, "$short: rotated-out secret's entry ends at $pexp, after its grace ($bound_ms)"
			  if $bound_ms > 0 && $pexp > $bound_ms;
			push @{ $res{bad} }, "$short: live entry ends at $pexp, after the key expires ($exp)"
			  if $exp > 0 && $pexp >= ($exp + 1) * 1000;
		}
		push @{ $res{bad} }, "$short: bare version ends " . ($pexp - $now_ms) . " ms from now > cache_ttl $ttl s"
		  if $kind eq 'bare' && ($pexp < 0 || $pexp - $now_ms > $ttl * 1000);
		push @{ $res{bad} }, "$short: tombstone ends " . ($pexp - $now_ms) . " ms from now > twice cache_ttl $ttl s"
		  if $kind eq 'tombstone' && ($pexp < 0 || $pexp - $now_ms > 2 * $ttl * 1000);
	}
	return \%res;
}

sub key_invariant
{
	my ($label, %p) = @_;
	my $r   = key_check(%p);
	my @bad = @{ $r->{bad} };
	ok(!@bad, "$label: invariant holds for all $r->{n} keys ($r->{invalid} invalid, "
		  . "$r->{valid} valid: $r->{hit} hit, $r->{miss} miss)")
	  or diag(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));
	return $r;
}

my $alice = new_user($node, 'alice@example.com');
my $bob   = new_user($node, 'bob@example.com');

# ------------------------------------------------------------------
# Entries as created: plain keys live, the others only a version.
# ------------------------------------------------------------------
my ($plain_id, $plain) = create_key($alice, 'plain', q{ARRAY['docs:write', 'docs:read']});
my ($exp_id, $expk) = create_key($alice, 'expiring', q{expires_at => now() + interval '1 day'});
my ($met_id, $met)  = create_key($alice, 'metered', q{ARRAY['docs:read'], remaining => 10});
my ($lim_id, $lim)  = create_key($alice, 'limited', q{ARRAY['docs:read'], rate_limit => 100});
my ($ref_id, $refk) = create_key($bob, 'refill',
	q{refill_amount => 5, refill_interval => '1 hour'});
my $wide = join(', ', map { "'resource$_:action$_'" } 1 .. 8);    # > 95 characters joined
my ($wide_id, $widek) = create_key($bob, 'wide', "ARRAY[$wide]");
ok(caught_up($node), 'cache_sync after creating keys');

is_deeply(entry($plain), live_entry($plain_id, $alice, 'docs:read docs:write', 0, 1),
	'a plain key: key_id, user_id, scopes (sorted, space separated), expires_at 0 (never), v 1');
my $pexp = pexpiretime($plain);
my ($rnow) = @{ $redis->command('TIME') };
cmp_ok($pexp, '>', $rnow * 1000, 'the entry has an expiry');
cmp_ok($pexp, '<=', ($rnow + 300 + 1) * 1000, 'within cache_ttl (300 s)');
my $exp_epoch = sql("SELECT floor(extract(epoch FROM expires_at))::bigint FROM authx.api_keys WHERE id = '$exp_id'");
is_deeply(entry($expk), live_entry($exp_id, $alice, '', $exp_epoch, 1),
	'a key with an expiry: expires_at in unix seconds, empty scopes');
is_deeply(entry($met),   { v => 1 }, 'a metered key (remaining uses): only v');
is_deeply(entry($lim),   { v => 1 }, 'a rate-limited key: only v');
is_deeply(entry($refk),  { v => 1 }, 'a key with a refill (remaining uses): only v');
is_deeply(entry($widek), { v => 1 }, 'a key whose scopes do not fit the entry: only v');
key_invariant('created');

# ------------------------------------------------------------------
# Verification: the touch (first use) and spending follow with a new
# version; the non-cacheable keys stay bare; a lost entry is repopulated.
# ------------------------------------------------------------------
is(verify($plain, 'docs:read'), 'valid', 'plain key verifies');
is(verify($met), 'valid', 'metered key verifies');
is(verify($lim), 'valid', 'rate-limited key verifies');
is(verify($widek, 'resource3:action3'), 'valid', 'wide-scoped key verifies');
ok(caught_up($node), 'cache_sync after verifications');
is_deeply(entry($plain), live_entry($plain_id, $alice, 'docs:read docs:write', 0, 2),
	'plain key after its first use (last_used_at): live, v 2');
is_deeply(entry($met), { v => 2 }, 'metered key after spending a use: v 2, still not cacheable');
is_deeply(entry($lim), { v => 2 }, 'rate-limited key after its touch: v 2, still not cacheable');
is_deeply(entry($widek), { v => 2 }, 'wide-scoped key after its touch: v 2, still not cacheable');

$redis->command('DEL', redis_key($plain), redis_key($lim), redis_key($widek));
is(verify($plain), 'valid', 'verify the plain key whose entry was lost');
is(verify($lim), 'valid', 'and the rate-limited one');
is(verify($widek), 'valid', 'and the wide-scoped one');
ok(caught_up($node), 'cache_sync');
is_deeply(entry($plain), live_entry($plain_id, $alice, 'docs:read docs:write', 0, 2),
	'the verification repopulated the plain key');
ok(!exists entry($lim)->{user_id}, 'but not the rate-limited key');
ok(!exists entry($widek)->{user_id}, 'nor the wide-scoped key');
key_invariant('verified');

# ------------------------------------------------------------------
# Changes of the row follow: adding a use counter or a rate limit makes
# the key uncacheable at once, removing it makes it live again (the
# trigger, whoever updates the row); apikey_update's new scopes arrive.
# ------------------------------------------------------------------
sql("UPDATE authx.api_keys SET remaining = 100 WHERE id = '$plain_id'");
ok(caught_up($node), 'cache_sync after adding remaining uses');
is_deeply(entry($plain), { v => 3 }, 'a key that got remaining uses: only v (v 3)');
is(verify($plain), 'valid', 'it still verifies (in Postgres)');
sql("UPDATE authx.api_keys SET remaining = NULL, rate_limit = 10 WHERE id = '$plain_id'");
ok(caught_up($node), 'cache_sync after swapping the use counter for a rate limit');
is_deeply(entry($plain), { v => version($plain_id) }, 'a key that got a rate limit: only v');
sql("UPDATE authx.api_keys SET rate_limit = NULL WHERE id = '$plain_id'");
ok(caught_up($node), 'cache_sync after clearing the rate limit');
is_deeply(entry($plain), live_entry($plain_id, $alice, 'docs:read docs:write', 0, version($plain_id)),
	'live again once neither is set');
my $v_before = version($plain_id);
my ($urc, $uout, $uerr) = psql_verbose($node,
	"SELECT authx.apikey_update('$plain_id', scopes => ARRAY['docs:read'])");
is($urc, 0, 'apikey_update changes the scopes') or diag($uerr);
ok(caught_up($node), 'cache_sync after apikey_update');
is_deeply(entry($plain), live_entry($plain_id, $alice, 'docs:read', 0, $v_before + 1),
	'the entry has the new scopes and the next version');
($urc, $uout, $uerr) = psql_verbose($node,
	"SELECT authx.apikey_update('$plain_id', expires_at => now() + interval '1 hour')");
is($urc, 0, 'apikey_update sets an expiry') or diag($uerr);
ok(caught_up($node), 'cache_sync');
my $plain_exp = sql("SELECT coalesce(floor(extract(epoch FROM expires_at))::bigint, 0) FROM authx.api_keys WHERE id = '$plain_id'");
is_deeply(entry($plain), live_entry($plain_id, $alice, 'docs:read', $plain_exp, version($plain_id)),
	'the entry has the new expires_at');
cmp_ok(pexpiretime($plain), '<', ($plain_exp + 1) * 1000, 'and ends by then');
($urc, $uout, $uerr) = psql_verbose($node,
	"SELECT authx.apikey_update('$plain_id', clear => ARRAY['expires_at'])");
is($urc, 0, 'apikey_update clears the expiry') or diag($uerr);
ok(caught_up($node), 'cache_sync');
is(entry($plain)->{expires_at}, 0, 'expires_at 0 again');
key_invariant('updated');

# ------------------------------------------------------------------
# Revocation: a tombstone.
# ------------------------------------------------------------------
is(sql("SELECT authx.apikey_revoke('$plain_id')"), 't', 'revoke the plain key');
ok(caught_up($node), 'cache_sync after the revocation');
is_deeply(entry($plain), { revoked => 1, v => version($plain_id) }, 'revoked: tombstone (revoked=1, v)');
($rnow) = @{ $redis->command('TIME') };
$pexp = pexpiretime($plain);
cmp_ok($pexp, '>', ($rnow + 2 * 300 - 30) * 1000, 'the tombstone lives about twice cache_ttl');
cmp_ok($pexp, '<=', ($rnow + 2 * 300 + 1) * 1000, 'and no longer');
is(verify($plain), 'revoked', 'Postgres agrees');
is_deeply(entry($met), { v => version($met_id) }, 'metered key: v');
sql("SELECT authx.apikey_revoke('$met_id')");
ok(caught_up($node), 'cache_sync');
is_deeply(entry($met), { revoked => 1, v => version($met_id) }, 'a revoked metered key: tombstone too');
key_invariant('revoked');

# ------------------------------------------------------------------
# Rotation with a grace: the old secret keeps an entry that ends with the
# grace at the latest; a second rotation buries the secret two back; a
# revocation tombstones the current and the rotated-out secret.
# ------------------------------------------------------------------
my ($rot_id, $rot0) = create_key($bob, 'rot0', q{ARRAY['docs:read']});
my $rot1 = rotate($rot_id, '1 hour', 'rot1');
ok(caught_up($node), 'cache_sync after a rotation with a grace of 1 hour');
my $until_ms = sql("SELECT floor(extract(epoch FROM prev_until) * 1000)::bigint FROM authx.api_keys WHERE id = '$rot_id'");
is_deeply(entry($rot0), live_entry($rot_id, $bob, 'docs:read', 0, 2), 'the old secret: live during its grace');
is_deeply(entry($rot1), live_entry($rot_id, $bob, 'docs:read', 0, 2), 'the new secret: live');
cmp_ok(pexpiretime($rot0), '<=', $until_ms, 'the old secret\'s entry expires no later than the grace end');
is(verify($rot0), 'valid', 'the old secret verifies during its grace');
$redis->command('DEL', redis_key($rot0));
is(verify($rot0), 'valid', 'verify the old secret again, its entry lost');
ok(caught_up($node), 'cache_sync');
ok(exists entry($rot0)->{user_id}, 'the verification repopulated the old secret');
cmp_ok(pexpiretime($rot0), '<=', $until_ms, 'the repopulated entry also ends with the grace');
my $rot2 = rotate($rot_id, '1 hour', 'rot2');
ok(caught_up($node), 'cache_sync after a second rotation');
is(entry($rot0)->{revoked}, 1, 'the secret two rotations old: tombstone');
is(verify($rot0), 'not_found', 'Postgres no longer knows it');
ok(exists entry($rot1)->{user_id}, 'the secret one rotation old: live (new grace)');
ok(exists entry($rot2)->{user_id}, 'the current secret: live');
key_invariant('rotated twice');
is(sql("SELECT authx.apikey_revoke('$rot_id')"), 't', 'revoke the rotated key');
ok(caught_up($node), 'cache_sync');
is_deeply(entry($rot2), { revoked => 1, v => version($rot_id) }, 'current secret: tombstone');
is_deeply(entry($rot1), { revoked => 1, v => version($rot_id) }, 'rotated-out secret in its grace: tombstone');
is(verify($rot1), 'revoked', 'Postgres: the rotated-out secret is revoked');
key_invariant('rotated key revoked');

# No grace: the old secret is tombstoned at once.
my ($ng_id, $ng0) = create_key($bob, 'nograce0');
ok(caught_up($node), 'cache_sync');
ok(exists entry($ng0)->{user_id}, 'key live');
my $ng1 = rotate($ng_id, '0', 'nograce1');
ok(caught_up($node), 'cache_sync after a rotation without grace');
is(entry($ng0)->{revoked}, 1, 'rotation without grace: the old secret is a tombstone');
ok(exists entry($ng1)->{user_id}, 'the new one live');

# A short grace: once it is over, the old secret's entry is gone.
my ($sg_id, $sg0) = create_key($bob, 'shortgrace0');
my $sg1 = rotate($sg_id, '3 seconds', 'shortgrace1');
ok(caught_up($node), 'cache_sync after a rotation with a grace of 3 s');
$until_ms = sql("SELECT floor(extract(epoch FROM prev_until) * 1000)::bigint FROM authx.api_keys WHERE id = '$sg_id'");
ok(exists entry($sg0)->{user_id}, 'the old secret is live during the grace');
cmp_ok(pexpiretime($sg0), '<=', $until_ms, 'and its entry ends with the grace');
ok(wait_until('the grace is over', 30,
		sub { sql("SELECT clock_timestamp() > prev_until FROM authx.api_keys WHERE id = '$sg_id'") eq 't' }),
	'grace over');
ok(!exists entry($sg0)->{user_id}, 'after the grace the old secret does not read valid from Redis');
is(verify($sg0), 'revoked', 'Postgres: revoked');
is(verify($sg1), 'valid', 'the new secret verifies');
ok(caught_up($node), 'cache_sync');
ok(!exists entry($sg0)->{user_id}, 'the new secret\'s use does not bring the old one back');
key_invariant('grace over');

# ------------------------------------------------------------------
# The owner disabled or deleted: only v (ask Postgres).  Re-enabled and
# verified: live again.
# ------------------------------------------------------------------
my $carol = new_user($node, 'carol@example.com');
my ($c1_id, $c1) = create_key($carol, 'carol1', q{ARRAY['docs:read']});
my ($c2_id, $c2) = create_key($carol, 'carol2', q{ARRAY['docs:read'], remaining => 3});
my ($c3_id, $c3) = create_key($carol, 'carol3');
my $c3r = rotate($c3_id, '1 hour', 'carol3r');
ok(caught_up($node), 'cache_sync');
ok(exists entry($c1)->{user_id}, 'carol\'s plain key is live');
ok(exists entry($c3)->{user_id} && exists entry($c3r)->{user_id}, 'carol\'s rotated key: both secrets live');
is(sql("SELECT authx.user_disable('$carol')"), 't', 'disable carol');
ok(caught_up($node), 'cache_sync after user_disable');
is_deeply(entry($c1), { v => version($c1_id) }, 'owner disabled: the key\'s entry is a bare version');
is_deeply(entry($c2), { v => version($c2_id) }, 'the metered key too');
is_deeply(entry($c3), { v => version($c3_id) }, 'the rotated-out secret too');
is_deeply(entry($c3r), { v => version($c3_id) }, 'and its current secret');
is(verify($c1), 'disabled', 'Postgres: disabled');
key_invariant('owner disabled');
is(sql("SELECT authx.user_enable('$carol')"), 't', 'enable carol');
is(verify($c1, 'docs:read'), 'valid', 'the key verifies again');
is(verify($c3r), 'valid', 'the rotated key verifies again');
ok(caught_up($node), 'cache_sync after user_enable and verify');
is_deeply(entry($c1), live_entry($c1_id, $carol, 'docs:read', 0, version($c1_id)),
	're-enabled and verified: the entry is back');
ok(exists entry($c3r)->{user_id}, 'for the rotated key too');
is_deeply(entry($c2), { v => version($c2_id) }, 'the metered key: still only v');
key_invariant('owner enabled');

my $dave = new_user($node, 'dave@example.com');
my ($d1_id, $d1) = create_key($dave, 'dave1');
ok(caught_up($node), 'cache_sync');
ok(exists entry($d1)->{user_id}, 'dave\'s key is live');
sql("SELECT authx.user_delete('$dave')");
ok(caught_up($node), 'cache_sync after user_delete');
ok(!exists entry($d1)->{user_id}, 'owner deleted: the key does not read valid');
is(verify($d1), 'disabled', 'Postgres: disabled');
key_invariant('owner deleted');

# ------------------------------------------------------------------
# Keys deleted as superuser (directly, or with their owner): tombstones.
# ------------------------------------------------------------------
my ($del_id, $del0) = create_key($bob, 'del0', q{ARRAY['docs:read']});
my $del1 = rotate($del_id, '1 hour', 'del1');
ok(caught_up($node), 'cache_sync');
my $del_v = version($del_id);
sql("DELETE FROM authx.api_keys WHERE id = '$del_id'");
ok(caught_up($node), 'cache_sync after DELETE');
is_deeply(entry($del1), { revoked => 1, v => $del_v + 1 }, 'a deleted key: tombstone with version + 1');
is_deeply(entry($del0), { revoked => 1, v => $del_v + 1 }, 'its rotated-out secret too');
is(verify($del1), 'not_found', 'Postgres: not found');

my $erin = new_user($node, 'erin@example.com');
my ($e1_id, $e1) = create_key($erin, 'erin1');
ok(caught_up($node), 'cache_sync');
ok(exists entry($e1)->{user_id}, 'erin\'s key is live');
sql("DELETE FROM authx.users WHERE id = '$erin'");
ok(caught_up($node), 'cache_sync after deleting the owner row');
is(entry($e1)->{revoked}, 1, 'a key deleted with its owner (ON DELETE CASCADE): tombstone');
key_invariant('keys deleted');

# ------------------------------------------------------------------
# A verification that read the key before its revocation and commits
# after the tombstone is in: its repopulation (an older version) does not
# bring the key back.
# ------------------------------------------------------------------
my ($st_id, $st) = create_key($alice, 'stale');
is(verify($st), 'valid', 'verify (first use: touch)');
ok(caught_up($node), 'cache_sync');
$redis->command('DEL', redis_key($st));    # a miss: the next verification repopulates
my $bg = $node->background_psql('postgres');
$bg->query_safe('BEGIN');
is($bg->query_safe("SELECT code FROM authx.apikey_verify('$st')"), 'valid',
	'verification in an open transaction (queues a repopulation)');
is(sql("SELECT authx.apikey_revoke('$st_id')"), 't', 'revoked meanwhile');
ok(caught_up($node), 'revocation applied');
is(entry($st)->{revoked}, 1, 'tombstone in place');
$bg->query_safe('COMMIT');
ok(caught_up($node), 'the late repopulation was processed');
is_deeply(entry($st), { revoked => 1, v => version($st_id) }, 'the stale repopulation did not overwrite the tombstone');
$bg->quit;
key_invariant('stale repopulation');

# ------------------------------------------------------------------
# Redis restarted without its RDB file while keys change: resync; every
# valid key reads valid or misses, no revoked one reads valid.
# ------------------------------------------------------------------
# Live entries to be lost, some to be revoked during the outage.
my (@r1_ids, @r1);
($r1_ids[$_], $r1[$_]) = create_key($alice, "r1-$_") for 0 .. 3;
ok(caught_up($node), 'cache_sync');
is(scalar(grep { exists entry($_)->{user_id} } @r1), 4, 'four live keys');
my $resyncs = stat_value($node, 'cache_resyncs');
$redis->stop;
sql("SELECT authx.apikey_revoke('$r1_ids[0]')");
sql("SELECT authx.apikey_revoke('$r1_ids[1]')");
create_key($alice, 'r1-during');
$redis->remove_rdb;
$redis->start;
my ($rc, $err) = cache_sync($node, 30);
is($rc, 0, 'cache_sync returns once Redis is back') or diag($err);
key_invariant('Redis restarted without its RDB, right after cache_sync');
ok(caught_up($node, resync_after => $resyncs), 'resynced and caught up');
key_invariant('Redis restarted without its RDB');
is(verify($r1[2]), 'valid', 'a key whose entry was lost verifies');
is(verify($r1[0]), 'revoked', 'a key revoked during the outage is revoked');
ok(caught_up($node), 'cache_sync');
ok(exists entry($r1[2])->{user_id}, 'and the verification repopulated it');
key_invariant('after the restart');

# ------------------------------------------------------------------
# Redis restarted from an RDB file saved before revocations (some while it
# was down): once cache_sync returns, none of them reads valid.
# ------------------------------------------------------------------
my (@r2_ids, @r2);
($r2_ids[$_], $r2[$_]) = create_key($bob, "r2-$_") for 0 .. 3;
ok(caught_up($node), 'cache_sync');
is($redis->command('SAVE'), 'OK', 'SAVE: the RDB holds four live keys');
sql("SELECT authx.apikey_revoke('$r2_ids[0]')");
ok(caught_up($node), 'revoked after the SAVE');
is(entry($r2[0])->{revoked}, 1, 'tombstone (not in the RDB)');
$resyncs = stat_value($node, 'cache_resyncs');
$redis->stop;
sql("SELECT authx.apikey_revoke('$r2_ids[1]')");
$redis->start;
ok(-s $redis->dir . '/dump.rdb', 'Redis started from the old RDB');
($rc, $err) = cache_sync($node, 30);
is($rc, 0, 'cache_sync returns') or diag($err);
key_invariant('Redis from an old RDB, right after cache_sync');
ok(caught_up($node, resync_after => $resyncs), 'resynced');
key_invariant('Redis from an old RDB, after the resync');
$redis->remove_rdb;

# ------------------------------------------------------------------
# The writer terminated with revocations queued (Redis hung): the new
# writer resyncs; once cache_sync returns none of them reads valid.
# ------------------------------------------------------------------
my (@w_ids, @w);
($w_ids[$_], $w[$_]) = create_key($alice, "wterm-$_") for 0 .. 2;
ok(caught_up($node), 'cache_sync');
is(scalar(grep { exists entry($_)->{user_id} } @w), 3, 'three live keys');
$redis->freeze;
sql("SELECT authx.apikey_revoke('$w_ids[0]')");
sql("SELECT authx.apikey_revoke('$w_ids[1]')");
cmp_ok(cache_status($node)->{queue_depth}, '>=', 2, 'revocations queued while Redis hangs');
my $wpid   = cache_writer_pid($node);
my $offset = -s $node->logfile;
ok(kill('TERM', $wpid), "SIGTERM the writer ($wpid)");
ok(wait_until('a new writer', 60, sub { my $p = cache_writer_pid($node); $p && $p != $wpid }),
	'a new writer runs');
$redis->thaw;
($rc, $err) = cache_sync($node, 30);
is($rc, 0, 'cache_sync returns') or diag($err);
key_invariant('writer terminated, right after cache_sync');
ok($node->wait_for_log(qr/authx redis writer: resynced the cache/, $offset), 'the new writer resynced');
ok(caught_up($node), 'caught up');
key_invariant('writer terminated');

# ------------------------------------------------------------------
# The writer killed (SIGKILL: crash-restart, the queue in shared memory is
# lost) with revocations not yet applied: Redis holds writes back (CLIENT
# PAUSE WRITE) but answers reads, so what a gateway would read is visible.
# cache_sync must not return while Redis still holds the revoked keys'
# live entries: either it waits (and times out while writes are held back)
# or the entries are gone by the time it returns.
# ------------------------------------------------------------------
my (@k_ids, @k);
($k_ids[$_], $k[$_]) = create_key($bob, "wkill-$_") for 0 .. 2;
ok(caught_up($node), 'cache_sync');
is(scalar(grep { exists entry($_)->{user_id} } @k), 3, 'three live keys');
is($redis->command('CLIENT', 'PAUSE', 60000, 'WRITE'), 'OK', 'CLIENT PAUSE WRITE');
sql("SELECT authx.apikey_revoke('$k_ids[0]')");
sql("SELECT authx.apikey_revoke('$k_ids[1]')");
is(scalar(grep { exists entry($_)->{user_id} } @k[ 0, 1 ]), 2,
	'the revocations are held back: both entries still live in Redis');
$wpid   = cache_writer_pid($node);
$offset = -s $node->logfile;
ok(kill('KILL', $wpid), "SIGKILL the writer ($wpid)");
ok($node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset), 'crash-restart');
ok(wait_until('the server accepts connections again', 60,
		sub { $node->safe_psql('postgres', 'SELECT 1') eq '1' }), 'server back');
my $t0 = time;
($rc, $err) = cache_sync($node, 5);
note(sprintf('cache_sync after the crash-restart: rc %d after %.3f s', $rc, time - $t0));
my $now_bad = key_check(where => "note LIKE 'wkill-%'");
ok($rc != 0 || !@{ $now_bad->{bad} },
	'writer killed: when cache_sync returns, no revoked key reads valid from Redis')
  or diag("cache_sync returned while Redis still holds: " . join('; ', @{ $now_bad->{bad} }));
is($redis->command('CLIENT', 'UNPAUSE'), 'OK', 'CLIENT UNPAUSE');
ok(wait_until('a resync after the crash-restart', 60,
		sub { $node->log_contains(qr/authx redis writer: resynced the cache/, $offset) }),
	'the new writer resynced');
ok(caught_up($node), 'caught up after the crash-restart');
key_invariant('writer killed');
is(verify($k[0]), 'revoked', 'Postgres: revoked');
is(verify($k[2]), 'valid', 'the unrevoked key verifies');
ok(caught_up($node), 'cache_sync');
ok(exists entry($k[2])->{user_id}, 'and is cached again');
key_invariant('the end');

# ------------------------------------------------------------------
# With a short cache_ttl: a REPEATABLE READ transaction whose snapshot
# predates a revocation verifies the key (valid, as of its snapshot) after
# the tombstone has expired; its repopulation must not make the revoked
# key read valid (it ends within cache_ttl of the snapshot).
# ------------------------------------------------------------------
$node->append_conf('postgresql.conf', "authx.cache_ttl = 2\n");
$node->reload;
ok(wait_until('cache_ttl is 2 s', 30, sub { sql('SHOW authx.cache_ttl') eq '2s' }), 'cache_ttl = 2 s');
my ($rr_id, $rr) = create_key($bob, 'rr-stale');
is(verify($rr), 'valid', 'verify (first use: touch)');
ok(caught_up($node), 'cache_sync');
$bg = $node->background_psql('postgres');
$bg->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
is($bg->query_safe('SELECT count(*) > 0 FROM authx.api_keys'), 't', 'snapshot taken');
is(sql("SELECT authx.apikey_revoke('$rr_id')"), 't', 'revoked after the snapshot');
ok(caught_up($node), 'cache_sync');
is(entry($rr)->{revoked}, 1, 'tombstone');
ok(wait_until('the tombstone expired', 30, sub { !%{ entry($rr) } }), 'the tombstone expired (twice cache_ttl)');
is($bg->query_safe("SELECT code FROM authx.apikey_verify('$rr')"), 'valid',
	'the old snapshot still sees the key valid');
$bg->query_safe('COMMIT');
$bg->quit;
ok(caught_up($node), 'cache_sync');
ok(!exists entry($rr)->{user_id}, 'the revoked key does not read valid from Redis');
# (entries made under the old cache_ttl keep their longer life: check this key only)
key_invariant('stale snapshot after the tombstone expired', where => "note = 'rr-stale'");

# A creation is written without reading the key first; a row restored over
# its own tombstone (deleted, then inserted again as it was before the
# revocation) finds the key there: the entry becomes a bare version nothing
# overwrites ("ask Postgres"), for the rest of the tombstone's life.
my ($rs_id, $rs) = create_key($bob, 'restored');
sql("CREATE TABLE public.t_saved AS SELECT * FROM authx.api_keys WHERE id = '$rs_id'");
is(sql("SELECT authx.apikey_revoke('$rs_id')"), 't', 'revoked');
sql("DELETE FROM authx.api_keys WHERE id = '$rs_id'");
ok(caught_up($node), 'cache_sync');
is(entry($rs)->{revoked}, 1, 'tombstone');
my $ttl = $redis->command('TTL', redis_key($rs));
sql("INSERT INTO authx.api_keys SELECT * FROM public.t_saved");
ok(caught_up($node), 'cache_sync after the restore');
is_deeply(entry($rs), { v => '9223372036854775807' },
	'the restored creation left a bare version nothing overwrites');
cmp_ok($redis->command('TTL', redis_key($rs)), '>=', $ttl - 5, 'and its lifetime');
is(verify($rs), 'valid', 'Postgres has the restored key valid');
ok(caught_up($node), 'cache_sync');
is(entry($rs)->{v}, '9223372036854775807', 'the repopulation did not overwrite it');

done_testing();

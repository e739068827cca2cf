
# Copyright: authx project.  Test helper, not installed.

=pod

=head1 NAME

AuthxTest::Cache - helpers for the Redis write-through cache TAP tests

=head1 SYNOPSIS

  use AuthxTest::Cache qw(:all);

  my $redis = AuthxTest::Redis->new;
  my $node  = cache_node('faults', $redis, conf => 'authx.cache_queue_size = 1024');
  my $uid   = new_user($node, 'a@example.com');
  my @tok   = make_sessions($node, $uid, 5, 'batch1');  # recorded in t_tokens
  revoke_where($node, "note = 'batch1'");
  caught_up($node);                                    # cache_sync
  cache_invariant($node, $redis, 'after batch1');      # tests every token

=head1 DESCRIPTION

Every session token a test creates is recorded in the table
C<public.t_tokens (token, note)> of the node's postgres database (rolled
back ones too, added after the rollback).  C<cache_check> reads the truth
for each of them from authx.sessions and its Redis key, and applies the
app's rule (valid iff the hash has no C<revoked> field and C<expires_at> is
in the future; a miss means "ask Postgres").

=cut

package AuthxTest::Cache;

use strict;
use warnings;

use Carp;
use Digest::SHA qw(sha256_hex);
use Exporter 'import';
use JSON::PP ();
use Time::HiRes qw(time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node stat_value wait_until);

our @EXPORT_OK = qw(cache_node cache_status cache_sync caught_up session_key
  new_user make_sessions record_tokens revoke_where tokens cache_check
  cache_invariant cache_entry wait_connected wait_resync cache_writer_pid
  stat_delta token_in);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

=pod

=over

=item cache_node($name, $redis, url => ..., conf => '...', start => 1)

A preloaded authx node whose cache points at $redis (its C<url> unless
C<url> is given), with the t_tokens table; once started, returns when the
writer is connected and has done its start-up resync.

=cut

sub cache_node
{
	my ($name, $redis, %p) = @_;
	my $url  = $p{url} // $redis->url;
	my $conf = "authx.redis_url = '$url'\nrestart_after_crash = on\n"
	  . ($p{conf} // '');
	my $node = authx_node($name, conf => $conf, %{ $p{node} // {} });
	$node->safe_psql('postgres',
		'CREATE TABLE public.t_tokens (token text PRIMARY KEY, note text NOT NULL)');
	if ($p{wait} // 1)
	{
		wait_connected($node, 30) or die "the redis writer of $name did not connect";
		wait_until('first resync', 30, sub { stat_value($node, 'cache_resyncs') >= 1 })
		  or die "the redis writer of $name did not resync at start";
	}
	return $node;
}

=pod

=item cache_status($node)

authx.cache_status() as a hash ref (JSON booleans compare as 1/0).

=item cache_writer_pid($node)

The writer's pid from cache_status() (0 when none).

=cut

sub cache_status
{
	my ($node) = @_;
	my $j = $node->safe_psql('postgres', 'SELECT authx.cache_status()');
	return JSON::PP->new->decode($j);
}

sub cache_writer_pid
{
	my ($node) = @_;
	return cache_status($node)->{writer_pid};
}

=pod

=item wait_connected($node, $secs)

Wait until the writer is connected (cache_status().connected).

=item wait_resync($node, $before, $secs)

Wait until cache_resyncs exceeds $before (a resync has finished: the stat
is counted once every key is unlinked).

=cut

sub wait_connected
{
	my ($node, $secs) = @_;
	return wait_until('redis writer connected', $secs // 30,
		sub { cache_status($node)->{connected} });
}

sub wait_resync
{
	my ($node, $before, $secs) = @_;
	return wait_until("cache_resyncs > $before", $secs // 30,
		sub { stat_value($node, 'cache_resyncs') > $before });
}

=pod

=item cache_sync($node, $secs)

Run authx.cache_sync('$secs s'); returns (psql exit code, stderr).

=item caught_up($node, resync_after => N, secs => 30)

The writer has caught up: connected, (with resync_after) a resync counted
after N, and cache_sync returned.  Returns true or diags why not.

=cut

sub cache_sync
{
	my ($node, $secs) = @_;
	$secs //= 30;
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', "SELECT authx.cache_sync('$secs s')",
		stdout => \$out, stderr => \$err,
		timeout => $secs + 30,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return ($rc, $err);
}

sub caught_up
{
	my ($node, %p) = @_;
	my $secs = $p{secs} // 30;
	wait_connected($node, $secs) or return 0;
	if (defined $p{resync_after})
	{
		wait_resync($node, $p{resync_after}, $secs) or return 0;
	}
	my ($rc, $err) = cache_sync($node, $secs);
	if ($rc != 0)
	{
		diag("cache_sync failed: $err");
		return 0;
	}
	return 1;
}

=pod

=item session_key($token, $prefix)

The Redis key of a session: <prefix>s:<hex sha256(token)>.

=cut

sub session_key
{
	my ($token, $prefix) = @_;
	return ($prefix // 'authx:') . 's:' . sha256_hex($token);
}

=pod

=item new_user($node, $email)

user_create with a fixed password; returns the id.

=item make_sessions($node, $uid, $n, $note, dbname => ...)

Create $n sessions of the user in one transaction, record them in
t_tokens with $note; returns the tokens.

=item record_tokens($node, $note, @tokens)

Add tokens (e.g. of a rolled-back transaction) to t_tokens.

=item revoke_where($node, $cond)

session_revoke every recorded token matching the SQL condition on t_tokens,
each in its own transaction.

=item token_in(@tokens)

The SQL condition "token IN (...)" for revoke_where and tokens.

=item tokens($node, $cond)

The recorded tokens matching the condition.

=cut

sub new_user
{
	my ($node, $email) = @_;
	return $node->safe_psql('postgres',
		"SELECT authx.user_create('$email', 'Cache-Test-Passw0rd')");
}

sub make_sessions
{
	my ($node, $uid, $n, $note) = @_;
	my $out = $node->safe_psql('postgres', qq{
INSERT INTO public.t_tokens (token, note)
SELECT s.session_token, '$note'
  FROM generate_series(1, $n) g, LATERAL authx.session_create('$uid', NULL, 'test ' || g) s
RETURNING token});
	return split(/\n/, $out);
}

sub record_tokens
{
	my ($node, $note, @tokens) = @_;
	return unless @tokens;
	my $values = join(', ', map { "('$_', '$note')" } @tokens);
	$node->safe_psql('postgres', "INSERT INTO public.t_tokens VALUES $values");
	return;
}

sub revoke_where
{
	my ($node, $cond) = @_;
	# A DO with COMMIT: one transaction per revocation.
	$node->safe_psql('postgres', qq{
DO \$\$
DECLARE t text;
BEGIN
    FOR t IN SELECT token FROM public.t_tokens WHERE $cond ORDER BY token LOOP
        PERFORM authx.session_revoke(t);
        COMMIT;
    END LOOP;
END \$\$;
});
	return 1;
}

sub token_in
{
	my @t = @_;
	return 'false' unless @t;
	return 'token IN (' . join(', ', map { "'$_'" } @t) . ')';
}

sub tokens
{
	my ($node, $cond) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT token FROM public.t_tokens WHERE $cond ORDER BY token");
	return split(/\n/, $out);
}

=pod

=item cache_entry($redis, $token, prefix => , db => )

The key's hash as a hash ref ({} for a miss).

=cut

sub cache_entry
{
	my ($redis, $token, %p) = @_;
	my @r = $redis->pipeline((defined $p{db} ? ([ 'SELECT', $p{db} ]) : ()),
		[ 'HGETALL', session_key($token, $p{prefix}) ]);
	my $r = $r[-1];
	croak "HGETALL failed: " . ($r // 'undef') unless ref $r eq 'ARRAY';
	return {@$r};
}

=pod

=item cache_check($node, $redis, prefix => 'authx:', db => N, where => 'true')

Compare every recorded token (matching the optional condition) with its
Redis entry.  Returns a hash ref: counts n, valid (Postgres says valid),
invalid (revoked, expired, deleted or never committed), hit (valid and read
valid), miss, tombstones, and bad: a list of problems:

  - an invalid session whose entry reads valid (a revocation lost),
  - a valid session read valid with another user_id,
  - a valid session with a tombstone (a wrong revocation),
  - a live entry whose TTL exceeds authx.cache_ttl.

=cut

sub cache_check
{
	my ($node, $redis, %p) = @_;
	my $prefix = $p{prefix} // 'authx:';
	my $where  = $p{where}  // 'true';
	my $ttl    = $node->safe_psql('postgres',
		"SELECT setting FROM pg_settings WHERE name = 'authx.cache_ttl'");
	my $rows = $node->safe_psql('postgres', qq{
SELECT t.token, coalesce(s.user_id::text, '-'),
       CASE WHEN s.id IS NULL THEN 'absent'
            WHEN s.revoked_at IS NOT NULL THEN 'revoked'
            WHEN s.expires_at <= clock_timestamp() THEN 'expired'
            WHEN s.idle_timeout > 0
             AND s.last_seen_at + make_interval(secs => s.idle_timeout) <= clock_timestamp() THEN 'idle'
            ELSE 'valid' END
  FROM public.t_tokens t
  LEFT JOIN authx.sessions s ON s.token_hash = sha256(convert_to(t.token, 'UTF8'))
 WHERE $where
 ORDER BY t.token});
	my @rows = map { [ split(/\|/, $_) ] } grep { $_ ne '' } split(/\n/, $rows);

	my @cmds = ((defined $p{db} ? ([ 'SELECT', $p{db} ]) : ()), ['TIME']);
	for my $r (@rows)
	{
		my $k = session_key($r->[0], $prefix);
		push @cmds, [ 'HGETALL', $k ], [ 'PTTL', $k ];
	}
	my @rep = $redis->pipeline(@cmds);
	shift @rep if defined $p{db};
	my $now = (shift @rep)->[0];

	my %res = (n => scalar @rows, valid => 0, invalid => 0, hit => 0, miss => 0,
		tombstones => 0, bad => []);
	for my $r (@rows)
	{
		my ($token, $uid, $state) = @$r;
		my $h    = shift @rep;
		my $pttl = shift @rep;
		my %e    = ref $h eq 'ARRAY' ? @$h : ();
		my $short = substr($token, 0, 14) . '..';
		my $kind =
		    !%e                  ? 'miss'
		  : exists $e{revoked}   ? 'tombstone'
		  : (defined $e{expires_at} && $e{expires_at} > $now) ? 'live'
		  :                        'dead';
		$res{tombstones}++ if $kind eq 'tombstone';
		if ($state eq 'valid')
		{
			$res{valid}++;
			if ($kind eq 'live')
			{
				$res{hit}++;
				push @{ $res{bad} }, "valid $short reads valid with user_id $e{user_id}, not $uid"
				  if ($e{user_id} // '') ne $uid;
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
			push @{ $res{bad} },
			  "$state $short reads VALID (user_id $e{user_id}, v=$e{v}, expires_at $e{expires_at})"
			  if $kind eq 'live';
		}
		push @{ $res{bad} }, "$short: a live entry with TTL ${pttl} ms > cache_ttl $ttl s"
		  if $kind eq 'live' && $pttl > $ttl * 1000;
	}
	return \%res;
}

=pod

=item cache_invariant($node, $redis, $label, %opts)

cache_check as one test ("no problems"), with the problems diag'ed; the
options as for cache_check.  Returns the cache_check result.

=cut

sub cache_invariant
{
	my ($node, $redis, $label, %p) = @_;
	my $r = cache_check($node, $redis, %p);
	my @bad = @{ $r->{bad} };
	my $ok = is(scalar @bad, 0,
		"$label: invariant holds for all $r->{n} tokens "
		  . "($r->{invalid} invalid, $r->{valid} valid: $r->{hit} hit, $r->{miss} miss)");
	if (!$ok)
	{
		diag($_) for @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ];
		diag(scalar(@bad) - 10 . ' more') if @bad > 10;
	}
	return $r;
}

=pod

=item stat_delta($before, $after, $name)

$after->{$name} - $before->{$name} for two AuthxTest::Util::stats results.

=cut

sub stat_delta
{
	my ($a, $b, $name) = @_;
	return ($b->{$name} // 0) - ($a->{$name} // 0);
}

=pod

=back

=cut

1;


# Threshold alerts, dynamic settings and the gateway lookup counters, with a
# real Redis and the maintenance worker doing the checks.
#
#  - cache_hits / cache_misses count the lookups of gateways only: plain
#    HGETALLs of existing session keys (<prefix>s:<hex sha256(token)>) and
#    of missing ones, interleaved with rate checks of a policy stored in
#    Redis, session_create, session_revoke and session_validate (whose
#    scripts Redis counts in keyspace_hits / keyspace_misses too), add
#    exactly what the HGETALL replies say (an empty reply is a miss), and
#    still exactly that after two more samples of the writer; Redis's own
#    counters grew by more.  After CONFIG RESETSTAT (Redis counters back to
#    0: a new baseline) the counters do not move, later lookups are counted
#    exactly again, and no value of them ever seen goes down.
#    health()->checks->redis->hit_rate is hits / (hits + misses) rounded to
#    4 places;
#  - settings across backends: a backend that read alert.queue_fill answers
#    the next read from its copy (no scan of authx.setting_defs in that
#    transaction), sees another session's committed change in its next
#    transaction (reloaded), not an uncommitted one; the changer sees its
#    own change inside its transaction and, after ROLLBACK, the committed
#    value again (reloaded: the aborted transaction's copy is gone);
#  - error_rate through the worker: with alert.error_rate_min_requests set
#    to 10 by setting_set (the worker must see it), 50 usage records of
#    status 500 raise error_rate within 15 s: one NOTIFY authx_alerts
#    (alert.raised, high, details alert/value/threshold/direction), one
#    alert.raised in audit_log, health() names it in alerts (its status
#    stays ok: alerts do not change it); after two
#    more checks still one notification (raised once per crossing); 5000
#    records of status 200 clear it (alert.cleared notified, audited once,
#    with raised_at);
#  - redis_down: with alert.redis_down_seconds = 2, Redis stopped raises
#    redis_down (health() names it in alerts, and is degraded by its redis
#    check); Redis started again clears it, health() ok without it;
#  - the settings are a table: they survive a restart.
#
# "Not sent" is judged at a sentinel, as in 096_threat_alerts.pl: once the
# worker's check committed (its checked_at is visible), this session
# NOTIFYs tap_sentinel, and the listener has every earlier alert once the
# sentinel arrives.  A sample of the writer is seen in Redis's INFO
# commandstats (the writer sends INFO every second; ours are subtracted).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);

use AuthxTest::Util qw(stats wait_until audit_count worker_pid notifications);
use AuthxTest::Redis;
use AuthxTest::Cache qw(cache_node caught_up session_key new_user make_sessions
  revoke_where token_in);

my $t_start = time();
my $redis   = AuthxTest::Redis->new(name => 'alerts104');
my $node    = cache_node('alerts104', $redis, conf => <<'CONF');
authx.maintenance_naptime = 1
authx.password_memlimit = 64
authx.password_opslimit = 1
CONF

sub sql    { return $node->safe_psql('postgres', $_[0]); }
sub health { return decode_json(sql('SELECT authx.health()')); }

# ------------------------------------------------------------------
# Helpers: lookups
# ------------------------------------------------------------------

# INFO calls Redis has counted (INFO commandstats; the INFO asking is not
# in its own reply).
sub info_calls
{
	my $v = $redis->info('commandstats')->{cmdstat_info} // '';
	return $v =~ /calls=(\d+)/ ? $1 : 0;
}

# Wait until the writer has sampled INFO $k more times from now.
sub wait_writer_samples
{
	my ($k, $what) = @_;
	my $c0   = info_calls();
	my $mine = 0;    # our INFOs after the first, counted before each reply
	return wait_until("$k writer samples ($what)", 15, sub {
		$mine++;
		return info_calls() - $c0 - $mine >= $k;
	});
}

# Every (cache_hits, cache_misses) seen, in order.
my @seen;

sub lookups
{
	my $s = stats($node);
	push @seen, [ $s->{cache_hits}, $s->{cache_misses} ];
	return ($s->{cache_hits}, $s->{cache_misses});
}

# A gateway's reads: one HGETALL per key; (hits, misses) as the replies say.
sub gateway_reads
{
	my @keys = @_;
	my @r = $redis->pipeline(map { [ 'HGETALL', $_ ] } @keys);
	my ($h, $m) = (0, 0);
	for my $r (@r)
	{
		die "HGETALL failed: " . ($r // 'undef') unless ref $r eq 'ARRAY';
		@$r ? $h++ : $m++;
	}
	return ($h, $m);
}

my $missing_n = 0;
sub missing_keys { return map { session_key('axs_never_' . ++$missing_n) } 1 .. $_[0]; }

sub keyspace
{
	my $i = $redis->info('stats');
	return ($i->{keyspace_hits}, $i->{keyspace_misses});
}

# $n rate checks of the Redis policy for $subject (one call per row: the
# cost depends on g); how many Redis answered (fail_mode open answers
# without a remaining).
sub rate_checks
{
	my ($subject, $n) = @_;
	return sql("SELECT count(*) FILTER (WHERE r.remaining IS NOT NULL) FROM generate_series(1, $n) g,"
		  . " LATERAL authx.rate_check('p104', '$subject', (g > 0)::integer) r");
}

# Wait until the counters reached base + expected, then test they are exact.
sub counted_exactly
{
	my ($h0, $m0, $eh, $em, $what) = @_;
	my ($h, $m);
	wait_until("cache_hits +$eh, cache_misses +$em ($what)", 15, sub {
		($h, $m) = lookups();
		return $h - $h0 >= $eh && $m - $m0 >= $em;
	});
	is($h - $h0, $eh, "$what: cache_hits grew by exactly $eh");
	is($m - $m0, $em, "$what: cache_misses grew by exactly $em");
	return;
}

# ------------------------------------------------------------------
# 1. cache_hits / cache_misses
# ------------------------------------------------------------------
my $uid = new_user($node, 'hits104@example.com');
my @tok = make_sessions($node, $uid, 20, 'p1');
sql(q{SELECT authx.rate_policy_set('p104', 100000, '30 days', fail_mode => 'open', store => 'redis')});
ok(caught_up($node), 'the writer caught up with 20 new sessions');
is(scalar(grep { $_ eq session_key($tok[0]) } $redis->scan_keys('authx:s:*')), 1,
	'the session keys are in Redis');

ok(wait_writer_samples(2, 'settled before the reads'), 'the writer samples Redis INFO every second');
my ($h0, $m0) = lookups();
my ($ks_h0, $ks_m0) = keyspace();
my ($eh, $em) = (0, 0);
my ($x, $y);

# Reads, interleaved with authx's own lookups of every kind.
($x, $y) = gateway_reads(map { session_key($_) } @tok[ 0 .. 7 ]);
is("$x/$y", '8/0', 'read 1: 8 existing keys, all hits');
$eh += $x; $em += $y;
($x, $y) = gateway_reads(missing_keys(5));
is("$x/$y", '0/5', 'read 2: 5 missing keys, all misses');
$eh += $x; $em += $y;

is(rate_checks('subj-a', 4), 4, 'rate checks in Redis (a new bucket, then 3 on it)');
my @more = make_sessions($node, $uid, 5, 'p1-more');
revoke_where($node, token_in(@tok[ 0 .. 2 ]));
is(sql("SELECT count(*) FROM unnest(ARRAY['" . join("','", @tok[ 10 .. 13 ]) . "']) t"
	  . " WHERE authx.session_validate(t) IS NOT NULL"), 4, 'session_validate of 4 sessions');

($x, $y) = gateway_reads((map { session_key($_) } @tok[ 0 .. 5 ]), missing_keys(4));
is("$x/$y", '6/4', 'read 3: 6 existing (3 of them revoked: tombstones) and 4 missing');
$eh += $x; $em += $y;
is(rate_checks('subj-b', 3), 3, 'more rate checks (another new bucket)');
ok(caught_up($node), 'cache_sync after creations, revocations and validations');
($x, $y) = gateway_reads((map { session_key($_) } @more), missing_keys(3), map { session_key($_) } @tok[ 14 .. 19 ]);
is("$x/$y", '11/3', 'read 4: the 5 new sessions, 3 missing keys, 6 more existing');
$eh += $x; $em += $y;
is(rate_checks('subj-a', 2), 2, 'rate checks after the last read');
revoke_where($node, token_in(@more[ 0 .. 1 ]));
ok(caught_up($node), 'cache_sync after two more revocations');

my @buckets = $redis->scan_keys('authx:rl:*');
is(scalar(@buckets), 2, 'the rate checks used two buckets in Redis');
counted_exactly($h0, $m0, $eh, $em, 'gateway reads among authx\'s own lookups');
ok(wait_writer_samples(2, 'after the reads'), 'two more writer samples');
my ($h1, $m1) = lookups();
is($h1 - $h0, $eh, 'settled: cache_hits still exact');
is($m1 - $m0, $em, 'settled: cache_misses still exact');
my ($ks_h1, $ks_m1) = keyspace();
cmp_ok($ks_h1 - $ks_h0, '>', $eh, "Redis counted more keyspace hits (" . ($ks_h1 - $ks_h0) . ") than the gateway's $eh");
cmp_ok($ks_m1 - $ks_m0, '>', $em, "Redis counted more keyspace misses (" . ($ks_m1 - $ks_m0) . ") than the gateway's $em");

# CONFIG RESETSTAT: a new baseline.
is($redis->command('CONFIG', 'RESETSTAT'), 'OK', 'CONFIG RESETSTAT');
my ($ks_h2, $ks_m2) = keyspace();
ok($ks_h2 < $ks_h1 && $ks_m2 < $ks_m1, "Redis's keyspace counters went back ($ks_h2/$ks_m2)");
ok(wait_writer_samples(1, 'after RESETSTAT'), 'the writer sampled Redis after the reset');
my ($h2, $m2) = lookups();
is("$h2/$m2", "$h1/$m1", 'the reset changed neither counter');

($eh, $em) = (0, 0);
($x, $y) = gateway_reads((map { session_key($_) } @tok[ 3 .. 9 ]), missing_keys(3));
is("$x/$y", '7/3', 'after the reset: 7 existing, 3 missing');
$eh += $x; $em += $y;
is(rate_checks('subj-c', 3), 3, 'rate checks after the reset');
my @late = make_sessions($node, $uid, 2, 'p1-late');
revoke_where($node, token_in($late[0]));
ok(caught_up($node), 'cache_sync');
($x, $y) = gateway_reads((map { session_key($_) } @late), missing_keys(2));
is("$x/$y", '2/2', 'and 2 new sessions, 2 missing');
$eh += $x; $em += $y;
counted_exactly($h2, $m2, $eh, $em, 'after CONFIG RESETSTAT');
ok(wait_writer_samples(2, 'after the reads past the reset'), 'two more writer samples');
my ($h3, $m3) = lookups();
is("$h3/$m3", ($h2 + $eh) . '/' . ($m2 + $em), 'settled: still exact after the reset');

my @down = grep { $seen[$_][0] < $seen[ $_ - 1 ][0] || $seen[$_][1] < $seen[ $_ - 1 ][1] } 1 .. $#seen;
is(scalar(@down), 0, 'cache_hits and cache_misses never went down (' . scalar(@seen) . ' readings)')
  or diag(join(', ', map { "$seen[$_ - 1][0]/$seen[$_ - 1][1] -> $seen[$_][0]/$seen[$_][1]" } @down));

my $hr = health()->{checks}{redis}{hit_rate};
my ($hh, $mm) = lookups();
# round half up of hh / (hh + mm) to 4 places, in integers
my $want = int((2 * 10000 * $hh + ($hh + $mm)) / (2 * ($hh + $mm))) / 10000;
ok(defined $hr && abs($hr - $want) < 1e-9, "health(): checks.redis.hit_rate $hr = round($hh / ($hh + $mm), 4) = $want");

# ------------------------------------------------------------------
# 4. Settings across backends (before the alerts: the worker must see
#    setting_set's changes just the same).
# ------------------------------------------------------------------
my $sa = $node->background_psql('postgres', on_error_stop => 1);
my $sb = $node->background_psql('postgres', on_error_stop => 1);
$_->set_query_timer_restart for $sa, $sb;
my $get = q{SELECT authx.setting_get('alert.queue_fill')};
# A read in a transaction of its own: "value|loaded" when the backend read
# the tables for it (the scans of authx.setting_defs counted in this
# backend grew across the call), "value|copy" when its copy answered.
my $scans = q{SELECT pg_stat_get_xact_numscans('authx.setting_defs'::regclass)};
sub read_in
{
	my ($s) = @_;
	my $out = $s->query_safe("BEGIN; $scans; $get; $scans; COMMIT");
	my ($n0, $v, $n1) = split(/\n/, $out);
	return "$v|" . ($n1 > $n0 ? 'loaded' : 'copy');
}
is(read_in($sa), '0.8|loaded', 'A reads alert.queue_fill: its default 0.8, loaded');
is(read_in($sa), '0.8|copy', 'A reads it again: from its copy');
is($sb->query_safe(q{SELECT authx.setting_set('alert.queue_fill', '0.5')}), '0.5', 'B sets it to 0.5 (committed)');
is(read_in($sa), '0.5|loaded', 'A\'s next transaction sees 0.5 (its copy was dropped)');
is(read_in($sa), '0.5|copy', 'and keeps the new copy');
$sb->query_safe(q{BEGIN; SELECT authx.setting_set('alert.queue_fill', '0.3')});
is($sb->query_safe($get), '0.3', 'B sees its own uncommitted 0.3 in its transaction');
is($sa->query_safe($get), '0.5', 'A does not see B\'s uncommitted 0.3');
$sb->query_safe('ROLLBACK');
is($sa->query_safe($get), '0.5', 'after B\'s ROLLBACK A still sees 0.5');
is(read_in($sb), '0.5|loaded', 'and so does B: its copy from the aborted transaction is gone');
is(sql($get), '0.5', 'a new session sees 0.5');
# REPEATABLE READ: a copy is loaded through a snapshot of its own, so a
# change committed after A's transaction snapshot is not cached as stale.
$sa->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
is($sa->query_safe($get), '0.5', 'A (REPEATABLE READ) reads 0.5');
$sb->query_safe(q{SELECT authx.setting_set('alert.queue_fill', '0.6')});
$sa->query_safe('SELECT count(*) FROM authx.setting_defs');	# takes in the invalidation
is($sa->query_safe($get), '0.6', 'A, still in its REPEATABLE READ transaction, reads the committed 0.6');
$sa->query_safe('COMMIT');
is(read_in($sa), '0.6|copy', 'and its next transaction answers 0.6 from the copy (not a stale 0.5)');
$sb->query_safe(q{SELECT authx.setting_set('alert.queue_fill', '0.5')});
is(sql(q{SELECT count(*) FROM authx.audit_log WHERE event_type = 'setting.changed'
          AND details->>'name' = 'alert.queue_fill'}), '3', 'three setting.changed audited (the rolled-back one is not)');
$sa->quit;
$sb->quit;

# ------------------------------------------------------------------
# The listener.
# ------------------------------------------------------------------
my $listener = $node->background_psql('postgres');
$listener->set_query_timer_restart;
$listener->query_safe('LISTEN authx_alerts; LISTEN tap_sentinel');
my (@alerts, %sentinels);

sub pump
{
	for my $n (notifications($listener))
	{
		my ($channel, $payload, $pid) = @$n;
		if ($channel eq 'authx_alerts')
		{
			push @alerts, { pid => $pid, json => eval { decode_json($payload) } // {} };
		}
		else
		{
			$sentinels{$payload} = 1;
		}
	}
	return;
}

# The notifications of an event type about one alert, received so far.
sub alerts_of
{
	my ($type, $name) = @_;
	return grep { ($_->{json}{event_type} // '') eq $type && ($_->{json}{details}{alert} // '') eq $name } @alerts;
}

sub wait_alert
{
	my ($type, $name, $secs) = @_;
	my $t0 = time();
	my $ok = wait_until("$type $name", $secs, sub { pump(); scalar alerts_of($type, $name) });
	note(sprintf('%s %s after %.1f s', $type, $name, time() - $t0)) if $ok;
	return $ok ? (alerts_of($type, $name))[0] : undef;
}

my $sentinel_n = 0;
sub sentinel
{
	my $tag = 'sentinel-' . ++$sentinel_n;
	sql("NOTIFY tap_sentinel, '$tag'");
	return wait_until("sentinel $tag", 30, sub { pump(); $sentinels{$tag} });
}

# Wait until the worker completed $n more checks of the alert.
sub wait_checks
{
	my ($name, $n) = @_;
	my $q = "SELECT checked_at FROM authx.alert_state WHERE name = '$name'";
	my $last = sql($q);
	my $seen = 0;
	return wait_until("$n checks of $name", 5 * $n + 10, sub {
		my $c = sql($q);
		if ($c ne $last) { $seen++; $last = $c; }
		return $seen >= $n;
	});
}

# ------------------------------------------------------------------
# 2. error_rate, raised and cleared by the worker.
# ------------------------------------------------------------------
my $worker = worker_pid($node);
is(sql(q{SELECT authx.setting_set('alert.error_rate_min_requests', '10')}), '10',
	'alert.error_rate_min_requests set to 10');
ok(wait_until('a first error_rate sample', 15,
		sub { sql(q{SELECT jsonb_array_length(samples) > 0 FROM authx.alert_state WHERE name = 'error_rate'}) eq 't' }),
	'the worker keeps samples for error_rate');
is(sql(q{SELECT active FROM authx.alert_state WHERE name = 'error_rate'}), 'f', 'error_rate not raised yet');
sql(q{SELECT count(*) FROM (SELECT authx.usage_record('/t104', 500, 2.5) FROM generate_series(1, 50)) s});
my $raised = wait_alert('alert.raised', 'error_rate', 15);
ok($raised, 'alert.raised for error_rate notified within 15 s of 50 status-500 records');
my $j = $raised ? $raised->{json} : {};
is($j->{severity}, 'high', 'severity high');
is($raised ? $raised->{pid} : undef, $worker, 'sent by the maintenance worker');
is_deeply([ @{ $j->{details} // {} }{qw(alert value threshold direction)} ], [ 'error_rate', 1, 0.05, 'above' ],
	'details: alert error_rate, value 1, threshold 0.05, direction above');
is(audit_count($node, q{event_type = 'alert.raised' AND details->>'alert' = 'error_rate'}), 1,
	'one alert.raised for error_rate in audit_log');
is(sql(q{SELECT active || '|' || raised FROM authx.alerts WHERE name = 'error_rate'}), 'true|1',
	'authx.alerts: error_rate active, raised once');
my $h = health();
ok((grep { $_ eq 'error_rate' } @{ $h->{alerts} // [] }), 'health(): alerts names error_rate')
  or diag(encode_json($h));
is($h->{status}, 'ok', 'health(): status still ok (alerts do not change it)');

ok(wait_checks('error_rate', 2), 'two more checks of error_rate');
ok(sentinel(), 'sentinel after them');
is(scalar(alerts_of('alert.raised', 'error_rate')), 1, 'still exactly one alert.raised notification: once per crossing');
is(audit_count($node, q{event_type = 'alert.raised' AND details->>'alert' = 'error_rate'}), 1,
	'and still one in audit_log');

sql(q{SELECT count(*) FROM (SELECT authx.usage_record('/t104', 200, 1.0) FROM generate_series(1, 5000)) s});
my $cleared = wait_alert('alert.cleared', 'error_rate', 15);
ok($cleared, 'alert.cleared for error_rate notified after 5000 status-200 records');
$j = $cleared ? $cleared->{json} : {};
is($j->{severity}, 'info', 'severity info');
ok(defined $j->{details}{raised_at} && defined $j->{details}{value} && $j->{details}{value} < 0.045,
	"details: raised_at, value $j->{details}{value} below the threshold less hysteresis");
is(audit_count($node, q{event_type = 'alert.cleared' AND details->>'alert' = 'error_rate'}), 1,
	'one alert.cleared for error_rate in audit_log');
is(sql(q{SELECT active FROM authx.alerts WHERE name = 'error_rate'}), 'f', 'error_rate no longer active');

# ------------------------------------------------------------------
# 3. redis_down.
# ------------------------------------------------------------------
is(sql(q{SELECT authx.setting_set('alert.redis_down_seconds', '2')}), '2', 'alert.redis_down_seconds set to 2');
$redis->stop;
$raised = wait_alert('alert.raised', 'redis_down', 20);
ok($raised, 'Redis stopped: alert.raised for redis_down');
$j = $raised ? $raised->{json} : {};
is($j->{details}{threshold}, 2, 'details.threshold 2');
cmp_ok($j->{details}{value} // -1, '>=', 2, 'details.value: seconds disconnected, at least 2');
$h = health();
ok((grep { $_ eq 'redis_down' } @{ $h->{alerts} // [] }), 'health(): alerts names redis_down')
  or diag(encode_json($h));
is($h->{status}, 'degraded', 'health(): degraded (the Redis writer is not connected)');
ok(!$h->{checks}{redis}{connected} && !$h->{checks}{redis}{ok}, 'health(): checks.redis not connected, not ok');
is(audit_count($node, q{event_type = 'alert.raised' AND details->>'alert' = 'redis_down'}), 1,
	'one alert.raised for redis_down in audit_log');

$redis->start;
$cleared = wait_alert('alert.cleared', 'redis_down', 20);
ok($cleared, 'Redis back: alert.cleared for redis_down');
ok(wait_until('health ok, redis_down gone', 15,
		sub { my $x = health(); $x->{status} eq 'ok' && !grep { $_ eq 'redis_down' } @{ $x->{alerts} } }),
	'health(): ok again, redis_down no longer named')
  or diag(encode_json(health()));
ok(sentinel(), 'sentinel');
is(scalar(alerts_of('alert.raised', 'redis_down')), 1, 'redis_down was raised once');
is(scalar(alerts_of('alert.cleared', 'redis_down')), 1, 'and cleared once');
$listener->quit;

# ------------------------------------------------------------------
# 4b. The settings survive a restart.
# ------------------------------------------------------------------
$node->restart;
is(sql(q{SELECT string_agg(name || '=' || value, ' ' ORDER BY name) FROM authx.setting_list() WHERE NOT is_default}),
	'alert.error_rate_min_requests=10 alert.queue_fill=0.5 alert.redis_down_seconds=2',
	'after a restart: the three changed settings');
is(sql($get), '0.5', 'setting_get after the restart: 0.5');

note(sprintf('104_alerts_settings ran %.1f s', time() - $t_start));
done_testing();

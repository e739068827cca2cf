
# Usage analytics and monitoring: authx.usage_record, the maintenance
# worker's batched writes into authx.usage_log and the hourly rollups,
# authx.usage_summary, authx.metrics() and authx.health().
#
#  - authx.metrics() passes `promtool check metrics` on a fresh server and
#    after traffic (usage records of varied latencies, statuses, keys and
#    addresses, logins, session validations); every authx.stats row is
#    there under its Prometheus name and type; the request-duration
#    histogram counts each latency in the buckets whose le bounds it, its
#    _count is usage_recorded_total, and its _sum adds llround(latency *
#    1000) us per call, exactly (0.0625 ms is 63 us, 0.1875 ms 188: halves
#    away from zero; 1e9 ms, the largest latency accepted, 1e12 us);
#    refused latencies (-1, NaN, Infinity, 1e10) change no counter;
#  - the records reach usage_log (exactly as given) and the rollups
#    (usage_hourly, usage_hourly_ip) sum to the same; usage_summary reports
#    them; a summary over a worker-written hour and an hour written into
#    usage_hourly directly has a series of two entries;
#  - many sessions recording at once (pgbench) lose nothing uncounted:
#    usage_recorded grows by every call, = written + dropped once settled;
#  - overflow: with authx.usage_queue_size = 1024 and the worker held in a
#    maintenance pass (a session holds a lock the pass needs), usage_record
#    from 4 sessions never errors or waits, usage_recorded counts all 3000
#    calls (and so does the histogram), exactly what does not fit is
#    counted in usage_dropped, recorded = written + dropped + queued while
#    held (the worker holds no batch there), health() says degraded at 88%
#    full and failing when full; once the worker goes on, usage_recorded =
#    usage_written + usage_dropped exactly, usage_log holds usage_written
#    rows and the rollups sum to the same;
#  - a batch the database refuses is lost as a whole and counted as dropped;
#  - SIGTERM of the worker while records are queued (worker held in a
#    maintenance pass): its final flush writes them all before it exits;
#    while it is gone health() says failing (maintenance_worker), and the
#    restarted worker makes it ok again;
#  - SIGKILL of the worker while records are queued: crash-restart, shared
#    memory (queue and counters) reset, the queued records are lost (as
#    documented), usage_record works again and new records are written;
#  - health(): ok on a healthy server, degraded while authx.redis_url points
#    at a port where nothing listens, ok again once it is unset.
#
# The worker is never stopped with SIGSTOP: it is held by a lock it waits
# for, which is where it can be seen (pg_stat_activity) and released at will.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);

use AuthxTest::Util qw(authx_node stat_value stats wait_until worker_pid);

my $promtool;
for my $dir ('/usr/bin', split(/:/, $ENV{PATH} // ''))
{
	if (-x "$dir/promtool") { $promtool = "$dir/promtool"; last; }
}
diag('promtool not found (Debian package prometheus): the promtool checks are skipped')
  unless $promtool;

my $node = authx_node('usage', conf => <<'CONF');
authx.maintenance_naptime = 1
authx.usage_queue_size = 1024
authx.password_memlimit = 64
authx.password_opslimit = 1
restart_after_crash = on
CONF

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub health { return decode_json(sql('SELECT authx.health()')); }

# ------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------

# `promtool check metrics` on the text: (ok, output).
sub promtool_check
{
	my ($text) = @_;
	my $in = "$text\n";
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ $promtool, 'check', 'metrics' ],
		'<', \$in, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return ($ok, $out . $err);
}

sub promtool_ok
{
	my ($text, $what) = @_;
  SKIP:
	{
		skip 'promtool is not installed (Debian package prometheus)', 1 unless $promtool;
		my ($ok, $out) = promtool_check($text);
		ok($ok, "promtool check metrics passes: $what") or diag($out);
	}
	return;
}

# The Prometheus text as { val => {name => value}, type => {name => type},
# help => {name => 1}, buckets => [[le, cumulative], ...] }.
sub parse_metrics
{
	my ($text) = @_;
	my (%val, %type, %help, @buckets);
	for my $line (split /\n/, $text)
	{
		if ($line =~ /^# TYPE (\S+) (\S+)$/) { $type{$1} = $2; next; }
		if ($line =~ /^# HELP (\S+) /) { $help{$1} = 1; next; }
		if ($line =~ /^authx_request_duration_seconds_bucket\{le="([^"]+)"\} (\d+)$/)
		{
			push @buckets, [ $1, $2 ];
			next;
		}
		if ($line =~ /^(authx_[a-z0-9_]+) (\S+)$/) { $val{$1} = $2; next; }
		die "unparsable metrics line: $line";
	}
	return { val => \%val, type => \%type, help => \%help, buckets => \@buckets };
}

sub metrics { return parse_metrics(sql('SELECT authx.metrics()')); }

# The Prometheus name of an authx.stats row.
sub prom_name
{
	my ($name, $kind) = @_;
	my $suffix = $kind eq 'counter' ? '_total' : '';
	return "authx_$1_seconds$suffix" if $name =~ /^(.*)_(us|ms)$/;
	return "authx_$name$suffix";
}

# Every authx.stats row under its name and type; the histogram well formed.
sub metrics_structure_ok
{
	my ($m, $what) = @_;
	my @bad;
	for my $row (split /\n/, sql('SELECT name, kind FROM authx.stats ORDER BY name'))
	{
		my ($name, $kind) = split /\|/, $row;
		my $p = prom_name($name, $kind);
		push @bad, "$name ($p)"
		  unless defined $m->{val}{$p} && ($m->{type}{$p} // '') eq $kind && $m->{help}{$p};
	}
	is(join(', ', @bad), '', "$what: every authx.stats row is a metric of its kind, with HELP and TYPE");

	my $b = $m->{buckets};
	my @problems;
	push @problems, 'not 96 buckets (' . scalar(@$b) . ')' unless @$b == 96;
	push @problems, 'last le is not +Inf' unless @$b && $b->[-1][0] eq '+Inf';
	for my $i (1 .. $#$b)
	{
		push @problems, "le $b->[$i][0] not above $b->[$i-1][0]"
		  unless $b->[$i][0] eq '+Inf' || $b->[$i][0] > $b->[ $i - 1 ][0];
		push @problems, "cumulative count falls at le $b->[$i][0]"
		  if $b->[$i][1] < $b->[ $i - 1 ][1];
	}
	push @problems, '+Inf bucket differs from _count'
	  unless @$b && $b->[-1][1] == ($m->{val}{authx_request_duration_seconds_count} // -1);
	push @problems, 'no _sum' unless defined $m->{val}{authx_request_duration_seconds_sum};
	is(join('; ', @problems), '', "$what: request duration histogram is well formed");
	return;
}

# Wait for the worker to have written or dropped every record counted so
# far: usage_written + usage_dropped reaches $n.
sub wait_settled
{
	my ($n, $what) = @_;
	return wait_until($what, 60, sub {
		my $s = stats($node);
		$s->{usage_written} + $s->{usage_dropped} >= $n && $s->{usage_queue_depth} == 0;
	});
}

# pgbench: $clients sessions each running $script $tx times; (ok, out, err).
my $bench_n = 0;
sub bench
{
	my ($clients, $tx, $script) = @_;
	my $file = $node->basedir . '/usage_bench_' . ++$bench_n . '.sql';
	append_to_file($file, $script);
	my ($out, $err) = ('', '');
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	my $ok = IPC::Run::run(
		[ 'pgbench', '-n', '-c', $clients, '-j', 2, '-t', $tx, '-f', $file, 'postgres' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return ($ok, $out, $err);
}

# A session holding SHARE on authx.trusted_devices: the worker's next
# maintenance pass (naptime 1 s) waits for it in authx._devices_purge, and
# drains nothing meanwhile; returns the session once the worker waits.
sub hold_worker
{
	my ($what) = @_;
	my $wpid = worker_pid($node);
	my $bg   = $node->background_psql('postgres');
	$bg->query_safe('BEGIN; LOCK TABLE authx.trusted_devices IN SHARE MODE;');
	ok( wait_until(
			"$what: worker waiting in maintenance", 30,
			sub {
				sql("SELECT wait_event_type = 'Lock' AND query = 'SELECT authx.maintenance_run()'
				       FROM pg_stat_activity WHERE pid = $wpid") eq 't';
			}),
		"$what: the worker is held in a maintenance pass");
	return $bg;
}

# Rows of usage_log and the sum of usage_hourly requests for a condition
# on the endpoint, as "rows|sum".
sub table_counts
{
	my ($where) = @_;
	return sql(qq{
SELECT (SELECT count(*) FROM authx.usage_log WHERE $where),
       (SELECT coalesce(sum(requests), 0) FROM authx.usage_hourly WHERE $where)});
}

# Requests and errors of usage_hourly_ip for the addresses in a network.
sub ip_counts
{
	my ($net) = @_;
	return sql(qq{SELECT coalesce(sum(requests), 0) || '/' || coalesce(sum(errors), 0)
	                FROM authx.usage_hourly_ip WHERE ip <<= '$net'});
}

# ------------------------------------------------------------------
# A fresh server: metrics and health.
# ------------------------------------------------------------------
is( sql("SELECT count(*) FROM pg_stat_activity
          WHERE backend_type = 'authx maintenance worker' AND pid = " . worker_pid($node)),
	1, 'the maintenance worker runs (pg_stat_activity, backend_type)');
my $fresh_text = sql('SELECT authx.metrics()');
promtool_ok($fresh_text, 'fresh server');
my $m0 = parse_metrics($fresh_text);
metrics_structure_ok($m0, 'fresh server');
is( join(',', map { $m0->{val}{$_} }
		qw(authx_usage_recorded_total authx_usage_written_total authx_usage_dropped_total
		  authx_request_duration_seconds_count authx_usage_queue_depth)),
	'0,0,0,0,0', 'fresh server: no usage counted');
is($m0->{val}{authx_usage_queue_capacity}, 1024, 'usage_queue_capacity = authx.usage_queue_size');
is($m0->{type}{authx_request_duration_seconds}, 'histogram', 'authx_request_duration_seconds is a histogram');
like($m0->{val}{authx_maintenance_last_run_age_seconds}, qr/^\d+\.\d{6}$/,
	'maintenance_last_run_age in seconds');

my $h = health();
is($h->{status}, 'ok', 'health: ok on a healthy server') or diag(explain($h));
is_deeply(
	[ map { $h->{checks}{$_}{ok} ? 1 : 0 }
		  qw(maintenance_worker audit_queue usage_queue redis audit_log_partitions usage_log_partitions) ],
	[ 1, 1, 1, 1, 1, 1 ], 'health: every check ok') or diag(explain($h));
is($h->{checks}{maintenance_worker}{pid}, worker_pid($node), 'health: the worker pid');
is($h->{checks}{redis}{configured} ? 1 : 0, 0, 'health: redis not configured');

# ------------------------------------------------------------------
# Traffic: usage records, logins, session validations.
# ------------------------------------------------------------------
my $key1 = '11111111-1111-4111-8111-111111111111';
my $key2 = '22222222-2222-4222-8222-222222222222';
my $uid  = sql("SELECT authx.user_create('usage\@example.com', 'Usage-Password-1')");
my @tokens;
for my $i (1 .. 3)
{
	my ($st, $tok) = split /\|/,
	  sql("SELECT status, session_token FROM authx.login('usage\@example.com', 'Usage-Password-1', '198.51.100.7')");
	is($st, 'ok', "login $i: ok");
	push @tokens, $tok;
}
is(sql("SELECT status FROM authx.login('usage\@example.com', 'wrong password', '198.51.100.7')"),
	'invalid_credentials', 'a failed login');
is(sql(join(' UNION ALL ', map { "SELECT authx.session_validate('$_')::text" } @tokens)),
	join("\n", ($uid) x 3), 'sessions validate');
is(sql("SELECT authx.session_validate('axs_not_a_token') IS NULL"), 't', 'a bad token does not');

# Latencies (ms) chosen away from bucket bounds, the last past the last
# finite bucket (about 118.6 s); [endpoint, status, latency, key, user, ip].
my @recs = (
	[ 'GET /orders/:id', 200, '0',      $key1, $uid,  '192.0.2.1' ],
	[ 'GET /orders/:id', 200, '0.003',  $key1, undef, '192.0.2.1' ],
	[ 'GET /orders/:id', 200, '0.5',    $key1, undef, '192.0.2.2' ],
	[ 'GET /orders/:id', 404, '1',      $key1, undef, '192.0.2.2' ],
	[ 'POST /orders',    201, '3',      undef, $uid,  '2001:db8::1' ],
	[ 'POST /orders',    201, '10',     undef, undef, undef ],
	[ 'POST /orders',    422, '42',     $key1, undef, '192.0.2.1' ],
	[ 'GET /health',     200, '100',    undef, undef, undef ],
	[ 'GET /health',     503, '250',    undef, undef, '192.0.2.1' ],
	[ 'POST /login',     302, '1000',   undef, undef, '2001:db8::1' ],
	[ 'POST /login',     500, '5000',   undef, undef, '2001:db8::1' ],
	[ 'POST /export',    200, '200000', $key1, undef, '192.0.2.2' ],
);
my $lit = sub { defined $_[0] ? "'$_[0]'" : 'NULL' };
my $values = join(",\n", map {
	sprintf("(%s, %d, %s::real, %s::uuid, %s::uuid, %s::inet)",
		$lit->($_->[0]), $_->[1], $lit->($_->[2]), $lit->($_->[3]), $lit->($_->[4]), $lit->($_->[5]))
} @recs);
my $n_recs = scalar @recs;
sql("SELECT count(authx.usage_record(e, s, l, k, u, i)) FROM (VALUES $values) v(e, s, l, k, u, i)");
ok(wait_settled($n_recs, 'traffic records written'), 'the worker writes the records');
my $s = stats($node);
is(join(',', @{$s}{qw(usage_recorded usage_written usage_dropped)}),
	"$n_recs,$n_recs,0", 'recorded = written = 12, none dropped');

my $expect_rows = join("\n", map {
	join('|', $_->[0], $_->[1], $_->[2], $_->[3] // '', $_->[4] // '', $_->[5] // '')
} sort { $a->[2] <=> $b->[2] } @recs);
is( sql('SELECT endpoint, status, latency_ms, api_key_id, user_id, ip FROM authx.usage_log ORDER BY latency_ms'),
	$expect_rows, 'usage_log holds every record as given');
is( sql(q{SELECT count(DISTINCT at) > 0 AND bool_and(at BETWEEN now() - interval '1 minute' AND now())
            FROM authx.usage_log}),
	't', 'usage_log: at is the time of the call');

# Rollups: per hour, endpoint, status class and key; per address.
my $lat_sum = 0;
$lat_sum += $_->[2] for @recs;
is( sql(q{SELECT sum(requests), sum(latency_sum_ms)::numeric(12,3),
                 sum(requests) FILTER (WHERE status_class = 4), sum(requests) FILTER (WHERE status_class = 5),
                 sum(requests) FILTER (WHERE api_key_id = '11111111-1111-4111-8111-111111111111'),
                 sum(requests) FILTER (WHERE api_key_id = '00000000-0000-0000-0000-000000000000')
            FROM authx.usage_hourly}),
	sprintf('%d|%.3f|2|2|6|6', $n_recs, $lat_sum), 'usage_hourly: requests, latency sum, classes, keys');
is( sql(q{SELECT bool_and(h.latency_hist = x.hist) FROM authx.usage_hourly h
            JOIN (SELECT date_trunc('hour', at, 'UTC') AS hour, endpoint, (status / 100)::smallint AS sc,
                         coalesce(api_key_id, '00000000-0000-0000-0000-000000000000') AS k,
                         authx._latency_hist(array_agg(latency_ms)) AS hist
                    FROM authx.usage_log GROUP BY 1, 2, 3, 4) x
              ON (x.hour, x.endpoint, x.sc, x.k) = (h.hour, h.endpoint, h.status_class, h.api_key_id)}),
	't', 'usage_hourly: latency histograms match the raw rows');
is( sql(q{SELECT string_agg(ip || '=' || requests || '/' || errors, ' ' ORDER BY ip) FROM authx.usage_hourly_ip}),
	'192.0.2.1/32=4/2 192.0.2.2/32=3/1 2001:db8::1/128=3/1', 'usage_hourly_ip: requests and errors per address');

# The histogram of authx.metrics(): each latency counted in the buckets whose
# le bounds it; the sum in seconds.
my $m1 = metrics();
metrics_structure_ok($m1, 'after traffic');
my @wrong;
for my $b (@{ $m1->{buckets} })
{
	my ($le, $count) = @$b;
	my $want = grep { $le eq '+Inf' || $_->[2] / 1000 <= $le } @recs;
	push @wrong, "le=$le: $count, want $want" unless $count == $want;
}
is(join('; ', @wrong), '', 'histogram: every latency in the buckets that bound it');
is($m1->{val}{authx_request_duration_seconds_count}, $n_recs, 'histogram: _count = calls');
# _sum: llround(latency * 1000) us per call (none of these is near a half
# microsecond as a real), printed in seconds with 6 decimals.
my $sum_us = 0;
$sum_us += int($_->[2] * 1000 + 0.5) for @recs;
is($m1->{val}{authx_request_duration_seconds_sum}, sprintf('%.6f', $sum_us / 1e6),
	'histogram: _sum = the latencies rounded to us, in s');
is( join(',', map { $m1->{val}{"authx_${_}_total"} } qw(usage_recorded usage_written usage_dropped)),
	"$n_recs,$n_recs,0", 'metrics: usage counters');
cmp_ok($m1->{val}{authx_session_valid_total}, '>=', 3, 'metrics: session validations counted');
cmp_ok($m1->{val}{authx_password_verifies_total}, '>=', 4, 'metrics: password verifications counted');

# The summary of the rollups.
my $sum = decode_json(sql("SELECT authx.usage_summary('1 hour')"));
is(join(',', @{$sum}{qw(requests errors_4xx errors_5xx)}), "$n_recs,2,2", 'usage_summary: requests, 4xx, 5xx');
ok($sum->{error_rate} == 0.3333, "usage_summary: error rate 4/12 ($sum->{error_rate})");
# p50: the 6th of 12 latencies, 10 ms; p95 and p99 in the last bucket:
# its lower bound, 0.01 * 2^23.5 ms.
my $last_lo = 0.01 * 2**23.5;
ok(abs($sum->{latency_ms}{p50} - 10) <= 10 * 0.0905, "usage_summary: p50 within 9.05% of 10 ms ($sum->{latency_ms}{p50})");
ok(abs($sum->{latency_ms}{p95} - $last_lo) < 0.001 && abs($sum->{latency_ms}{p99} - $last_lo) < 0.001,
	"usage_summary: p95, p99 = lower bound of the last bucket ($sum->{latency_ms}{p95}, $sum->{latency_ms}{p99})");
ok(abs($sum->{latency_ms}{mean} - $lat_sum / $n_recs) < 0.001, 'usage_summary: mean latency');
is( join(' ', map { "$_->{endpoint}=$_->{requests}/$_->{errors}" } @{ $sum->{top_endpoints} }),
	'GET /orders/:id=4/1 POST /orders=3/1 GET /health=2/1 POST /login=2/1 POST /export=1/0',
	'usage_summary: top endpoints, by requests then name');
is( join(' ', map { "$_->{api_key_id}=$_->{requests}/$_->{errors}" } @{ $sum->{top_keys} }),
	"$key1=6/2", 'usage_summary: top keys (no key left out)');
is( join(' ', map { "$_->{ip}=$_->{requests}/$_->{errors}" } @{ $sum->{top_ips} }),
	'192.0.2.1=4/2 192.0.2.2=3/1 2001:db8::1=3/1',
	'usage_summary: top addresses');
my $sum_k = decode_json(sql("SELECT authx.usage_summary('1 hour', '$key1')"));
is_deeply([ $sum_k->{requests}, $sum_k->{top_ips} ], [ 6, undef ],
	'usage_summary for one key: its requests, no addresses');

promtool_ok(sql('SELECT authx.metrics()'), 'after traffic');

# ------------------------------------------------------------------
# Latency bounds and the rounding of _sum.
# ------------------------------------------------------------------
my $r0 = stat_value($node, 'usage_recorded');
for my $bad ('-1', 'NaN', 'Infinity', '1e10')
{
	my ($rc, $out, $err) = $node->psql('postgres', "SELECT authx.usage_record('GET /bounds', 200, '$bad')");
	like($err, qr/latency_ms must be between 0 and 1e9 milliseconds/, "latency $bad refused");
}
is(stat_value($node, 'usage_recorded'), $r0, 'refused calls are not counted');
sql(q{SELECT count(authx.usage_record('GET /bounds', 200, l)) FROM unnest('{0.0625, 0.1875, 1e9}'::real[]) l});
my $mb = metrics();
is( join(',', $mb->{val}{authx_usage_recorded_total} - $r0,
		$mb->{val}{authx_request_duration_seconds_count} - $m1->{val}{authx_request_duration_seconds_count}),
	'3,3', 'bounds: 3 calls recorded and counted in the histogram');
$sum_us += 63 + 188 + 1_000_000_000_000;
is($mb->{val}{authx_request_duration_seconds_sum}, sprintf('%.6f', $sum_us / 1e6),
	'bounds: _sum grew by 63 us (0.0625 ms), 188 us (0.1875 ms) and 1e12 us (1e9 ms)');
is(($mb->{buckets}[-2][1] - $m1->{buckets}[-2][1]) . '/' . ($mb->{buckets}[-1][1] - $m1->{buckets}[-1][1]), '2/3',
	'bounds: 1e9 ms counted in +Inf only, the other two below the last finite le');
ok(wait_settled($r0 + 3, 'bounds settled'), 'bounds: the worker writes them');
is(sql(q{SELECT string_agg(latency_ms::text, ',' ORDER BY latency_ms) FROM authx.usage_log WHERE endpoint = 'GET /bounds'}),
	'0.0625,0.1875,1e+09', 'bounds: usage_log holds the three latencies');

# ------------------------------------------------------------------
# Two hours: one written by the worker, one inserted into the rollup.
# ------------------------------------------------------------------
# Not across an hour boundary: the current hour must be one entry.
my $to_hour = sql(q{SELECT extract(epoch FROM date_trunc('hour', now(), 'UTC') + interval '1 hour' - now())});
if ($to_hour < 15)
{
	note("waiting ${to_hour}s for the next hour");
	wait_until('next hour', 30, sub { sql("SELECT extract(minute FROM now() AT TIME ZONE 'UTC') = 0") eq 't' });
}
my $before = stat_value($node, 'usage_written');
sql(qq{SELECT count(authx.usage_record('GET /series', CASE WHEN g % 5 = 0 THEN 500 ELSE 200 END, g::real, '$key2'))
         FROM generate_series(1, 20) g});
ok(wait_settled($before + 20, 'series records'), 'series: the worker writes 20 records for key 2');
sql(qq{INSERT INTO authx.usage_hourly (hour, endpoint, status_class, api_key_id, requests, latency_sum_ms, latency_hist)
       VALUES (date_trunc('hour', now(), 'UTC') - interval '2 hours', 'GET /series', 2, '$key2', 3, 60,
               authx._latency_hist(ARRAY[5, 5, 50]::real[])),
              (date_trunc('hour', now(), 'UTC') - interval '2 hours', 'GET /series', 4, '$key2', 1, 7,
               authx._latency_hist(ARRAY[7]::real[]))});
my $ser = decode_json(sql("SELECT authx.usage_summary('3 hours', '$key2')"));
is(scalar @{ $ser->{series} }, 2, 'series: two entries');
my $hours = sql(q{SELECT to_char(date_trunc('hour', now(), 'UTC') - interval '2 hours', 'YYYY-MM-DD"T"HH24'), 
                         to_char(date_trunc('hour', now(), 'UTC'), 'YYYY-MM-DD"T"HH24')});
my ($h_past, $h_now) = split /\|/, $hours;
is( join(' ', map { substr($_->{hour}, 0, 13) . "=$_->{requests}/$_->{errors_4xx}/$_->{errors_5xx}" } @{ $ser->{series} }),
	"$h_past=4/1/0 $h_now=20/0/4", 'series: in hour order, requests and errors per hour')
  or diag(explain($ser->{series}));
ok(abs($ser->{series}[0]{p50_ms} - 5) <= 5 * 0.0905, "series: p50 of the past hour ($ser->{series}[0]{p50_ms})");
ok(abs($ser->{series}[1]{p50_ms} - 10) <= 10 * 0.0905, "series: p50 of this hour ($ser->{series}[1]{p50_ms})");
is_deeply([ $ser->{requests}, $ser->{errors_4xx}, $ser->{errors_5xx} ], [ 24, 1, 4 ], 'series: totals');
is(decode_json(sql("SELECT authx.usage_summary('1 hour', '$key2')"))->{requests}, 20,
	'a shorter window leaves the past hour out');

# ------------------------------------------------------------------
# Many sessions at once, the worker draining meanwhile.
# ------------------------------------------------------------------
my $s0 = stats($node);
my ($bok, $bout, $berr) = bench(8, 250, <<'SQL');
\set st random(1, 5)
SELECT authx.usage_record('GET /bench', :st * 100 + 1, (random() * 50)::real, NULL, NULL, ('203.0.113.' || :client_id)::inet);
SQL
ok($bok, 'pgbench: 8 sessions x 250 usage_record') or diag("$bout\n$berr");
like($bout, qr/number of transactions actually processed: 2000\/2000/, 'pgbench: all 2000 calls succeeded');
like($bout, qr/number of failed transactions: 0\b/, 'pgbench: no failed call');
ok(wait_settled($s0->{usage_written} + $s0->{usage_dropped} + 2000, 'bench settled'), 'bench: settled');
my $s1 = stats($node);
my ($w, $d) = ($s1->{usage_written} - $s0->{usage_written}, $s1->{usage_dropped} - $s0->{usage_dropped});
is($w + $d, 2000, "bench: written ($w) + dropped ($d) = 2000 calls");
is($s1->{usage_recorded} - $s0->{usage_recorded}, 2000, 'bench: usage_recorded grew by the 2000 calls');
is(table_counts("endpoint = 'GET /bench'"), "$w|$w", 'bench: usage_log rows and usage_hourly requests = written');
is(ip_counts('203.0.113.0/24'), $w . '/' . sql(q{SELECT count(*) FROM authx.usage_log WHERE endpoint = 'GET /bench' AND status >= 400}),
	'bench: usage_hourly_ip requests = written, errors = 4xx and 5xx');

# ------------------------------------------------------------------
# Overflow: the worker held, a ring of 1024 slots.
# ------------------------------------------------------------------
$s0 = stats($node);
my $blocker = hold_worker('overflow');
is(stat_value($node, 'usage_queue_depth'), 0, 'overflow: queue empty to begin with');
sql(q{SELECT count(authx.usage_record('GET /overflow', 200, 1)) FROM generate_series(1, 900)});
$h = health();
is($h->{status}, 'degraded', 'health: degraded with the usage queue 88% full') or diag(explain($h));
ok(!$h->{checks}{usage_queue}{ok} && $h->{checks}{usage_queue}{fill} == 0.8789,
	"health: usage_queue check not ok, fill 0.8789 ($h->{checks}{usage_queue}{fill})");

my $t0 = time();
($bok, $bout, $berr) = bench(4, 525, <<'SQL');
SELECT authx.usage_record('GET /overflow', 429, 2.5, NULL, NULL, '198.51.100.1');
SQL
my $elapsed = time() - $t0;
ok($bok, "overflow: 4 sessions x 525 more calls return while the worker is held (${elapsed}s)")
  or diag("$bout\n$berr");
like($bout, qr/number of transactions actually processed: 2100\/2100/, 'overflow: every call succeeded');
like($bout, qr/number of failed transactions: 0\b/, 'overflow: no call failed');
$s1 = stats($node);
is($s1->{usage_dropped} - $s0->{usage_dropped}, 3000 - 1024, 'overflow: usage_dropped counts exactly the 1976 that did not fit');
is($s1->{usage_recorded} - $s0->{usage_recorded}, 3000, 'overflow: usage_recorded counts all 3000 calls, dropped ones too');
is( $s1->{usage_recorded},
	$s1->{usage_written} + $s1->{usage_dropped} + $s1->{usage_queue_depth},
	'overflow: usage_recorded = usage_written + usage_dropped + usage_queue_depth while the worker is held');
is($s1->{usage_queue_depth}, 1024, 'overflow: the queue is full');
is($s1->{usage_written} - $s0->{usage_written}, 0, 'overflow: nothing written while the worker is held');
is(sql(q{SELECT count(*) FROM authx.usage_log WHERE endpoint = 'GET /overflow'}), 0, 'overflow: usage_log has none yet');
$h = health();
is($h->{status}, 'failing', 'health: failing with the usage queue full');
ok(!$h->{checks}{usage_queue}{ok} && $h->{checks}{usage_queue}{fill} == 1,
	"health: usage_queue check not ok, fill 1 ($h->{checks}{usage_queue}{fill})");
my $mf = metrics();
is($mf->{val}{authx_request_duration_seconds_count}, $mf->{val}{authx_usage_recorded_total},
	'overflow: the histogram counts every call too (_count = usage_recorded_total)');
promtool_ok(sql('SELECT authx.metrics()'), 'with the queue full');

$blocker->query_safe('COMMIT');
$blocker->quit;
ok(wait_settled($s0->{usage_written} + $s0->{usage_dropped} + 3000, 'overflow settled'),
	'overflow: the worker goes on and empties the queue');
$s1 = stats($node);
is($s1->{usage_written} - $s0->{usage_written}, 1024, 'overflow: the 1024 queued records written');
# Every call is recorded, and ends written or dropped (a full queue or a
# failed batch): nothing else happened to the queue since the start.
is($s1->{usage_recorded}, $s1->{usage_written} + $s1->{usage_dropped},
	"usage_recorded ($s1->{usage_recorded}) = usage_written ($s1->{usage_written}) + usage_dropped ($s1->{usage_dropped})");
is(sql('SELECT count(*) FROM authx.usage_log'), $s1->{usage_written}, 'usage_log rows = usage_written');
# The rows inserted directly above are two hours old; the worker's are not.
is( sql(q{SELECT sum(requests) FROM authx.usage_hourly
           WHERE hour > date_trunc('hour', now(), 'UTC') - interval '2 hours'}),
	$s1->{usage_written}, 'usage_hourly requests (those the worker wrote) sum to usage_written');
is( sql(q{SELECT (SELECT sum(requests) FROM authx.usage_hourly_ip) = (SELECT count(*) FROM authx.usage_log WHERE ip IS NOT NULL)}),
	't', 'usage_hourly_ip requests sum to the usage_log rows with an address');
is(table_counts("endpoint = 'GET /overflow'"), '1024|1024',
	'overflow: usage_log 1024 rows (900 + 124), usage_hourly 1024');
is(ip_counts('198.51.100.1/32'), '124/124', 'overflow: usage_hourly_ip has the 124 429s');
ok(wait_until('health ok after overflow', 30, sub { health()->{status} eq 'ok' }),
	'health: ok again once the queue is empty');

# ------------------------------------------------------------------
# A batch the database refuses is lost whole and counted as dropped.
# ------------------------------------------------------------------
sql(q{ALTER TABLE authx.usage_log ADD CONSTRAINT tap_poison CHECK (endpoint <> 'POST /poison')});
$s0 = stats($node);
my $offset = -s $node->logfile;
sql(q{SELECT authx.usage_record('POST /poison', 200, 1)});
ok(wait_settled($s0->{usage_written} + $s0->{usage_dropped} + 1, 'poison settled'), 'poison: settled');
$s1 = stats($node);
is( join(',', map { $s1->{$_} - $s0->{$_} } qw(usage_recorded usage_written usage_dropped)),
	'1,0,1', 'poison: recorded, not written, dropped');
is(table_counts("endpoint = 'POST /poison'"), '0|0', 'poison: neither raw row nor rollup');
ok($node->log_contains(qr/authx maintenance worker: writing usage records failed: .*tap_poison/, $offset),
	'poison: the failure is logged');
sql(q{ALTER TABLE authx.usage_log DROP CONSTRAINT tap_poison});
sql(q{SELECT authx.usage_record('POST /fine', 200, 1)});
ok(wait_settled($s1->{usage_written} + $s1->{usage_dropped} + 1, 'fine settled'), 'after poison: settled');
is(table_counts("endpoint = 'POST /fine'"), '1|1', 'after poison: the next record is written');
ok(wait_until('recovery logged', 10,
		sub { $node->log_contains(qr/authx maintenance worker: writing usage records works again/, $offset) }),
	'after poison: recovery logged');

# ------------------------------------------------------------------
# SIGTERM of the worker while records are queued: the final flush writes
# them; health is failing until the worker is back.
# ------------------------------------------------------------------
my $wpid = worker_pid($node);
$blocker = hold_worker('sigterm');
sql(q{SELECT count(authx.usage_record('GET /sigterm', 200, g::real)) FROM generate_series(1, 500) g});
is(stat_value($node, 'usage_queue_depth'), 500, 'sigterm: 500 records queued');
$offset = -s $node->logfile;
is(sql("SELECT pg_terminate_backend($wpid)"), 't', 'sigterm: terminate the worker');
$blocker->query_safe('COMMIT');
$blocker->quit;
ok(wait_until('worker gone', 30, sub { worker_pid($node) == 0 }), 'sigterm: the worker exits');
my $gone = sql(q{
SELECT authx.health();
SELECT count(*) FROM authx.usage_log WHERE endpoint = 'GET /sigterm';
SELECT value FROM authx.stats WHERE name = 'usage_queue_depth';
SELECT value FROM authx.stats WHERE name = 'maintenance_worker_pid';
});
my ($gh, $gcount, $gdepth, $gpid) = split /\n/, $gone;
$gh = decode_json($gh);
SKIP:
{
	skip 'the worker was restarted before the checks ran', 4 if $gpid != 0;
	is($gcount, 500, 'sigterm: all 500 queued records written by the final flush');
	is($gdepth, 0, 'sigterm: queue empty');
	is($gh->{status}, 'failing', 'health: failing while no worker runs');
	is_deeply([ $gh->{checks}{maintenance_worker}{ok} ? 1 : 0, $gh->{checks}{maintenance_worker}{pid} ],
		[ 0, 0 ], 'health: maintenance_worker check not ok, pid 0');
}
ok($node->log_contains(qr/authx maintenance worker shutting down/, $offset), 'sigterm: shutdown logged');
ok( $node->log_contains(qr/background worker "authx maintenance worker" \(PID $wpid\) exited with exit code 1/, $offset),
	'sigterm: exit code 1 (restarted)');
ok(wait_until('worker restarted', 30, sub { my $p = worker_pid($node); $p != 0 && $p != $wpid }),
	'sigterm: a new worker starts');
ok(wait_until('health ok after restart', 30, sub { health()->{status} eq 'ok' }),
	'health: ok again with the new worker');
is(table_counts("endpoint = 'GET /sigterm'"), '500|500', 'sigterm: 500 rows, once each');

# ------------------------------------------------------------------
# SIGKILL of the worker while records are queued: crash-restart.
# ------------------------------------------------------------------
$wpid    = worker_pid($node);
$blocker = hold_worker('sigkill');
sql(q{SELECT count(authx.usage_record('GET /lost', 200, 1)) FROM generate_series(1, 300)});
is(stat_value($node, 'usage_queue_depth'), 300, 'sigkill: 300 records queued');
$offset = -s $node->logfile;
ok(kill('KILL', $wpid), 'sigkill: SIGKILL the worker');
ok( wait_until(
		'crash-restart', 60,
		sub { my $p = worker_pid($node); $p != 0 && $p != $wpid }),
	'sigkill: the server restarts, with a new worker');
eval { $blocker->quit };
ok($node->log_contains(qr/\(PID $wpid\) was terminated by signal 9/, $offset), 'sigkill: postmaster saw the crash');
ok($node->log_contains(qr/all server processes terminated; reinitializing/, $offset), 'sigkill: and reinitialized');
$s = stats($node);
is( join(',', @{$s}{qw(usage_recorded usage_written usage_dropped usage_queue_depth)}),
	'0,0,0,0', 'sigkill: shared memory reset (counters, queue)');
is(table_counts("endpoint = 'GET /lost'"), '0|0', 'sigkill: the queued records are lost (documented)');
is(sql(q{SELECT count(authx.usage_record('GET /after', 200, 1, NULL, NULL, '192.0.2.9')) FROM generate_series(1, 50)}),
	50, 'sigkill: usage_record works after the restart');
ok(wait_settled(50, 'after crash settled'), 'sigkill: settled');
is(table_counts("endpoint = 'GET /after'"), '50|50', 'sigkill: new records written');
is(ip_counts('192.0.2.9/32'), '50/0', 'sigkill: and rolled up per address');
is(join(',', map { stat_value($node, $_) } qw(usage_recorded usage_written usage_dropped)),
	'50,50,0', 'sigkill: counters count from the restart');
my $m2 = metrics();
is($m2->{val}{authx_request_duration_seconds_count}, 50, 'sigkill: the histogram restarts too');

# ------------------------------------------------------------------
# Redis configured but unreachable: degraded.
# ------------------------------------------------------------------
ok(wait_until('health ok', 30, sub { health()->{status} eq 'ok' }), 'health: ok before redis');
my $dead = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf('postgresql.conf', "authx.redis_url = 'redis://127.0.0.1:$dead'");
$node->reload;
ok(wait_until('health degraded', 30, sub { health()->{status} eq 'degraded' }),
	'health: degraded while authx.redis_url points where nothing listens');
$h = health();
is_deeply([ map { $h->{checks}{redis}{$_} ? 1 : 0 } qw(configured connected ok) ], [ 1, 0, 0 ],
	'health: redis configured, not connected, not ok');
is(join(',', map { $h->{checks}{$_}{ok} ? 1 : 0 } qw(maintenance_worker usage_queue audit_queue)), '1,1,1',
	'health: the other checks ok');
promtool_ok(sql('SELECT authx.metrics()'), 'with redis down');
$node->append_conf('postgresql.conf', "authx.redis_url = ''");
$node->reload;
ok(wait_until('health ok without redis', 30, sub { health()->{status} eq 'ok' }),
	'health: ok again once authx.redis_url is unset');

$node->stop;
done_testing();

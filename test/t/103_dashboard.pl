
# The dashboard example (examples/dashboard): its server against a real
# cluster, and the page as headless Chromium draws it.
#
#  - the server (python3 + psycopg2) runs as a role that is a member of
#    authx_admin; /api/usage, /api/security and /api/health answer 200 with
#    the functions' JSON: requests, 4xx, 5xx, the endpoints, the addresses
#    and the hourly series are exactly the usage_record calls made (for each
#    "since" of the page's selector), the security events by severity at
#    least those audited (the server may add alert.raised); a malformed
#    since answers 400 with SQLSTATE 22007 (22023 for a non-positive one),
#    a since carrying SQL is only a bad interval; only the page's own files
#    are served;
#  - a role without authx_admin gets 503 with SQLSTATE 42501; a database
#    that does not answer gets 503; the DSN's password is in no answer and
#    no log line;
#  - Chromium (--dump-dom): on an empty database every chart says "no
#    data" and the page still finishes; after the traffic, the requests,
#    latency and errors charts are <svg> with bars (rect) and lines (path),
#    legends p50/p95/p99 and 4xx/5xx, the top endpoints and addresses are
#    drawn with their names, the security panel with every severity, the
#    health panel with its status and checks, and no error is shown;
#  - Chromium (--screenshot, 1280x1600): a PNG of that size that is not
#    blank: many colours, and the chart colours (request bars, 4xx bars)
#    cover real areas.
#
# Needs /usr/bin/python3 with psycopg2 (a failure when missing) and Debian's
# chromium: when that is missing and cannot be installed (not root, or
# apt-get fails), the whole test is skipped, saying so.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run ();
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node stats wait_until);

my $src    = $ENV{AUTHX_SRC} // abs_path(dirname(__FILE__) . '/../..');
my $dash   = "$src/examples/dashboard";
my $python = '/usr/bin/python3';

# ---------------------------------------------------------------- tools
sub find_chromium
{
	for my $prog (qw(chromium chromium-browser))
	{
		for my $d (split(/:/, $ENV{PATH} // ''), '/usr/bin', '/usr/local/bin')
		{
			return "$d/$prog" if -f "$d/$prog" && -x _;
		}
	}
	return undef;
}

# (exit code, stdout, stderr) of a command, with a timeout; -1 when it
# could not run or timed out.
sub run_cmd
{
	my ($cmd, %opt) = @_;
	my ($out, $err) = ('', '');
	local %ENV = (%ENV, %{ $opt{env} // {} });
	my $in = $opt{stdin};
	my $ok = eval {
		IPC::Run::run($cmd, '<', (defined $in ? \$in : \undef), '>', \$out, '2>', \$err,
			IPC::Run::timeout($opt{timeout} // 60));
		1;
	};
	my $rc = $ok ? $? >> 8 : -1;
	$err .= $@ unless $ok;
	return ($rc, $out, $err);
}

my $chromium = find_chromium();
if (!defined $chromium && $> == 0)
{
	# Root (a developer machine or CI without run.sh's package step): install it.
	diag('chromium is missing: apt-get install chromium');
	my %env = (DEBIAN_FRONTEND => 'noninteractive');
	my ($rc) = run_cmd([ 'apt-get', 'update', '-qq' ], env => \%env, timeout => 300);
	($rc) = run_cmd([ 'apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'chromium' ],
		env => \%env, timeout => 900) if $rc == 0;
	$chromium = find_chromium();
}
plan skip_all => 'Debian package chromium is not installed and could not be installed '
  . '(not root, or apt-get failed): apt-get install --no-install-recommends chromium to run this test'
  unless defined $chromium;

my ($py_rc, undef, $py_err) = run_cmd([ $python, '-c', 'import psycopg2' ]);
is($py_rc, 0, "$python can import psycopg2")
  or die "install python3-psycopg2: $py_err";

# ---------------------------------------------------------------- the cluster
my $node = authx_node('dashboard', conf => "authx.maintenance_naptime = 1\n");
sub sql { return $node->safe_psql('postgres', $_[0]); }

my $password = 'Dash-Pw-7f3c9a';
sql(qq{CREATE ROLE dash LOGIN PASSWORD '$password' IN ROLE authx_admin;
       CREATE ROLE outsider LOGIN PASSWORD '$password'});

my $tmp = PostgreSQL::Test::Utils::tempdir('dashboard');
my @servers;

# Start server.py with this DSN on a free port; returns { url, log, h }.
sub start_server
{
	my ($name, $dsn) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $log  = "$tmp/server_$name.log";
	local %ENV = (%ENV, AUTHX_DSN => $dsn, PORT => $port, HOST => '127.0.0.1');
	delete $ENV{$_} for qw(PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGPASSWORD);
	my $h = IPC::Run::start([ $python, "$dash/server.py" ], '<', \undef, '>', $log, '2>&1');
	my $s = { name => $name, url => "http://127.0.0.1:$port", log => $log, h => $h };
	push @servers, $s;
	my $http = HTTP::Tiny->new(timeout => 5, proxy => undef, http_proxy => undef, no_proxy => ['127.0.0.1']);
	ok(wait_until("dashboard $name listens", 30, sub {
		die "server.py exited\n" unless alive($h);
		my $r = $http->get("$s->{url}/dashboard.css");
		return $r->{status} == 200;
	}), "server.py ($name) answers") or diag(slurp_file($log));
	return $s;
}

# Whether the harness's process still runs (not exited, not a zombie).
sub alive
{
	my ($h) = @_;
	my $pid = $h->{KIDS}[0]{PID} or return 0;
	open(my $fh, '<', "/proc/$pid/stat") or return 0;
	my $stat = <$fh> // '';
	close $fh;
	return $stat =~ /^\d+ \(.*\) ([A-Za-z])/ && $1 ne 'Z' && $1 ne 'X';
}

sub stop_servers
{
	for my $s (@servers)
	{
		next unless $s->{h};
		eval { $s->{h}->signal('TERM'); };
		eval { $s->{h}->finish(IPC::Run::timeout(10)); 1 } or eval { $s->{h}->kill_kill(grace => 2); };
		delete $s->{h};
	}
	return;
}
END { stop_servers(); }

# Straight to 127.0.0.1, whatever *_proxy variables the environment has.
my $http = HTTP::Tiny->new(timeout => 30, proxy => undef, http_proxy => undef, no_proxy => ['127.0.0.1']);

# GET: (status, decoded JSON or undef, raw body, content type).
sub get_json
{
	my ($s, $path) = @_;
	my $r = $http->get($s->{url} . $path);
	my $json = eval { decode_json($r->{content}) };
	return ($r->{status}, $json, $r->{content}, $r->{headers}{'content-type'} // '');
}

# ---------------------------------------------------------------- Chromium
my $shot_n = 0;

# Run headless Chromium on the page: (ok, stdout, stderr).
sub chromium
{
	my ($url, @args) = @_;
	my $profile = "$tmp/chromium_" . ++$shot_n;
	mkdir $profile;
	my ($rc, $out, $err) = run_cmd(
		[
			$chromium, '--headless', '--no-sandbox', '--disable-gpu',
			'--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
			'--disable-extensions', '--hide-scrollbars', '--force-device-scale-factor=1',
			'--no-proxy-server',
			"--user-data-dir=$profile", '--virtual-time-budget=10000', @args, $url
		],
		env => { HOME => $profile, XDG_CONFIG_HOME => "$profile/.config", XDG_CACHE_HOME => "$profile/.cache" },
		timeout => 90);
	return ($rc == 0, $out, $err);
}

# The DOM once the page says it is done (data-state ready or error);
# Chromium gets three tries, for a slow machine.
sub rendered_dom
{
	my ($url) = @_;
	my ($ok, $dom, $err);
	for my $try (1 .. 3)
	{
		($ok, $dom, $err) = chromium($url, '--dump-dom');
		return $dom if $ok && $dom =~ /<body[^>]*data-state="(?:ready|error)"/;
		diag("chromium --dump-dom, try $try: " . ($ok ? 'page not finished' : 'failed') . "\n"
			  . substr($err, -2000));
	}
	return $dom // '';
}

# The inner HTML of <section id="ID"> (sections do not nest).
sub section
{
	my ($dom, $id) = @_;
	return $dom =~ m{<section[^>]*\bid="\Q$id\E"[^>]*>(.*?)</section>}s ? $1 : '';
}

# The text of an HTML fragment, entities of the serializer undone.
sub text_of
{
	my ($html) = @_;
	(my $t = $html) =~ s/<[^>]*>/ /g;
	$t =~ s/&lt;/</g;
	$t =~ s/&gt;/>/g;
	$t =~ s/&nbsp;/ /g;
	$t =~ s/&amp;/&/g;
	$t =~ s/\s+/ /g;
	return $t;
}

# ---------------------------------------------------------------- servers
my $dsn  = sprintf('host=%s port=%d dbname=postgres user=dash password=%s', $node->host, $node->port, $password);
my $main = start_server('main', $dsn);

# ---------------------------------------------------------------- empty database
{
	my ($st, $u) = get_json($main, '/api/usage');
	is($st, 200, 'empty database: /api/usage answers 200');
	is($u->{requests}, 0, '... with 0 requests');
	my $dom = rendered_dom("$main->{url}/");
	like($dom, qr/<body[^>]*data-state="ready"/, 'empty database: the page finishes loading without an error');
	for my $id (qw(chart-requests chart-latency chart-errors top-endpoints top-ips))
	{
		like(text_of(section($dom, $id)), qr/\bno data\b/, "empty database: $id says no data");
	}
	like(text_of(section($dom, 'security')), qr/no security events/, 'empty database: no security events');
}

# ---------------------------------------------------------------- traffic
my @endpoints = ('GET /v1/users/me', 'POST /v1/login', 'POST /v1/sessions/validate',
	'GET /v1/apikeys', 'POST /v1/token/refresh');
my @ips = ('10.0.0.1', '10.0.0.2', '10.0.0.3', '192.0.2.44', '198.51.100.7', '2001:db8::7');
my (@values, %by_ep, %by_ip);
my ($n, $n4, $n5) = (0, 0, 0);
for my $i (1 .. 360)
{
	my $ep = $endpoints[ ($i * 7) % @endpoints ];
	$ep = $endpoints[0] if $i % 3 == 0;    # uneven: one endpoint leads
	my $ip = $ips[ $i % @ips ];
	$ip = $ips[0] if $i % 4 == 0;
	my $status = $i % 25 == 0 ? 500 : $i % 9 == 0 ? 404 : 200;
	my $lat = 0.4 + (($i * 37) % 100)**2 / 40;    # 0.4 .. 245 ms
	$lat = 900 + $i if $i % 50 == 0;               # a slow tail
	push @values, sprintf("('%s', %d, %.3f, '%s')", $ep, $status, $lat, $ip);
	$n++;
	$n4++ if $status == 404;
	$n5++ if $status == 500;
	$by_ep{$ep}++;
	$by_ip{$ip}++;
}
sql('SELECT count(authx.usage_record(v.e, v.s, v.l::real, NULL, NULL, v.ip::inet)) FROM (VALUES '
	  . join(",\n", @values) . ') v(e, s, l, ip)');
ok(wait_until('usage records written', 60, sub {
	my $s = stats($node);
	$s->{usage_written} + $s->{usage_dropped} >= $n && $s->{usage_queue_depth} == 0;
}), "the worker wrote the $n usage records");
is(stats($node)->{usage_dropped}, 0, 'none was dropped');

my %severity = (info => 5, low => 4, medium => 7, high => 2, critical => 1);
my %ev_type  = (info => 'login.succeeded', low => 'login.mfa_failed', medium => 'login.failed',
	high => 'dashboard.test_high', critical => 'dashboard.test_critical');
my @audits;
for my $sev (sort keys %severity)
{
	push @audits, "SELECT authx.audit('$ev_type{$sev}', '$sev', NULL, '10.0.0.9'::inet);" for 1 .. $severity{$sev};
}
sql(join("\n", @audits) . "\nSELECT authx.audit_flush('30 seconds');");
ok(wait_until('audit events visible', 30, sub {
	sql(q{SELECT (authx.security_summary('1 hour')->>'events')::int}) >= 19;
}), 'the audit events are written');

# ---------------------------------------------------------------- the JSON API
{
	my ($st, $u, $raw, $ct) = get_json($main, '/api/usage?since=24%20hours');
	is($st, 200, '/api/usage?since=24 hours answers 200');
	like($ct, qr{^application/json}, '... as application/json');
	ok(ref $u eq 'HASH', '... a JSON object') or diag($raw);
	$u //= {};
	my @missing = grep { !exists $u->{$_} }
	  qw(from to requests errors_4xx errors_5xx error_rate latency_ms top_endpoints top_ips series);
	is("@missing", '', 'usage: every key the page reads is there');
	is($u->{requests},   $n,  "usage: requests = the $n recorded");
	is($u->{errors_4xx}, $n4, "usage: errors_4xx = the $n4 404s");
	is($u->{errors_5xx}, $n5, "usage: errors_5xx = the $n5 500s");
	is_deeply({ map { $_->{endpoint} => $_->{requests} } @{ $u->{top_endpoints} // [] } }, \%by_ep,
		'usage: top_endpoints are the endpoints, with their counts');
	is_deeply({ map { $_->{ip} => $_->{requests} } @{ $u->{top_ips} // [] } }, \%by_ip,
		'usage: top_ips are the addresses, with their counts');
	my $series = $u->{series} // [];
	my $sum = 0;
	$sum += $_->{requests} for @$series;
	ok(@$series >= 1 && $sum == $n, 'usage: the hourly series adds up to the requests');
	my @skeys = grep { !exists $series->[0]{$_} } qw(hour requests errors_4xx errors_5xx p50_ms p95_ms p99_ms);
	is("@skeys", '', 'usage: a series entry has every key the page reads');
	ok(defined $u->{latency_ms}{p95} && $u->{latency_ms}{p95} > 0, 'usage: latency p95 is there');

	for my $since ('1 hour', '7 days', '30 days')
	{
		(my $q = $since) =~ s/ /%20/g;
		my ($st2, $u2) = get_json($main, "/api/usage?since=$q");
		is("$st2 " . ($u2->{requests} // 'none'), "200 $n", "usage since $since: 200, all $n requests");
	}
	my ($st3, $u3) = get_json($main, '/api/usage');
	is("$st3 " . ($u3->{requests} // 'none'), "200 $n", 'usage without since: the default 24 hours');

	my ($st4, $sec, $raw4) = get_json($main, '/api/security?since=24%20hours');
	is($st4, 200, '/api/security answers 200');
	$sec //= {};
	# At least those audited here: the server audits events of its own
	# (alert.raised, high, when the error rate of this traffic trips an
	# operational alert).
	for my $sev (sort keys %severity)
	{
		cmp_ok($sec->{by_severity}{$sev} // 0, '>=', $severity{$sev}, "security: the $severity{$sev} $sev events")
		  or diag($raw4);
	}
	my %types = map { $_->{event_type} => 1 } @{ $sec->{by_type} // [] };
	my @absent = grep { !$types{$_} } sort values %ev_type;
	is("@absent", '', 'security: by_type has every event type audited');

	my ($st5, $hl) = get_json($main, '/api/health');
	is($st5, 200, '/api/health answers 200');
	like($hl->{status} // '', qr/^(ok|degraded)$/, "health: status ok or degraded ($hl->{status})");
	ok(ref $hl->{checks} eq 'HASH' && exists $hl->{checks}{maintenance_worker}, 'health: checks, maintenance_worker among them');
}

# ---------------------------------------------------------------- bad input
{
	my ($st, $e, $raw) = get_json($main, '/api/usage?since=banana');
	is($st, 400, 'a malformed since: 400');
	ok(defined $e->{sqlstate} && $e->{sqlstate} =~ /^22(007|023)$/, "... sqlstate 22007 or 22023 ($raw)");
	ok(defined $e->{error} && length $e->{error}, '... and an error message');

	($st, $e, $raw) = get_json($main, '/api/security?since=-5%20minutes');
	is("$st " . ($e->{sqlstate} // ''), '400 22023', 'security with a negative since: 400, 22023');

	($st, $e, $raw) = get_json($main, '/api/usage?since=' . '1%20hour%27)%3B%20DROP%20TABLE%20authx.usage_hourly%3B--');
	is($st, 400, 'a since carrying SQL is only a malformed interval: 400');
	is(sql(q{SELECT to_regclass('authx.usage_hourly') IS NOT NULL}), 't', '... and usage_hourly is still there');

	($st, $e, $raw) = get_json($main, '/api/usage?api_key_id=not-a-uuid');
	is("$st " . ($e->{sqlstate} // ''), '400 22P02', 'a malformed api_key_id: 400, 22P02');

	for my $path ('/server.py', '/../server.py', '/README.md', '/etc/passwd', '/api/nothing')
	{
		my $r = $http->get($main->{url} . $path);
		is($r->{status}, 404, "GET $path: 404");
	}
	my $r = $http->get("$main->{url}/");
	ok($r->{status} == 200 && $r->{content} =~ /dashboard\.js/ && $r->{headers}{'content-type'} =~ m{^text/html},
		'GET /: the page');
	like($r->{headers}{'content-security-policy'} // '', qr/default-src 'none'/,
		'... with a Content-Security-Policy that allows nothing from elsewhere');
}

# ---------------------------------------------------------------- no privilege, no database
{
	my $outsider = start_server('outsider',
		sprintf('host=%s port=%d dbname=postgres user=outsider password=%s', $node->host, $node->port, $password));
	my ($st, $e, $raw) = get_json($outsider, '/api/health');
	is("$st " . ($e->{sqlstate} // ''), '503 42501', 'a role without authx_admin: 503, 42501');

	my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
	my $dead = start_server('nodb', "postgresql://dash:$password\@127.0.0.1:$dead_port/postgres?connect_timeout=3");
	($st, $e, $raw) = get_json($dead, '/api/usage');
	is($st, 503, 'no database: 503');
	ok(ref $e eq 'HASH' && defined $e->{error}, '... with an error message') or diag($raw);
	unlike($raw, qr/\Q$password\E/, '... that does not show the password');
}

# ---------------------------------------------------------------- the page
{
	my $dom = rendered_dom("$main->{url}/");
	like($dom, qr/<body[^>]*data-state="ready"/, 'the page finishes loading with every call answered');
	like($dom, qr/<div[^>]*id="error"[^>]*\bhidden\b/, 'no error banner');
	unlike($dom, qr/\bcannot draw\b/, 'no panel failed to draw');

	my $req = section($dom, 'chart-requests');
	like($req, qr/<svg\b/, 'requests per hour: an <svg>');
	like($req, qr/<rect[^>]*class="s-req"/, 'requests per hour: bars');
	unlike(text_of($req), qr/\bno data\b/, 'requests per hour: not "no data"');

	my $lat = section($dom, 'chart-latency');
	for my $p (qw(p50 p95 p99))
	{
		ok(scalar(grep { /\bd="M[^"]+"/ && /\bclass="line s-$p"/ } $lat =~ /<path\b[^>]*>/g),
			"latency: a $p line (a <path>)");
		like(text_of($lat), qr/\b$p\b/, "latency: the legend says $p");
	}
	like(text_of($lat), qr/\b\d+\b/, 'latency: axis labels');

	my $err = section($dom, 'chart-errors');
	like($err, qr/<rect[^>]*class="s-4xx"/, 'errors: 4xx bars');
	like($err, qr/<rect[^>]*class="s-5xx"/, 'errors: 5xx bars');
	like(text_of($err), qr/4xx.*5xx/, 'errors: the legend says 4xx and 5xx');

	my $eps = text_of(section($dom, 'top-endpoints'));
	like(section($dom, 'top-endpoints'), qr/<svg\b.*<rect/s, 'top endpoints: an <svg> with bars');
	for my $ep (@endpoints) { like($eps, qr/\Q$ep\E/, "top endpoints: $ep"); }

	my $ipt = text_of(section($dom, 'top-ips'));
	like(section($dom, 'top-ips'), qr/<svg\b.*<rect/s, 'top addresses: an <svg> with bars');
	for my $ip (@ips) { like($ipt, qr/(?<![\w.:])\Q$ip\E(?![\w.:])/, "top addresses: $ip"); }

	my $sec = section($dom, 'security');
	for my $sev (qw(info low medium high critical))
	{
		like(text_of($sec), qr/\b$sev\b/, "security: severity $sev");
		like($sec, qr/<rect[^>]*class="fill sev-$sev"/, "security: a $sev bar");
	}
	like(text_of($sec), qr/login\.failed/, 'security: the top event types');

	my $hl = section($dom, 'health');
	like(text_of($hl), qr/\b(ok|degraded)\b/, 'health: the overall status');
	like($hl, qr/data-check="maintenance_worker"/, 'health: the maintenance_worker check');
	my $checks = () = $hl =~ /data-check="/g;
	cmp_ok($checks, '>=', 3, "health: every check ($checks)");

	my $n_fmt = $n;
	1 while $n_fmt =~ s/^(\d+)(\d{3})/$1,$2/;
	like(text_of(section($dom, 'kpis')), qr/Requests \Q$n_fmt\E\b/, "the requests card says $n_fmt");
}

# ---------------------------------------------------------------- a screenshot
{
	my $png = "$tmp/dashboard.png";
	my ($ok, $out, $err) = chromium("$main->{url}/", '--window-size=1280,1600', "--screenshot=$png");
	ok($ok && -s $png, 'chromium --screenshot writes a PNG') or diag(substr($err, -2000));

	# Decode it (zlib and the PNG filters, python3 stdlib only) and count
	# the distinct colours and the pixels of two chart colours.
	my $decoder = <<'PY';
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
pos, idat, hdr = 8, [], None
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8])
    if kind == b'IHDR':
        hdr = struct.unpack('>IIBBBBB', data[pos + 8:pos + 8 + n])
    elif kind == b'IDAT':
        idat.append(data[pos + 8:pos + 8 + n])
    pos += 12 + n
w, h, depth, ctype, _, _, interlace = hdr
assert depth == 8 and ctype in (2, 6) and not interlace, 'unsupported PNG %r' % (hdr,)
bpp = 3 if ctype == 2 else 4
raw = zlib.decompress(b''.join(idat))
stride = w * bpp
prev = bytearray(stride)
counts = {}
for y in range(h):
    f = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    if f == 1:
        for i in range(bpp, stride):
            line[i] = (line[i] + line[i - bpp]) & 255
    elif f == 2:
        line = bytearray(map(lambda a, b: (a + b) & 255, line, prev))
    elif f == 3:
        for i in range(stride):
            line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
    elif f == 4:
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for i in range(0, stride, bpp):
        px = bytes(line[i:i + 3])
        counts[px] = counts.get(px, 0) + 1
    prev = line
req = counts.get(bytes.fromhex('6366f1'), 0) + counts.get(bytes.fromhex('818cf8'), 0)
amber = counts.get(bytes.fromhex('f59e0b'), 0)
print(w, h, len(counts), req, amber)
PY
	my ($rc, $res, $perr) = run_cmd([ $python, '-c', $decoder, $png ], timeout => 120);
	is($rc, 0, 'the PNG decodes') or diag($perr);
	my ($w, $h, $colours, $req_px, $amber_px) = split ' ', $res // '';
	is("@{[ $w // '?' ]}x@{[ $h // '?' ]}", '1280x1600', 'the screenshot is 1280x1600');
	cmp_ok($colours // 0, '>', 200, "the screenshot is not blank ($colours distinct colours)");
	cmp_ok($req_px // 0, '>', 2000, "request bars are painted ($req_px px)");
	cmp_ok($amber_px // 0, '>', 50, "4xx bars and the medium severity bar are painted ($amber_px px)");
}

# ---------------------------------------------------------------- logs
stop_servers();
for my $s (@servers)
{
	my $log = slurp_file($s->{log});
	unlike($log, qr/\Q$password\E/, "server $s->{name}: its log does not show the password");
}
like(slurp_file($main->{log}), qr/password=\*+/, 'the log shows the DSN with the password masked');

$node->stop;
done_testing();

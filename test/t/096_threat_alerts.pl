
# Alerts on NOTIFY authx_alerts, and auto-blocks that outlive the attacker.
#
#  - a listener session (background psql, LISTEN authx_alerts) receives a
#    JSON payload (keys at, event_type, severity, user_id, ip, details) sent
#    by the maintenance worker: for the auto-block of an attacker whose
#    failed logins ran in a transaction it rolled back (threat.auto_block,
#    high, ip the address, details rule login_bruteforce, event_type,
#    threshold 20, within_s 300, net, until; sender the worker), and the
#    block is there all the same, for 1 hour from the attack; for the /64
#    of an IPv6 auto-block; for a manual authx.audit of severity critical
#    (every field as given, at = the logged at);
#  - by default (authx.alert_min_severity = high) medium, low and info
#    events are not sent, high ones are; after ALTER SYSTEM ... 'medium' and
#    a reload, medium events (threat.detected for an allowlisted address
#    too) are sent and low ones still not;
#  - details that would make the payload too long for NOTIFY (8000 bytes
#    of ASCII, 3940 two-byte characters) arrive as {"truncated": true} with
#    the rest of the event, while audit_log keeps them whole; 7000 bytes
#    arrive whole;
#  - with 'off' (ALTER SYSTEM, restart) nothing is sent, not even an
#    auto-block, which is still made and audited; the auto-block made
#    before the restart persists (ip_blocks row, login answers 'blocked');
#    back to the default with a reload, alerts come again;
#  - alerts_sent counts exactly the alerts the listener received.
# "Not sent" is judged at a sentinel: after audit_flush (events written,
# their NOTIFYs committed) this session NOTIFYs tap_sentinel, and the
# listener, receiving notifications in commit order, has every alert that
# was sent once the sentinel arrives.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

use AuthxTest::Util qw(authx_node stat_value worker_pid wait_until audit_count notifications);

my $node = authx_node('alerts', conf => <<'CONF');
authx.maintenance_naptime = 1
authx.password_memlimit = 64
authx.password_opslimit = 1
CONF

sub sql { return $node->safe_psql('postgres', $_[0]); }

# ------------------------------------------------------------------
# The listener.
# ------------------------------------------------------------------
my $listener;
my @alerts;       # { pid, raw, json } in order of arrival
my %sentinels;    # payloads seen on tap_sentinel

sub listen_start
{
	$listener = $node->background_psql('postgres');
	$listener->set_query_timer_restart;
	$listener->query_safe('LISTEN authx_alerts; LISTEN tap_sentinel');
	return;
}

# psql prints the notifications it got after each query.
sub pump
{
	for my $n (notifications($listener))
	{
		my ($channel, $payload, $pid) = @$n;
		if ($channel eq 'authx_alerts')
		{
			my $json = eval { decode_json($payload) };
			push @alerts, { pid => $pid, raw => $payload, json => $json };
		}
		else
		{
			$sentinels{$payload} = 1;
		}
	}
	return;
}

# The alerts (decoded payloads) received so far of an event type.
sub alerts_of
{
	my ($type) = @_;
	return map { $_->{json} }
	  grep { $_->{json} && ($_->{json}{event_type} // '') eq $type } @alerts;
}

# Wait (at most 60 s) for the first alert of an event type; its entry.
sub wait_alert
{
	my ($type) = @_;
	my $found;
	wait_until("an alert $type", 60, sub {
		pump();
		($found) = grep { $_->{json} && ($_->{json}{event_type} // '') eq $type } @alerts;
		return defined $found;
	});
	return $found;
}

# Every alert sent so far has arrived once this returns true.
my $sentinel_n = 0;
sub sentinel
{
	my $tag = 'sentinel-' . ++$sentinel_n;
	sql("SELECT authx.audit_flush('30 s'); NOTIFY tap_sentinel, '$tag'");
	return wait_until("sentinel $tag", 60, sub { pump(); $sentinels{$tag} });
}

# An address as given in an alert ("192.0.2.5/32" for a host) as host text.
sub host_of
{
	my ($ip) = @_;
	return undef unless defined $ip;
	(my $h = $ip) =~ s{/(?:32|128)$}{};
	return $h;
}

sub audit
{
	my ($type, $severity, $ip, $details) = @_;
	$ip      = defined $ip ? "'$ip'" : 'NULL';
	$details = defined $details ? $details : q{'{}'};
	sql("SELECT authx.audit('$type', '$severity', NULL, $ip, $details)");
	return;
}

sub set_min_severity
{
	my ($value) = @_;
	sql(defined $value
		? "ALTER SYSTEM SET authx.alert_min_severity = '$value'"
		: 'ALTER SYSTEM RESET authx.alert_min_severity');
	sql('SELECT pg_reload_conf()');
	return;
}

# ------------------------------------------------------------------
# An attacker's rolled-back transaction gets its address blocked, alerted.
# ------------------------------------------------------------------
sql(q{SELECT authx.rate_policy_set('login', 1000, '1 minute')});
listen_start();
my $worker = worker_pid($node);
ok($worker > 0, "the maintenance worker runs (pid $worker)");
is(sql('SHOW authx.alert_min_severity'), 'high', 'authx.alert_min_severity defaults to high');

my $attacker = '198.51.100.77';
my $t_attack = sql('SELECT clock_timestamp()');
my ($rc, $out, $err) = $node->psql('postgres', qq{
BEGIN;
SELECT string_agg(l.status, ',' ORDER BY g)
  FROM generate_series(1, 25) g,
       LATERAL authx.login('victim\@example.com', 'wrong password ' || g, '$attacker') l;
ROLLBACK;
}, on_error_stop => 1);
is($rc, 0, 'the attacker ran 25 failed logins in a transaction and rolled it back') or diag($err);
my @statuses = split /,/, $out;
is(scalar(@statuses), 25, '25 answers');
is(join(',', @statuses[0 .. 19]), join(',', ('invalid_credentials') x 20), 'the first 20: invalid_credentials');
ok(wait_until('the attacker blocked', 60, sub { sql("SELECT authx.ip_blocked('$attacker')") eq 't' }),
	'the attacker\'s address is blocked although its transaction rolled back');
is(sql("SELECT source || '|' || reason FROM authx.ip_blocks WHERE net = '$attacker' AND NOT allow"),
	'auto|threat rule login_bruteforce', 'by login_bruteforce (an ip_blocks row, source auto)');
is(sql("SELECT until >= '$t_attack'::timestamptz + interval '1 hour' AND until <= now() + interval '1 hour'"
	  . " FROM authx.ip_blocks WHERE net = '$attacker' AND NOT allow"),
	't', 'for block_for (1 hour) from the attack');

my $alert = wait_alert('threat.auto_block');
ok($alert, 'the listener received an alert for the auto-block');
my $j = $alert ? $alert->{json} : {};
is_deeply([ sort keys %$j ], [qw(at details event_type ip severity user_id)],
	'the payload: at, event_type, severity, user_id, ip, details');
is($j->{severity}, 'high', 'severity high');
is(host_of($j->{ip}), $attacker, 'ip: the attacker');
ok(!defined $j->{user_id}, 'user_id null');
is($j->{details}{rule}, 'login_bruteforce', 'details.rule login_bruteforce');
is($j->{details}{event_type}, 'login.failed', 'details.event_type login.failed');
is($j->{details}{threshold}, 20, 'details.threshold 20');
is($j->{details}{within_s} + 0, 300, 'details.within_s 300');
is($j->{details}{net}, "$attacker/32", 'details.net the /32');
is(sql("SELECT '$j->{details}{until}'::timestamptz = until FROM authx.ip_blocks WHERE net = '$attacker' AND NOT allow"),
	't', 'details.until: the block\'s end');
is(sql("SELECT count(*) FROM authx.audit_log WHERE event_type = 'threat.auto_block' AND ip = '$attacker'"
	  . " AND at = '$j->{at}'::timestamptz"),
	'1', 'at: the audited event\'s');
is($alert ? $alert->{pid} : undef, $worker, 'sent by the maintenance worker');
cmp_ok(audit_count($node, "event_type = 'login.failed' AND ip = '$attacker'"), '>=', 20,
	'the failed logins were audited despite the ROLLBACK');

# IPv6: the /64.
sql(q{SELECT authx.threat_rule_set('t96_v6', 't96.v6', 2, '1 hour')});
audit('t96.v6', 'low', '2001:db8:96:1::1');
audit('t96.v6', 'low', '2001:db8:96:1::2');
ok(wait_until('the IPv6 auto-block alert', 60,
		sub { pump(); grep { ($_->{details}{rule} // '') eq 't96_v6' } alerts_of('threat.auto_block') }),
	'an IPv6 auto-block is alerted');
($j) = grep { ($_->{details}{rule} // '') eq 't96_v6' } alerts_of('threat.auto_block');
$j //= {};
is($j->{ip}, '2001:db8:96:1::2', 'its ip is the address whose event fired the rule');
is($j->{details}{net}, '2001:db8:96:1::/64', 'details.net the /64 blocked');

# ------------------------------------------------------------------
# A manual critical event; medium, low and info are not sent by default.
# ------------------------------------------------------------------
sql(q{SELECT authx.audit('t96.critical', 'critical', '00000000-0000-4000-8000-000000000096', '192.0.2.5',
                         '{"k": "v", "n": 1, "list": [1, "two"]}')});
$alert = wait_alert('t96.critical');
ok($alert, 'a manual critical event is alerted');
$j = $alert ? $alert->{json} : {};
is($j->{severity}, 'critical', 'severity critical');
is($j->{user_id}, '00000000-0000-4000-8000-000000000096', 'user_id as given');
is(host_of($j->{ip}), '192.0.2.5', 'ip as given');
is_deeply($j->{details}, { k => 'v', n => 1, list => [ 1, 'two' ] }, 'details as given');
is(sql("SELECT count(*) FROM authx.audit_log WHERE event_type = 't96.critical' AND at = '$j->{at}'::timestamptz"),
	'1', 'at: when it was logged');

audit('t96.medium', 'medium', '192.0.2.6');
audit('t96.low',    'low',    '192.0.2.6');
audit('t96.info',   'info');
audit('t96.high',   'high');
ok(sentinel(), 'sentinel after medium, low, info and high events');
is(scalar(alerts_of('t96.high')), 1, 'high: sent, once');
is(scalar(alerts_of('t96.medium')) + scalar(alerts_of('t96.low')) + scalar(alerts_of('t96.info')), 0,
	'medium, low and info: not sent');
is(scalar(alerts_of('t96.critical')), 1, 'the critical event was sent once');

# ------------------------------------------------------------------
# authx.alert_min_severity = medium, by reload.
# ------------------------------------------------------------------
set_min_severity('medium');
is(sql('SHOW authx.alert_min_severity'), 'medium', 'ALTER SYSTEM + reload: medium');
my $probe = 0;
ok(wait_until('a medium probe alerted', 60, sub {
	audit('t96.probe', 'medium', undef, qq('{"i": ) . ++$probe . q(}'));
	pump();
	return scalar alerts_of('t96.probe');
}), 'the worker took the new setting: medium events are alerted');
audit('t96.medium2', 'medium', '192.0.2.7');
audit('t96.low2', 'low', '192.0.2.7');
sql(q{SELECT authx.ip_allow('192.0.2.8', 't96'), authx.threat_rule_set('t96_allow', 't96.allow', 1, '1 hour')});
audit('t96.allow', 'low', '192.0.2.8');
ok(wait_until('threat.detected processed', 60,
		sub { audit_count($node, "event_type = 'threat.detected' AND ip = '192.0.2.8'") > 0 }),
	'an allowlisted address: threat.detected');
ok(sentinel(), 'sentinel');
is(scalar(alerts_of('t96.medium2')), 1, 'medium: sent');
is(scalar(alerts_of('t96.low2')), 0, 'low: still not sent');
my ($det) = alerts_of('threat.detected');
ok($det && $det->{severity} eq 'medium' && host_of($det->{ip}) eq '192.0.2.8'
	  && $det->{details}{allowlisted} && $det->{details}{rule} eq 't96_allow',
	'threat.detected (medium, allowlisted, the rule) is alerted');

# ------------------------------------------------------------------
# Details too big for NOTIFY.
# ------------------------------------------------------------------
audit('t96.huge', 'high', '192.0.2.9', q{jsonb_build_object('blob', repeat('x', 8000))});
$alert = wait_alert('t96.huge');
ok($alert, 'an event with 8000 bytes of details is alerted');
$j = $alert ? $alert->{json} : {};
is_deeply($j->{details}, { truncated => JSON::PP::true }, 'its details: {"truncated": true}');
ok(JSON::PP::is_bool($j->{details}{truncated}), 'truncated is a JSON boolean');
is(join('|', $j->{severity} // '', host_of($j->{ip}) // ''), 'high|192.0.2.9', 'the rest of the event is there');
cmp_ok(length($alert ? $alert->{raw} : ''), '<', 8000, 'the payload fits in a NOTIFY');
is(sql(q{SELECT length(details->>'blob') FROM authx.audit_log WHERE event_type = 't96.huge'}), '8000',
	'audit_log keeps the details whole');
# Two-byte characters: 7880 bytes of 3940 characters.
audit('t96.huge.mb', 'high', undef, q{jsonb_build_object('blob', repeat('é', 3940))});
$alert = wait_alert('t96.huge.mb');
ok($alert, 'an event with 3940 two-byte characters of details is alerted');
is_deeply($alert ? $alert->{json}{details} : undef, { truncated => JSON::PP::true }, 'truncated too (bytes count, not characters)');
audit('t96.fits', 'high', undef, q{jsonb_build_object('blob', repeat('y', 7000))});
$alert = wait_alert('t96.fits');
is(length($alert ? ($alert->{json}{details}{blob} // '') : ''), 7000, '7000 bytes of details arrive whole');
is(sql(q{SELECT count(*) FROM authx.audit_log WHERE event_type LIKE 't96.huge%' OR event_type = 't96.fits'}), '3',
	'all three are in audit_log');

# ------------------------------------------------------------------
# 'off', across a restart; the auto-block persists.
# ------------------------------------------------------------------
sql(q{ALTER SYSTEM SET authx.alert_min_severity = 'off'});
$listener->quit;
$node->restart;
is(sql('SHOW authx.alert_min_severity'), 'off', 'after a restart: off');
is(sql("SELECT authx.ip_blocked('$attacker')"), 't', 'the auto-block survived the restart');
is(sql("SELECT source || '|' || reason FROM authx.ip_blocks WHERE net = '$attacker' AND NOT allow"),
	'auto|threat rule login_bruteforce', 'its ip_blocks row is there');
is(sql(qq{SELECT status FROM authx.login('victim\@example.com', 'wrong password', '$attacker')}), 'blocked',
	'a login from it: blocked');
@alerts = ();
listen_start();
my $sent0 = stat_value($node, 'alerts_sent');
my $attacker2 = '198.51.100.88';
cmp_ok(sql(qq{SELECT count(*) FROM generate_series(1, 30) g,
                LATERAL authx.login('victim2\@example.com', 'wrong password ' || g, '$attacker2') l
               WHERE l.status = 'invalid_credentials'}),
	'>=', 20, 'another attacker: at least 20 failed logins');
ok(wait_until('the second attacker blocked', 60, sub { sql("SELECT authx.ip_blocked('$attacker2')") eq 't' }),
	'with off: auto-blocks are still made');
audit('t96.off.critical', 'critical', '192.0.2.10');
audit('t96.off.high', 'high');
ok(sentinel(), 'sentinel');
is(audit_count($node, "event_type = 'threat.auto_block' AND ip = '$attacker2'"), '1', 'and audited');
is(scalar(@alerts), 0, 'off: nothing was sent, not the critical event, not the auto-block');
is(stat_value($node, 'alerts_sent') - $sent0, 0, 'alerts_sent did not move');

# ------------------------------------------------------------------
# Back to the default by reload.
# ------------------------------------------------------------------
set_min_severity(undef);
is(sql('SHOW authx.alert_min_severity'), 'high', 'RESET + reload: high');
$probe = 0;
ok(wait_until('a critical probe alerted', 60, sub {
	audit('t96.probe2', 'critical', undef, qq('{"i": ) . ++$probe . q(}'));
	pump();
	return scalar alerts_of('t96.probe2');
}), 'alerts come again');
audit('t96.medium3', 'medium');
audit('t96.high3', 'high');
ok(sentinel(), 'sentinel');
is(join(',', scalar(alerts_of('t96.medium3')), scalar(alerts_of('t96.high3'))), '0,1', 'high sent, medium not');
is(stat_value($node, 'alerts_sent') - $sent0, scalar(@alerts),
	'alerts_sent counted exactly the alerts received since the restart (' . scalar(@alerts) . ')');
ok(!(grep { !$_->{json} } @alerts), 'every payload was valid JSON');

$listener->quit;
$node->stop;
done_testing();

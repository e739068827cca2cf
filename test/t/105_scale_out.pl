
# Scale-out, first part: three data nodes and a coordinator on loopback,
# routed by PL/Proxy (postgresql-15-plproxy).
#
#  - authx.shard_of and authx.shard_of_email against an independent
#    implementation (python3) of the documented formulas, and the README's
#    test vector;
#  - cluster_setup: 256 buckets in contiguous ranges over the three nodes,
#    the PL/Proxy server with one partition per bucket, the routing
#    functions in schema authx_cluster; refused for a non-superuser (42501)
#    and for no nodes (22023);
#  - sign-up through the coordinator: each user's row is on the node of its
#    bucket and nowhere else, each email's directory entry on the node of
#    the email's bucket; an email taken (in any case) is refused with 23505
#    wherever the new id would land; a sign-up that fails on the user's
#    node (weak password) gives the email back;
#  - with authx.shard_tokens on, session tokens end in their bucket
#    (".hhhh", token_bucket reads it): session_validate and session_revoke
#    through the coordinator route by it; a token without one is NULL;
#  - login and user_find through the coordinator route by the directory:
#    the right password signs in (the session is on the user's node), a
#    wrong one and an unknown email answer "invalid_credentials";
#  - functions taking a user id are routed to its node: user_grant then
#    has_permission, user_roles, sessions, session_create, user_get;
#  - user_delete through the coordinator frees the email; an orphaned
#    directory claim blocks its email until the coordinator's maintenance
#    pass, which leaves entries under a minute old alone, then releases the
#    orphan and confirms every other entry once (a second pass looks at
#    none); a data node reports no repair pass (null).
use strict;
use warnings;
use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node);

my $plproxy = '/usr/share/postgresql/15/extension/plproxy.control';
plan skip_all => "PL/Proxy is not installed ($plproxy; Debian package postgresql-15-plproxy)"
  unless -f $plproxy;

my $conf = "authx.password_opslimit = 1\nauthx.password_memlimit = 8192\n";
my @data = map { authx_node("data$_", conf => $conf . "authx.shard_tokens = on\n") } 1 .. 3;
my $coord = authx_node('coordinator', conf => $conf);

sub q1 { my ($node, $sql) = @_; return scalar $node->safe_psql('postgres', $sql); }

# The error output of a statement expected to fail.
sub fails
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, on_error_stop => 1);
	return $ret == 0 ? "(no error: $out)" : $err;
}

# ------------------------------------------------------------------ the formulas
my $vals = q1($coord, q{
	SELECT string_agg(u::text || ' ' || authx.shard_of(u) || ' ' || authx.shard_of(u, 16) || ' '
	                  || authx.shard_of(u, 1), ',' ORDER BY u)
	  FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, 50)
	        UNION ALL SELECT '00000000-0000-0000-0000-000000000000'
	        UNION ALL SELECT 'ffffffff-ffff-ffff-ffff-ffffffffffff'
	        UNION ALL SELECT '4f1d2c0e-8a5b-4c3d-9e7f-0123456789ab') x});
my $emails = q1($coord, q{
	SELECT string_agg(e || ' ' || authx.shard_of_email(e), ',' ORDER BY e)
	  FROM (SELECT 'user' || i || '@example.com' AS e FROM generate_series(1, 30) i
	        UNION ALL SELECT 'Ada.Lovelace@Example.COM' UNION ALL SELECT 'émile@exemple.fr') x});
my $py = <<'PY';
import hashlib, sys, uuid
def jump(key, n):
    b, j = -1, 0
    while j < n:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b
def shard_of(u, n):
    d = uuid.UUID(u).bytes
    return jump(int.from_bytes(d[:8], 'big') ^ int.from_bytes(d[8:], 'big'), n)
def shard_of_email(e, n):
    k = e.strip(' \t\r\n').lower().encode('utf-8')
    return jump(int.from_bytes(hashlib.sha256(k).digest()[:8], 'big'), n)
bad = 0
for item in sys.argv[1].split(','):
    u, a, b, c = item.split(' ')
    if [shard_of(u, 256), shard_of(u, 16), shard_of(u, 1)] != [int(a), int(b), int(c)]:
        bad += 1; print('uuid', item)
for item in sys.argv[2].split(','):
    e, a = item.rsplit(' ', 1)
    if shard_of_email(e, 256) != int(a):
        bad += 1; print('email', item)
print('mismatches', bad)
PY
my ($out, $err) = ('', '');
IPC::Run::run([ '/usr/bin/python3', '-c', $py, $vals, $emails ], '>', \$out, '2>', \$err);
like($out, qr/^mismatches 0$/m, 'shard_of (256, 16, 1 buckets) and shard_of_email agree with a python3 implementation')
  or diag($out, $err);
is(q1($coord, q{SELECT authx.shard_of('4f1d2c0e-8a5b-4c3d-9e7f-0123456789ab')}),
	(split(/ /, (grep { /^4f1d2c0e/ } split(/,/, $vals))[0]))[1], 'the README test vector');
is(q1($coord, q{SELECT authx.shard_of(NULL), authx.shard_of_email(NULL)}), '|', 'NULL gives NULL');
like(fails($coord, q{SELECT authx.shard_of(gen_random_uuid(), 3)}),
	qr/buckets must be a power of two between 1 and 65536/, 'shard_of: 3 buckets refused');

# ------------------------------------------------------------------ setup
my @conn = map { $_->connstr('postgres') } @data;
my $nodes = 'ARRAY[' . join(', ', map { "'" . ($_ =~ s/'/''/gr) . "'" } @conn) . ']';
like(fails($coord, q{SELECT authx.cluster_setup('{}')}), qr/nodes must be a non-empty array/,
	'cluster_setup: no nodes refused');
$coord->safe_psql('postgres', 'CREATE ROLE tap_app LOGIN; GRANT authx_app TO tap_app');
like(fails($coord, "SET ROLE tap_app; SELECT authx.cluster_setup($nodes)"), qr/permission denied|needs a superuser/,
	'cluster_setup: refused to a non-superuser');
my $setup = q1($coord, "SELECT authx.cluster_setup($nodes)");
like($setup, qr/"nodes": 3/, "cluster_setup: $setup");
is(q1($coord, q{SELECT string_agg(n::text, ',' ORDER BY node)
                  FROM (SELECT node, count(*) AS n FROM authx.shard_map GROUP BY node) x}),
	'86,85,85', '256 buckets in contiguous ranges: 86, 85, 85');
is(q1($coord, q{SELECT count(*) FROM pg_options_to_table((SELECT srvoptions FROM pg_foreign_server
                                                          WHERE srvname = 'authx_cluster')) WHERE option_name ~ '^p[0-9]+$'}),
	'256', 'the PL/Proxy server has one partition per bucket');

# The node index holding a bucket.
my %node_of = map { split /\|/ } split /\n/, q1($coord, 'SELECT bucket, node FROM authx.shard_map');

# ------------------------------------------------------------------ sign-up
my $pw = 'correct horse battery staple';
my %uid;
for my $i (1 .. 24)
{
	$uid{$i} = q1($coord, "SELECT authx_cluster.user_create('user$i\@example.com', '$pw')");
}
is(scalar(grep { /^[0-9a-f-]{36}$/ } values %uid), 24, '24 users created through the coordinator');
my @where = map { { map { $_ => 1 } split /\n/, q1($_, 'SELECT id FROM authx.users') } } @data;
my $misplaced = 0;
my %per_node;
for my $i (keys %uid)
{
	my $b = q1($coord, "SELECT authx.shard_of('$uid{$i}')");
	my $n = $node_of{$b};
	$per_node{$n}++;
	$misplaced++ unless $where[$n]{ $uid{$i} } && 1 == grep { $where[$_]{ $uid{$i} } } 0 .. 2;
}
is($misplaced, 0, 'each user is on the node of its bucket, and on no other');
is(scalar(keys %per_node), 3, 'the users are spread over all three nodes');
my $dir_bad = 0;
for my $i (keys %uid)
{
	my $b = q1($coord, "SELECT authx.shard_of_email('user$i\@example.com')");
	for my $n (0 .. 2)
	{
		my $has = q1($data[$n], "SELECT count(*) FROM authx.email_directory
		                         WHERE email = 'user$i\@example.com' AND user_id = '$uid{$i}'");
		$dir_bad++ if $has != ($n == $node_of{$b} ? 1 : 0);
	}
}
is($dir_bad, 0, 'each email is in the directory of the node of its bucket, and nowhere else');

like(fails($coord, "SELECT authx_cluster.user_create('user1\@example.com', '$pw')"),
	qr/email is already registered/, 'a taken email is refused (23505)');
like(fails($coord, "SELECT authx_cluster.user_create('  USER2\@Example.com ', '$pw')"),
	qr/email is already registered/, 'in any case and with spaces too');
like(fails($coord, "SELECT authx_cluster.user_create('weak\@example.com', 'short')"),
	qr/password/, 'a weak password fails on the user\'s node');
is(join('', map { q1($_, q{SELECT count(*) FROM authx.email_directory WHERE email = 'weak@example.com'}) } @data),
	'000', 'and the email is given back');
like(q1($coord, "SELECT authx_cluster.user_create('weak\@example.com', '$pw')"), qr/^[0-9a-f-]{36}$/,
	'so it can sign up again');

# ------------------------------------------------------------------ login and lookups
my ($st, $luid, $tok) = split /\|/, q1($coord,
	"SELECT status, user_id, session_token FROM authx_cluster.login('user7\@example.com', '$pw', '192.0.2.7')");
is("$st|$luid", "ok|$uid{7}", 'login through the coordinator: ok, the right user');
my $home = $data[ $node_of{ q1($coord, "SELECT authx.shard_of('$uid{7}')") } ];
is(q1($home, "SELECT authx.session_validate('$tok')"), $uid{7}, 'the session is on the user\'s node');
is(substr($tok, -5), sprintf('.%04x', q1($coord, "SELECT authx.shard_of('$uid{7}')")),
	'the session token ends in the user\'s bucket (authx.shard_tokens on the data nodes)');
is(q1($coord, "SELECT authx.token_bucket('$tok')"), q1($coord, "SELECT authx.shard_of('$uid{7}')"),
	'token_bucket reads it');
is(q1($coord, "SELECT authx_cluster.session_validate('$tok', '192.0.2.7')"), $uid{7},
	'session_validate through the coordinator: routed by the token, no lookup');
is(q1($coord, "SELECT authx_cluster.session_validate('axs_nothing') IS NULL"), 't',
	'a token without a bucket: NULL (asked of bucket 0\'s node)');
is(q1($coord, "SELECT authx_cluster.session_revoke('$tok')"), 't', 'session_revoke through the coordinator');
is(q1($coord, "SELECT authx_cluster.session_validate('$tok') IS NULL"), 't', 'the revoked session no longer validates');
is(q1($coord, "SELECT status FROM authx_cluster.login('user7\@example.com', 'wrong password', '192.0.2.7')"),
	'invalid_credentials', 'a wrong password: invalid_credentials');
is(q1($coord, "SELECT status FROM authx_cluster.login('nobody\@example.com', '$pw', '192.0.2.8')"),
	'invalid_credentials', 'an unknown email: invalid_credentials, as on one node');
is(q1($coord, "SELECT authx_cluster.user_find('USER9\@example.com')"), $uid{9}, 'user_find routes by the directory');
is(q1($coord, "SELECT authx_cluster.user_find('nobody\@example.com') IS NULL"), 't', 'user_find: unknown is NULL');

# ------------------------------------------------------------------ routed by user id
q1($coord, "SELECT authx_cluster.user_grant('$uid{3}', 'admin')");
is(q1($coord, "SELECT authx_cluster.has_permission('$uid{3}', 'users:read')")
	  . q1($coord, "SELECT authx_cluster.has_permission('$uid{4}', 'users:read')"),
	'tf', 'has_permission through the coordinator: true after user_grant through it, false for another user');
like(q1($coord, "SELECT string_agg(role, ',') FROM authx_cluster.user_roles('$uid{3}')"), qr/admin/,
	'user_roles: the grant is on the user\'s node');
my $s = q1($coord, "SELECT session_token FROM authx_cluster.session_create('$uid{5}')");
like($s, qr/^axs_/, 'session_create through the coordinator');
is(q1($coord, "SELECT count(*) FROM authx_cluster.sessions('$uid{5}')"), '1', 'sessions() sees it');
is(q1($coord, "SELECT email FROM authx_cluster.user_get('$uid{5}')"), 'user5@example.com', 'user_get');

# ------------------------------------------------------------------ user_delete and the repair pass
is(q1($coord, "SELECT authx_cluster.user_delete('$uid{11}')"), 't', 'user_delete through the coordinator');
like(q1($coord, "SELECT authx_cluster.user_create('user11\@example.com', '$pw')"), qr/^[0-9a-f-]{36}$/,
	'its email can be registered again (the directory entry went with the account)');
# An orphan: a claim whose account was never made (a coordinator cut short).
q1($coord, q{SELECT authx_cluster._directory_claim('orphan@example.com', gen_random_uuid())});
like(fails($coord, "SELECT authx_cluster.user_create('orphan\@example.com', '$pw')"), qr/already registered/,
	'an orphaned claim blocks its email');
is(q1($coord, q{SELECT authx.maintenance_run()->'cluster'}), '{"released": 0, "confirmed": 0}',
	'the repair pass leaves entries younger than a minute alone');
$_->safe_psql('postgres', q{UPDATE authx.email_directory SET created_at = created_at - interval '2 minutes'}) for @data;
my $entries = 0;
$entries += q1($_, 'SELECT count(*) FROM authx.email_directory') for @data;
is(q1($coord, q{SELECT authx.maintenance_run()->'cluster'}),
	'{"released": 1, "confirmed": ' . ($entries - 1) . '}',
	'maintenance on the coordinator releases the orphan and confirms the other entries');
is(q1($coord, q{SELECT authx.maintenance_run()->'cluster'}), '{"released": 0, "confirmed": 0}',
	'and does not look at confirmed entries again');
like(q1($coord, "SELECT authx_cluster.user_create('orphan\@example.com', '$pw')"), qr/^[0-9a-f-]{36}$/,
	'the released email can sign up');
is(q1($data[0], q{SELECT authx.maintenance_run()->'cluster'}), 'null', 'a data node has no repair pass (null)');

done_testing();


# Scale-out, second part: keys, refresh tokens and everything else routed by
# the coordinator; cluster-wide definitions; the cache map; moving buckets
# to a fourth node while a client validates sessions in a loop.
#
# Three data nodes, each writing through to its own Redis, and a
# coordinator, on loopback (PL/Proxy, postgresql-15-plproxy):
#
#  - API keys and refresh tokens end in their owner's bucket (".hhhh", the
#    hash covering it): apikey_verify, token_refresh, session_info and
#    token_verify (routed by the JWT's sub) answer through the coordinator;
#    apikey_revoke and session_revoke_id find the owner's node by id;
#  - role_create/role_grant through the coordinator reach every node;
#    has_permission then holds wherever the user lives; jwks() gathers
#    every node's keys;
#  - a rate-limit policy kept in Redis, with authx.rate_limit_redis_url
#    naming one Redis on every node and the coordinator, is one limit
#    across all of them; its password never reaches a server log;
#  - cache_node(token) names the Redis of the token's node (without its
#    password), and that Redis holds the token's entry;
#  - the fence: a bucket being moved refuses writes (40001) while
#    session_validate still answers; lifting it lets writes through;
#  - a fourth node: rebalance_plan moves exactly 64 of 256 buckets (1/4);
#    CALL authx.bucket_move for each while a psql client validates 39 or
#    more sessions through the coordinator in a loop of separate
#    transactions (users are added until at least three are in moving
#    buckets):
#    no validation fails; afterwards every user, session, key, refresh
#    token, grant and directory entry is on the node the map names and
#    nowhere else, every one still works, emails stay unique, the moved
#    sessions' entries in the old Redis are not tombstones, and the new
#    Redis serves them after a validation;
#  - bucket_move refuses a non-superuser (42501), an unknown bucket or node
#    (22023); cluster_setup again keeps the moved map (other nodes: 55000).
use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use IPC::Run ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use AuthxTest::Util qw(authx_node);
use AuthxTest::Redis;
use AuthxTest::Cache qw(cache_node);

my $plproxy = '/usr/share/postgresql/15/extension/plproxy.control';
plan skip_all => "PL/Proxy is not installed ($plproxy; Debian package postgresql-15-plproxy)"
  unless -f $plproxy;

# Nodes that exchange buckets share the master key (sealed secrets and
# tagged refresh tokens move as they are).
my $keyfile = PostgreSQL::Test::Utils::tempdir() . '/cluster.key';
open(my $rnd, '<:raw', '/dev/urandom') or die "/dev/urandom: $!";
read($rnd, my $raw, 32) == 32 or die 'short read from /dev/urandom';
close $rnd;
PostgreSQL::Test::Utils::append_to_file($keyfile, unpack('H*', $raw) . "\n");
chmod 0600, $keyfile;
my $conf = "authx.password_opslimit = 1\nauthx.password_memlimit = 8192\nauthx.shard_tokens = on\n"
  . "authx.key_file = '$keyfile'\n";
my @redis = map { AuthxTest::Redis->new(name => "shard$_", password => "pw$_") } 1 .. 4;
# One Redis for rate limits, shared by every node and the coordinator.
my $rl = AuthxTest::Redis->new(name => 'ratelimit', password => 'rl-secret-77');
$conf .= "authx.rate_limit_redis_url = '" . $rl->url . "'\n";
my @data = map { cache_node("node$_", $redis[ $_ - 1 ], conf => $conf) } 1 .. 4;
my $coord = authx_node('coord', conf => $conf);

sub q1 { my ($node, $sql) = @_; return scalar $node->safe_psql('postgres', $sql); }

sub fails
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, on_error_stop => 1);
	return $ret == 0 ? "(no error: $out)" : $err;
}

sub lit { my ($s) = @_; return "'" . ($s =~ s/'/''/gr) . "'"; }
my @conn = map { $_->connstr('postgres') } @data;
my $nodes = 'ARRAY[' . join(', ', map { lit($_) } @conn[ 0 .. 2 ]) . ']';
like(q1($coord, "SELECT authx.cluster_setup($nodes)"), qr/"nodes": 3/, 'three data nodes');

my %node_of;
sub load_map { %node_of = map { split /\|/ } split /\n/, q1($coord, 'SELECT bucket, node FROM authx.shard_map'); }
load_map();
sub bucket_of { my ($id) = @_; return q1($coord, "SELECT authx.shard_of('$id')"); }
sub home { my ($id) = @_; return $data[ $node_of{ bucket_of($id) } ]; }

# ------------------------------------------------------------------ cluster-wide definitions
q1($coord, q{SELECT authx_cluster.role_create('editor', 'user', 'edits documents')});
is(q1($coord, q{SELECT authx_cluster.role_grant('editor', 'docs:write')}), 't', 'role_grant through the coordinator');
is(join(',', map { q1($_, q{SELECT count(*) FROM authx.role_permissions WHERE role = 'editor' AND permission = 'docs:write'}) }
		@data[ 0 .. 2 ]),
	'1,1,1', 'role_create and role_grant reached every node');
is(q1($coord, q{SELECT authx_cluster.role_grant('editor', 'docs:write')}), 'f', 'granting again changes nothing');

# A limit kept in the shared Redis holds across nodes.
q1($coord, q{SELECT authx_cluster.rate_policy_set('global_api', 5, '1 minute', 'closed', NULL, 'redis')});
q1($coord, q{SELECT authx.rate_policy_set('global_api', 5, '1 minute', 'closed', NULL, 'redis')});
my $allowed = '';
for my $n (0, 1, 2, 0, 1, 2)
{
	$allowed .= q1($data[$n], q{SELECT allowed FROM authx.rate_check('global_api', 'client-7')});
}
$allowed .= q1($coord, q{SELECT allowed FROM authx.rate_check('global_api', 'client-7')});
is($allowed, 'tttttff', 'a redis policy (authx.rate_limit_redis_url) is one limit across the nodes and the coordinator');
is(q1($data[0], q{SELECT allowed FROM authx.rate_check('global_api', 'client-8')}), 't', 'per subject');
# Its URL holds a password: a reload that changes it logs the name only.
my $offset = -s $data[0]->logfile;
$data[0]->append_conf('postgresql.conf', "authx.rate_limit_redis_url = '" . $rl->url . "/0'\n");
$data[0]->reload;
ok($data[0]->wait_for_log(qr/authx\.rate_limit_redis_url" \(value hidden by authx\)/, $offset),
	'reloading authx.rate_limit_redis_url logs the name, not the value');
is(q1($data[0], q{SELECT allowed FROM authx.rate_check('global_api', 'client-8')}), 't', 'the new URL (same Redis) is used');

# ------------------------------------------------------------------ users, sessions, keys, refresh tokens
my $pw = 'correct horse battery staple';
my (%uid, %tok, %key, %kid, %rt);
# A user with a session, an API key, a refresh token and (odd ones) a grant.
sub make_user
{
	my ($i) = @_;
	$uid{$i} = q1($coord, "SELECT authx_cluster.user_create('m$i\@example.com', '$pw')");
	$tok{$i} = q1($coord, "SELECT session_token FROM authx_cluster.login('m$i\@example.com', '$pw')");
	($kid{$i}, $key{$i}) = split /\|/, q1($coord, "SELECT key_id, api_key FROM authx_cluster.apikey_create('$uid{$i}', 'k$i', '{docs:read}')");
	$rt{$i} = q1($coord, "SELECT refresh_token FROM authx_cluster.token_issue('$uid{$i}', '$tok{$i}')");
	q1($coord, "SELECT authx_cluster.user_grant('$uid{$i}', 'editor')") if $i % 2;
}
make_user($_) for 1 .. 40;
# Users 1-39 stay live (40's session and key are revoked below).
my @live = (1 .. 39);
my $b1 = sprintf('.%04x', bucket_of($uid{1}));
is(substr($key{1}, -5) . ' ' . substr($rt{1}, -5), "$b1 $b1", 'API keys and refresh tokens end in their owner\'s bucket');
like($key{1}, qr/^axk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\.[0-9a-f]{4}$/, 'an API key: axk_<prefix>_<secret>.<bucket>');
is(q1($coord, "SELECT code || ' ' || user_id FROM authx_cluster.apikey_verify('$key{1}', 'docs:read')"), "valid $uid{1}",
	'apikey_verify through the coordinator');
is(q1($coord, "SELECT code FROM authx_cluster.apikey_verify('" . substr($key{1}, 0, -5) . "')"), 'not_found',
	'the key without its bucket is not the key (the hash covers it)');
is(q1($coord, "SELECT code FROM authx_cluster.apikey_verify('" . substr($key{1}, 0, -1) . (substr($key{1}, -1) eq '0' ? '1' : '0') . "')"),
	'not_found', 'nor with another bucket');
my ($rst, $rnew) = split /\|/, q1($coord, "SELECT status, refresh_token FROM authx_cluster.token_refresh('$rt{1}')");
is("$rst " . substr($rnew, -5), "ok $b1", 'token_refresh through the coordinator; the new token names the bucket');
$rt{1} = $rnew;
my $access = q1($coord, "SELECT access_token FROM authx_cluster.token_issue('$uid{2}')");
is(q1($coord, "SELECT authx_cluster.token_verify('$access')->>'sub'"), $uid{2}, 'token_verify routed by the sub claim');
is(q1($coord, "SELECT authx_cluster.token_verify('garbage') IS NULL"), 't', 'token_verify: garbage is NULL, not an error');
is(q1($coord, "SELECT user_id FROM authx_cluster.session_info('$tok{3}')"), $uid{3}, 'session_info through the coordinator');
is(q1($coord, "SELECT authx_cluster.has_permission('$uid{1}', 'docs:write')") . q1($coord, "SELECT authx_cluster.has_permission('$uid{2}', 'docs:write')"),
	'tf', 'has_permission holds for a role made through the coordinator');
my $kid_count = q1($coord, q{SELECT jsonb_array_length(authx_cluster.jwks()->'keys')});
cmp_ok($kid_count, '>=', 3, "jwks() gathers every node's keys ($kid_count)");

# Revocations by id find the owner's node.
my ($uidx, $tokx) = split /\|/, q1($coord, "SELECT user_id, session_token FROM authx_cluster.login('m40\@example.com', '$pw')");
my $sidx = q1($coord, "SELECT session_id FROM authx_cluster.session_info('$tokx')");
is(q1($coord, "SELECT authx_cluster.session_revoke_id('$sidx')"), 't', 'session_revoke_id through the coordinator');
is(q1($coord, "SELECT authx_cluster.session_validate('$tokx') IS NULL"), 't', 'that session is revoked');
is(q1($coord, "SELECT authx_cluster.apikey_revoke('$kid{40}')"), 't', 'apikey_revoke by id through the coordinator');
is(q1($coord, "SELECT code FROM authx_cluster.apikey_verify('$key{40}')"), 'revoked', 'the key answers revoked');
is(q1($coord, "SELECT authx_cluster.apikey_revoke(gen_random_uuid())"), 'f', 'an unknown key id: false');

# ------------------------------------------------------------------ the cache map
my $h1 = home($uid{1});
my $n1 = $node_of{ bucket_of($uid{1}) };
is(q1($coord, "SELECT authx.cache_node('$tok{1}')"), 'redis://127.0.0.1:' . $redis[$n1]->port,
	'cache_node names the Redis of the token\'s node, without its password');
is(q1($coord, "SELECT count(DISTINCT redis) FROM authx.cache_map()"), '3', 'cache_map: one Redis per node');
q1($h1, q{SELECT authx.cache_sync()});
ok(defined $redis[$n1]->command('EXISTS', 'authx:s:' . sha256_hex($tok{1}))
	  && $redis[$n1]->command('EXISTS', 'authx:s:' . sha256_hex($tok{1})) == 1,
	'and that Redis holds the session\'s entry');

# ------------------------------------------------------------------ the fence
my $bf = bucket_of($uid{5});
my $hf = home($uid{5});
q1($hf, "SELECT authx._bucket_fence($bf, true)");
like(fails($coord, "SELECT authx_cluster.session_create('$uid{5}')"), qr/bucket $bf is moving to another node/,
	'a fenced bucket refuses writes (40001)');
is(q1($coord, "SELECT authx_cluster.session_validate('$tok{5}')"), $uid{5}, 'while its sessions still validate');
q1($hf, "SELECT authx._bucket_fence($bf, false)");
like(q1($coord, "SELECT session_token FROM authx_cluster.session_create('$uid{5}')"), qr/^axs_/, 'lifting the fence lets writes through');

# ------------------------------------------------------------------ errors
$coord->safe_psql('postgres', 'CREATE ROLE tap_app LOGIN; GRANT authx_app TO tap_app');
like(fails($coord, "SET ROLE tap_app; CALL authx.bucket_move(1, '0')"), qr/permission denied/, 'bucket_move: not for apps');
like(fails($coord, "CALL authx.bucket_move(9999, '0')"), qr/bucket 9999 is not in the map/, 'bucket_move: unknown bucket');
like(fails($coord, "CALL authx.bucket_move(1, '7')"), qr/there is no node 7/, 'bucket_move: unknown node');
like(fails($coord, "SET ROLE tap_app; SELECT authx_cluster._export_at('host=x', 1, 'x')"), qr/permission denied/,
	'the by-connection-string functions are not the app\'s');

# ------------------------------------------------------------------ a fourth node, and moves under load
is(q1($coord, 'SELECT authx.cluster_add_node(' . lit($conn[3]) . ')'), '3', 'cluster_add_node: node 3');
my @plan = map { [ split /\|/ ] } split /\n/, q1($coord, 'SELECT bucket, source, target FROM authx.rebalance_plan()');
is(scalar(@plan), 64, 'rebalance_plan: 64 of 256 buckets move (1/4)');
is(scalar(grep { $_->[2] == 3 } @plan), 64, 'all to the new node');

# At least three users in moving buckets (ids are random): add users until so.
my %moves = map { $_->[0] => 1 } @plan;
my @moving = grep { $moves{ bucket_of($uid{$_}) } } @live;
for (my $i = 41; @moving < 3; $i++)
{
	make_user($i);
	push @live, $i;
	push @moving, $i if $moves{ bucket_of($uid{$i}) };
}
cmp_ok(scalar(@moving), '>=', 3, scalar(@moving) . ' of ' . scalar(@live) . ' users move');

# A moving key's usage counts, once its node has written them down.
my $uk = $moving[2];
q1($coord, "SELECT code FROM authx_cluster.apikey_verify('$key{$uk}')") for 1 .. 3;
my $uhome = home($uid{$uk});
my $persisted = 0;
for (1 .. 150)
{
	$persisted = q1($uhome, "SELECT coalesce(sum(count), 0) FROM authx.api_key_usage WHERE key_id = '$kid{$uk}' AND code = 'valid'");
	last if $persisted >= 3;
	usleep(200_000);
}
is($persisted, 3, 'the key\'s 3 verifications are in api_key_usage on its node');

# The client: validations in separate transactions, through the coordinator.
my $script = '';
for my $round (1 .. 400)
{
	for my $i (@live)
	{
		$script .= "SELECT CASE WHEN authx_cluster.session_validate('$tok{$i}') = '$uid{$i}' THEN 'ok' ELSE 'FAIL $i' END;\n";
	}
}
my $sfile = $coord->basedir . '/validate.sql';
PostgreSQL::Test::Utils::append_to_file($sfile, $script);
my ($vout, $verr) = ('', '');
my $loop = IPC::Run::start(
	[ 'psql', '-X', '-At', '-d', $coord->connstr('postgres'), '-f', $sfile ],
	'>', \$vout, '2>', \$verr);
usleep(300_000);
$loop->pump_nb;
my $before = () = $vout =~ /^ok$/mg;

my $t0 = time;
my $moved = 0;
for my $m (@plan)
{
	my ($ret, $o, $e) = $coord->psql('postgres', "CALL authx.bucket_move($m->[0], '$m->[2]')");
	if ($ret != 0) { diag("bucket $m->[0]: $e"); last; }
	$moved++;
	$loop->pump_nb;
}
my $took = time - $t0;
$loop->pump_nb;
my $during = () = $vout =~ /^ok$/mg;
$loop->kill_kill;
my $fails = () = $vout =~ /^FAIL/mg;
is($moved, 64, sprintf('64 buckets moved in %.1f s', $took));
cmp_ok($during - $before, '>', 100, ($during - $before) . ' validations ran during the moves');
is($fails, 0, 'no validation failed during the moves');
is(($verr =~ /ERROR/) ? $verr : '', '', 'and none raised');
is(q1($coord, 'SELECT count(*) FROM authx.bucket_moves'), '0', 'no move left unfinished');
is(q1($coord, q{SELECT string_agg(n::text, ',' ORDER BY node) FROM (SELECT node, count(*) AS n FROM authx.shard_map GROUP BY node) x}),
	'64,64,64,64', '64 buckets on each of four nodes');
is(q1($coord, q{SELECT count(*) FROM pg_options_to_table((SELECT srvoptions FROM pg_foreign_server WHERE srvname = 'authx_cluster')) o
                  JOIN authx.shard_map m ON o.option_name = 'p' || m.bucket
                  JOIN authx.shard_nodes n ON n.node = m.node AND n.conninfo = o.option_value}),
	'256', 'the PL/Proxy server agrees with the map');
load_map();
like(fails($coord, "SELECT authx.cluster_setup($nodes)"), qr/set up for other nodes/,
	'cluster_setup with other nodes than the recorded ones is refused (55000): the map has moved on');
my $all4 = 'ARRAY[' . join(', ', map { lit($_) } @conn) . ']';
like(q1($coord, "SELECT authx.cluster_setup($all4)"), qr/"nodes": 4/, 'with the recorded nodes it remakes the routing');
is(q1($coord, q{SELECT string_agg(n::text, ',' ORDER BY node) FROM (SELECT node, count(*) AS n FROM authx.shard_map GROUP BY node) x}),
	'64,64,64,64', 'and keeps the map');

# ------------------------------------------------------------------ after the moves
my %tables = (users => 'id', sessions => 'user_id', api_keys => 'user_id', refresh_families => 'user_id', user_roles => 'user_id');
my $misplaced = 0;
for my $t (sort keys %tables)
{
	for my $n (0 .. 3)
	{
		$misplaced += q1($data[$n], "SELECT count(*) FROM authx.$t WHERE authx.shard_of($tables{$t}) NOT IN ("
			  . join(',', grep { $node_of{$_} == $n } keys %node_of) . ')');
	}
}
is($misplaced, 0, 'users, sessions, keys, refresh families and grants are only on the node the map names');
my $total = 0;
$total += q1($_, q{SELECT count(*) FROM authx.users WHERE email ~ '^m[0-9]+@'}) for @data;
my $made = scalar(keys %uid);
is($total, $made, "all $made users, each once");
cmp_ok(q1($data[3], q{SELECT count(*) FROM authx.users}), '>', 0, 'the new node holds users');
my $dir_bad = 0;
for my $n (0 .. 3)
{
	$dir_bad += q1($data[$n], "SELECT count(*) FROM authx.email_directory WHERE authx.shard_of_email(email) NOT IN ("
		  . join(',', grep { $node_of{$_} == $n } keys %node_of) . ')');
}
is($dir_bad, 0, 'each directory entry is on the node of its email\'s bucket');
is(join('', map { q1($_, q{SELECT count(*) FROM generate_series(0, 255) b WHERE authx._bucket_fence(b, NULL)}) } @data),
	'0000', 'no fence left');

is(q1($coord, "SELECT count FROM authx_cluster.apikey_usage('$kid{$uk}') WHERE code = 'valid'"), '3',
	'a moved key keeps its usage history');

my ($ok_s, $ok_k, $ok_r, $ok_p) = (0, 0, 0, 0);
for my $i (@live)
{
	$ok_s++ if q1($coord, "SELECT authx_cluster.session_validate('$tok{$i}')") eq $uid{$i};
	$ok_k++ if q1($coord, "SELECT code FROM authx_cluster.apikey_verify('$key{$i}', 'docs:read')") eq 'valid';
	my ($s2, $r2) = split /\|/, q1($coord, "SELECT status, refresh_token FROM authx_cluster.token_refresh('$rt{$i}')");
	$ok_r++ if $s2 eq 'ok';
	$ok_p++ if q1($coord, "SELECT authx_cluster.has_permission('$uid{$i}', 'docs:write')") eq ($i % 2 ? 't' : 'f');
}
my $n_live = scalar(@live);
is("$ok_s $ok_k $ok_r $ok_p", "$n_live $n_live $n_live $n_live",
	'every session validates, key verifies, refresh token rotates, grant holds');
is(q1($coord, "SELECT status FROM authx_cluster.login('m$moving[0]\@example.com', '$pw')"), 'ok', 'a moved user logs in');
like(fails($coord, "SELECT authx_cluster.user_create('M$moving[0]\@example.com', '$pw')"), qr/already registered/,
	'and its email is still taken');
like(q1($coord, "SELECT authx_cluster.user_create('fresh\@example.com', '$pw')"), qr/^[0-9a-f-]{36}$/, 'sign-up still works');
is(q1($coord, "SELECT authx_cluster.session_revoke('$tok{$moving[0]}')"), 't', 'a moved session can be revoked');
is(q1($coord, "SELECT authx_cluster.session_validate('$tok{$moving[0]}') IS NULL"), 't', 'and is then invalid');

# Redis: the old node dropped the moved entries without tombstones; the new
# one serves them once validated.
my $mv = $moving[1];
my $oldn = (grep { $_->[0] == bucket_of($uid{$mv}) } @plan)[0]->[1];
q1($data[$oldn], 'SELECT authx.cache_sync()');
my $old_entry = $redis[$oldn]->command('HGET', 'authx:s:' . sha256_hex($tok{$mv}), 'revoked');
ok(!defined $old_entry || $old_entry eq '', 'the old Redis holds no tombstone for a moved session');
is(q1($coord, "SELECT authx.cache_node('$tok{$mv}')"), 'redis://127.0.0.1:' . $redis[3]->port, 'cache_node names the new node\'s Redis');
q1($data[3], 'SELECT authx.cache_sync()');
is($redis[3]->command('HGET', 'authx:s:' . sha256_hex($tok{$mv}), 'user_id'), $uid{$mv},
	'which holds the moved session\'s entry');

my $leaks = 0;
$leaks += () = slurp_file($_->logfile) =~ /rl-secret-77/g for @data, $coord;
is($leaks, 0, 'no server log shows the rate-limit Redis password');

done_testing();

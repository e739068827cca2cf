# pg_dump of a database using authx, restored with psql into a new database
# of the same (preloaded) cluster: CREATE EXTENSION is part of the dump, it
# makes the seeds again, and the dumped rows come on top of them.
#
#  - the restore raises no error on authx's own objects (psql's stderr is
#    read line by line; the known errors on the worker's daily audit
#    partitions, "multiple primary keys for table "audit_log_pYYYYMMDD" are
#    not allowed" and "relation "audit_log_pYYYYMMDD_..._idx" already
#    exists", are matched by their exact text and reported with a diag,
#    every other error fails the test), and the restored partitions end up
#    with the source's keys and indexes;
#  - every user (status, password hash), session, API key (hash, scopes,
#    uses left, revocation), role (own roles, their parents and
#    descriptions), permission (own roles' and one granted to the seed
#    role user), grant (one with an expiry), policy and override is there,
#    column for column as in the source;
#  - the edited seed 'login' is 7 per minute (written over the fresh seed,
#    not seeded any more, its override kept); the other seeds are seeded and
#    as CREATE EXTENSION makes them; seed roles and the seed permission
#    exist exactly once;
#  - in the restored database: sessions validate, passwords verify, API keys
#    answer valid / revoked / with the uses left, has_permission and
#    user_permissions answer as in the source, and the own policy and its
#    overrides (a higher max, a bypass) work through rate_check.
#
# Rate-limit buckets are in the cluster's shared memory, not per database:
# rate_check is called only in the restored database, on subjects nobody
# spent, so the counts are exact.  Windows are an hour or more (the 'login'
# minute is spent in one statement), so nothing trickles back during a run.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run ();

use AuthxTest::Util qw(authx_node);

my $node = authx_node('dump',
	conf => "authx.password_memlimit = 64\nauthx.password_opslimit = 1\n");

my $src = 'postgres';
my $dst = 'authx_restored';

sub q_src { return $node->safe_psql($src, $_[0]); }
sub q_dst { return $node->safe_psql($dst, $_[0]); }

# ------------------------------------------------------------------
# The source: users, sessions, keys, roles and grants, policies.
# ------------------------------------------------------------------
my %uid;
for my $u (qw(alice bob carol dave))
{
	$uid{$u} = q_src("SELECT authx.user_create('$u\@example.com', 'Dump-Restore-$u-1')");
}
# carol is disabled: she keeps her grant, but it does not count.
q_src("SELECT authx.user_disable('$uid{carol}')");

my %tok;
for my $u (qw(alice bob))
{
	$tok{$u} = q_src("SELECT session_token FROM authx.session_create('$uid{$u}', '192.0.2.1', 'dump test')");
}
my $tok_revoked = q_src("SELECT session_token FROM authx.session_create('$uid{dave}')");
q_src("SELECT authx.session_revoke('$tok_revoked')");

# Keys: scoped, with uses left (one spent before the dump), one revoked.
my ($key_id, $key) = split(/\|/,
	q_src("SELECT key_id, api_key FROM authx.apikey_create('$uid{alice}', 'ci', '{docs:read,docs:write}')"));
my ($uses_id, $uses_key) = split(/\|/,
	q_src("SELECT key_id, api_key FROM authx.apikey_create('$uid{bob}', 'metered', '{docs:read}', remaining => 5)"));
my ($rev_id, $rev_key) = split(/\|/,
	q_src("SELECT key_id, api_key FROM authx.apikey_create('$uid{dave}', 'old', '{}')"));
q_src("SELECT authx.apikey_revoke('$rev_id')");
is(q_src("SELECT code, remaining FROM authx.apikey_verify('$uses_key', 'docs:read')"),
	'valid|4', 'source: the metered key is used once (4 uses left)');

# Roles: editor < user (a seed), reviewer < editor; a permission granted to
# the seed role user; grants, one with an expiry, one of the seed admin.
q_src(q{
SELECT authx.role_create('editor', 'user', 'Edits documents');
SELECT authx.role_create('reviewer', 'editor', 'Approves documents');
SELECT authx.role_create('auditor', NULL, 'Reads the books');
SELECT authx.role_grant('editor', 'docs:write');
SELECT authx.role_grant('reviewer', 'docs:approve');
SELECT authx.role_grant('auditor', 'billing:read');
SELECT authx.role_grant('auditor', 'reports:*');
SELECT authx.role_grant('user', 'docs:read');
});
q_src(qq{
SELECT authx.user_grant('$uid{alice}', 'reviewer');
SELECT authx.user_grant('$uid{bob}', 'user');
SELECT authx.user_grant('$uid{bob}', 'auditor', now() + interval '30 days');
SELECT authx.user_grant('$uid{carol}', 'admin');
SELECT authx.user_grant('$uid{dave}', 'admin', now() + interval '7 days');
});

# Rate limits: the seed 'login' edited to 7 per minute (with an override),
# an own policy with two overrides.
q_src(q{
SELECT authx.rate_policy_set('login', 7, '1 minute');
SELECT authx.rate_override_set('login', '198.51.100.7', max => 20, reason => 'office NAT');
SELECT authx.rate_policy_set('uploads', 3, '1 hour', 'closed', 'Uploads per user');
SELECT authx.rate_override_set('uploads', 'partner', max => 5, per => '2 hours', reason => 'partner deal');
SELECT authx.rate_override_set('uploads', 'crawler', bypass => true, expires_at => now() + interval '30 days');
});
is(q_src(q{SELECT max, per, seeded FROM authx.rate_limit_policies WHERE name = 'login'}),
	'7|00:01:00|f', 'source: the seed login is edited to 7 per minute (no longer seeded)');

# Audit events our setup wrote in its transactions (flush the queue first).
q_src('SELECT authx.audit_flush()');

# What the restored database must answer the same: each table as text, in
# a stable order.  Every column, with timestamps and hashes, so nothing is
# lost or changed on the way.
my %snap = (
	users => q{SELECT u::text FROM authx.users u ORDER BY id},
	sessions => q{SELECT s::text FROM authx.sessions s ORDER BY id},
	api_keys => q{SELECT k::text FROM authx.api_keys k ORDER BY id},
	# Seed rows are made again by CREATE EXTENSION: all but their creation
	# time is the same.
	roles => q{SELECT (r.name, r.parent, r.description, r.seeded,
	                   CASE WHEN NOT r.seeded THEN r.created_at END)::text
	             FROM authx.roles r ORDER BY name},
	role_permissions => q{SELECT (p.role, p.permission, p.seeded,
	                              CASE WHEN NOT p.seeded THEN p.granted_at END)::text
	                        FROM authx.role_permissions p ORDER BY role, permission},
	user_roles => q{SELECT ur::text FROM authx.user_roles ur ORDER BY user_id, role},
	rate_limit_policies => q{SELECT p::text FROM authx.rate_limit_policies p ORDER BY name},
	rate_limit_overrides => q{SELECT o::text FROM authx.rate_limit_overrides o ORDER BY policy, subject},
	audit_of_our_users => qq{SELECT a.id, a.at, a.event_type, a.details FROM authx.audit_log a
	                         WHERE a.user_id IN ('$uid{alice}', '$uid{bob}', '$uid{carol}', '$uid{dave}')
	                         ORDER BY a.id});
my %before = map { $_ => q_src($snap{$_}) } keys %snap;

my @perms = ('docs:read', 'docs:write', 'docs:approve', 'billing:read', 'reports:monthly',
	'admin:anything', 'nothing:here');
my $perm_list = join(', ', map { "'$_'" } @perms);
my $perm_matrix = qq{
SELECT u.name || ' ' || p || ' ' || authx.has_permission(u.id, p)
  FROM (VALUES ('alice', '$uid{alice}'::uuid), ('bob', '$uid{bob}'::uuid),
               ('carol', '$uid{carol}'::uuid), ('dave', '$uid{dave}'::uuid)) u(name, id),
       unnest(ARRAY[$perm_list]) p
 ORDER BY u.name, p};
my $user_perms = qq{
SELECT u.name || ' ' || authx.user_permissions(u.id)::text
  FROM (VALUES ('alice', '$uid{alice}'::uuid), ('bob', '$uid{bob}'::uuid),
               ('carol', '$uid{carol}'::uuid), ('dave', '$uid{dave}'::uuid)) u(name, id)
 ORDER BY u.name};
my $matrix_before = q_src($perm_matrix);
my $uperms_before = q_src($user_perms);
# The expected answers, written out, so the comparison is not between two
# equally wrong sources.
like($matrix_before, qr/^alice docs:approve true$/m, 'source: alice (reviewer) may approve');
like($matrix_before, qr/^alice docs:read true$/m, 'source: alice reads through editor < user (seed role grant)');
like($matrix_before, qr/^bob reports:monthly true$/m, 'source: bob reads reports (auditor, until its expiry)');
like($matrix_before, qr/^bob docs:write false$/m, 'source: bob may not write');
like($matrix_before, qr/^carol admin:anything false$/m, 'source: carol (disabled) has nothing');
like($matrix_before, qr/^dave nothing:here true$/m, 'source: dave (admin, *:*) has everything');
cmp_ok(scalar(split(/\n/, $before{audit_of_our_users})), '>=', 8,
	'source: the setup wrote audit events about our users');

# ------------------------------------------------------------------
# Dump and restore.
# ------------------------------------------------------------------
my $dumpfile = $node->basedir . '/authx.sql';
$node->command_ok([ $node->installed_command('pg_dump'), '-d', $node->connstr($src),
		'-f', $dumpfile ], 'pg_dump of the source database');
my $dump = slurp_file($dumpfile);
like($dump, qr/^CREATE EXTENSION IF NOT EXISTS authx WITH SCHEMA authx;$/m, 'the dump creates the extension');
unlike($dump, qr/^INSERT INTO authx\.|^CREATE TABLE authx\.(users|sessions|roles|api_keys|rate_limit_\w+) /m,
	'the dump does not create the extension\'s own tables (it COPYs their rows)');
like($dump, qr/^COPY authx\.rate_limit_policies .*\nlogin\t7\t00:01:00\t/m, 'the edited seed login is in the dump');
unlike($dump, qr/^COPY authx\.rate_limit_policies .*\n(?:(?!\\\.\n).*\n)*?register\t/m,
	'the unedited seeds are not');

my ($seq_dumped) = $dump =~ /^SELECT pg_catalog\.setval\('authx\.audit_log_id_seq', (\d+), true\);$/m;
ok(defined $seq_dumped, 'the dump sets authx.audit_log_id_seq');

$node->safe_psql('postgres', "CREATE DATABASE $dst");
my ($out, $err) = ('', '');
ok(IPC::Run::run([ $node->installed_command('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=0', '-d',
			$node->connstr($dst), '-f', $dumpfile ],
		'>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default)),
	'psql ran the whole dump into a new database');

# psql names each failing statement's line: "psql:FILE:LINE: ERROR:  ...";
# every such line but a NOTICE counts (WARNING, FATAL, psql's own errors).
# Anything else on stderr must be the DETAIL, HINT, CONTEXT or LINE of one.
#
# Known bug: the worker's daily partitions audit_log_pYYYYMMDD are not
# extension members, so pg_dump writes them as tables that are attached to
# authx.audit_log, and then their primary key and indexes.  The parent is
# the extension's, with its indexes already there: ATTACH PARTITION makes
# the partition's primary key and indexes under those very names, so the
# dump's ADD CONSTRAINT ... PRIMARY KEY fails with "multiple primary keys"
# and its CREATE INDEX with "already exists".  The rows are restored all
# the same (checked below), but a restore with ON_ERROR_STOP or
# --single-transaction fails.  Only these exact messages, naming a
# partition the dump holds, are let through.
my %dumped_parts = map { $_ => 1 } ($dump =~ /^CREATE TABLE authx\.((?:audit|usage)_log_p\d{8}) \(/mg);
my @lines = grep { $_ ne '' } split(/\n/, $err);
my @errors = grep { /^psql:/ && !/^psql:[^:]+:\d+: NOTICE:/ } @lines;
my (@known, @other);
for my $e (@errors)
{
	if (   $e =~ /^psql:[^:]+:\d+: ERROR:  multiple primary keys for table "(audit_log_p\d{8})" are not allowed$/
		|| $e =~ /^psql:[^:]+:\d+: ERROR:  relation "((?:audit|usage)_log_p\d{8})_(?:at_idx|user_id_at_idx)" already exists$/)
	{
		push @{ $dumped_parts{$1} ? \@known : \@other }, $e;
	}
	else
	{
		push @other, $e;
	}
}
is(scalar(@other), 0, 'the restore raised no error but the known ones on the audit partitions')
  or diag(join("\n", @other[ 0 .. ($#other < 19 ? $#other : 19) ]));
my @stray = grep { !/^psql:/ && !/^(DETAIL|HINT|CONTEXT|LINE \d+):  / && !/^\s/ } @lines;
is(scalar(@stray), 0, 'stderr holds nothing but those messages') or diag(join("\n", @stray));
unlike(join("\n", map { s/^psql:[^:]+:\d+: //r } @errors),
	qr/\b(users|sessions|lockouts|roles|role_permissions|user_roles|api_keys|api_key_usage|rate_limit_policies|rate_limit_overrides)\b/,
	'no error names one of authx\'s own tables');
diag(scalar(@known) . ' restore errors on the ' . scalar(keys %dumped_parts)
	  . " dumped audit_log partitions (known bug), e.g.:\n" . join("\n", @known[ 0 .. ($#known < 2 ? $#known : 2) ]))
  if @known;

# Whatever the errors, each restored partition ends up as in the source:
# attached, with the primary key and indexes of audit_log, under the same
# names, attached to the parent's.
my $part_indexes = q{
SELECT t.relname || ' ' || ix.relname || ' ' || coalesce(pi.inhparent::regclass::text, '-') || ' '
       || pg_get_indexdef(ix.oid)
  FROM pg_inherits tp
  JOIN pg_class t ON t.oid = tp.inhrelid
  JOIN pg_index x ON x.indrelid = t.oid
  JOIN pg_class ix ON ix.oid = x.indexrelid
  LEFT JOIN pg_inherits pi ON pi.inhrelid = ix.oid
 WHERE tp.inhparent = 'authx.audit_log'::regclass AND t.relname = ANY (%s)
 ORDER BY 1};
my $parts = 'ARRAY[' . join(', ', map { "'$_'" } sort(keys %dumped_parts), 'audit_log_default') . ']::name[]';
is(q_dst(sprintf($part_indexes, $parts)), q_src(sprintf($part_indexes, $parts)),
	'restored audit_log partitions: the same primary keys and indexes, attached to the parent\'s');
cmp_ok(scalar(keys %dumped_parts), '>=', 1, 'the dump held daily audit partitions (the worker made them)');

# ------------------------------------------------------------------
# The restored database holds the same rows.
# ------------------------------------------------------------------
for my $t (sort keys %snap)
{
	my $after = q_dst($snap{$t});
	is($after, $before{$t}, "restored $t: the same rows, column for column");
}
is(q_dst(q{SELECT last_value FROM authx.audit_log_id_seq}), $seq_dumped,
	'restored: authx.audit_log_id_seq where the dump left it');
is(q_dst(q{SELECT count(*) FROM authx.audit_log WHERE id > (SELECT last_value FROM authx.audit_log_id_seq)}), 0,
	'restored: no audit event has an id the sequence will hand out again');
is(q_dst(q{SELECT count(*) FROM authx.users}), 4, 'restored: the four users');
is(q_dst(q{SELECT count(*) FROM authx.api_keys}), 3, 'restored: the three API keys');
is(q_dst(q{SELECT string_agg(name, ',' ORDER BY name) FROM authx.roles WHERE NOT seeded}),
	'auditor,editor,reviewer', 'restored: the own roles');
is(q_dst(q{SELECT name || ':' || parent FROM authx.roles WHERE name = 'editor'}), 'editor:user',
	'restored: editor is under the seed role user');
is(q_dst(q{SELECT count(*) FROM authx.user_roles}), 5, 'restored: the five grants');
is(q_dst(qq{SELECT expires_at > now() + interval '29 days' FROM authx.user_roles
             WHERE user_id = '$uid{bob}' AND role = 'auditor'}),
	't', 'restored: bob\'s auditor grant keeps its expiry');
is(q_dst(q{SELECT string_agg(policy || '/' || subject, ',' ORDER BY policy, subject) FROM authx.rate_limit_overrides}),
	'login/198.51.100.7,uploads/crawler,uploads/partner', 'restored: the three overrides');

# Seeds: made once by CREATE EXTENSION, the dump adds none.
is(q_dst(q{SELECT string_agg(name || ':' || count, ',' ORDER BY name)
             FROM (SELECT name, count(*) FROM authx.roles WHERE seeded GROUP BY name) s}),
	'admin:1,guest:1,manager:1,user:1', 'restored: each seed role exists exactly once, still seeded');
is(q_dst(q{SELECT string_agg(role || ' ' || permission || ' ' || seeded, ',' ORDER BY role, permission)
             FROM authx.role_permissions WHERE role IN ('admin', 'user')}),
	'admin *:* true,user docs:read false',
	'restored: the seed permission once (seeded), the one granted to the seed role user (not seeded)');
is(q_dst(q{SELECT string_agg(name || ' ' || max || '/' || per || ' ' || seeded, ',' ORDER BY name)
             FROM authx.rate_limit_policies}),
	'api 100/00:01:00 true,login 7/00:01:00 false,mfa 5/00:01:00 true,password_reset 3/00:15:00 true,'
	  . 'refresh 10/00:01:00 true,'
	  . 'register 3/00:01:00 true,uploads 3/01:00:00 false',
	'restored: the edited seed login is 7 per minute (not seeded), the other seeds as made, the own policy');
is(q_dst(q{SELECT description FROM authx.rate_limit_policies WHERE name = 'login'}),
	'Login attempts per address and per account.', 'restored: login keeps the seed\'s description');

# ------------------------------------------------------------------
# And works: sessions, passwords, keys, permissions, rate limits.
# ------------------------------------------------------------------
is(q_dst("SELECT authx.session_validate('$tok{alice}')"), $uid{alice}, 'restored: alice\'s session validates');
is(q_dst("SELECT authx.session_validate('$tok{bob}')"), $uid{bob}, 'restored: bob\'s session validates');
is(q_dst("SELECT authx.session_validate('$tok_revoked') IS NULL"), 't', 'restored: the revoked session stays revoked');
is(q_dst("SELECT authx.password_verify('$uid{alice}', 'Dump-Restore-alice-1')"), 't',
	'restored: alice\'s password verifies');
is(q_dst("SELECT authx.password_verify('$uid{alice}', 'Dump-Restore-bob-1')"), 'f',
	'restored: and another one does not');

is(q_dst("SELECT code, key_id, user_id, scopes FROM authx.apikey_verify('$key', 'docs:write')"),
	"valid|$key_id|$uid{alice}|{docs:read,docs:write}", 'restored: the API key verifies valid, with its scopes');
is(q_dst("SELECT code FROM authx.apikey_verify('$key', 'billing:read')"), 'insufficient_scope',
	'restored: and not for a scope it lacks');
is(q_dst("SELECT code, remaining FROM authx.apikey_verify('$uses_key', 'docs:read')"), 'valid|3',
	'restored: the metered key goes on from its 4 uses left');
is(q_dst("SELECT code FROM authx.apikey_verify('$rev_key')"), 'revoked', 'restored: the revoked key is revoked');

is(q_dst($perm_matrix), $matrix_before, 'restored: has_permission answers as in the source for every user and permission');
is(q_dst($user_perms), $uperms_before, 'restored: user_permissions as in the source');

# $n calls of rate_check in one session (one statement each, so each is a
# call): "allowed:remaining" of each.
sub rate_calls
{
	my ($policy, $subject, $n) = @_;
	my $one = qq{SELECT r.allowed || ':' || coalesce(r.remaining::text, '-')
	               FROM authx.rate_check('$policy', '$subject') r;\n};
	return join(' ', split(/\n/, q_dst($one x $n)));
}
is(rate_calls('uploads', 'someone', 4), 'true:2 true:1 true:0 false:0',
	'restored: the own policy through rate_check: 3 per hour, the 4th refused');
is(rate_calls('uploads', 'partner', 6), 'true:4 true:3 true:2 true:1 true:0 false:0',
	'restored: its override through rate_check: 5 for the partner');
is(rate_calls('uploads', 'crawler', 5), 'true:- true:- true:- true:- true:-',
	'restored: its bypass through rate_check');
is(rate_calls('login', '203.0.113.50', 8), join(' ', (map { "true:$_" } reverse(0 .. 6)), 'false:0'),
	'restored: the edited seed login through rate_check: 7, the 8th refused');
is(rate_calls('login', '198.51.100.7', 1), 'true:19', 'restored: login\'s override (20) is kept');

# The restored database goes on like the source: a new grant and a policy
# change work there (no leftover seed conflict).
q_dst(qq{SELECT authx.user_grant('$uid{bob}', 'editor')});
is(q_dst("SELECT authx.has_permission('$uid{bob}', 'docs:write')"), 't', 'restored: a new grant works');
q_dst(q{SELECT authx.rate_policy_set('register', 4, '1 minute')});
is(q_dst(q{SELECT max || ' ' || seeded FROM authx.rate_limit_policies WHERE name = 'register'}), '4 false',
	'restored: a seed can be edited there too');
is(q_src(q{SELECT max FROM authx.rate_limit_policies WHERE name = 'register'}), '3',
	'the source is untouched');

$node->stop;
done_testing();

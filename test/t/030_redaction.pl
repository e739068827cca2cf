
# The emit_log_hook keeps secrets passed to authx out of the server log:
# in logged statements that may carry one (they mention authx or a
# secret-taking function such as password_verify or login, with or without
# the schema, or they EXECUTE a prepared statement) literals and comments
# become '***', bind parameter values are hidden, and other statements log
# as usual.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AuthxTest::Util qw(authx_node psql_verbose);

my $node = authx_node('redact', conf => <<CONF);
log_statement = 'all'
log_min_error_statement = error
log_min_duration_statement = 0
log_parameter_max_length = -1
log_parameter_max_length_on_error = -1
CONF
my $offset = -s $node->logfile;

# Every secret used below; none may reach the log.
my %secret = (
	literal   => 'Sup3r-Secret-Passw0rd',
	error     => 'An0ther-Secret-Value',
	extended  => 'Third-Secret-Value',
	prepared  => 'Prepared-Secret-Value',
	bind_err  => 'Bind-Error-Secret',
	dollar    => 'Dollar-Quoted-Secret',
	escape    => 'Escape-String-Secret',
	syntax    => 'Syntax-Error-Secret',
	multi     => 'Multi-Statement-Secret',
);

# 1. a literal in a simple query
my $uid = $node->safe_psql('postgres',
	"SELECT authx.user_create('redact\@example.com', '$secret{literal}', 'Redact Me')");
like($uid, qr/^[0-9a-f-]{36}$/, 'user created with a literal password');

# 2. the same call failing (duplicate email): the STATEMENT line of the error
my ($rc, $out, $err) = psql_verbose($node,
	"SELECT authx.user_create('redact\@example.com', '$secret{error}')");
like($err, qr/23505: email is already registered/, 'duplicate email fails with 23505');

# 3. other quoting styles
$node->safe_psql('postgres',
	"SELECT authx.user_create('dollar\@example.com', \$pw\$$secret{dollar}\$pw\$)");
$node->safe_psql('postgres',
	"SELECT authx.user_create('escape\@example.com', E'$secret{escape}\\\\x')");
($rc, $out, $err) = psql_verbose($node,
	"SELECT authx.user_create('syntax\@example.com', '$secret{syntax}'");
like($err, qr/42601/, 'a statement with a syntax error fails');
# psql's \; sends both statements as one simple query
$node->safe_psql('postgres',
	"SELECT 'multi' \\; SELECT authx.password_verify('$uid', '$secret{multi}');");

# 4. extended protocol: values travel as bind parameters, which
#    log_statement / log_min_duration_statement print as a DETAIL.
for my $mode ([ 'extended', 'extended' ], [ 'prepared', 'prepared' ])
{
	my ($m, $key) = @$mode;
	$node->pgbench(
		"-n -M $m -t 1 -D uid=$uid -D pw=$secret{$key}",
		0,
		[qr{processed: 1/1}],
		[],
		"pgbench -M $m calls password_verify with a bind parameter",
		{ "030_verify_$m.sql" => "SELECT authx.password_verify(:uid, :pw);\n" });
}

# 5. an error in the extended protocol: log_parameter_max_length_on_error
#    would put the parameters in the CONTEXT line.
{
	my ($pout, $perr) = ('', '');
	my $script = $node->basedir . '/030_dup.sql';
	PostgreSQL::Test::Utils::append_to_file($script,
		"SELECT authx.user_create(:email, :pw);\n");
	local %ENV = (%ENV, PGHOST => $node->host, PGPORT => $node->port);
	IPC::Run::run(
		[ 'pgbench', '-n', '-M', 'extended', '-t', '1', '-f', $script,
			'-D', 'email=redact@example.com', '-D', "pw=$secret{bind_err}",
			'postgres' ],
		'>', \$pout, '2>', \$perr,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	like($perr, qr/email is already registered/,
		'pgbench: user_create with bind parameters fails (duplicate)');
}

# 6. statements that do not mention authx log normally
$node->safe_psql('postgres', "SELECT 'visible-literal'");

# the passwords really are the ones stored (calls redacted as well)
is($node->safe_psql('postgres', "SELECT authx.password_verify('$uid', '$secret{literal}')"),
	't', 'the literal password was stored');

my $log = slurp_file($node->logfile, $offset);
for my $k (sort keys %secret)
{
	unlike($log, qr/\Q$secret{$k}\E/, "secret '$k' does not appear in the server log");
}
like($log, qr/statement: SELECT authx\.user_create\('\*\*\*', '\*\*\*', '\*\*\*'\)/,
	"literal call logged with '***' in place of every literal");
like($log, qr/statement: SELECT authx\.user_create\('\*\*\*', \$pw\$\*\*\*\$pw\$\)/,
	'dollar-quoted literal masked');
like($log, qr/ERROR:  email is already registered/, 'the error itself is logged');
like($log, qr/(execute|duration).*SELECT authx\.password_verify\(\$1, \$2\)/,
	'extended-protocol statement logged');
like($log, qr/parameters: \(hidden by authx\)/, 'bind parameters replaced');
like($log, qr/statement: SELECT '\*\*\*' ; SELECT authx\.password_verify\('\*\*\*', '\*\*\*'\)/,
	'a multi-statement query is masked as a whole');
like($log, qr/statement: SELECT 'visible-literal'/,
	'a statement not mentioning authx keeps its literal');
unlike($log, qr/\Q$uid\E/, 'the user id (a literal too) is masked as well');

# Statements the first version of the heuristic let through; each is run
# alone and its own stretch of the log is checked.
my %case = (
	# a quote inside a comment flipped literal/non-literal: comments are parsed
	comment   => [ 'Comment-Gap-Secret',
		"SELECT authx.password_verify('$uid', -- the user's password\n 'Comment-Gap-Secret')",
		qr/statement: SELECT authx\.password_verify\('\*\*\*', --\*\*\*\n\s*'\*\*\*'\)/ ],
	# the secret inside a comment, nested comments
	in_comment => [ 'Block-Comment-Secret',
		"SELECT authx.password_verify('$uid', 'x') /* outer /* Block-Comment-Secret */ still */",
		qr/statement: SELECT authx\.password_verify\('\*\*\*', '\*\*\*'\) \/\*\*\* \*\/$/m ],
	line_comment => [ 'Line-Comment-Secret',
		"SELECT authx.password_verify('$uid', 'x') -- Line-Comment-Secret",
		qr/statement: SELECT authx\.password_verify\('\*\*\*', '\*\*\*'\) --\*\*\*$/m ],
	# a quote inside a quoted identifier did the same: copied verbatim now
	ident     => [ 'Ident-Gap-Secret',
		"SELECT 1 AS \"user's\", authx.password_verify('$uid', 'Ident-Gap-Secret')",
		qr/statement: SELECT 1 AS "user's", authx\.password_verify\('\*\*\*', '\*\*\*'\)/ ],
	# the statement does not mention authx (search_path) but the function
	path      => [ 'Search-Path-Gap-Secret',
		"SET search_path = authx, pg_catalog;\nSELECT password_verify('$uid', 'Search-Path-Gap-Secret');",
		qr/statement: SELECT password_verify\('\*\*\*', '\*\*\*'\)/ ],
	login     => [ 'Login-Path-Secret',
		"SET search_path = authx, pg_catalog;\nSELECT status FROM LOGIN('someone\@example.com', 'Login-Path-Secret');",
		qr/statement: SELECT status FROM LOGIN\('\*\*\*', '\*\*\*'\)/ ],
	session   => [ 'Session-Token-Secret',
		"SET search_path = authx, pg_catalog;\nSELECT Session_Validate('axs_Session-Token-Secret');",
		qr/statement: SELECT Session_Validate\('\*\*\*'\)/ ],
	upper     => [ 'Upper-Case-Secret',
		"SELECT AUTHX.PASSWORD_VERIFY('$uid', 'Upper-Case-Secret')",
		qr/statement: SELECT AUTHX\.PASSWORD_VERIFY\('\*\*\*', '\*\*\*'\)/ ],
	# EXECUTE of a prepared statement does not mention authx
	execute   => [ 'Execute-Gap-Secret',
		"PREPARE pv(uuid, text) AS SELECT authx.password_verify(\$1, \$2);\nEXECUTE pv('$uid', 'Execute-Gap-Secret');",
		qr/statement: EXECUTE pv\('\*\*\*', '\*\*\*'\)/ ],
);
for my $c (sort keys %case)
{
	my ($s, $sql, $masked) = @{ $case{$c} };
	my $o = -s $node->logfile;
	$node->safe_psql('postgres', $sql);
	my $l = slurp_file($node->logfile, $o);
	unlike($l, qr/\Q$s\E/, "$c: secret does not appear in the log");
	like($l, $masked, "$c: statement logged, masked");
}

# Only literals and comments are masked: the rest of a statement, and
# statements with none of the words, stay readable.
{
	my $o = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT 'plain-literal' AS harmless /* plain comment */");
	my $l = slurp_file($node->logfile, $o);
	like($l, qr/statement: SELECT 'plain-literal' AS harmless \/\* plain comment \*\//,
		'no secret word: literal and comment kept');
}

$node->stop;
done_testing();


# Copyright: authx project.  Test helper, not installed.

=pod

=head1 NAME

AuthxTest::Util - small helpers shared by the authx TAP tests

=head1 SYNOPSIS

  use AuthxTest::Util qw(authx_node stat_value psql_verbose wait_until);

  my $node = authx_node('main', conf => "authx.maintenance_naptime = 1");
  my $pid  = stat_value($node, 'maintenance_worker_pid');
  my ($rc, $out, $err) = psql_verbose($node, 'SELECT * FROM authx.stats');

=cut

package AuthxTest::Util;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use Time::HiRes qw(usleep time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT_OK = qw(authx_node stat_value stats psql_verbose wait_until
  audit_count worker_pid notifications);

=pod

=over

=item authx_node($name, preload => 1, conf => '...', start => 1, create => 1, init => {})

A new cluster: initdb (with the C<init> options of
PostgreSQL::Test::Cluster::init, e.g. allows_streaming => 1), then
(preload, the default) shared_preload_libraries = 'authx' and
authx.database = 'postgres', then the extra C<conf> lines; started and with
C<CREATE EXTENSION authx> in postgres unless told not to.  When preloaded,
returns once the worker's first maintenance run is done.

=cut

sub authx_node
{
	my ($name, %p) = @_;
	my $preload = $p{preload} // 1;
	my $node    = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $p{init} // {} });
	$node->append_conf('postgresql.conf', <<CONF) if $preload;
shared_preload_libraries = 'authx'
authx.database = 'postgres'
CONF
	$node->append_conf('postgresql.conf', $p{conf}) if defined $p{conf};
	return $node if defined $p{start} && !$p{start};
	$node->start;
	return $node if defined $p{create} && !$p{create};
	$node->safe_psql('postgres', 'CREATE EXTENSION authx');

	# Let the worker's first maintenance run (today's partitions) finish
	# before the test goes on: tests count maintenance runs and errors from
	# a known state, and inserts need not wait behind the partition DDL.
	if ($preload)
	{
		wait_until('first maintenance run', 60,
			sub { stat_value($node, 'maintenance_runs') >= 1 })
		  or die "the authx maintenance worker did not run in node $name";
	}
	return $node;
}

=pod

=item stats($node)

authx.stats as a hash ref name => value.

=item stat_value($node, $name)

One value of authx.stats (dies when the row is missing).

=item worker_pid($node)

The maintenance worker's pid as published in shared memory (0 when none).

=cut

sub stats
{
	my ($node) = @_;
	my %h = map { split(/\|/, $_, 2) }
	  split(/\n/, $node->safe_psql('postgres', 'SELECT name, value FROM authx.stats'));
	return \%h;
}

sub stat_value
{
	my ($node, $name) = @_;
	my $v = $node->safe_psql('postgres',
		"SELECT value FROM authx.stats WHERE name = '$name'");
	croak "no stat named $name" if $v eq '';
	return $v;
}

sub worker_pid
{
	my ($node) = @_;
	return stat_value($node, 'maintenance_worker_pid');
}

=pod

=item audit_count($node, $where)

count(*) of authx.audit_log rows matching the SQL condition.

=cut

sub audit_count
{
	my ($node, $where) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM authx.audit_log WHERE $where");
}

=pod

=item psql_verbose($node, $sql, %params)

Run $sql with VERBOSITY verbose (errors carry their SQLSTATE) and
ON_ERROR_STOP; returns (exit code, stdout, stderr).

=cut

sub psql_verbose
{
	my ($node, $sql, %params) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql(
		$params{dbname} // 'postgres', $sql,
		stdout       => \$out,
		stderr       => \$err,
		timeout      => $params{timeout} // $PostgreSQL::Test::Utils::timeout_default,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return ($rc, $out, $err);
}

=pod

=item wait_until($description, $seconds, sub { ... })

Call the sub every 100 ms until it returns true or $seconds pass; returns
whether it did (and diags the description on timeout).  Exceptions in the
sub count as false (the server may be restarting).

=cut

sub wait_until
{
	my ($what, $secs, $cond) = @_;
	my $deadline = time() + $secs;
	my $err;
	while (1)
	{
		my $ok = eval { $cond->() };
		$err = $@;
		return 1 if $ok;
		last if time() >= $deadline;
		usleep(100_000);
	}
	diag("timed out after $secs s waiting for: $what" . ($err ? " (last error: $err)" : ''));
	return 0;
}

=pod

=item notifications($bg)

The notifications a background psql session (PostgreSQL::Test::BackgroundPsql,
having run C<LISTEN>) has received since its last query: it runs C<SELECT 1>,
after which psql prints them; returns a list of C<[channel, payload, pid]>.

=cut

sub notifications
{
	my ($bg) = @_;
	my @got;
	for my $line (split /\n/, $bg->query_safe('SELECT 1'))
	{
		push @got, [ $1, $2, $3 ]
		  if $line =~
		  /^Asynchronous notification "(\w+)" with payload "(.*)" received from server process with PID (\d+)\.$/;
	}
	return @got;
}

=pod

=back

=cut

1;

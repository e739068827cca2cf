
# Access tokens (JWT) and refresh tokens against an independent
# implementation, across restarts and a change of the key file.
#
# python3-jwt (PyJWT, Debian's, run by /usr/bin/python3) is the other side:
#  - EdDSA tokens of token_issue verify with the public key from
#    authx.jwks() (jwt.PyJWK); the claims are sub (the user), sid (the
#    session passed), exp - iat = authx.token_ttl, expires_at = exp, jti a
#    uuid, role, roles, permissions, custom claims, iss / aud when set;
#    token_verify answers the same claims; a token with its payload or
#    signature changed is rejected by both;
#  - a token PyJWT signs with a foreign Ed25519 key under the same kid (the
#    very header authx writes) is rejected by token_verify, and so are
#    alg none and HS256 keyed with the public key under that kid;
#  - HS256 tokens (authx.token_alg = HS256) verify in PyJWT with the secret
#    from signing_key_secret(kid) (superuser only; HS256 keys are not in
#    jwks()), and a token PyJWT signs with that secret verifies in authx;
#  - after signing_key_rotate the old token verifies in both (the old key
#    stays in jwks() for authx.token_ttl), new tokens carry the new kid;
#  - refresh: ok rotates (same session, a new jti), the parent again within
#    authx.refresh_reuse_grace gets a sibling, garbage and tampered tokens
#    are invalid, the refresh policy answers rate_limited (the token stays
#    good), an expired session answers expired, a password reset revokes;
#  - reuse (grace 0): reused, the family and its session revoked (its access
#    tokens stop verifying), NOTIFY authx_alerts token.refresh_reused
#    (high); the seeded rule refresh_reuse gets the address auto-blocked by
#    the maintenance worker, and token_refresh from it answers blocked;
#  - a clean restart, an immediate shutdown and a crash-restart (SIGKILL of
#    a backend): tokens issued before verify, new ones are signed with the
#    same (re-opened) keys, refresh tokens from before rotate;
#  - another valid key file: signing with a key sealed under the old one
#    fails with XX001 naming the key file, refresh tokens made under the old
#    one answer invalid (no error), token_verify of HS256 tokens answers
#    NULL without raising, and signing_key_rotate recovers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(time sleep);

use AuthxTest::Util qw(authx_node psql_verbose wait_until audit_count worker_pid notifications);

# In the project's package list (scripts/lib.sh): missing is a failure.
my $python = '/usr/bin/python3';
die "$python with the jwt module is required (Debian: python3-jwt python3-cryptography)\n"
  unless -x $python
  && system($python, '-c', 'import jwt, cryptography.hazmat.primitives.asymmetric.ed25519') == 0;

my $ttl = 600;
my $node = authx_node('tokens', conf => <<CONF);
authx.maintenance_naptime = 1
authx.token_ttl = $ttl
authx.password_memlimit = 64
authx.password_opslimit = 1
restart_after_crash = on
max_prepared_transactions = 2
CONF
my $datadir = $node->data_dir;
my $keyfile = "$datadir/authx.key";

sub sql { return $node->safe_psql('postgres', $_[0]); }

# ------------------------------------------------------------------
# The PyJWT side: one JSON request on stdin, one JSON answer on stdout.
# ------------------------------------------------------------------
my $pyfile = PostgreSQL::Test::Utils::tempdir() . '/jwt_peer.py';
open my $pfh, '>', $pyfile or die "$pyfile: $!";
print $pfh <<'PY';
import json, sys
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

req = json.load(sys.stdin)
op = req["op"]
try:
    if op == "verify_jwks":
        tok = req["token"]
        hdr = jwt.get_unverified_header(tok)
        jwk = None
        for k in req["jwks"]["keys"]:
            if k.get("kid") == hdr.get("kid"):
                jwk = jwt.PyJWK(k)
        if jwk is None:
            raise KeyError("no key with kid %r in the JWKS" % hdr.get("kid"))
        kw = {}
        if "audience" in req:
            kw["audience"] = req["audience"]
        if "issuer" in req:
            kw["issuer"] = req["issuer"]
        claims = jwt.decode(tok, jwk.key, algorithms=["EdDSA"], **kw)
        out = {"ok": True, "header": hdr, "claims": claims}
    elif op == "verify_hs":
        tok = req["token"]
        hdr = jwt.get_unverified_header(tok)
        claims = jwt.decode(tok, bytes.fromhex(req["secret"]), algorithms=["HS256"])
        out = {"ok": True, "header": hdr, "claims": claims}
    elif op == "sign_ed_foreign":
        k = Ed25519PrivateKey.generate()
        tok = jwt.encode(req["claims"], k, algorithm="EdDSA", headers={"kid": req["kid"], "typ": "JWT"})
        # The token is good for its own key: only the key differs.
        jwt.decode(tok, k.public_key(), algorithms=["EdDSA"], options={"verify_aud": False})
        out = {"ok": True, "token": tok}
    elif op == "sign_hs":
        tok = jwt.encode(req["claims"], bytes.fromhex(req["secret"]), algorithm="HS256",
                         headers={"kid": req["kid"], "typ": "JWT"})
        out = {"ok": True, "token": tok}
    elif op == "sign_none":
        tok = jwt.encode(req["claims"], None, algorithm="none", headers={"kid": req["kid"], "typ": "JWT"})
        out = {"ok": True, "token": tok}
    else:
        raise ValueError("unknown op " + op)
except Exception as e:
    out = {"ok": False, "error": type(e).__name__ + ": " + str(e)}
print(json.dumps(out))
PY
close $pfh;

my $json = JSON::PP->new->canonical;

sub py
{
	my ($req) = @_;
	my ($in, $out, $err) = ($json->encode($req), '', '');
	IPC::Run::run([ $python, $pyfile ], '<', \$in, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default))
	  or die "python failed: $err";
	return decode_json($out);
}

sub jwks { return decode_json(sql('SELECT authx.jwks()')); }

sub py_verify
{
	my ($tok, %opt) = @_;
	return py({ op => 'verify_jwks', token => $tok, jwks => $opt{jwks} // jwks(),
		map { exists $opt{$_} ? ($_ => $opt{$_}) : () } qw(audience issuer) });
}

sub b64url_decode
{
	my ($s) = @_;
	$s =~ tr{-_}{+/};
	$s .= '=' x ((4 - length($s) % 4) % 4);
	return decode_base64($s);
}

sub b64url_encode
{
	my ($b) = @_;
	my $s = encode_base64($b, '');
	$s =~ tr{+/}{-_};
	$s =~ s/=+$//;
	return $s;
}

sub header_of  { return decode_json(b64url_decode((split /\./, $_[0])[0])); }
sub payload_of { return decode_json(b64url_decode((split /\./, $_[0])[1])); }

# token_verify: the claims as a hash, or undef for NULL.
sub authx_verify
{
	my ($tok, $pre) = @_;
	my $r = sql(($pre // '') . "SELECT coalesce(authx.token_verify('$tok')::text, 'NULL')");
	return $r eq 'NULL' ? undef : decode_json($r);
}

# token_issue: { access, exp (epoch of expires_at), refresh }.
sub issue
{
	my ($uid, %p) = @_;
	my $sess   = defined $p{session} ? "'$p{session}'" : 'NULL';
	my $claims = $p{claims} // '{}';
	my ($a, $e, $r) = split /\|/,
	  sql(($p{pre} // '')
		  . "SELECT access_token, extract(epoch FROM expires_at)::bigint, refresh_token"
		  . " FROM authx.token_issue('$uid', $sess, '$claims')");
	return { access => $a, exp => $e, refresh => $r };
}

# token_refresh: { status, access, exp, refresh }.
sub refresh
{
	my ($rt, $ip, $pre) = @_;
	$ip = defined $ip ? "'$ip'" : 'NULL';
	my ($s, $a, $e, $r) = split /\|/,
	  sql(($pre // '') . "SELECT status, access_token, extract(epoch FROM expires_at)::bigint, refresh_token"
		  . " FROM authx.token_refresh('$rt', $ip)"), -1;
	return { status => $s, access => $a, exp => $e, refresh => $r };
}

my $n = 0;
sub new_user
{
	$n++;
	return sql("SELECT authx.user_create('tok$n\@example.com', 'Tokens-Password-$n')");
}

sub session_of
{
	my ($uid) = @_;
	my $tok = sql("SELECT session_token FROM authx.session_create('$uid')");
	return ($tok, sql("SELECT session_id FROM authx.session_info('$tok')"));
}

my $uuid_re = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

# ------------------------------------------------------------------
# EdDSA: token_issue, checked by PyJWT with the JWKS.
# ------------------------------------------------------------------
is(sql('SELECT extract(epoch FROM current_setting(\'authx.token_ttl\')::interval)::int'), $ttl,
	"authx.token_ttl = $ttl s (set in postgresql.conf)");
my $ua = new_user();
sql(q{SELECT authx.role_create('t100_editor'), authx.role_grant('t100_editor', 'documents:write')});
sql("SELECT authx.user_grant('$ua', 't100_editor')");
my ($sa_tok, $sa_id) = session_of($ua);
is(sql('SELECT count(*) FROM authx.signing_keys'), 0, 'no signing key before the first token');
my $t1 = issue($ua, session => $sa_tok, claims => '{"tenant": "acme", "plan": {"tier": 2}}');
like($t1->{access},  qr/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'token_issue: a JWS compact token');
like($t1->{refresh}, qr/^axr_[A-Za-z0-9_-]{91}$/, 'and an axr_ refresh token');
is(sql("SELECT alg || '|' || (retired_at IS NULL) FROM authx.signing_keys"), 'EdDSA|true',
	'the first token made one current EdDSA key');
my $kid1 = sql('SELECT kid FROM authx.signing_keys');

my $jw = jwks();
is(scalar @{ $jw->{keys} }, 1, 'jwks(): one key');
is_deeply(
	{ map { $_ => $jw->{keys}[0]{$_} } qw(kty crv alg use kid) },
	{ kty => 'OKP', crv => 'Ed25519', alg => 'EdDSA', use => 'sig', kid => $kid1 },
	'an OKP/Ed25519 JWK for EdDSA signatures, with the kid');
is_deeply(header_of($t1->{access}), { alg => 'EdDSA', kid => $kid1, typ => 'JWT' },
	'the header: alg EdDSA, the kid, typ JWT');

my $v = py_verify($t1->{access}, jwks => $jw);
ok($v->{ok}, 'PyJWT verifies the token with the key from jwks() (jwt.PyJWK)') or diag($v->{error});
my $c = $v->{claims} // {};
is($c->{sub}, $ua,    'sub: the user');
is($c->{sid}, $sa_id, 'sid: the session passed');
is($c->{exp} - $c->{iat}, $ttl, 'exp - iat = authx.token_ttl');
ok(abs($c->{iat} - time()) < 30, 'iat: now');
is($c->{exp}, $t1->{exp}, 'exp: the expires_at token_issue returned');
like($c->{jti}, $uuid_re, 'jti: a uuid');
is($c->{role}, 'authenticated', 'role: authx.token_role');
is_deeply($c->{roles}, ['t100_editor'], 'roles: the granted role');
is_deeply($c->{permissions}, ['documents:write'], 'permissions: its permission');
is($c->{tenant}, 'acme', 'a custom claim');
is_deeply($c->{plan}, { tier => 2 }, 'a nested custom claim');
ok(!exists $c->{iss} && !exists $c->{aud}, 'no iss or aud while unset');
is_deeply(authx_verify($t1->{access}), $c, 'token_verify answers the same claims');

# Tampered tokens.
my @seg = split /\./, $t1->{access};
my $other = new_user();
(my $body = b64url_decode($seg[1])) =~ s/\Q$ua\E/$other/;
isnt($body, b64url_decode($seg[1]), '(a payload naming another user)');
my $forged = join '.', $seg[0], b64url_encode($body), $seg[2];
$v = py_verify($forged, jwks => $jw);
ok(!$v->{ok}, 'PyJWT rejects the token with its payload changed');
like($v->{error} // '', qr/InvalidSignatureError/, 'for its signature');
is(authx_verify($forged), undef, 'token_verify: NULL');
my $sig = b64url_decode($seg[2]);
substr($sig, 10, 1) = chr(ord(substr($sig, 10, 1)) ^ 1);
my $badsig = join '.', @seg[ 0, 1 ], b64url_encode($sig);
ok(!py_verify($badsig, jwks => $jw)->{ok}, 'PyJWT rejects the token with one signature bit flipped');
is(authx_verify($badsig), undef, 'token_verify: NULL');
is(authx_verify("$t1->{access}x"), undef, 'token_verify of the token with a character appended: NULL');

# iss and aud.
my $t2 = issue($ua, pre => "SET authx.token_issuer = 'https://auth.example.com'; SET authx.token_audience = 'api';");
$v = py_verify($t2->{access}, issuer => 'https://auth.example.com', audience => 'api');
ok($v->{ok}, 'authx.token_issuer / token_audience: PyJWT verifies iss and aud') or diag($v->{error});
is(($v->{claims} // {})->{iss}, 'https://auth.example.com', 'iss claim');
$v = py_verify($t2->{access}, issuer => 'https://auth.example.com', audience => 'other');
like($v->{error} // '', qr/InvalidAudienceError/, 'PyJWT refuses it for another audience');
my ($rc, $out, $err) = psql_verbose($node, "SELECT authx.token_issue('$ua', NULL, '{\"sub\": \"x\"}')");
like($err, qr/ERROR:  22023: claims may not set sub/, 'a custom claim may not set sub (22023)');

# ------------------------------------------------------------------
# Tokens authx did not sign.
# ------------------------------------------------------------------
my $claims1 = payload_of($t1->{access});
my $f = py({ op => 'sign_ed_foreign', kid => $kid1, claims => { %$claims1, jti => 'f0000000-0000-4000-8000-000000000001' } });
ok($f->{ok}, 'PyJWT signs with a foreign Ed25519 key under the kid') or diag($f->{error});
my $ftok = $f->{token} // '';
is((split /\./, $ftok)[0], $seg[0], 'its header segment is byte for byte the one authx writes');
ok(!py_verify($ftok, jwks => $jw)->{ok}, 'PyJWT does not verify it with the JWKS');
is(authx_verify($ftok), undef, 'token_verify: NULL for the foreign key');
$f = py({ op => 'sign_none', kid => $kid1, claims => $claims1 });
is(authx_verify($f->{token} // ''), undef, 'token_verify: NULL for alg none with the kid');
$f = py({ op => 'sign_hs', kid => $kid1, claims => $claims1,
		secret => unpack('H*', b64url_decode($jw->{keys}[0]{x})) });
is(authx_verify($f->{token} // ''), undef, 'token_verify: NULL for HS256 keyed with the public key under the kid');

# ------------------------------------------------------------------
# HS256.
# ------------------------------------------------------------------
my $hs_pre = "SET authx.token_alg = 'HS256';";
my $h1 = issue($ua, session => $sa_tok, pre => $hs_pre);
my $hh = header_of($h1->{access});
is($hh->{alg}, 'HS256', 'authx.token_alg = HS256: an HS256 token');
my $hkid = $hh->{kid} // '';
is(sql("SELECT alg FROM authx.signing_keys WHERE kid = '$hkid'"), 'HS256', 'signed by a new HS256 key');
ok(!grep({ $_->{kid} eq $hkid } @{ jwks()->{keys} }), 'which jwks() does not list');
my $secret = sql("SELECT encode(authx.signing_key_secret('$hkid'), 'hex')");
like($secret, qr/^[0-9a-f]{64}$/, 'signing_key_secret(kid): 32 bytes');
$v = py({ op => 'verify_hs', token => $h1->{access}, secret => $secret });
ok($v->{ok}, 'PyJWT verifies the HS256 token with that secret') or diag($v->{error});
$c = $v->{claims} // {};
is($c->{sub}, $ua, 'sub');
is($c->{sid}, $sa_id, 'sid');
is($c->{exp} - $c->{iat}, $ttl, 'exp - iat');
is_deeply(authx_verify($h1->{access}), $c, 'token_verify: the same claims');
(my $wrong = $secret) =~ tr/0-9a-f/1-9a-f0/;
like(py({ op => 'verify_hs', token => $h1->{access}, secret => $wrong })->{error} // '',
	qr/InvalidSignatureError/, 'PyJWT refuses it with another secret');
$f = py({ op => 'sign_hs', kid => $hkid, secret => $secret,
		claims => { %{ payload_of($h1->{access}) }, jti => 'f0000000-0000-4000-8000-000000000002' } });
is((split /\./, $f->{token})[0], (split /\./, $h1->{access})[0], 'PyJWT writes the same HS256 header');
is((authx_verify($f->{token}) // {})->{jti}, 'f0000000-0000-4000-8000-000000000002',
	'token_verify accepts a token PyJWT signed with the secret');
$f = py({ op => 'sign_hs', kid => $hkid, secret => $secret, claims => { %{ payload_of($h1->{access}) }, exp => time() - 5 } });
is(authx_verify($f->{token}), undef, 'but not one whose exp has passed');
$f = py({ op => 'sign_hs', kid => $hkid, secret => $wrong, claims => payload_of($h1->{access}) });
is(authx_verify($f->{token}), undef, 'nor one signed with another secret');
($rc, $out, $err) = psql_verbose($node, "SET ROLE authx_admin; SELECT authx.signing_key_secret('$hkid')");
like($err, qr/ERROR:  42501: permission denied for function signing_key_secret/,
	'signing_key_secret: superuser only (42501 for authx_admin)');
($rc, $out, $err) = psql_verbose($node, "SELECT authx.signing_key_secret('$kid1')");
like($err, qr/ERROR:  P0002: /, 'signing_key_secret of an EdDSA kid: P0002');

# An application role (authx_app): verifies, refreshes, reads the JWKS;
# no secret, no key table.
sql('CREATE ROLE t100_app LOGIN IN ROLE authx_app');
sub as_app
{
	my ($q) = @_;
	my ($o, $e) = ('', '');
	my $r = $node->psql('postgres', $q, stdout => \$o, stderr => \$e,
		extra_params => [ '-U', 't100_app', '-v', 'VERBOSITY=verbose' ]);
	return ($r, $o, $e);
}
($rc, $out) = as_app("SELECT authx.token_verify('$t1->{access}') ->> 'jti', authx.token_verify('$h1->{access}') ->> 'sub'");
is($out, payload_of($t1->{access})->{jti} . "|$ua", 'authx_app: token_verify of EdDSA and HS256 tokens');
($rc, $out) = as_app('SELECT authx.jwks()');
is_deeply(decode_json($out || '{}'), jwks(), 'authx_app: jwks()');
($rc, $out, $err) = as_app("SELECT authx.signing_key_secret('$hkid')");
like($err, qr/ERROR:  42501: permission denied for function signing_key_secret/, 'authx_app: no signing_key_secret');
($rc, $out, $err) = as_app('SELECT count(*) FROM authx.signing_keys');
like($err, qr/ERROR:  42501: permission denied for table signing_keys/, 'authx_app: no access to authx.signing_keys');
($rc, $out) = as_app("SELECT status FROM authx.token_refresh('" . issue($ua)->{refresh} . "')");
is($out, 'ok', 'authx_app: token_refresh');

# ------------------------------------------------------------------
# Rotation.
# ------------------------------------------------------------------
my $kid2 = sql('SELECT authx.signing_key_rotate()');
like($kid2, qr/^[A-Za-z0-9_-]{16}$/, 'signing_key_rotate returns a new kid');
isnt($kid2, $kid1, 'another one');
is(sql("SELECT kid || '|' || alg FROM authx.signing_keys WHERE retired_at IS NULL"), "$kid2|EdDSA",
	'it is the one current key');
is(sql("SELECT extract(epoch FROM verify_until - retired_at)::int FROM authx.signing_keys WHERE kid = '$kid1'"),
	$ttl, 'the old one verifies for authx.token_ttl more');
$jw = jwks();
is_deeply([ map { $_->{kid} } @{ $jw->{keys} } ], [ $kid2, $kid1 ], 'jwks(): the new key, then the old one');
$v = py_verify($t1->{access}, jwks => $jw);
ok($v->{ok}, 'PyJWT verifies the token of the old key with the new JWKS') or diag($v->{error});
ok(authx_verify($t1->{access}), 'token_verify too');
ok(authx_verify($h1->{access}), 'the HS256 token (its key retired) still verifies in authx');
my $t3 = issue($ua);
is(header_of($t3->{access})->{kid}, $kid2, 'new tokens carry the new kid');
$v = py_verify($t3->{access}, jwks => $jw);
ok($v->{ok}, 'and verify in PyJWT') or diag($v->{error});
my $sid3 = ($v->{claims} // {})->{sid} // '';
is(sql("SELECT user_id FROM authx.sessions WHERE id = '$sid3' AND revoked_at IS NULL"), $ua,
	'token_issue without a session: a session of its own, in sid');

# A rotation rolled back leaves nothing behind, not even in the backend
# that signed with the new key before the ROLLBACK.
my @rb = split /\n/, sql("BEGIN;
	SELECT authx.signing_key_rotate();
	SELECT access_token IS NOT NULL FROM authx.token_issue('$ua');
	ROLLBACK;
	SELECT access_token FROM authx.token_issue('$ua');");
is(scalar(@rb), 3, 'rotate, token_issue, ROLLBACK, token_issue in one session');
is(sql("SELECT count(*) FROM authx.signing_keys WHERE kid = '$rb[0]'"), 0, 'the rolled-back key is not kept');
is(sql("SELECT kid FROM authx.signing_keys WHERE retired_at IS NULL"), $kid2, 'the current key is still current');
is(header_of($rb[2] // '')->{kid}, $kid2, 'after the ROLLBACK that session signs with the current key');
$v = py_verify($rb[2] // '');
ok($v->{ok}, 'its token verifies in PyJWT with jwks()') or diag($v->{error});
ok(authx_verify($rb[2] // ''), 'and in another session');
($rc, $out, $err) = psql_verbose($node, "BEGIN; SELECT authx.signing_key_rotate(); PREPARE TRANSACTION 't100';");
like($err, qr/ERROR:  0A000: cannot prepare a transaction that changed authx [a-z]/,
	'PREPARE TRANSACTION after signing_key_rotate: refused (0A000)');
unlike($err, qr/\(null\)/, 'naming what it changed');
is(sql('SELECT count(*) FROM pg_prepared_xacts'), 0, '(nothing prepared)');

# Roles are read again at each refresh.
my $t3b = issue($ua);
sql("SELECT authx.user_revoke('$ua', 't100_editor')");
my $r3b = refresh($t3b->{refresh});
is($r3b->{status}, 'ok', 'refresh after the role is revoked: ok');
is_deeply([ @{ payload_of($r3b->{access})->{roles} }, @{ payload_of($r3b->{access})->{permissions} } ], [],
	'the new access token has no roles or permissions');
sql("SELECT authx.user_grant('$ua', 't100_editor')");

# ------------------------------------------------------------------
# Refresh.
# ------------------------------------------------------------------
my $r1 = refresh($t3->{refresh});
is($r1->{status}, 'ok', 'token_refresh: ok');
like($r1->{refresh}, qr/^axr_[A-Za-z0-9_-]{91}$/, 'a new refresh token');
isnt($r1->{refresh}, $t3->{refresh}, 'not the one presented');
$v = py_verify($r1->{access}, jwks => $jw);
ok($v->{ok}, 'its access token verifies in PyJWT') or diag($v->{error});
$c = $v->{claims} // {};
is($c->{sid}, $sid3, 'same session');
isnt($c->{jti}, payload_of($t3->{access})->{jti}, 'a new jti');
is($c->{exp}, $r1->{exp}, 'expires_at = exp');
my $r1b = refresh($t3->{refresh});
is($r1b->{status}, 'ok', 'the parent again within authx.refresh_reuse_grace: ok');
isnt($r1b->{refresh}, $r1->{refresh}, 'a sibling token');
is(refresh($r1b->{refresh})->{status}, 'ok', 'the sibling rotates');
is(refresh('axr_' . ('A' x 91))->{status}, 'invalid', 'a made-up axr_ token: invalid');
is(refresh('garbage')->{status}, 'invalid', 'garbage: invalid');
my $tampered = $r1->{refresh};
substr($tampered, -2, 1) = substr($tampered, -2, 1) eq 'A' ? 'B' : 'A';
is(refresh($tampered)->{status}, 'invalid', 'a refresh token with its tag changed: invalid');

# The refresh policy (per family); the token stays good.
sql(q{SELECT authx.rate_policy_set('refresh', 2, '1 hour')});
my $t4 = issue($ua);
my $rt = $t4->{refresh};
for my $i (1 .. 2)
{
	my $r = refresh($rt);
	is($r->{status}, 'ok', "refresh policy 2/hour: refresh $i ok");
	$rt = $r->{refresh};
}
my $rl = refresh($rt);
is($rl->{status}, 'rate_limited', 'the third: rate_limited');
ok($rl->{exp} > time() + 60, 'expires_at: when to retry');
sql(q{SELECT authx.rate_policy_set('refresh', 10, '1 minute')});
is(refresh($rt)->{status}, 'ok', 'the policy back at 10/minute: the same token rotates');

# An expired session.
my $se = sql("SELECT session_token FROM authx.session_create('$ua', NULL, NULL, '3 seconds')");
my $t5 = issue($ua, session => $se);
ok(authx_verify($t5->{access}), 'a token of a session with a 3-second ttl verifies');
my $left = sql("SELECT extract(epoch FROM s.expires_at - clock_timestamp()) FROM authx.sessions s"
	  . " JOIN authx.refresh_families f ON f.session_id = s.id WHERE f.head_hashes[1] = sha256('$t5->{refresh}'::bytea)");
sleep($left + 0.3) if $left > 0;
is(refresh($t5->{refresh})->{status}, 'expired', 'once the session expired: refresh answers expired');
is(authx_verify($t5->{access}), undef, 'and token_verify NULL');
($rc, $out, $err) = psql_verbose($node, "SELECT authx.token_issue('$ua', '$se')");
like($err, qr/ERROR:  22023: session_token is not a live session of this user/,
	'token_issue with the expired session: 22023');

# A password reset revokes the user's families.
my $ur = new_user();
my $t6 = issue($ur);
my $reset = sql("SELECT token FROM authx.password_reset_issue('tok$n\@example.com')");
like($reset, qr/^axp_/, 'password_reset_issue: a token');
is(sql("SELECT status FROM authx.password_reset_confirm('$reset', 'A-New-Password-100')"), 'ok',
	'password_reset_confirm: ok');
is(refresh($t6->{refresh})->{status}, 'revoked', 'a refresh token from before the reset: revoked');
is(authx_verify($t6->{access}), undef, 'its access token no longer verifies');

# Disabling the user ends its tokens.
my $ud = new_user();
my $t6d = issue($ud);
sql("SELECT authx.user_disable('$ud')");
is(refresh($t6d->{refresh})->{status}, 'revoked', 'user_disable: refresh answers revoked');
is(authx_verify($t6d->{access}), undef, 'and the access token no longer verifies');
($rc, $out, $err) = psql_verbose($node, "SELECT authx.token_issue('$ud')");
like($err, qr/ERROR:  55000: /, 'token_issue for the disabled user: 55000');

# ------------------------------------------------------------------
# Reuse: revoked family and session, an alert, the address blocked.
# ------------------------------------------------------------------
my $listener = $node->background_psql('postgres');
$listener->set_query_timer_restart;
$listener->query_safe('LISTEN authx_alerts');
my @alerts;

sub pump
{
	for my $n (notifications($listener))
	{
		my ($channel, $payload, $pid) = @$n;
		next unless $channel eq 'authx_alerts';
		my $j = eval { decode_json($payload) };
		push @alerts, { pid => $pid, json => $j } if $j;
	}
	return;
}

sub wait_alert
{
	my ($type, $cond) = @_;
	my $found;
	wait_until("an alert $type", 60, sub {
		pump();
		($found) = grep { ($_->{json}{event_type} // '') eq $type && (!$cond || $cond->($_->{json})) } @alerts;
		return defined $found;
	});
	return $found;
}

my $attacker = '203.0.113.77';
my $ub = new_user();
my $t7 = issue($ub);
my $fam7 = sql("SELECT id FROM authx.refresh_families WHERE user_id = '$ub'");
my $r7 = refresh($t7->{refresh}, '198.51.100.1');
is($r7->{status}, 'ok', 'a family rotated once');
my $reuse = refresh($t7->{refresh}, $attacker, 'SET authx.refresh_reuse_grace = 0;');
is($reuse->{status}, 'reused', 'grace 0: its first token again answers reused');
ok(!defined $reuse->{access} || $reuse->{access} eq '', 'with no access token');
is(sql("SELECT revoke_reason FROM authx.refresh_families WHERE id = '$fam7' AND revoked_at IS NOT NULL"),
	'reused', 'the family is revoked (reused)');
is( sql("SELECT s.revoke_reason FROM authx.sessions s JOIN authx.refresh_families f ON f.session_id = s.id"
		  . " WHERE f.id = '$fam7' AND s.revoked_at IS NOT NULL"),
	'refresh_reused', 'and its session (refresh_reused)');
is(refresh($r7->{refresh}, '198.51.100.1')->{status}, 'revoked', 'the newest token of the family: revoked');
is(authx_verify($r7->{access}), undef, 'its access token no longer verifies');
is(authx_verify($t7->{access}), undef, 'nor the first one');

my $al = wait_alert('token.refresh_reused');
ok($al, 'NOTIFY authx_alerts: token.refresh_reused');
my $j = $al ? $al->{json} : {};
is($j->{severity}, 'high', 'severity high');
is($j->{user_id},  $ub,    'user_id: the user');
is(($j->{ip} // '') =~ s{/32$}{}r, $attacker, 'ip: the address that presented the token');
is(($j->{details} // {})->{family}, $fam7, 'details.family');
is($al ? $al->{pid} : undef, worker_pid($node), 'sent by the maintenance worker');

ok(wait_until('the address auto-blocked', 60, sub { sql("SELECT authx.ip_blocked('$attacker')") eq 't' }),
	'the seeded rule refresh_reuse: the address gets blocked');
is(sql("SELECT source || '|' || reason FROM authx.ip_blocks WHERE net = '$attacker' AND NOT allow"),
	'auto|threat rule refresh_reuse', 'by the worker (source auto, threat rule refresh_reuse)');
ok(wait_alert('threat.auto_block', sub { ($_[0]{details}{rule} // '') eq 'refresh_reuse' }),
	'the auto-block is alerted too');
my $t8 = issue($ub);
is(refresh($t8->{refresh}, $attacker)->{status}, 'blocked', 'token_refresh from the blocked address: blocked');
is(refresh($t8->{refresh}, '198.51.100.2')->{status}, 'ok', 'the same token from another address: ok');
$listener->quit;

# ------------------------------------------------------------------
# Restarts: the sealed keys reopen.
# ------------------------------------------------------------------
my $ed_old = issue($ua, session => $sa_tok);
my $hs_old = issue($ua, session => $sa_tok, pre => $hs_pre);
my $hkid2  = header_of($hs_old->{access})->{kid};
my $nkeys  = sql('SELECT count(*) FROM authx.signing_keys');
my @rts    = map { issue($ua)->{refresh} } 1 .. 3;

sub after_restart
{
	my ($what, $rt) = @_;
	ok(authx_verify($ed_old->{access}), "$what: an EdDSA token from before verifies");
	ok(authx_verify($hs_old->{access}), "$what: an HS256 token from before verifies");
	my $e = issue($ua);
	is(header_of($e->{access})->{kid}, $kid2, "$what: a new token is signed with the same EdDSA key");
	my $pv = py_verify($e->{access});
	ok($pv->{ok}, "$what: which PyJWT verifies") or diag($pv->{error});
	my $h = issue($ua, pre => $hs_pre);
	is(header_of($h->{access})->{kid}, $hkid2, "$what: a new HS256 token, same key");
	ok(py({ op => 'verify_hs', token => $h->{access}, secret => sql("SELECT encode(authx.signing_key_secret('$hkid2'), 'hex')") })->{ok},
		"$what: which PyJWT verifies with the secret");
	is(sql('SELECT count(*) FROM authx.signing_keys'), $nkeys, "$what: no key was made");
	is(refresh($rt)->{status}, 'ok', "$what: a refresh token from before rotates");
	return;
}

$node->restart;
after_restart('clean restart', $rts[0]);

$node->stop('immediate');
$node->start;
after_restart('immediate shutdown and start', $rts[1]);

my $victim = $node->background_psql('postgres');
my $vpid   = $victim->query_safe('SELECT pg_backend_pid()');
my $log_at = -s $node->logfile;
ok(kill('KILL', $vpid), 'SIGKILL a backend');
ok(wait_until('crash-restart', 60, sub { $node->log_contains(qr/all server processes terminated; reinitializing/, $log_at)
			  && sql('SELECT 1') eq '1' }), 'the postmaster reinitialized');
eval { $victim->quit };
after_restart('crash-restart', $rts[2]);

# ------------------------------------------------------------------
# Another valid key file.
# ------------------------------------------------------------------
my $ed_k = issue($ua, session => $sa_tok);
my $hs_k = issue($ua, session => $sa_tok, pre => $hs_pre);
my $rt_k = issue($ua)->{refresh};
$node->stop;
my $oldkey = slurp_file($keyfile);
my $newkey = join '', map { sprintf '%02x', int(rand(256)) } 1 .. 32;
open my $kfh, '>', $keyfile or die $!;
print $kfh "$newkey\n";
close $kfh;
chmod 0600, $keyfile;
$node->start;
isnt(slurp_file($keyfile), $oldkey, 'another key in authx.key');

($rc, $out, $err) = psql_verbose($node, "SELECT authx.token_issue('$ua')");
isnt($rc, 0, 'token_issue with the EdDSA key sealed under the old key file fails');
like($err, qr/ERROR:  XX001: authx signing key "\Q$kid2\E" does not open with this server's key file/,
	'XX001, naming the key and the key file');
like($err, qr/HINT:  Restore the authx\.key the key was made under, or call authx\.signing_key_rotate\(\)/,
	'with a hint');
($rc, $out, $err) = psql_verbose($node, "$hs_pre SELECT authx.token_issue('$ua')");
like($err, qr/ERROR:  XX001: authx signing key "\Q$hkid2\E" does not open with this server's key file/,
	'HS256: the same');
($rc, $out, $err) = psql_verbose($node, "SELECT status FROM authx.token_refresh('$rt_k')");
is($rc, 0, 'token_refresh of a refresh token tagged under the old key does not fail') or diag($err);
is($out, 'invalid', 'it answers invalid');
is(sql("SELECT revoked_at IS NULL FROM authx.refresh_families WHERE head_hashes[1] = sha256('$rt_k'::bytea)"),
	't', '(and its family is not revoked)');
ok(authx_verify($ed_k->{access}), 'an EdDSA token from before still verifies (its public key is in the clear)');
# token_verify "never raises on bad input": a token naming the HS256 kid
# whose key no longer opens.
($rc, $out, $err) = psql_verbose($node, "SELECT authx.token_verify('$hs_k->{access}') IS NULL");
is("$rc|$out", '0|t', 'token_verify of an HS256 token whose key does not open: NULL, no error')
  or diag($err);
my @hs = split /\./, $hs_k->{access};
my $hs_forged = join '.', @hs[ 0, 1 ], b64url_encode('x' x 32);
($rc, $out, $err) = psql_verbose($node, "SELECT authx.token_verify('$hs_forged') IS NULL");
is("$rc|$out", '0|t', 'token_verify of a forged token with that HS256 header: NULL, no error')
  or diag($err);

my $kid3 = sql('SELECT authx.signing_key_rotate()');
like($kid3, qr/^[A-Za-z0-9_-]{16}$/, 'signing_key_rotate works under the new key file');
my $t9 = issue($ua);
is(header_of($t9->{access})->{kid}, $kid3, 'and token_issue signs with the new key');
$v = py_verify($t9->{access});
ok($v->{ok}, 'PyJWT verifies it') or diag($v->{error});
is(refresh($t9->{refresh})->{status}, 'ok', 'its refresh token rotates');

done_testing();

/*-------------------------------------------------------------------------
 *
 * jwt.c
 *		Access tokens: JWTs (RFC 7519) in JWS compact serialization
 *		(RFC 7515), signed with Ed25519 (EdDSA, RFC 8037) or HMAC-SHA-256
 *		(HS256), their public keys as a JWK set (RFC 7517); and the codec of
 *		refresh tokens (src/sql/92_tokens.sql holds the flows).
 *
 * Signing keys live in authx.signing_keys, the private half sealed under
 * the master key (crypto.c) with the kid as associated data.  Each backend
 * keeps a copy of the keys still good for verification, rebuilt when a
 * commit that changed the table bumps AUTHX_GEN_KEYS; a private key is
 * unsealed only when this backend first signs with it.
 *
 * A token's header is always the one authx writes for its key,
 * {"alg":...,"kid":...,"typ":"JWT"}, so verification does not parse
 * JSON from the token at all before the signature holds: the header
 * segment must equal, byte for byte, the encoded header of a known key.
 * That also settles algorithm confusion (alg "none", HS256 with a public
 * key): the key, not the token, names the algorithm.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <sodium.h>

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "authx.h"

#define KID_RAW			12		/* random bytes of a kid */
#define KID_LEN			16		/* its base64url form */
#define ED_SEED			crypto_sign_SEEDBYTES	/* 32 */
#define HS_KEY			32
#define MAX_TOKEN		16384	/* longer than this is not ours */

/* Refresh tokens: axr_ + base64url(family 16 | generation 4 | secret 32 | tag 16). */
#define RT_PREFIX		"axr_"
#define RT_RAW			68
#define RT_MACED		52
#define RT_TAG			16
#define RT_B64			91
#define RT_LEN			(4 + RT_B64)

typedef struct SigningKey
{
	char		kid[KID_LEN + 1];
	int			alg;
	bool		current;		/* not retired: may sign */
	TimestampTz created_at;
	TimestampTz verify_until;	/* DT_NOEND while current */
	uint8		pk[crypto_sign_PUBLICKEYBYTES];
	bytea	   *sealed;
	bool		unsealed;
	uint8		secret[crypto_sign_SECRETKEYBYTES]; /* Ed25519 sk, or HS256 key */
	char	   *header;			/* base64url of the JOSE header */
	int			header_len;
} SigningKey;

static MemoryContext keys_cxt = NULL;
static SigningKey *keys = NULL;
static int	nkeys = 0;
static bool keys_valid = false;
static uint64 keys_gen = 0;
static SPIPlanPtr keys_plan = NULL;
static bool keys_callback = false;
static Oid	keys_relid = InvalidOid;
static uint64 keys_loads = 0;	/* bumped by every reload of the copy */

/*
 * Tokens whose signature this backend checked, by BLAKE2b-256 of the whole
 * token: a client presents the same access token on every request for its
 * lifetime, and an Ed25519 verification costs ~70 µs.  A hit skips the
 * signature and the payload parse only; expiry, session, issuer and
 * audience are checked on every call.  Entries die with the copy of the keys
 * they were checked under.
 */
#define VERIFIED_SLOTS	256
typedef struct VerifiedToken
{
	uint8		digest[32];
	uint64		loads;			/* keys_loads when it was checked */
	int			key;			/* index into keys[] */
	Jsonb	   *claims;			/* in verified_cxt */
} VerifiedToken;

static MemoryContext verified_cxt = NULL;
static VerifiedToken verified[VERIFIED_SLOTS];

static const char *keys_sql =
"SELECT k.kid, k.alg OPERATOR(pg_catalog.=) 'HS256', k.public_key, k.private_sealed, "
"       k.retired_at IS NULL, k.created_at, COALESCE(k.verify_until, 'infinity') "
"  FROM authx.signing_keys k "
" WHERE k.verify_until IS NULL OR k.verify_until OPERATOR(pg_catalog.>) pg_catalog.now()";

static char *
b64url(const uint8 *in, Size len, int *outlen)
{
	Size		cap = sodium_base64_encoded_len(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char	   *out = palloc(cap);

	sodium_bin2base64(out, cap, in, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	if (outlen)
		*outlen = (int) strlen(out);
	return out;
}

/* Decode exactly want bytes of base64url (no padding) or fail. */
static bool
b64url_decode(const char *in, Size len, uint8 *out, Size want)
{
	size_t		got = 0;
	const char *end = NULL;

	if (sodium_base642bin(out, want, in, len, NULL, &got, &end,
						  sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return false;
	return got == want && end == in + len;
}

static void
keys_forget(void)
{
	int			i;

	for (i = 0; i < nkeys; i++)
		sodium_memzero(keys[i].secret, sizeof(keys[i].secret));
	if (keys_cxt != NULL)
		MemoryContextReset(keys_cxt);
	keys = NULL;
	nkeys = 0;
	keys_valid = false;
}

/* Relcache callback: authx.signing_keys changed (here, or replayed on a standby). */
static void
keys_relcache_cb(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == keys_relid)
		keys_valid = false;
}

/* authx_as_owner body of keys_ensure. */
static void
keys_load_cb(void *arg)
{
	MemoryContext old;
	uint64		i;

	if (keys_plan == NULL)
		keys_plan = authx_keep_plan(keys_sql, 0, NULL);
	if (SPI_execute_plan(keys_plan, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "authx: reading signing keys failed");
	old = MemoryContextSwitchTo(keys_cxt);
	keys = palloc0(sizeof(SigningKey) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		SigningKey *k = &keys[nkeys];
		bool		isnull;
		Datum		d;
		char	   *hdr;

		d = SPI_getbinval(tup, td, 1, &isnull);
		if (isnull || VARSIZE_ANY_EXHDR(DatumGetTextPP(d)) > KID_LEN)
			continue;
		text_to_cstring_buffer(DatumGetTextPP(d), k->kid, sizeof(k->kid));
		k->alg = DatumGetBool(SPI_getbinval(tup, td, 2, &isnull)) ? AUTHX_ALG_HS256 : AUTHX_ALG_EDDSA;
		d = SPI_getbinval(tup, td, 3, &isnull);
		if (k->alg == AUTHX_ALG_EDDSA)
		{
			bytea	   *pk = isnull ? NULL : DatumGetByteaPP(d);

			if (pk == NULL || VARSIZE_ANY_EXHDR(pk) != crypto_sign_PUBLICKEYBYTES)
				continue;
			memcpy(k->pk, VARDATA_ANY(pk), crypto_sign_PUBLICKEYBYTES);
		}
		d = SPI_getbinval(tup, td, 4, &isnull);
		if (isnull)
			continue;
		k->sealed = DatumGetByteaPCopy(d);
		k->current = DatumGetBool(SPI_getbinval(tup, td, 5, &isnull));
		k->created_at = DatumGetTimestampTz(SPI_getbinval(tup, td, 6, &isnull));
		k->verify_until = DatumGetTimestampTz(SPI_getbinval(tup, td, 7, &isnull));
		hdr = psprintf("{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
					   k->alg == AUTHX_ALG_EDDSA ? "EdDSA" : "HS256", k->kid);
		k->header = b64url((const uint8 *) hdr, strlen(hdr), &k->header_len);
		nkeys++;
	}
	MemoryContextSwitchTo(old);
}

/*
 * keys_ensure
 *		Make this backend's copy of the signing keys current: rebuilt after
 *		a commit that changed them, and within a transaction that changes
 *		them itself (its own rows are visible to it before the bump).
 */
static void
keys_ensure(void)
{
	uint64		gen = 0;

	if (authx_shared != NULL)
	{
		gen = authx_generation_read(AUTHX_GEN_KEYS);
		if (keys_valid && gen == keys_gen && !authx_generation_dirty(AUTHX_GEN_KEYS))
			return;
	}
	if (keys_cxt == NULL)
		keys_cxt = AllocSetContextCreate(TopMemoryContext, "authx signing keys", ALLOCSET_SMALL_SIZES);
	/*
	 * A standby bumps no generation: there the relcache invalidation that
	 * the trigger sends (replayed with the commit) throws the copy away.
	 */
	if (!keys_callback)
	{
		CacheRegisterRelcacheCallback(keys_relcache_cb, (Datum) 0);
		keys_callback = true;
	}
	keys_relid = get_relname_relid("signing_keys", get_namespace_oid("authx", false));

	/* keys_valid stays false until the load is complete. */
	keys_forget();
	keys_loads++;
	authx_as_owner("signing_keys", keys_load_cb, NULL);
	keys_gen = gen;

	/*
	 * Without shared memory there is no generation: reload every time.  A
	 * copy that saw this transaction's own changes is not kept either: if
	 * it aborts, no commit bumps the generation to throw the copy away.
	 */
	keys_valid = authx_shared != NULL && !authx_generation_dirty(AUTHX_GEN_KEYS) &&
		!IsolationUsesXactSnapshot();
}

/*
 * key_unseal
 *		Open the private half of k (once per backend and load).  When it does
 *		not open (another key file, tampering) or does not match its public
 *		key: raise if must, else return false (verification answers NULL).
 */
static bool
key_unseal(SigningKey *k, bool must)
{
	uint8		raw[ED_SEED];
	uint8		pk[crypto_sign_PUBLICKEYBYTES];
	bool		opened;
	bool		matches = true;

	if (k->unsealed)
		return true;
	opened = authx_unseal(k->sealed, (const uint8 *) k->kid, strlen(k->kid), raw, sizeof(raw));
	if (opened && k->alg == AUTHX_ALG_EDDSA)
	{
		crypto_sign_seed_keypair(pk, k->secret, raw);
		matches = authx_equal_ct(pk, k->pk, sizeof(pk));
	}
	else if (opened)
		memcpy(k->secret, raw, HS_KEY);
	sodium_memzero(raw, sizeof(raw));
	if (opened && matches)
	{
		k->unsealed = true;
		return true;
	}
	sodium_memzero(k->secret, sizeof(k->secret));
	if (must)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 opened ? errmsg("authx signing key \"%s\" does not match its public key", k->kid)
				 : errmsg("authx signing key \"%s\" does not open with this server's key file", k->kid),
				 errhint("Restore the authx.key the key was made under, or call authx.signing_key_rotate().")));
	return false;
}

/* HMAC-SHA-256 of msg under the 32-byte key. */
static void
hs256(const uint8 *key, const char *msg, Size len, uint8 *mac)
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, key, HS_KEY);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *) msg, len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
}

PG_FUNCTION_INFO_V1(authx_signing_key_new);

/*
 * authx._signing_key_new(alg text, OUT kid text, OUT public_key bytea,
 *                        OUT private_sealed bytea)
 *		A new key: a random kid, and for EdDSA an Ed25519 key pair (the
 *		32-byte seed is what is sealed), for HS256 a random 256-bit secret.
 */
Datum
authx_signing_key_new(PG_FUNCTION_ARGS)
{
	char	   *alg = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TupleDesc	td = authx_result_desc(fcinfo);
	uint8		kidraw[KID_RAW];
	uint8		seed[ED_SEED];
	uint8		pk[crypto_sign_PUBLICKEYBYTES];
	uint8		sk[crypto_sign_SECRETKEYBYTES];
	char	   *kid;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	bytea	   *pkb;

	if (strcmp(alg, "EdDSA") != 0 && strcmp(alg, "HS256") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown signing algorithm \"%s\"", alg),
				 errhint("Use EdDSA or HS256.")));
	randombytes_buf(kidraw, sizeof(kidraw));
	kid = b64url(kidraw, sizeof(kidraw), NULL);
	randombytes_buf(seed, sizeof(seed));
	values[0] = CStringGetTextDatum(kid);
	if (alg[0] == 'E')
	{
		crypto_sign_seed_keypair(pk, sk, seed);
		sodium_memzero(sk, sizeof(sk));
		pkb = palloc(VARHDRSZ + sizeof(pk));
		SET_VARSIZE(pkb, VARHDRSZ + sizeof(pk));
		memcpy(VARDATA(pkb), pk, sizeof(pk));
		values[1] = PointerGetDatum(pkb);
	}
	else
		nulls[1] = true;
	values[2] = PointerGetDatum(authx_seal(seed, sizeof(seed), (const uint8 *) kid, strlen(kid)));
	sodium_memzero(seed, sizeof(seed));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(td, values, nulls)));
}

PG_FUNCTION_INFO_V1(authx_signing_keys_changed);

/* authx._signing_keys_changed() — statement trigger: copies are stale at commit. */
Datum
authx_signing_keys_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("authx._signing_keys_changed() must be called as a trigger")));
	authx_generation_touch(AUTHX_GEN_KEYS);
	/* For standbys, whose backends see no generation bump. */
	CacheInvalidateRelcacheByRelid(RelationGetRelid(((TriggerData *) fcinfo->context)->tg_relation));
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(authx_jwt_sign);

/*
 * authx._jwt_sign(claims jsonb) RETURNS text
 *		The claims signed with the newest current key of authx.token_alg.
 */
Datum
authx_jwt_sign(PG_FUNCTION_ARGS)
{
	Jsonb	   *claims = PG_GETARG_JSONB_P(0);
	char	   *payload = JsonbToCString(NULL, &claims->root, VARSIZE(claims));
	SigningKey *k = NULL;
	StringInfoData buf;
	char	   *seg;
	int			seglen;
	uint8		sig[crypto_sign_BYTES];
	int			siglen;
	int			i;

	keys_ensure();
	for (i = 0; i < nkeys; i++)
		if (keys[i].current && keys[i].alg == authx_token_alg &&
			(k == NULL || keys[i].created_at > k->created_at))
			k = &keys[i];
	if (k == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("authx has no current %s signing key",
						authx_token_alg == AUTHX_ALG_EDDSA ? "EdDSA" : "HS256"),
				 errhint("Call authx.signing_key_rotate().")));
	key_unseal(k, true);

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, k->header, k->header_len);
	appendStringInfoChar(&buf, '.');
	seg = b64url((const uint8 *) payload, strlen(payload), &seglen);
	appendBinaryStringInfo(&buf, seg, seglen);
	if (k->alg == AUTHX_ALG_EDDSA)
	{
		crypto_sign_detached(sig, NULL, (const unsigned char *) buf.data, buf.len, k->secret);
		siglen = crypto_sign_BYTES;
	}
	else
	{
		hs256(k->secret, buf.data, buf.len, sig);
		siglen = crypto_auth_hmacsha256_BYTES;
	}
	appendStringInfoChar(&buf, '.');
	seg = b64url(sig, siglen, &seglen);
	appendBinaryStringInfo(&buf, seg, seglen);
	if (buf.len > MAX_TOKEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the access token would be %d bytes, more than authx verifies (%d)", buf.len, MAX_TOKEN),
				 errhint("Grant fewer permissions (wildcards such as resource:*) or pass fewer custom claims.")));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/* The top-level claim called name, or NULL. */
static JsonbValue *
claim_get(Jsonb *jb, const char *name)
{
	JsonbValue	kv;

	kv.type = jbvString;
	kv.val.string.val = (char *) name;
	kv.val.string.len = strlen(name);
	return findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &kv);
}

/*
 * A numeric claim in seconds; false when absent or not a number.  Read as a
 * double through its text, so no value (1e30, say) can raise an error.
 */
static bool
claim_seconds(Jsonb *jb, const char *name, double *out)
{
	JsonbValue *v;
	char	   *txt;

	v = claim_get(jb, name);
	if (v == NULL || v->type != jbvNumeric)
		return false;
	txt = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	*out = strtod(txt, NULL);
	return !isnan(*out);
}

/* A claim holding a uuid in its canonical form; false when absent or not one. */
static bool
claim_uuid(Jsonb *jb, const char *name, pg_uuid_t *out)
{
	JsonbValue *v;
	char		buf[37];
	int			i;

	v = claim_get(jb, name);
	if (v == NULL || v->type != jbvString || v->val.string.len != 36)
		return false;
	memcpy(buf, v->val.string.val, 36);
	buf[36] = '\0';
	for (i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? buf[i] != '-' : !isxdigit((unsigned char) buf[i]))
			return false;
	*out = *DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(buf)));
	return true;
}

/*
 * claim_matches
 *		With want set (authx.token_issuer, authx.token_audience), the claim
 *		must be that string; unset, anything goes (tokens made before it
 *		was set keep working).
 */
static bool
claim_matches(Jsonb *jb, const char *name, const char *want)
{
	JsonbValue *v;

	if (want == NULL || want[0] == '\0')
		return true;
	v = claim_get(jb, name);
	return v != NULL && v->type == jbvString && v->val.string.len == (int) strlen(want) &&
		memcmp(v->val.string.val, want, v->val.string.len) == 0;
}

static Jsonb *claims_check(Jsonb *jb, TimestampTz now);

/*
 * jwt_check
 *		The claims of a token that authx signed with a key still kept, that
 *		has not expired and whose session is live; NULL otherwise.
 */
static Jsonb *
jwt_check(text *tok)
{
	const char *s = VARDATA_ANY(tok);
	int			len = VARSIZE_ANY_EXHDR(tok);
	const char *d1;
	const char *d2;
	SigningKey *k = NULL;
	uint8		sig[crypto_sign_BYTES];
	Size		siglen;
	Size		plen;
	uint8	   *payload;
	size_t		got;
	Jsonb	   *jb;
	TimestampTz now = GetCurrentTimestamp();
	uint8		digest[32];
	VerifiedToken *vt;
	int			i;

	d1 = memchr(s, '.', len);
	if (d1 == NULL)
		return NULL;
	d2 = memchr(d1 + 1, '.', len - (d1 + 1 - s));
	if (d2 == NULL || memchr(d2 + 1, '.', len - (d2 + 1 - s)) != NULL)
		return NULL;

	keys_ensure();
	for (i = 0; i < nkeys; i++)
		if (keys[i].header_len == d1 - s && memcmp(keys[i].header, s, d1 - s) == 0)
		{
			k = &keys[i];
			break;
		}
	if (k == NULL || k->verify_until <= now)
		return NULL;

	crypto_generichash(digest, sizeof(digest), (const unsigned char *) s, len, NULL, 0);
	vt = &verified[digest[0]];
	if (vt->claims != NULL && vt->loads == keys_loads && vt->key == k - keys &&
		authx_equal_ct(vt->digest, digest, sizeof(digest)))
	{
		jb = palloc(VARSIZE(vt->claims));
		memcpy(jb, vt->claims, VARSIZE(vt->claims));
		return claims_check(jb, now);
	}

	siglen = k->alg == AUTHX_ALG_EDDSA ? crypto_sign_BYTES : crypto_auth_hmacsha256_BYTES;
	if (!b64url_decode(d2 + 1, len - (d2 + 1 - s), sig, siglen))
		return NULL;
	if (k->alg == AUTHX_ALG_EDDSA)
	{
		if (crypto_sign_verify_detached(sig, (const unsigned char *) s, d2 - s, k->pk) != 0)
			return NULL;
	}
	else
	{
		uint8		mac[crypto_auth_hmacsha256_BYTES];

		if (!key_unseal(k, false))
			return NULL;
		hs256(k->secret, s, d2 - s, mac);
		if (!authx_equal_ct(mac, sig, sizeof(mac)))
			return NULL;
	}

	/* The signature holds: authx wrote this payload, as jsonb text. */
	plen = (d2 - d1 - 1) * 3 / 4 + 1;
	payload = palloc(plen + 1);
	if (sodium_base642bin(payload, plen, d1 + 1, d2 - d1 - 1, NULL, &got, NULL,
						  sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
		memchr(payload, '\0', got) != NULL)
		return NULL;
	payload[got] = '\0';
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum((char *) payload)));
	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;

	/* Remember the checked signature for the next presentation. */
	if (verified_cxt == NULL)
		verified_cxt = AllocSetContextCreate(TopMemoryContext, "authx verified tokens", ALLOCSET_DEFAULT_SIZES);
	if (vt->claims != NULL)
		pfree(vt->claims);
	vt->claims = MemoryContextAlloc(verified_cxt, VARSIZE(jb));
	memcpy(vt->claims, jb, VARSIZE(jb));
	memcpy(vt->digest, digest, sizeof(digest));
	vt->loads = keys_loads;
	vt->key = k - keys;
	return claims_check(jb, now);
}

/*
 * claims_check
 *		The claims of a token whose signature holds, if they are good now:
 *		exp, nbf, a live session, issuer and audience.
 */
static Jsonb *
claims_check(Jsonb *jb, TimestampTz now)
{
	double		exp;
	double		nbf;
	double		now_s;
	pg_uuid_t	sid;

	now_s = (double) now / USECS_PER_SEC +
		(double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	if (!claim_seconds(jb, "exp", &exp) || exp <= now_s)
		return NULL;
	if (claim_seconds(jb, "nbf", &nbf) && nbf > now_s)
		return NULL;
	/* authx writes sid, iss and aud itself: a token without them is not its. */
	if (!claim_uuid(jb, "sid", &sid) || !authx_session_live(&sid, now, NULL))
		return NULL;
	if (!claim_matches(jb, "iss", authx_token_issuer) || !claim_matches(jb, "aud", authx_token_audience))
		return NULL;
	return jb;
}

PG_FUNCTION_INFO_V1(authx_token_verify);

/*
 * authx.token_verify(access_token text) RETURNS jsonb
 *		The claims of a valid access token; NULL when it is malformed, not
 *		signed by a key authx keeps, expired, or its session is no longer
 *		live (revoked, expired, idle).  Never raises on bad input.
 */
Datum
authx_token_verify(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = NULL;

	if (!PG_ARGISNULL(0) && toast_raw_datum_size(PG_GETARG_DATUM(0)) <= VARHDRSZ + MAX_TOKEN)
		jb = jwt_check(PG_GETARG_TEXT_PP(0));
	if (authx_shared != NULL)
		authx_stat_add(jb ? AUTHX_STAT_TOKEN_VALID : AUTHX_STAT_TOKEN_INVALID, 1);
	if (jb == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(jb);
}

PG_FUNCTION_INFO_V1(authx_signing_key_secret);

/*
 * authx.signing_key_secret(kid text) RETURNS bytea
 *		The HS256 secret of a key, for a consumer that verifies HS256 tokens
 *		itself (PostgREST's jwt-secret).  Superuser only (no grant).
 */
Datum
authx_signing_key_secret(PG_FUNCTION_ARGS)
{
	text	   *kid = PG_GETARG_TEXT_PP(0);
	bytea	   *out;
	int			i;

	keys_ensure();
	for (i = 0; i < nkeys; i++)
		if (keys[i].alg == AUTHX_ALG_HS256 &&
			strlen(keys[i].kid) == VARSIZE_ANY_EXHDR(kid) &&
			memcmp(keys[i].kid, VARDATA_ANY(kid), VARSIZE_ANY_EXHDR(kid)) == 0)
		{
			key_unseal(&keys[i], true);
			out = palloc(VARHDRSZ + HS_KEY);
			SET_VARSIZE(out, VARHDRSZ + HS_KEY);
			memcpy(VARDATA(out), keys[i].secret, HS_KEY);
			PG_RETURN_BYTEA_P(out);
		}
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("no HS256 signing key with that kid is kept"),
			 errhint("See authx.signing_keys for the kids.")));
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(authx_ed25519);

/*
 * authx._ed25519(seed bytea, message bytea, OUT public_key bytea,
 *                OUT signature bytea)
 *		Ed25519 from a 32-byte seed, for the RFC 8032/8037 test vectors.
 */
Datum
authx_ed25519(PG_FUNCTION_ARGS)
{
	bytea	   *seed = PG_GETARG_BYTEA_PP(0);
	bytea	   *msg = PG_GETARG_BYTEA_PP(1);
	TupleDesc	td = authx_result_desc(fcinfo);
	uint8		sk[crypto_sign_SECRETKEYBYTES];
	bytea	   *pk = palloc(VARHDRSZ + crypto_sign_PUBLICKEYBYTES);
	bytea	   *sig = palloc(VARHDRSZ + crypto_sign_BYTES);
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (VARSIZE_ANY_EXHDR(seed) != ED_SEED)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an Ed25519 seed has 32 bytes"),
				 errhint("Pass the private key d of the JWK, decoded.")));
	SET_VARSIZE(pk, VARHDRSZ + crypto_sign_PUBLICKEYBYTES);
	SET_VARSIZE(sig, VARHDRSZ + crypto_sign_BYTES);
	crypto_sign_seed_keypair((uint8 *) VARDATA(pk), sk, (const uint8 *) VARDATA_ANY(seed));
	crypto_sign_detached((uint8 *) VARDATA(sig), NULL, (const uint8 *) VARDATA_ANY(msg),
						 VARSIZE_ANY_EXHDR(msg), sk);
	sodium_memzero(sk, sizeof(sk));
	values[0] = PointerGetDatum(pk);
	values[1] = PointerGetDatum(sig);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(td, values, nulls)));
}

/* ----------------------------------------------------------------
 * Refresh tokens
 * ----------------------------------------------------------------
 *
 * A refresh token names its family and generation, so the one row of a
 * family (authx.refresh_families) judges any token of it: the newest
 * (rotate), its parent within the grace (a sibling), any older one (reuse:
 * revoke the family).  The tag, a keyed BLAKE2b over the rest under a key
 * derived from the master key, makes a token unforgeable, so reuse of a
 * token whose hash is no longer stored is still told from a guess: no one
 * can revoke a family whose tokens they never held.
 */
static void
rt_tag(const uint8 *raw, uint8 *tag)
{
	static uint8 mackey[crypto_generichash_KEYBYTES];
	static bool have = false;

	if (!have)
	{
		authx_subkey("authxrft", 1, mackey, sizeof(mackey));
		have = true;
	}
	crypto_generichash(tag, RT_TAG, raw, RT_MACED, mackey, sizeof(mackey));
}

static bytea *
rt_hash(const char *s, Size len)
{
	bytea	   *h = palloc(VARHDRSZ + AUTHX_HASH_LEN);

	SET_VARSIZE(h, VARHDRSZ + AUTHX_HASH_LEN);
	authx_sha256(s, len, (uint8 *) VARDATA(h));
	return h;
}

PG_FUNCTION_INFO_V1(authx_refresh_token_new);

/*
 * authx._refresh_token_new(family uuid, generation integer, user_id uuid DEFAULT NULL,
 *                          OUT token text, OUT token_hash bytea)
 *		With authx.shard_tokens on and a user given, the token ends in the
 *		user's bucket (".hhhh", outside the tag; the hash covers it).
 */
Datum
authx_refresh_token_new(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *fam = PG_GETARG_UUID_P(0);
	int32		gen = PG_GETARG_INT32(1);
	TupleDesc	td = authx_result_desc(fcinfo);
	uint8		raw[RT_RAW];
	char		tok[RT_LEN + AUTHX_TOKEN_BUCKET_LEN + 1];
	int			len = RT_LEN;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	memcpy(raw, fam->data, 16);
	raw[16] = (uint8) (gen >> 24);
	raw[17] = (uint8) (gen >> 16);
	raw[18] = (uint8) (gen >> 8);
	raw[19] = (uint8) gen;
	randombytes_buf(raw + 20, 32);
	rt_tag(raw, raw + RT_MACED);
	memcpy(tok, RT_PREFIX, 4);
	sodium_bin2base64(tok + 4, RT_B64 + 1, raw, RT_RAW, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
		len += authx_bucket_suffix(PG_GETARG_UUID_P(2), tok + RT_LEN);
	values[0] = PointerGetDatum(cstring_to_text_with_len(tok, len));
	values[1] = PointerGetDatum(rt_hash(tok, len));
	sodium_memzero(tok, sizeof(tok));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(td, values, nulls)));
}

PG_FUNCTION_INFO_V1(authx_refresh_token_parse);

/*
 * authx._refresh_token_parse(token text, OUT family uuid,
 *                            OUT generation integer, OUT token_hash bytea)
 *		All NULL unless the token is well formed and its tag is authx's.
 */
Datum
authx_refresh_token_parse(PG_FUNCTION_ARGS)
{
	TupleDesc	td = authx_result_desc(fcinfo);
	Datum		values[3];
	bool		nulls[3] = {true, true, true};
	uint8		raw[RT_RAW];
	uint8		tag[RT_TAG];

	if (!PG_ARGISNULL(0) &&
		(toast_raw_datum_size(PG_GETARG_DATUM(0)) == VARHDRSZ + RT_LEN ||
		 toast_raw_datum_size(PG_GETARG_DATUM(0)) == VARHDRSZ + RT_LEN + AUTHX_TOKEN_BUCKET_LEN))
	{
		text	   *t = PG_GETARG_TEXT_PP(0);
		const char *s = VARDATA_ANY(t);
		Size		len = VARSIZE_ANY_EXHDR(t);

		if ((len == RT_LEN || authx_bucket_suffix_valid(s + RT_LEN)) &&
			memcmp(s, RT_PREFIX, 4) == 0 &&
			b64url_decode(s + 4, RT_B64, raw, RT_RAW))
		{
			rt_tag(raw, tag);
			if (authx_equal_ct(tag, raw + RT_MACED, RT_TAG))
			{
				pg_uuid_t  *fam = palloc(sizeof(pg_uuid_t));

				memcpy(fam->data, raw, 16);
				values[0] = UUIDPGetDatum(fam);
				values[1] = Int32GetDatum((int32) (((uint32) raw[16] << 24) | ((uint32) raw[17] << 16) |
												   ((uint32) raw[18] << 8) | raw[19]));
				values[2] = PointerGetDatum(rt_hash(s, len));
				nulls[0] = nulls[1] = nulls[2] = false;
			}
			sodium_memzero(raw, sizeof(raw));
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(td, values, nulls)));
}

/*-------------------------------------------------------------------------
 *
 * totp.c
 *		TOTP (RFC 6238) over HOTP (RFC 4226): the primitives authx's MFA
 *		functions (src/sql/90_mfa.sql) are built on.
 *
 * Runs in backends.  A seed is 20 random bytes (160 bits, RFC 4226's
 * recommendation), shown once to the user in base32 (RFC 4648, as
 * authenticator apps read it) and kept sealed under the master key with the
 * user's id as associated data (crypto.c).  HMAC-SHA-1 comes from
 * PostgreSQL's own HMAC (common/hmac.h): libsodium has no SHA-1.  A code is
 * compared with every candidate in the window without stopping at a match,
 * and the comparison itself is constant-time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "common/hmac.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "authx.h"

#define TOTP_SEED_LEN	20

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* RFC 4648 base32 without padding: 20 bytes make 32 characters. */
static char *
base32_encode(const uint8 *in, int len)
{
	char	   *out = palloc((len * 8 + 4) / 5 + 1);
	int			bits = 0;
	uint32		acc = 0;
	int			n = 0;
	int			i;

	for (i = 0; i < len; i++)
	{
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 5)
		{
			out[n++] = b32_alphabet[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		out[n++] = b32_alphabet[(acc << (5 - bits)) & 31];
	out[n] = '\0';
	return out;
}

/*
 * hotp
 *		RFC 4226: HMAC-SHA-1 of the big-endian counter, dynamic truncation,
 *		modulo 10^digits.
 */
static uint32
hotp(const uint8 *key, int keylen, uint64 counter, int digits)
{
	static const uint32 pow10[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA1);
	uint8		msg[8];
	uint8		mac[20];
	int			offset;
	uint32		bin;
	int			i;

	for (i = 0; i < 8; i++)
		msg[7 - i] = (uint8) (counter >> (8 * i));
	if (ctx == NULL || pg_hmac_init(ctx, key, keylen) < 0 || pg_hmac_update(ctx, msg, 8) < 0 ||
		pg_hmac_final(ctx, mac, sizeof(mac)) < 0)
		elog(ERROR, "authx: HMAC-SHA-1 failed: %s", ctx ? pg_hmac_error(ctx) : "out of memory");
	pg_hmac_free(ctx);
	offset = mac[19] & 0xf;
	bin = ((uint32) (mac[offset] & 0x7f) << 24) | ((uint32) mac[offset + 1] << 16) |
		((uint32) mac[offset + 2] << 8) | mac[offset + 3];
	explicit_bzero(mac, sizeof(mac));
	return bin % pow10[digits];
}

static void
check_shape(int digits, int period)
{
	if (digits < 6 || digits > 8 || period < 1 || period > 300)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("TOTP needs 6 to 8 digits and a period of 1 to 300 seconds"),
				 errhint("See authx.totp_digits and authx.totp_period.")));
}

/* The time step holding at: floor(unix µs / period), -1 before 1970. */
static int64
time_step(TimestampTz at, int period)
{
	int64		unix_us = at + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

	return unix_us >= 0 ? unix_us / ((int64) period * USECS_PER_SEC) : -1;
}

PG_FUNCTION_INFO_V1(authx_totp_seed_new);

/*
 * authx._totp_seed_new(user_id uuid) RETURNS TABLE(secret text, sealed bytea)
 *		A new seed: its base32 text (to show once) and the seed sealed for
 *		that user (to store).
 */
Datum
authx_totp_seed_new(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *user_id = PG_GETARG_UUID_P(0);
	uint8		seed[TOTP_SEED_LEN];
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "authx: _totp_seed_new must return a row");
	desc = BlessTupleDesc(desc);
	authx_random_bytes(seed, sizeof(seed));
	values[0] = CStringGetTextDatum(base32_encode(seed, sizeof(seed)));
	values[1] = PointerGetDatum(authx_seal(seed, sizeof(seed), user_id->data, UUID_LEN));
	explicit_bzero(seed, sizeof(seed));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * code_digits
 *		The code as digits, spaces and dashes dropped ("123 456"); false if
 *		anything else is in it or the count is not digits.
 */
static bool
code_digits(text *code, int digits, char *out)
{
	const char *s = VARDATA_ANY(code);
	int			len = VARSIZE_ANY_EXHDR(code);
	int			n = 0;
	int			i;

	for (i = 0; i < len && len <= 32; i++)
	{
		if (s[i] == ' ' || s[i] == '-')
			continue;
		if (s[i] < '0' || s[i] > '9' || n == digits)
			return false;
		out[n++] = s[i];
	}
	out[n] = '\0';
	return n == digits;
}

PG_FUNCTION_INFO_V1(authx_totp_match);

/*
 * authx._totp_match(user_id uuid, sealed bytea, code text, after_step bigint,
 *					 digits integer, period integer, window integer,
 *					 at timestamptz) RETURNS bigint
 *		The time step within window steps of at whose code is code, if it is
 *		after after_step (a step is good once: replay), else NULL.  NULL too
 *		for a malformed code or a seal that does not open.
 */
Datum
authx_totp_match(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *user_id = PG_GETARG_UUID_P(0);
	bytea	   *sealed = PG_GETARG_BYTEA_PP(1);
	text	   *code = PG_GETARG_TEXT_PP(2);
	int64		after = PG_GETARG_INT64(3);
	int			digits = PG_GETARG_INT32(4);
	int			period = PG_GETARG_INT32(5);
	int			window = PG_GETARG_INT32(6);
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(7);
	uint8		seed[TOTP_SEED_LEN];
	char		given[9];
	int64		now_step;
	int64		found = -1;
	int64		s;

	check_shape(digits, period);
	if (window < 0 || window > 10)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the TOTP window must be 0 to 10 steps"),
				 errhint("See authx.totp_window.")));
	if (!code_digits(code, digits, given))
		PG_RETURN_NULL();
	if (!authx_unseal(sealed, user_id->data, UUID_LEN, seed, sizeof(seed)))
	{
		/* Not the user's fault: tell the operator (the answer stays "no"). */
		ereport(LOG,
				(errmsg("authx: a TOTP seed does not open with the current key"),
				 errhint("authx.key_file (or authx.key) is not the key the seed was sealed with.")));
		PG_RETURN_NULL();
	}
	now_step = time_step(at, period);
	for (s = now_step - window; s <= now_step + window; s++)
	{
		char		want[9];

		if (s < 0)
			continue;
		snprintf(want, sizeof(want), "%0*u", digits, hotp(seed, sizeof(seed), (uint64) s, digits));
		/* Every candidate is computed and compared, match or not. */
		if (authx_equal_ct(want, given, digits) && s > after && found < 0)
			found = s;
	}
	explicit_bzero(seed, sizeof(seed));
	if (found < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(found);
}

PG_FUNCTION_INFO_V1(authx_totp_code);

/*
 * authx._totp_code(seed bytea, at timestamptz, digits integer,
 *					period integer) RETURNS text
 *		The code of a raw seed at a time: for tests against RFC 6238's
 *		vectors and other implementations (internal, no grants).
 */
Datum
authx_totp_code(PG_FUNCTION_ARGS)
{
	bytea	   *seed = PG_GETARG_BYTEA_PP(0);
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(1);
	int			digits = PG_GETARG_INT32(2);
	int			period = PG_GETARG_INT32(3);
	char		out[9];

	check_shape(digits, period);
	snprintf(out, sizeof(out), "%0*u", digits,
			 hotp((const uint8 *) VARDATA_ANY(seed), VARSIZE_ANY_EXHDR(seed),
				  (uint64) Max(time_step(at, period), 0), digits));
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

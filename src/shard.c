/*-------------------------------------------------------------------------
 *
 * shard.c
 *		Logical buckets for scale-out: authx.shard_of(user_id) and
 *		authx.shard_of_email(email), the same on every node and computable
 *		by applications.
 *
 * A user's bucket is the jump consistent hash (Lamping and Veach, 2014) of
 * a 64-bit key into authx.shard_buckets buckets; the key of a user id is
 * its first 8 bytes XOR its last 8 bytes, each read big-endian; the key of
 * an email is the first 8 bytes, big-endian, of SHA-256 of the address
 * trimmed of spaces, tabs and line breaks and lower-cased (lower() of the
 * database's collation), in UTF-8.  Jump hashing moves only 1/(n+1) of the keys when
 * the bucket count grows from n to n+1; authx keeps the count fixed and
 * moves whole buckets between nodes instead (authx.shard_map).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/uuid.h"

#include "authx.h"

/*
 * authx_jump_hash
 *		The bucket in [0, buckets) of key: Lamping and Veach's algorithm,
 *		with their 64-bit linear congruential generator.
 */
int32
authx_jump_hash(uint64 key, int32 buckets)
{
	int64		b = -1;
	int64		j = 0;

	while (j < buckets)
	{
		b = j;
		key = key * UINT64CONST(2862933555777941757) + 1;
		j = (int64) ((double) (b + 1) * ((double) (INT64CONST(1) << 31) / (double) ((key >> 33) + 1)));
	}
	return (int32) b;
}

static uint64
be64(const uint8 *p)
{
	uint64		v = 0;
	int			i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static int32
buckets_arg(FunctionCallInfo fcinfo, int argno)
{
	int32		n;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return authx_shard_buckets;
	n = PG_GETARG_INT32(argno);
	if (n < 1 || n > 65536 || (n & (n - 1)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("buckets must be a power of two between 1 and 65536"),
				 errhint("Pass the cluster's authx.shard_buckets, or leave it out.")));
	return n;
}

PG_FUNCTION_INFO_V1(authx_shard_of);

/*
 * authx.shard_of(user_id uuid, buckets integer DEFAULT NULL) RETURNS integer
 *		NULL for a NULL id; buckets defaults to authx.shard_buckets.
 */
Datum
authx_shard_of(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *u;
	int32		buckets = buckets_arg(fcinfo, 1);

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	u = PG_GETARG_UUID_P(0);
	PG_RETURN_INT32(authx_jump_hash(be64(u->data) ^ be64(u->data + 8), buckets));
}

PG_FUNCTION_INFO_V1(authx_shard_of_email);

/*
 * authx.shard_of_email(email text, buckets integer DEFAULT NULL) RETURNS integer
 *		The bucket of the email directory entry of an address.  NULL for NULL.
 */
Datum
authx_shard_of_email(PG_FUNCTION_ARGS)
{
	text	   *t;
	const char *p;
	int			len;
	char	   *lower;
	uint8		hash[AUTHX_HASH_LEN];
	int32		buckets = buckets_arg(fcinfo, 1);

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	t = PG_GETARG_TEXT_PP(0);
	p = VARDATA_ANY(t);
	len = VARSIZE_ANY_EXHDR(t);
	/* As btrim(email, E' \t\r\n') */
	while (len > 0 && strchr(" \t\r\n", *p) != NULL)
		p++, len--;
	while (len > 0 && strchr(" \t\r\n", p[len - 1]) != NULL)
		len--;
	lower = str_tolower(p, len, DEFAULT_COLLATION_OID);
	authx_sha256(lower, strlen(lower), hash);
	PG_RETURN_INT32(authx_jump_hash(be64(hash), buckets));
}

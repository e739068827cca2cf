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

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "commands/trigger.h"
#include "executor/spi.h"
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

/* The bucket of a user id in the cluster's authx.shard_buckets. */
int32
authx_shard_of_uuid(const pg_uuid_t *u)
{
	return authx_jump_hash(be64(u->data) ^ be64(u->data + 8), authx_shard_buckets);
}

/*
 * authx_bucket_suffix
 *		With authx.shard_tokens on, writes ".hhhh" (the user's bucket, 4
 *		lowercase hex digits, no terminator) to out and returns its length;
 *		otherwise, or for no user, writes nothing and returns 0.  Tokens,
 *		API keys and refresh tokens end in it so a coordinator routes them
 *		without a lookup.
 */
int
authx_bucket_suffix(const pg_uuid_t *user, char *out)
{
	int32		b;
	char		be[2];

	if (!authx_shard_tokens || user == NULL)
		return 0;
	b = authx_shard_of_uuid(user);
	be[0] = (char) (b >> 8);
	be[1] = (char) b;
	out[0] = '.';
	hex_encode(be, 2, out + 1);
	return AUTHX_TOKEN_BUCKET_LEN;
}

/* Whether s (AUTHX_TOKEN_BUCKET_LEN characters) reads ".hhhh". */
bool
authx_bucket_suffix_valid(const char *s)
{
	int			i;

	if (s[0] != '.')
		return false;
	for (i = 1; i < AUTHX_TOKEN_BUCKET_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
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

/* ----------------------------------------------------------------
 * Bucket fences: while a bucket moves away, no write may change its rows
 * here (authx.bucket_move).  A bitmap in shared memory, read by the
 * guard trigger on every table that holds a bucket's rows.
 * ----------------------------------------------------------------
 */

static bool
bucket_fenced(int32 b)
{
	return (pg_atomic_read_u32(&authx_shared->fence_bits[b / 32]) & (((uint32) 1) << (b % 32))) != 0;
}

PG_FUNCTION_INFO_V1(authx_bucket_fence);

/*
 * authx._bucket_fence(bucket integer, fenced boolean) RETURNS boolean
 *		Fences (or frees) a bucket on this node; returns whether it was
 *		fenced before (fenced NULL: only that).  Not transactional: it holds until freed or until
 *		the server restarts.
 */
Datum
authx_bucket_fence(PG_FUNCTION_ARGS)
{
	int32		b;
	bool		on;
	uint32		bit;
	uint32		old;

	authx_require_shmem();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("bucket must not be NULL"),
				 errhint("Pass a bucket number.")));
	b = PG_GETARG_INT32(0);
	if (b < 0 || b >= authx_shard_buckets)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("bucket %d is out of range", b),
				 errhint("Buckets are numbered 0 to authx.shard_buckets - 1 (%d).", authx_shard_buckets - 1)));
	if (PG_ARGISNULL(1))
		PG_RETURN_BOOL(bucket_fenced(b));	/* only asking */
	on = PG_GETARG_BOOL(1);
	bit = ((uint32) 1) << (b % 32);
	if (on)
	{
		old = pg_atomic_fetch_or_u32(&authx_shared->fence_bits[b / 32], bit);
		if (!(old & bit))
			pg_atomic_fetch_add_u32(&authx_shared->fence_count, 1);
	}
	else
	{
		old = pg_atomic_fetch_and_u32(&authx_shared->fence_bits[b / 32], ~bit);
		if (old & bit)
			pg_atomic_fetch_sub_u32(&authx_shared->fence_count, 1);
	}
	/* Writers read the bit after taking their xid; see authx_bucket_guard. */
	pg_memory_barrier();
	PG_RETURN_BOOL((old & bit) != 0);
}

PG_FUNCTION_INFO_V1(authx_bucket_guard);

/*
 * authx._bucket_guard() — BEFORE INSERT OR UPDATE OR DELETE, FOR EACH ROW,
 * with the column that names the row's bucket as argument (a user id, or
 * with a second argument 'email' an address of the email directory).
 * Raises 40001 for a row of a fenced bucket, unless authx.bucket_leaving
 * (the move itself deleting it).  Costs one atomic read when nothing is
 * fenced.
 */
Datum
authx_bucket_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tup;
	HeapTuple	ret;
	int			attno;
	bool		isnull;
	Datum		d;
	int32		b;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || td->tg_trigger->tgnargs < 1)
		elog(ERROR, "authx._bucket_guard() must be a BEFORE ROW trigger with a column argument");
	ret = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	if (authx_shared == NULL || authx_bucket_leaving)
		return PointerGetDatum(ret);

	/*
	 * Take the xid before reading the fence: a mover that sets the fence
	 * and then waits for every transaction with an xid cannot miss us.
	 */
	(void) GetCurrentTransactionId();
	pg_memory_barrier();
	if (pg_atomic_read_u32(&authx_shared->fence_count) == 0)
		return PointerGetDatum(ret);

	attno = SPI_fnumber(td->tg_relation->rd_att, td->tg_trigger->tgargs[0]);
	if (attno <= 0)
		elog(ERROR, "authx._bucket_guard(): no column \"%s\"", td->tg_trigger->tgargs[0]);
	/* The old row decides for updates too: a row cannot change bucket. */
	tup = td->tg_trigtuple;
	d = heap_getattr(tup, attno, td->tg_relation->rd_att, &isnull);
	if (isnull)
		return PointerGetDatum(ret);
	if (td->tg_trigger->tgnargs > 1 && strcmp(td->tg_trigger->tgargs[1], "email") == 0)
		b = DatumGetInt32(DirectFunctionCall1(authx_shard_of_email, d));
	else
		b = authx_shard_of_uuid(DatumGetUUIDP(d));
	if (bucket_fenced(b))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("bucket %d is moving to another node", b),
				 errhint("Retry the call: it will reach the bucket's new node.")));
	return PointerGetDatum(ret);
}

PG_FUNCTION_INFO_V1(authx_key_fingerprint);

/*
 * authx._key_fingerprint() RETURNS text
 *		16 hex digits derived from the master key (its own KDF purpose, so
 *		it reveals nothing of the key): equal on nodes that share the key,
 *		which bucket moves need (sealed secrets and tagged tokens move as
 *		they are).
 */
Datum
authx_key_fingerprint(PG_FUNCTION_ARGS)
{
	uint8		fp[16];
	char		out[2 * 8];

	authx_subkey("axkeyfpr", 1, fp, sizeof(fp));
	hex_encode((const char *) fp, 8, out);
	explicit_bzero(fp, sizeof(fp));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out, sizeof(out)));
}

/*-------------------------------------------------------------------------
 *
 * apikeys.c
 *		API keys: the hot path authx.apikey_verify, key generation and the
 *		per-key usage counters.
 *
 * Runs in backends (and the maintenance worker, which persists the usage
 * counters).  A key reads axk_<12 hex prefix>_<43 base64url secret>.
 * apikey_verify does no planning and no SPI for a key without remaining
 * uses: it checks the shape, hashes the whole key, walks the unique index
 * on api_keys.prefix directly (prefix and the new and previous secrets live
 * in one row, so a rotated key costs no second probe), and compares the
 * digest with the stored ones in constant time.  A key it has read before
 * comes from a per-backend copy while the row's generation in shared
 * memory holds (see key_lookup for why it cannot be stale).  Rate limits are spent in
 * shared memory (ratelimit.c).  Only metered keys (remaining uses) write on
 * every call, through authx._apikey_consume under the row lock; others
 * touch last_used_at at most once per authx.touch_interval.
 *
 * Usage counters: a table of authx.apikey_usage_slots entries in shared
 * memory, one per (key, hour), each counting verifications per answer code
 * in atomics.  AUTHX_LOCK_USAGE protects which entry belongs to whom:
 * counting takes it shared (so two verifications of one hot key never wait
 * for each other), claiming or reusing an entry takes it exclusive.  The
 * maintenance worker adds the counts to authx.api_key_usage and subtracts
 * what it wrote, so counts made meanwhile are kept.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "authx.h"

#define APIKEY_PREFIX		"axk_"
#define APIKEY_ID_LEN		12	/* hex digits of the public prefix */
#define APIKEY_LEN			(4 + APIKEY_ID_LEN + 1 + AUTHX_TOKEN_BODY_LEN)
#define USAGE_PROBE			16

/* The answers of apikey_verify, in the order of the usage counters. */
typedef enum KeyCode
{
	KEY_VALID,
	KEY_NOT_FOUND,
	KEY_REVOKED,
	KEY_EXPIRED,
	KEY_DISABLED,
	KEY_INSUFFICIENT_SCOPE,
	KEY_RATE_LIMITED,
	KEY_USAGE_EXCEEDED,
	KEY_NUM_CODES
} KeyCode;

static const char *const key_codes[KEY_NUM_CODES] = {
	"valid", "not_found", "revoked", "expired", "disabled",
	"insufficient_scope", "rate_limited", "usage_exceeded"
};

/* What the hot path needs to know about the schema, per backend. */
typedef struct KeySchema
{
	bool		valid;
	Oid			keys;
	Oid			prefix_idx;
	AttrNumber	id;
	AttrNumber	key_hash;
	AttrNumber	prev_hash;
	AttrNumber	prev_until;
	AttrNumber	user_id;
	AttrNumber	scopes;
	AttrNumber	expires_at;
	AttrNumber	rate_limit;
	AttrNumber	rate_window;
	AttrNumber	remaining;
	AttrNumber	refill_amount;
	AttrNumber	refill_interval;
	AttrNumber	refilled_at;
	AttrNumber	last_used_at;
	AttrNumber	revoked_at;
	AttrNumber	owner_disabled;
	AttrNumber	version;
} KeySchema;

/* A key row as read by the hot path. */
typedef struct KeyRow
{
	pg_uuid_t	id;
	pg_uuid_t	user_id;
	Datum		scopes;			/* text[], copied out of the slot */
	TimestampTz expires_at;		/* DT_NOEND when none */
	TimestampTz prev_until;
	bool		has_rate_limit;
	int32		rate_limit;
	int64		rate_window_us;
	bool		has_remaining;
	int32		remaining;		/* after a refill that is due */
	TimestampTz last_used_at;	/* 0 when never */
	bool		revoked;
	bool		owner_disabled;
	int64		version;
	bool		old_secret;		/* matched prev_hash */
} KeyRow;

/* Usage counters of one key for one hour. */
typedef struct UsageEntry
{
	pg_uuid_t	key_id;
	TimestampTz hour;			/* 0 = free */
	pg_atomic_uint32 counts[KEY_NUM_CODES];
} UsageEntry;

/* A snapshot of an entry, on its way to the table. */
typedef struct UsageCopy
{
	int			slot;
	pg_uuid_t	key_id;
	TimestampTz hour;
	uint32		counts[KEY_NUM_CODES];
} UsageCopy;

/*
 * The backend-local key cache (see key_lookup).  A row change bumps the
 * generation of its prefix's slot (and TRUNCATE the last one, for all);
 * an entry is good while both generations it was read under hold.
 */
#define KEYGEN_SLOTS		16384
#define KEYGEN_ALL			KEYGEN_SLOTS
#define KEYCACHE_SIZE		1024

typedef struct KeyCacheEntry
{
	bool		used;
	uint8		hash[AUTHX_HASH_LEN];	/* of the key presented */
	uint64		gen;			/* of the prefix's slot, read before the row */
	uint64		gen_all;
	Oid			owner;
	KeyRow		row;			/* scopes allocated in keycache_cxt */
} KeyCacheEntry;

static KeySchema schema;
static bool callback_registered = false;
static SPIPlanPtr consume_plan = NULL;
static SPIPlanPtr touch_plan = NULL;
static UsageEntry *usage = NULL;
static pg_atomic_uint64 *keygen = NULL;
static KeyCacheEntry *keycache = NULL;
static MemoryContext keycache_cxt = NULL;

/* ----------------------------------------------------------------
 * Usage counters
 * ----------------------------------------------------------------
 */

/* The usage counters' part of our shared memory; the generations follow. */
static Size
usage_size(void)
{
	return MAXALIGN(mul_size(sizeof(UsageEntry), authx_apikey_usage_slots));
}

Size
authx_apikey_shmem_size(void)
{
	return add_size(usage_size(), MAXALIGN(sizeof(pg_atomic_uint64) * (KEYGEN_SLOTS + 1)));
}

void
authx_apikey_shmem_startup(char *base, bool found)
{
	int			i;
	int			k;

	usage = (UsageEntry *) base;
	keygen = (pg_atomic_uint64 *) (base + usage_size());
	if (found)
		return;
	memset(base, 0, authx_apikey_shmem_size());
	for (i = 0; i < authx_apikey_usage_slots; i++)
		for (k = 0; k < KEY_NUM_CODES; k++)
			pg_atomic_init_u32(&usage[i].counts[k], 0);
	for (i = 0; i <= KEYGEN_SLOTS; i++)
		pg_atomic_init_u64(&keygen[i], 0);
}

static int
keygen_slot(const char *prefix, int len)
{
	return (int) (hash_bytes((const unsigned char *) prefix, len) % KEYGEN_SLOTS);
}

/*
 * authx_apikey_row_changed
 *		From the AFTER ROW trigger on authx.api_keys, for the old and the new
 *		row: the backends' cached copies of keys with this prefix are stale.
 *		Runs after the row's new version (and the old one's xmax) is in the
 *		heap, so a backend that read the row before this either saw the
 *		xmax (and did not cache the row) or read the generation before it
 *		was bumped.  No allocation, cannot fail.
 */
void
authx_apikey_row_changed(Relation rel, HeapTuple tup)
{
	int			att;
	bool		isnull;
	Datum		d;
	text	   *t;

	if (keygen == NULL || tup == NULL)
		return;
	att = SPI_fnumber(RelationGetDescr(rel), "prefix");
	if (att <= 0)
	{
		authx_apikey_all_changed();
		return;
	}
	d = heap_getattr(tup, att, RelationGetDescr(rel), &isnull);
	if (isnull)
		return;
	t = DatumGetTextPP(d);
	pg_atomic_fetch_add_u64(&keygen[keygen_slot(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t))], 1);
}

/*
 * authx_apikey_all_changed
 *		TRUNCATE (no row triggers): every cached key is stale.
 */
void
authx_apikey_all_changed(void)
{
	if (keygen != NULL)
		pg_atomic_fetch_add_u64(&keygen[KEYGEN_ALL], 1);
}

static TimestampTz
hour_of(TimestampTz t)
{
	return t - (t % USECS_PER_HOUR + USECS_PER_HOUR) % USECS_PER_HOUR;
}

static int
usage_start(const pg_uuid_t *key_id, TimestampTz hour)
{
	uint64		h = hash_bytes_extended(key_id->data, UUID_LEN, (uint64) hour);

	return (int) (h % (uint64) authx_apikey_usage_slots);
}

static bool
usage_empty(UsageEntry *e)
{
	int			k;

	for (k = 0; k < KEY_NUM_CODES; k++)
		if (pg_atomic_read_u32(&e->counts[k]) != 0)
			return false;
	return true;
}

/*
 * usage_find
 *		The entry of (key_id, hour), or with claim a free one made its own
 *		(an entry of an earlier hour with nothing left to persist is free).
 *		Caller holds AUTHX_LOCK_USAGE, exclusively when claiming.
 */
static UsageEntry *
usage_find(const pg_uuid_t *key_id, TimestampTz hour, bool claim)
{
	int			start = usage_start(key_id, hour);
	UsageEntry *free_slot = NULL;
	int			i;
	int			k;

	for (i = 0; i < USAGE_PROBE; i++)
	{
		UsageEntry *e = &usage[(start + i) % authx_apikey_usage_slots];

		if (e->hour == hour && memcmp(&e->key_id, key_id, UUID_LEN) == 0)
			return e;
		if (claim && free_slot == NULL && (e->hour == 0 || (e->hour < hour && usage_empty(e))))
			free_slot = e;
	}
	if (free_slot != NULL)
	{
		free_slot->key_id = *key_id;
		free_slot->hour = hour;
		for (k = 0; k < KEY_NUM_CODES; k++)
			pg_atomic_init_u32(&free_slot->counts[k], 0);
	}
	return free_slot;
}

/*
 * usage_count
 *		Count one verification of key_id answered with code.  When the
 *		probe window is full the count is dropped (and that counted).
 */
static void
usage_count(const pg_uuid_t *key_id, KeyCode code, TimestampTz now)
{
	static Oid	counted_db = InvalidOid;
	TimestampTz hour = hour_of(now);
	UsageEntry *e;

	if (usage == NULL)
		return;

	/*
	 * Only keys of authx.database are counted: the worker persists the
	 * counters there, and a key id may exist in two databases (a restored
	 * copy).  Looked up once per backend (the setting needs a restart).
	 */
	if (!OidIsValid(counted_db))
		counted_db = authx_database ? get_database_oid(authx_database, true) : InvalidOid;
	if (MyDatabaseId != counted_db)
		return;
	LWLockAcquire(authx_lock(AUTHX_LOCK_USAGE), LW_SHARED);
	e = usage_find(key_id, hour, false);
	if (e != NULL)
		pg_atomic_fetch_add_u32(&e->counts[code], 1);
	LWLockRelease(authx_lock(AUTHX_LOCK_USAGE));
	if (e != NULL)
		return;
	LWLockAcquire(authx_lock(AUTHX_LOCK_USAGE), LW_EXCLUSIVE);
	e = usage_find(key_id, hour, true);
	if (e != NULL)
		pg_atomic_fetch_add_u32(&e->counts[code], 1);
	LWLockRelease(authx_lock(AUTHX_LOCK_USAGE));
	if (e == NULL)
		authx_stat_add(AUTHX_STAT_APIKEY_USAGE_DROPPED, 1);
}

/*
 * usage_copy
 *		Snapshot the entries with counts (all, or key_id's) into a palloc'd
 *		array; returns how many.
 */
static int
usage_copy(const pg_uuid_t *key_id, UsageCopy **out)
{
	UsageCopy  *copies = palloc(sizeof(UsageCopy) * authx_apikey_usage_slots);
	int			n = 0;
	int			i;
	int			k;

	LWLockAcquire(authx_lock(AUTHX_LOCK_USAGE), LW_SHARED);
	for (i = 0; i < authx_apikey_usage_slots; i++)
	{
		UsageEntry *e = &usage[i];

		if (e->hour == 0 || usage_empty(e) ||
			(key_id != NULL && memcmp(&e->key_id, key_id, UUID_LEN) != 0))
			continue;
		copies[n].slot = i;
		copies[n].key_id = e->key_id;
		copies[n].hour = e->hour;
		for (k = 0; k < KEY_NUM_CODES; k++)
			copies[n].counts[k] = pg_atomic_read_u32(&e->counts[k]);
		n++;
	}
	LWLockRelease(authx_lock(AUTHX_LOCK_USAGE));
	*out = copies;
	return n;
}

PG_FUNCTION_INFO_V1(authx_apikey_usage_pending);

/*
 * authx._apikey_usage_pending(key_id uuid)
 *		RETURNS TABLE(hour timestamptz, code text, count bigint)
 *		Counts of the key still in shared memory.
 */
Datum
authx_apikey_usage_pending(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *key_id = PG_GETARG_UUID_P(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	UsageCopy  *copies;
	int			n;
	int			i;
	int			k;

	InitMaterializedSRF(fcinfo, 0);
	if (usage == NULL)
		return (Datum) 0;
	n = usage_copy(key_id, &copies);
	for (i = 0; i < n; i++)
		for (k = 0; k < KEY_NUM_CODES; k++)
		{
			Datum		values[3];
			bool		nulls[3] = {false, false, false};

			if (copies[i].counts[k] == 0)
				continue;
			values[0] = TimestampTzGetDatum(copies[i].hour);
			values[1] = CStringGetTextDatum(key_codes[k]);
			values[2] = Int64GetDatum((int64) copies[i].counts[k]);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	return (Datum) 0;
}

/*
 * authx_apikey_usage_persist
 *		Worker side: add the counters to authx.api_key_usage in one
 *		transaction, then subtract what was written.  A failed transaction
 *		writes and subtracts nothing; the next turn retries.  Returns the
 *		number of (key, hour) entries looked at.
 */
int
authx_apikey_usage_persist(void)
{
	UsageCopy  *copies;
	int			ncopies;
	int			i;
	int			k;
	SPIPlanPtr	plan;
	Oid			argtypes[4] = {UUIDOID, TIMESTAMPTZOID, TEXTOID, INT8OID};
	TimestampTz keep_after;

	if (usage == NULL)
		return 0;
	ncopies = usage_copy(NULL, &copies);
	if (ncopies == 0)
		return 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "authx: persisting API key usage");
	SPI_execute("SELECT pg_catalog.set_config('lock_timeout', '1s', true)", false, 0);
	/* A key deleted meanwhile takes its counts with it. */
	plan = SPI_prepare("INSERT INTO authx.api_key_usage AS u (key_id, hour, code, count) "
					   "SELECT $1, $2, $3, $4 WHERE EXISTS "
					   "(SELECT 1 FROM authx.api_keys k WHERE k.id = $1) "
					   "ON CONFLICT (key_id, hour, code) DO UPDATE SET count = u.count + EXCLUDED.count",
					   4, argtypes);
	if (plan == NULL)
		elog(ERROR, "authx: could not prepare usage upsert: %s", SPI_result_code_string(SPI_result));
	keep_after = hour_of(GetCurrentTimestamp()) - 2 * USECS_PER_HOUR;
	for (i = 0; i < ncopies; i++)
	{
		bool		written = false;

		for (k = 0; k < KEY_NUM_CODES; k++)
		{
			Datum		values[4];

			if (copies[i].counts[k] == 0)
				continue;
			values[0] = UUIDPGetDatum(&copies[i].key_id);
			values[1] = TimestampTzGetDatum(copies[i].hour);
			values[2] = CStringGetTextDatum(key_codes[k]);
			values[3] = Int64GetDatum((int64) copies[i].counts[k]);
			if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "authx: usage upsert failed");
			written = written || SPI_processed > 0;
		}

		/*
		 * A key we cannot see is either deleted or not committed yet (its
		 * creating transaction verified it): keep its counts for another
		 * turn, but not past two hours, so a deleted key's go.
		 */
		if (!written && copies[i].hour >= keep_after)
			copies[i].slot = -1;
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	/* Exclusive: nobody claims or counts while we subtract. */
	LWLockAcquire(authx_lock(AUTHX_LOCK_USAGE), LW_EXCLUSIVE);
	for (i = 0; i < ncopies; i++)
	{
		UsageEntry *e;

		if (copies[i].slot < 0)
			continue;
		e = &usage[copies[i].slot];
		if (e->hour != copies[i].hour || memcmp(&e->key_id, &copies[i].key_id, UUID_LEN) != 0)
			continue;
		for (k = 0; k < KEY_NUM_CODES; k++)
			pg_atomic_sub_fetch_u32(&e->counts[k], copies[i].counts[k]);
	}
	LWLockRelease(authx_lock(AUTHX_LOCK_USAGE));
	authx_stat_add(AUTHX_STAT_APIKEY_USAGE_PERSISTED, ncopies);
	return ncopies;
}

/* ----------------------------------------------------------------
 * Key generation
 * ----------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(authx_apikey_new);

/*
 * authx._apikey_new(prefix text DEFAULT NULL, user_id uuid DEFAULT NULL)
 *		RETURNS (api_key text, key_prefix text, key_hash bytea)
 *		A new key with the given public prefix (rotation) or a random one;
 *		ending in the owner's bucket with authx.shard_tokens on.
 */
Datum
authx_apikey_new(PG_FUNCTION_ARGS)
{
	char		key[APIKEY_LEN + AUTHX_TOKEN_BUCKET_LEN + 1];
	int			len = APIKEY_LEN;
	char		body[AUTHX_TOKEN_LEN + 1];
	uint8		hash[AUTHX_HASH_LEN];
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	bytea	   *h;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "authx: _apikey_new must return a row");
	desc = BlessTupleDesc(desc);

	memcpy(key, APIKEY_PREFIX, 4);
	if (!PG_ARGISNULL(0))
	{
		text	   *p = PG_GETARG_TEXT_PP(0);

		if (VARSIZE_ANY_EXHDR(p) != APIKEY_ID_LEN)
			elog(ERROR, "authx: an API key prefix has %d characters", APIKEY_ID_LEN);
		memcpy(key + 4, VARDATA_ANY(p), APIKEY_ID_LEN);
	}
	else
	{
		uint8		raw[APIKEY_ID_LEN / 2];

		authx_random_bytes(raw, sizeof(raw));
		hex_encode((const char *) raw, sizeof(raw), key + 4);
	}
	key[4 + APIKEY_ID_LEN] = '_';
	/* 256 random bits, base64url: the same body as a session token. */
	authx_token_generate(APIKEY_PREFIX, body);
	memcpy(key + 4 + APIKEY_ID_LEN + 1, body + AUTHX_TOKEN_PREFIX_LEN, AUTHX_TOKEN_BODY_LEN);
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		len += authx_bucket_suffix(PG_GETARG_UUID_P(1), key + APIKEY_LEN);
	key[len] = '\0';
	authx_sha256(key, len, hash);

	h = palloc(VARHDRSZ + AUTHX_HASH_LEN);
	SET_VARSIZE(h, VARHDRSZ + AUTHX_HASH_LEN);
	memcpy(VARDATA(h), hash, AUTHX_HASH_LEN);
	values[0] = PointerGetDatum(cstring_to_text_with_len(key, len));
	values[1] = PointerGetDatum(cstring_to_text_with_len(key + 4, APIKEY_ID_LEN));
	values[2] = PointerGetDatum(h);
	explicit_bzero(key, sizeof(key));
	explicit_bzero(body, sizeof(body));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* ----------------------------------------------------------------
 * apikey_verify
 * ----------------------------------------------------------------
 */

static void
keycache_flush(void)
{
	if (keycache != NULL)
	{
		memset(keycache, 0, sizeof(KeyCacheEntry) * KEYCACHE_SIZE);
		MemoryContextReset(keycache_cxt);
	}
}

static void
schema_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == schema.keys || relid == schema.prefix_idx)
	{
		schema.valid = false;
		keycache_flush();
	}
}

static void
schema_ensure(void)
{
	Oid			nsp;
	Oid			r;

	if (schema.valid)
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(schema_invalidate, (Datum) 0);
		callback_registered = true;
	}
	nsp = get_namespace_oid("authx", false);
	r = schema.keys = authx_need_relid("api_keys", nsp);
	schema.prefix_idx = authx_need_relid("api_keys_prefix_key", nsp);
	schema.id = authx_need_attnum(r, "id");
	schema.key_hash = authx_need_attnum(r, "key_hash");
	schema.prev_hash = authx_need_attnum(r, "prev_hash");
	schema.prev_until = authx_need_attnum(r, "prev_until");
	schema.user_id = authx_need_attnum(r, "user_id");
	schema.scopes = authx_need_attnum(r, "scopes");
	schema.expires_at = authx_need_attnum(r, "expires_at");
	schema.rate_limit = authx_need_attnum(r, "rate_limit");
	schema.rate_window = authx_need_attnum(r, "rate_window");
	schema.remaining = authx_need_attnum(r, "remaining");
	schema.refill_amount = authx_need_attnum(r, "refill_amount");
	schema.refill_interval = authx_need_attnum(r, "refill_interval");
	schema.refilled_at = authx_need_attnum(r, "refilled_at");
	schema.last_used_at = authx_need_attnum(r, "last_used_at");
	schema.revoked_at = authx_need_attnum(r, "revoked_at");
	schema.owner_disabled = authx_need_attnum(r, "owner_disabled");
	schema.version = authx_need_attnum(r, "version");
	schema.valid = true;
}

/*
 * key_wellformed
 *		axk_ + 12 lowercase hex + _ + 43 base64url, then the bucket
 *		(".hhhh") on a scale-out cluster.  Cheap; garbage never reaches an
 *		index.
 */
static bool
key_wellformed(const char *k, Size len)
{
	Size		i;

	if (len == APIKEY_LEN + AUTHX_TOKEN_BUCKET_LEN)
	{
		if (!authx_bucket_suffix_valid(k + APIKEY_LEN))
			return false;
		len = APIKEY_LEN;
	}
	if (len != APIKEY_LEN || memcmp(k, APIKEY_PREFIX, 4) != 0 || k[4 + APIKEY_ID_LEN] != '_')
		return false;
	for (i = 4; i < 4 + APIKEY_ID_LEN; i++)
		if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'a' && k[i] <= 'f')))
			return false;
	for (i = 4 + APIKEY_ID_LEN + 1; i < len; i++)
	{
		char		c = k[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '-' || c == '_'))
			return false;
	}
	return true;
}

static bool
hash_matches(TupleTableSlot *slot, AttrNumber att, const uint8 *hash)
{
	bytea	   *stored;

	if (slot->tts_isnull[att - 1])
		return false;
	stored = DatumGetByteaPP(slot->tts_values[att - 1]);
	return VARSIZE_ANY_EXHDR(stored) == AUTHX_HASH_LEN &&
		authx_equal_ct(VARDATA_ANY(stored), hash, AUTHX_HASH_LEN);
}

/* A fixed-length interval (authx_interval_epoch_us) in whole microseconds. */
static int64
interval_us(const Interval *iv)
{
	return (int64) Min(authx_interval_epoch_us(iv), 1e18);
}

/*
 * keycache_entry
 *		The backend-local cache's slot for a key digest (direct-mapped), or
 *		NULL when there is no cache: no shared memory, or a standby, where
 *		rows change by WAL replay and no trigger tells us.
 */
static KeyCacheEntry *
keycache_entry(const uint8 *hash)
{
	uint32		h;

	if (keygen == NULL || RecoveryInProgress())
		return NULL;
	if (keycache == NULL)
	{
		keycache_cxt = AllocSetContextCreate(TopMemoryContext, "authx key cache",
											 ALLOCSET_SMALL_SIZES);
		keycache = MemoryContextAllocZero(TopMemoryContext, sizeof(KeyCacheEntry) * KEYCACHE_SIZE);
	}
	memcpy(&h, hash, sizeof(h));
	return &keycache[h % KEYCACHE_SIZE];
}

/*
 * key_lookup
 *		Find the key by its prefix and check the secret against the current
 *		and the previous hash.  False when there is no such key or neither
 *		matches.  Fills *row (remaining already refilled when a refill is
 *		due at now) and *owner (of the table, for the writes).
 *
 *		A key without remaining uses is answered from the backend-local cache
 *		when the copy there is current: the generations of its prefix's slot
 *		and of the whole table, read before the row was, have not moved.
 *		Every change to the row bumps its slot from the row trigger, after
 *		the change is in the heap; a row is cached only when its version has
 *		no xmax but a locker's (nobody has updated or deleted it, a prepared
 *		transaction included) and that our own transaction did not write, so
 *		a copy can only outlive a change whose bump came after the
 *		generation was read, which makes the copy stale.  Not-found is
 *		never cached.  Per-call state (rate limits, expiry, the grace of a
 *		rotated-out secret, the touch) is judged at each call as before.
 */
static bool
key_lookup(const char *key, const uint8 *hash, TimestampTz now, KeyRow *row, Oid *owner)
{
	Relation	rel;
	TupleTableSlot *slot;
	text	   *prefix;
	bool		found;
	Datum	   *v;
	bool	   *nl;
	KeyCacheEntry *e;
	uint64		gen = 0;
	uint64		gen_all = 0;
	bool		cacheable = false;

	schema_ensure();
	e = keycache_entry(hash);
	if (e != NULL)
	{
		gen = pg_atomic_read_u64(&keygen[keygen_slot(key + 4, APIKEY_ID_LEN)]);
		gen_all = pg_atomic_read_u64(&keygen[KEYGEN_ALL]);
		pg_read_barrier();
		if (e->used && e->gen == gen && e->gen_all == gen_all &&
			authx_equal_ct(e->hash, hash, AUTHX_HASH_LEN))
		{
			*row = e->row;
			/* The caller's copy: an invalidation may empty the cache. */
			row->scopes = datumCopy(e->row.scopes, false, -1);
			*owner = e->owner;
			return true;
		}
	}

	prefix = cstring_to_text_with_len(key + 4, APIKEY_ID_LEN);
	rel = table_open(schema.keys, AccessShareLock);
	*owner = rel->rd_rel->relowner;
	slot = table_slot_create(rel, NULL);
	found = authx_index_fetch(rel, schema.prefix_idx, F_TEXTEQ, C_COLLATION_OID,
							  PointerGetDatum(prefix), slot);
	if (found)
	{
		bool		current = hash_matches(slot, schema.key_hash, hash);
		bool		previous = hash_matches(slot, schema.prev_hash, hash);
		bool		should_free;
		HeapTuple	ht = ExecFetchSlotHeapTuple(slot, false, &should_free);

		found = current || previous;
		row->old_secret = !current;
		/*
		 * No xmax, or only a locker's (the foreign keys of api_key_usage),
		 * and not written by this transaction, which may yet roll back.
		 */
		cacheable = ((ht->t_data->t_infomask & HEAP_XMAX_INVALID) != 0 ||
					 HEAP_XMAX_IS_LOCKED_ONLY(ht->t_data->t_infomask)) &&
			!TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(ht->t_data));
		if (should_free)
			heap_freetuple(ht);
	}
	if (found)
	{
		v = slot->tts_values;
		nl = slot->tts_isnull;
		row->id = *DatumGetUUIDP(v[schema.id - 1]);
		row->user_id = *DatumGetUUIDP(v[schema.user_id - 1]);
		row->scopes = datumCopy(v[schema.scopes - 1], false, -1);
		row->expires_at = nl[schema.expires_at - 1] ? DT_NOEND : DatumGetTimestampTz(v[schema.expires_at - 1]);
		row->prev_until = nl[schema.prev_until - 1] ? DT_NOBEGIN : DatumGetTimestampTz(v[schema.prev_until - 1]);
		row->has_rate_limit = !nl[schema.rate_limit - 1];
		row->rate_limit = row->has_rate_limit ? DatumGetInt32(v[schema.rate_limit - 1]) : 0;
		row->rate_window_us = interval_us(DatumGetIntervalP(v[schema.rate_window - 1]));
		row->has_remaining = !nl[schema.remaining - 1];
		row->remaining = row->has_remaining ? DatumGetInt32(v[schema.remaining - 1]) : 0;
		if (row->has_remaining && !nl[schema.refill_interval - 1] && !nl[schema.refilled_at - 1] &&
			now >= DatumGetTimestampTz(v[schema.refilled_at - 1]) +
			interval_us(DatumGetIntervalP(v[schema.refill_interval - 1])))
			row->remaining = DatumGetInt32(v[schema.refill_amount - 1]);
		row->last_used_at = nl[schema.last_used_at - 1] ? 0 : DatumGetTimestampTz(v[schema.last_used_at - 1]);
		row->revoked = !nl[schema.revoked_at - 1];
		row->owner_disabled = DatumGetBool(v[schema.owner_disabled - 1]);
		row->version = DatumGetInt64(v[schema.version - 1]);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);

	/* Metered keys are read under their row lock each time: not cached. */
	if (found && cacheable && e != NULL && !row->has_remaining)
	{
		MemoryContext old;

		if (e->used)
			pfree(DatumGetPointer(e->row.scopes));
		e->used = false;
		memcpy(e->hash, hash, AUTHX_HASH_LEN);
		e->gen = gen;
		e->gen_all = gen_all;
		e->owner = *owner;
		e->row = *row;
		old = MemoryContextSwitchTo(keycache_cxt);
		e->row.scopes = datumCopy(row->scopes, false, -1);
		MemoryContextSwitchTo(old);
		e->used = true;
	}
	return found;
}

/*
 * scopes_cover
 *		Does one of the key's scopes cover the wanted permission?
 */
static bool
scopes_cover(Datum scopes, const char *w, int wlen, int wcolon)
{
	ArrayType  *arr = DatumGetArrayTypeP(scopes);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		text	   *t;

		if (nulls[i])
			continue;
		t = DatumGetTextPP(elems[i]);
		if (authx_permission_covers(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), w, wlen, wcolon))
			return true;
	}
	return false;
}

/*
 * consume
 *		Spend cost uses of a metered key through authx._apikey_consume, as the
 *		table owner, under the row lock.  The locked row is the latest one:
 *		returns its verdict (valid, usage_exceeded, or revoked, expired or
 *		disabled when that committed while we waited) and sets *left to the
 *		uses left when known.
 */
static KeyCode
consume(const KeyRow *row, int32 cost, TimestampTz now, Oid owner, int32 *left, bool *left_known)
{
	Oid			save_userid;
	int			save_sec;
	Datum		values[3];
	bool		isnull;
	Datum		d;
	char	   *code;
	KeyCode		result = KEY_USAGE_EXCEEDED;
	int			i;

	if (XactReadOnly || RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot spend the uses of an API key in a read-only transaction"),
				 errhint("Verify keys that have remaining uses on the primary, in a read-write transaction.")));

	/* An error restores the identity with the (sub)transaction abort. */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	SPI_connect();
	if (consume_plan == NULL)
	{
		Oid			argtypes[3] = {UUIDOID, INT4OID, TIMESTAMPTZOID};

		consume_plan = authx_keep_plan("SELECT code, remaining FROM authx._apikey_consume($1, $2, $3)",
									   3, argtypes);
	}
	values[0] = UUIDPGetDatum(&row->id);
	values[1] = Int32GetDatum(cost);
	values[2] = TimestampTzGetDatum(now);
	if (SPI_execute_plan(consume_plan, values, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "authx: the use counter failed");
	code = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	for (i = 0; code != NULL && i < KEY_NUM_CODES; i++)
		if (strcmp(code, key_codes[i]) == 0)
			result = (KeyCode) i;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*left_known = !isnull;
	if (!isnull)
		*left = DatumGetInt32(d);
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
	return result;
}

typedef struct KeyTouch
{
	const KeyRow *row;
	TimestampTz now;
} KeyTouch;

static void
touch_cb(void *arg)
{
	KeyTouch   *t = (KeyTouch *) arg;
	Datum		values[2];

	SPI_connect();
	if (touch_plan == NULL)
	{
		Oid			argtypes[2] = {UUIDOID, TIMESTAMPTZOID};

		touch_plan = authx_keep_plan("SELECT authx._apikey_touch($1, $2)", 2, argtypes);
	}
	values[0] = UUIDPGetDatum(&t->row->id);
	values[1] = TimestampTzGetDatum(t->now);
	if (SPI_execute_plan(touch_plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "authx: key touch failed");
	SPI_finish();
}

/*
 * note_valid
 *		Repopulate the key's Redis entry after a valid answer, when the key
 *		is one a gateway may accept from Redis alone: no use counter, no
 *		rate limit, scopes that fit.  A rotated-out secret's entry ends with
 *		its grace.
 */
static void
note_valid(const uint8 *hash, const KeyRow *row)
{
	char		scopes[AUTHX_CACHE_SCOPES_LEN];

	if (!authx_cache_enabled() || row->has_remaining || row->has_rate_limit ||
		!authx_scopes_join(row->scopes, scopes, sizeof(scopes)))
		return;
	authx_cache_note_key(hash, &row->id, &row->user_id, row->version, row->expires_at,
						 row->old_secret ? row->prev_until : DT_NOEND, scopes);
}

/* A key that is not found, from the caller's ip if given: for threat rules. */
static void
observe_not_found(FunctionCallInfo fcinfo)
{
	static const char event[] = "apikey.not_found";

	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
		authx_threat_observe(event, sizeof(event) - 1, PG_GETARG_DATUM(3), NULL, NULL);
}

PG_FUNCTION_INFO_V1(authx_apikey_verify);

/*
 * authx.apikey_verify(api_key text, scope text, cost integer, ip inet)
 *		RETURNS (code text, key_id uuid, user_id uuid, scopes text[],
 *				 remaining integer, rate_limit_remaining integer,
 *				 retry_after interval)
 *		Exactly one row.  Never raises for the key; raises 22023 for a
 *		malformed scope or a negative cost (the caller's bug, not the
 *		client's).  A blocked ip is answered "blocked" before the key is
 *		looked at; with an ip, keys not found feed the threat rules on
 *		"apikey.not_found" (brute force), without an audit event each.
 */
Datum
authx_apikey_verify(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[7];
	bool		nulls[7] = {false, true, true, true, true, true, true};
	int32		cost = PG_ARGISNULL(2) ? 1 : PG_GETARG_INT32(2);
	text	   *scope = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	int			wcolon = 0;
	uint8		hash[AUTHX_HASH_LEN];
	KeyCode		code = KEY_VALID;
	KeyRow		row;
	Oid			owner;
	TimestampTz now;
	text	   *key = NULL;
	bool		spent = false;

	desc = authx_result_desc(fcinfo);
	if (cost < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cost must not be negative"),
				 errhint("Pass how many uses this request spends, usually 1 (0 checks without spending).")));
	if (scope != NULL &&
		!authx_permission_split(VARDATA_ANY(scope), VARSIZE_ANY_EXHDR(scope), &wcolon))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid scope \"%s\"", text_to_cstring(scope)),
				 errhint("Write scopes as resource:action, e.g. \"documents:read\".")));

	if (PG_NARGS() > 3 && !PG_ARGISNULL(3) && authx_ip_is_blocked(PG_GETARG_DATUM(3)))
	{
		authx_stat_add(AUTHX_STAT_APIKEY_REJECTED, 1);
		values[0] = CStringGetTextDatum("blocked");
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
	}

	/* The stored size first: a megabyte of garbage costs nothing. */
	if (PG_ARGISNULL(0) ||
		(toast_raw_datum_size(PG_GETARG_DATUM(0)) != VARHDRSZ + APIKEY_LEN &&
		 toast_raw_datum_size(PG_GETARG_DATUM(0)) != VARHDRSZ + APIKEY_LEN + AUTHX_TOKEN_BUCKET_LEN))
		code = KEY_NOT_FOUND;
	else
	{
		key = PG_GETARG_TEXT_PP(0);
		if (!key_wellformed(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)))
			code = KEY_NOT_FOUND;
	}
	if (code == KEY_NOT_FOUND)
	{
		authx_stat_add(AUTHX_STAT_APIKEY_MALFORMED, 1);
		observe_not_found(fcinfo);
		values[0] = CStringGetTextDatum(key_codes[code]);
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
	}

	authx_sha256(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), hash);
	now = GetCurrentTimestamp();
	if (!key_lookup(VARDATA_ANY(key), hash, now, &row, &owner))
	{
		authx_stat_add(AUTHX_STAT_APIKEY_REJECTED, 1);
		observe_not_found(fcinfo);
		values[0] = CStringGetTextDatum(key_codes[KEY_NOT_FOUND]);
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
	}

	if (row.revoked || (row.old_secret && row.prev_until <= now))
		code = KEY_REVOKED;
	else if (row.expires_at <= now)
		code = KEY_EXPIRED;
	else if (row.owner_disabled)
		code = KEY_DISABLED;
	else if (scope != NULL &&
			 !scopes_cover(row.scopes, VARDATA_ANY(scope), VARSIZE_ANY_EXHDR(scope), wcolon))
		code = KEY_INSUFFICIENT_SCOPE;
	else if (row.has_remaining && row.remaining < cost)
		code = KEY_USAGE_EXCEEDED;

	if (code == KEY_VALID && row.has_rate_limit)
	{
		AuthxRateResult rr;
		uint8		subject[AUTHX_RATE_SUBJECT_LEN];

		authx_require_shmem();
		/*
		 * Per database: a restored copy of the key in another database of
		 * the cluster has the same id.  Ids are random, so folding the
		 * database's OID in keeps them apart.
		 */
		memcpy(subject, row.id.data, AUTHX_RATE_SUBJECT_LEN);
		subject[0] ^= (uint8) (MyDatabaseId & 0xff);
		subject[1] ^= (uint8) ((MyDatabaseId >> 8) & 0xff);
		subject[2] ^= (uint8) ((MyDatabaseId >> 16) & 0xff);
		subject[3] ^= (uint8) ((MyDatabaseId >> 24) & 0xff);
		authx_rate_consume(AUTHX_RATE_NS_APIKEY, subject, row.rate_limit, row.rate_window_us,
						   cost, false, now, &rr);
		nulls[5] = false;
		values[5] = Int32GetDatum((int32) Max(Min(rr.remaining, PG_INT32_MAX), 0));
		if (!rr.allowed)
		{
			code = KEY_RATE_LIMITED;
			if (rr.retry_after_us >= 0)
			{
				Interval   *iv = palloc0(sizeof(Interval));

				iv->time = rr.retry_after_us;
				nulls[6] = false;
				values[6] = IntervalPGetDatum(iv);
			}
		}
	}
	if (code == KEY_VALID && row.has_remaining && cost > 0)
	{
		int32		left = 0;
		bool		known = false;

		code = consume(&row, cost, now, owner, &left, &known);
		spent = code == KEY_VALID;
		if (known)
			row.remaining = left;
	}
	if (code == KEY_VALID && !spent &&
		(row.last_used_at == 0 || now - row.last_used_at >= (int64) authx_touch_interval * USECS_PER_SEC))
	{
		KeyTouch	t = {&row, now};

		/* The touch's trigger repopulates Redis too. */
		if (authx_owner_subxact(owner, touch_cb, &t))
			authx_stat_add(AUTHX_STAT_APIKEY_TOUCHES, 1);
		else
			note_valid(hash, &row);
	}
	else if (code == KEY_VALID)
		note_valid(hash, &row);

	authx_stat_add(code == KEY_VALID ? AUTHX_STAT_APIKEY_VALID : AUTHX_STAT_APIKEY_REJECTED, 1);
	usage_count(&row.id, code, now);

	values[0] = CStringGetTextDatum(key_codes[code]);
	values[1] = UUIDPGetDatum(&row.id);
	values[2] = UUIDPGetDatum(&row.user_id);
	values[3] = row.scopes;
	nulls[1] = nulls[2] = nulls[3] = false;
	if (row.has_remaining)
	{
		nulls[4] = false;
		values[4] = Int32GetDatum(row.remaining);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

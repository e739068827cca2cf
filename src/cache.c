/*-------------------------------------------------------------------------
 *
 * cache.c
 *		Redis write-through, backend side: what to send, and when.
 *
 * Backends collect cache operations per transaction (a trigger on
 * authx.sessions for every write; session_validate for repopulation) in
 * TopTransactionContext, tagged with the subtransaction nesting level so a
 * subtransaction abort drops its own.  At XACT_EVENT_COMMIT the operations
 * are copied into a ring in shared memory under AUTHX_LOCK_CACHE: nothing is
 * allocated, no network I/O happens, nothing can raise; a full ring sets the
 * overflow flag, which makes the writer resync the whole cache.  An aborted
 * transaction sends nothing.  The Redis writer (worker_redis.c) is the only
 * reader of the ring.
 *
 * Every operation carries the version of the session row it describes; the
 * row's version is bumped by a trigger on every update, and writers of a row
 * serialize on its row lock, so versions follow commit order per key.  The
 * Lua script applies an operation only if its version is newer, so replays,
 * reordering and a repopulation that read an old state are harmless.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_bitutils.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "authx.h"

/*
 * Writer lag: a histogram of every operation's commit-to-applied lag, in
 * AUTHX_LAG_SLOTS slots of AUTHX_LAG_SLOT_US each (the last minute),
 * AUTHX_LAG_SUB buckets per doubling (a bucket is at most 1/16 of its
 * values wide), so p99 speaks for every operation of the minute rather than
 * for the last few hundred.
 */
#define AUTHX_LAG_SLOTS		6
#define AUTHX_LAG_SLOT_US	(10 * USECS_PER_SEC)
#define AUTHX_LAG_SUB_BITS	4
#define AUTHX_LAG_SUB		(1 << AUTHX_LAG_SUB_BITS)
#define AUTHX_LAG_BUCKETS	((32 - AUTHX_LAG_SUB_BITS + 1) * AUTHX_LAG_SUB)

typedef struct LagSlot
{
	int64		period;			/* now / AUTHX_LAG_SLOT_US when it was filled */
	uint32		count[AUTHX_LAG_BUCKETS];
} LagSlot;

#define AUTHX_MEMO_SIZE		4096

/* The ring and the writer's published state, in shared memory. */
typedef struct AuthxCacheShared
{
	uint64		head;			/* operations ever queued */
	uint64		tail;			/* operations taken off the ring */
	uint64		done;			/* operations whose effect is in Redis (or
								 * wiped by a finished resync) */
	bool		overflow;		/* operations were dropped: resync */
	uint64		resyncs_asked;	/* times overflow was raised */
	uint64		resyncs_covered;	/* of those, what the resync under way
									 * covers, and what finished ones did */
	uint64		resyncs_done;
	uint64		epoch;			/* bumped by every resync */
	TimestampTz resync_began;	/* live entries from transactions older
								 * than this are stale */
	pid_t		writer_pid;
	Latch	   *writer_latch;
	bool		writer_sleeping;	/* set by the writer before it waits */
	bool		connected;
	char		run_id[48];
	char		last_error[256];
	TimestampTz last_error_at;
	LagSlot		lag[AUTHX_LAG_SLOTS];	/* commit-to-applied lags */
	pg_atomic_uint64 own_hits;	/* keyspace hits and misses of authx's own */
	pg_atomic_uint64 own_misses;	/* scripts (writer and rate limits) */
	pg_atomic_uint64 own_pending;	/* rate-limit scripts sent, not yet counted */
	ConditionVariable cv;		/* broadcast when the tail moves */
	Size		size;			/* capacity in operations */
	AuthxCacheOp ops[FLEXIBLE_ARRAY_MEMBER];
} AuthxCacheShared;

/* A pending operation and the subtransaction level that queued it. */
typedef struct PendingOp
{
	AuthxCacheOp op;
	int			level;
} PendingOp;

/* A validation this backend already sent, to avoid one per call. */
typedef struct MemoEntry
{
	uint64		key;
	int64		version;
	uint64		epoch;
	TimestampTz at;
} MemoEntry;

static AuthxCacheShared *cache = NULL;
static PendingOp *pending = NULL;
static int	npending = 0;
static int	maxpending = 0;
static bool pending_resync = false;	/* a TRUNCATE: resync at commit */
static bool callbacks_registered = false;
static MemoEntry memo[AUTHX_MEMO_SIZE];

Size
authx_cache_shmem_size(void)
{
	return MAXALIGN(add_size(offsetof(AuthxCacheShared, ops),
							 mul_size(sizeof(AuthxCacheOp), authx_cache_queue_size)));
}

/*
 * cache_reset
 *		First-time initialisation (fresh shared memory).
 */
static void
cache_reset(void)
{
	memset(cache, 0, offsetof(AuthxCacheShared, ops));
	/*
	 * One pseudo-operation stands for the writer's first resync: until it
	 * is done, cache_sync waits, because Redis may still hold what was
	 * true before this shared memory was made (a crash-restart).
	 */
	cache->head = cache->tail = 1;
	cache->done = 0;
	cache->size = authx_cache_queue_size;
	pg_atomic_init_u64(&cache->own_hits, 0);
	pg_atomic_init_u64(&cache->own_misses, 0);
	pg_atomic_init_u64(&cache->own_pending, 0);
	ConditionVariableInit(&cache->cv);
}

bool
authx_cache_enabled(void)
{
	return authx_shared != NULL && authx_redis_url != NULL && authx_redis_url[0] != '\0';
}

/* ----------------------------------------------------------------
 * Transaction callbacks
 * ----------------------------------------------------------------
 */

/*
 * memo_forget
 *		A repopulation that will not be sent (its transaction or
 *		subtransaction rolled back, or it was dropped at PREPARE) must not
 *		count as sent.
 */
static void
memo_forget(const AuthxCacheOp *op)
{
	uint64		key;
	MemoEntry  *m;

	if (!op->from_read)
		return;
	memcpy(&key, op->hash, sizeof(key));
	m = &memo[key % AUTHX_MEMO_SIZE];
	if (m->key == key && m->version == op->version)
		m->key = 0;
}

static void
pending_reset(void)
{
	/* The array lived in TopTransactionContext, which goes away anyway. */
	pending = NULL;
	npending = 0;
	maxpending = 0;
	pending_resync = false;
}

/*
 * cache_push
 *		At COMMIT: copy the pending operations into the ring, stamped with
 *		the commit time.  No allocation, no error: when they do not fit they
 *		are dropped and the overflow flag forces a resync.
 */
static void
cache_push(void)
{
	TimestampTz now = GetCurrentTimestamp();
	Latch	   *latch;
	int			i;

	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_EXCLUSIVE);
	if (cache->head - cache->tail + npending > cache->size)
	{
		cache->overflow = true;
		cache->resyncs_asked++;
		LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
		authx_stat_add(AUTHX_STAT_CACHE_DROPPED, npending);
	}
	else
	{
		for (i = 0; i < npending; i++)
		{
			AuthxCacheOp *slot = &cache->ops[cache->head % cache->size];

			*slot = pending[i].op;
			slot->committed_at = now;
			cache->head++;
		}
		LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
		authx_stat_add(AUTHX_STAT_CACHE_QUEUED, npending);
	}
	/*
	 * Wake the writer only if it is waiting: a busy writer will see these
	 * operations anyway, and a wakeup per commit costs context switches.
	 * The writer sets writer_sleeping before it looks at the queue under
	 * the same lock we pushed under, so it cannot miss us.
	 */
	pg_memory_barrier();
	latch = cache->writer_latch;
	if (latch && cache->writer_sleeping)
		SetLatch(latch);
}

/*
 * cache_request_resync
 *		At COMMIT of a transaction that truncated sessions or keys: rows went
 *		with no trigger per row, so the writer must resync (the overflow
 *		flag).  No allocation, no error.
 */
static void
cache_request_resync(void)
{
	Latch	   *latch;

	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_EXCLUSIVE);
	cache->overflow = true;
	cache->resyncs_asked++;
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
	pg_memory_barrier();
	latch = cache->writer_latch;
	if (latch)
		SetLatch(latch);
}

static void
cache_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			{
				int			i;
				int			kept = 0;

				/* Repopulations are optional: drop them. */
				for (i = 0; i < npending; i++)
				{
					if (pending[i].op.from_read)
						memo_forget(&pending[i].op);
					else
						pending[kept++] = pending[i];
				}
				npending = kept;
			}
			/* Allowed to raise: we are before the point of no return. */
			if (npending > 0 || pending_resync)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that changed authx sessions while the Redis cache is on"),
						 errhint("Commit such changes directly, or set authx.redis_url to '' to turn the cache off.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (pending_resync)
				cache_request_resync();
			if (npending > 0)
				cache_push();
			pending_reset();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			{
				int			i;

				for (i = 0; i < npending; i++)
					memo_forget(&pending[i].op);
			}
			pending_reset();
			break;
		case XACT_EVENT_PREPARE:
			pending_reset();
			break;
		default:
			break;
	}
}

/*
 * cache_subxact_callback
 *		A subtransaction abort drops what it queued; a subtransaction commit
 *		hands its operations to the parent.
 */
static void
cache_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i;
	int			kept = 0;

	if (npending == 0)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		for (i = 0; i < npending; i++)
		{
			if (pending[i].level < level)
				pending[kept++] = pending[i];
			else
				memo_forget(&pending[i].op);
		}
		npending = kept;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (i = 0; i < npending; i++)
			if (pending[i].level >= level)
				pending[i].level = level - 1;
	}
}

/*
 * pending_add
 *		Queue an operation in the current (sub)transaction.
 */
static void
register_callbacks(void)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(cache_xact_callback, NULL);
		RegisterSubXactCallback(cache_subxact_callback, NULL);
		callbacks_registered = true;
	}
}

static void
pending_add(const AuthxCacheOp *op)
{
	register_callbacks();
	if (npending == maxpending)
	{
		int			newmax = maxpending ? maxpending * 2 : 16;

		pending = pending == NULL
			? MemoryContextAlloc(TopTransactionContext, sizeof(PendingOp) * newmax)
			: repalloc(pending, sizeof(PendingOp) * newmax);
		maxpending = newmax;
	}
	pending[npending].op = *op;
	pending[npending].op.xact_start = GetCurrentTransactionStartTimestamp();
	pending[npending].level = GetCurrentTransactionNestLevel();
	npending++;
}

/*
 * set_expire_at
 *		A live entry disappears at the earliest of the session's expiry, its
 *		idle deadline and now + authx.cache_ttl.
 */
static TimestampTz
set_expire_at(TimestampTz expires_at, TimestampTz idle_deadline)
{
	TimestampTz bound = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													(int64) authx_cache_ttl * 1000);

	return Min(Min(expires_at, idle_deadline), bound);
}

/*
 * note_read
 *		Queue a repopulation, at most once per half authx.cache_ttl per
 *		backend for the same key and version (and again after every
 *		resync), so a hot session or key costs Redis nothing.
 */
static void
note_read(AuthxCacheOp *op)
{
	uint64		key;
	MemoEntry  *m;
	TimestampTz now = GetCurrentTimestamp();
	uint64		epoch = cache->epoch;

	memcpy(&key, op->hash, sizeof(key));
	m = &memo[key % AUTHX_MEMO_SIZE];
	if (m->key == key && m->version == op->version && m->epoch == epoch &&
		now - m->at < (int64) authx_cache_ttl * USECS_PER_SEC / 2)
		return;
	op->kind = AUTHX_CACHE_SET;
	op->from_read = true;
	pending_add(op);
	m->key = key;
	m->version = op->version;
	m->epoch = epoch;
	m->at = now;
}

/*
 * authx_cache_note_valid
 *		session_validate found a valid session: repopulate its entry.
 */
void
authx_cache_note_valid(const uint8 *hash, const pg_uuid_t *user_id, int64 version,
					   TimestampTz expires_at, TimestampTz idle_deadline)
{
	AuthxCacheOp op;

	memset(&op, 0, sizeof(op));
	op.type = AUTHX_CACHE_SESSION;
	memcpy(op.hash, hash, AUTHX_HASH_LEN);
	op.user_id = *user_id;
	op.version = version;
	op.expires_at = expires_at;
	op.expire_at = set_expire_at(expires_at, idle_deadline);
	note_read(&op);
}

/*
 * authx_cache_note_key
 *		apikey_verify found a cacheable key valid: repopulate its entry, to
 *		disappear by bound (a rotated-out secret's grace) at the latest.
 *
 *		The entry also ends within authx.cache_ttl of the snapshot the
 *		answer was read with (bounded below by the statement's, or in
 *		REPEATABLE READ the transaction's, start): a caller holding an old
 *		snapshot cannot make an entry that outlives the tombstone of a
 *		revocation it did not see (key tombstones live twice cache_ttl).
 */
void
authx_cache_note_key(const uint8 *hash, const pg_uuid_t *key_id, const pg_uuid_t *user_id,
					 int64 version, TimestampTz expires_at, TimestampTz bound, const char *scopes)
{
	AuthxCacheOp op;
	TimestampTz read_at = IsolationUsesXactSnapshot()
		? GetCurrentTransactionStartTimestamp() : GetCurrentStatementStartTimestamp();

	memset(&op, 0, sizeof(op));
	op.type = AUTHX_CACHE_APIKEY;
	memcpy(op.hash, hash, AUTHX_HASH_LEN);
	op.key_id = *key_id;
	op.user_id = *user_id;
	op.version = version;
	op.expires_at = expires_at;
	op.expire_at = Min(set_expire_at(expires_at, bound),
					   TimestampTzPlusMilliseconds(read_at, (int64) authx_cache_ttl * 1000));
	strlcpy(op.scopes, scopes, sizeof(op.scopes));
	note_read(&op);
}

/* ----------------------------------------------------------------
 * Triggers on authx.sessions
 * ----------------------------------------------------------------
 */

static Datum
attr(HeapTuple tup, TupleDesc desc, const char *name, bool *isnull)
{
	int			att = SPI_fnumber(desc, name);

	if (att <= 0)
		elog(ERROR, "authx: column \"%s\" is missing", name);
	return heap_getattr(tup, att, desc, isnull);
}

/*
 * trigger_row
 *		The row an AFTER ROW trigger describes (the new one for an update),
 *		its descriptor and whether it was deleted; NULL while the cache is
 *		off.  Raises when not called as an AFTER ROW trigger.
 */
static HeapTuple
trigger_row(FunctionCallInfo fcinfo, const char *name, TupleDesc *desc, bool *deleted)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as an AFTER ROW trigger", name)));
	if (!authx_cache_enabled())
		return NULL;
	*desc = RelationGetDescr(td->tg_relation);
	*deleted = TRIGGER_FIRED_BY_DELETE(td->tg_event);
	return TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
}

PG_FUNCTION_INFO_V1(authx_cache_truncated);

/*
 * authx._cache_truncated() — AFTER TRUNCATE on authx.sessions and
 * authx.api_keys, FOR EACH STATEMENT.  TRUNCATE fires no row trigger: the
 * writer resyncs the whole cache once the transaction commits (a rolled-back
 * TRUNCATE asks for nothing; one in a rolled-back subtransaction costs a
 * resync, which is always safe).
 */
Datum
authx_cache_truncated(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "authx._cache_truncated() must be called as a trigger");
	/* The backends' copies of API keys (apikeys.c), cache on or off. */
	authx_apikey_all_changed();
	if (authx_cache_enabled())
	{
		register_callbacks();
		pending_resync = true;
	}
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(authx_sessions_cache);

/*
 * authx._sessions_cache() — AFTER INSERT OR UPDATE OR DELETE on
 * authx.sessions, FOR EACH ROW.  Queues the row's new state: a live entry,
 * or a tombstone for a revoked or deleted session that has not expired.
 */
Datum
authx_sessions_cache(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	HeapTuple	tup;
	AuthxCacheOp op;
	bool		isnull;
	bool		deleted;
	bool		revoked;
	bytea	   *hash;
	TimestampTz now = GetCurrentTimestamp();

	tup = trigger_row(fcinfo, "authx._sessions_cache()", &desc, &deleted);
	if (tup == NULL)
		return PointerGetDatum(NULL);

	memset(&op, 0, sizeof(op));
	op.type = AUTHX_CACHE_SESSION;
	hash = DatumGetByteaPP(attr(tup, desc, "token_hash", &isnull));
	if (isnull || VARSIZE_ANY_EXHDR(hash) != AUTHX_HASH_LEN)
		return PointerGetDatum(NULL);
	memcpy(op.hash, VARDATA_ANY(hash), AUTHX_HASH_LEN);
	op.user_id = *DatumGetUUIDP(attr(tup, desc, "user_id", &isnull));
	op.version = DatumGetInt64(attr(tup, desc, "version", &isnull));
	op.expires_at = DatumGetTimestampTz(attr(tup, desc, "expires_at", &isnull));
	(void) attr(tup, desc, "revoked_at", &revoked);
	revoked = !revoked;

	if (op.expires_at <= now)
		return PointerGetDatum(NULL);	/* Redis has let it go already */
	if (deleted && !revoked && authx_bucket_leaving)
	{
		/* Moved to another node, still valid there: send gateways to Postgres. */
		op.kind = AUTHX_CACHE_FORGET;
		op.version += 1;
		op.expire_at = Min(op.expires_at, TimestampTzPlusMilliseconds(now, (int64) authx_cache_ttl * 1000));
	}
	else if (deleted || revoked)
	{
		op.kind = AUTHX_CACHE_REVOKE;
		/* A deleted row's next version is the tombstone's. */
		op.version += deleted ? 1 : 0;
		op.expire_at = op.expires_at;
	}
	else
	{
		int32		idle = DatumGetInt32(attr(tup, desc, "idle_timeout", &isnull));
		TimestampTz seen = DatumGetTimestampTz(attr(tup, desc, "last_seen_at", &isnull));

		op.kind = AUTHX_CACHE_SET;
		op.born = TRIGGER_FIRED_BY_INSERT(((TriggerData *) fcinfo->context)->tg_event);
		op.expire_at = set_expire_at(op.expires_at,
									 idle > 0 ? seen + (int64) idle * USECS_PER_SEC : DT_NOEND);
		if (op.expire_at <= now)
			return PointerGetDatum(NULL);
	}
	pending_add(&op);
	return PointerGetDatum(NULL);
}

/*
 * authx_scopes_join
 *		A key's scopes (text[]) separated by spaces into out, as its Redis
 *		entry carries them; false (out empty) when they do not fit or one is
 *		NULL: the key is then not cached.
 */
bool
authx_scopes_join(Datum scopes, char *out, Size outlen)
{
	ArrayType  *arr = DatumGetArrayTypeP(scopes);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	Size		used = 0;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	out[0] = '\0';
	for (i = 0; i < n; i++)
	{
		text	   *t;
		Size		len;

		if (nulls[i])
			break;
		t = DatumGetTextPP(elems[i]);
		len = VARSIZE_ANY_EXHDR(t);
		if (used + len + (used ? 1 : 0) + 1 > outlen)
			break;
		if (used)
			out[used++] = ' ';
		memcpy(out + used, VARDATA_ANY(t), len);
		used += len;
		out[used] = '\0';
	}
	if (i == n)
		return true;
	memset(out, 0, outlen);
	return false;
}

/* ----------------------------------------------------------------
 * Triggers on authx.api_keys
 * ----------------------------------------------------------------
 */

/*
 * key_hash_op
 *		Queue the state of one of a key's hashes (the current secret's, or the
 *		rotated-out one's, whose entry ends with its grace at bound).
 */
static void
key_hash_op(AuthxCacheOp *base, Datum hashd, bool revoked, bool live, bool cacheable,
			TimestampTz bound, TimestampTz now)
{
	bytea	   *hash = DatumGetByteaPP(hashd);
	AuthxCacheOp op = *base;
	TimestampTz ttl_end = TimestampTzPlusMilliseconds(now, (int64) authx_cache_ttl * 1000);

	if (VARSIZE_ANY_EXHDR(hash) != AUTHX_HASH_LEN)
		return;
	memcpy(op.hash, VARDATA_ANY(hash), AUTHX_HASH_LEN);
	if (revoked || bound <= now)
	{
		/* Twice the longest life of any entry: see authx_cache_note_key. */
		op.kind = AUTHX_CACHE_REVOKE;
		op.expire_at = Min(op.expires_at, TimestampTzPlusMilliseconds(ttl_end, (int64) authx_cache_ttl * 1000));
	}
	else if (op.expires_at <= now)
		return;					/* Redis has let it go already */
	else if (live && cacheable)
	{
		op.kind = AUTHX_CACHE_SET;
		op.expire_at = set_expire_at(op.expires_at, bound);
	}
	else
	{
		/* Valid or not, the gateway must ask Postgres. */
		op.kind = AUTHX_CACHE_FORGET;
		op.expire_at = Min(op.expires_at, ttl_end);
	}
	pending_add(&op);
}

PG_FUNCTION_INFO_V1(authx_api_keys_cache);

/*
 * authx._api_keys_cache() — AFTER INSERT OR UPDATE OR DELETE on
 * authx.api_keys, FOR EACH ROW.  Queues the state of each of the row's
 * hashes: a live entry for a key a gateway may accept alone (no use counter,
 * no rate limit, scopes that fit), a tombstone for a revoked or deleted one
 * (and for a rotated-out secret whose grace is over), and otherwise a bare
 * version that sends gateways to Postgres.
 */
Datum
authx_api_keys_cache(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tup;
	AuthxCacheOp op;
	bool		isnull;
	bool		deleted;
	bool		revoked;
	bool		live;
	bool		cacheable;
	bool		prev_null;
	Datum		d;
	Datum		prev;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz prev_until;

	/* The backends' own copies first, cache on or off (apikeys.c). */
	if (CALLED_AS_TRIGGER(fcinfo) && TRIGGER_FIRED_FOR_ROW(td->tg_event))
	{
		authx_apikey_row_changed(td->tg_relation, td->tg_trigtuple);
		authx_apikey_row_changed(td->tg_relation, td->tg_newtuple);
	}
	tup = trigger_row(fcinfo, "authx._api_keys_cache()", &desc, &deleted);
	if (tup == NULL)
		return PointerGetDatum(NULL);

	memset(&op, 0, sizeof(op));
	op.type = AUTHX_CACHE_APIKEY;
	op.key_id = *DatumGetUUIDP(attr(tup, desc, "id", &isnull));
	op.user_id = *DatumGetUUIDP(attr(tup, desc, "user_id", &isnull));
	/* A deleted row's next version is the tombstone's. */
	op.version = DatumGetInt64(attr(tup, desc, "version", &isnull)) + (deleted ? 1 : 0);
	d = attr(tup, desc, "expires_at", &isnull);
	op.expires_at = isnull ? DT_NOEND : DatumGetTimestampTz(d);
	(void) attr(tup, desc, "revoked_at", &isnull);
	/* A key moving to another node (authx.bucket_leaving) is not revoked. */
	revoked = (deleted && !authx_bucket_leaving) || !isnull;
	live = !revoked && !deleted && !DatumGetBool(attr(tup, desc, "owner_disabled", &isnull));
	(void) attr(tup, desc, "remaining", &isnull);
	cacheable = isnull;
	(void) attr(tup, desc, "rate_limit", &isnull);
	cacheable = cacheable && isnull;
	cacheable = cacheable &&
		authx_scopes_join(attr(tup, desc, "scopes", &isnull), op.scopes, sizeof(op.scopes));

	/* Only the secret of a row just inserted is new to Redis. */
	op.born = TRIGGER_FIRED_BY_INSERT(td->tg_event);
	key_hash_op(&op, attr(tup, desc, "key_hash", &isnull), revoked, live, cacheable, DT_NOEND, now);
	op.born = false;
	prev = attr(tup, desc, "prev_hash", &prev_null);
	if (!prev_null)
	{
		d = attr(tup, desc, "prev_until", &isnull);
		prev_until = isnull ? now : DatumGetTimestampTz(d);
		key_hash_op(&op, prev, revoked, live, cacheable, prev_until, now);
	}
	/* A secret two rotations old is gone from the row: bury it. */
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		Datum		older = attr(td->tg_trigtuple, desc, "prev_hash", &isnull);

		if (!isnull && (prev_null || !datumIsEqual(older, prev, false, -1)))
			key_hash_op(&op, older, true, false, false, DT_NOEND, now);
	}
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------------
 * SQL: cache_sync, cache_status, and the writer's helpers
 * ----------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(authx_cache_sync);

/*
 * authx.cache_sync(timeout interval) RETURNS void
 *		Wait until every cache operation committed before the call has been
 *		applied to Redis (or discarded by a resync), and every resync asked
 *		for before it (a TRUNCATE, a queue overflow) has finished: those
 *		leave nothing in the queue to wait for, and until the resync Redis
 *		still holds what they removed.  Returns at once when the cache is
 *		off; raises 55000 after the timeout.
 */
Datum
authx_cache_sync(PG_FUNCTION_ARGS)
{
	int64		timeout_ms;
	uint64		target;
	uint64		resyncs;
	TimestampTz deadline;

	authx_require_shmem();
	timeout_ms = authx_interval_ms(PG_GETARG_INTERVAL_P(0));
	if (!authx_cache_enabled())
		PG_RETURN_VOID();

	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_SHARED);
	target = cache->head;
	resyncs = cache->resyncs_asked;
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	ConditionVariablePrepareToSleep(&cache->cv);
	for (;;)
	{
		uint64		tail;
		bool		resynced;
		long		remaining;

		LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_SHARED);
		tail = cache->done;
		resynced = cache->resyncs_done >= resyncs;
		LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
		if (tail >= target && resynced)
			break;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cache operations were not applied to Redis within the timeout"),
					 tail >= target
					 ? errdetail("A resync of the cache is still to be done.")
					 : errdetail("%llu operations are still queued.", (unsigned long long) (target - tail)),
					 errhint("See authx.cache_status() for the writer's last error.")));
		}
		(void) ConditionVariableTimedSleep(&cache->cv, Min(remaining, 1000), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_VOID();
}

/* The histogram bucket of a lag in µs: exact below AUTHX_LAG_SUB. */
static int
lag_bucket(uint32 us)
{
	int			e;

	if (us < AUTHX_LAG_SUB)
		return us;
	e = pg_leftmost_one_pos32(us);
	return (e - AUTHX_LAG_SUB_BITS + 1) * AUTHX_LAG_SUB +
		(int) ((us >> (e - AUTHX_LAG_SUB_BITS)) - AUTHX_LAG_SUB);
}

/* The largest lag in µs that falls into bucket b. */
static int64
lag_bucket_top(int b)
{
	int			e;

	if (b < AUTHX_LAG_SUB)
		return b;
	e = b / AUTHX_LAG_SUB + AUTHX_LAG_SUB_BITS - 1;
	return ((int64) (AUTHX_LAG_SUB + b % AUTHX_LAG_SUB + 1) << (e - AUTHX_LAG_SUB_BITS)) - 1;
}

/*
 * authx_cache_lag_percentiles
 *		p50 and p99 of the commit-to-applied lags of every operation applied
 *		in the last minute (50 to 60 s: whole slots), in microseconds, as the
 *		top of their histogram bucket (at most 1/16 above the true value);
 *		-1 when there are none.  One slow burst must not speak for a quiet
 *		server for ever.
 */
void
authx_cache_lag_percentiles(int64 *p50, int64 *p99)
{
	uint64		total[AUTHX_LAG_BUCKETS] = {0};
	int64		period = GetCurrentTimestamp() / AUTHX_LAG_SLOT_US;
	uint64		n = 0;
	uint64		seen = 0;
	uint64		r50;
	uint64		r99;
	int			i;
	int			b;

	*p50 = *p99 = -1;
	if (cache == NULL)
		return;
	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_SHARED);
	for (i = 0; i < AUTHX_LAG_SLOTS; i++)
		if (cache->lag[i].period > period - AUTHX_LAG_SLOTS)
			for (b = 0; b < AUTHX_LAG_BUCKETS; b++)
				total[b] += cache->lag[i].count[b];
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
	for (b = 0; b < AUTHX_LAG_BUCKETS; b++)
		n += total[b];
	if (n == 0)
		return;
	/* the ranks (1-based) of the same samples the sorted list gave */
	r50 = (n - 1) / 2 + 1;
	r99 = (n - 1) * 99 / 100 + 1;
	for (b = 0; b < AUTHX_LAG_BUCKETS; b++)
	{
		seen += total[b];
		if (*p50 < 0 && seen >= r50)
			*p50 = lag_bucket_top(b);
		if (seen >= r99)
		{
			*p99 = lag_bucket_top(b);
			break;
		}
	}
}

uint64
authx_cache_queue_depth(void)
{
	uint64		depth;

	if (cache == NULL)
		return 0;
	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_SHARED);
	depth = cache->head - cache->done;
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
	return depth;
}

/* Operations the queue holds when full (authx.cache_queue_size). */
uint64
authx_cache_queue_capacity(void)
{
	return cache == NULL ? 0 : (uint64) cache->size;
}

bool
authx_cache_connected(void)
{
	return cache != NULL && cache->connected;
}

PG_FUNCTION_INFO_V1(authx_cache_status);

/*
 * authx.cache_status() RETURNS jsonb
 *		The writer's state: enabled, connected, queue depth and capacity,
 *		lag p50/p99 (ms), Redis run_id, last error and when.  Never shows the
 *		URL (it may hold a password).
 */
Datum
authx_cache_status(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	int64		p50;
	int64		p99;
	char		last_error[256];
	char		run_id[48];
	TimestampTz last_error_at;
	pid_t		pid;
	bool		connected;

	authx_require_shmem();
	authx_cache_lag_percentiles(&p50, &p99);
	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_SHARED);
	strlcpy(last_error, cache->last_error, sizeof(last_error));
	strlcpy(run_id, cache->run_id, sizeof(run_id));
	last_error_at = cache->last_error_at;
	pid = cache->writer_pid;
	connected = cache->connected;
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"enabled\": %s, \"connected\": %s, \"writer_pid\": %d, "
					 "\"queue_depth\": " UINT64_FORMAT ", \"queue_capacity\": %zu, ",
					 authx_cache_enabled() ? "true" : "false", connected ? "true" : "false",
					 (int) pid, authx_cache_queue_depth(), cache->size);
	if (p50 >= 0)
		appendStringInfo(&buf, "\"lag_p50_ms\": %.3f, \"lag_p99_ms\": %.3f, ", p50 / 1000.0, p99 / 1000.0);
	else
		appendStringInfoString(&buf, "\"lag_p50_ms\": null, \"lag_p99_ms\": null, ");
	appendStringInfoString(&buf, "\"run_id\": ");
	escape_json(&buf, run_id);
	appendStringInfoString(&buf, ", \"last_error\": ");
	if (last_error[0])
		escape_json(&buf, last_error);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"last_error_at\": ");
	if (last_error_at)
		escape_json(&buf, timestamptz_to_str(last_error_at));
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* ----------------------------------------------------------------
 * The writer's side of the ring (called from worker_redis.c)
 * ----------------------------------------------------------------
 */

/*
 * authx_cache_writer_attach
 *		Publish (latch != NULL) or withdraw the writer.  Returns false if
 *		another writer is already published.
 */
bool
authx_cache_writer_attach(Latch *latch)
{
	bool		ok = true;

	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_EXCLUSIVE);
	if (latch)
	{
		if (cache->writer_pid != 0 && cache->writer_pid != MyProcPid &&
			kill(cache->writer_pid, 0) == 0)
			ok = false;
		else
		{
			cache->writer_pid = MyProcPid;
			cache->writer_latch = latch;
		}
	}
	else if (cache->writer_pid == MyProcPid)
	{
		cache->writer_pid = 0;
		cache->writer_latch = NULL;
		cache->connected = false;
	}
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
	return ok;
}

/*
 * authx_cache_own_lookups
 *		Count key lookups made by authx's own scripts (the writer's apply
 *		script, rate-limit buckets), which Redis counts in keyspace_hits and
 *		keyspace_misses like a gateway's.
 */
void
authx_cache_own_lookups(int64 hits, int64 misses)
{
	if (cache == NULL)
		return;
	if (hits > 0)
		pg_atomic_fetch_add_u64(&cache->own_hits, (uint64) hits);
	if (misses > 0)
		pg_atomic_fetch_add_u64(&cache->own_misses, (uint64) misses);
}

/*
 * authx_cache_own_pending
 *		A backend is about to send (+1) or has counted (-1, after
 *		authx_cache_own_lookups) a rate-limit script, whose one lookup Redis
 *		may count before the backend does: the writer holds back that many
 *		from each of hits and misses until they are counted.
 */
void
authx_cache_own_pending(int delta)
{
	if (cache == NULL)
		return;
	if (delta > 0)
		pg_atomic_fetch_add_u64(&cache->own_pending, 1);
	else
		pg_atomic_fetch_sub_u64(&cache->own_pending, 1);
}

/* Writer only: the counters as of the last baseline, and what was counted since. */
static struct
{
	bool		valid;
	char		run_id[48];
	int64		ks[2];			/* keyspace counters at the baseline */
	uint64		own[2];			/* own lookups at the baseline */
	int64		counted[2];		/* gateway lookups counted since */
	int64		last[2];		/* keyspace counters of the last sample */
} lookups;

/*
 * authx_cache_lookups_sample
 *		Writer: from Redis's keyspace_hits / keyspace_misses (INFO), the
 *		lookups that were not authx's own are gateway lookups: add them to
 *		cache_hits / cache_misses.  Counted as a running total since a
 *		baseline (Redis restart or CONFIG RESETSTAT starts a new one), never
 *		decreasing: what a sample holds back is counted by a later one.
 */
void
authx_cache_lookups_sample(const char *run_id, int64 ks_hits, int64 ks_misses)
{
	int64		ks[2] = {ks_hits, ks_misses};
	uint64		own[2];
	int64		pending;
	int			i;

	if (cache == NULL || ks_hits < 0 || ks_misses < 0)
		return;
	/*
	 * Pending before own: a script counted in between is subtracted twice
	 * (an undercount the next sample makes good), never not at all.
	 */
	pending = (int64) pg_atomic_read_u64(&cache->own_pending);
	pg_read_barrier();
	own[0] = pg_atomic_read_u64(&cache->own_hits);
	own[1] = pg_atomic_read_u64(&cache->own_misses);
	if (!lookups.valid || strcmp(run_id, lookups.run_id) != 0 ||
		ks_hits < lookups.last[0] || ks_misses < lookups.last[1])
	{
		lookups.valid = true;
		strlcpy(lookups.run_id, run_id, sizeof(lookups.run_id));
		for (i = 0; i < 2; i++)
		{
			lookups.ks[i] = ks[i];
			lookups.own[i] = own[i];
			lookups.counted[i] = 0;
			lookups.last[i] = ks[i];
		}
		return;
	}
	for (i = 0; i < 2; i++)
	{
		int64		gateway = (ks[i] - lookups.ks[i]) - (int64) (own[i] - lookups.own[i]) - pending;

		lookups.last[i] = ks[i];
		if (gateway > lookups.counted[i])
		{
			authx_stat_add(i == 0 ? AUTHX_STAT_CACHE_HITS : AUTHX_STAT_CACHE_MISSES,
						   (uint64) (gateway - lookups.counted[i]));
			lookups.counted[i] = gateway;
		}
	}
}

void
authx_cache_writer_state(bool connected, const char *run_id, const char *error)
{
	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_EXCLUSIVE);
	cache->connected = connected;
	if (run_id)
		strlcpy(cache->run_id, run_id, sizeof(cache->run_id));
	if (error)
	{
		strlcpy(cache->last_error, error, sizeof(cache->last_error));
		cache->last_error_at = GetCurrentTimestamp();
	}
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
}

/*
 * authx_cache_begin_resync
 *		Step one of a resync: forget everything queued (it may depend on
 *		dropped operations), clear the overflow flag, and remember when, so
 *		that live entries from transactions begun before now are discarded.
 *		Returns the ring position the resync covers; authx_cache_end_resync
 *		publishes it once every key is gone.
 */
uint64
authx_cache_begin_resync(void)
{
	uint64		discarded;
	uint64		pos;

	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_EXCLUSIVE);
	cache->overflow = false;
	cache->resyncs_covered = cache->resyncs_asked;
	discarded = cache->head - cache->tail;
	cache->tail = pos = cache->head;
	cache->epoch++;
	cache->resync_began = GetCurrentTimestamp();
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
	authx_stat_add(AUTHX_STAT_CACHE_DISCARDED, discarded);
	return pos;
}

/*
 * authx_cache_end_resync
 *		Every key is gone: operations up to pos count as done.
 */
void
authx_cache_end_resync(uint64 pos)
{
	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_EXCLUSIVE);
	cache->done = Max(cache->done, pos);
	cache->resyncs_done = cache->resyncs_covered;
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
	ConditionVariableBroadcast(&cache->cv);
}

bool
authx_cache_overflowed(void)
{
	bool		overflow;

	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_SHARED);
	overflow = cache->overflow;
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
	return overflow;
}

/*
 * authx_cache_peek
 *		Copy up to max queued operations, dropping (and counting) live
 *		entries queued by transactions older than the last resync.  *start
 *		is the tail they were read from and *taken how many ring slots the
 *		copies cover, both for authx_cache_advance.  Returns the number
 *		copied.
 */
int
authx_cache_peek(AuthxCacheOp *out, int max, uint64 *start, uint64 *taken)
{
	uint64		pos;
	uint64		head;
	int			n = 0;
	uint64		stale = 0;
	TimestampTz resync_began;

	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_SHARED);
	pos = *start = cache->tail;
	head = cache->head;
	resync_began = cache->resync_began;
	while (pos < head && n < max)
	{
		AuthxCacheOp *op = &cache->ops[pos % cache->size];

		/*
		 * A live entry from a transaction older than the last resync may
		 * rest on a state the resync threw away: a repopulation that read
		 * a row before a revocation now discarded, a creation whose row a
		 * revocation (discarded too) overtook in the queue.  Drop it: a
		 * miss is always safe.  Tombstones and bare versions go on.
		 */
		if (op->kind == AUTHX_CACHE_SET && op->xact_start < resync_began)
			stale++;
		else
			out[n++] = *op;
		pos++;
	}
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
	*taken = pos - *start;
	if (stale)
		authx_stat_add(AUTHX_STAT_CACHE_DISCARDED, stale);
	return n;
}

/*
 * authx_cache_advance
 *		The writer applied the operations it peeked: release their slots,
 *		record their lags, wake cache_sync waiters.  A resync in between has
 *		moved the tail past them already; then nothing moves.
 */
void
authx_cache_advance(uint64 taken, uint64 expected_tail, const AuthxCacheOp *ops, int n)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_EXCLUSIVE);
	if (cache->tail == expected_tail)
	{
		cache->tail += taken;
		cache->done = Max(cache->done, cache->tail);
	}
	if (n > 0)
	{
		int64		period = now / AUTHX_LAG_SLOT_US;
		LagSlot    *slot = &cache->lag[period % AUTHX_LAG_SLOTS];

		if (slot->period != period)
		{
			memset(slot->count, 0, sizeof(slot->count));
			slot->period = period;
		}
		for (i = 0; i < n; i++)
		{
			int64		lag = now - ops[i].committed_at;

			slot->count[lag_bucket((uint32) Min(Max(lag, 0), PG_UINT32_MAX))]++;
		}
	}
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
	ConditionVariableBroadcast(&cache->cv);
}

/*
 * authx_cache_writer_may_sleep
 *		The writer announces it is about to wait; returns false (and takes the
 *		announcement back) if operations arrived meanwhile.
 */
bool
authx_cache_writer_may_sleep(void)
{
	bool		empty;

	cache->writer_sleeping = true;
	pg_memory_barrier();
	LWLockAcquire(authx_lock(AUTHX_LOCK_CACHE), LW_SHARED);
	empty = cache->head == cache->tail && !cache->overflow;
	LWLockRelease(authx_lock(AUTHX_LOCK_CACHE));
	if (!empty)
		cache->writer_sleeping = false;
	return empty;
}

void
authx_cache_writer_awake(void)
{
	cache->writer_sleeping = false;
}

/*
 * authx_cache_shmem_startup
 *		Initialise the ring on fresh shared memory.
 */
void
authx_cache_shmem_startup(char *base, bool found)
{
	cache = (AuthxCacheShared *) base;
	if (!found)
		cache_reset();
}

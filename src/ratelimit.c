/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *		Exact rate limits in shared memory (GCRA), surviving ROLLBACK.
 *
 * Runs in backends.  One fixed-size table of authx.rate_limit_slots entries,
 * split into AUTHX_RATE_STRIPES stripes, each behind its own spinlock; an
 * entry lives within AUTHX_RATE_PROBE slots of its hash inside its stripe.
 * An entry is (namespace, 16-byte subject) → theoretical arrival time (TAT)
 * of the generic cell rate algorithm, the same state redis-cell keeps.
 *
 * Exactness: with max requests per period, each request of cost c moves the
 * TAT by c·period/max.  To keep that division exact, times are scaled by max
 * (the TAT is kept in µs·max, in 128-bit integers), so a limit of 3 per
 * second lets exactly 3 through, not 4 after rounding.  Checking and
 * spending happen under the stripe's spinlock, so concurrent callers can
 * never spend the same allowance twice, and the change is in shared memory
 * at once, whatever becomes of the caller's transaction.
 *
 * An entry whose TAT is in the past is a full bucket, the same as no entry,
 * so its slot is free for reuse.  When every slot of a window holds a live
 * bucket, the one closest to full is reused (counted as an eviction): its
 * subject gets a fresh allowance a little early.  Changing a subject's limit
 * (max or period) starts it afresh.  Nothing is persisted: a restart gives
 * every subject a full bucket.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "authx.h"
#include "redis.h"

#ifndef HAVE_INT128
#error "authx needs a compiler with 128-bit integers"
#endif

#define AUTHX_RATE_STRIPES	64
#define AUTHX_RATE_PROBE	16

typedef struct AuthxRateEntry
{
	uint64		hash;			/* 0 = never used */
	uint8		ns;
	uint8		subject[AUTHX_RATE_SUBJECT_LEN];
	int32		max;
	int64		per_us;
	int128		tat;			/* µs·max since the PostgreSQL epoch */
} AuthxRateEntry;

typedef struct AuthxRateShared
{
	slock_t		locks[AUTHX_RATE_STRIPES];
	int			per_stripe;
	AuthxRateEntry entries[FLEXIBLE_ARRAY_MEMBER];
} AuthxRateShared;

static AuthxRateShared *rate = NULL;

static int
slots_per_stripe(void)
{
	return Max(AUTHX_RATE_PROBE, authx_rate_limit_slots / AUTHX_RATE_STRIPES);
}

Size
authx_rate_shmem_size(void)
{
	return MAXALIGN(add_size(offsetof(AuthxRateShared, entries),
							 mul_size(sizeof(AuthxRateEntry),
									  mul_size(slots_per_stripe(), AUTHX_RATE_STRIPES))));
}

void
authx_rate_shmem_startup(char *base, bool found)
{
	int			i;

	rate = (AuthxRateShared *) base;
	if (found)
		return;
	memset(rate, 0, authx_rate_shmem_size());
	for (i = 0; i < AUTHX_RATE_STRIPES; i++)
		SpinLockInit(&rate->locks[i]);
	rate->per_stripe = slots_per_stripe();
}

/* Round a µs·max quantity up to whole µs. */
static int64
unscale_ceil(int128 v, int64 max)
{
	if (v <= 0)
		return 0;
	return (int64) ((v + max - 1) / max);
}

/*
 * rate_answer
 *		The GCRA decision for a bucket whose TAT is tat (not before now_s,
 *		both in µs·max): fills *out and returns the TAT after spending cost
 *		(meaningful when allowed).
 */
static int128
rate_answer(int128 tat, int128 now_s, int64 max, int64 per_us, int64 cost, AuthxRateResult *out)
{
	int128		horizon = (int128) per_us * max;
	int128		new_tat = tat + (int128) cost * per_us;

	out->limit = max;
	out->unlimited = false;
	if (cost > max || new_tat - horizon > now_s)
	{
		out->allowed = false;
		out->retry_after_us = cost > max ? -1 : unscale_ceil(new_tat - horizon - now_s, max);
		out->remaining = (int64) ((horizon - (tat - now_s)) / per_us);
		out->reset_after_us = unscale_ceil(tat - now_s, max);
	}
	else
	{
		out->allowed = true;
		out->retry_after_us = 0;
		out->remaining = (int64) ((horizon - (new_tat - now_s)) / per_us);
		out->reset_after_us = unscale_ceil(new_tat - now_s, max);
	}
	return new_tat;
}

/*
 * authx_rate_consume
 *		Spend cost from the bucket of (ns, subject) allowing max per per_us,
 *		or with peek only say whether it could be spent.  Fills *out.  A cost
 *		above max is never allowed (retry_after_us = -1).  Caller has checked
 *		that shared memory exists and 0 < max, 0 < per_us, 0 <= cost.
 */
void
authx_rate_consume(uint8 ns, const uint8 *subject, int64 max, int64 per_us, int64 cost,
				   bool peek, TimestampTz now, AuthxRateResult *out)
{
	uint64		hash;
	int			stripe;
	int			start;
	int			per = rate->per_stripe;
	AuthxRateEntry *base;
	AuthxRateEntry *e = NULL;
	AuthxRateEntry *victim = NULL;
	int128		victim_left = 0;
	int128		now_s = (int128) now * max;
	int128		tat;
	int128		new_tat;
	int			i;

	hash = hash_bytes_extended(subject, AUTHX_RATE_SUBJECT_LEN, ns);
	if (hash == 0)
		hash = 1;
	stripe = (int) (hash % AUTHX_RATE_STRIPES);
	start = (int) ((hash / AUTHX_RATE_STRIPES) % (uint64) per);
	base = &rate->entries[stripe * per];

	SpinLockAcquire(&rate->locks[stripe]);
	for (i = 0; i < AUTHX_RATE_PROBE; i++)
	{
		AuthxRateEntry *c = &base[(start + i) % per];
		int128		left;

		if (c->hash == hash && c->ns == ns &&
			memcmp(c->subject, subject, AUTHX_RATE_SUBJECT_LEN) == 0)
		{
			e = c;
			break;
		}
		/* How long until this bucket is full again, in µs·(its max). */
		left = c->hash == 0 ? -1 : c->tat - (int128) now * c->max;
		if (left <= 0)
			left = -1;
		else
			left = left / c->max;
		if (victim == NULL || left < victim_left)
		{
			victim = c;
			victim_left = left;
		}
	}
	if (e != NULL && (e->max != max || e->per_us != per_us))
		e->tat = 0;				/* a new limit starts afresh */
	tat = (e != NULL && e->tat > now_s) ? e->tat : now_s;
	new_tat = rate_answer(tat, now_s, max, per_us, cost, out);
	out->evicted = false;
	/* A new bucket that is full anyway (cost 0) is no bucket at all. */
	if (out->allowed && !peek && (e != NULL || new_tat > now_s))
	{
		if (e == NULL)
		{
			e = victim;
			out->evicted = victim_left > 0;
			e->hash = hash;
			e->ns = ns;
			memcpy(e->subject, subject, AUTHX_RATE_SUBJECT_LEN);
		}
		e->max = (int32) max;
		e->per_us = per_us;
		e->tat = new_tat;
	}
	SpinLockRelease(&rate->locks[stripe]);
	if (out->evicted)
		authx_stat_add(AUTHX_STAT_RATE_EVICTIONS, 1);
}

/* ----------------------------------------------------------------
 * Stores
 * ----------------------------------------------------------------
 */

/* After a Redis failure, backends answer without Redis for this long. */
#define AUTHX_REDIS_RETRY_US	(1000 * 1000)

/*
 * bucket_text
 *		What names a bucket: the subject and the limit together, so one
 *		subject under two limits is two buckets rather than one that
 *		restarts at every switch.
 */
static void
bucket_text(StringInfo key, const char *subject, int len, int32 max, int64 per_us)
{
	appendBinaryStringInfo(key, subject, len);
	appendStringInfoChar(key, '\0');
	appendStringInfo(key, "%d/" INT64_FORMAT, max, per_us);
}

static void
rate_local(const char *subject, int len, int32 max, int64 per_us, int32 cost, bool peek,
		   AuthxRateResult *out)
{
	StringInfoData key;
	uint8		digest[AUTHX_HASH_LEN];

	authx_require_shmem();
	/* Buckets are per database: shared memory serves the whole cluster. */
	initStringInfo(&key);
	appendBinaryStringInfo(&key, (const char *) &MyDatabaseId, sizeof(Oid));
	bucket_text(&key, subject, len, max, per_us);
	authx_sha256(key.data, key.len, digest);
	pfree(key.data);
	authx_rate_consume(AUTHX_RATE_NS_SUBJECT, digest, max, per_us, cost, peek,
					   GetCurrentTimestamp(), out);
}

/*
 * rate_redis
 *		The same decision made by a Lua script in Redis, on Redis's clock,
 *		so every server (and app) using that Redis shares the bucket.  The
 *		key has no database in it: that is the point.  Lua numbers are
 *		doubles, so the script keeps the TAT as whole µs plus a remainder in
 *		1/max µs and is handed the increment cost·per/max already split the
 *		same way; everything it adds and compares stays an exact integer
 *		below 2^53.  False when Redis could not answer (after which every
 *		backend leaves Redis alone for AUTHX_REDIS_RETRY_US).
 */
static bool
rate_redis(const char *subject, int len, int32 max, int64 per_us, int32 cost, bool peek,
		   AuthxRateResult *out)
{
	StringInfoData key;
	uint8		digest[AUTHX_HASH_LEN];
	char		name[200];
	char		err[256];
	int128		inc = (int128) cost * per_us;
	int64		state[3];
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (authx_rate_redis_url()[0] == '\0')
		return false;
	if (authx_shared != NULL &&
		(uint64) now < pg_atomic_read_u64(&authx_shared->rate_redis_down_until))
		return false;

	initStringInfo(&key);
	bucket_text(&key, subject, len, max, per_us);
	authx_sha256(key.data, key.len, digest);
	pfree(key.data);
	i = snprintf(name, sizeof(name), "%s", authx_rate_limit_prefix);
	for (int j = 0; j < AUTHX_HASH_LEN && i < (int) sizeof(name) - 2; j++)
		i += snprintf(name + i, sizeof(name) - i, "%02x", digest[j]);

	/*
	 * A cost above max is never allowed, but the answer still tells the
	 * bucket's state: ask without spending (and without an increment too
	 * large for the script's arithmetic).
	 */
	if (!authx_redis_gcra(name, per_us, cost > max ? 0 : (int64) (inc / max),
						  cost > max ? 0 : (int64) (inc % max), max, peek || cost > max,
						  state, err, sizeof(err)))
	{
		uint32		logged = 0;

		authx_stat_add(AUTHX_STAT_RATE_REDIS_ERRORS, 1);
		if (authx_shared == NULL)
			return false;
		pg_atomic_write_u64(&authx_shared->rate_redis_down_until, (uint64) (now + AUTHX_REDIS_RETRY_US));
		/* One LOG line per outage: the first failure after an answer. */
		if (pg_atomic_compare_exchange_u32(&authx_shared->rate_redis_outage, &logged, 1))
			ereport(LOG,
					(errmsg("authx: Redis rate-limit store unavailable: %s", err),
					 errhint("Policies with store redis answer by their fail_mode until it is back; "
							 "authx.stats counts each (rate_limit_fallbacks).")));
		return false;
	}
	if (authx_shared != NULL && pg_atomic_read_u32(&authx_shared->rate_redis_outage) != 0 &&
		pg_atomic_exchange_u32(&authx_shared->rate_redis_outage, 0) != 0)
		ereport(LOG, (errmsg("authx: Redis rate-limit store answers again")));
	/* state: TAT (µs), its remainder (1/max µs), Redis's now (µs). */
	{
		int128		now_s = (int128) state[2] * max;
		int128		tat = (int128) state[0] * max + state[1];

		rate_answer(tat > now_s ? tat : now_s, now_s, max, per_us, cost, out);
	}
	authx_stat_add(AUTHX_STAT_RATE_REDIS, 1);
	return true;
}

/*
 * authx_rate_apply
 *		One rate-limit decision for subject in the given store; a Redis
 *		store that cannot answer answers by fail_mode (counted).
 */
void
authx_rate_apply(const char *subject, int len, int32 max, int64 per_us, int32 cost, bool peek,
				 int store, int fail_mode, AuthxRateResult *out)
{
	memset(out, 0, sizeof(*out));
	if (store == AUTHX_STORE_REDIS)
	{
		if (rate_redis(subject, len, max, per_us, cost, peek, out))
			goto done;
		authx_stat_add(AUTHX_STAT_RATE_FALLBACKS, 1);
		if (fail_mode == AUTHX_FAIL_OPEN)
		{
			out->allowed = true;
			out->unlimited = true;
			goto done;
		}
		if (fail_mode == AUTHX_FAIL_CLOSED)
		{
			out->allowed = false;
			out->limit = max;
			out->remaining = 0;
			out->reset_after_us = AUTHX_REDIS_RETRY_US;
			out->retry_after_us = AUTHX_REDIS_RETRY_US;
			goto done;
		}
	}
	rate_local(subject, len, max, per_us, cost, peek, out);
done:
	authx_stat_add(out->allowed ? AUTHX_STAT_RATE_ALLOWED : AUTHX_STAT_RATE_DENIED, 1);
}

/* ----------------------------------------------------------------
 * SQL: rate_limit, rate_peek
 * ----------------------------------------------------------------
 */

/* per as µs: 1 ms to 366 days, as extract(epoch FROM per) counts them. */
int64
authx_rate_per_us(const Interval *iv)
{
	double		us = authx_interval_epoch_us(iv);

	if (us < 1000.0 || us > 366.0 * USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("per must be between 1 millisecond and 366 days"),
				 errhint("Pass a window such as '1 minute'.")));
	return (int64) us;
}

void
authx_rate_check_args(int32 max, int32 cost)
{
	if (max < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max must be at least 1"),
				 errhint("Pass how many requests the window allows.")));
	if (cost < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cost must not be negative"),
				 errhint("Pass how much of the allowance this request spends, usually 1.")));
}

static void
require_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name),
				 errhint("Pass a non-null %s.", name)));
}

static Datum
interval_datum(int64 us)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = us;
	return IntervalPGetDatum(iv);
}

/*
 * authx_rate_datum
 *		The authx.rate_limit_result row of an answer.
 */
Datum
authx_rate_datum(FunctionCallInfo fcinfo, const AuthxRateResult *rr)
{
	TupleDesc	desc = authx_result_desc(fcinfo);
	Datum		values[4];
	bool		nulls[4] = {false, true, true, true};

	values[0] = BoolGetDatum(rr->allowed);
	if (!rr->unlimited)
	{
		nulls[1] = nulls[2] = false;
		values[1] = Int32GetDatum((int32) Max(Min(rr->remaining, PG_INT32_MAX), 0));
		values[2] = interval_datum(rr->reset_after_us);
		if (!rr->allowed && rr->retry_after_us >= 0)
		{
			nulls[3] = false;
			values[3] = interval_datum(rr->retry_after_us);
		}
	}
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/*
 * rate_sql
 *		The body of rate_limit and rate_peek, in the store that
 *		authx.rate_limit_store names.
 */
static Datum
rate_sql(FunctionCallInfo fcinfo, bool peek)
{
	text	   *subject;
	int32		max;
	int64		per_us;
	int32		cost = 1;
	AuthxRateResult rr;

	require_arg(fcinfo, 0, "subject");
	require_arg(fcinfo, 1, "max");
	require_arg(fcinfo, 2, "per");
	subject = PG_GETARG_TEXT_PP(0);
	max = PG_GETARG_INT32(1);
	per_us = authx_rate_per_us(PG_GETARG_INTERVAL_P(2));
	if (!peek)
	{
		require_arg(fcinfo, 3, "cost");
		cost = PG_GETARG_INT32(3);
	}
	authx_rate_check_args(max, cost);
	if (authx_rate_limit_store == AUTHX_STORE_LOCAL)
		authx_require_shmem();
	authx_rate_apply(VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject), max, per_us, cost, peek,
					 authx_rate_limit_store, authx_rate_limit_fail, &rr);
	PG_RETURN_DATUM(authx_rate_datum(fcinfo, &rr));
}

PG_FUNCTION_INFO_V1(authx_rate_limit);

/*
 * authx.rate_limit(subject text, max integer, per interval, cost integer)
 *		RETURNS authx.rate_limit_result
 */
Datum
authx_rate_limit(PG_FUNCTION_ARGS)
{
	return rate_sql(fcinfo, false);
}

PG_FUNCTION_INFO_V1(authx_rate_peek);

/*
 * authx.rate_peek(subject text, max integer, per interval)
 *		RETURNS authx.rate_limit_result — what rate_limit would answer.
 */
Datum
authx_rate_peek(PG_FUNCTION_ARGS)
{
	return rate_sql(fcinfo, true);
}

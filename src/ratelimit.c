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
	int128		horizon = (int128) per_us * max;
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
	new_tat = tat + (int128) cost * per_us;

	out->limit = max;
	out->evicted = false;
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
		/* A new bucket that is full anyway (cost 0) is no bucket at all. */
		if (!peek && (e != NULL || new_tat > now_s))
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
	}
	SpinLockRelease(&rate->locks[stripe]);
	if (out->evicted)
		authx_stat_add(AUTHX_STAT_RATE_EVICTIONS, 1);
}

/* ----------------------------------------------------------------
 * SQL: rate_limit, rate_peek
 * ----------------------------------------------------------------
 */

static int64
per_us_checked(Interval *iv)
{
	double		us = authx_interval_epoch_us(iv);

	/* 1 ms to 366 days, as extract(epoch FROM per) counts them. */
	if (us < 1000.0 || us > 366.0 * USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("per must be between 1 millisecond and 366 days"),
				 errhint("Pass a window such as '1 minute'.")));
	return (int64) us;
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
 * rate_sql
 *		The body of rate_limit and rate_peek.  The bucket is keyed by the
 *		subject and the limit together, so one subject under two limits is
 *		two buckets rather than one that restarts at every switch.
 */
static Datum
rate_sql(FunctionCallInfo fcinfo, bool peek)
{
	TupleDesc	desc;
	text	   *subject;
	int32		max;
	int64		per_us;
	int32		cost = 1;
	uint8		digest[AUTHX_HASH_LEN];
	AuthxRateResult rr;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, true};
	StringInfoData key;

	require_arg(fcinfo, 0, "subject");
	require_arg(fcinfo, 1, "max");
	require_arg(fcinfo, 2, "per");
	subject = PG_GETARG_TEXT_PP(0);
	max = PG_GETARG_INT32(1);
	per_us = per_us_checked(PG_GETARG_INTERVAL_P(2));
	if (!peek)
	{
		require_arg(fcinfo, 3, "cost");
		cost = PG_GETARG_INT32(3);
	}
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
	authx_require_shmem();

	desc = authx_result_desc(fcinfo);

	/* Buckets are per database: shared memory serves the whole cluster. */
	initStringInfo(&key);
	appendBinaryStringInfo(&key, (const char *) &MyDatabaseId, sizeof(Oid));
	appendBinaryStringInfo(&key, VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject));
	appendStringInfoChar(&key, '\0');
	appendStringInfo(&key, "%d/" INT64_FORMAT, max, per_us);
	authx_sha256(key.data, key.len, digest);
	authx_rate_consume(AUTHX_RATE_NS_SUBJECT, digest, max, per_us, cost, peek, GetCurrentTimestamp(), &rr);
	authx_stat_add(rr.allowed ? AUTHX_STAT_RATE_ALLOWED : AUTHX_STAT_RATE_DENIED, 1);

	values[0] = BoolGetDatum(rr.allowed);
	values[1] = Int32GetDatum((int32) Max(Min(rr.remaining, PG_INT32_MAX), 0));
	values[2] = interval_datum(rr.reset_after_us);
	if (!rr.allowed && rr.retry_after_us >= 0)
	{
		nulls[3] = false;
		values[3] = interval_datum(rr.retry_after_us);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
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

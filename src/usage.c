/*-------------------------------------------------------------------------
 *
 * usage.c
 *		Usage analytics: authx.usage_record() per request, queued in shared
 *		memory and written in batches by the maintenance worker into
 *		authx.usage_log (raw rows) and the rollups authx.usage_hourly,
 *		usage_hourly_total, usage_daily and usage_hourly_ip, in the same
 *		transaction.
 *
 * The queue is a bounded multi-producer, single-consumer ring of fixed-size
 * slots, each with a sequence number (Vyukov's design): a producer claims a
 * position with one compare-and-swap on the head and publishes the slot by
 * advancing its sequence; the worker consumes slots whose sequence says they
 * are published.  No lock is taken on the request path.  A full ring drops
 * the record and counts it (usage_dropped): analytics must never slow or
 * fail a request.
 *
 * Latencies are also counted in a shared histogram (the same fixed
 * log-scale buckets as the rollups) for authx.metrics().
 *
 * Histogram buckets: bucket 0 holds latencies below 0.01 ms, bucket k
 * (1..AUTHX_HIST_BUCKETS-2) holds [0.01 * 2^((k-1)/4), 0.01 * 2^(k/4)) ms,
 * the last one everything from 0.01 * 2^((N-2)/4) ms (about 118 s) up.  Four
 * buckets per octave: a quantile read as the geometric middle of its bucket
 * is within 2^(1/8) - 1 = 9.05% of the true value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "authx.h"

#define USAGE_ENDPOINT_MAX	128
#define USAGE_BATCH			10000
#define USAGE_GATHER_MS		50

#define USAGE_HAS_KEY		0x01
#define USAGE_HAS_USER		0x02
#define USAGE_HAS_IP		0x04

typedef struct UsageRec
{
	TimestampTz at;
	float4		latency_ms;
	int16		status;
	uint8		flags;
	uint8		endpoint_len;
	pg_uuid_t	key;
	pg_uuid_t	user;
	uint8		ip_family;
	uint8		ip_bits;
	uint8		ip_addr[16];
	char		endpoint[USAGE_ENDPOINT_MAX];
} UsageRec;

typedef struct UsageSlot
{
	pg_atomic_uint64 seq;
	UsageRec	rec;
} UsageSlot;

typedef struct UsageShared
{
	pg_atomic_uint64 head;		/* next position to claim */
	pg_atomic_uint64 tail;		/* next position the worker reads */
	uint64		nslots;
	pg_atomic_uint64 hist[AUTHX_HIST_BUCKETS];	/* latencies since start */
	pg_atomic_uint64 latency_sum_us;
	UsageSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} UsageShared;

static UsageShared *usage = NULL;

static const char *usage_sql =
"WITH b AS ("
"  SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.timestamptz[]), pg_catalog.unnest($2::pg_catalog.text[]),"
"                           pg_catalog.unnest($3::pg_catalog.int2[]), pg_catalog.unnest($4::pg_catalog.float4[]),"
"                           pg_catalog.unnest($5::pg_catalog.uuid[]), pg_catalog.unnest($6::pg_catalog.uuid[]),"
"                           pg_catalog.unnest($7::pg_catalog.inet[]))"
"         AS b(at, endpoint, status, latency_ms, api_key_id, user_id, ip)),"
" raw AS ("
"  INSERT INTO authx.usage_log (at, endpoint, status, latency_ms, api_key_id, user_id, ip)"
"  SELECT at, endpoint, status, latency_ms, api_key_id, user_id, ip FROM b),"
" ips AS ("
"  INSERT INTO authx.usage_hourly_ip AS h (hour, ip, requests, errors)"
"  SELECT pg_catalog.date_trunc('hour', b.at, 'UTC'), b.ip, pg_catalog.count(*),"
"         pg_catalog.count(*) FILTER (WHERE b.status OPERATOR(pg_catalog.>=) 400)"
"    FROM b WHERE b.ip IS NOT NULL GROUP BY 1, 2"
"  ON CONFLICT (hour, ip) DO UPDATE"
"     SET requests = h.requests OPERATOR(pg_catalog.+) excluded.requests,"
"         errors = h.errors OPERATOR(pg_catalog.+) excluded.errors),"
" g AS MATERIALIZED ("
"  SELECT pg_catalog.date_trunc('hour', b.at, 'UTC') AS hour, b.endpoint,"
"         (b.status OPERATOR(pg_catalog./) 100)::pg_catalog.int2 AS cls,"
"         COALESCE(b.api_key_id, '00000000-0000-0000-0000-000000000000') AS key, pg_catalog.count(*) AS n,"
"         pg_catalog.sum(b.latency_ms::pg_catalog.float8) AS lat,"
"         authx._latency_hist(pg_catalog.array_agg(b.latency_ms)) AS hist"
"    FROM b GROUP BY 1, 2, 3, 4),"
" tot AS ("
"  INSERT INTO authx.usage_hourly_total AS h (hour, requests, errors_4xx, errors_5xx, latency_sum_ms, latency_hist)"
"  SELECT g.hour, pg_catalog.sum(g.n),"
"         COALESCE(pg_catalog.sum(g.n) FILTER (WHERE g.cls OPERATOR(pg_catalog.=) 4), 0),"
"         COALESCE(pg_catalog.sum(g.n) FILTER (WHERE g.cls OPERATOR(pg_catalog.=) 5), 0),"
"         pg_catalog.sum(g.lat), authx._hist_sum(g.hist)"
"    FROM g GROUP BY 1"
"  ON CONFLICT (hour) DO UPDATE"
"     SET requests = h.requests OPERATOR(pg_catalog.+) excluded.requests,"
"         errors_4xx = h.errors_4xx OPERATOR(pg_catalog.+) excluded.errors_4xx,"
"         errors_5xx = h.errors_5xx OPERATOR(pg_catalog.+) excluded.errors_5xx,"
"         latency_sum_ms = h.latency_sum_ms OPERATOR(pg_catalog.+) excluded.latency_sum_ms,"
"         latency_hist = authx._hist_add(h.latency_hist, excluded.latency_hist)),"
" daily AS ("
"  INSERT INTO authx.usage_daily AS h (day, endpoint, status_class, api_key_id, requests, latency_sum_ms, latency_hist)"
"  SELECT (g.hour AT TIME ZONE 'UTC')::pg_catalog.date, g.endpoint, g.cls, g.key, pg_catalog.sum(g.n),"
"         pg_catalog.sum(g.lat), authx._hist_sum(g.hist)"
"    FROM g GROUP BY 1, 2, 3, 4"
"  ON CONFLICT (day, endpoint, status_class, api_key_id) DO UPDATE"
"     SET requests = h.requests OPERATOR(pg_catalog.+) excluded.requests,"
"         latency_sum_ms = h.latency_sum_ms OPERATOR(pg_catalog.+) excluded.latency_sum_ms,"
"         latency_hist = authx._hist_add(h.latency_hist, excluded.latency_hist))"
"INSERT INTO authx.usage_hourly AS h (hour, endpoint, status_class, api_key_id, requests, latency_sum_ms, latency_hist)"
"SELECT g.hour, g.endpoint, g.cls, g.key, g.n, g.lat, g.hist FROM g"
" ON CONFLICT (hour, endpoint, status_class, api_key_id) DO UPDATE"
"    SET requests = h.requests OPERATOR(pg_catalog.+) excluded.requests,"
"        latency_sum_ms = h.latency_sum_ms OPERATOR(pg_catalog.+) excluded.latency_sum_ms,"
"        latency_hist = authx._hist_add(h.latency_hist, excluded.latency_hist)";

static SPIPlanPtr usage_plan = NULL;
static Oid	usage_argtypes[7] = {TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT2ARRAYOID, FLOAT4ARRAYOID,
								 UUIDARRAYOID, UUIDARRAYOID, INETARRAYOID};

Size
authx_usage_shmem_size(void)
{
	return MAXALIGN(add_size(offsetof(UsageShared, slots),
							 mul_size(sizeof(UsageSlot), (Size) authx_usage_queue_size)));
}

void
authx_usage_shmem_startup(char *base, bool found)
{
	uint64		i;

	usage = (UsageShared *) base;
	if (found)
		return;
	pg_atomic_init_u64(&usage->head, 0);
	pg_atomic_init_u64(&usage->tail, 0);
	usage->nslots = authx_usage_queue_size;
	for (i = 0; i < AUTHX_HIST_BUCKETS; i++)
		pg_atomic_init_u64(&usage->hist[i], 0);
	pg_atomic_init_u64(&usage->latency_sum_us, 0);
	for (i = 0; i < usage->nslots; i++)
		pg_atomic_init_u64(&usage->slots[i].seq, i);
}

/*
 * The bucket of a latency in ms (see the header comment).  Latencies arrive
 * as float4: the edges are compared at that precision too, so that 0.01,
 * 0.02, ... (a little below their decimal value once widened) fall in the
 * bucket they start, as documented.
 */
int
authx_hist_bucket(double ms)
{
	float4		f = (float4) ms;
	int			k;

	if (!(f >= (float4) 0.01))	/* NaN too */
		return 0;
	if (ms > 1e12)				/* Infinity too: past the last edge */
		return AUTHX_HIST_BUCKETS - 1;
	k = (int) floor(log2(ms / 0.01) * 4.0) + 1;
	if (k < 1)
		k = 1;
	if (k > AUTHX_HIST_BUCKETS - 1)
		k = AUTHX_HIST_BUCKETS - 1;
	while (k < AUTHX_HIST_BUCKETS - 1 && f >= (float4) authx_hist_upper(k))
		k++;
	while (k > 1 && f < (float4) authx_hist_upper(k - 1))
		k--;
	return k;
}

/* The upper bound of bucket k in ms; +Inf for the last. */
double
authx_hist_upper(int k)
{
	if (k >= AUTHX_HIST_BUCKETS - 1)
		return INFINITY;
	return 0.01 * pow(2.0, k / 4.0);
}

/* Counts per bucket, as a histogram array is read from outside. */
void
authx_usage_hist(uint64 *counts, uint64 *sum_us)
{
	int			i;

	for (i = 0; i < AUTHX_HIST_BUCKETS; i++)
		counts[i] = usage ? pg_atomic_read_u64(&usage->hist[i]) : 0;
	*sum_us = usage ? pg_atomic_read_u64(&usage->latency_sum_us) : 0;
}

uint64
authx_usage_queue_depth(void)
{
	if (usage == NULL)
		return 0;
	return pg_atomic_read_u64(&usage->head) - pg_atomic_read_u64(&usage->tail);
}

uint64
authx_usage_queue_capacity(void)
{
	return usage ? usage->nslots : 0;
}

PG_FUNCTION_INFO_V1(authx_usage_record);

/*
 * authx.usage_record(endpoint text, status integer, latency_ms real,
 *                    api_key_id uuid, user_id uuid, ip inet) RETURNS void
 */
Datum
authx_usage_record(PG_FUNCTION_ARGS)
{
	text	   *endpoint;
	int32		status;
	float4		latency;
	int			elen;
	uint64		pos;
	UsageSlot  *slot;
	UsageRec   *rec;

	authx_require_shmem();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("endpoint, status and latency_ms must not be null"),
				 errhint("Record each request with its route, HTTP status and time taken.")));
	endpoint = PG_GETARG_TEXT_PP(0);
	status = PG_GETARG_INT32(1);
	latency = PG_GETARG_FLOAT4(2);
	elen = VARSIZE_ANY_EXHDR(endpoint);
	if (elen < 1 || elen > USAGE_ENDPOINT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint must have 1 to %d bytes", USAGE_ENDPOINT_MAX),
				 errhint("Pass the route template (\"GET /orders/:id\"), not the full URL.")));
	if (status < 100 || status > 599)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("status must be an HTTP status between 100 and 599"),
				 errhint("Pass the status code sent to the client.")));
	if (!(latency >= 0) || latency > 1e9)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("latency_ms must be between 0 and 1e9 milliseconds"),
				 errhint("Pass the time the request took, in ms.")));

	if (latency == 0)
		latency = 0;			/* -0 stored as 0 */
	authx_stat_add(AUTHX_STAT_USAGE_RECORDED, 1);
	if (status >= 500)
		authx_stat_add(AUTHX_STAT_USAGE_STATUS_5XX, 1);
	else if (status >= 400)
		authx_stat_add(AUTHX_STAT_USAGE_STATUS_4XX, 1);
	pg_atomic_fetch_add_u64(&usage->hist[authx_hist_bucket(latency)], 1);
	pg_atomic_fetch_add_u64(&usage->latency_sum_us, (uint64) llround((double) latency * 1000.0));

	/* Claim a slot: its sequence equals the position when it is free. */
	pos = pg_atomic_read_u64(&usage->head);
	for (;;)
	{
		uint64		seq;

		slot = &usage->slots[pos % usage->nslots];
		seq = pg_atomic_read_u64(&slot->seq);
		pg_read_barrier();
		if (seq == pos)
		{
			if (pg_atomic_compare_exchange_u64(&usage->head, &pos, pos + 1))
				break;
			/* pos now holds the current head: try again there. */
		}
		else if (seq < pos)
		{
			/* The worker has not freed this slot yet: the ring is full. */
			authx_stat_add(AUTHX_STAT_USAGE_DROPPED, 1);
			PG_RETURN_VOID();
		}
		else
			pos = pg_atomic_read_u64(&usage->head);
	}

	rec = &slot->rec;
	rec->at = GetCurrentTimestamp();
	rec->latency_ms = latency;
	rec->status = (int16) status;
	rec->flags = 0;
	rec->endpoint_len = (uint8) elen;
	memcpy(rec->endpoint, VARDATA_ANY(endpoint), elen);
	if (!PG_ARGISNULL(3))
	{
		rec->key = *PG_GETARG_UUID_P(3);
		rec->flags |= USAGE_HAS_KEY;
	}
	if (!PG_ARGISNULL(4))
	{
		rec->user = *PG_GETARG_UUID_P(4);
		rec->flags |= USAGE_HAS_USER;
	}
	if (!PG_ARGISNULL(5))
	{
		inet	   *ip = PG_GETARG_INET_PP(5);

		rec->ip_family = ip_family(ip);
		rec->ip_bits = ip_bits(ip);
		memcpy(rec->ip_addr, ip_addr(ip), ip_addrsize(ip));
		rec->flags |= USAGE_HAS_IP;
	}
	pg_write_barrier();
	pg_atomic_write_u64(&slot->seq, pos + 1);

	/*
	 * Wake the worker when the ring was empty (so a quiet server's records
	 * are written within a turn) and each time it fills by another 1/16.
	 */
	if (pos == pg_atomic_read_u64(&usage->tail) || pos % Max(usage->nslots / 16, 1) == 0)
		authx_wake_maintenance();
	PG_RETURN_VOID();
}

/*
 * authx_usage_due_ms
 *		Worker side: how long the queued records may still wait, in ms: -1
 *		when none is queued, 0 when a batch is due (a sixteenth of the ring
 *		is queued, or the oldest record has waited USAGE_GATHER_MS).  A busy
 *		server's records are written in batches of at least 50 ms worth, not
 *		one transaction per wake-up.
 */
long
authx_usage_due_ms(void)
{
	uint64		tail;
	UsageSlot  *slot;
	TimestampTz oldest;
	long		age;

	if (usage == NULL)
		return -1;
	tail = pg_atomic_read_u64(&usage->tail);
	slot = &usage->slots[tail % usage->nslots];
	if (pg_atomic_read_u64(&slot->seq) != tail + 1)
		return -1;
	if (pg_atomic_read_u64(&usage->head) - tail >= Max(usage->nslots / 16, 1))
		return 0;
	pg_read_barrier();
	oldest = slot->rec.at;
	age = TimestampDifferenceMilliseconds(oldest, GetCurrentTimestamp());
	return age >= USAGE_GATHER_MS ? 0 : USAGE_GATHER_MS - age;
}

/*
 * authx_usage_drain
 *		Worker side: write up to USAGE_BATCH queued records, raw rows and
 *		rollups, in one transaction.  Returns how many (0: empty).  The slots
 *		are copied out first and freed at once: a failed batch is lost
 *		(counted in usage_dropped), never retried forever.
 */
int
authx_usage_drain(void)
{
	uint64		tail;
	int			n = 0;
	int			i;
	UsageRec   *recs;
	Datum	   *at, *ep, *st, *lat, *key, *usr, *ip;
	bool	   *key_null, *usr_null, *ip_null;
	Datum		values[7];
	int			dims[1];
	int			lbs[1] = {1};
	int			rc;
	MemoryContext cxt;
	MemoryContext oldcxt;

	if (usage == NULL)
		return 0;
	tail = pg_atomic_read_u64(&usage->tail);
	if (pg_atomic_read_u64(&usage->slots[tail % usage->nslots].seq) != tail + 1)
		return 0;

	/*
	 * The batch gets a context of its own, deleted below: after a commit
	 * the current context is TopMemoryContext, which would keep it forever.
	 */
	cxt = AllocSetContextCreate(TopMemoryContext, "authx usage batch", ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	recs = palloc(sizeof(UsageRec) * USAGE_BATCH);
	while (n < USAGE_BATCH)
	{
		UsageSlot  *slot = &usage->slots[(tail + n) % usage->nslots];

		if (pg_atomic_read_u64(&slot->seq) != tail + n + 1)
			break;
		pg_read_barrier();
		memcpy(&recs[n], &slot->rec, sizeof(UsageRec));
		pg_write_barrier();
		pg_atomic_write_u64(&slot->seq, tail + n + usage->nslots);
		n++;
	}
	if (n == 0)
	{
		MemoryContextSwitchTo(oldcxt);
		MemoryContextDelete(cxt);
		return 0;
	}
	pg_atomic_write_u64(&usage->tail, tail + n);

	at = palloc(sizeof(Datum) * n);
	ep = palloc(sizeof(Datum) * n);
	st = palloc(sizeof(Datum) * n);
	lat = palloc(sizeof(Datum) * n);
	key = palloc(sizeof(Datum) * n);
	usr = palloc(sizeof(Datum) * n);
	ip = palloc(sizeof(Datum) * n);
	key_null = palloc(sizeof(bool) * n);
	usr_null = palloc(sizeof(bool) * n);
	ip_null = palloc(sizeof(bool) * n);
	for (i = 0; i < n; i++)
	{
		UsageRec   *r = &recs[i];

		at[i] = TimestampTzGetDatum(r->at);
		ep[i] = PointerGetDatum(cstring_to_text_with_len(r->endpoint, r->endpoint_len));
		st[i] = Int16GetDatum(r->status);
		lat[i] = Float4GetDatum(r->latency_ms);
		key_null[i] = !(r->flags & USAGE_HAS_KEY);
		key[i] = key_null[i] ? (Datum) 0 : UUIDPGetDatum(&r->key);
		usr_null[i] = !(r->flags & USAGE_HAS_USER);
		usr[i] = usr_null[i] ? (Datum) 0 : UUIDPGetDatum(&r->user);
		ip_null[i] = !(r->flags & USAGE_HAS_IP);
		ip[i] = ip_null[i] ? (Datum) 0 : authx_inet_datum(r->ip_family, r->ip_bits, r->ip_addr);
	}
	dims[0] = n;
	values[0] = PointerGetDatum(construct_md_array(at, NULL, 1, dims, lbs, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, 'd'));
	values[1] = PointerGetDatum(construct_md_array(ep, NULL, 1, dims, lbs, TEXTOID, -1, false, 'i'));
	values[2] = PointerGetDatum(construct_md_array(st, NULL, 1, dims, lbs, INT2OID, 2, true, 's'));
	values[3] = PointerGetDatum(construct_md_array(lat, NULL, 1, dims, lbs, FLOAT4OID, 4, true, 'i'));
	values[4] = PointerGetDatum(construct_md_array(key, key_null, 1, dims, lbs, UUIDOID, 16, false, 'c'));
	values[5] = PointerGetDatum(construct_md_array(usr, usr_null, 1, dims, lbs, UUIDOID, 16, false, 'c'));
	values[6] = PointerGetDatum(construct_md_array(ip, ip_null, 1, dims, lbs, INETOID, -1, false, 'i'));

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "authx: writing usage records");
		/* Planned once per worker: a batch is every 50 ms under load. */
		if (usage_plan == NULL)
			usage_plan = authx_keep_plan(usage_sql, 7, usage_argtypes);
		rc = SPI_execute_plan(usage_plan, values, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "authx: writing usage records failed: %s", SPI_result_code_string(rc));
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_CATCH();
	{
		authx_stat_add(AUTHX_STAT_USAGE_DROPPED, n);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
	authx_stat_add(AUTHX_STAT_USAGE_WRITTEN, n);
	return n;
}

/* ----------------------------------------------------------------
 * Histogram arrays (int8[AUTHX_HIST_BUCKETS]) for the rollups
 * ----------------------------------------------------------------
 */
static ArrayType *
hist_array(const int64 *counts)
{
	Datum		d[AUTHX_HIST_BUCKETS];
	int			i;

	for (i = 0; i < AUTHX_HIST_BUCKETS; i++)
		d[i] = Int64GetDatum(counts[i]);
	return construct_array(d, AUTHX_HIST_BUCKETS, INT8OID, 8, FLOAT8PASSBYVAL, 'd');
}

/* Read a histogram array into counts; false unless it is one. */
static bool
hist_read(ArrayType *a, int64 *counts)
{
	Datum	   *d;
	bool	   *nulls;
	int			n;
	int			i;

	if (ARR_ELEMTYPE(a) != INT8OID || ARR_NDIM(a) != 1)
		return false;
	deconstruct_array(a, INT8OID, 8, FLOAT8PASSBYVAL, 'd', &d, &nulls, &n);
	if (n != AUTHX_HIST_BUCKETS)
		return false;
	for (i = 0; i < n; i++)
		counts[i] = nulls[i] ? 0 : DatumGetInt64(d[i]);
	return true;
}

static void
hist_require(ArrayType *a, int64 *counts)
{
	if (!hist_read(a, counts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a latency histogram is a one-dimensional bigint array of %d buckets", AUTHX_HIST_BUCKETS),
				 errhint("Pass latency_hist from authx.usage_hourly.")));
}

PG_FUNCTION_INFO_V1(authx_latency_hist);

/* authx._latency_hist(real[]) RETURNS bigint[]: counts per bucket. */
Datum
authx_latency_hist(PG_FUNCTION_ARGS)
{
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(0);
	int64		counts[AUTHX_HIST_BUCKETS] = {0};
	Datum	   *d;
	bool	   *nulls;
	int			n;
	int			i;

	deconstruct_array(a, FLOAT4OID, 4, true, 'i', &d, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i])
			counts[authx_hist_bucket(DatumGetFloat4(d[i]))]++;
	PG_RETURN_ARRAYTYPE_P(hist_array(counts));
}

PG_FUNCTION_INFO_V1(authx_hist_add);

/* authx._hist_add(bigint[], bigint[]) RETURNS bigint[]: bucket by bucket; NULL is empty. */
Datum
authx_hist_add(PG_FUNCTION_ARGS)
{
	int64		a[AUTHX_HIST_BUCKETS] = {0};
	int64		b[AUTHX_HIST_BUCKETS] = {0};
	int			i;

	if (!PG_ARGISNULL(0))
		hist_require(PG_GETARG_ARRAYTYPE_P(0), a);
	if (!PG_ARGISNULL(1))
		hist_require(PG_GETARG_ARRAYTYPE_P(1), b);
	for (i = 0; i < AUTHX_HIST_BUCKETS; i++)
		a[i] += b[i];
	PG_RETURN_ARRAYTYPE_P(hist_array(a));
}

PG_FUNCTION_INFO_V1(authx_hist_quantile);

/*
 * authx._hist_quantile(bigint[], q float8) RETURNS float8
 *		The q-quantile in ms, as the geometric middle of its bucket (the
 *		first bucket: 0.005 ms; the last: its lower bound); NULL when empty.
 */
Datum
authx_hist_quantile(PG_FUNCTION_ARGS)
{
	int64		c[AUTHX_HIST_BUCKETS];
	double		q = PG_GETARG_FLOAT8(1);
	int64		total = 0;
	int64		rank;
	int64		seen = 0;
	int			k;

	hist_require(PG_GETARG_ARRAYTYPE_P(0), c);
	if (!(q >= 0 && q <= 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a quantile is between 0 and 1"),
				 errhint("Pass 0.99 for p99.")));
	for (k = 0; k < AUTHX_HIST_BUCKETS; k++)
		total += c[k];
	if (total == 0)
		PG_RETURN_NULL();
	rank = (int64) ceil(q * total);
	if (rank < 1)
		rank = 1;
	for (k = 0; k < AUTHX_HIST_BUCKETS; k++)
	{
		seen += c[k];
		if (seen >= rank)
			break;
	}
	if (k == 0)
		PG_RETURN_FLOAT8(0.005);
	if (k >= AUTHX_HIST_BUCKETS - 1)
		PG_RETURN_FLOAT8(authx_hist_upper(AUTHX_HIST_BUCKETS - 2));
	PG_RETURN_FLOAT8(sqrt(authx_hist_upper(k - 1) * authx_hist_upper(k)));
}

/*
 * The aggregate authx._hist_sum(bigint[]): a running int64[buckets] in the
 * aggregate's memory, each histogram added straight from the array's data
 * (no deconstruction), so summing a month of rollups stays cheap.
 */
PG_FUNCTION_INFO_V1(authx_hist_accum);

Datum
authx_hist_accum(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	int64	   *state;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "authx._hist_accum called outside an aggregate");
	state = PG_ARGISNULL(0) ? NULL : (int64 *) PG_GETARG_POINTER(0);
	if (state == NULL)
		state = MemoryContextAllocZero(aggcxt, sizeof(int64) * AUTHX_HIST_BUCKETS);
	if (!PG_ARGISNULL(1))
	{
		ArrayType  *a = PG_GETARG_ARRAYTYPE_P(1);
		const int64 *d;
		int			i;

		if (ARR_ELEMTYPE(a) != INT8OID || ARR_NDIM(a) != 1 || ARR_DIMS(a)[0] != AUTHX_HIST_BUCKETS ||
			ARR_HASNULL(a))
		{
			int64		tmp[AUTHX_HIST_BUCKETS];

			hist_require(a, tmp);	/* raises unless it is a histogram with NULLs */
			for (i = 0; i < AUTHX_HIST_BUCKETS; i++)
				state[i] += tmp[i];
		}
		else
		{
			d = (const int64 *) ((const char *) a + ARR_OVERHEAD_NONULLS(1));
			for (i = 0; i < AUTHX_HIST_BUCKETS; i++)
				state[i] += d[i];
		}
	}
	PG_RETURN_POINTER(state);
}

PG_FUNCTION_INFO_V1(authx_hist_final);

Datum
authx_hist_final(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(hist_array((const int64 *) PG_GETARG_POINTER(0)));
}

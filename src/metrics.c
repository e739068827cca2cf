/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		authx.stats and authx.metrics(): counters and gauges from shared
 *		memory, as rows or in the Prometheus text format.
 *
 * Runs in backends; reads atomics without locks and the queue and worker
 * fields under their LWLocks (shared).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "authx.h"

typedef void (*EmitFn) (void *ctx, const char *name, int64 value, bool is_counter);

static void
emit_row(void *ctx, const char *name, int64 value, bool is_counter)
{
	ReturnSetInfo *rsinfo = ctx;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(value);
	values[2] = CStringGetTextDatum(is_counter ? "counter" : "gauge");
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * collect
 *		Every counter (monotonic since server start) and gauge, to emit.
 */
static void
collect(EmitFn emit, void *ctx)
{
	int			i;
	uint64		head,
				tail,
				enq;
	pid_t		pid;
	TimestampTz last_run;
	int64		p50;
	int64		p99;

	for (i = 0; i < AUTHX_NUM_STATS; i++)
		emit(ctx, authx_stat_names[i], (int64) pg_atomic_read_u64(&authx_shared->stats[i]), true);

	LWLockAcquire(authx_lock(AUTHX_LOCK_AUDIT_QUEUE), LW_SHARED);
	head = authx_shared->audit_head;
	tail = authx_shared->audit_tail;
	enq = authx_shared->audit_enq_seq;
	LWLockRelease(authx_lock(AUTHX_LOCK_AUDIT_QUEUE));
	emit(ctx, "audit_queue_events", (int64) (enq - pg_atomic_read_u64(&authx_shared->audit_done_seq)), false);
	emit(ctx, "audit_queue_bytes", (int64) (head - tail), false);
	emit(ctx, "audit_queue_capacity_bytes", (int64) authx_shared->audit_size, false);
	emit(ctx, "password_inflight", (int64) pg_atomic_read_u32(&authx_shared->password_inflight), false);

	LWLockAcquire(authx_lock(AUTHX_LOCK_WORKER), LW_SHARED);
	pid = authx_shared->maint_pid;
	last_run = authx_shared->maint_last_run;
	LWLockRelease(authx_lock(AUTHX_LOCK_WORKER));
	emit(ctx, "maintenance_worker_pid", (int64) pid, false);
	authx_cache_lag_percentiles(&p50, &p99);
	emit(ctx, "cache_queue_depth", (int64) authx_cache_queue_depth(), false);
	emit(ctx, "cache_queue_capacity", (int64) authx_cache_queue_capacity(), false);
	emit(ctx, "cache_connected", authx_cache_connected() ? 1 : 0, false);
	emit(ctx, "cache_lag_p50_us", p50, false);
	emit(ctx, "cache_lag_p99_us", p99, false);
	emit(ctx, "maintenance_last_run_age_ms",
		 last_run == 0 ? -1 : TimestampDifferenceMilliseconds(last_run, GetCurrentTimestamp()), false);
	emit(ctx, "usage_queue_depth", (int64) authx_usage_queue_depth(), false);
	emit(ctx, "usage_queue_capacity", (int64) authx_usage_queue_capacity(), false);
}

PG_FUNCTION_INFO_V1(authx_stats);

/*
 * authx._stats() RETURNS TABLE(name text, value bigint, kind text)
 *		Every counter (monotonic since server start) and gauge.  Raises 55000
 *		without shared_preload_libraries.
 */
Datum
authx_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	authx_require_shmem();
	InitMaterializedSRF(fcinfo, 0);
	collect(emit_row, rsinfo);
	return (Datum) 0;
}

/*
 * One metric in Prometheus text format: authx_<name>[_total].  Names that
 * end in a unit (_us, _ms) are given in seconds, the base unit, as
 * authx_<stem>_seconds; a negative value there ("none yet") is NaN.
 */
static void
emit_prom(void *ctx, const char *name, int64 value, bool is_counter)
{
	StringInfo	buf = ctx;
	const char *suffix = is_counter ? "_total" : "";
	const char *kind = is_counter ? "counter" : "gauge";
	int			len = strlen(name);
	double		scale = 0;

	if (len > 3 && strcmp(name + len - 3, "_us") == 0)
		scale = 1e6;
	else if (len > 3 && strcmp(name + len - 3, "_ms") == 0)
		scale = 1e3;
	if (scale == 0)
	{
		appendStringInfo(buf, "# HELP authx_%s%s authx %s %s (see the Monitoring section of the README).\n",
						 name, suffix, kind, name);
		appendStringInfo(buf, "# TYPE authx_%s%s %s\n", name, suffix, kind);
		appendStringInfo(buf, "authx_%s%s " INT64_FORMAT "\n", name, suffix, value);
		return;
	}
	len -= 3;
	appendStringInfo(buf, "# HELP authx_%.*s_seconds%s authx %s %s, in seconds (see the Monitoring section of the README).\n",
					 len, name, suffix, kind, name);
	appendStringInfo(buf, "# TYPE authx_%.*s_seconds%s %s\n", len, name, suffix, kind);
	if (value < 0)
		appendStringInfo(buf, "authx_%.*s_seconds%s NaN\n", len, name, suffix);
	else
		appendStringInfo(buf, "authx_%.*s_seconds%s %.6f\n", len, name, suffix, value / scale);
}

PG_FUNCTION_INFO_V1(authx_metrics);

/*
 * authx.metrics() RETURNS text
 *		authx.stats in the Prometheus text exposition format (version
 *		0.0.4), plus the histogram of latencies given to usage_record, in
 *		seconds.  Raises 55000 without shared_preload_libraries.
 */
Datum
authx_metrics(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	uint64		counts[AUTHX_HIST_BUCKETS];
	uint64		sum_us;
	uint64		cum = 0;
	int			k;

	authx_require_shmem();
	initStringInfo(&buf);
	collect(emit_prom, &buf);

	authx_usage_hist(counts, &sum_us);
	appendStringInfoString(&buf,
						   "# HELP authx_request_duration_seconds Latency of the requests recorded by authx.usage_record.\n"
						   "# TYPE authx_request_duration_seconds histogram\n");
	for (k = 0; k < AUTHX_HIST_BUCKETS - 1; k++)
	{
		cum += counts[k];
		appendStringInfo(&buf, "authx_request_duration_seconds_bucket{le=\"%.9g\"} " UINT64_FORMAT "\n",
						 authx_hist_upper(k) / 1000.0, cum);
	}
	cum += counts[AUTHX_HIST_BUCKETS - 1];
	appendStringInfo(&buf, "authx_request_duration_seconds_bucket{le=\"+Inf\"} " UINT64_FORMAT "\n", cum);
	appendStringInfo(&buf, "authx_request_duration_seconds_sum %.6f\n", sum_us / 1e6);
	appendStringInfo(&buf, "authx_request_duration_seconds_count " UINT64_FORMAT "\n", cum);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

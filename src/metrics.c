/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		authx.stats: counters and gauges from shared memory.
 *
 * Runs in backends; reads atomics without locks and the queue and worker
 * fields under their LWLocks (shared).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "authx.h"

static void
emit(ReturnSetInfo *rsinfo, const char *name, int64 value, bool is_counter)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(value);
	values[2] = CStringGetTextDatum(is_counter ? "counter" : "gauge");
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
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
	int			i;
	uint64		head,
				tail,
				enq;
	pid_t		pid;
	TimestampTz last_run;

	authx_require_shmem();
	InitMaterializedSRF(fcinfo, 0);

	for (i = 0; i < AUTHX_NUM_STATS; i++)
		emit(rsinfo, authx_stat_names[i],
			 (int64) pg_atomic_read_u64(&authx_shared->stats[i]), true);

	LWLockAcquire(authx_lock(AUTHX_LOCK_AUDIT_QUEUE), LW_SHARED);
	head = authx_shared->audit_head;
	tail = authx_shared->audit_tail;
	enq = authx_shared->audit_enq_seq;
	LWLockRelease(authx_lock(AUTHX_LOCK_AUDIT_QUEUE));
	emit(rsinfo, "audit_queue_events",
		 (int64) (enq - pg_atomic_read_u64(&authx_shared->audit_done_seq)), false);
	emit(rsinfo, "audit_queue_bytes", (int64) (head - tail), false);
	emit(rsinfo, "audit_queue_capacity_bytes", (int64) authx_shared->audit_size, false);
	emit(rsinfo, "password_inflight",
		 (int64) pg_atomic_read_u32(&authx_shared->password_inflight), false);

	LWLockAcquire(authx_lock(AUTHX_LOCK_WORKER), LW_SHARED);
	pid = authx_shared->maint_pid;
	last_run = authx_shared->maint_last_run;
	LWLockRelease(authx_lock(AUTHX_LOCK_WORKER));
	emit(rsinfo, "maintenance_worker_pid", (int64) pid, false);
	{
		int64		p50;
		int64		p99;

		authx_cache_lag_percentiles(&p50, &p99);
		emit(rsinfo, "cache_queue_depth", (int64) authx_cache_queue_depth(), false);
		emit(rsinfo, "cache_connected", authx_cache_connected() ? 1 : 0, false);
		emit(rsinfo, "cache_lag_p50_us", p50, false);
		emit(rsinfo, "cache_lag_p99_us", p99, false);
	}
	emit(rsinfo, "maintenance_last_run_age_ms",
		 last_run == 0 ? -1 : TimestampDifferenceMilliseconds(last_run, GetCurrentTimestamp()),
		 false);

	return (Datum) 0;
}

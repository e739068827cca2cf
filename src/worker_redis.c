/*-------------------------------------------------------------------------
 *
 * worker_redis.c
 *		The Redis writer background worker.
 *
 * One per cluster, attached to shared memory only (no database).  It drains
 * the ring of cache operations (cache.c) in batches of up to
 * AUTHX_WRITER_BATCH, pipelining one EVALSHA per 64 operations (redis.c),
 * and releases the batch only when every reply is in, so a failure re-sends
 * rather than loses.  The batched script needs every key on one Redis: a
 * Redis Cluster is not supported.  It resyncs the whole cache (forget the queue, UNLINK every key
 * under the prefix) before writing anything whenever operations can have been
 * lost or Redis can hold a state older than ours: when it starts, after a
 * queue overflow, when Redis's run_id changes (a restart, possibly from an
 * old RDB file; checked every AUTHX_HEALTH_MS even when idle), after Redis
 * was unreachable for AUTHX_OUTAGE_RESYNC_MS, and when the URL or prefix
 * changes (the old prefix is cleared too).  A failure is logged once, then
 * only counted, and retried with backoff until a write succeeds again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "authx.h"
#include "redis.h"

#define AUTHX_WRITER_BATCH		512
#define AUTHX_OUTAGE_RESYNC_MS	10000
#define AUTHX_RETRY_MAX_MS		2000
#define AUTHX_HEALTH_MS			1000
#define AUTHX_GATHER_US			2000	/* let commits pile up into one pipeline */

static AuthxRedis *conn = NULL;
static bool logged_failure = false;
static TimestampTz down_since = 0;	/* when the connection was last lost */
static TimestampTz next_attempt = 0;	/* no reconnect before this */
static int	retry_ms = 100;
static char old_prefix[128] = "";	/* a previous prefix still to clear */
static bool resend = false;		/* the queue's first operations may be in
								 * Redis already: a send failed after them */

static void
writer_detach(int code, Datum arg)
{
	authx_redis_close(conn);
	conn = NULL;
	(void) authx_cache_writer_attach(NULL);
}

/*
 * failed
 *		Drop the connection and report: logged the first time of a run of
 *		failures, always counted and shown by authx.cache_status().  The next
 *		connection attempt waits, doubling up to AUTHX_RETRY_MAX_MS, so an
 *		error that follows every connect (a missing ACL permission) cannot
 *		spin.
 */
static void
failed(const char *err)
{
	if (conn != NULL)
		down_since = GetCurrentTimestamp();
	authx_redis_close(conn);
	conn = NULL;
	authx_stat_add(AUTHX_STAT_CACHE_ERRORS, 1);
	authx_cache_writer_state(false, NULL, err);
	if (!logged_failure)
		ereport(LOG,
				(errmsg("authx redis writer: %s", err),
				 errhint("Cache operations wait in the queue; see authx.cache_status().")));
	logged_failure = true;
	next_attempt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), retry_ms);
	retry_ms = Min(retry_ms * 2, AUTHX_RETRY_MAX_MS);
}

/*
 * succeeded
 *		A write went through: the outage, if any, is over.
 */
static void
succeeded(void)
{
	if (logged_failure)
		ereport(LOG, (errmsg("authx redis writer: writing to Redis again")));
	logged_failure = false;
	retry_ms = 100;
}

/*
 * resync
 *		Forget the queue and every key under the prefix (and under a previous
 *		prefix), then count the queue up to here as done.
 */
static bool
resync(const char *prefix)
{
	char		err[256];
	long		n;
	long		old = 0;
	uint64		pos;

	pos = authx_cache_begin_resync();
	resend = false;				/* the queue is gone, and so will the keys be */
	if (old_prefix[0] != '\0' &&
		(old = authx_redis_unlink_prefix(conn, old_prefix, err, sizeof(err))) < 0)
	{
		failed(err);
		return false;
	}
	n = authx_redis_unlink_prefix(conn, prefix, err, sizeof(err));
	if (n < 0)
	{
		failed(err);
		return false;
	}
	old_prefix[0] = '\0';
	authx_cache_end_resync(pos);
	authx_stat_add(AUTHX_STAT_CACHE_RESYNCS, 1);
	succeeded();
	ereport(LOG,
			(errmsg("authx redis writer: resynced the cache (%ld keys removed under \"%s\")",
					n + old, prefix)));
	return true;
}

/*
 * gather
 *		Let commits pile up for us microseconds.  Not WaitLatch, whose
 *		milliseconds, rounded up, would make the period (and so the lag)
 *		vary by up to a millisecond; nothing needs the latch meanwhile
 *		(committers wake only a sleeping writer) and a signal (SIGTERM,
 *		SIGHUP) cuts the sleep short.
 */
static void
gather(int64 us)
{
	if (us > 0)
	{
		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		pg_usleep((long) us);
		pgstat_report_wait_end();
	}
	if (!PostmasterIsAlive())
		proc_exit(1);
}

/*
 * drain
 *		Apply what is queued, in batches of AUTHX_WRITER_BATCH while there is
 *		a backlog.  *applied says whether anything was.  Returns false on
 *		failure (the connection is dropped).
 */
static bool
drain(const char *prefix, AuthxCacheOp *batch, bool *applied)
{
	*applied = false;
	for (;;)
	{
		uint64		tail;
		uint64		taken;
		int			n = authx_cache_peek(batch, AUTHX_WRITER_BATCH, &tail, &taken);
		char		err[256];

		if (taken == 0)
			return true;
		if (n > 0 && !authx_redis_apply(conn, prefix, batch, n, resend, err, sizeof(err)))
		{
			/*
			 * Redis may have run some or all of it (a timeout does not
			 * take back what reached its socket): the next send of these
			 * operations must not write creations blindly again.
			 */
			resend = true;
			failed(err);
			return false;
		}
		resend = false;
		authx_cache_advance(taken, tail, batch, n);
		if (n > 0)
			succeeded();
		*applied = true;
		authx_stat_add(AUTHX_STAT_CACHE_SENT, n);
		authx_stat_add(AUTHX_STAT_CACHE_BATCHES, 1);
		/*
		 * Less than a full batch: what came in during the round trip waits
		 * for the next gather instead of going out alone.
		 */
		if (taken < AUTHX_WRITER_BATCH || authx_cache_overflowed() || ShutdownRequestPending)
			return true;
	}
}

/*
 * authx_redis_writer_main
 *		Entry point of the writer.
 */
void
authx_redis_writer_main(Datum main_arg)
{
	AuthxCacheOp *batch;
	char		url[1024] = "";
	char		prefix[128] = "";
	char		run_id[48] = "";
	bool		need_resync = true;		/* at start: ops may have been lost */
	TimestampTz next_health = 0;
	int64		ks_hits;
	int64		ks_misses;
	bool		busy = false;	/* the last pass wrote something */
	TimestampTz drained_at = 0; /* when it began */

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	if (!authx_cache_writer_attach(MyLatch))
	{
		ereport(LOG, (errmsg("authx redis writer already running")));
		proc_exit(0);
	}
	before_shmem_exit(writer_detach, (Datum) 0);
	batch = MemoryContextAlloc(TopMemoryContext, sizeof(AuthxCacheOp) * AUTHX_WRITER_BATCH);
	down_since = GetCurrentTimestamp();

	for (;;)
	{
		long		wait_ms = 1000;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (ShutdownRequestPending)
			break;

		/* A new target or prefix: what Redis holds is not ours to trust. */
		if (strcmp(url, authx_redis_url) != 0 || strcmp(prefix, authx_redis_prefix) != 0)
		{
			authx_redis_close(conn);
			conn = NULL;
			/* Same server, new prefix: the old keys must go as well. */
			if (strcmp(url, authx_redis_url) == 0 && prefix[0] != '\0')
				strlcpy(old_prefix, prefix, sizeof(old_prefix));
			else
				old_prefix[0] = '\0';
			next_attempt = 0;
			strlcpy(url, authx_redis_url, sizeof(url));
			strlcpy(prefix, authx_redis_prefix, sizeof(prefix));
			need_resync = true;
			run_id[0] = '\0';
			authx_cache_writer_state(false, "", NULL);
		}

		if (url[0] != '\0' && conn == NULL && GetCurrentTimestamp() >= next_attempt)
		{
			AuthxRedisTarget target;
			char		err[256];
			char		new_run_id[48];

			if (!authx_redis_parse_url(url, &target))
				failed("authx.redis_url cannot be parsed");
			else if ((conn = authx_redis_connect(&target, authx_redis_timeout_ms, err, sizeof(err))) == NULL)
				failed(err);
			else if (!authx_redis_info(conn, new_run_id, sizeof(new_run_id), &ks_hits, &ks_misses, err, sizeof(err)))
				failed(err);
			else
			{
				authx_cache_lookups_sample(new_run_id, ks_hits, ks_misses);
				if (strcmp(new_run_id, run_id) != 0 ||
					TimestampDifferenceExceeds(down_since, GetCurrentTimestamp(), AUTHX_OUTAGE_RESYNC_MS))
					need_resync = true;
				strlcpy(run_id, new_run_id, sizeof(run_id));
				authx_cache_writer_state(true, run_id, NULL);
				next_health = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), AUTHX_HEALTH_MS);
			}
		}

		/*
		 * Even with nothing to write, look at Redis every second: a restart
		 * from an old RDB file brings back entries we have since revoked.
		 * The same INFO gives the keyspace counters behind cache_hits and
		 * cache_misses.
		 */
		if (conn != NULL && GetCurrentTimestamp() >= next_health)
		{
			char		err[256];
			char		new_run_id[48];

			if (!authx_redis_info(conn, new_run_id, sizeof(new_run_id), &ks_hits, &ks_misses, err, sizeof(err)))
				failed(err);
			else
			{
				authx_cache_lookups_sample(new_run_id, ks_hits, ks_misses);
				if (strcmp(new_run_id, run_id) != 0)
				{
					need_resync = true;
					strlcpy(run_id, new_run_id, sizeof(run_id));
					authx_cache_writer_state(true, run_id, NULL);
				}
			}
			next_health = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), AUTHX_HEALTH_MS);
		}

		if (conn != NULL)
		{
			if (authx_cache_overflowed())
				need_resync = true;
			if (need_resync && resync(prefix))
				need_resync = false;
			if (conn != NULL && !need_resync)
			{
				drained_at = GetCurrentTimestamp();
				if (!drain(prefix, batch, &busy))
					busy = false;
			}
		}
		if (conn == NULL || need_resync)
			busy = false;
		if (url[0] != '\0' && conn == NULL)
			wait_ms = Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_attempt), 10);
		else if (conn != NULL)
			wait_ms = Max(Min(wait_ms, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_health)), 1);

		/*
		 * Busy (the last pass wrote something): come back AUTHX_GATHER_US
		 * after that pass began, without asking committers to wake us, so
		 * the commits of the period go out as one pipeline and no commit
		 * pays for a wakeup.  Idle (a pass found nothing): sleep until a
		 * commit sets the latch, then gather AUTHX_GATHER_US so that a
		 * burst becomes one pipeline instead of a wakeup each.  Either way
		 * an operation waits at most AUTHX_GATHER_US plus a round trip.
		 */
		if (busy)
			gather(AUTHX_GATHER_US - (GetCurrentTimestamp() - drained_at));
		else if (conn == NULL || need_resync || authx_cache_writer_may_sleep())
		{
			int			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
									   wait_ms, PG_WAIT_EXTENSION);

			authx_cache_writer_awake();
			ResetLatch(MyLatch);
			if ((rc & WL_LATCH_SET) && conn != NULL)
				gather(AUTHX_GATHER_US);
		}
	}

	/* Final drain: what was committed before shutdown reaches Redis. */
	if (conn != NULL && !need_resync)
		while (drain(prefix, batch, &busy) && busy)
			;
	proc_exit(1);
}

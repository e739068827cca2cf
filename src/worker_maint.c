/*-------------------------------------------------------------------------
 *
 * worker_maint.c
 *		The maintenance background worker.
 *
 * One instance per cluster, connected to authx.database.  Each turn of its
 * latch loop it checks that the extension exists, blocks the addresses that
 * threat rules fired for (policy.c), drains the audit queue
 * (audit.c), persists changed lockout counters, writes usage records,
 * every 5 seconds checks the threshold alerts (authx.alerts_check) and, every
 * authx.maintenance_naptime, calls authx.maintenance_run() — partitions are
 * managed in SQL, like pg_partman, so the worker stays thin.  Each unit of
 * work is its own transaction, started after SetCurrentStatementStartTimestamp
 * (else now() would stay the worker's start time: a background worker has
 * no client messages to set it); a failure is logged once, counted, and
 * retried on the next turn.  It publishes its pid and latch in shared memory
 * under AUTHX_LOCK_WORKER so backends can wake it, and writes what is queued
 * once more on SIGTERM before it exits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "authx.h"

/* How often the threshold alerts are checked. */
#define AUTHX_ALERTS_MS		5000

/* What failed last, so a repeating failure is logged once. */
typedef enum WorkerStep
{
	STEP_CHECK,
	STEP_DRAIN,
	STEP_LOCKOUTS,
	STEP_USAGE,
	STEP_THREATS,
	STEP_USAGE_LOG,
	STEP_MAINTAIN,
	STEP_ALERTS,
	NUM_STEPS
} WorkerStep;

static bool step_failing[NUM_STEPS];

/* Set when authx.database lacks the extension: look again every second. */
static bool extension_missing = false;
static const char *const step_names[NUM_STEPS] = {
	"looking for the extension", "writing audit events", "persisting lockouts", "persisting API key usage",
	"blocking detected threats", "writing usage records", "partition maintenance", "checking alerts"
};

/*
 * worker_detach
 *		before_shmem_exit callback: unpublish pid and latch.
 */
static void
worker_detach(int code, Datum arg)
{
	LWLockAcquire(authx_lock(AUTHX_LOCK_WORKER), LW_EXCLUSIVE);
	if (authx_shared->maint_pid == MyProcPid)
	{
		authx_shared->maint_pid = 0;
		authx_shared->maint_latch = NULL;
	}
	LWLockRelease(authx_lock(AUTHX_LOCK_WORKER));
}

/*
 * check_extension
 *		Once per turn, in a transaction of its own: does authx.database have
 *		the extension yet?  The other steps run only when it does.
 */
static void
check_extension(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("authx", true));
	CommitTransactionCommand();
	if (!installed && !extension_missing)
		ereport(LOG,
				(errmsg("authx maintenance worker: extension authx is not installed in database \"%s\"",
						authx_database),
				 errhint("Run CREATE EXTENSION authx there; queued events wait until then.")));
	extension_missing = !installed;
}

/*
 * drain
 *		Call a queue's drain, a batch per transaction, until it is empty or
 *		100 batches were written this turn, so a flood cannot starve the
 *		other steps; the producers set the latch again anyway.  At shutdown
 *		it goes on until the queue is empty.
 */
static void
drain(int (*batch) (void))
{
	int			batches = 0;

	while (batch() > 0 && (++batches < 100 || ShutdownRequestPending))
		CHECK_FOR_INTERRUPTS();
}

/* Queued audit events into authx.audit_log. */
static void
drain_all(void)
{
	drain(authx_audit_drain);
}

/*
 * lockouts
 *		Load persisted lockouts once per shared-memory lifetime, then write
 *		the entries that changed.
 */
static void
lockouts(void)
{
	int			n;

	if (!authx_shared->lockout_loaded)
		authx_lockout_load();
	n = authx_lockout_persist();
	authx_stat_add(AUTHX_STAT_LOCKOUTS_PERSISTED, n);
}

/*
 * usage
 *		Add the API key usage counters to authx.api_key_usage.
 */
static void
usage(void)
{
	(void) authx_apikey_usage_persist();
}

/* Queued usage records into authx.usage_log and its rollups, once due. */
static bool usage_flush_all = false;

static void
usage_log(void)
{
	if (usage_flush_all || authx_usage_due_ms() == 0)
		drain(authx_usage_drain);
}

/*
 * threats
 *		Block the addresses threat rules fired for.
 */
static void
threats(void)
{
	(void) authx_threat_flush();
}

/*
 * worker_sql
 *		Run one SQL statement (a SELECT) in a transaction of its own.
 */
static void
worker_sql(const char *sql)
{
	int			rc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, sql);
	rc = SPI_execute(sql, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "authx: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * maintain
 *		One call of authx.maintenance_run() in its own transaction.
 */
static void
maintain(void)
{
	worker_sql("SELECT authx.maintenance_run()");
	pgstat_report_stat(false);

	authx_stat_add(AUTHX_STAT_MAINT_RUNS, 1);
	LWLockAcquire(authx_lock(AUTHX_LOCK_WORKER), LW_EXCLUSIVE);
	authx_shared->maint_last_run = GetCurrentTimestamp();
	LWLockRelease(authx_lock(AUTHX_LOCK_WORKER));
}

/*
 * alerts
 *		One check of the threshold alerts (authx.alerts_check) in its own
 *		transaction; NOTIFY authx_alerts goes out when it commits.
 */
static void
alerts(void)
{
	worker_sql("SELECT authx.alerts_check()");
}

/*
 * run_step
 *		Run one step, catching errors: the first failure of a run of
 *		failures is logged, later ones only counted, and a recovery is
 *		logged too.  The transaction is aborted and the loop goes on.
 */
static void
run_step(WorkerStep step, void (*fn) (void), MemoryContext loopcxt)
{
	/*
	 * A step that committed left TopMemoryContext current: what the next
	 * one allocates outside its transaction must go to the loop's context,
	 * reset every turn, or the worker grows by it every turn.
	 */
	MemoryContextSwitchTo(loopcxt);
	PG_TRY();
	{
		fn();
		if (step_failing[step])
		{
			ereport(LOG,
					(errmsg("authx maintenance worker: %s works again", step_names[step])));
			step_failing[step] = false;
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(loopcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		authx_stat_add(AUTHX_STAT_MAINT_ERRORS, 1);
		if (!step_failing[step])
			ereport(LOG,
					(errmsg("authx maintenance worker: %s failed: %s", step_names[step], edata->message),
					 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
					 errhint("Repeats of this failure are counted in authx.stats (maintenance_errors), not logged.")));
		step_failing[step] = true;
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * authx_maint_main
 *		Entry point of the maintenance worker.
 */
void
authx_maint_main(Datum main_arg)
{
	MemoryContext loopcxt;
	TimestampTz next_maintenance = 0;
	TimestampTz next_alerts = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* Single-instance guard: a second copy leaves at once. */
	LWLockAcquire(authx_lock(AUTHX_LOCK_WORKER), LW_EXCLUSIVE);
	if (authx_shared->maint_pid != 0 && kill(authx_shared->maint_pid, 0) == 0)
	{
		pid_t		other = authx_shared->maint_pid;

		LWLockRelease(authx_lock(AUTHX_LOCK_WORKER));
		ereport(LOG,
				(errmsg("authx maintenance worker already running with PID %d", (int) other)));
		proc_exit(0);
	}
	authx_shared->maint_pid = MyProcPid;
	authx_shared->maint_latch = MyLatch;
	authx_shared->maint_started = GetCurrentTimestamp();
	LWLockRelease(authx_lock(AUTHX_LOCK_WORKER));
	before_shmem_exit(worker_detach, (Datum) 0);

	BackgroundWorkerInitializeConnection(authx_database, NULL, 0);
	ereport(LOG,
			(errmsg("authx maintenance worker started in database \"%s\"", authx_database)));

	loopcxt = AllocSetContextCreate(TopMemoryContext, "authx maintenance loop",
									ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz now;
		long		delay_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_maintenance = 0;	/* settings may have changed: act now */
		}
		if (ShutdownRequestPending)
			break;

		MemoryContextReset(loopcxt);
		MemoryContextSwitchTo(loopcxt);

		run_step(STEP_CHECK, check_extension, loopcxt);
		if (!extension_missing)
		{
			run_step(STEP_THREATS, threats, loopcxt);
			run_step(STEP_DRAIN, drain_all, loopcxt);
			run_step(STEP_LOCKOUTS, lockouts, loopcxt);
			run_step(STEP_USAGE, usage, loopcxt);
			run_step(STEP_USAGE_LOG, usage_log, loopcxt);
		}

		now = GetCurrentTimestamp();
		if (now >= next_alerts)
		{
			if (!extension_missing)
				run_step(STEP_ALERTS, alerts, loopcxt);
			next_alerts = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), AUTHX_ALERTS_MS);
		}
		if (now >= next_maintenance)
		{
			if (!extension_missing)
				run_step(STEP_MAINTAIN, maintain, loopcxt);
			next_maintenance = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   extension_missing ? 1000 :
														   (int64) authx_maintenance_naptime * 1000);
		}

		delay_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), Min(next_maintenance, next_alerts));
		{
			long		usage_ms = authx_usage_due_ms();

			if (usage_ms >= 0)
				delay_ms = Min(delay_ms, usage_ms);
		}
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(delay_ms, 1),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	/* Final flush: what was queued before shutdown reaches the table. */
	MemoryContextSwitchTo(loopcxt);
	usage_flush_all = true;
	run_step(STEP_CHECK, check_extension, loopcxt);
	if (!extension_missing)
	{
		run_step(STEP_THREATS, threats, loopcxt);
		run_step(STEP_DRAIN, drain_all, loopcxt);
		run_step(STEP_LOCKOUTS, lockouts, loopcxt);
		run_step(STEP_USAGE, usage, loopcxt);
		run_step(STEP_USAGE_LOG, usage_log, loopcxt);
	}
	ereport(LOG, (errmsg("authx maintenance worker shutting down")));

	/* Exit code 1: restarted after bgw_restart_time unless the server stops. */
	proc_exit(1);
}

/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		The authx shared-memory area: request, startup, and small helpers.
 *
 * The postmaster requests the space in shmem_request_hook; each process
 * attaches in shmem_startup_hook (under AddinShmemInitLock).  One LWLock
 * tranche, "authx", holds the locks named by AuthxLock.  Counters are
 * atomics and need no lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "authx.h"

AuthxShared *authx_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Names as shown by authx.stats; order follows AuthxStat. */
const char *const authx_stat_names[] = {
	"audit_enqueued",
	"audit_written",
	"audit_sync_fallbacks",
	"audit_batches",
	"maintenance_runs",
	"maintenance_errors",
	"password_hashes",
	"password_verifies",
	"password_waits",
	"password_wait_us",
	"login_failures_counted",
	"lockouts",
	"lockout_evictions",
	"lockout_table_full",
	"lockouts_persisted",
	"session_valid",
	"session_invalid",
	"session_malformed",
	"session_touches",
	"cache_queued",
	"cache_sent",
	"cache_batches",
	"cache_errors",
	"cache_resyncs",
	"cache_dropped",
	"cache_discarded",
	"apikey_valid",
	"apikey_rejected",
	"apikey_malformed",
	"apikey_touches",
	"apikey_usage_dropped",
	"apikey_usage_persisted",
	"rate_limit_evictions",
	"rate_limit_allowed",
	"rate_limit_denied",
	"rbac_cache_hits",
	"rbac_cache_misses",
	"ip_blocked",
	"ip_block_reloads",
	"ip_block_table_lookups",
	"rate_limit_redis",
	"rate_limit_redis_errors",
	"rate_limit_fallbacks",
	"threat_detections",
	"threat_dropped",
	"threat_blocks",
	"alerts_sent",
	"token_valid",
	"token_invalid",
	"usage_recorded",
	"usage_written",
	"usage_dropped",
	"usage_status_4xx",
	"usage_status_5xx",
	"cache_hits",
	"cache_misses",
};

StaticAssertDecl(lengthof(authx_stat_names) == AUTHX_NUM_STATS,
				 "authx_stat_names must name every AuthxStat");

/*
 * authx_shmem_size
 *		Bytes needed: the fixed struct, then each module's area in the order
 *		authx_shmem_startup carves them.
 */
static Size
authx_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(AuthxShared));

	size = add_size(size, authx_audit_shmem_size());
	size = add_size(size, authx_lockout_shmem_size());
	size = add_size(size, authx_cache_shmem_size());
	size = add_size(size, authx_rate_shmem_size());
	size = add_size(size, authx_apikey_shmem_size());
	size = add_size(size, authx_ipblock_shmem_size());
	size = add_size(size, authx_usage_shmem_size());
	return size;
}

static void
authx_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(authx_shmem_size());
	RequestNamedLWLockTranche("authx", AUTHX_NUM_LOCKS);
}

/*
 * authx_shmem_startup
 *		Create (postmaster) or attach to (EXEC_BACKEND children) the area.
 *		After a crash-restart the postmaster runs this again on fresh memory,
 *		so queued audit events that were never written are lost; everything
 *		else is rebuilt from the database.
 */
static void
authx_shmem_startup(void)
{
	bool		found;
	int			i;
	char	   *next;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	authx_shared = ShmemInitStruct("authx", authx_shmem_size(), &found);
	if (!found)
	{
		memset(authx_shared, 0, sizeof(AuthxShared));
		authx_shared->locks = GetNamedLWLockTranche("authx");
		authx_shared->audit_size = authx_audit_shmem_size();
		authx_shared->audit_buf = (char *) authx_shared + MAXALIGN(sizeof(AuthxShared));
		authx_shared->lockout_entries = authx_shared->audit_buf + authx_audit_shmem_size();
		memset(authx_shared->lockout_entries, 0, authx_lockout_shmem_size());
		pg_atomic_init_u64(&authx_shared->audit_done_seq, 0);
		ConditionVariableInit(&authx_shared->audit_cv);
		pg_atomic_init_u32(&authx_shared->password_inflight, 0);
		ConditionVariableInit(&authx_shared->password_cv);
		for (i = 0; i < AUTHX_NUM_GENERATIONS; i++)
			pg_atomic_init_u64(&authx_shared->generations[i], 0);
		SpinLockInit(&authx_shared->threat_lock);
		pg_atomic_init_u64(&authx_shared->rate_redis_down_until, 0);
		pg_atomic_init_u32(&authx_shared->rate_redis_outage, 0);
		for (i = 0; i < AUTHX_NUM_STATS; i++)
			pg_atomic_init_u64(&authx_shared->stats[i], 0);
		pg_atomic_init_u32(&authx_shared->fence_count, 0);
		for (i = 0; i < (int) lengthof(authx_shared->fence_bits); i++)
			pg_atomic_init_u32(&authx_shared->fence_bits[i], 0);
	}
	next = authx_shared->lockout_entries + authx_lockout_shmem_size();
	authx_cache_shmem_startup(next, found);
	next += authx_cache_shmem_size();
	authx_rate_shmem_startup(next, found);
	next += authx_rate_shmem_size();
	authx_apikey_shmem_startup(next, found);
	next += authx_apikey_shmem_size();
	authx_ipblock_shmem_startup(next, found);
	next += authx_ipblock_shmem_size();
	authx_usage_shmem_startup(next, found);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * authx_shmem_init
 *		Install the hooks; called from _PG_init while preloading.
 */
void
authx_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = authx_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = authx_shmem_startup;
}

/*
 * authx_require_shmem
 *		Raise 55000 unless the shared area exists.
 */
void
authx_require_shmem(void)
{
	if (authx_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("authx must be loaded via shared_preload_libraries"),
				 errhint("Add authx to shared_preload_libraries in postgresql.conf and restart the server.")));
}

LWLock *
authx_lock(AuthxLock which)
{
	Assert(authx_shared != NULL);
	return &authx_shared->locks[which].lock;
}

/*
 * authx_wake_maintenance
 *		Set the maintenance worker's latch, if it is running.
 */
void
authx_wake_maintenance(void)
{
	Latch	   *latch;

	if (authx_shared == NULL)
		return;
	LWLockAcquire(authx_lock(AUTHX_LOCK_WORKER), LW_SHARED);
	latch = authx_shared->maint_latch;
	if (latch)
		SetLatch(latch);
	LWLockRelease(authx_lock(AUTHX_LOCK_WORKER));
}

/* ----------------------------------------------------------------
 * Generations bumped at commit
 * ----------------------------------------------------------------
 */

static const char *const generation_names[] = {
	"roles or grants", "IP blocks", "rate-limit policies or threat rules", "signing keys"
};

StaticAssertDecl(lengthof(generation_names) == AUTHX_NUM_GENERATIONS,
				 "generation_names must name every AuthxGeneration");

static bool generation_dirty[AUTHX_NUM_GENERATIONS];
static bool generation_callback = false;

/*
 * generation_xact_callback
 *		At COMMIT bump what this transaction changed (an atomic add: nothing
 *		that can fail).  A PREPAREd transaction would be committed where
 *		nobody bumps: refused before the point of no return.
 */
static void
generation_xact_callback(XactEvent event, void *arg)
{
	int			i;

	for (i = 0; i < AUTHX_NUM_GENERATIONS; i++)
	{
		if (!generation_dirty[i])
			continue;
		switch (event)
		{
			case XACT_EVENT_PRE_PREPARE:
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that changed authx %s", generation_names[i]),
						 errhint("Commit such changes directly.")));
				break;
			case XACT_EVENT_COMMIT:
			case XACT_EVENT_PARALLEL_COMMIT:
				if (authx_shared != NULL)
					pg_atomic_fetch_add_u64(&authx_shared->generations[i], 1);
				generation_dirty[i] = false;
				break;
			case XACT_EVENT_ABORT:
			case XACT_EVENT_PARALLEL_ABORT:
			case XACT_EVENT_PREPARE:
				generation_dirty[i] = false;
				break;
			default:
				break;
		}
	}
}

/*
 * authx_generation_touch
 *		This transaction changed what generation g covers: bump it at commit.
 */
void
authx_generation_touch(AuthxGeneration g)
{
	if (!generation_callback)
	{
		RegisterXactCallback(generation_xact_callback, NULL);
		generation_callback = true;
	}
	generation_dirty[g] = true;
}

/* Has this transaction changed what g covers (not yet visible to others)? */
bool
authx_generation_dirty(AuthxGeneration g)
{
	return generation_dirty[g];
}

/* The current value; read before building anything it covers. */
uint64
authx_generation_read(AuthxGeneration g)
{
	Assert(authx_shared != NULL);
	return pg_atomic_read_u64(&authx_shared->generations[g]);
}

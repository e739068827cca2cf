/*-------------------------------------------------------------------------
 *
 * authx.h
 *		Declarations shared by the authx modules.
 *
 * Every process that loads authx sees these: backends running the SQL
 * functions and the background workers.  The shared-memory area (AuthxShared)
 * exists only when authx is in shared_preload_libraries; code that needs it
 * calls authx_require_shmem() first.
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHX_H
#define AUTHX_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/uuid.h"

/* Upper bound on a password, in bytes: we refuse to hash megabytes. */
#define AUTHX_PASSWORD_MAX_BYTES	1024

/* ----------------------------------------------------------------
 * GUC variables (guc.c)
 * ----------------------------------------------------------------
 */
extern int	authx_audit_premake;
extern int	authx_audit_queue_size;
extern int	authx_audit_retention;
extern char *authx_database;
extern int	authx_maintenance_naptime;
extern int	authx_password_max_concurrent;
extern int	authx_password_memlimit;
extern int	authx_password_min_length;
extern int	authx_password_opslimit;

extern void authx_guc_init(bool preloading);

/* ----------------------------------------------------------------
 * Statistics counters (shmem.c keeps the names, metrics.c reads them)
 * ----------------------------------------------------------------
 */
typedef enum AuthxStat
{
	AUTHX_STAT_AUDIT_ENQUEUED,
	AUTHX_STAT_AUDIT_WRITTEN,
	AUTHX_STAT_AUDIT_SYNC_FALLBACKS,
	AUTHX_STAT_AUDIT_BATCHES,
	AUTHX_STAT_MAINT_RUNS,
	AUTHX_STAT_MAINT_ERRORS,
	AUTHX_STAT_PASSWORD_HASHES,
	AUTHX_STAT_PASSWORD_VERIFIES,
	AUTHX_STAT_PASSWORD_WAITS,
	AUTHX_STAT_PASSWORD_WAIT_US,
	AUTHX_NUM_STATS
} AuthxStat;

extern const char *const authx_stat_names[AUTHX_NUM_STATS];

/* ----------------------------------------------------------------
 * Shared memory (shmem.c)
 * ----------------------------------------------------------------
 */

/* Named locks in the single "authx" tranche. */
typedef enum AuthxLock
{
	AUTHX_LOCK_AUDIT_QUEUE,		/* audit ring: head, tail, seq numbers */
	AUTHX_LOCK_WORKER,			/* published worker pid and latch */
	AUTHX_NUM_LOCKS
} AuthxLock;

typedef struct AuthxShared
{
	LWLockPadded *locks;		/* AUTHX_NUM_LOCKS locks of tranche "authx" */

	/* Maintenance worker, protected by AUTHX_LOCK_WORKER. */
	pid_t		maint_pid;
	Latch	   *maint_latch;
	TimestampTz maint_last_run;
	TimestampTz maint_started;

	/*
	 * Audit event ring, protected by AUTHX_LOCK_AUDIT_QUEUE.  head and tail
	 * are byte positions that only grow; the offset in the buffer is the
	 * position modulo audit_size.  enq_seq counts events ever enqueued,
	 * done_seq (atomic, read without the lock) counts events written.
	 */
	Size		audit_size;
	uint64		audit_head;
	uint64		audit_tail;
	uint64		audit_enq_seq;
	pg_atomic_uint64 audit_done_seq;
	ConditionVariable audit_cv; /* broadcast after each written batch */
	char	   *audit_buf;

	/* Argon2 concurrency cap: slots in use, woken when one frees. */
	pg_atomic_uint32 password_inflight;
	ConditionVariable password_cv;

	pg_atomic_uint64 stats[AUTHX_NUM_STATS];
} AuthxShared;

extern AuthxShared *authx_shared;

extern void authx_shmem_init(void);
extern void authx_require_shmem(void);
extern LWLock *authx_lock(AuthxLock which);
extern void authx_wake_maintenance(void);

static inline void
authx_stat_add(AuthxStat stat, uint64 delta)
{
	if (authx_shared != NULL)
		pg_atomic_fetch_add_u64(&authx_shared->stats[stat], delta);
}

/* ----------------------------------------------------------------
 * Crypto (crypto.c, the only file that includes <sodium.h>)
 * ----------------------------------------------------------------
 */
extern void authx_crypto_init(void);

/* ----------------------------------------------------------------
 * Audit queue (audit.c) and maintenance worker (worker_maint.c)
 * ----------------------------------------------------------------
 */
extern Size authx_audit_shmem_size(void);
extern int	authx_audit_drain(void);
extern void authx_worker_register(void);
PGDLLEXPORT void authx_maint_main(Datum main_arg);

/* Log redaction (redact.c) */
extern void authx_redact_init(void);

#endif							/* AUTHX_H */

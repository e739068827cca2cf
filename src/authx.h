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

#include "access/attnum.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "datatype/timestamp.h"
#include "utils/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/relcache.h"
#include "utils/uuid.h"

/* Upper bound on a password, in bytes: we refuse to hash megabytes. */
#define AUTHX_PASSWORD_MAX_BYTES	1024

/* ----------------------------------------------------------------
 * GUC variables (guc.c)
 * ----------------------------------------------------------------
 */
extern int	authx_lockout_account_threshold;
extern int	authx_lockout_duration;
extern int	authx_lockout_max_duration;
extern int	authx_lockout_slots;
extern int	authx_lockout_threshold;
extern int	authx_lockout_window;
extern int	authx_max_sessions_per_user;
extern int	authx_session_idle_timeout;
extern int	authx_session_ttl;
extern int	authx_touch_interval;
extern int	authx_cache_queue_size;
extern int	authx_shard_buckets;
extern bool authx_shard_tokens;
extern int32 authx_jump_hash(uint64 key, int32 buckets);
extern int	authx_cache_ttl;
extern char *authx_redis_prefix;
extern int	authx_redis_timeout_ms;
extern char *authx_rate_limit_redis_url;
extern const char *authx_rate_redis_url(void);
extern char *authx_redis_url;
extern int	authx_audit_premake;
extern int	authx_audit_queue_size;
extern int	authx_audit_retention;
extern char *authx_database;
extern int	authx_maintenance_naptime;
extern int	authx_password_max_concurrent;
extern int	authx_password_memlimit;
extern int	authx_password_min_length;
extern int	authx_password_opslimit;
extern int	authx_apikey_usage_slots;
extern int	authx_rate_limit_slots;
extern int	authx_ip_block_slots;
extern int	authx_rate_limit_store;
extern int	authx_rate_limit_fail;
extern char *authx_rate_limit_prefix;
extern int	authx_alert_min_severity;
extern char *authx_key_file;
extern int	authx_totp_digits;
extern int	authx_totp_period;
extern int	authx_totp_window;
extern int	authx_mfa_max_failures;
extern int	authx_mfa_challenge_ttl;
extern int	authx_token_alg;
extern int	authx_token_ttl;
extern char *authx_token_role;
extern char *authx_token_issuer;
extern char *authx_token_audience;
extern int	authx_refresh_reuse_grace;
extern int	authx_verification_ttl;
extern int	authx_reset_ttl;
extern int	authx_device_ttl;
extern int	authx_usage_queue_size;
extern int	authx_usage_retention;

#define AUTHX_ALG_EDDSA		0
#define AUTHX_ALG_HS256		1

/* Where rate-limit buckets live, and what a Redis bucket does without Redis. */
#define AUTHX_STORE_LOCAL	0
#define AUTHX_STORE_REDIS	1
#define AUTHX_FAIL_LOCAL	0
#define AUTHX_FAIL_OPEN		1
#define AUTHX_FAIL_CLOSED	2

extern void authx_guc_init(bool preloading);

/* authx.c */
extern int64 authx_interval_ms(const Interval *iv);
extern double authx_interval_epoch_us(const Interval *iv);
struct _SPI_plan;
extern TupleDesc authx_result_desc(FunctionCallInfo fcinfo);
extern struct _SPI_plan *authx_keep_plan(const char *sql, int nargs, Oid *argtypes);
extern Oid	authx_rel_owner(const char *name);
extern void authx_as_owner(const char *rel, void (*fn) (void *), void *arg);

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
	AUTHX_STAT_LOGIN_FAILURES_COUNTED,
	AUTHX_STAT_LOCKOUTS,
	AUTHX_STAT_LOCKOUT_EVICTIONS,
	AUTHX_STAT_LOCKOUT_TABLE_FULL,
	AUTHX_STAT_LOCKOUTS_PERSISTED,
	AUTHX_STAT_SESSION_VALID,
	AUTHX_STAT_SESSION_INVALID,
	AUTHX_STAT_SESSION_MALFORMED,
	AUTHX_STAT_SESSION_TOUCHES,
	AUTHX_STAT_CACHE_QUEUED,
	AUTHX_STAT_CACHE_SENT,
	AUTHX_STAT_CACHE_BATCHES,
	AUTHX_STAT_CACHE_ERRORS,
	AUTHX_STAT_CACHE_RESYNCS,
	AUTHX_STAT_CACHE_DROPPED,
	AUTHX_STAT_CACHE_DISCARDED,
	AUTHX_STAT_APIKEY_VALID,
	AUTHX_STAT_APIKEY_REJECTED,
	AUTHX_STAT_APIKEY_MALFORMED,
	AUTHX_STAT_APIKEY_TOUCHES,
	AUTHX_STAT_APIKEY_USAGE_DROPPED,
	AUTHX_STAT_APIKEY_USAGE_PERSISTED,
	AUTHX_STAT_RATE_EVICTIONS,
	AUTHX_STAT_RATE_ALLOWED,
	AUTHX_STAT_RATE_DENIED,
	AUTHX_STAT_RBAC_CACHE_HITS,
	AUTHX_STAT_RBAC_CACHE_MISSES,
	AUTHX_STAT_IPBLOCK_BLOCKED,
	AUTHX_STAT_IPBLOCK_RELOADS,
	AUTHX_STAT_IPBLOCK_SQL,
	AUTHX_STAT_RATE_REDIS,
	AUTHX_STAT_RATE_REDIS_ERRORS,
	AUTHX_STAT_RATE_FALLBACKS,
	AUTHX_STAT_THREAT_DETECTIONS,
	AUTHX_STAT_THREAT_DROPPED,
	AUTHX_STAT_THREAT_BLOCKS,
	AUTHX_STAT_ALERTS,
	AUTHX_STAT_TOKEN_VALID,
	AUTHX_STAT_TOKEN_INVALID,
	AUTHX_STAT_USAGE_RECORDED,
	AUTHX_STAT_USAGE_WRITTEN,
	AUTHX_STAT_USAGE_DROPPED,
	AUTHX_STAT_USAGE_STATUS_4XX,
	AUTHX_STAT_USAGE_STATUS_5XX,
	AUTHX_STAT_CACHE_HITS,
	AUTHX_STAT_CACHE_MISSES,
	AUTHX_NUM_STATS
} AuthxStat;

extern const char *const authx_stat_names[];

/* ----------------------------------------------------------------
 * Shared memory (shmem.c)
 * ----------------------------------------------------------------
 */

/* Named locks in the single "authx" tranche. */
typedef enum AuthxLock
{
	AUTHX_LOCK_AUDIT_QUEUE,		/* audit ring: head, tail, seq numbers */
	AUTHX_LOCK_WORKER,			/* published worker pid and latch */
	AUTHX_LOCK_LOCKOUT,			/* failed-login table (lockout.c) */
	AUTHX_LOCK_CACHE,			/* Redis operation ring (cache.c) */
	AUTHX_LOCK_USAGE,			/* API key usage counters (apikeys.c) */
	AUTHX_LOCK_IPBLOCK,			/* shared copy of authx.ip_blocks (ipblock.c) */
	AUTHX_NUM_LOCKS
} AuthxLock;

/*
 * Generations: counters in shared memory that a transaction bumps when it
 * commits, after a trigger marked it as having changed what a backend-side
 * or shared copy was built from (shmem.c).
 */
typedef enum AuthxGeneration
{
	AUTHX_GEN_RBAC,				/* roles, permissions, grants, user status */
	AUTHX_GEN_IPBLOCK,			/* authx.ip_blocks */
	AUTHX_GEN_POLICY,			/* rate-limit policies, overrides, threat rules */
	AUTHX_GEN_KEYS,				/* authx.signing_keys */
	AUTHX_NUM_GENERATIONS
} AuthxGeneration;

/* A threat rule that fired for an address (policy.c). */
#define AUTHX_THREAT_QUEUE		256
typedef struct AuthxThreatHit
{
	char		rule[NAMEDATALEN];
	uint8		family;			/* PGSQL_AF_INET or PGSQL_AF_INET6 */
	uint8		bits;			/* 32, or 64 for IPv6 */
	uint8		addr[16];		/* the network counted (masked to bits) */
	uint8		host[16];		/* the address the event came from */
} AuthxThreatHit;

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

	/* Failed-login table, protected by AUTHX_LOCK_LOCKOUT. */
	char	   *lockout_entries;
	bool		lockout_loaded; /* authx.lockouts read back since startup */

	/* Argon2 concurrency cap: slots in use, woken when one frees. */
	pg_atomic_uint32 password_inflight;
	ConditionVariable password_cv;

	/*
	 * Threat detections waiting for the maintenance worker to block their
	 * address, under threat_lock; and until when backends leave a Redis that
	 * failed alone (rate limits; µs since the PostgreSQL epoch).
	 */
	slock_t		threat_lock;
	int			threat_n;
	AuthxThreatHit threat_queue[AUTHX_THREAT_QUEUE];
	pg_atomic_uint64 rate_redis_down_until;
	pg_atomic_uint32 rate_redis_outage;	/* 1 once an outage is logged */

	/* Bumped by commits that changed what each AuthxGeneration covers. */
	pg_atomic_uint64 generations[AUTHX_NUM_GENERATIONS];

	pg_atomic_uint64 stats[AUTHX_NUM_STATS];

	/*
	 * Scale-out: buckets being moved away from this node, whose rows no
	 * write may change (authx._bucket_fence); fence_count is how many.
	 */
	pg_atomic_uint32 fence_count;
	pg_atomic_uint32 fence_bits[65536 / 32];
} AuthxShared;

extern AuthxShared *authx_shared;

extern void authx_shmem_init(void);
extern void authx_require_shmem(void);
extern LWLock *authx_lock(AuthxLock which);
extern void authx_wake_maintenance(void);
extern void authx_generation_touch(AuthxGeneration g);
extern bool authx_generation_dirty(AuthxGeneration g);
extern uint64 authx_generation_read(AuthxGeneration g);

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

/*
 * Tokens: a type prefix ("axs_" for sessions) and 32 random bytes in
 * URL-safe base64 without padding (43 characters).  Only the SHA-256 of the
 * whole token string is stored, which is also the Redis key apps compute.
 */
#define AUTHX_TOKEN_PREFIX_LEN	4
#define AUTHX_TOKEN_BODY_LEN	43
#define AUTHX_TOKEN_LEN			(AUTHX_TOKEN_PREFIX_LEN + AUTHX_TOKEN_BODY_LEN)
/* Scale-out tokens end in ".hhhh", their bucket (authx.shard_tokens). */
#define AUTHX_TOKEN_BUCKET_LEN	5
extern int32 authx_shard_of_uuid(const pg_uuid_t *u);
extern int	authx_bucket_suffix(const pg_uuid_t *user, char *out);
extern bool authx_bucket_suffix_valid(const char *s);
extern bool authx_bucket_leaving;
#define AUTHX_HASH_LEN			32
#define AUTHX_SESSION_PREFIX	"axs_"

extern void authx_token_generate(const char *prefix, char *out);
extern void authx_random_bytes(void *buf, Size len);
extern bool authx_token_wellformed(const char *prefix, const char *tok, Size len);
extern void authx_sha256(const char *data, Size len, uint8 *out);
extern bool authx_equal_ct(const void *a, const void *b, Size len);
extern void authx_key_create_default(void);
extern bytea *authx_seal(const uint8 *msg, Size len, const uint8 *ad, Size adlen);
extern bool authx_unseal(const bytea *sealed, const uint8 *ad, Size adlen, uint8 *out, Size outlen);
extern void authx_subkey(const char *ctx, uint64 id, uint8 *out, Size len);

/* ----------------------------------------------------------------
 * Redis write-through cache (cache.c, redis.c, worker_redis.c)
 * ----------------------------------------------------------------
 */
#define AUTHX_CACHE_SET		1	/* a live entry */
#define AUTHX_CACHE_REVOKE	2	/* a tombstone: revoked, reject */
#define AUTHX_CACHE_FORGET	3	/* a bare version: not cached, ask Postgres */

#define AUTHX_CACHE_SESSION	's'
#define AUTHX_CACHE_APIKEY	'k'

/* Longest scope list (space-separated) a Redis key entry carries. */
#define AUTHX_CACHE_SCOPES_LEN	96

/* One cache operation, as queued by a backend and applied by the writer. */
typedef struct AuthxCacheOp
{
	uint8		kind;
	char		type;			/* AUTHX_CACHE_SESSION or AUTHX_CACHE_APIKEY */
	bool		from_read;		/* repopulation by a validation, not a write */
	bool		born;			/* a SET of a row just inserted: see apply_lua */
	uint8		hash[AUTHX_HASH_LEN];
	pg_uuid_t	user_id;
	pg_uuid_t	key_id;			/* API keys only */
	int64		version;		/* the row's version */
	TimestampTz expires_at;		/* the session's or key's expiry */
	TimestampTz expire_at;		/* when the Redis key must disappear */
	TimestampTz xact_start;		/* start of the transaction that queued it */
	TimestampTz committed_at;	/* set at commit, for the writer's lag */
	char		scopes[AUTHX_CACHE_SCOPES_LEN]; /* API keys: NUL-terminated */
} AuthxCacheOp;

extern Size authx_cache_shmem_size(void);
extern void authx_cache_shmem_startup(char *base, bool found);
extern bool authx_cache_enabled(void);
extern void authx_cache_lag_percentiles(int64 *p50, int64 *p99);
extern uint64 authx_cache_queue_depth(void);
extern uint64 authx_cache_queue_capacity(void);
extern bool authx_cache_connected(void);
/* the writer's side of the ring */
extern bool authx_cache_writer_attach(Latch *latch);
extern void authx_cache_writer_state(bool connected, const char *run_id, const char *error);
extern void authx_cache_own_lookups(int64 hits, int64 misses);
extern void authx_cache_own_pending(int delta);
extern void authx_cache_lookups_sample(const char *run_id, int64 ks_hits, int64 ks_misses);
extern uint64 authx_cache_begin_resync(void);
extern void authx_cache_end_resync(uint64 pos);
extern bool authx_cache_overflowed(void);
extern int	authx_cache_peek(AuthxCacheOp *out, int max, uint64 *start, uint64 *taken);
extern void authx_cache_advance(uint64 taken, uint64 expected_tail, const AuthxCacheOp *ops, int n);
extern bool authx_cache_writer_may_sleep(void);
extern void authx_cache_writer_awake(void);
extern void authx_cache_note_valid(const uint8 *hash, const pg_uuid_t *user_id, int64 version,
								   TimestampTz expires_at, TimestampTz idle_deadline);
extern bool authx_scopes_join(Datum scopes, char *out, Size outlen);
extern void authx_cache_note_key(const uint8 *hash, const pg_uuid_t *key_id,
								 const pg_uuid_t *user_id, int64 version, TimestampTz expires_at,
								 TimestampTz bound, const char *scopes);
PGDLLEXPORT void authx_redis_writer_main(Datum main_arg);

/* ----------------------------------------------------------------
 * Lockouts (lockout.c)
 * ----------------------------------------------------------------
 */
extern Size authx_lockout_shmem_size(void);
extern int	authx_lockout_persist(void);
extern void authx_lockout_load(void);

/* ----------------------------------------------------------------
 * Audit queue (audit.c) and maintenance worker (worker_maint.c)
 * ----------------------------------------------------------------
 */
extern Size authx_audit_shmem_size(void);
extern int	authx_audit_drain(void);
extern bool authx_in_worker_database(void);
PGDLLEXPORT void authx_maint_main(Datum main_arg);

/* ----------------------------------------------------------------
 * Shared helpers of the hot paths (sessions.c)
 * ----------------------------------------------------------------
 */
extern Oid	authx_need_relid(const char *name, Oid nsp);
extern bool authx_session_live(const pg_uuid_t *id, TimestampTz now, pg_uuid_t *user_id);
extern AttrNumber authx_need_attnum(Oid relid, const char *name);
struct RelationData;
struct TupleTableSlot;
extern bool authx_index_fetch(struct RelationData *rel, Oid indexoid, RegProcedure eqproc,
							  Oid collation, Datum key, struct TupleTableSlot *slot);
extern bool authx_owner_subxact(Oid owner, void (*fn) (void *), void *arg);

/* ----------------------------------------------------------------
 * Rate limits (ratelimit.c)
 * ----------------------------------------------------------------
 */
#define AUTHX_RATE_SUBJECT_LEN	16
#define AUTHX_RATE_NS_APIKEY	1
#define AUTHX_RATE_NS_SUBJECT	2
#define AUTHX_RATE_NS_THREAT	3	/* events per (rule, address) */
#define AUTHX_RATE_NS_SEEN		4	/* (rule, address, value) seen in the window */
#define AUTHX_RATE_NS_FIRED		5	/* (rule, address) fired in the window */

typedef struct AuthxRateResult
{
	bool		allowed;
	bool		evicted;		/* a live bucket was reused for this one */
	bool		unlimited;		/* bypassed or failed open: only allowed is set */
	int64		limit;
	int64		remaining;		/* allowance left after this request */
	int64		reset_after_us; /* until the bucket is full again */
	int64		retry_after_us; /* when denied: until it would pass; -1 never */
} AuthxRateResult;

extern Size authx_rate_shmem_size(void);
extern void authx_rate_shmem_startup(char *base, bool found);
extern void authx_rate_consume(uint8 ns, const uint8 *subject, int64 max, int64 per_us, int64 cost,
							   bool peek, TimestampTz now, AuthxRateResult *out);
extern void authx_rate_apply(const char *subject, int len, int32 max, int64 per_us, int32 cost,
							 bool peek, int store, int fail_mode, AuthxRateResult *out);
extern Datum authx_rate_datum(FunctionCallInfo fcinfo, const AuthxRateResult *rr);
extern int64 authx_rate_per_us(const Interval *per);
extern void authx_rate_check_args(int32 max, int32 cost);

/* Policies and threat rules (policy.c) */
/* details: a Jsonb * or NULL */
extern void authx_threat_observe(const char *event, int len, Datum ip, const pg_uuid_t *user_id,
								 void *details);
extern int	authx_threat_flush(void);
extern void authx_ip_key(Datum ip, uint8 *family, uint8 *bits, uint8 *addr, uint8 *host);
extern Datum authx_inet_datum(uint8 family, uint8 bits, const uint8 *addr);

/* ----------------------------------------------------------------
 * API keys and permissions (apikeys.c, rbac.c)
 * ----------------------------------------------------------------
 */
extern Size authx_apikey_shmem_size(void);
extern void authx_apikey_row_changed(Relation rel, HeapTuple tup);
extern void authx_apikey_all_changed(void);
extern void authx_apikey_shmem_startup(char *base, bool found);
extern int	authx_apikey_usage_persist(void);
extern bool authx_permission_split(const char *s, int len, int *colon);
extern bool authx_permission_covers(const char *g, int glen, const char *w, int wlen, int wcolon);

/* IP blocking (ipblock.c) */
/* usage.c */
#define AUTHX_HIST_BUCKETS	96
extern Size authx_usage_shmem_size(void);
extern void authx_usage_shmem_startup(char *base, bool found);
extern int	authx_usage_drain(void);
extern long authx_usage_due_ms(void);
extern int	authx_hist_bucket(double ms);
extern double authx_hist_upper(int k);
extern void authx_usage_hist(uint64 *counts, uint64 *sum_us);
extern uint64 authx_usage_queue_depth(void);
extern uint64 authx_usage_queue_capacity(void);

extern Size authx_ipblock_shmem_size(void);
extern void authx_ipblock_shmem_startup(char *base, bool found);
extern bool authx_ip_is_blocked(Datum ip);

/* Log redaction (redact.c) */
extern void authx_redact_init(void);

#endif							/* AUTHX_H */

/*-------------------------------------------------------------------------
 *
 * lockout.c
 *		Failed-login counters and lockouts that survive the caller's ROLLBACK.
 *
 * A fixed-size table in shared memory holds one entry per (account, client
 * address) and one per account, each counting failures within
 * authx.lockout_window.  A pair entry reaching authx.lockout_threshold locks
 * the account for that address only; the account entry reaching the higher
 * authx.lockout_account_threshold locks it everywhere.  Lock durations start
 * at authx.lockout_duration and double on every repeat, up to
 * authx.lockout_max_duration.
 *
 * Backends change entries under AUTHX_LOCK_LOCKOUT (exclusive), so
 * concurrent failures are counted exactly, and the change is visible at once,
 * whatever becomes of the caller's transaction.  The maintenance worker
 * copies changed ("dirty") entries into authx.lockouts.  Once per
 * shared-memory lifetime (after a start or crash-restart) that table is
 * loaded back, by the worker or by the first login, whichever comes first.
 *
 * Lookup is open addressing: an entry lives within AUTHX_LOCKOUT_PROBE slots
 * of its hash, and lookups scan the whole window, so freeing a slot needs no
 * tombstone.  When a window is full, the least recently active entry that
 * is not locked is reused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "authx.h"

#define AUTHX_LOCKOUT_PROBE		32
#define AUTHX_IP_TEXT_LEN		48		/* INET6_ADDRSTRLEN + NUL, rounded */

typedef struct AuthxLockoutEntry
{
	uint64		key;			/* 0 = free */
	pg_uuid_t	user_id;
	char		ip[AUTHX_IP_TEXT_LEN];	/* host address as text; "" = account */
	int32		failures;		/* in the window starting at window_start */
	int32		lock_count;		/* lockouts so far, for the doubling */
	TimestampTz window_start;
	TimestampTz locked_until;
	TimestampTz last_activity;
	uint32		version;		/* bumped on every change */
	bool		dirty;			/* changed since last persisted */
} AuthxLockoutEntry;

/* A copy of a dirty entry on its way to the table. */
typedef struct LockoutCopy
{
	int			slot;
	AuthxLockoutEntry e;
} LockoutCopy;

static void lockout_ensure_loaded(void);

static AuthxLockoutEntry *
entries(void)
{
	return (AuthxLockoutEntry *) authx_shared->lockout_entries;
}

Size
authx_lockout_shmem_size(void)
{
	return MAXALIGN(mul_size(sizeof(AuthxLockoutEntry), authx_lockout_slots));
}

/*
 * ip_text
 *		The host part of an inet as text ("" for NULL): 10.0.0.1/24 and
 *		10.0.0.1 count as the same client.
 */
static void
ip_text(Datum ip, bool isnull, char *out)
{
	char	   *s;

	out[0] = '\0';
	if (isnull)
		return;
	s = TextDatumGetCString(DirectFunctionCall1(network_host, ip));
	strlcpy(out, s, AUTHX_IP_TEXT_LEN);
	pfree(s);
}

static uint64
entry_key(const pg_uuid_t *user_id, const char *ip)
{
	uint64		h;

	h = hash_bytes_extended(user_id->data, UUID_LEN, 0);
	h = hash_bytes_extended((const unsigned char *) ip, strlen(ip), h);
	return h == 0 ? 1 : h;
}

/*
 * entry_idle
 *		True when the entry holds nothing worth keeping at time now.
 */
static bool
entry_idle(AuthxLockoutEntry *e, TimestampTz now)
{
	return e->locked_until <= now &&
		(e->failures == 0 ||
		 e->window_start + (int64) authx_lockout_window * USECS_PER_SEC <= now) &&
		(e->lock_count == 0 ||
		 e->last_activity + (int64) authx_lockout_max_duration * USECS_PER_SEC <= now);
}

/*
 * entry_find
 *		The entry for (user_id, ip), or with create a new or reused one, or
 *		NULL.  Caller holds AUTHX_LOCK_LOCKOUT exclusively.
 */
static AuthxLockoutEntry *
entry_find(const pg_uuid_t *user_id, const char *ip, bool create, TimestampTz now)
{
	AuthxLockoutEntry *tab = entries();
	uint64		key = entry_key(user_id, ip);
	int			n = authx_lockout_slots;
	int			start = (int) (key % (uint64) n);
	int			i;
	AuthxLockoutEntry *free_slot = NULL;
	AuthxLockoutEntry *victim = NULL;

	for (i = 0; i < AUTHX_LOCKOUT_PROBE && i < n; i++)
	{
		AuthxLockoutEntry *e = &tab[(start + i) % n];

		if (e->key == key && memcmp(e->user_id.data, user_id->data, UUID_LEN) == 0 &&
			strcmp(e->ip, ip) == 0)
			return e;
		if (!create)
			continue;
		if (e->key == 0 || entry_idle(e, now))
		{
			if (free_slot == NULL)
				free_slot = e;
		}
		else if (e->locked_until <= now &&
				 (victim == NULL || e->last_activity < victim->last_activity))
			victim = e;
	}
	if (!create)
		return NULL;
	if (free_slot == NULL)
		free_slot = victim;
	if (free_slot == NULL)
	{
		/* Every entry in reach is locked: keep the locks, count nothing. */
		authx_stat_add(AUTHX_STAT_LOCKOUT_TABLE_FULL, 1);
		return NULL;
	}
	if (free_slot->key != 0 && !entry_idle(free_slot, now))
		authx_stat_add(AUTHX_STAT_LOCKOUT_EVICTIONS, 1);
	memset(free_slot, 0, sizeof(AuthxLockoutEntry));
	free_slot->key = key;
	free_slot->user_id = *user_id;
	strlcpy(free_slot->ip, ip, AUTHX_IP_TEXT_LEN);
	return free_slot;
}

static void
entry_touch(AuthxLockoutEntry *e, TimestampTz now)
{
	e->last_activity = now;
	e->version++;
	e->dirty = true;
}

/*
 * entry_fail
 *		Count one failure against e with the given threshold; lock when it is
 *		reached.  Returns true when this failure started a lockout.
 */
static bool
entry_fail(AuthxLockoutEntry *e, int threshold, TimestampTz now)
{
	int64		duration;
	int			shift;

	if (e->failures == 0 ||
		e->window_start + (int64) authx_lockout_window * USECS_PER_SEC <= now)
	{
		e->failures = 0;
		e->window_start = now;
	}
	e->failures++;
	entry_touch(e, now);
	if (e->failures < threshold)
		return false;

	/* Lock: base duration doubled per earlier lockout, capped. */
	shift = Min(e->lock_count, 30);
	duration = Min((int64) authx_lockout_duration << shift, (int64) authx_lockout_max_duration);
	e->lock_count++;
	e->locked_until = now + duration * USECS_PER_SEC;
	e->failures = 0;
	e->window_start = now;
	return true;
}

/*
 * count_failure
 *		Count a failure on the (user_id, ip) entry unless it is locked already
 *		(failures during a lockout do not extend it); raise *until to the
 *		entry's lock end.  Returns true when this failure started a lockout.
 *		Caller holds AUTHX_LOCK_LOCKOUT exclusively.
 */
static bool
count_failure(const pg_uuid_t *user_id, const char *ip, int threshold,
			  TimestampTz now, TimestampTz *until)
{
	AuthxLockoutEntry *e = entry_find(user_id, ip, true, now);
	bool		locked = false;

	if (e == NULL)
		return false;
	if (e->locked_until <= now)
		locked = entry_fail(e, threshold, now);
	*until = Max(*until, e->locked_until);
	return locked;
}

/*
 * entry_reset
 *		Forget an entry's failures and lockouts (NULL: nothing to do).
 */
static void
entry_reset(AuthxLockoutEntry *e, TimestampTz now)
{
	if (e == NULL || (e->failures == 0 && e->lock_count == 0 && e->locked_until == 0))
		return;
	e->failures = e->lock_count = 0;
	e->locked_until = 0;
	entry_touch(e, now);
}

/*
 * lockout_args
 *		Common argument handling: user id and the host text of ip.
 */
static pg_uuid_t *
lockout_args(FunctionCallInfo fcinfo, char *ip)
{
	authx_require_shmem();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_id must not be null")));
	ip_text(PG_GETARG_DATUM(1), PG_ARGISNULL(1), ip);
	return PG_GETARG_UUID_P(0);
}

static Datum
locked_until_datum(FunctionCallInfo fcinfo, TimestampTz until, TimestampTz now)
{
	if (until <= now)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(until);
}

PG_FUNCTION_INFO_V1(authx_lockout_state);

/*
 * authx._lockout_state(user_id uuid, ip inet) RETURNS timestamptz
 *		Until when the account is locked for this address (by the pair or the
 *		account entry), or NULL.
 */
Datum
authx_lockout_state(PG_FUNCTION_ARGS)
{
	char		ip[AUTHX_IP_TEXT_LEN];
	pg_uuid_t  *uid = lockout_args(fcinfo, ip);
	TimestampTz now;
	TimestampTz until = 0;
	AuthxLockoutEntry *e;

	lockout_ensure_loaded();
	now = GetCurrentTimestamp();
	LWLockAcquire(authx_lock(AUTHX_LOCK_LOCKOUT), LW_SHARED);
	if ((e = entry_find(uid, ip, false, now)) != NULL)
		until = Max(until, e->locked_until);
	if (ip[0] != '\0' && (e = entry_find(uid, "", false, now)) != NULL)
		until = Max(until, e->locked_until);
	LWLockRelease(authx_lock(AUTHX_LOCK_LOCKOUT));
	return locked_until_datum(fcinfo, until, now);
}

PG_FUNCTION_INFO_V1(authx_lockout_fail);

/*
 * authx._lockout_fail(user_id uuid, ip inet) RETURNS timestamptz
 *		Count a failed login for the pair and the account.  Returns until
 *		when the account is now locked for this address, or NULL.
 */
Datum
authx_lockout_fail(PG_FUNCTION_ARGS)
{
	char		ip[AUTHX_IP_TEXT_LEN];
	pg_uuid_t  *uid = lockout_args(fcinfo, ip);
	TimestampTz now;
	TimestampTz until = 0;
	bool		locked = false;

	lockout_ensure_loaded();
	now = GetCurrentTimestamp();
	LWLockAcquire(authx_lock(AUTHX_LOCK_LOCKOUT), LW_EXCLUSIVE);
	if (ip[0] != '\0')
		locked |= count_failure(uid, ip, authx_lockout_threshold, now, &until);
	/* Without an address only the account counter exists: use the pair's
	 * threshold then, as all failures come from "one" unknown client. */
	if (ip[0] == '\0')
		locked |= count_failure(uid, "", authx_lockout_threshold, now, &until);
	else if (authx_lockout_account_threshold > 0)
		locked |= count_failure(uid, "", authx_lockout_account_threshold, now, &until);
	LWLockRelease(authx_lock(AUTHX_LOCK_LOCKOUT));

	authx_stat_add(AUTHX_STAT_LOGIN_FAILURES_COUNTED, 1);
	if (locked)
	{
		authx_stat_add(AUTHX_STAT_LOCKOUTS, 1);
		authx_wake_maintenance();
	}
	return locked_until_datum(fcinfo, until, now);
}

PG_FUNCTION_INFO_V1(authx_lockout_clear);

/*
 * authx._lockout_clear(user_id uuid, ip inet) RETURNS void
 *		After a successful login: forget the pair's failures and lockouts.
 *		The account-wide counter is left to expire, so a real user's
 *		success does not reset a distributed attacker's count.
 *		With ip NULL (an administrator's unlock): clear every entry of the
 *		user, the account-wide one included.
 */
Datum
authx_lockout_clear(PG_FUNCTION_ARGS)
{
	char		ip[AUTHX_IP_TEXT_LEN];
	pg_uuid_t  *uid = lockout_args(fcinfo, ip);
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	LWLockAcquire(authx_lock(AUTHX_LOCK_LOCKOUT), LW_EXCLUSIVE);
	if (ip[0] != '\0')
		entry_reset(entry_find(uid, ip, false, now), now);
	else
		for (i = 0; i < authx_lockout_slots; i++)
			if (entries()[i].key != 0 &&
				memcmp(entries()[i].user_id.data, uid->data, UUID_LEN) == 0)
				entry_reset(&entries()[i], now);
	LWLockRelease(authx_lock(AUTHX_LOCK_LOCKOUT));
	PG_RETURN_VOID();
}

/*
 * authx_lockout_persist
 *		Worker side: write changed entries to authx.lockouts in one
 *		transaction; mark them clean afterwards unless they changed again
 *		meanwhile.  Returns the number written.
 */
int
authx_lockout_persist(void)
{
	LockoutCopy *copies;
	int			ncopies = 0;
	int			i;
	SPIPlanPtr	plan;
	Oid			argtypes[7] = {UUIDOID, TEXTOID, INT4OID, INT4OID,
	TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};

	LWLockAcquire(authx_lock(AUTHX_LOCK_LOCKOUT), LW_SHARED);
	for (i = 0; i < authx_lockout_slots; i++)
		if (entries()[i].dirty)
			ncopies++;
	if (ncopies == 0)
	{
		LWLockRelease(authx_lock(AUTHX_LOCK_LOCKOUT));
		return 0;
	}
	copies = palloc(sizeof(LockoutCopy) * ncopies);
	ncopies = 0;
	for (i = 0; i < authx_lockout_slots; i++)
		if (entries()[i].dirty)
		{
			copies[ncopies].slot = i;
			copies[ncopies].e = entries()[i];
			ncopies++;
		}
	LWLockRelease(authx_lock(AUTHX_LOCK_LOCKOUT));

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "authx: persisting lockouts");
	/* Never wait long on a row someone holds: the next turn retries. */
	SPI_execute("SELECT pg_catalog.set_config('lock_timeout', '1s', true)", false, 0);
	plan = SPI_prepare("INSERT INTO authx.lockouts AS l (user_id, ip, failures, lock_count, window_start, locked_until, updated_at) "
					   "VALUES ($1, nullif($2, '')::inet, $3, $4, $5, $6, $7) "
					   "ON CONFLICT (user_id, ip) DO UPDATE SET failures = EXCLUDED.failures, "
					   "lock_count = EXCLUDED.lock_count, window_start = EXCLUDED.window_start, "
					   "locked_until = EXCLUDED.locked_until, updated_at = EXCLUDED.updated_at",
					   7, argtypes);
	if (plan == NULL)
		elog(ERROR, "authx: could not prepare lockout upsert: %s",
			 SPI_result_code_string(SPI_result));
	for (i = 0; i < ncopies; i++)
	{
		AuthxLockoutEntry *e = &copies[i].e;
		Datum		values[7];
		char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

		values[0] = UUIDPGetDatum(&e->user_id);
		values[1] = CStringGetTextDatum(e->ip);
		values[2] = Int32GetDatum(e->failures);
		values[3] = Int32GetDatum(e->lock_count);
		values[4] = TimestampTzGetDatum(e->window_start);
		values[5] = TimestampTzGetDatum(e->locked_until);
		values[6] = TimestampTzGetDatum(e->last_activity);
		if (e->window_start == 0)
			nulls[4] = 'n';
		if (e->locked_until == 0)
			nulls[5] = 'n';
		if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "authx: lockout upsert failed");
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	LWLockAcquire(authx_lock(AUTHX_LOCK_LOCKOUT), LW_EXCLUSIVE);
	for (i = 0; i < ncopies; i++)
	{
		AuthxLockoutEntry *e = &entries()[copies[i].slot];

		if (e->key == copies[i].e.key && e->version == copies[i].e.version)
			e->dirty = false;
	}
	LWLockRelease(authx_lock(AUTHX_LOCK_LOCKOUT));
	return ncopies;
}

/*
 * lockout_load_here
 *		Bring back the live lockouts and counting windows from
 *		authx.lockouts, inside the current transaction, unless that was done
 *		since startup.  The rows are read first and merged under the lock;
 *		whoever gets the lock first (the worker, or the first login after a
 *		restart) applies them, the other finds lockout_loaded set.
 */
static void
lockout_load_here(void)
{
	uint64		i;
	int			rc;
	TimestampTz now = GetCurrentTimestamp();

	SPI_connect();
	rc = SPI_execute("SELECT user_id, coalesce(host(ip), ''), failures, lock_count, "
					 "coalesce(window_start, '-infinity'), coalesce(locked_until, '-infinity'), updated_at "
					 "FROM authx.lockouts", true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "authx: could not read authx.lockouts");

	LWLockAcquire(authx_lock(AUTHX_LOCK_LOCKOUT), LW_EXCLUSIVE);
	for (i = 0; i < SPI_processed && !authx_shared->lockout_loaded; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		pg_uuid_t  *uid = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *ip = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		AuthxLockoutEntry probe;
		AuthxLockoutEntry *e;

		probe.failures = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		probe.lock_count = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		probe.window_start = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
		probe.locked_until = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
		probe.last_activity = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &isnull));
		if (TIMESTAMP_NOT_FINITE(probe.window_start))
			probe.window_start = 0;
		if (TIMESTAMP_NOT_FINITE(probe.locked_until))
			probe.locked_until = 0;
		if (entry_idle(&probe, now) || (e = entry_find(uid, ip, true, now)) == NULL)
			continue;
		e->failures = probe.failures;
		e->lock_count = probe.lock_count;
		e->window_start = probe.window_start;
		e->locked_until = probe.locked_until;
		e->last_activity = probe.last_activity;
	}
	authx_shared->lockout_loaded = true;
	LWLockRelease(authx_lock(AUTHX_LOCK_LOCKOUT));
	SPI_finish();
}

/*
 * lockout_ensure_loaded
 *		Backends: before the first lockout decision after a server start,
 *		make sure the persisted state is in memory, so that a restart never
 *		opens a window in which a locked account can log in, and no entry
 *		made in such a window can shadow the saved one.
 */
static void
lockout_ensure_loaded(void)
{
	if (!authx_shared->lockout_loaded)
		lockout_load_here();
}

/*
 * authx_lockout_load
 *		Worker side: the same, in a transaction of its own.
 */
void
authx_lockout_load(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	lockout_load_here();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

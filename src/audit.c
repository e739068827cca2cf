/*-------------------------------------------------------------------------
 *
 * audit.c
 *		Security events that survive the caller's ROLLBACK.
 *
 * authx.audit() copies an event into a ring buffer in shared memory at once,
 * outside any transaction; the maintenance worker drains the ring into
 * authx.audit_log in batches, one transaction per batch, and only then
 * moves the tail, so a worker crash re-sends rather than loses.  Backends
 * write records under AUTHX_LOCK_AUDIT_QUEUE (exclusive); the worker is the
 * single reader and takes the lock only to read the head and to move the
 * tail.  A full ring, a server without the preloaded library, or a database
 * other than authx.database fall back to a synchronous insert in the
 * caller's transaction: an event is never dropped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "authx.h"

#define AUTHX_EVENT_TYPE_MAX	64
#define AUTHX_EVENT_UA_MAX		512
#define AUTHX_EVENT_DETAILS_MAX	8192
#define AUTHX_DRAIN_BATCH		1000

#define AUTHX_REC_PAD			0
#define AUTHX_REC_EVENT			1

/*
 * One record in the ring.  The payload follows the header: event type,
 * inet varlena, user agent, jsonb varlena, in that order.  len is
 * MAXALIGN'ed so the next header is aligned; a record never wraps (a PAD
 * record fills the end of the buffer instead).
 */
typedef struct AuthxEventRec
{
	uint32		len;
	uint32		kind;
	uint64		seq;
	TimestampTz at;
	pg_uuid_t	user_id;
	bool		has_user;
	uint8		severity;
	uint16		type_len;
	uint16		ip_len;
	uint16		ua_len;
	uint32		details_len;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} AuthxEventRec;

static const char *const severities[] = {"info", "low", "medium", "high", "critical"};

static const char *audit_insert_sql =
"INSERT INTO authx.audit_log (at, event_type, severity, user_id, ip, user_agent, details) "
"VALUES ($1, $2, $3::authx.severity, $4, $5, $6, $7)";

/* Sent for events at or above authx.alert_min_severity, as they are written. */
static const char *alert_sql =
"SELECT authx._alert($1, $2, $3, $4, $5, $6, $7)";

static Oid	audit_argtypes[7] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, UUIDOID, INETOID, TEXTOID, JSONBOID};

/* An event decoded for insertion. */
typedef struct AuthxEvent
{
	TimestampTz at;
	text	   *event_type;
	int			severity;
	pg_uuid_t  *user_id;
	inet	   *ip;
	text	   *user_agent;
	Jsonb	   *details;
} AuthxEvent;

Size
authx_audit_shmem_size(void)
{
	return MAXALIGN((Size) authx_audit_queue_size * 1024);
}

/*
 * authx_in_worker_database
 *		Is this backend connected to authx.database, the one the worker
 *		serves?  Cached: neither can change during a backend's life.
 */
bool
authx_in_worker_database(void)
{
	static int	cached = -1;

	if (cached < 0)
	{
		char	   *name = get_database_name(MyDatabaseId);

		cached = (authx_database != NULL && name != NULL &&
				  strcmp(name, authx_database) == 0) ? 1 : 0;
	}
	return cached == 1;
}

/*
 * audit_insert
 *		Insert one event with SPI in the current transaction.  plan may be
 *		NULL, then the statement is planned for this call.
 */
static void
audit_args(const AuthxEvent *ev, Datum *values, char *nulls)
{
	values[0] = TimestampTzGetDatum(ev->at);
	values[1] = PointerGetDatum(ev->event_type);
	values[2] = CStringGetTextDatum(severities[ev->severity]);
	values[3] = UUIDPGetDatum(ev->user_id);
	values[4] = InetPGetDatum(ev->ip);
	values[5] = PointerGetDatum(ev->user_agent);
	values[6] = JsonbPGetDatum(ev->details);
	nulls[0] = nulls[1] = nulls[2] = nulls[6] = ' ';
	nulls[3] = ev->user_id ? ' ' : 'n';
	nulls[4] = ev->ip ? ' ' : 'n';
	nulls[5] = ev->user_agent ? ' ' : 'n';
}

static void
audit_insert(AuthxEvent *ev, SPIPlanPtr plan)
{
	Datum		values[7];
	char		nulls[7];
	int			rc;

	audit_args(ev, values, nulls);
	if (plan)
		rc = SPI_execute_plan(plan, values, nulls, false, 0);
	else
		rc = SPI_execute_with_args(audit_insert_sql, 7, audit_argtypes,
								   values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "authx: audit insert failed: %s", SPI_result_code_string(rc));
}

/*
 * audit_alert
 *		NOTIFY authx_alerts about the event (authx._alert builds the
 *		payload); sent when the worker's transaction commits.
 */
static void
audit_alert(AuthxEvent *ev, SPIPlanPtr *plan)
{
	Datum		values[7];
	char		nulls[7];

	if (*plan == NULL)
	{
		*plan = SPI_prepare(alert_sql, 7, audit_argtypes);
		if (*plan == NULL)
			elog(ERROR, "authx: could not prepare the alert: %s", SPI_result_code_string(SPI_result));
	}
	audit_args(ev, values, nulls);
	if (SPI_execute_plan(*plan, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "authx: could not send an alert");
}

/*
 * audit_insert_sync
 *		The fallback: the event becomes part of the caller's transaction.
 */
static void
audit_insert_sync(AuthxEvent *ev)
{
	SPI_connect();
	audit_insert(ev, NULL);
	SPI_finish();
}

/*
 * audit_enqueue
 *		Copy an event into the ring.  Returns false when it does not fit.
 */
static bool
audit_enqueue(AuthxEvent *ev)
{
	Size		type_len = VARSIZE_ANY_EXHDR(ev->event_type);
	Size		ip_len = ev->ip ? VARSIZE(ev->ip) : 0;
	Size		ua_len = ev->user_agent ? VARSIZE_ANY_EXHDR(ev->user_agent) : 0;
	Size		details_len = VARSIZE(ev->details);
	Size		need;
	Size		size = authx_shared->audit_size;
	uint64		head;
	Size		off;
	Size		contiguous;
	AuthxEventRec *rec;
	char	   *p;

	need = MAXALIGN(offsetof(AuthxEventRec, data) + type_len + ip_len + ua_len + details_len);

	LWLockAcquire(authx_lock(AUTHX_LOCK_AUDIT_QUEUE), LW_EXCLUSIVE);
	head = authx_shared->audit_head;
	off = head % size;
	contiguous = size - off;
	if (head + need + (contiguous < need ? contiguous : 0) - authx_shared->audit_tail > size)
	{
		LWLockRelease(authx_lock(AUTHX_LOCK_AUDIT_QUEUE));
		return false;
	}
	if (contiguous < need)
	{
		rec = (AuthxEventRec *) (authx_shared->audit_buf + off);
		rec->len = contiguous;
		rec->kind = AUTHX_REC_PAD;
		head += contiguous;
		off = 0;
	}

	rec = (AuthxEventRec *) (authx_shared->audit_buf + off);
	rec->len = need;
	rec->kind = AUTHX_REC_EVENT;
	rec->seq = ++authx_shared->audit_enq_seq;
	rec->at = ev->at;
	rec->has_user = ev->user_id != NULL;
	if (ev->user_id)
		rec->user_id = *ev->user_id;
	rec->severity = ev->severity;
	rec->type_len = type_len;
	rec->ip_len = ip_len;
	rec->ua_len = ua_len;
	rec->details_len = details_len;
	p = rec->data;
	memcpy(p, VARDATA_ANY(ev->event_type), type_len);
	p += type_len;
	if (ip_len)
		memcpy(p, ev->ip, ip_len);
	p += ip_len;
	if (ua_len)
		memcpy(p, VARDATA_ANY(ev->user_agent), ua_len);
	p += ua_len;
	memcpy(p, ev->details, details_len);

	authx_shared->audit_head = head + need;
	LWLockRelease(authx_lock(AUTHX_LOCK_AUDIT_QUEUE));
	return true;
}

/*
 * audit_decode
 *		Turn a record (already copied out of shared memory) into an event in
 *		CurrentMemoryContext.  Varlenas get their own aligned copies.
 */
static void
audit_decode(AuthxEventRec *rec, AuthxEvent *ev)
{
	char	   *p = rec->data;

	ev->at = rec->at;
	ev->event_type = cstring_to_text_with_len(p, rec->type_len);
	p += rec->type_len;
	ev->severity = rec->severity;
	ev->user_id = NULL;
	if (rec->has_user)
	{
		ev->user_id = palloc(sizeof(pg_uuid_t));
		*ev->user_id = rec->user_id;
	}
	ev->ip = NULL;
	if (rec->ip_len)
	{
		ev->ip = palloc(rec->ip_len);
		memcpy(ev->ip, p, rec->ip_len);
	}
	p += rec->ip_len;
	ev->user_agent = rec->ua_len ? cstring_to_text_with_len(p, rec->ua_len) : NULL;
	p += rec->ua_len;
	ev->details = palloc(rec->details_len);
	memcpy(ev->details, p, rec->details_len);
}

/*
 * authx_audit_drain
 *		Worker side: write up to AUTHX_DRAIN_BATCH queued events in one
 *		transaction of their own, then release their space.  Returns the
 *		number written (0 when the ring is empty).  Raises on SQL failure,
 *		leaving the events queued for the next attempt.
 */
int
authx_audit_drain(void)
{
	uint64		tail;
	uint64		head;
	uint64		last_seq = 0;
	Size		size = authx_shared->audit_size;
	int			n = 0;
	int			alerts = 0;
	SPIPlanPtr	plan;
	SPIPlanPtr	alert_plan = NULL;

	LWLockAcquire(authx_lock(AUTHX_LOCK_AUDIT_QUEUE), LW_SHARED);
	tail = authx_shared->audit_tail;
	head = authx_shared->audit_head;
	LWLockRelease(authx_lock(AUTHX_LOCK_AUDIT_QUEUE));
	if (tail == head)
		return 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "authx: writing audit events");
	plan = SPI_prepare(audit_insert_sql, 7, audit_argtypes);
	if (plan == NULL)
		elog(ERROR, "authx: could not prepare audit insert: %s",
			 SPI_result_code_string(SPI_result));

	/* The region [tail, head) is ours alone until we move the tail. */
	while (tail < head && n < AUTHX_DRAIN_BATCH)
	{
		AuthxEventRec *shared_rec = (AuthxEventRec *) (authx_shared->audit_buf + tail % size);
		AuthxEventRec *rec;
		AuthxEvent	ev;

		if (shared_rec->kind == AUTHX_REC_PAD)
		{
			tail += shared_rec->len;
			continue;
		}
		rec = palloc(shared_rec->len);
		memcpy(rec, shared_rec, shared_rec->len);
		tail += rec->len;
		audit_decode(rec, &ev);
		audit_insert(&ev, plan);
		if (ev.severity >= authx_alert_min_severity)
		{
			audit_alert(&ev, &alert_plan);
			alerts++;
		}
		last_seq = rec->seq;
		n++;
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	LWLockAcquire(authx_lock(AUTHX_LOCK_AUDIT_QUEUE), LW_EXCLUSIVE);
	authx_shared->audit_tail = tail;
	LWLockRelease(authx_lock(AUTHX_LOCK_AUDIT_QUEUE));
	if (n > 0)
	{
		pg_atomic_write_u64(&authx_shared->audit_done_seq, last_seq);
		authx_stat_add(AUTHX_STAT_AUDIT_WRITTEN, n);
		authx_stat_add(AUTHX_STAT_AUDIT_BATCHES, 1);
		authx_stat_add(AUTHX_STAT_ALERTS, alerts);
	}
	ConditionVariableBroadcast(&authx_shared->audit_cv);
	return n;
}

/*
 * check_event_type
 *		1-64 characters from [a-z0-9_.:-], e.g. "login.failed".
 */
static void
check_event_type(text *t)
{
	int			len = VARSIZE_ANY_EXHDR(t);
	const char *s = VARDATA_ANY(t);
	int			i;
	bool		ok = len > 0 && len <= AUTHX_EVENT_TYPE_MAX;

	for (i = 0; ok && i < len; i++)
		ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
			s[i] == '_' || s[i] == '.' || s[i] == ':' || s[i] == '-';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid audit event type \"%s\"", text_to_cstring(t)),
				 errdetail("An event type is 1 to %d characters from a-z, 0-9, '_', '.', ':' and '-'.",
						   AUTHX_EVENT_TYPE_MAX),
				 errhint("Use a lower-case dotted name such as \"login.failed\".")));
}

static int
parse_severity(text *t)
{
	char	   *s = text_to_cstring(t);
	int			i;

	for (i = 0; i < (int) lengthof(severities); i++)
		if (strcmp(s, severities[i]) == 0)
			return i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid audit severity \"%s\"", s),
			 errhint("Use one of info, low, medium, high, critical.")));
	return 0;					/* keep compiler quiet */
}

PG_FUNCTION_INFO_V1(authx_audit);

/*
 * authx.audit(event_type text, severity text, user_id uuid, ip inet,
 *			   details jsonb, user_agent text) RETURNS void
 *		Record a security event that survives the caller's ROLLBACK.
 */
Datum
authx_audit(PG_FUNCTION_ARGS)
{
	AuthxEvent	ev;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("audit event type and severity must not be null"),
				 errhint("Pass an event type such as \"login.failed\" and a severity such as \"high\".")));

	ev.at = GetCurrentTimestamp();
	ev.event_type = PG_GETARG_TEXT_PP(0);
	check_event_type(ev.event_type);
	ev.severity = parse_severity(PG_GETARG_TEXT_PP(1));
	ev.user_id = PG_ARGISNULL(2) ? NULL : PG_GETARG_UUID_P(2);
	ev.ip = PG_ARGISNULL(3) ? NULL : (inet *) PG_DETOAST_DATUM(PG_GETARG_DATUM(3));
	if (PG_ARGISNULL(4))
		ev.details = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	else
		ev.details = PG_GETARG_JSONB_P(4);
	if (!JB_ROOT_IS_OBJECT(ev.details))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("audit details must be a JSON object"),
				 errhint("Pass details such as '{\"reason\": \"bad_password\"}'.")));
	if (VARSIZE(ev.details) > AUTHX_EVENT_DETAILS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("audit details are too large"),
				 errdetail("The limit is %d bytes; these take %zu.",
						   AUTHX_EVENT_DETAILS_MAX, (Size) VARSIZE(ev.details)),
				 errhint("Keep only the fields needed to investigate the event.")));
	ev.user_agent = NULL;
	if (!PG_ARGISNULL(5))
	{
		text	   *ua = PG_GETARG_TEXT_PP(5);
		int			len = pg_mbcliplen(VARDATA_ANY(ua), VARSIZE_ANY_EXHDR(ua), AUTHX_EVENT_UA_MAX);

		ev.user_agent = cstring_to_text_with_len(VARDATA_ANY(ua), len);
	}

	/* No worker runs on a standby, and nothing may be inserted there. */
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot record audit events during recovery"),
				 errhint("Call authx functions that record events on the primary server.")));

	/* Threat rules count the event whatever becomes of the caller. */
	if (ev.ip != NULL)
		authx_threat_observe(VARDATA_ANY(ev.event_type), VARSIZE_ANY_EXHDR(ev.event_type),
							 PointerGetDatum(ev.ip), ev.user_id, ev.details);

	if (authx_shared != NULL && authx_in_worker_database())
	{
		if (audit_enqueue(&ev))
		{
			authx_stat_add(AUTHX_STAT_AUDIT_ENQUEUED, 1);
			authx_wake_maintenance();
			PG_RETURN_VOID();
		}
		authx_stat_add(AUTHX_STAT_AUDIT_SYNC_FALLBACKS, 1);
	}
	audit_insert_sync(&ev);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(authx_audit_flush);

/*
 * authx.audit_flush(timeout interval) RETURNS void
 *		Wait until every event queued before the call is in audit_log.
 *		Raises 55000 when the worker does not get there within the timeout.
 */
Datum
authx_audit_flush(PG_FUNCTION_ARGS)
{
	Interval   *timeout = PG_GETARG_INTERVAL_P(0);
	int64		timeout_ms;
	uint64		target;
	TimestampTz deadline;

	authx_require_shmem();
	timeout_ms = authx_interval_ms(timeout);

	LWLockAcquire(authx_lock(AUTHX_LOCK_AUDIT_QUEUE), LW_SHARED);
	target = authx_shared->audit_enq_seq;
	LWLockRelease(authx_lock(AUTHX_LOCK_AUDIT_QUEUE));
	if (pg_atomic_read_u64(&authx_shared->audit_done_seq) >= target)
		PG_RETURN_VOID();

	authx_wake_maintenance();
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	ConditionVariablePrepareToSleep(&authx_shared->audit_cv);
	while (pg_atomic_read_u64(&authx_shared->audit_done_seq) < target)
	{
		long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

		if (remaining <= 0)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("audit events were not written within the timeout"),
					 errdetail("%llu events are still queued.",
							   (unsigned long long) (target - pg_atomic_read_u64(&authx_shared->audit_done_seq))),
					 errhint("Check that the authx maintenance worker runs in database \"%s\" (authx.database) and has the extension installed.",
							 authx_database ? authx_database : "")));
		}
		/* Wake now and then regardless: a broadcast could come in between. */
		(void) ConditionVariableTimedSleep(&authx_shared->audit_cv, Min(remaining, 1000),
										   PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_VOID();
}

/*-------------------------------------------------------------------------
 *
 * sessions.c
 *		Session tokens and the hot path: authx.session_validate.
 *
 * Runs in backends.  session_validate does no planning and no SPI on the
 * common path: it hashes the token, walks the unique index on
 * sessions.token_hash directly, and checks expiry, idleness and revocation
 * in C.  It reads no user row: disabling or deleting a user revokes the
 * user's sessions (a trigger on users.status), so the session row alone
 * decides.  Relation and index OIDs and attribute numbers are looked up
 * once per backend and forgotten by a relcache callback whenever one of
 * those relations changes.
 * Only when a session's last_seen_at is older than authx.touch_interval does
 * it write (a kept SPI plan, run as the table owner, SKIP LOCKED so it never
 * waits behind a revocation).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "authx.h"

/* Why a session is not valid; AUTHX_SESSION_OK when it is. */
typedef enum SessionVerdict
{
	AUTHX_SESSION_OK,
	AUTHX_SESSION_UNKNOWN,
	AUTHX_SESSION_REVOKED,
	AUTHX_SESSION_EXPIRED,
	AUTHX_SESSION_IDLE
} SessionVerdict;

/* What the hot path needs to know about the schema, per backend. */
typedef struct SessionSchema
{
	bool		valid;
	Oid			sessions;
	Oid			sessions_token_idx;
	Oid			sessions_pkey;
	AttrNumber	s_id;
	AttrNumber	s_token_hash;
	AttrNumber	s_user_id;
	AttrNumber	s_expires_at;
	AttrNumber	s_idle_timeout;
	AttrNumber	s_last_seen_at;
	AttrNumber	s_revoked_at;
	AttrNumber	s_version;
} SessionSchema;

/* A session row as read by the hot path. */
typedef struct SessionRow
{
	pg_uuid_t	id;
	pg_uuid_t	user_id;
	TimestampTz expires_at;
	TimestampTz last_seen_at;
	int32		idle_timeout;
	int64		version;
} SessionRow;

static SessionSchema schema;
static bool callback_registered = false;

static SPIPlanPtr touch_plan = NULL;

/*
 * schema_invalidate
 *		Relcache callback: any change to one of our relations (or a full
 *		reset, relid = InvalidOid) makes us look everything up again.
 */
static void
schema_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == schema.sessions || relid == schema.sessions_token_idx ||
		relid == schema.sessions_pkey)
		schema.valid = false;
}

Oid
authx_need_relid(const char *name, Oid nsp)
{
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relation \"authx.%s\" does not exist", name),
				 errhint("Reinstall the extension with DROP EXTENSION authx; CREATE EXTENSION authx.")));
	return relid;
}

AttrNumber
authx_need_attnum(Oid relid, const char *name)
{
	AttrNumber	att = get_attnum(relid, name);

	if (att == InvalidAttrNumber)
		elog(ERROR, "authx: column \"%s\" missing from relation %u", name, relid);
	return att;
}

/*
 * schema_ensure
 *		Fill the per-backend schema cache if a callback emptied it.
 */
static void
schema_ensure(void)
{
	Oid			nsp;

	if (schema.valid)
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(schema_invalidate, (Datum) 0);
		callback_registered = true;
	}
	nsp = get_namespace_oid("authx", false);
	schema.sessions = authx_need_relid("sessions", nsp);
	schema.sessions_token_idx = authx_need_relid("sessions_token_hash_key", nsp);
	schema.sessions_pkey = authx_need_relid("sessions_pkey", nsp);
	schema.s_id = authx_need_attnum(schema.sessions, "id");
	schema.s_token_hash = authx_need_attnum(schema.sessions, "token_hash");
	schema.s_user_id = authx_need_attnum(schema.sessions, "user_id");
	schema.s_expires_at = authx_need_attnum(schema.sessions, "expires_at");
	schema.s_idle_timeout = authx_need_attnum(schema.sessions, "idle_timeout");
	schema.s_last_seen_at = authx_need_attnum(schema.sessions, "last_seen_at");
	schema.s_revoked_at = authx_need_attnum(schema.sessions, "revoked_at");
	schema.s_version = authx_need_attnum(schema.sessions, "version");
	schema.valid = true;
}

/*
 * authx_index_fetch
 *		Fetch the one row whose indexed (single) column equals key under
 *		collation, into slot, with all attributes deformed.  Uses the active
 *		snapshot.
 */
bool
authx_index_fetch(Relation rel, Oid indexoid, RegProcedure eqproc, Oid collation, Datum key,
				  TupleTableSlot *slot)
{
	Relation	idx = index_open(indexoid, AccessShareLock);
	ScanKeyData skey;
	IndexScanDesc scan;
	bool		found;

	ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid, collation, eqproc, key);
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
		slot_getallattrs(slot);
	index_endscan(scan);
	/* Locks stay until the end of the transaction, as for any query. */
	index_close(idx, NoLock);
	return found;
}

/*
 * session_fetch
 *		Find the session whose indexed column equals key and judge it at now.
 *		With hash (a lookup by token digest) the stored digest is compared
 *		again in constant time.  Fills *row when the session exists; *owner
 *		gets the owner of the sessions table (for the touch).
 */
static SessionVerdict
session_fetch(Oid indexoid, RegProcedure eqproc, Datum key, const uint8 *hash, TimestampTz now,
			  SessionRow *row, Oid *owner)
{
	Relation	srel;
	TupleTableSlot *slot;
	SessionVerdict verdict = AUTHX_SESSION_OK;
	bytea	   *stored;

	srel = table_open(schema.sessions, AccessShareLock);
	*owner = srel->rd_rel->relowner;
	slot = table_slot_create(srel, NULL);
	if (!authx_index_fetch(srel, indexoid, eqproc, InvalidOid, key, slot))
		verdict = AUTHX_SESSION_UNKNOWN;
	else
	{
		/* Belt and braces: the index compared digests; compare in constant time. */
		stored = DatumGetByteaPP(slot->tts_values[schema.s_token_hash - 1]);
		if (hash != NULL &&
			(VARSIZE_ANY_EXHDR(stored) != AUTHX_HASH_LEN ||
			 !authx_equal_ct(VARDATA_ANY(stored), hash, AUTHX_HASH_LEN)))
			verdict = AUTHX_SESSION_UNKNOWN;
		else
		{
			row->id = *DatumGetUUIDP(slot->tts_values[schema.s_id - 1]);
			row->user_id = *DatumGetUUIDP(slot->tts_values[schema.s_user_id - 1]);
			row->expires_at = DatumGetTimestampTz(slot->tts_values[schema.s_expires_at - 1]);
			row->last_seen_at = DatumGetTimestampTz(slot->tts_values[schema.s_last_seen_at - 1]);
			row->idle_timeout = DatumGetInt32(slot->tts_values[schema.s_idle_timeout - 1]);
			row->version = DatumGetInt64(slot->tts_values[schema.s_version - 1]);
			if (!slot->tts_isnull[schema.s_revoked_at - 1])
				verdict = AUTHX_SESSION_REVOKED;
			else if (row->expires_at <= now)
				verdict = AUTHX_SESSION_EXPIRED;
			else if (row->idle_timeout > 0 &&
					 row->last_seen_at + (int64) row->idle_timeout * USECS_PER_SEC <= now)
				verdict = AUTHX_SESSION_IDLE;
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(srel, NoLock);
	return verdict;
}

/* The session whose token hashes to hash, judged at now. */
static SessionVerdict
session_lookup(const uint8 *hash, TimestampTz now, SessionRow *row, Oid *owner)
{
	bytea	   *key;

	schema_ensure();
	key = palloc(VARHDRSZ + AUTHX_HASH_LEN);
	SET_VARSIZE(key, VARHDRSZ + AUTHX_HASH_LEN);
	memcpy(VARDATA(key), hash, AUTHX_HASH_LEN);
	return session_fetch(schema.sessions_token_idx, F_BYTEAEQ, PointerGetDatum(key), hash, now, row, owner);
}

/*
 * authx_session_live
 *		Is session id live at now: not revoked, not expired, not idle?  Does
 *		not touch it.  (Access tokens name their session; token_verify.)
 */
bool
authx_session_live(const pg_uuid_t *id, TimestampTz now, pg_uuid_t *user_id)
{
	SessionRow	row;
	Oid			owner;
	pg_uuid_t	key = *id;

	schema_ensure();
	if (session_fetch(schema.sessions_pkey, F_UUID_EQ, UUIDPGetDatum(&key), NULL, now, &row, &owner)
		!= AUTHX_SESSION_OK)
		return false;
	if (user_id != NULL)
		*user_id = row.user_id;
	return true;
}

/*
 * touch_sql
 *		Run the kept touch plan.  Every operator is qualified: the caller's
 *		search_path must not matter, as this runs as the table owner.
 */
static void
touch_sql(SessionRow *row, TimestampTz now, Datum ip, bool ip_null)
{
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ip_null ? 'n' : ' '};

	SPI_connect();
	if (touch_plan == NULL)
	{
		Oid			argtypes[3] = {UUIDOID, TIMESTAMPTZOID, INETOID};

		touch_plan = authx_keep_plan("UPDATE authx.sessions SET last_seen_at = $2, "
									 "last_ip = COALESCE($3, last_ip) "
									 "WHERE id OPERATOR(pg_catalog.=) "
									 "(SELECT s.id FROM authx.sessions s WHERE s.id OPERATOR(pg_catalog.=) $1 "
									 "FOR UPDATE SKIP LOCKED)",
									 3, argtypes);
	}
	values[0] = UUIDPGetDatum(&row->id);
	values[1] = TimestampTzGetDatum(now);
	values[2] = ip;
	if (SPI_execute_plan(touch_plan, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "authx: session touch failed");
	SPI_finish();
}

/*
 * authx_owner_subxact
 *		Run fn(arg) as owner, in a subtransaction, for a write the caller
 *		may skip: a concurrency failure (a REPEATABLE READ caller whose
 *		snapshot predates another write gets 40001; a deadlock; a lock not
 *		available) is swallowed and false returned.  Anything else (a
 *		cancel, say) is re-thrown after the subtransaction is rolled back.
 *		Skipped (false) in read-only transactions and on standbys.
 */
bool
authx_owner_subxact(Oid owner, void (*fn) (void *), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Oid			save_userid;
	int			save_sec;
	volatile bool done = false;

	if (XactReadOnly || RecoveryInProgress())
		return false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	/* Aborting the subtransaction restores the caller's identity itself. */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		fn(arg);
		SetUserIdAndSecContext(save_userid, save_sec);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		done = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/*
		 * Our subtransaction is rolled back first, whatever happens next: a
		 * caller's exception block must find its own subtransaction current.
		 */
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode != ERRCODE_T_R_SERIALIZATION_FAILURE &&
			edata->sqlerrcode != ERRCODE_T_R_DEADLOCK_DETECTED &&
			edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		ereport(DEBUG1,
				(errmsg_internal("authx: touch skipped: %s", edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return done;
}

/* What session_touch hands to touch_sql through authx_owner_subxact. */
typedef struct TouchArgs
{
	SessionRow *row;
	TimestampTz now;
	Datum		ip;
	bool		ip_null;
} TouchArgs;

static void
touch_cb(void *arg)
{
	TouchArgs  *a = (TouchArgs *) arg;

	touch_sql(a->row, a->now, a->ip, a->ip_null);
}

/*
 * session_touch
 *		Move last_seen_at to now (and remember the client address), as the
 *		owner of the table, skipping a row another transaction holds.  In a
 *		read-only transaction or on a standby nothing is written: the idle
 *		deadline then slides later, never earlier.
 */
static void
session_touch(SessionRow *row, TimestampTz now, Datum ip, bool ip_null, Oid owner)
{
	TouchArgs	a = {row, now, ip, ip_null};

	if (authx_owner_subxact(owner, touch_cb, &a))
		authx_stat_add(AUTHX_STAT_SESSION_TOUCHES, 1);
}

/*
 * token_digest
 *		Hash a token of the given 4-character prefix if it is well formed.
 *		Checks the stored size before detoasting, so a megabyte of garbage
 *		costs nothing.
 */
static bool
token_digest(const char *prefix, Datum tokd, uint8 *hash)
{
	text	   *tok;
	Size		size = toast_raw_datum_size(tokd);

	if (size != VARHDRSZ + AUTHX_TOKEN_LEN && size != VARHDRSZ + AUTHX_TOKEN_LEN + AUTHX_TOKEN_BUCKET_LEN)
		return false;
	tok = DatumGetTextPP(tokd);
	if (!authx_token_wellformed(prefix, VARDATA_ANY(tok), VARSIZE_ANY_EXHDR(tok)))
		return false;
	authx_sha256(VARDATA_ANY(tok), VARSIZE_ANY_EXHDR(tok), hash);
	return true;
}

PG_FUNCTION_INFO_V1(authx_session_validate);

/*
 * authx.session_validate(token text, ip inet) RETURNS uuid
 *		The session's user id, or NULL when the token is malformed, unknown,
 *		revoked (which disabling or deleting its user does) or expired
 *		(absolute or idle), or ip is blocked.  Never raises on bad input.
 */
Datum
authx_session_validate(PG_FUNCTION_ARGS)
{
	uint8		hash[AUTHX_HASH_LEN];
	SessionRow	row;
	SessionVerdict verdict;
	TimestampTz now;
	Oid			owner;
	pg_uuid_t  *result;

	if (PG_ARGISNULL(0) || !token_digest(AUTHX_SESSION_PREFIX, PG_GETARG_DATUM(0), hash))
	{
		authx_stat_add(AUTHX_STAT_SESSION_MALFORMED, 1);
		PG_RETURN_NULL();
	}

	/* A blocked address gets no session, whatever the token. */
	if (!PG_ARGISNULL(1) && authx_ip_is_blocked(PG_GETARG_DATUM(1)))
	{
		authx_stat_add(AUTHX_STAT_SESSION_INVALID, 1);
		PG_RETURN_NULL();
	}
	now = GetCurrentTimestamp();
	verdict = session_lookup(hash, now, &row, &owner);
	if (verdict != AUTHX_SESSION_OK)
	{
		authx_stat_add(AUTHX_STAT_SESSION_INVALID, 1);
		PG_RETURN_NULL();
	}
	if (now - row.last_seen_at >= (int64) authx_touch_interval * USECS_PER_SEC)
		session_touch(&row, now, PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
					  PG_ARGISNULL(1), owner);
	else if (authx_cache_enabled())
	{
		/* Repopulate Redis (a touch does it through the trigger instead). */
		authx_cache_note_valid(hash, &row.user_id, row.version, row.expires_at,
							   row.idle_timeout > 0
							   ? row.last_seen_at + (int64) row.idle_timeout * USECS_PER_SEC
							   : DT_NOEND);
	}
	authx_stat_add(AUTHX_STAT_SESSION_VALID, 1);

	result = palloc(sizeof(pg_uuid_t));
	*result = row.user_id;
	PG_RETURN_UUID_P(result);
}

PG_FUNCTION_INFO_V1(authx_token_new);

/*
 * authx._token_new(prefix text, user_id uuid DEFAULT NULL)
 *		RETURNS TABLE(token text, token_hash bytea)
 *		A fresh 256-bit token with the given 4-character prefix and its
 *		SHA-256 (of the whole token).  With authx.shard_tokens on and a user
 *		given, the token ends in the user's bucket (".hhhh").  Internal: the
 *		caller stores the hash and hands out the token.
 */
Datum
authx_token_new(PG_FUNCTION_ARGS)
{
	char	   *prefix;
	char		tok[AUTHX_TOKEN_LEN + AUTHX_TOKEN_BUCKET_LEN + 1];
	int			len = AUTHX_TOKEN_LEN;
	uint8		hash[AUTHX_HASH_LEN];
	bytea	   *h;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (PG_ARGISNULL(0))
		elog(ERROR, "authx: token prefix must not be NULL");
	prefix = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strlen(prefix) != AUTHX_TOKEN_PREFIX_LEN)
		elog(ERROR, "authx: token prefix must have %d characters", AUTHX_TOKEN_PREFIX_LEN);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "authx: _token_new must return a row");
	desc = BlessTupleDesc(desc);

	authx_token_generate(prefix, tok);
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		len += authx_bucket_suffix(PG_GETARG_UUID_P(1), tok + AUTHX_TOKEN_LEN);
	authx_sha256(tok, len, hash);
	h = palloc(VARHDRSZ + AUTHX_HASH_LEN);
	SET_VARSIZE(h, VARHDRSZ + AUTHX_HASH_LEN);
	memcpy(VARDATA(h), hash, AUTHX_HASH_LEN);
	values[0] = PointerGetDatum(cstring_to_text_with_len(tok, len));
	values[1] = PointerGetDatum(h);
	explicit_bzero(tok, sizeof(tok));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* A digest as bytea, or NULL when token_digest refused the token. */
static Datum
digest_datum(const char *prefix, Datum tokd, bool *isnull)
{
	uint8		hash[AUTHX_HASH_LEN];
	bytea	   *h;

	*isnull = !token_digest(prefix, tokd, hash);
	if (*isnull)
		return (Datum) 0;
	h = palloc(VARHDRSZ + AUTHX_HASH_LEN);
	SET_VARSIZE(h, VARHDRSZ + AUTHX_HASH_LEN);
	memcpy(VARDATA(h), hash, AUTHX_HASH_LEN);
	return PointerGetDatum(h);
}

PG_FUNCTION_INFO_V1(authx_session_token_hash);

/*
 * authx._session_token_hash(token text) RETURNS bytea
 *		SHA-256 of a well-formed session token, NULL for anything else.
 */
Datum
authx_session_token_hash(PG_FUNCTION_ARGS)
{
	return digest_datum(AUTHX_SESSION_PREFIX, PG_GETARG_DATUM(0), &fcinfo->isnull);
}

PG_FUNCTION_INFO_V1(authx_token_hash);

/*
 * authx._token_hash(prefix text, token text) RETURNS bytea
 *		SHA-256 of a well-formed token of that prefix (axc_, axd_, axv_,
 *		axp_ ...), NULL for anything else: the lookup key of every token
 *		authx keeps only as a digest.
 */
Datum
authx_token_hash(PG_FUNCTION_ARGS)
{
	char		prefix[AUTHX_TOKEN_PREFIX_LEN + 1];
	text	   *p = PG_GETARG_TEXT_PP(0);

	if (VARSIZE_ANY_EXHDR(p) != AUTHX_TOKEN_PREFIX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a token prefix has %d characters", AUTHX_TOKEN_PREFIX_LEN),
				 errhint("Pass a prefix such as 'axd_'.")));
	memcpy(prefix, VARDATA_ANY(p), AUTHX_TOKEN_PREFIX_LEN);
	prefix[AUTHX_TOKEN_PREFIX_LEN] = '\0';
	return digest_datum(prefix, PG_GETARG_DATUM(1), &fcinfo->isnull);
}

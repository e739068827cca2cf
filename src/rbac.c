/*-------------------------------------------------------------------------
 *
 * rbac.c
 *		Permissions: the resource:action grammar and authx.has_permission.
 *
 * Runs in backends.  has_permission answers from a per-backend cache of each
 * user's resolved permission set (own roles, inherited roles, wildcards
 * kept as written).  An entry is good while
 *   - the shared generation counter has not moved since it was filled: any
 *     transaction that changes roles, role permissions, user grants or a
 *     user's status bumps it when it commits (a statement trigger marks the
 *     transaction, the commit callback bumps; an atomic, no lock), and
 *   - the earliest expiry among the grants it was built from has not
 *     passed, so a time-bound grant stops counting at that instant with no
 *     job and no invalidation message.
 * The generation is read before the set is computed with a fresh snapshot
 * (READ COMMITTED), so a change committed while we compute either shows in
 * the result or makes the entry stale; under REPEATABLE READ, whose snapshot
 * may be older than the generation, answers are computed but not cached.  A
 * transaction that changed RBAC itself bypasses the cache until it ends (it
 * must see its own changes; nobody else may see them).  Without
 * shared_preload_libraries there is no counter, and every call computes.
 *
 * A miss runs authx._rbac_resolve through a kept SPI plan, as the owner of
 * the extension's tables (callers hold EXECUTE on has_permission only).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "authx.h"

#define AUTHX_PERM_PART_MAX		100
#define AUTHX_PERM_CACHE_MAX	10000

/* One user's resolved permissions: NUL-separated strings in blob. */
typedef struct PermEntry
{
	pg_uuid_t	user_id;		/* hash key */
	uint64		generation;
	TimestampTz valid_until;
	int			n;
	char	   *blob;
} PermEntry;

static HTAB *perm_cache = NULL;
static MemoryContext perm_cxt = NULL;
static SPIPlanPtr resolve_plan = NULL;

/*
 * part_ok
 *		One side of a permission: "*", or 1-100 of [a-z0-9_.-] (and / when
 *		slash) starting with a letter or digit.
 */
static bool
part_ok(const char *s, int len, bool slash)
{
	int			i;

	if (len == 1 && s[0] == '*')
		return true;
	if (len < 1 || len > AUTHX_PERM_PART_MAX)
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			continue;
		if (i > 0 && (c == '_' || c == '.' || c == '-' || (slash && c == '/')))
			continue;
		return false;
	}
	return true;
}

/*
 * authx_permission_split
 *		True when s[0..len) is a permission; *colon gets the separator's
 *		offset.
 */
bool
authx_permission_split(const char *s, int len, int *colon)
{
	const char *c = memchr(s, ':', len);

	if (c == NULL)
		return false;
	*colon = (int) (c - s);
	return part_ok(s, *colon, true) && part_ok(c + 1, len - *colon - 1, false);
}

/*
 * authx_permission_covers
 *		Does the granted permission g (a valid one) cover the wanted w (split
 *		at wcolon)?  A * in g matches anything in its place; a * in w is
 *		matched only by a * (asking for documents:* needs documents:* or
 *		more).  Permissions are not secrets: plain comparisons are fine.
 */
bool
authx_permission_covers(const char *g, int glen, const char *w, int wlen, int wcolon)
{
	const char *gc = memchr(g, ':', glen);
	int			gcolon;

	if (gc == NULL)
		return false;
	gcolon = (int) (gc - g);
	if (!(gcolon == 1 && g[0] == '*') &&
		!(gcolon == wcolon && memcmp(g, w, wcolon) == 0))
		return false;
	if (glen - gcolon - 1 == 1 && g[gcolon + 1] == '*')
		return true;
	return glen - gcolon == wlen - wcolon && memcmp(g + gcolon + 1, w + wcolon + 1, wlen - wcolon - 1) == 0;
}

PG_FUNCTION_INFO_V1(authx_permission_valid);

/*
 * authx._permission_valid(permission text) RETURNS boolean
 */
Datum
authx_permission_valid(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	int			colon;

	PG_RETURN_BOOL(authx_permission_split(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &colon));
}

/* ----------------------------------------------------------------
 * Invalidation
 * ----------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(authx_rbac_changed);

/*
 * authx._rbac_changed() — AFTER ... FOR EACH ROW on the RBAC tables and on
 * users' status (FOR EACH STATEMENT for TRUNCATE): every permission cache is
 * stale once we commit.
 */
Datum
authx_rbac_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("authx._rbac_changed() must be called as a trigger")));
	authx_generation_touch(AUTHX_GEN_RBAC);
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------------
 * has_permission
 * ----------------------------------------------------------------
 */

static void
cache_create(void)
{
	HASHCTL		ctl;

	if (perm_cxt == NULL)
		perm_cxt = AllocSetContextCreate(TopMemoryContext, "authx permission cache",
										 ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(perm_cxt);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(PermEntry);
	ctl.hcxt = perm_cxt;
	perm_cache = hash_create("authx permission cache", 256, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * resolve
 *		Compute the user's permission set at now: a blob of *n strings
 *		(*size bytes, in the caller's memory context) and the instant it
 *		stops being right (the earliest expiry of the grants behind it).
 */
static void
resolve(const pg_uuid_t *user_id, TimestampTz now, char **blob, Size *size, int *n,
		TimestampTz *valid_until)
{
	Oid			owner;
	Oid			save_userid;
	int			save_sec;
	Datum		values[2];
	uint64		i;
	Size		total = 0;
	char	   *p;

	owner = authx_rel_owner("user_roles");

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	SPI_connect();
	if (resolve_plan == NULL)
	{
		Oid			argtypes[2] = {UUIDOID, TIMESTAMPTZOID};

		resolve_plan = authx_keep_plan("SELECT permission, expires_at FROM authx._rbac_resolve($1, $2)",
									   2, argtypes);
	}
	values[0] = UUIDPGetDatum(user_id);
	values[1] = TimestampTzGetDatum(now);
	/*
	 * Not read-only: in READ COMMITTED that takes a snapshot now, after the
	 * caller read the generation, so what we cache is at least that recent.
	 */
	if (SPI_execute_plan(resolve_plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "authx: permission query failed");

	*valid_until = DT_NOEND;
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		total += VARSIZE_ANY_EXHDR(DatumGetTextPP(d)) + 1;
		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
		if (!isnull)
			*valid_until = Min(*valid_until, DatumGetTimestampTz(d));
	}
	/* SPI_palloc: the caller's context, which outlives SPI_finish. */
	*blob = p = SPI_palloc(total + 1);
	*size = total + 1;
	*n = (int) SPI_processed;
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		text	   *t = DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));

		memcpy(p, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		p += VARSIZE_ANY_EXHDR(t);
		*p++ = '\0';
	}
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
}

static bool
blob_covers(const char *blob, int n, const char *w, int wlen, int wcolon)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		int			len = strlen(blob);

		if (authx_permission_covers(blob, len, w, wlen, wcolon))
			return true;
		blob += len + 1;
	}
	return false;
}

PG_FUNCTION_INFO_V1(authx_has_permission);

/*
 * authx.has_permission(user_id uuid, permission text) RETURNS boolean
 */
Datum
authx_has_permission(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *user_id = PG_GETARG_UUID_P(0);
	text	   *perm = PG_GETARG_TEXT_PP(1);
	const char *w = VARDATA_ANY(perm);
	int			wlen = VARSIZE_ANY_EXHDR(perm);
	int			wcolon;
	TimestampTz now = GetCurrentTimestamp();
	/*
	 * In REPEATABLE READ the query would see the transaction's snapshot,
	 * possibly older than the generation: answer from the cache, but do not
	 * fill it.
	 */
	bool		cacheable = authx_shared != NULL && !authx_generation_dirty(AUTHX_GEN_RBAC);
	bool		fill = !IsolationUsesXactSnapshot();
	uint64		generation = 0;
	PermEntry  *e;
	bool		found;
	char	   *blob;
	Size		size;
	int			n;
	TimestampTz valid_until;
	bool		result;

	if (!authx_permission_split(w, wlen, &wcolon))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid permission \"%s\"", text_to_cstring(perm)),
				 errhint("Write permissions as resource:action, e.g. \"documents:read\".")));

	if (!cacheable)
	{
		resolve(user_id, now, &blob, &size, &n, &valid_until);
		PG_RETURN_BOOL(blob_covers(blob, n, w, wlen, wcolon));
	}

	generation = authx_generation_read(AUTHX_GEN_RBAC);
	if (perm_cache == NULL)
		cache_create();
	e = hash_search(perm_cache, user_id, HASH_FIND, NULL);
	if (e != NULL && e->generation == generation && now < e->valid_until)
	{
		authx_stat_add(AUTHX_STAT_RBAC_CACHE_HITS, 1);
		PG_RETURN_BOOL(blob_covers(e->blob, e->n, w, wlen, wcolon));
	}

	authx_stat_add(AUTHX_STAT_RBAC_CACHE_MISSES, 1);
	resolve(user_id, now, &blob, &size, &n, &valid_until);
	result = blob_covers(blob, n, w, wlen, wcolon);
	if (!fill)
		PG_RETURN_BOOL(result);

	/* Full: start over rather than track recency; misses are cheap enough. */
	if (e == NULL && hash_get_num_entries(perm_cache) >= AUTHX_PERM_CACHE_MAX)
		cache_create();
	e = hash_search(perm_cache, user_id, HASH_ENTER, &found);
	if (found && e->blob != NULL)
		pfree(e->blob);
	e->generation = generation;
	e->valid_until = valid_until;
	e->n = n;
	e->blob = MemoryContextAlloc(perm_cxt, size);
	memcpy(e->blob, blob, size);
	PG_RETURN_BOOL(result);
}

/*-------------------------------------------------------------------------
 *
 * settings.c
 *		authx.setting_get(): dynamic settings (authx.settings over the
 *		shipped authx.setting_defs), read from a copy kept per backend.
 *
 * The copy is dropped by a relcache callback on either table.  The trigger
 * on authx.settings sends a relcache invalidation, which every backend
 * processes at its next transaction start (or lock), which a standby
 * replays with the commit, and which this backend processes at once for its
 * own change (and again at its abort, so a rolled-back change is forgotten).
 *
 * A load reads through a snapshot of its own, taken then (like a catalog
 * read), not the transaction's: under REPEATABLE READ, or with a statement
 * snapshot older than an invalidation just processed, the transaction's
 * would miss a committed change and the copy would keep the stale value
 * after the invalidation that should have dropped it.  Settings are
 * therefore always the latest committed values (and this transaction's own
 * changes).  An invalidation processed during the load itself may concern
 * a change the load did not see: that copy serves the one call only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "authx.h"

#define SETTING_NAME_MAX	64

typedef struct SettingEntry
{
	char		name[SETTING_NAME_MAX];	/* hash key */
	Jsonb	   *value;
} SettingEntry;

static MemoryContext settings_cxt = NULL;
static HTAB *settings = NULL;	/* NULL: not loaded (or dropped) */
static bool settings_callback = false;
static Oid	settings_relid = InvalidOid;
static Oid	defs_relid = InvalidOid;
static uint64 settings_invals = 0;	/* invalidations seen, ever */

static const char *settings_sql =
"SELECT d.name, COALESCE(s.value, d.default_value) "
"  FROM authx.setting_defs d LEFT JOIN authx.settings s ON s.name OPERATOR(pg_catalog.=) d.name";

static void
settings_relcache_cb(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == settings_relid || relid == defs_relid)
	{
		settings = NULL;		/* the context is reset at the next load */
		settings_invals++;
	}
}

static void
settings_load_cb(void *arg)
{
	HTAB	   *h = arg;
	uint64		i;

	PushActiveSnapshot(GetLatestSnapshot());
	if (SPI_execute(settings_sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "authx: reading authx.settings failed");
	PopActiveSnapshot();
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *name = TextDatumGetCString(SPI_getbinval(tup, td, 1, &isnull));
		Datum		value = SPI_getbinval(tup, td, 2, &isnull);
		SettingEntry *e;
		bool		found;
		MemoryContext old;

		if (strlen(name) >= SETTING_NAME_MAX || isnull)
			continue;
		e = hash_search(h, name, HASH_ENTER, &found);
		/* Detoasted, with a 4-byte header, in the copy's context. */
		old = MemoryContextSwitchTo(settings_cxt);
		e->value = DatumGetJsonbPCopy(value);
		MemoryContextSwitchTo(old);
	}
}

/*
 * settings_ensure
 *		This backend's copy of every setting, loaded if it was dropped.
 */
static HTAB *
settings_ensure(void)
{
	HASHCTL		ctl;
	HTAB	   *h;
	uint64		invals;

	if (settings != NULL)
		return settings;
	if (!settings_callback)
	{
		CacheRegisterRelcacheCallback(settings_relcache_cb, (Datum) 0);
		settings_callback = true;
	}
	if (settings_cxt == NULL)
		settings_cxt = AllocSetContextCreate(TopMemoryContext, "authx settings", ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(settings_cxt);
	settings_relid = get_relname_relid("settings", get_namespace_oid("authx", false));
	defs_relid = get_relname_relid("setting_defs", get_namespace_oid("authx", false));

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = SETTING_NAME_MAX;
	ctl.entrysize = sizeof(SettingEntry);
	ctl.hcxt = settings_cxt;
	h = hash_create("authx settings", 32, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	invals = settings_invals;
	authx_as_owner("settings", settings_load_cb, h);

	/*
	 * An invalidation processed while loading (taking a lock does) may
	 * concern a change the load's snapshot did not see: then the copy
	 * serves this call only.
	 */
	if (invals == settings_invals)
		settings = h;
	return h;
}

PG_FUNCTION_INFO_V1(authx_setting_get);

/*
 * authx.setting_get(name text) RETURNS jsonb
 */
Datum
authx_setting_get(PG_FUNCTION_ARGS)
{
	char	   *name;
	SettingEntry *e = NULL;
	Jsonb	   *copy;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name must not be null"),
				 errhint("Pass a setting name; SELECT name FROM authx.setting_list() lists them.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strlen(name) < SETTING_NAME_MAX)
		e = hash_search(settings_ensure(), name, HASH_FIND, NULL);
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown setting \"%.100s\"", name),
				 errhint("SELECT name FROM authx.setting_list() lists the settings.")));
	copy = palloc(VARSIZE(e->value));
	memcpy(copy, e->value, VARSIZE(e->value));
	PG_RETURN_JSONB_P(copy);
}

PG_FUNCTION_INFO_V1(authx_settings_changed);

/*
 * authx._settings_changed() — statement trigger on authx.settings: every
 * copy is stale once the change commits (here at once, for this backend).
 */
Datum
authx_settings_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("authx._settings_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(((TriggerData *) fcinfo->context)->tg_relation));
	return PointerGetDatum(NULL);
}

/*-------------------------------------------------------------------------
 *
 * authx.c
 *		Module entry point: _PG_init wires up every module.
 *
 * Runs in the postmaster when authx is preloaded (then every child inherits
 * the hooks, the GUCs and the shared-memory request), or in a single backend
 * when the library is loaded on first use.  In the second case no shared
 * memory and no workers exist; modules that need them raise 55000.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "authx.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * register_worker
 *		Register one of authx's background workers (while preloading).  The
 *		name is also its backend_type in pg_stat_activity.
 */
static void
register_worker(const char *name, const char *function, int flags, int restart_s)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = flags;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = restart_s;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "authx");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", name);
	RegisterBackgroundWorker(&worker);
}

/*
 * _PG_init
 *		Define GUCs, initialise libsodium, and when preloading request shared
 *		memory and register the background workers.
 *
 * During binary upgrade nothing but the SQL-visible symbols is needed, so
 * we return before touching anything.
 */
void
_PG_init(void)
{
	bool		preloading = process_shared_preload_libraries_in_progress;

	if (IsBinaryUpgrade)
		return;

	/* The log hook first: defining the GUCs may log a bad authx.redis_url. */
	authx_redact_init();
	authx_crypto_init();
	authx_guc_init(preloading);

	if (!preloading)
		return;

	authx_shmem_init();
	authx_key_create_default();
	/* Both start after recovery; neither runs on a standby. */
	register_worker("authx maintenance worker", "authx_maint_main",
					BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION, 5);
	register_worker("authx redis writer", "authx_redis_writer_main",
					BGWORKER_SHMEM_ACCESS, 1);
}

/*
 * authx_interval_ms
 *		A timeout interval in milliseconds, clamped to about 30 years (so an
 *		absurdly large interval waits "forever" instead of overflowing), or
 *		raise 22023 for a negative one.
 */
int64
authx_interval_ms(const Interval *iv)
{
	double		ms = iv->time / 1000.0 + ((double) iv->day + (double) iv->month * DAYS_PER_MONTH) * SECS_PER_DAY * 1000.0;

	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative"),
				 errhint("Pass a timeout such as '5 seconds'.")));
	return (int64) Min(ms, 1e12);
}

/*
 * authx_interval_epoch_us
 *		An interval as a fixed length in microseconds, the way
 *		extract(epoch FROM ...) counts it (a day is 24 hours, a month 30
 *		days, a year 365.25 days), so C and SQL agree in every TimeZone.  A
 *		double: the caller bounds it.
 */
double
authx_interval_epoch_us(const Interval *iv)
{
	int64		years = iv->month / MONTHS_PER_YEAR;
	int64		months = iv->month % MONTHS_PER_YEAR;

	return (double) iv->time + ((double) iv->day + (double) months * DAYS_PER_MONTH) * USECS_PER_DAY +
		(double) years * DAYS_PER_YEAR * USECS_PER_DAY;
}

/*
 * authx_result_desc
 *		The blessed row type of a C function returning a composite.  Kept
 *		in fn_extra for the call site, and per function for the backend:
 *		a call site lives for one execution only, and building the type
 *		again for every execution costs a catalog lookup and copies, a
 *		noticeable part of a hot-path call.  The row types are the
 *		extension's own and never altered; a recreated extension has new
 *		function OIDs, hence new entries.
 */
TupleDesc
authx_result_desc(FunctionCallInfo fcinfo)
{
	static struct
	{
		Oid			fn;
		TupleDesc	desc;
	}			kept[16];
	TupleDesc	desc = (TupleDesc) fcinfo->flinfo->fn_extra;
	Oid			fn = fcinfo->flinfo->fn_oid;
	int			i;

	if (desc != NULL)
		return desc;
	for (i = 0; i < (int) lengthof(kept) && kept[i].fn != InvalidOid; i++)
		if (kept[i].fn == fn)
		{
			fcinfo->flinfo->fn_extra = kept[i].desc;
			return kept[i].desc;
		}
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "authx: function %u must return a row", fn);
	if (i < (int) lengthof(kept))
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		MemoryContextSwitchTo(old);
		kept[i].fn = fn;
		kept[i].desc = desc;
	}
	else
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		MemoryContextSwitchTo(old);
	}
	fcinfo->flinfo->fn_extra = desc;
	return desc;
}

/*
 * authx_keep_plan
 *		Prepare sql and keep the plan for the life of the backend.  Caller is
 *		connected to SPI.
 */
SPIPlanPtr
authx_keep_plan(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "authx: could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * authx_rel_owner
 *		The owner of relation authx.<name>: who runs the writes and queries
 *		that callers without table privileges need.
 */
Oid
authx_rel_owner(const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("authx", false));
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "authx: relation authx.%s is missing", name);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

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

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "authx.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

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
	authx_worker_register();
	authx_cache_worker_register();
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

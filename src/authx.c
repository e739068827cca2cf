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

	authx_crypto_init();
	authx_guc_init(preloading);
	authx_redact_init();

	if (!preloading)
		return;

	authx_shmem_init();
	authx_worker_register();
	authx_cache_worker_register();
}

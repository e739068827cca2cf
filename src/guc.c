/*-------------------------------------------------------------------------
 *
 * guc.c
 *		Every authx configuration parameter, in alphabetical order.
 *
 * Runs in _PG_init.  Sizes and worker settings are PGC_POSTMASTER and exist
 * only when authx is preloaded; password cost settings are PGC_SUSET so an
 * application role can never weaken the hashes it creates.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "authx.h"

int			authx_audit_premake = 3;
int			authx_audit_queue_size = 1024;
int			authx_audit_retention = 90;
char	   *authx_database = NULL;
int			authx_maintenance_naptime = 60;
int			authx_password_max_concurrent = 0;
int			authx_password_memlimit = 19456;
int			authx_password_min_length = 8;
int			authx_password_opslimit = 2;

/*
 * authx_guc_init
 *		Define the parameters.  preloading says whether we run in the
 *		postmaster, where the PGC_POSTMASTER ones make sense.
 */
void
authx_guc_init(bool preloading)
{
	DefineCustomIntVariable("authx.audit_premake",
							gettext_noop("Days of audit_log partitions created ahead of time."),
							gettext_noop("The maintenance worker keeps this many future daily partitions (0-365)."),
							&authx_audit_premake,
							3,
							0,
							365,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	if (preloading)
		DefineCustomIntVariable("authx.audit_queue_size",
								gettext_noop("Shared-memory queue for audit events."),
								gettext_noop("Events wait here until the maintenance worker writes them (64 kB-1 GB). "
											 "When full, authx.audit falls back to a synchronous insert."),
								&authx_audit_queue_size,
								1024,
								64,
								1024 * 1024,
								PGC_POSTMASTER,
								GUC_UNIT_KB,
								NULL, NULL, NULL);

	DefineCustomIntVariable("authx.audit_retention",
							gettext_noop("Days of audit_log kept; older daily partitions are dropped."),
							gettext_noop("0 keeps every partition forever."),
							&authx_audit_retention,
							90,
							0,
							36500,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	if (preloading)
		DefineCustomStringVariable("authx.database",
								   gettext_noop("Database the authx background workers connect to."),
								   gettext_noop("authx keeps its queues for this one database; in other databases "
												"audit events are written synchronously."),
								   &authx_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);

	if (preloading)
		DefineCustomIntVariable("authx.maintenance_naptime",
								gettext_noop("Interval between maintenance runs (partitions, retention)."),
								gettext_noop("Audit events are written as soon as they are queued; this only "
											 "paces partition maintenance (1 s-1 day)."),
								&authx_maintenance_naptime,
								60,
								1,
								86400,
								PGC_SIGHUP,
								GUC_UNIT_S,
								NULL, NULL, NULL);

	DefineCustomIntVariable("authx.password_max_concurrent",
							gettext_noop("Maximum argon2id computations running at once."),
							gettext_noop("Each takes authx.password_memlimit of memory; further callers wait. "
										 "0 means twice the number of CPU cores. Needs preloading."),
							&authx_password_max_concurrent,
							0,
							0,
							10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.password_memlimit",
							gettext_noop("Memory cost of argon2id password hashes."),
							gettext_noop("OWASP's minimum is 19 MiB with 2 passes; existing hashes are "
										 "upgraded on the next successful verification (8 kB-4 GB)."),
							&authx_password_memlimit,
							19456,
							8,
							4 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.password_min_length",
							gettext_noop("Minimum password length, in characters."),
							gettext_noop("Checked when a password is set (1-1024); the maximum is 1024 bytes."),
							&authx_password_min_length,
							8,
							1,
							AUTHX_PASSWORD_MAX_BYTES,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.password_opslimit",
							gettext_noop("Time cost (passes) of argon2id password hashes."),
							gettext_noop("OWASP's minimum is 2 with 19 MiB (1-100)."),
							&authx_password_opslimit,
							2,
							1,
							100,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("authx");
}

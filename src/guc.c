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
#include "redis.h"

int			authx_apikey_usage_slots = 8192;
int			authx_alert_min_severity = 3;
int			authx_audit_premake = 3;
int			authx_audit_queue_size = 1024;
int			authx_audit_retention = 90;
int			authx_cache_queue_size = 65536;
int			authx_cache_ttl = 300;
char	   *authx_database = NULL;
int			authx_ip_block_slots = 65536;
char	   *authx_key_file = NULL;
int			authx_lockout_account_threshold = 20;
int			authx_lockout_duration = 900;
int			authx_lockout_max_duration = 86400;
int			authx_lockout_slots = 16384;
int			authx_lockout_threshold = 5;
int			authx_lockout_window = 900;
int			authx_maintenance_naptime = 60;
int			authx_mfa_challenge_ttl = 300;
int			authx_mfa_max_failures = 10;
int			authx_max_sessions_per_user = 0;
int			authx_password_max_concurrent = 0;
int			authx_password_memlimit = 19456;
int			authx_password_min_length = 8;
int			authx_password_opslimit = 2;
int			authx_rate_limit_fail = AUTHX_FAIL_LOCAL;
char	   *authx_rate_limit_prefix = NULL;
int			authx_rate_limit_slots = 65536;
int			authx_rate_limit_store = AUTHX_STORE_LOCAL;
char	   *authx_redis_prefix = NULL;
int			authx_redis_timeout_ms = 200;
char	   *authx_redis_url = NULL;
char	   *authx_rate_limit_redis_url = NULL;
int			authx_session_idle_timeout = 86400;
int			authx_session_ttl = 604800;
int			authx_totp_digits = 6;
int			authx_totp_period = 30;
int			authx_totp_window = 1;
int			authx_touch_interval = 60;
int			authx_token_alg = AUTHX_ALG_EDDSA;
int			authx_token_ttl = 900;
char	   *authx_token_role = NULL;
char	   *authx_token_issuer = NULL;
char	   *authx_token_audience = NULL;
int			authx_refresh_reuse_grace = 10;
int			authx_verification_ttl = 86400;
int			authx_reset_ttl = 3600;
int			authx_device_ttl = 30 * 86400;
int			authx_usage_queue_size = 16384;
int			authx_usage_retention = 30;
int			authx_shard_buckets = 256;
bool		authx_shard_tokens = false;
bool		authx_bucket_leaving = false;

static const struct config_enum_entry token_alg_options[] = {
	{"EdDSA", AUTHX_ALG_EDDSA, false},
	{"eddsa", AUTHX_ALG_EDDSA, true},
	{"HS256", AUTHX_ALG_HS256, false},
	{"hs256", AUTHX_ALG_HS256, true},
	{NULL, 0, false}
};

static const struct config_enum_entry severity_options[] = {
	{"info", 0, false},
	{"low", 1, false},
	{"medium", 2, false},
	{"high", 3, false},
	{"critical", 4, false},
	{"off", 5, false},
	{NULL, 0, false}
};

static const struct config_enum_entry store_options[] = {
	{"local", AUTHX_STORE_LOCAL, false},
	{"redis", AUTHX_STORE_REDIS, false},
	{NULL, 0, false}
};

static const struct config_enum_entry fail_options[] = {
	{"local", AUTHX_FAIL_LOCAL, false},
	{"open", AUTHX_FAIL_OPEN, false},
	{"closed", AUTHX_FAIL_CLOSED, false},
	{NULL, 0, false}
};

/*
 * check_redis_prefix
 *		1-64 printable characters without spaces, so it can sit in a SCAN
 *		pattern: glob characters are refused too.
 */
static bool
check_redis_prefix(char **newval, void **extra, GucSource source)
{
	const char *p;
	size_t		len = strlen(*newval);

	if (len < 1 || len > 64)
	{
		GUC_check_errdetail("The prefix must have 1 to 64 characters.");
		return false;
	}
	for (p = *newval; *p; p++)
		if (*p <= ' ' || *p > '~' || strchr("*?[]\\", *p) != NULL)
		{
			GUC_check_errdetail("The prefix may not contain spaces, control characters or *?[]\\.");
			return false;
		}
	return true;
}

/*
 * check_redis_url
 *		Empty, or a URL authx_redis_parse_url accepts.  The detail never
 *		repeats the value: it may hold a password.
 */
static bool
check_redis_url(char **newval, void **extra, GucSource source)
{
	AuthxRedisTarget target;

	if (**newval == '\0' || authx_redis_parse_url(*newval, &target))
		return true;
	GUC_check_errdetail("Use redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N].");
	return false;
}

/* authx.shard_buckets: a power of two (PL/Proxy routes by a bit mask). */
static bool
check_shard_buckets(int *newval, void **extra, GucSource source)
{
	if ((*newval & (*newval - 1)) != 0)
	{
		GUC_check_errdetail("authx.shard_buckets must be a power of two (1, 2, 4, ... 65536).");
		return false;
	}
	return true;
}

/*
 * authx_guc_init
 *		Define the parameters.  preloading says whether we run in the
 *		postmaster, where the PGC_POSTMASTER ones make sense.
 */
void
authx_guc_init(bool preloading)
{
	if (preloading)
		DefineCustomIntVariable("authx.apikey_usage_slots",
								gettext_noop("Shared-memory entries for API key usage counters."),
								gettext_noop("One per key and hour with verifications not yet persisted by "
											 "the maintenance worker; when full, counts are dropped and "
											 "counted in authx.stats (128-4M)."),
								&authx_apikey_usage_slots,
								8192,
								128,
								4 * 1024 * 1024,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	DefineCustomEnumVariable("authx.alert_min_severity",
							 gettext_noop("Audit events of this severity or above are sent on NOTIFY authx_alerts."),
							 gettext_noop("info, low, medium, high (default), critical, or off. The maintenance "
										  "worker sends them as it writes them to authx.audit_log."),
							 &authx_alert_min_severity,
							 3,
							 severity_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

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
		DefineCustomIntVariable("authx.cache_queue_size",
								gettext_noop("Cache operations the shared-memory queue to Redis holds."),
								gettext_noop("A commit that finds it full drops its operations and forces a "
											 "resync of the whole cache instead of failing (1024-16M)."),
								&authx_cache_queue_size,
								65536,
								1024,
								16 * 1024 * 1024,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	DefineCustomIntVariable("authx.cache_ttl",
							gettext_noop("Longest time any Redis entry lives."),
							gettext_noop("The bound on how stale the cache can be in the worst case "
										 "(1 s-1 day); validations refresh live entries."),
							&authx_cache_ttl,
							300,
							1,
							86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
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
		DefineCustomIntVariable("authx.ip_block_slots",
								gettext_noop("Blocks and allowlist entries the shared-memory copy holds."),
								gettext_noop("With more in force, ip_blocked reads the table instead, "
											 "correct but slower (128-4M)."),
								&authx_ip_block_slots,
								65536,
								128,
								4 * 1024 * 1024,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	/*
	 * Everywhere, preloaded or not (so not PGC_POSTMASTER, which a module
	 * loaded later may not define): shard_of must agree in every backend.
	 */
	DefineCustomIntVariable("authx.shard_buckets",
							gettext_noop("Logical buckets users are spread over (shard_of); the same on every node."),
							gettext_noop("A power of two, chosen when the cluster is made: changing it moves users."),
							&authx_shard_buckets,
							256,
							1,
							65536,
							PGC_SIGHUP,
							0,
							check_shard_buckets, NULL, NULL);

	DefineCustomBoolVariable("authx.bucket_leaving",
							 gettext_noop("Internal (set by authx._bucket_delete): the rows deleted are moving to another node."),
							 gettext_noop("Deleted sessions and keys leave Redis without a tombstone, and fenced buckets may be deleted."),
							 &authx_bucket_leaving,
							 false,
							 PGC_SUSET,
							 GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("authx.shard_tokens",
							 gettext_noop("Tokens and API keys end in their user's bucket (\".hhhh\"), for a scale-out coordinator."),
							 gettext_noop("Turn it on, on every data node, before the cluster holds sessions."),
							 &authx_shard_tokens,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	if (preloading)
		DefineCustomIntVariable("authx.usage_queue_size",
								gettext_noop("Requests authx.usage_record can queue for the maintenance worker."),
								gettext_noop("About 200 bytes each; a full queue drops records (usage_dropped)."),
								&authx_usage_queue_size,
								16384,
								1024,
								4 * 1024 * 1024,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	if (preloading)
		DefineCustomStringVariable("authx.key_file",
								   gettext_noop("File holding the key that seals secrets at rest (TOTP seeds)."),
								   gettext_noop("64 hex digits; relative to the data directory. Empty: authx.key in the "
												"data directory, created at the first start of a primary."),
								   &authx_key_file,
								   "",
								   PGC_POSTMASTER,
								   GUC_SUPERUSER_ONLY,
								   NULL, NULL, NULL);

	DefineCustomIntVariable("authx.lockout_account_threshold",
							gettext_noop("Failed logins from all addresses that lock an account everywhere."),
							gettext_noop("Counted within authx.lockout_window; keep it well above "
										 "authx.lockout_threshold so one address cannot lock a user out "
										 "everywhere (0 = never lock a whole account)."),
							&authx_lockout_account_threshold,
							20,
							0,
							1000000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.lockout_duration",
							gettext_noop("First lockout duration; doubled on each repeat lockout."),
							gettext_noop("Capped by authx.lockout_max_duration (1 s-1 day)."),
							&authx_lockout_duration,
							900,
							1,
							86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.lockout_max_duration",
							gettext_noop("Longest lockout, however often it repeats."),
							NULL,
							&authx_lockout_max_duration,
							86400,
							1,
							30 * 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	if (preloading)
		DefineCustomIntVariable("authx.lockout_slots",
								gettext_noop("Shared-memory entries for failed-login counters."),
								gettext_noop("One per (account, address) and per account with recent failures; "
											 "when full, the least recently active unlocked entry is reused."),
								&authx_lockout_slots,
								16384,
								128,
								4 * 1024 * 1024,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	DefineCustomIntVariable("authx.lockout_threshold",
							gettext_noop("Failed logins from one address that lock the account for that address."),
							gettext_noop("Counted within authx.lockout_window (1-1000)."),
							&authx_lockout_threshold,
							5,
							1,
							1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.lockout_window",
							gettext_noop("Window in which failed logins are counted."),
							gettext_noop("A counter starts afresh once its window has passed (1 s-1 day)."),
							&authx_lockout_window,
							900,
							1,
							86400,
							PGC_SUSET,
							GUC_UNIT_S,
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

	DefineCustomIntVariable("authx.max_sessions_per_user",
							gettext_noop("Live sessions a user may hold; the oldest are revoked beyond it."),
							gettext_noop("0 = unlimited."),
							&authx_max_sessions_per_user,
							0,
							0,
							100000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.mfa_challenge_ttl",
							gettext_noop("How long an MFA challenge from authx.login stays usable."),
							NULL,
							&authx_mfa_challenge_ttl,
							300,
							30,
							3600,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.mfa_max_failures",
							gettext_noop("Failed second factors per user within authx.lockout_window before MFA locks."),
							gettext_noop("TOTP codes and recovery codes count; counted in shared memory "
										 "(ROLLBACK gives nothing back)."),
							&authx_mfa_max_failures,
							10,
							1,
							1000,
							PGC_SUSET,
							0,
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

	DefineCustomEnumVariable("authx.rate_limit_fail",
							 gettext_noop("What authx.rate_limit does when its Redis store cannot answer."),
							 gettext_noop("local: decide in this server's shared memory; open: allow; "
										  "closed: deny (retry after 1 s). Policies have their own fail_mode."),
							 &authx_rate_limit_fail,
							 AUTHX_FAIL_LOCAL,
							 fail_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("authx.rate_limit_prefix",
							   gettext_noop("Prefix of the Redis keys of rate-limit buckets."),
							   gettext_noop("Servers that share a prefix (and a Redis) share their limits. "
											"Cache resyncs never touch these keys."),
							   &authx_rate_limit_prefix,
							   "authx:rl:",
							   PGC_SIGHUP,
							   0,
							   check_redis_prefix, NULL, NULL);

	if (preloading)
		DefineCustomIntVariable("authx.rate_limit_slots",
								gettext_noop("Shared-memory entries for rate-limit buckets."),
								gettext_noop("One per subject whose bucket is not full; when a probe window "
											 "is full, the bucket closest to full is reused (1024-16M)."),
								&authx_rate_limit_slots,
								65536,
								1024,
								16 * 1024 * 1024,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	DefineCustomEnumVariable("authx.rate_limit_store",
							 gettext_noop("Where authx.rate_limit keeps its buckets."),
							 gettext_noop("local: this server's shared memory; redis: authx.redis_url, shared "
										  "by every server using it. Policies name their own store."),
							 &authx_rate_limit_store,
							 AUTHX_STORE_LOCAL,
							 store_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("authx.redis_prefix",
							   gettext_noop("Prefix of every Redis key authx writes."),
							   gettext_noop("Keys are <prefix>s:<hex sha256(token)>. A change makes the "
											"writer resync."),
							   &authx_redis_prefix,
							   "authx:",
							   PGC_SIGHUP,
							   0,
							   check_redis_prefix, NULL, NULL);

	DefineCustomIntVariable("authx.redis_timeout_ms",
							gettext_noop("Connect and command timeout for Redis."),
							NULL,
							&authx_redis_timeout_ms,
							200,
							10,
							60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("authx.rate_limit_redis_url",
							   gettext_noop("Redis for rate limits kept in Redis; empty means authx.redis_url."),
							   gettext_noop("Point every node of a scale-out cluster (and its coordinators) at one "
											"Redis here so that a limit is global while caches stay per node. "
											"Superuser-only and hidden: it may hold a password."),
							   &authx_rate_limit_redis_url,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   check_redis_url, NULL, NULL);

	DefineCustomStringVariable("authx.redis_url",
							   gettext_noop("Redis for the write-through cache; empty turns the cache off."),
							   gettext_noop("redis://[[user]:password@]host[:port][/db] or "
											"unix:///path/to/socket[?db=N]. Superuser-only and hidden: "
											"it may hold a password."),
							   &authx_redis_url,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   check_redis_url, NULL, NULL);

	DefineCustomIntVariable("authx.session_idle_timeout",
							gettext_noop("A session unused this long is invalid."),
							gettext_noop("Use slides the deadline, within authx.touch_interval; "
										 "fixed per session at creation (0 = off)."),
							&authx_session_idle_timeout,
							86400,
							0,
							365 * 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.session_ttl",
							gettext_noop("Absolute lifetime of a new session."),
							gettext_noop("Default for authx.session_create and authx.login (1 s-10 years)."),
							&authx_session_ttl,
							604800,
							1,
							10 * 365 * 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.totp_digits",
							gettext_noop("Digits of the TOTP codes of new enrolments."),
							NULL,
							&authx_totp_digits,
							6,
							6,
							8,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.totp_period",
							gettext_noop("Time step of the TOTP codes of new enrolments, in seconds."),
							NULL,
							&authx_totp_period,
							30,
							15,
							300,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.totp_window",
							gettext_noop("Time steps before and after now whose TOTP code is accepted."),
							gettext_noop("For clock drift; each step is accepted once per user."),
							&authx_totp_window,
							1,
							0,
							10,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.touch_interval",
							gettext_noop("Least time between two writes of a session's last_seen_at."),
							gettext_noop("authx.session_validate writes at most once per interval per session; "
										 "the idle timeout is exact to within it (0 = every call)."),
							&authx_touch_interval,
							60,
							0,
							86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("authx.token_alg",
							 gettext_noop("Signature of new access tokens: EdDSA (Ed25519) or HS256."),
							 gettext_noop("authx.token_issue signs with the newest key of this algorithm, making one "
										  "on first use; tokens of either algorithm verify while their key is kept."),
							 &authx_token_alg,
							 AUTHX_ALG_EDDSA,
							 token_alg_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("authx.token_ttl",
							gettext_noop("Lifetime of an access token (JWT exp - iat)."),
							gettext_noop("A rotated-out signing key stays in authx.jwks() this long."),
							&authx_token_ttl,
							900,
							1,
							86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("authx.token_role",
							   gettext_noop("The role claim of access tokens (the database role PostgREST switches to)."),
							   NULL,
							   &authx_token_role,
							   "authenticated",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("authx.token_issuer",
							   gettext_noop("The iss claim of access tokens; empty: none."),
							   NULL,
							   &authx_token_issuer,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("authx.token_audience",
							   gettext_noop("The aud claim of access tokens; empty: none."),
							   NULL,
							   &authx_token_audience,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("authx.refresh_reuse_grace",
							gettext_noop("How long a just-rotated refresh token may be used again without counting as reuse."),
							gettext_noop("Only the immediate parent of the newest token, for clients that sent two "
										 "refreshes at once; 0 = never."),
							&authx_refresh_reuse_grace,
							10,
							0,
							300,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.verification_ttl",
							gettext_noop("Lifetime of an email verification token."),
							NULL,
							&authx_verification_ttl,
							86400,
							60,
							30 * 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.reset_ttl",
							gettext_noop("Lifetime of a password reset token."),
							NULL,
							&authx_reset_ttl,
							3600,
							60,
							86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.device_ttl",
							gettext_noop("Default lifetime of a trusted device (authx.device_trust without ttl)."),
							NULL,
							&authx_device_ttl,
							30 * 86400,
							60,
							365 * 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("authx.usage_retention",
							gettext_noop("Days of authx.usage_log partitions kept; 0 keeps all."),
							gettext_noop("The hourly rollups are kept 400 days whatever this says."),
							&authx_usage_retention,
							30,
							0,
							3650,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("authx");
}

/*-------------------------------------------------------------------------
 *
 * policy.c
 *		Named rate-limit policies (authx.rate_check) and threat rules.
 *
 * Runs in backends, and in the maintenance worker for the auto-block queue.
 * Both tables are small and read on hot paths (every rate_check, every
 * audit event with an address), so each backend keeps a copy, good while
 * the shared AUTHX_GEN_POLICY generation has not moved: statement triggers
 * on the policy, override and rule tables bump it when their transaction
 * commits, and the copy is refilled with a fresh snapshot, as permissions
 * are in rbac.c (not under REPEATABLE READ, not by a transaction that
 * changed them itself).  Overrides can be many (one per partner address),
 * so the copy only knows which policies have any, and rate_check looks the
 * subject up in the table for those.
 *
 * Threat detection: authx.audit() hands every event that has an address to
 * authx_threat_observe.  A rule counts its events per address in a GCRA
 * bucket of the rate-limit table allowing threshold per window, so it fires
 * when events come faster than that: at the threshold-th event of a burst.
 * A rule with distinct_by counts an event only when its value (the user, or
 * a key of the details) is new for the address within the window, which a
 * one-per-window bucket per value tells.  A firing rule queues the address
 * in shared memory (once per window per rule and address, not when it is
 * blocked already) and wakes the maintenance worker, which blocks it and
 * audits threat.auto_block (a high event, hence an alert).  All of it is in
 * shared memory at once: an attacker's ROLLBACK undoes nothing.  Addresses
 * count as IPv4 or as the IPv6 /64 around them, the smallest network an
 * IPv6 host is usually given.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "authx.h"

typedef struct RatePolicy
{
	char		name[NAMEDATALEN];
	int32		max;
	int64		per_us;
	int			store;
	int			fail_mode;
	bool		has_overrides;
} RatePolicy;

typedef struct ThreatRule
{
	char		name[NAMEDATALEN];
	char		event[NAMEDATALEN + 1]; /* event types have at most 64 bytes */
	char		distinct_by[NAMEDATALEN];	/* "" counts every event */
	int32		threshold;
	int64		within_us;
} ThreatRule;

typedef struct PolicyConf
{
	uint64		generation;
	int			npolicies;
	RatePolicy *policies;
	int			nrules;
	ThreatRule *rules;
} PolicyConf;

static MemoryContext conf_cxt = NULL;
static PolicyConf *conf = NULL;
static SPIPlanPtr policies_plan = NULL;
static SPIPlanPtr rules_plan = NULL;
static SPIPlanPtr override_plan = NULL;

/*
 * These run as the tables' owner: every operator and function is
 * schema-qualified (extract() is, by the grammar), so no object of the
 * caller's can stand in for one; authx_as_owner pins search_path as well.
 */
static const char *policies_sql =
"SELECT p.name, p.max, ((extract(epoch FROM p.per)) OPERATOR(pg_catalog.*) 1000000)::int8, "
"       p.store OPERATOR(pg_catalog.=) 'redis', "
"       CASE WHEN p.fail_mode OPERATOR(pg_catalog.=) 'open' THEN 1 "
"            WHEN p.fail_mode OPERATOR(pg_catalog.=) 'closed' THEN 2 ELSE 0 END, "
"       EXISTS (SELECT 1 FROM authx.rate_limit_overrides o WHERE o.policy OPERATOR(pg_catalog.=) p.name) "
"  FROM authx.rate_limit_policies p";

static const char *rules_sql =
"SELECT r.name, r.event_type, COALESCE(r.distinct_by, ''), r.threshold, "
"       ((extract(epoch FROM r.within)) OPERATOR(pg_catalog.*) 1000000)::int8 "
"  FROM authx.threat_rules r WHERE r.enabled";

static const char *override_sql =
"SELECT o.max, ((extract(epoch FROM o.per)) OPERATOR(pg_catalog.*) 1000000)::int8, o.bypass "
"  FROM authx.rate_limit_overrides o "
" WHERE o.policy OPERATOR(pg_catalog.=) $1 AND o.subject OPERATOR(pg_catalog.=) $2 "
"   AND (o.expires_at IS NULL OR o.expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp())";

PG_FUNCTION_INFO_V1(authx_policy_changed);

/*
 * authx._policy_changed() — AFTER ... FOR EACH STATEMENT on the policy,
 * override and rule tables: every copy is stale once we commit.
 */
Datum
authx_policy_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("authx._policy_changed() must be called as a trigger")));
	authx_generation_touch(AUTHX_GEN_POLICY);
	return PointerGetDatum(NULL);
}

/*
 * authx_as_owner
 *		Run fn between SPI_connect and SPI_finish as the owner of authx.<rel>,
 *		with search_path pinned to pg_catalog, pg_temp.
 */
void
authx_as_owner(const char *rel, void (*fn) (void *), void *arg)
{
	Oid			owner = authx_rel_owner(rel);
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	/* As a SET search_path clause would: undone below, or by an abort. */
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SPI_connect();
	fn(arg);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
}

static void
text_col(int row, int col, char *out, Size outlen)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);

	if (isnull)
		out[0] = '\0';
	else
		text_to_cstring_buffer(DatumGetTextPP(d), out, outlen);
}

static Datum
col(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? (Datum) 0 : d;
}

/* authx_as_owner body of conf_load: arg is the PolicyConf, in its context. */
static void
load_cb(void *arg)
{
	PolicyConf *c = arg;
	MemoryContext cxt = GetMemoryChunkContext(c);
	uint64		i;

	if (policies_plan == NULL)
		policies_plan = authx_keep_plan(policies_sql, 0, NULL);
	if (rules_plan == NULL)
		rules_plan = authx_keep_plan(rules_sql, 0, NULL);

	/*
	 * Not read-only: in READ COMMITTED that takes a snapshot now, after the
	 * caller read the generation.
	 */
	if (SPI_execute_plan(policies_plan, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "authx: reading rate-limit policies failed");
	c->npolicies = (int) SPI_processed;
	c->policies = MemoryContextAllocZero(cxt, sizeof(RatePolicy) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		RatePolicy *p = &c->policies[i];

		text_col(i, 1, p->name, sizeof(p->name));
		p->max = DatumGetInt32(col(i, 2));
		p->per_us = DatumGetInt64(col(i, 3));
		p->store = DatumGetBool(col(i, 4)) ? AUTHX_STORE_REDIS : AUTHX_STORE_LOCAL;
		p->fail_mode = DatumGetInt32(col(i, 5));
		p->has_overrides = DatumGetBool(col(i, 6));
	}

	if (SPI_execute_plan(rules_plan, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "authx: reading threat rules failed");
	c->nrules = (int) SPI_processed;
	c->rules = MemoryContextAllocZero(cxt, sizeof(ThreatRule) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		ThreatRule *r = &c->rules[i];

		text_col(i, 1, r->name, sizeof(r->name));
		text_col(i, 2, r->event, sizeof(r->event));
		text_col(i, 3, r->distinct_by, sizeof(r->distinct_by));
		r->threshold = DatumGetInt32(col(i, 4));
		r->within_us = DatumGetInt64(col(i, 5));
	}
}

static PolicyConf *
conf_load(MemoryContext cxt)
{
	PolicyConf *c = MemoryContextAllocZero(cxt, sizeof(PolicyConf));

	authx_as_owner("rate_limit_policies", load_cb, c);
	return c;
}

/*
 * conf_get
 *		The policies and rules as this backend may use them now.
 */
static PolicyConf *
conf_get(void)
{
	uint64		generation;
	PolicyConf *c;

	if (authx_shared == NULL || authx_generation_dirty(AUTHX_GEN_POLICY))
		return conf_load(CurrentMemoryContext);
	generation = authx_generation_read(AUTHX_GEN_POLICY);
	if (conf != NULL && conf->generation == generation)
		return conf;
	if (IsolationUsesXactSnapshot())
		return conf_load(CurrentMemoryContext);
	if (conf_cxt == NULL)
		conf_cxt = AllocSetContextCreate(TopMemoryContext, "authx policies", ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(conf_cxt);
	conf = NULL;
	c = conf_load(conf_cxt);
	c->generation = generation;
	conf = c;
	return conf;
}

/* ----------------------------------------------------------------
 * rate_check
 * ----------------------------------------------------------------
 */

typedef struct OverrideLookup
{
	const RatePolicy *policy;
	text	   *subject;
	bool		found;
	bool		bypass;
	int32		max;
	int64		per_us;
} OverrideLookup;

static void
override_cb(void *arg)
{
	OverrideLookup *o = arg;
	Datum		values[2];
	bool		isnull;

	if (override_plan == NULL)
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};

		override_plan = authx_keep_plan(override_sql, 2, argtypes);
	}
	values[0] = CStringGetTextDatum(o->policy->name);
	values[1] = PointerGetDatum(o->subject);
	if (SPI_execute_plan(override_plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "authx: reading rate-limit overrides failed");
	if (SPI_processed == 0)
		return;
	o->found = true;
	o->bypass = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	o->max = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		o->max = o->policy->max;
	o->per_us = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		o->per_us = o->policy->per_us;
}

PG_FUNCTION_INFO_V1(authx_rate_check);

/*
 * authx.rate_check(policy text, subject text, cost integer)
 *		RETURNS authx.rate_limit_result
 *		rate_limit with the policy's limit, store and fail_mode, or the
 *		subject's override; bypass answers allowed with nothing else.
 */
Datum
authx_rate_check(PG_FUNCTION_ARGS)
{
	static const char *const names[3] = {"policy", "subject", "cost"};
	PolicyConf *c;
	const RatePolicy *p = NULL;
	char	   *pname;
	text	   *subject;
	int32		cost;
	int32		max;
	int64		per_us;
	AuthxRateResult rr;
	StringInfoData key;
	int			i;

	for (i = 0; i < 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", names[i]),
					 errhint("Pass a non-null %s.", names[i])));
	pname = text_to_cstring(PG_GETARG_TEXT_PP(0));
	subject = PG_GETARG_TEXT_PP(1);
	cost = PG_GETARG_INT32(2);
	authx_rate_check_args(1, cost);

	c = conf_get();
	for (i = 0; i < c->npolicies && p == NULL; i++)
		if (strcmp(c->policies[i].name, pname) == 0)
			p = &c->policies[i];
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("rate limit policy \"%s\" does not exist", pname),
				 errhint("See authx.rate_limit_policies; create one with authx.rate_policy_set.")));
	max = p->max;
	per_us = p->per_us;
	if (p->has_overrides)
	{
		OverrideLookup o = {p, subject, false, false, 0, 0};

		authx_as_owner("rate_limit_policies", override_cb, &o);
		if (o.found && o.bypass)
		{
			memset(&rr, 0, sizeof(rr));
			rr.allowed = true;
			rr.unlimited = true;
			authx_stat_add(AUTHX_STAT_RATE_ALLOWED, 1);
			PG_RETURN_DATUM(authx_rate_datum(fcinfo, &rr));
		}
		if (o.found)
		{
			max = o.max;
			per_us = o.per_us;
		}
	}
	if (p->store == AUTHX_STORE_LOCAL)
		authx_require_shmem();

	/* The policy's bucket: chr(1) cannot occur in a policy name. */
	initStringInfo(&key);
	appendStringInfoString(&key, p->name);
	appendStringInfoChar(&key, '\x01');
	appendBinaryStringInfo(&key, VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject));
	authx_rate_apply(key.data, key.len, max, per_us, cost, false, p->store, p->fail_mode, &rr);
	PG_RETURN_DATUM(authx_rate_datum(fcinfo, &rr));
}

/* ----------------------------------------------------------------
 * Threat detection
 * ----------------------------------------------------------------
 */

/*
 * distinct_value
 *		The value a distinct_by rule counts for this event: the user id, or
 *		a scalar of the details as text; NULL when there is none.
 */
static char *
distinct_value(const char *by, const pg_uuid_t *user_id, Jsonb *details)
{
	JsonbValue *v;

	if (strcmp(by, "user_id") == 0)
		return user_id ? DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(user_id))) : NULL;
	if (details == NULL)
		return NULL;
	v = getKeyJsonValueFromContainer(&details->root, by, strlen(by), NULL);
	if (v == NULL)
		return NULL;
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/*
 * spend
 *		Spend one from the (ns, rule, address[, value]) bucket allowing max
 *		per the rule's window: what is left, or -1 when it was empty.
 */
static int64
spend(uint8 ns, const ThreatRule *r, uint8 family, const uint8 *addr, const char *value, int32 max)
{
	StringInfoData key;
	uint8		digest[AUTHX_HASH_LEN];
	AuthxRateResult rr;

	initStringInfo(&key);
	appendBinaryStringInfo(&key, (const char *) &MyDatabaseId, sizeof(Oid));
	appendStringInfoString(&key, r->name);
	appendStringInfoChar(&key, '\0');
	appendStringInfoChar(&key, (char) family);
	appendBinaryStringInfo(&key, (const char *) addr, 16);
	if (value != NULL)
		appendStringInfoString(&key, value);
	authx_sha256(key.data, key.len, digest);
	pfree(key.data);
	authx_rate_consume(ns, digest, max, r->within_us, 1, false, GetCurrentTimestamp(), &rr);
	return rr.allowed ? rr.remaining : -1;
}

static void
enqueue(const ThreatRule *r, uint8 family, uint8 bits, const uint8 *addr, const uint8 *host)
{
	bool		queued;

	SpinLockAcquire(&authx_shared->threat_lock);
	queued = authx_shared->threat_n < AUTHX_THREAT_QUEUE;
	if (queued)
	{
		AuthxThreatHit *h = &authx_shared->threat_queue[authx_shared->threat_n++];

		memcpy(h->rule, r->name, NAMEDATALEN);
		h->family = family;
		h->bits = bits;
		memcpy(h->addr, addr, 16);
		memcpy(h->host, host, 16);
	}
	SpinLockRelease(&authx_shared->threat_lock);
	authx_stat_add(queued ? AUTHX_STAT_THREAT_DETECTIONS : AUTHX_STAT_THREAT_DROPPED, 1);
	if (queued)
		authx_wake_maintenance();
}

/*
 * authx_threat_observe
 *		An event of type event[0..len) happened from ip (an inet Datum) for
 *		user_id (or NULL) with details (a Jsonb *, or NULL): count it for
 *		every enabled rule on that type.  Only in authx.database, where the
 *		maintenance worker that blocks runs, and only with shared memory.
 */
void
authx_threat_observe(const char *event, int len, Datum ip, const pg_uuid_t *user_id, void *details)
{
	PolicyConf *c;
	uint8		family = 0;
	uint8		bits = 0;
	uint8		addr[16];
	uint8		host[16];
	bool		keyed = false;
	int			i;

	if (authx_shared == NULL || !authx_in_worker_database())
		return;
	c = conf_get();
	for (i = 0; i < c->nrules; i++)
	{
		const ThreatRule *r = &c->rules[i];

		if ((int) strlen(r->event) != len || memcmp(r->event, event, len) != 0)
			continue;
		if (!keyed)
		{
			authx_ip_key(ip, &family, &bits, addr, host);
			keyed = true;
		}
		if (r->distinct_by[0] != '\0')
		{
			char	   *value = distinct_value(r->distinct_by, user_id, (Jsonb *) details);

			/* Nothing to tell accounts apart by, or seen in this window. */
			if (value == NULL || spend(AUTHX_RATE_NS_SEEN, r, family, addr, value, 1) < 0)
				continue;
		}
		if (spend(AUTHX_RATE_NS_THREAT, r, family, addr, NULL, r->threshold) > 0)
			continue;
		if (authx_ip_is_blocked(ip) ||
			spend(AUTHX_RATE_NS_FIRED, r, family, addr, NULL, 1) < 0)
			continue;
		enqueue(r, family, bits, addr, host);
	}
}

/*
 * authx_threat_flush
 *		Maintenance worker: block every queued address through
 *		authx._threat_block, in one transaction, and only then take them off
 *		the queue (a failure leaves them for the next turn).  Returns how
 *		many were handled.
 */
int
authx_threat_flush(void)
{
	AuthxThreatHit *hits;
	int			n;
	int			i;
	int			blocked = 0;

	SpinLockAcquire(&authx_shared->threat_lock);
	n = authx_shared->threat_n;
	SpinLockRelease(&authx_shared->threat_lock);
	if (n == 0)
		return 0;
	hits = palloc(sizeof(AuthxThreatHit) * n);
	SpinLockAcquire(&authx_shared->threat_lock);
	memcpy(hits, authx_shared->threat_queue, sizeof(AuthxThreatHit) * n);
	SpinLockRelease(&authx_shared->threat_lock);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "authx: blocking detected threats");
	for (i = 0; i < n; i++)
	{
		Oid			argtypes[3] = {INETOID, TEXTOID, INETOID};
		Datum		values[3];
		bool		isnull;

		values[0] = authx_inet_datum(hits[i].family, hits[i].bits, hits[i].addr);
		values[1] = CStringGetTextDatum(hits[i].rule);
		values[2] = authx_inet_datum(hits[i].family, hits[i].family == PGSQL_AF_INET ? 32 : 128,
									 hits[i].host);
		if (SPI_execute_with_args("SELECT authx._threat_block($1, $2, $3)", 3, argtypes, values,
								  NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "authx: authx._threat_block failed");
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
			!isnull)
			blocked++;
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	/* Producers only append: ours are still the first n. */
	SpinLockAcquire(&authx_shared->threat_lock);
	memmove(authx_shared->threat_queue, authx_shared->threat_queue + n,
			sizeof(AuthxThreatHit) * (authx_shared->threat_n - n));
	authx_shared->threat_n -= n;
	SpinLockRelease(&authx_shared->threat_lock);
	authx_stat_add(AUTHX_STAT_THREAT_BLOCKS, blocked);
	return n;
}

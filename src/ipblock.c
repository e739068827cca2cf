/*-------------------------------------------------------------------------
 *
 * ipblock.c
 *		IP blocking: authx.ip_blocked from a shared-memory copy of
 *		authx.ip_blocks.
 *
 * Runs in backends.  The copy holds every block and allowlist entry in
 * force, sorted by (allow, family, prefix length, address), with an index of
 * the (allow, family, prefix length) groups; a lookup masks the address to
 * each group's length and binary-searches that group, so its cost grows
 * with the number of distinct prefix lengths, not of entries.  Readers take
 * AUTHX_LOCK_IPBLOCK shared.
 *
 * Any change of authx.ip_blocks bumps a shared generation counter when its
 * transaction commits (a row trigger marks the transaction, the commit
 * callback bumps).  The first ip_blocked call that sees a newer generation
 * than the copy's reads the table (with a snapshot taken after it read the
 * generation; not under REPEATABLE READ, whose snapshot may be older) and,
 * under the lock held exclusively, installs the new copy unless someone
 * installed a newer one meanwhile.  A block's end is checked
 * at lookup, so expiry needs no reload.  When the table holds more entries
 * than authx.ip_block_slots, or without shared_preload_libraries, the
 * answer comes from the table instead (correct, slower; counted).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "authx.h"

#define IP_MAX_GROUPS	(2 * (33 + 129))

typedef struct IpEntry
{
	bool		allow;
	uint8		family;			/* PGSQL_AF_INET or PGSQL_AF_INET6 */
	uint8		bits;
	uint8		addr[16];		/* masked to bits */
	TimestampTz until;			/* DT_NOEND: until lifted */
} IpEntry;

typedef struct IpGroup
{
	bool		allow;
	uint8		family;
	uint8		bits;
	int			start;
	int			count;
} IpGroup;

typedef struct IpShared
{
	bool		loaded;
	bool		overflow;		/* the table did not fit: ask SQL */
	uint64		generation;		/* of the installed copy */
	int			nentries;
	int			ngroups;
	IpGroup		groups[IP_MAX_GROUPS];
	IpEntry		entries[FLEXIBLE_ARRAY_MEMBER];
} IpShared;

static IpShared *ipshared = NULL;
static SPIPlanPtr load_plan = NULL;
static SPIPlanPtr sql_plan = NULL;

Size
authx_ipblock_shmem_size(void)
{
	return MAXALIGN(add_size(offsetof(IpShared, entries),
							 mul_size(sizeof(IpEntry), authx_ip_block_slots)));
}

void
authx_ipblock_shmem_startup(char *base, bool found)
{
	ipshared = (IpShared *) base;
	if (!found)
		memset(ipshared, 0, offsetof(IpShared, entries));
}

PG_FUNCTION_INFO_V1(authx_ip_blocks_changed);

/*
 * authx._ip_blocks_changed() — AFTER ... on authx.ip_blocks: the shared
 * copy is stale once we commit.
 */
Datum
authx_ip_blocks_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("authx._ip_blocks_changed() must be called as a trigger")));
	authx_generation_touch(AUTHX_GEN_IPBLOCK);
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------------
 * Lookup
 * ----------------------------------------------------------------
 */

/*
 * normalize
 *		The address of ip as (family, 16 bytes); an IPv4-mapped IPv6 address
 *		(::ffff:a.b.c.d) becomes the IPv4 address.
 */
static void
normalize(inet *ip, uint8 *family, uint8 *addr)
{
	static const uint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	memset(addr, 0, 16);
	if (ip_family(ip) == PGSQL_AF_INET6 && memcmp(ip_addr(ip), mapped, 12) == 0)
	{
		*family = PGSQL_AF_INET;
		memcpy(addr, ip_addr(ip) + 12, 4);
		return;
	}
	*family = ip_family(ip);
	memcpy(addr, ip_addr(ip), ip_addrsize(ip));
}

/*
 * authx_ip_key
 *		The network an address is counted and blocked by: an IPv4 address
 *		(mapped ones too) as itself, an IPv6 address as its /64.  host (if
 *		not NULL) gets the address itself, normalized the same way.
 */
void
authx_ip_key(Datum ipd, uint8 *family, uint8 *bits, uint8 *addr, uint8 *host)
{
	inet	   *ip = DatumGetInetPP(ipd);

	normalize(ip, family, addr);
	if (host != NULL)
		memcpy(host, addr, 16);
	*bits = *family == PGSQL_AF_INET ? 32 : 64;
	if (*family != PGSQL_AF_INET)
		memset(addr + 8, 0, 8);
}

/* An inet (or cidr: addr is masked) Datum. */
Datum
authx_inet_datum(uint8 family, uint8 bits, const uint8 *addr)
{
	inet	   *res = palloc0(sizeof(inet));
	int			size = family == PGSQL_AF_INET ? 4 : 16;

	res->inet_data.family = family;
	res->inet_data.bits = bits;
	memcpy(res->inet_data.ipaddr, addr, size);
	SET_VARSIZE(res, VARHDRSZ + offsetof(inet_struct, ipaddr) + size);
	return InetPGetDatum(res);
}

PG_FUNCTION_INFO_V1(authx_ip_key_sql);

/*
 * authx._ip_key(ip inet) RETURNS cidr — authx_ip_key for SQL.
 */
Datum
authx_ip_key_sql(PG_FUNCTION_ARGS)
{
	uint8		family;
	uint8		bits;
	uint8		addr[16];

	authx_ip_key(PG_GETARG_DATUM(0), &family, &bits, addr, NULL);
	PG_RETURN_DATUM(authx_inet_datum(family, bits, addr));
}

static void
mask(const uint8 *in, int bits, uint8 *out)
{
	int			i;

	for (i = 0; i < 16; i++)
	{
		int			keep = Max(Min(bits - 8 * i, 8), 0);

		out[i] = keep == 8 ? in[i] : (uint8) (in[i] & (0xff00 >> keep));
	}
}

static int
entry_cmp(const void *a, const void *b)
{
	const IpEntry *x = (const IpEntry *) a;
	const IpEntry *y = (const IpEntry *) b;

	if (x->allow != y->allow)
		return x->allow ? -1 : 1;
	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	if (x->bits != y->bits)
		return x->bits < y->bits ? -1 : 1;
	return memcmp(x->addr, y->addr, 16);
}

/*
 * group_match
 *		Is there an entry of group g covering addr (live at now)?
 */
static bool
group_match(const IpGroup *g, const uint8 *addr, TimestampTz now)
{
	IpEntry		key;
	int			lo = g->start;
	int			hi = g->start + g->count - 1;

	mask(addr, g->bits, key.addr);
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = memcmp(ipshared->entries[mid].addr, key.addr, 16);

		if (c == 0)
			return ipshared->entries[mid].until > now;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return false;
}

/*
 * run_as_owner
 *		Execute plan with values as the owner of authx.ip_blocks, with a
 *		fresh snapshot.  Caller is connected to SPI.
 */
static void
run_as_owner(SPIPlanPtr plan, Datum *values)
{
	Oid			save_userid;
	int			save_sec;
	Oid			owner = authx_rel_owner("ip_blocks");

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "authx: IP block query failed");
	SetUserIdAndSecContext(save_userid, save_sec);
}

/*
 * blocked_sql
 *		The answer from the table.
 */
static bool
blocked_sql(Datum ip, TimestampTz now)
{
	Datum		values[2] = {ip, TimestampTzGetDatum(now)};
	bool		isnull;
	bool		result;

	authx_stat_add(AUTHX_STAT_IPBLOCK_SQL, 1);
	SPI_connect();
	if (sql_plan == NULL)
	{
		Oid			argtypes[2] = {INETOID, TIMESTAMPTZOID};

		sql_plan = authx_keep_plan("SELECT authx._ip_blocked_sql($1, $2)", 2, argtypes);
	}
	run_as_owner(sql_plan, values);
	result = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return result && !isnull;
}

/*
 * reload
 *		Read the entries in force and install them as the copy of generation
 *		gen, unless a copy as new is installed already.
 */
static void
reload(uint64 gen, TimestampTz now)
{
	Datum		values[1] = {TimestampTzGetDatum(now)};
	IpEntry    *local;
	int			n;
	int			i;
	int			ngroups = 0;
	IpGroup		groups[IP_MAX_GROUPS];

	SPI_connect();
	if (load_plan == NULL)
	{
		Oid			argtypes[1] = {TIMESTAMPTZOID};

		load_plan = authx_keep_plan("SELECT net, allow, until FROM authx._ip_blocks_live($1)", 1, argtypes);
	}
	run_as_owner(load_plan, values);
	n = (int) SPI_processed;
	local = SPI_palloc(sizeof(IpEntry) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		bool		no_end;
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		inet	   *net = DatumGetInetPP(SPI_getbinval(t, d, 1, &isnull));
		Datum		until = SPI_getbinval(t, d, 3, &no_end);

		local[i].allow = DatumGetBool(SPI_getbinval(t, d, 2, &isnull));
		normalize(net, &local[i].family, local[i].addr);
		/* A mapped-IPv4 network keeps the length of its IPv4 part. */
		local[i].bits = (uint8) Max(ip_bits(net) - (ip_family(net) != local[i].family ? 96 : 0), 0);
		mask(local[i].addr, local[i].bits, local[i].addr);
		local[i].until = no_end ? DT_NOEND : DatumGetTimestampTz(until);
	}
	SPI_finish();

	qsort(local, n, sizeof(IpEntry), entry_cmp);
	/* One network written in two forms (v4 and mapped v6): the later end. */
	if (n > 1)
	{
		int			kept = 1;

		for (i = 1; i < n; i++)
		{
			if (entry_cmp(&local[i], &local[kept - 1]) == 0)
				local[kept - 1].until = Max(local[kept - 1].until, local[i].until);
			else
				local[kept++] = local[i];
		}
		n = kept;
	}
	for (i = 0; i < n; i++)
	{
		IpGroup    *g = ngroups > 0 ? &groups[ngroups - 1] : NULL;

		if (g == NULL || g->allow != local[i].allow || g->family != local[i].family ||
			g->bits != local[i].bits)
		{
			g = &groups[ngroups++];
			g->allow = local[i].allow;
			g->family = local[i].family;
			g->bits = local[i].bits;
			g->start = i;
			g->count = 0;
		}
		g->count++;
	}

	LWLockAcquire(authx_lock(AUTHX_LOCK_IPBLOCK), LW_EXCLUSIVE);
	if (!ipshared->loaded || ipshared->generation < gen)
	{
		ipshared->overflow = n > authx_ip_block_slots;
		if (!ipshared->overflow)
		{
			memcpy(ipshared->entries, local, sizeof(IpEntry) * n);
			memcpy(ipshared->groups, groups, sizeof(IpGroup) * ngroups);
			ipshared->nentries = n;
			ipshared->ngroups = ngroups;
		}
		ipshared->generation = gen;
		ipshared->loaded = true;
	}
	LWLockRelease(authx_lock(AUTHX_LOCK_IPBLOCK));
	authx_stat_add(AUTHX_STAT_IPBLOCK_RELOADS, 1);
	pfree(local);
}

/*
 * lookup
 *		Answer from the copy: 1 blocked, 0 not, -1 the copy is stale, -2 it
 *		is incomplete (ask the table).  An allowlist entry wins over any
 *		block.
 */
static int
lookup(uint8 family, const uint8 *addr, TimestampTz now, uint64 gen)
{
	int			answer = 0;
	int			pass;
	int			i;

	LWLockAcquire(authx_lock(AUTHX_LOCK_IPBLOCK), LW_SHARED);
	if (!ipshared->loaded || ipshared->generation < gen)
		answer = -1;
	else if (ipshared->overflow)
		answer = -2;
	for (pass = 0; pass < 2 && answer == 0; pass++)
	{
		bool		allow = pass == 0;

		for (i = 0; i < ipshared->ngroups; i++)
		{
			const IpGroup *g = &ipshared->groups[i];

			if (g->allow == allow && g->family == family && group_match(g, addr, now))
			{
				answer = allow ? 2 : 1;
				break;
			}
		}
	}
	LWLockRelease(authx_lock(AUTHX_LOCK_IPBLOCK));
	return answer == 2 ? 0 : answer;
}

/*
 * authx_ip_is_blocked
 *		Is the address (an inet datum) blocked now?  For ip_blocked and the
 *		hot paths that honour blocks (session_validate).
 */
bool
authx_ip_is_blocked(Datum ipd)
{
	inet	   *ip = DatumGetInetPP(ipd);
	TimestampTz now = GetCurrentTimestamp();
	uint8		family;
	uint8		addr[16];
	uint64		gen;
	int			answer;

	if (authx_shared == NULL)
		return blocked_sql(ipd, now);
	normalize(ip, &family, addr);
	gen = authx_generation_read(AUTHX_GEN_IPBLOCK);
	answer = lookup(family, addr, now, gen);

	/*
	 * A stale copy is reloaded, but not with a REPEATABLE READ snapshot,
	 * which may predate the generation it would be installed under.
	 */
	if (answer == -1 && !authx_generation_dirty(AUTHX_GEN_IPBLOCK) && !IsolationUsesXactSnapshot())
	{
		reload(gen, now);
		answer = lookup(family, addr, now, gen);
	}
	/* Our own uncommitted changes, a table too big, or a race: the table. */
	if (answer < 0 || authx_generation_dirty(AUTHX_GEN_IPBLOCK))
		answer = blocked_sql(ipd, now) ? 1 : 0;
	if (answer)
		authx_stat_add(AUTHX_STAT_IPBLOCK_BLOCKED, 1);
	return answer == 1;
}

PG_FUNCTION_INFO_V1(authx_ip_blocked);

/*
 * authx.ip_blocked(ip inet) RETURNS boolean
 */
Datum
authx_ip_blocked(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(authx_ip_is_blocked(PG_GETARG_DATUM(0)));
}

/*-------------------------------------------------------------------------
 *
 * redis.c
 *		hiredis wrapper: the cache writer's connect, resync and apply, and
 *		the rate-limit script backends run for policies stored in Redis.
 *
 * The only file that includes <hiredis/hiredis.h>.  The cache is written by
 * the Redis writer background worker only (backends never wait on Redis for
 * the cache); a backend talks to Redis only for a rate limit in Redis.  It
 * never raises: every function reports failure through its return value and
 * an error text that names the operation and never the credentials.  hiredis
 * replies are malloc'ed and freed here before returning.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include <hiredis/hiredis.h>

#include "authx.h"
#include "redis.h"

/*
 * Applies a batch of operations, each only if it is newer than what its key
 * holds.  One call per batch: a script invocation costs Redis more than the
 * few commands each operation needs.
 *   KEYS     the keys, one per operation
 *   ARGV     per operation: kind ("s" set / "n" set of a row just inserted /
 *            "r" revoke / "f" forget), version, expireat (unix s), the
 *            number of field/value words that follow, then those words
 *            (set only)
 * An older version is ignored; the same version only extends a live entry's
 * life (a validation refreshing a hot session), never a tombstone's or a
 * bare version's.  A tombstone keeps its version until it expires, so a
 * late, older write can never bring a revoked session or key back.  A live
 * entry is one with a user_id; a forget leaves only the version, which
 * gateways read as "ask Postgres".  DEL only when the kind of entry changes
 * (HSET overwrites a live entry's fields, which are the same every time).
 *
 * "n" is the creation of a session or key, whose key Redis almost never
 * holds: it is written without reading the version first (HSET then
 * EXPIREAT, one call fewer, the bulk of a sign-in rush).  HSET says how many
 * fields it added; fewer than it wrote means the key was there after all
 * (an operation on the new row overtook the creation's in the queue, or the
 * token hash came back in a restored or moved row).  What it held is then
 * lost, so the entry becomes a bare version nothing can overwrite, for the
 * rest of the old key's life: gateways ask Postgres, which knows.  An "n"
 * must therefore reach Redis once only: operations sent again (a retry
 * after a failure, when Redis may have run them already) go as "s", which
 * is harmless at the same version.
 *
 * Returns {operations that changed their key, key lookups that found the
 * key, lookups that did not}: Redis counts the script's HGET and HEXISTS in
 * keyspace_hits / keyspace_misses (HSET, HDEL and EXPIREAT are not counted),
 * and the writer takes them out again to count the lookups of gateways alone
 * (cache_hits, cache_misses).
 */
static const char *apply_lua =
"local a, applied, hits, misses = 1, 0, 0, 0\n"
"for i = 1, #KEYS do\n"
"  local k, kind, exp, nf = KEYS[i], ARGV[a], ARGV[a + 2], tonumber(ARGV[a + 3])\n"
"  if kind == 'n' then\n"
"    if redis.call('HSET', k, 'v', ARGV[a + 1], unpack(ARGV, a + 4, a + 3 + nf)) == 1 + nf / 2 then\n"
"      redis.call('EXPIREAT', k, exp)\n"
"    else\n"
"      redis.call('HDEL', k, 'user_id', 'expires_at', 'key_id', 'scopes', 'revoked')\n"
"      redis.call('HSET', k, 'v', '9223372036854775807')\n"
"    end\n"
"    applied = applied + 1\n"
"  else\n"
"    local n = tonumber(ARGV[a + 1])\n"
"    local cur = redis.call('HGET', k, 'v')\n"
"    local go = true\n"
"    if cur then\n"
"      hits = hits + 1\n"
"      local c = tonumber(cur)\n"
"      if c > n then\n"
"        go = false\n"
"      else\n"
"        hits = hits + 1\n"
"        local live = redis.call('HEXISTS', k, 'user_id') == 1\n"
"        if c == n then\n"
"          if kind == 's' and live then redis.call('EXPIREAT', k, exp) end\n"
"          go = false\n"
"        elseif kind ~= 's' or not live then\n"
"          redis.call('DEL', k)\n"
"        end\n"
"      end\n"
"    else\n"
"      misses = misses + 1\n"
"    end\n"
"    if go then\n"
"      if kind == 's' then\n"
"        redis.call('HSET', k, 'v', ARGV[a + 1], unpack(ARGV, a + 4, a + 3 + nf))\n"
"      elseif kind == 'r' then\n"
"        redis.call('HSET', k, 'revoked', '1', 'v', ARGV[a + 1])\n"
"      else\n"
"        redis.call('HSET', k, 'v', ARGV[a + 1])\n"
"      end\n"
"      redis.call('EXPIREAT', k, exp)\n"
"      applied = applied + 1\n"
"    end\n"
"  end\n"
"  a = a + 4 + nf\n"
"end\n"
"return {applied, hits, misses}\n";

/*
 * One GCRA rate-limit decision (ratelimit.c), on Redis's clock.
 *   KEYS[1]  the bucket
 *   ARGV     per (µs), the increment cost·per/max as whole µs and a
 *            remainder in 1/max µs, max, peek ("1" = do not spend)
 * The bucket holds "<TAT µs> <remainder>" and expires when it is full again.
 * Returns {TAT µs, remainder, now µs} as found (before spending), the
 * caller computes the answer from them, in 128-bit integers; and 1 if the
 * bucket existed (its GET is a keyspace hit, else a miss: see apply_lua).
 */
static const char *rate_lua =
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
"local per, q, r, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
"local tat, frac = now, 0\n"
"local cur = redis.call('GET', KEYS[1])\n"
"if cur then\n"
"  local a, b = string.match(cur, '^(%d+) (%d+)$')\n"
"  a, b = tonumber(a), tonumber(b)\n"
"  if a and b and (a > now or (a == now and b > 0)) then tat, frac = a, b end\n"
"end\n"
"local nt, nf = tat + q, frac + r\n"
"if nf >= max then nt, nf = nt + 1, nf - max end\n"
"local over = nt - per - now\n"
"if ARGV[5] ~= '1' and (over < 0 or (over == 0 and nf == 0)) then\n"
"  redis.call('SET', KEYS[1], string.format('%d %d', nt, nf), 'PX', math.floor((nt - now) / 1000) + 2)\n"
"end\n"
"return {tat, frac, now, cur and 1 or 0}\n";

/* Operations per EVALSHA. */
#define AUTHX_APPLY_CHUNK	64

struct AuthxRedis
{
	redisContext *ctx;
	char		sha[41];		/* of apply_lua, once loaded */
	char		rate_sha[41];	/* of rate_lua */
};

/*
 * authx_redis_parse_url
 *		redis://[[user]:password@]host[:port][/db] or
 *		unix:///path/to/socket[?db=N].  Returns false for anything else.
 */
bool
authx_redis_parse_url(const char *url, AuthxRedisTarget *t)
{
	const char *p;
	const char *at;
	const char *end;
	char	   *endp;

	memset(t, 0, sizeof(*t));
	t->port = 6379;
	if (strncmp(url, "unix://", 7) == 0)
	{
		p = url + 7;
		end = strchr(p, '?');
		if (*p != '/' || (end ? (long) (end - p) : (long) strlen(p)) >= (long) sizeof(t->host))
			return false;
		t->unix_socket = true;
		strlcpy(t->host, p, end ? (size_t) (end - p + 1) : sizeof(t->host));
		if (end)
		{
			if (strncmp(end, "?db=", 4) != 0)
				return false;
			t->db = (int) strtol(end + 4, &endp, 10);
			if (*endp != '\0' || t->db < 0)
				return false;
		}
		return true;
	}
	if (strncmp(url, "redis://", 8) != 0)
		return false;
	p = url + 8;
	at = strrchr(p, '@');
	if (at)
	{
		const char *colon = memchr(p, ':', at - p);

		if (colon == NULL || colon - p >= (long) sizeof(t->user) ||
			at - colon - 1 >= (long) sizeof(t->password))
			return false;
		memcpy(t->user, p, colon - p);
		memcpy(t->password, colon + 1, at - colon - 1);
		p = at + 1;
	}
	end = p + strcspn(p, ":/");
	if (end == p || end - p >= (long) sizeof(t->host))
		return false;
	memcpy(t->host, p, end - p);
	p = end;
	if (*p == ':')
	{
		t->port = (int) strtol(p + 1, &endp, 10);
		if (endp == p + 1 || t->port < 1 || t->port > 65535)
			return false;
		p = endp;
	}
	if (*p == '/')
	{
		if (p[1] != '\0')
		{
			t->db = (int) strtol(p + 1, &endp, 10);
			if (endp == p + 1 || *endp != '\0' || t->db < 0)
				return false;
		}
		p += strlen(p);
	}
	return *p == '\0';
}

/*
 * command
 *		Run one command; on a transport error or an error reply fill err
 *		(naming what) and return NULL.  The caller frees a non-NULL reply.
 */
static redisReply *
command(AuthxRedis *r, const char *what, char *err, size_t errlen, const char *fmt,...)
{
	va_list		ap;
	redisReply *reply;

	va_start(ap, fmt);
	reply = redisvCommand(r->ctx, fmt, ap);
	va_end(ap);
	if (reply == NULL)
	{
		snprintf(err, errlen, "%s: %s", what, r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
		return NULL;
	}
	if (reply->type == REDIS_REPLY_ERROR)
	{
		snprintf(err, errlen, "%s: %.*s", what, (int) Min(reply->len, 200), reply->str);
		freeReplyObject(reply);
		return NULL;
	}
	return reply;
}

static bool
load_one(AuthxRedis *r, const char *script, char *sha, char *err, size_t errlen)
{
	redisReply *reply = command(r, "SCRIPT LOAD", err, errlen, "SCRIPT LOAD %s", script);

	if (reply == NULL)
		return false;
	if (reply->type != REDIS_REPLY_STRING || reply->len != 40)
	{
		snprintf(err, errlen, "SCRIPT LOAD: unexpected reply");
		freeReplyObject(reply);
		return false;
	}
	memcpy(sha, reply->str, 40);
	sha[40] = '\0';
	freeReplyObject(reply);
	return true;
}

/* Both scripts: after a connect, and when Redis answers NOSCRIPT. */
static bool
load_script(AuthxRedis *r, char *err, size_t errlen)
{
	return load_one(r, apply_lua, r->sha, err, errlen) &&
		load_one(r, rate_lua, r->rate_sha, err, errlen);
}

/*
 * authx_redis_connect
 *		Connect, authenticate, select the database and load the script.
 *		NULL (with err) on any failure.
 */
AuthxRedis *
authx_redis_connect(const AuthxRedisTarget *t, int timeout_ms, char *err, size_t errlen)
{
	struct timeval tv;
	AuthxRedis *r;
	redisReply *reply;

	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	r = calloc(1, sizeof(AuthxRedis));
	if (r == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->ctx = t->unix_socket ? redisConnectUnixWithTimeout(t->host, tv)
		: redisConnectWithTimeout(t->host, t->port, tv);
	if (r->ctx == NULL || r->ctx->err)
	{
		if (t->unix_socket)
			snprintf(err, errlen, "connect to %s: %s", t->host,
					 r->ctx ? r->ctx->errstr : "cannot allocate context");
		else
			snprintf(err, errlen, "connect to %s:%d: %s", t->host, t->port,
					 r->ctx ? r->ctx->errstr : "cannot allocate context");
		authx_redis_close(r);
		return NULL;
	}
	redisSetTimeout(r->ctx, tv);
	/* TCP only: on a Unix socket it fails and poisons the context. */
	if (!t->unix_socket)
		redisEnableKeepAlive(r->ctx);

	if (t->password[0] != '\0')
	{
		/* The error text names AUTH only; Redis never echoes the secret. */
		reply = t->user[0] != '\0'
			? command(r, "AUTH", err, errlen, "AUTH %s %s", t->user, t->password)
			: command(r, "AUTH", err, errlen, "AUTH %s", t->password);
		if (reply == NULL)
		{
			authx_redis_close(r);
			return NULL;
		}
		freeReplyObject(reply);
	}
	if (t->db != 0)
	{
		reply = command(r, "SELECT", err, errlen, "SELECT %d", t->db);
		if (reply == NULL)
		{
			authx_redis_close(r);
			return NULL;
		}
		freeReplyObject(reply);
	}
	if (!load_script(r, err, errlen))
	{
		authx_redis_close(r);
		return NULL;
	}
	return r;
}

void
authx_redis_close(AuthxRedis *r)
{
	if (r == NULL)
		return;
	if (r->ctx)
		redisFree(r->ctx);
	free(r);
}

/* The value of "name:" in an INFO reply, or NULL. */
static const char *
info_field(const char *info, const char *name)
{
	size_t		len = strlen(name);
	const char *p = info;

	while ((p = strstr(p, name)) != NULL)
	{
		if ((p == info || p[-1] == '\n') && p[len] == ':')
			return p + len + 1;
		p += len;
	}
	return NULL;
}

/*
 * authx_redis_info
 *		The server's run_id (changes whenever Redis restarts) and its
 *		keyspace_hits / keyspace_misses counters (-1 when absent).
 */
bool
authx_redis_info(AuthxRedis *r, char *run_id, size_t run_id_len, int64 *hits, int64 *misses,
				 char *err, size_t errlen)
{
	redisReply *reply = command(r, "INFO", err, errlen, "INFO");
	const char *p;
	size_t		n;

	if (reply == NULL)
		return false;
	p = reply->type == REDIS_REPLY_STRING ? info_field(reply->str, "run_id") : NULL;
	if (p == NULL)
	{
		snprintf(err, errlen, "INFO: no run_id");
		freeReplyObject(reply);
		return false;
	}
	n = strcspn(p, "\r\n");
	strlcpy(run_id, p, Min(n + 1, run_id_len));
	p = info_field(reply->str, "keyspace_hits");
	*hits = p ? strtoll(p, NULL, 10) : -1;
	p = info_field(reply->str, "keyspace_misses");
	*misses = p ? strtoll(p, NULL, 10) : -1;
	freeReplyObject(reply);
	return true;
}

/*
 * authx_redis_unlink_prefix
 *		SCAN for every key under prefix and UNLINK them, in batches, except
 *		rate-limit buckets (authx.rate_limit_prefix, by default under the
 *		cache's prefix): those are shared state, not a copy of Postgres.
 *		Returns how many were unlinked, or -1 (with err).
 */
long
authx_redis_unlink_prefix(AuthxRedis *r, const char *prefix, char *err, size_t errlen)
{
	char		cursor[32] = "0";
	char	   *pattern = psprintf("%s*", prefix);
	const char *keep = authx_rate_limit_prefix;
	size_t		keeplen = strlen(keep);
	long		total = 0;

	do
	{
		redisReply *reply = command(r, "SCAN", err, errlen, "SCAN %s MATCH %s COUNT 1000",
									cursor, pattern);
		redisReply *keys;
		size_t		i;

		if (reply == NULL)
			return -1;
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
			reply->element[0]->type != REDIS_REPLY_STRING ||
			reply->element[1]->type != REDIS_REPLY_ARRAY)
		{
			snprintf(err, errlen, "SCAN: unexpected reply");
			freeReplyObject(reply);
			return -1;
		}
		strlcpy(cursor, reply->element[0]->str, sizeof(cursor));
		keys = reply->element[1];
		if (keys->elements > 0)
		{
			const char **argv = palloc(sizeof(char *) * (keys->elements + 1));
			size_t	   *lens = palloc(sizeof(size_t) * (keys->elements + 1));
			int			argc = 1;
			redisReply *del;

			argv[0] = "UNLINK";
			lens[0] = 6;
			for (i = 0; i < keys->elements; i++)
			{
				if (keys->element[i]->len >= keeplen &&
					memcmp(keys->element[i]->str, keep, keeplen) == 0)
					continue;
				argv[argc] = keys->element[i]->str;
				lens[argc++] = keys->element[i]->len;
			}
			if (argc > 1)
			{
				del = redisCommandArgv(r->ctx, argc, argv, lens);
				if (del == NULL || del->type == REDIS_REPLY_ERROR)
				{
					snprintf(err, errlen, "UNLINK: %s", del ? del->str : r->ctx->errstr);
					if (del)
						freeReplyObject(del);
					freeReplyObject(reply);
					return -1;
				}
				total += del->integer;
				freeReplyObject(del);
			}
		}
		freeReplyObject(reply);
	} while (strcmp(cursor, "0") != 0);
	return total;
}

static void
uuid_text(const pg_uuid_t *u, char *out)
{
	static const char digits[] = "0123456789abcdef";
	int			i;
	char	   *p = out;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = digits[u->data[i] >> 4];
		*p++ = digits[u->data[i] & 15];
	}
	*p = '\0';
}

/*
 * The writer's EVALSHA, encoded in RESP here rather than by hiredis: its
 * per-argument formatting (sdscatfmt, a malloc or two each) and the
 * snprintf of every number were a quarter of the writer's CPU under load.
 * Reused from chunk to chunk; allocated in TopMemoryContext on first use.
 */
static StringInfoData cmd;

/* Append one bulk string: $<len>CRLF<bytes>CRLF. */
static void
resp_bulk(const char *s, int len)
{
	char		num[12];
	int			nl = pg_ultoa_n((uint32) len, num);
	char	   *p;

	enlargeStringInfo(&cmd, nl + len + 5);
	p = cmd.data + cmd.len;
	*p++ = '$';
	memcpy(p, num, nl);
	p += nl;
	*p++ = '\r';
	*p++ = '\n';
	memcpy(p, s, len);
	p += len;
	*p++ = '\r';
	*p++ = '\n';
	cmd.len = p - cmd.data;
}

static void
resp_str(const char *s)
{
	resp_bulk(s, strlen(s));
}

static void
resp_int(int64 v)
{
	char		num[24];

	resp_bulk(num, pg_lltoa(v, num));
}

/* Fields of a live entry after its version: see apply_lua. */
static int
set_fields(const AuthxCacheOp *op)
{
	if (op->kind != AUTHX_CACHE_SET)
		return 0;
	return op->type == AUTHX_CACHE_APIKEY ? 8 : 4;
}

/*
 * append_chunk
 *		Queue one EVALSHA of the apply script for ops[0..n) in the pipeline;
 *		resend: Redis may have applied them already (no "n").  Sessions carry user_id and expires_at; API keys key_id, user_id,
 *		scopes (space-separated) and expires_at (0: never).
 */
static void
append_chunk(AuthxRedis *r, const char *prefix, const AuthxCacheOp *ops, int n, bool resend)
{
	int			argc = 3 + n;
	int			plen = strlen(prefix);
	char		head[16];
	int			i;

	Assert(n > 0 && n <= AUTHX_APPLY_CHUNK);
	if (cmd.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&cmd);
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(&cmd);
	for (i = 0; i < n; i++)
		argc += 4 + set_fields(&ops[i]);
	head[0] = '*';
	appendBinaryStringInfo(&cmd, head, 1 + pg_ultoa_n((uint32) argc, head + 1));
	appendBinaryStringInfo(&cmd, "\r\n", 2);
	resp_str("EVALSHA");
	resp_str(r->sha);
	resp_int(n);
	for (i = 0; i < n; i++)
	{
		char		key[128 + 3 + 2 * AUTHX_HASH_LEN];

		/* authx.redis_prefix is at most 64 bytes (its check hook) */
		memcpy(key, prefix, plen);
		key[plen] = ops[i].type;
		key[plen + 1] = ':';
		hex_encode((const char *) ops[i].hash, AUTHX_HASH_LEN, key + plen + 2);
		resp_bulk(key, plen + 2 + 2 * AUTHX_HASH_LEN);
	}
	for (i = 0; i < n; i++)
	{
		const AuthxCacheOp *op = &ops[i];
		int			nf = set_fields(op);
		char		uuid[37];

		resp_str(op->kind == AUTHX_CACHE_SET ? (op->born && !resend ? "n" : "s") :
				 op->kind == AUTHX_CACHE_REVOKE ? "r" : "f");
		resp_int(op->version);
		resp_int((int64) Max(timestamptz_to_time_t(op->expire_at), 1));
		resp_int(nf);
		if (nf == 0)
			continue;
		if (op->type == AUTHX_CACHE_APIKEY)
		{
			uuid_text(&op->key_id, uuid);
			resp_str("key_id");
			resp_str(uuid);
			resp_str("scopes");
			resp_str(op->scopes);
		}
		uuid_text(&op->user_id, uuid);
		resp_str("user_id");
		resp_str(uuid);
		resp_str("expires_at");
		resp_int(op->expires_at == DT_NOEND ? 0 : (int64) timestamptz_to_time_t(op->expires_at));
	}
	redisAppendFormattedCommand(r->ctx, cmd.data, cmd.len);
}

/*
 * authx_redis_apply
 *		Pipeline the operations, AUTHX_APPLY_CHUNK to an EVALSHA, and read
 *		every reply.  False (with err) when any failed: the caller keeps them
 *		queued and retries with resend set, which is harmless because the
 *		script ignores anything not newer (and resend turns creations into
 *		plain sets: see apply_lua).  A NOSCRIPT (Redis lost its script cache)
 *		reloads the script and retries once, as a resend.
 */
bool
authx_redis_apply(AuthxRedis *r, const char *prefix, const AuthxCacheOp *ops, int n,
				  bool resend, char *err, size_t errlen)
{
	int			attempt;

	for (attempt = 0; attempt < 2; attempt++)
	{
		bool		noscript = false;
		bool		ok = true;
		int			chunks = 0;
		int			i;

		for (i = 0; i < n; i += AUTHX_APPLY_CHUNK)
		{
			append_chunk(r, prefix, ops + i, Min(AUTHX_APPLY_CHUNK, n - i), resend || attempt > 0);
			chunks++;
		}
		for (i = 0; i < chunks; i++)
		{
			redisReply *reply = NULL;

			if (redisGetReply(r->ctx, (void **) &reply) != REDIS_OK || reply == NULL)
			{
				snprintf(err, errlen, "EVALSHA: %s", r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
				return false;	/* the connection is unusable now */
			}
			if (reply->type == REDIS_REPLY_ERROR)
			{
				if (strncmp(reply->str, "NOSCRIPT", 8) == 0)
					noscript = true;
				else if (ok)
					snprintf(err, errlen, "EVALSHA: %.*s", (int) Min(reply->len, 200), reply->str);
				ok = false;
			}
			else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
					 reply->element[1]->type == REDIS_REPLY_INTEGER &&
					 reply->element[2]->type == REDIS_REPLY_INTEGER)
				authx_cache_own_lookups(reply->element[1]->integer, reply->element[2]->integer);
			freeReplyObject(reply);
		}
		if (ok)
			return true;
		if (!noscript || !load_script(r, err, errlen))
			return false;
	}
	return false;
}

/* ----------------------------------------------------------------
 * Backends: rate limits in Redis
 * ----------------------------------------------------------------
 */

/* This backend's connection, and the URL it was made for. */
static AuthxRedis *rate_conn = NULL;
static char *rate_conn_url = NULL;

static void
rate_disconnect(void)
{
	authx_redis_close(rate_conn);
	rate_conn = NULL;
}

/*
 * authx_rate_redis_url
 *		Where rate limits kept in Redis live: authx.rate_limit_redis_url, or
 *		else authx.redis_url ("" when neither is set).
 */
const char *
authx_rate_redis_url(void)
{
	if (authx_rate_limit_redis_url != NULL && authx_rate_limit_redis_url[0] != '\0')
		return authx_rate_limit_redis_url;
	return authx_redis_url != NULL ? authx_redis_url : "";
}

/*
 * authx_redis_gcra
 *		Run the rate script on this backend's connection (made on first use
 *		and again after a failure or a change of its URL; a kept
 *		connection found closed is replaced once, at once).  state
 *		gets {TAT µs, remainder, now µs}.  False (with err, never the
 *		credentials) on any failure; the connection is dropped then.  Waits
 *		at most about authx.redis_timeout_ms per attempt.
 */
static bool
rate_connect(char *err, size_t errlen)
{
	AuthxRedisTarget target;

	if (!authx_redis_parse_url(authx_rate_redis_url(), &target))
	{
		snprintf(err, errlen, "the rate-limit Redis URL is not a Redis URL");
		return false;
	}
	rate_conn = authx_redis_connect(&target, authx_redis_timeout_ms, err, errlen);
	if (rate_conn == NULL)
		return false;
	if (rate_conn_url)
		pfree(rate_conn_url);
	rate_conn_url = MemoryContextStrdup(TopMemoryContext, authx_rate_redis_url());
	return true;
}

static bool gcra_call(const char *key, int64 per_us, int64 q, int64 r, int64 max, bool peek,
					  int64 *state, char *err, size_t errlen);

bool
authx_redis_gcra(const char *key, int64 per_us, int64 q, int64 r, int64 max, bool peek,
				 int64 *state, char *err, size_t errlen)
{
	volatile bool ok = false;

	/* Its lookup is pending (see authx_cache_lookups_sample) until counted. */
	authx_cache_own_pending(1);
	PG_TRY();
	{
		ok = gcra_call(key, per_us, q, r, max, peek, state, err, errlen);
	}
	PG_FINALLY();
	{
		authx_cache_own_pending(-1);
	}
	PG_END_TRY();
	return ok;
}

static bool
gcra_call(const char *key, int64 per_us, int64 q, int64 r, int64 max, bool peek,
		  int64 *state, char *err, size_t errlen)
{
	char		args[4][24];
	const char *argv[9];
	size_t		lens[9];
	redisReply *reply = NULL;
	bool		reused;
	int			attempt;
	int			i;

	if (rate_conn != NULL && strcmp(rate_conn_url, authx_rate_redis_url()) != 0)
		rate_disconnect();
	reused = rate_conn != NULL;
	if (rate_conn == NULL && !rate_connect(err, errlen))
		return false;

	snprintf(args[0], sizeof(args[0]), INT64_FORMAT, per_us);
	snprintf(args[1], sizeof(args[1]), INT64_FORMAT, q);
	snprintf(args[2], sizeof(args[2]), INT64_FORMAT, r);
	snprintf(args[3], sizeof(args[3]), INT64_FORMAT, max);
	argv[0] = "EVALSHA";
	argv[2] = "1";
	argv[3] = key;
	argv[4] = args[0];
	argv[5] = args[1];
	argv[6] = args[2];
	argv[7] = args[3];
	argv[8] = peek ? "1" : "0";
	for (attempt = 0; attempt < 3; attempt++)
	{
		argv[1] = rate_conn->rate_sha;
		for (i = 0; i < 9; i++)
			lens[i] = strlen(argv[i]);
		reply = redisCommandArgv(rate_conn->ctx, 9, argv, lens);
		if (reply == NULL)
		{
			snprintf(err, errlen, "EVALSHA: %s",
					 rate_conn->ctx->errstr[0] ? rate_conn->ctx->errstr : "connection lost");
			rate_disconnect();
			/*
			 * A kept connection that Redis (or a proxy) closed meanwhile is
			 * not an outage: one new connection, one more try.
			 */
			if (!reused)
				return false;
			reused = false;
			if (!rate_connect(err, errlen))
				return false;
			continue;
		}
		if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0)
		{
			freeReplyObject(reply);
			reply = NULL;
			if (!load_script(rate_conn, err, errlen))
			{
				rate_disconnect();
				return false;
			}
			continue;
		}
		break;
	}
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4 ||
		reply->element[0]->type != REDIS_REPLY_INTEGER ||
		reply->element[1]->type != REDIS_REPLY_INTEGER ||
		reply->element[2]->type != REDIS_REPLY_INTEGER ||
		reply->element[3]->type != REDIS_REPLY_INTEGER)
	{
		if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
			snprintf(err, errlen, "EVALSHA: %.*s", (int) Min(reply->len, 200), reply->str);
		else
			snprintf(err, errlen, "EVALSHA: unexpected reply");
		if (reply)
			freeReplyObject(reply);
		rate_disconnect();
		return false;
	}
	for (i = 0; i < 3; i++)
		state[i] = reply->element[i]->integer;
	authx_cache_own_lookups(reply->element[3]->integer == 1 ? 1 : 0, reply->element[3]->integer == 1 ? 0 : 1);
	freeReplyObject(reply);
	return true;
}

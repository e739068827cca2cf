/*-------------------------------------------------------------------------
 *
 * redis.h
 *		The Redis client used by the cache writer (redis.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef AUTHX_REDIS_H
#define AUTHX_REDIS_H

#include "authx.h"

typedef struct AuthxRedisTarget
{
	bool		unix_socket;
	char		host[256];		/* host name, or socket path */
	int			port;
	int			db;
	char		user[128];		/* ACL user, "" for none */
	char		password[256];	/* "" for none */
} AuthxRedisTarget;

typedef struct AuthxRedis AuthxRedis;

extern bool authx_redis_parse_url(const char *url, AuthxRedisTarget *target);
extern AuthxRedis *authx_redis_connect(const AuthxRedisTarget *target, int timeout_ms,
									   char *err, size_t errlen);
extern void authx_redis_close(AuthxRedis *r);
extern bool authx_redis_info(AuthxRedis *r, char *run_id, size_t run_id_len, int64 *hits, int64 *misses,
							 char *err, size_t errlen);
extern long authx_redis_unlink_prefix(AuthxRedis *r, const char *prefix, char *err, size_t errlen);
extern bool authx_redis_apply(AuthxRedis *r, const char *prefix, const AuthxCacheOp *ops, int n,
							  bool resend, char *err, size_t errlen);

extern bool authx_redis_gcra(const char *key, int64 per_us, int64 q, int64 r, int64 max, bool peek,
							 int64 *state, char *err, size_t errlen);

#endif							/* AUTHX_REDIS_H */

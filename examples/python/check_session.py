#!/usr/bin/python3
"""check_session.py — how a gateway checks an authx session token.

    REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgresql://gw@db/app \\
        python3 check_session.py axs_...

1. Redis first.  authx writes every session through to Redis under
   <prefix>s:<hex sha256(token)> (prefix: authx.redis_prefix, "authx:" by
   default), a hash that is either
     - a live entry:  user_id, expires_at (unix seconds), v
     - a tombstone:   revoked, v          (the session was revoked)
   The entry is valid when the hash is non-empty, has no "revoked" field and
   expires_at is in the future.  A tombstone is a final "no".
2. On a miss (no key, an entry past its expires_at, or Redis unreachable)
   ask PostgreSQL: SELECT authx.session_validate(%s).  That also queues the
   session for Redis again, so the next check is a hit.

Prints one line and exits with:
  0  valid <user_id> (redis)  |  valid <user_id> (postgres)
  1  invalid (redis tombstone)  |  invalid (postgres)
  2  usage
  3  PostgreSQL could not answer

Configuration (environment):
  REDIS_URL      default redis://127.0.0.1:6379
  DATABASE_URL   a libpq URL or key=value string; when unset, the usual PG*
                 variables (PGHOST, PGPORT, PGUSER, PGDATABASE, ...) apply.
                 The role needs authx_app (EXECUTE on session_validate).
  AUTHX_PREFIX   default authx:  (must match authx.redis_prefix)

Needs redis-py and psycopg2 (Debian: python3-redis, python3-psycopg2).
"""
import hashlib
import math
import os
import sys
import time

import psycopg2
import redis

TIMEOUT_S = 2


def redis_key(prefix, token):
    """sha256 of the token's UTF-8 bytes, as authx stores it (token_hash)."""
    return prefix + "s:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def from_redis(entry, now):
    """(True, user_id), (False, None) for a tombstone, or None for a miss."""
    if not entry:
        return None
    if "revoked" in entry:
        return (False, None)
    try:
        expires_at = float(entry.get("expires_at", ""))
    except ValueError:
        return None
    if not entry.get("user_id") or not math.isfinite(expires_at) or expires_at <= now:
        return None
    return (True, entry["user_id"])


def lookup_redis(url, key):
    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
                                  decode_responses=True)
    try:
        return client.hgetall(key)
    finally:
        client.close()


def validate_postgres(token):
    # An empty DSN lets libpq read PGHOST, PGPORT, PGUSER, ... itself.
    conn = psycopg2.connect(os.environ.get("DATABASE_URL", ""), connect_timeout=TIMEOUT_S * 5,
                            application_name="authx-example-python")
    try:
        conn.autocommit = True  # session_validate's touch and cache refresh commit at once
        with conn.cursor() as cur:
            # The token is a bind parameter, never part of the SQL text.
            cur.execute("SELECT authx.session_validate(%s)", (token,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: check_session.py TOKEN\n")
        return 2
    token = argv[1]
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379"
    prefix = os.environ.get("AUTHX_PREFIX") or "authx:"

    verdict = None
    try:
        verdict = from_redis(lookup_redis(redis_url, redis_key(prefix, token)), time.time())
    except redis.RedisError as err:
        # Redis is a cache: when it is down, PostgreSQL answers.
        sys.stderr.write("redis unavailable (%s); asking postgres\n" % err)
    if verdict is not None:
        valid, user_id = verdict
        print("valid %s (redis)" % user_id if valid else "invalid (redis tombstone)")
        return 0 if valid else 1

    try:
        user_id = validate_postgres(token)
    except (psycopg2.Error, ValueError) as err:
        sys.stderr.write("postgres: %s\n" % str(err).strip())
        return 3
    print("valid %s (postgres)" % user_id if user_id else "invalid (postgres)")
    return 0 if user_id else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

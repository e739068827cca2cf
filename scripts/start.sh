#!/usr/bin/env bash
# `make start`: a running PostgreSQL with authx and a Redis, under ./.authx/.
# Idempotent: a second run reuses what is there.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PGPORT=${AUTHX_PGPORT:-55432}
REDIS_PORT=${AUTHX_REDIS_PORT:-56379}
DB=${AUTHX_DB:-authx}

ensure_packages
build_install

# The servers run as an unprivileged user, which must be able to reach
# ./.authx; when the checkout sits somewhere it cannot (e.g. under /root),
# the state lives in /var/lib/authx-dev and ./.authx points there.
STATE="$AUTHX_ROOT/.authx"
if [ ! -e "$STATE" ]; then
    mkdir -p "$STATE"
    if [ "$(id -u)" = 0 ] && ! runuser -u "$(run_user)" -- test -x "$STATE"; then
        rmdir "$STATE"
        alt="/var/lib/authx-dev/$(echo "$AUTHX_ROOT" | md5sum | cut -c1-12)"
        mkdir -p "$alt"
        ln -s "$alt" "$STATE"
    fi
fi
make_user_dir "$STATE"
STATE=$(cd "$STATE" && pwd -P)
DATA="$STATE/pg"

if [ ! -f "$DATA/PG_VERSION" ]; then
    say "initialising a cluster in $DATA"
    pg_init "$DATA" "$PGPORT" "$STATE" "$DB"
    echo "authx.redis_url = 'redis://127.0.0.1:$REDIS_PORT'" >>"$DATA/postgresql.conf"
fi
if ! as_user pg_ctl -D "$DATA" status >/dev/null 2>&1; then
    say "starting PostgreSQL on 127.0.0.1:$PGPORT"
    pg_start "$DATA"
fi
if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    say "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis_start "$REDIS_PORT" "$STATE/redis"
fi

psql_() { as_user psql -X -q -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"; }
psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
    || psql_ -d postgres -c "CREATE DATABASE $DB"
psql_ -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS authx; ALTER EXTENSION authx UPDATE;"

say "PostgreSQL 127.0.0.1:$PGPORT (database $DB), Redis 127.0.0.1:$REDIS_PORT"
say "connect with:"
echo "psql -h 127.0.0.1 -p $PGPORT -U postgres $DB"

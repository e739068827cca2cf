#!/usr/bin/env bash
# `make stop`: stop the servers started by `make start`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
REDIS_PORT=${AUTHX_REDIS_PORT:-56379}
STATE="$AUTHX_ROOT/.authx"
[ -d "$STATE/pg" ] && pg_stop "$STATE/pg" && say "PostgreSQL stopped"
redis_stop "$REDIS_PORT" && say "Redis stopped"

# Shared helpers for scripts/*.sh, test/run.sh and bench/run.sh (sourced).
# shellcheck shell=bash

AUTHX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH="$PGBIN:$PATH"

# The packages the project needs on Debian 12.
AUTHX_PACKAGES=(
    build-essential postgresql-15 postgresql-server-dev-15 postgresql-contrib
    libsodium-dev libhiredis-dev redis-server redis-tools
    postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
    python3 python3-argon2 argon2 procps iproute2 python3-redis python3-psycopg2 oathtool python3-pyotp python3-jwt python3-cryptography prometheus chromium postgresql-15-plproxy
)

say() { printf '\033[1mauthx:\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Unprivileged account that owns the servers: postgres refuses to run as root.
run_user() {
    if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

# Run a command as the unprivileged user, keeping PATH and the AUTHX_* / PG*
# environment.
as_user() {
    local user
    user=$(run_user)
    if [ "$(id -un)" = "$user" ]; then
        "$@"
    else
        local envs=(PATH="$PATH")
        local v
        for v in $(compgen -e); do
            case "$v" in AUTHX_*|PG*|TESTDIR|PROVE_*|PERL5LIB|REDIS_*) envs+=("$v=${!v}");; esac
        done
        runuser -u "$user" -- env "${envs[@]}" "$@"
    fi
}

# Install missing Debian packages (as root); a no-op when all are present.
ensure_packages() {
    local missing=() p
    for p in "${AUTHX_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    # The Node.js example needs node and npm; machines usually have them.
    command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root, or install them)"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Build and install the extension (install needs root on Debian).
build_install() {
    local jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    make -C "$AUTHX_ROOT" -s -j"$jobs" >/dev/null
    if [ "$(id -u)" = 0 ]; then
        make -C "$AUTHX_ROOT" -s install >/dev/null
    else
        sudo -n make -C "$AUTHX_ROOT" -s install >/dev/null
    fi
}

# A TCP port nobody listens on, on loopback.
free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# A directory the unprivileged user can use, created (and chowned) as needed.
make_user_dir() {
    mkdir -p "$1"
    [ "$(id -u)" = 0 ] && chown "$(run_user)" "$1"
    return 0
}

# Start redis-server on loopback: port, directory; it also listens on the
# socket $dir/redis.sock (for the user running it only) when that path fits
# in a socket address.
redis_start() {
    local port=$1 dir=$2 sock=()
    make_user_dir "$dir"
    [ ${#dir} -le 90 ] && sock=(--unixsocket "$dir/redis.sock" --unixsocketperm 700)
    as_user redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" "${sock[@]}" \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --save '' --appendonly no >/dev/null
    local i
    for i in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "redis-server did not start on port $port (see $dir/redis.log)"
}

redis_stop() {
    local port=$1
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
}

# initdb a cluster for authx: data dir, port, socket dir, database name.
# The database is created in single-user mode before the first start, so
# the maintenance worker finds it at once instead of failing and retrying.
pg_init() {
    local data=$1 port=$2 sock=$3 db=$4
    make_user_dir "$(dirname "$data")"
    make_user_dir "$sock"
    as_user initdb -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$data/postgresql.conf" <<CONF

# --- authx ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
shared_preload_libraries = 'authx'
authx.database = '$db'
CONF
    echo "CREATE DATABASE $db" | as_user postgres --single -D "$data" postgres >/dev/null
}

pg_start() {
    local data=$1
    as_user pg_ctl -D "$data" -l "$data/../postgres.log" -w -t 60 start >/dev/null
}

pg_stop() {
    local data=$1
    [ -f "$data/postmaster.pid" ] && as_user pg_ctl -D "$data" -m fast -w stop >/dev/null 2>&1
    return 0
}

#!/usr/bin/env bash
# `make bench`: pgbench each authx path next to SELECT 1 and next to what a
# user would otherwise write, on a throw-away cluster, in one run; prints a
# table of TPS and ratios per section (AUTHX_BENCH="passwords sessions cache
# apikeys rbac ratelimit ipblock tokens usage scaleout").  AUTHX_BENCH_SECONDS
# (default 5) per measurement, AUTHX_BENCH_ROUNDS (default 5) interleaved
# rounds for the pairs whose ratio matters (AUTHX_BENCH_CACHE_ROUNDS, default
# 4x that, for the cache); the best round of each side is kept, which
# filters out interference from anything else running on the machine.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

SECS=${AUTHX_BENCH_SECONDS:-5}
ROUNDS=${AUTHX_BENCH_ROUNDS:-5}
# The cache section measures a difference of a few percent on a machine
# whose identical runs differ by more: it takes more pairs.
CACHE_ROUNDS=${AUTHX_BENCH_CACHE_ROUNDS:-$((ROUNDS * 4))}
ensure_packages
[ "${AUTHX_SKIP_BUILD:-0}" = 1 ] || build_install

WORK=$(mktemp -d /tmp/authx-bench.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown "$(run_user)" "$WORK"
PORT=$(free_port)
DATA="$WORK/pg/data"
CDATA="$WORK/coord/data"
trap 'pg_stop "$DATA"; pg_stop "$CDATA"; rm -rf "$WORK"' EXIT

pg_init "$DATA" "$PORT" "$WORK/pg" authx_bench
cat >>"$DATA/postgresql.conf" <<CONF
shared_buffers = 256MB
synchronous_commit = off
# No checkpoint in the middle of a 5-second run: they made session_create
# swing by more than the 10% the cache section measures.
max_wal_size = 8GB
checkpoint_timeout = 1h
CONF
pg_start "$DATA"
psql_() { as_user psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d authx_bench -v ON_ERROR_STOP=1 "$@"; }
psql_ -c "CREATE EXTENSION authx; CREATE EXTENSION pgcrypto; CREATE SCHEMA bench;"

OPS=$(psql_ -tAc "SHOW authx.password_opslimit")
MEM=$(psql_ -tAc "SELECT setting FROM pg_settings WHERE name = 'authx.password_memlimit'")
PW='correct horse battery staple'
UID_=$(psql_ -tAc "SELECT authx.user_create('bench@example.com', '$PW')")
psql_ -c "CREATE TABLE bench.pgcrypto_users AS
          SELECT '$UID_'::uuid AS id, crypt('$PW', gen_salt('bf', 10)) AS password_hash"

# tps_on PORT DB CLIENTS SCRIPT [pgbench options]: the TPS of a script;
# tps CLIENTS SCRIPT [pgbench options]: the same on the bench cluster.
tps_on() {
    local port=$1 db=$2 clients=$3 script=$4
    shift 4
    as_user pgbench -n -M prepared -c "$clients" -j "$clients" -T "$SECS" \
        -h 127.0.0.1 -p "$port" -U postgres "$@" -f "$AUTHX_ROOT/bench/$script" "$db" 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
tps() { tps_on "$PORT" authx_bench "$@"; }
ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
best() { python3 -c "import sys; print(f'{max(map(float, sys.argv[1:])):.1f}')" "$@"; }
# overhead AUTHX RAW: the share of time authx adds; a negative figure is noise.
overhead() { python3 -c "o = (1 - $1 / $2) * 100; print(f'{o:.1f}%' if o > 0 else f'none measurable ({o:.1f}%)')"; }
# median_ratio "a1 a2 .." "b1 b2 ..": median of the paired ratios a_i / b_i.
median_ratio() { python3 -c "import statistics, sys; a = sys.argv[1].split(); b = sys.argv[2].split(); print(f'{statistics.median(float(x) / float(y) for x, y in zip(a, b)):.3f}')" "$1" "$2"; }
row() { printf '| %-56s | %9s | %11s | %s |\n' "$1" "$2" "$3" "$4"; }

SECTIONS=${AUTHX_BENCH:-passwords sessions cache apikeys rbac ratelimit ipblock tokens usage scaleout}

bench_passwords() {
cc -O2 -o "$WORK/pwbench" "$AUTHX_ROOT/bench/pwbench.c" -lsodium
say "passwords: ${SECS}s per run; argon2id t=$OPS m=${MEM}kB; $(nproc) cores"

T_SELECT1=$(best "$(tps 2 select1.sql)")
local rv=() rh=() tv=() tc=() a b
for _ in $(seq "$ROUNDS"); do
    read -r a b < <("$WORK/pwbench" "$SECS" "$OPS" "$MEM")
    rv+=("$a") rh+=("$b")
    tv+=("$(tps 1 password_verify.sql -D uid="$UID_" -D pw="$PW")")
    tc+=("$(tps 1 user_create.sql -D pw="$PW")")
done
RAW_VERIFY=$(best "${rv[@]}") RAW_HASH=$(best "${rh[@]}")
T_VERIFY=$(best "${tv[@]}") T_CREATE=$(best "${tc[@]}")
# The ratios that matter are paired: each round measures authx and raw
# libsodium back to back, so drift on the machine cancels out.
R_VERIFY=$(median_ratio "${tv[*]}" "${rv[*]}") R_CREATE=$(median_ratio "${tc[*]}" "${rh[*]}")
T_PGCRYPTO=$(best "$(tps 1 password_pgcrypto.sql -D uid="$UID_" -D pw="$PW")")

# authx's own cost per call, measured where argon2 costs almost nothing
# (m=8 kB, t=1): call latency minus the SELECT 1 round trip minus raw
# libsodium at the same cost.  Set per connection so nothing is rehashed.
local tiny_uid t_tiny t_s1_c1 raw_tiny own_us
tiny_uid=$(PGOPTIONS="-c authx.password_memlimit=8 -c authx.password_opslimit=1" \
    psql_ -tAc "SELECT authx.user_create('tiny@example.com', '$PW')")
t_tiny=$(PGOPTIONS="-c authx.password_memlimit=8 -c authx.password_opslimit=1" \
    tps 1 password_verify.sql -D uid="$tiny_uid" -D pw="$PW")
t_s1_c1=$(tps 1 select1.sql)
read -r raw_tiny _ < <("$WORK/pwbench" "$SECS" 1 8)
own_us=$(python3 -c "print(f'{1e6 / $t_tiny - 1e6 / $t_s1_c1 - 1e6 / $raw_tiny:.1f}')")

echo
echo "## Passwords ($(nproc) cores, argon2id t=$OPS m=${MEM}kB, $ROUNDS paired rounds of ${SECS}s; TPS = best round)"
echo
row "path" "TPS" "vs SELECT 1" "vs baseline"
row "---" "---:" "---:" "---"
row "SELECT 1 (2 clients)" "$T_SELECT1" "1.000" ""
row "raw crypto_pwhash_str_verify (C, 1 thread)" "$RAW_VERIFY" "" "baseline"
row "authx.password_verify (1 client)" "$T_VERIFY" "$(ratio "$T_VERIFY" "$T_SELECT1")" \
    "$R_VERIFY of raw (median of paired rounds); overhead $(overhead "$R_VERIFY" 1)"
row "raw crypto_pwhash_str (C, 1 thread)" "$RAW_HASH" "" "baseline"
row "authx.user_create (1 client)" "$T_CREATE" "$(ratio "$T_CREATE" "$T_SELECT1")" \
    "$R_CREATE of raw hash (median of paired rounds); overhead $(overhead "$R_CREATE" 1)"
row "hand-written: pgcrypto crypt() bcrypt-10" "$T_PGCRYPTO" "$(ratio "$T_PGCRYPTO" "$T_SELECT1")" \
    "a different KDF, for scale only"
echo
echo "authx's own work per password_verify (m=8 kB, t=1: $t_tiny TPS, SELECT 1 $t_s1_c1 TPS, raw $raw_tiny/s):"
echo "$own_us us per call = $(python3 -c "print(f'{$own_us / (1e6 / $RAW_VERIFY) * 100:.2f}')")% of a default-cost verification ($(python3 -c "print(f'{1e6 / $RAW_VERIFY / 1000:.1f}')") ms)"
}

bench_sessions() {
    local n=1000000
    say "sessions: loading $n sessions"
    # Tokens are deterministic so pgbench can name one without a lookup:
    # axs_ + the row number left-padded with A to 43 base64url characters.
    psql_ -c "INSERT INTO authx.sessions (token_hash, user_id, expires_at, idle_timeout)
              SELECT sha256(convert_to('axs_' || lpad(i::text, 43, 'A'), 'UTF8')), '$UID_',
                     now() + interval '30 days', 86400
                FROM generate_series(1, $n) i" -c "VACUUM ANALYZE authx.sessions"
    # Measure the read path: no session is touched during the run (in real
    # traffic an active session is written once per touch_interval).
    psql_ -c "ALTER DATABASE authx_bench SET authx.touch_interval = '1h'"
    local tok s1=() vp=() hp=() te=() sv=() hw=()
    tok=$(psql_ -tAc "SELECT 'axs_' || lpad('4242', 43, 'A')")
    for _ in $(seq "$ROUNDS"); do
        s1+=("$(tps 2 select1.sql)")
        vp+=("$(tps 2 session_validate_param.sql -D tok="$tok")")
        hp+=("$(tps 2 session_handwritten_param.sql -D tok="$tok")")
        te+=("$(tps 2 token_expr.sql)")
        sv+=("$(tps 2 session_validate.sql)")
        hw+=("$(tps 2 session_handwritten.sql)")
    done
    local S1 VP HP TE SV HW SC SR
    S1=$(best "${s1[@]}") VP=$(best "${vp[@]}") HP=$(best "${hp[@]}")
    TE=$(best "${te[@]}") SV=$(best "${sv[@]}") HW=$(best "${hw[@]}")
    SC=$(best "$(tps 2 session_create.sql -D uid="$UID_")")
    SR=$(best "$(tps 2 session_revoke.sql)")

    echo
    echo "## Sessions ($(nproc) cores, 2 clients, prepared, $n sessions, $ROUNDS rounds of ${SECS}s; TPS = best round, ratios = median of the rounds' pairs)"
    echo
    row "path" "TPS" "vs SELECT 1" "vs hand-written SQL"
    row "---" "---:" "---:" "---:"
    row "SELECT 1" "$S1" "1.000" ""
    row "authx.session_validate(\$1)" "$VP" "$(median_ratio "${vp[*]}" "${s1[*]}")" "$(median_ratio "${vp[*]}" "${hp[*]}")"
    row "hand-written SQL, same checks, token_hash = sha256(\$1)" "$HP" "$(median_ratio "${hp[*]}" "${s1[*]}")" "1.000"
    row "random token of $n: SELECT 'axs_' || lpad(:i, 43, 'A')" "$TE" "$(ratio "$TE" "$S1")" ""
    row "random token of $n: authx.session_validate(...)" "$SV" "$(median_ratio "${sv[*]}" "${te[*]}") of expr" "$(median_ratio "${sv[*]}" "${hw[*]}")"
    row "random token of $n: hand-written SQL" "$HW" "$(median_ratio "${hw[*]}" "${te[*]}") of expr" "1.000"
    row "authx.session_create(user_id)" "$SC" "$(ratio "$SC" "$S1")" ""
    row "authx.session_revoke(token)" "$SR" "$(ratio "$SR" "$S1")" ""
}

bench_cache() {
    local rport off=() on=() lag tok hex rb pv
    rport=$(free_port)
    redis_start "$rport" "$WORK/redis"
    # The writer reaches this Redis on the same machine through its unix
    # socket, as README recommends (loopback TCP costs Redis and the writer
    # some 12% more); AUTHX_BENCH_CACHE_TCP=1 measures TCP instead.
    local rurl="unix://$WORK/redis/redis.sock" how="its unix socket"
    if [ "${AUTHX_BENCH_CACHE_TCP:-0}" = 1 ]; then
        rurl="redis://127.0.0.1:$rport" how="loopback TCP"
    fi
    say "cache: Redis on 127.0.0.1:$rport, the writer through $how"
    # Switching the cache on changes the URL, which makes the writer resync
    # (UNLINK every key so far): wait for that to finish, so the "on" runs
    # measure steady state, not the resync.
    local cur_url="-"
    set_url() {
        local before i
        [ "$1" = "$cur_url" ] && return 0
        cur_url=$1
        before=$(psql_ -tAc "SELECT value FROM authx.stats WHERE name = 'cache_resyncs'")
        psql_ -c "ALTER SYSTEM SET authx.redis_url = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
        sleep 1
        [ -z "$1" ] && return 0
        for i in $(seq 300); do
            [ "$(psql_ -tAc "SELECT value FROM authx.stats WHERE name = 'cache_resyncs'")" -gt "$before" ] && break
            sleep 0.1
        done
        psql_ -c "SELECT authx.cache_sync('60 s')" >/dev/null
    }
    # session_create for 1,000 users (a sign-in rush: one user's row would
    # make both clients queue on its FOR SHARE lock and measure that), with
    # the cache off and on, interleaved in ABBA order: the sessions table
    # grows through the section, so a fixed order would always give the
    # second run of a pair the bigger table (and each run starts from an
    # empty one anyway).
    psql_ -c "INSERT INTO authx.users (id, email, password_hash)
              SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'rush' || i || '@example.com',
                     (SELECT password_hash FROM authx.users WHERE id = '$UID_')
                FROM generate_series(1, 1000) i" >/dev/null
    # Each run starts from an empty, vacuumed sessions table; with the cache
    # on, the TRUNCATE makes the writer resync, which must be over before the
    # run starts (cache_sync waits for it) or the run would pay for it.
    fresh() {
        psql_ -c "TRUNCATE authx.sessions CASCADE" -c "VACUUM ANALYZE authx.sessions" >/dev/null 2>&1
        psql_ -c "SELECT authx.cache_sync('60 s')" >/dev/null
    }
    local r
    for r in $(seq "$CACHE_ROUNDS"); do
        if [ $((r % 2)) -eq 1 ]; then
            set_url ""
            fresh; off+=("$(tps 2 session_create_many.sql)")
            set_url "$rurl"
            fresh; on+=("$(tps 2 session_create_many.sql)")
        else
            set_url "$rurl"
            fresh; on+=("$(tps 2 session_create_many.sql)")
            set_url ""
            fresh; off+=("$(tps 2 session_create_many.sql)")
        fi
    done
    psql_ -c "SELECT authx.cache_sync('60 s')" >/dev/null
    lag=$(psql_ -tAc "SELECT (SELECT value FROM authx.stats WHERE name = 'cache_lag_p50_us') || ' ' ||
                             (SELECT value FROM authx.stats WHERE name = 'cache_lag_p99_us')")
    # Gateway read: one HGETALL per request against the entry of a session.
    tok=$(psql_ -tAc "SELECT session_token FROM authx.session_create('$UID_')")
    psql_ -c "SELECT authx.cache_sync('60 s')" >/dev/null
    hex=$(psql_ -tAc "SELECT encode(sha256(convert_to('$tok', 'UTF8')), 'hex')")
    rb=$(redis-benchmark -p "$rport" -c 2 -n $((SECS * 40000)) -q HGETALL "authx:s:$hex" 2>/dev/null \
         | tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
    pv=$(tps 2 session_validate_param.sql -D tok="$tok")
    redis_stop "$rport"

    local OFF ON
    OFF=$(best "${off[@]}") ON=$(best "${on[@]}")
    read -r p50 p99 <<<"$lag"
    echo
    echo "## Redis write-through ($(nproc) cores, 2 clients, Redis on the same machine (the writer through $how), $CACHE_ROUNDS rounds of ${SECS}s)"
    echo
    row "path" "TPS" "ratio" ""
    row "---" "---:" "---:" ""
    row "authx.session_create (1,000 users), cache off" "$OFF" "1.000" ""
    # The ratio is the median of the rounds' pairs: each pair ran within
    # seconds, so it shares the machine's weather; the best round of each
    # side (the TPS column) can come from different minutes.
    row "authx.session_create (1,000 users), cache on" "$ON" "$(median_ratio "${on[*]}" "${off[*]}")" "median of pairs; best rounds $(ratio "$ON" "$OFF")"
    row "gateway read: Redis HGETALL <key> (redis-benchmark)" "$rb" "" ""
    row "authx.session_validate(\$1) through PostgreSQL" "$pv" "$(ratio "$pv" "$rb") of Redis" ""
    echo
    echo "rounds (off/on TPS): $(for i in "${!off[@]}"; do printf '%s/%s ' "${off[$i]%.*}" "${on[$i]%.*}"; done)"
    echo "on/off ratio of the pairs: $(python3 -c "import statistics, sys; a = sys.argv[1].split(); b = sys.argv[2].split(); r = [float(x) / float(y) for x, y in zip(a, b)]; q = statistics.quantiles(r, n=4); print(f'quartiles {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}; all rounds together (sum on / sum off) {sum(map(float, a)) / sum(map(float, b)):.3f}')" "${on[*]}" "${off[*]}")"
    echo "writer lag, commit to applied in Redis, under the cache-on load: p50 $(python3 -c "print(f'{$p50 / 1000:.2f}')") ms, p99 $(python3 -c "print(f'{$p99 / 1000:.2f}')") ms"
}

bench_apikeys() {
    local n=100000
    say "apikeys: loading $n keys"
    # Keys are deterministic so pgbench can name one without a lookup:
    # axk_ + the row number in 12 hex digits + _ + the number padded with A.
    psql_ -c "INSERT INTO authx.api_keys (prefix, key_hash, user_id, name, scopes, last_used_at)
              SELECT lpad(to_hex(i), 12, '0'),
                     sha256(convert_to('axk_' || lpad(to_hex(i), 12, '0') || '_' || lpad(i::text, 43, 'A'), 'UTF8')),
                     '$UID_', 'bench ' || i, '{docs:read,billing:*}', now()
                FROM generate_series(1, $n) i" \
          -c "CREATE TABLE bench.api_keys (id uuid PRIMARY KEY, key_hash bytea UNIQUE NOT NULL, user_id uuid NOT NULL,
                                           scopes text[] NOT NULL, expires_at timestamptz, revoked_at timestamptz)" \
          -c "INSERT INTO bench.api_keys SELECT id, key_hash, user_id, scopes, expires_at, revoked_at FROM authx.api_keys" \
          -c "VACUUM ANALYZE authx.api_keys, bench.api_keys"
    # The read path: no key is touched during the run (in real traffic a
    # key's last_used_at is written once per touch_interval).
    psql_ -c "ALTER DATABASE authx_bench SET authx.touch_interval = '1h'"
    local key s1=() vp=() vs=() v3=() hp=() sp=() hs=() te=() vr=() hr=()
    key=$(psql_ -tAc "SELECT 'axk_' || lpad(to_hex(4242), 12, '0') || '_' || lpad('4242', 43, 'A')")
    psql_ -c "SELECT code FROM authx.apikey_verify('$key')" >/dev/null
    for _ in $(seq "$ROUNDS"); do
        s1+=("$(tps 2 select1.sql)")
        vp+=("$(tps 2 apikey_verify_param.sql -D key="$key")")
        vs+=("$(tps 2 apikey_verify_scalar_param.sql -D key="$key")")
        v3+=("$(tps 2 apikey_verify3_param.sql -D key="$key")")
        hp+=("$(tps 2 apikey_handwritten_param.sql -D key="$key")")
        sp+=("$(tps 2 apikey_scope_param.sql -D key="$key" -D scope=docs:read)")
        hs+=("$(tps 2 apikey_handwritten_scope_param.sql -D key="$key" -D scope=docs:read)")
        te+=("$(tps 2 apikey_expr.sql)")
        vr+=("$(tps 2 apikey_verify.sql)")
        hr+=("$(tps 2 apikey_handwritten.sql)")
    done
    local S1 VP VS V3 HP SP HS TE VR HR
    S1=$(best "${s1[@]}") VP=$(best "${vp[@]}") VS=$(best "${vs[@]}") V3=$(best "${v3[@]}") HP=$(best "${hp[@]}") SP=$(best "${sp[@]}")
    HS=$(best "${hs[@]}") TE=$(best "${te[@]}") VR=$(best "${vr[@]}") HR=$(best "${hr[@]}")

    echo
    echo "## API keys ($(nproc) cores, 2 clients, prepared, $n keys, $ROUNDS rounds of ${SECS}s; TPS = best round, ratios = median of the rounds' pairs)"
    echo
    row "path" "TPS" "vs SELECT 1" "vs hand-written SQL"
    row "---" "---:" "---:" "---:"
    row "SELECT 1" "$S1" "1.000" ""
    row "SELECT * FROM authx.apikey_verify(\$1)" "$VP" "$(median_ratio "${vp[*]}" "${s1[*]}")" "$(median_ratio "${vp[*]}" "${hp[*]}")"
    row "SELECT authx.apikey_verify(\$1) (one composite column)" "$VS" "$(median_ratio "${vs[*]}" "${s1[*]}")" "$(median_ratio "${vs[*]}" "${hp[*]}")"
    row "SELECT code, user_id, scopes FROM authx.apikey_verify(\$1)" "$V3" "$(median_ratio "${v3[*]}" "${s1[*]}")" "$(median_ratio "${v3[*]}" "${hp[*]}")"
    row "hand-written SQL: key_hash = sha256(\$1), live" "$HP" "$(median_ratio "${hp[*]}" "${s1[*]}")" "1.000"
    row "authx.apikey_verify(\$1, 'docs:read')" "$SP" "$(median_ratio "${sp[*]}" "${s1[*]}")" "$(median_ratio "${sp[*]}" "${hs[*]}")"
    row "hand-written SQL, scopes @> '{docs:read}' (no wildcards)" "$HS" "$(median_ratio "${hs[*]}" "${s1[*]}")" "1.000"
    row "random key of $n: the key expression alone" "$TE" "$(ratio "$TE" "$S1")" ""
    row "random key of $n: authx.apikey_verify(...)" "$VR" "$(median_ratio "${vr[*]}" "${te[*]}") of expr" "$(median_ratio "${vr[*]}" "${hr[*]}")"
    row "random key of $n: hand-written SQL" "$HR" "$(median_ratio "${hr[*]}" "${te[*]}") of expr" "1.000"
}

bench_rbac() {
    say "rbac: a 4-level hierarchy, 5 permissions a level"
    local puid
    puid=$(psql_ -tAc "SELECT authx.user_create('perm@example.com', '$PW')")
    psql_ <<SQL
SELECT authx.role_create('level1');
SELECT authx.role_create('level2', 'level1');
SELECT authx.role_create('level3', 'level2');
SELECT authx.role_create('level4', 'level3');
SELECT authx.role_grant('level' || l, 'level' || l || ':' || a)
  FROM generate_series(1, 4) l, unnest('{read,write,delete,list,share}'::text[]) a;
SELECT authx.user_grant('$puid', 'level4');
CREATE TABLE bench.roles AS SELECT name, parent FROM authx.roles;
CREATE TABLE bench.role_permissions AS SELECT role, permission FROM authx.role_permissions;
CREATE TABLE bench.user_roles AS SELECT user_id, role, expires_at FROM authx.user_roles;
ALTER TABLE bench.roles ADD PRIMARY KEY (name);
ALTER TABLE bench.role_permissions ADD PRIMARY KEY (role, permission);
ALTER TABLE bench.user_roles ADD PRIMARY KEY (user_id, role);
ANALYZE bench.roles, bench.role_permissions, bench.user_roles;
SQL
    [ "$(psql_ -tAc "SELECT authx.has_permission('$puid', 'level1:read')")" = t ] || die "rbac bench: no permission"
    local s1=() hp=() hw=()
    for _ in $(seq "$ROUNDS"); do
        s1+=("$(tps 2 select1.sql)")
        hp+=("$(tps 2 has_permission_param.sql -D uid="$puid" -D perm=level1:read)")
        hw+=("$(tps 2 has_permission_handwritten_param.sql -D uid="$puid" -D perm=level1:read \
                -D rwild='level1:*' -D awild='*:read' -D allwild='*:*')")
    done
    local S1 HP HW
    S1=$(best "${s1[@]}") HP=$(best "${hp[@]}") HW=$(best "${hw[@]}")
    echo
    echo "## Permissions ($(nproc) cores, 2 clients, prepared, 4-level hierarchy, $ROUNDS rounds of ${SECS}s)"
    echo
    row "path" "TPS" "vs SELECT 1" "vs hand-written SQL"
    row "---" "---:" "---:" "---:"
    row "SELECT 1" "$S1" "1.000" ""
    row "authx.has_permission(\$1, 'level1:read') (inherited 3 levels up)" "$HP" "$(median_ratio "${hp[*]}" "${s1[*]}")" "$(median_ratio "${hp[*]}" "${hw[*]}")"
    row "hand-written recursive CTE over the same tables" "$HW" "$(median_ratio "${hw[*]}" "${s1[*]}")" "1.000"
}

bench_ratelimit() {
    local n=100000 per='1 hour' max=1000000000
    say "ratelimit: one subject and $n random ones, $max per $per (always allowed)"
    # Every script writes the window as a literal, as an application would
    # ('1 hour' = $per), so it is parsed once per prepared statement.
    # The hand-written counter a user would write: a fixed window per subject
    # in a table, one UPSERT per request (transactional, WAL-logged, and
    # every request for a subject waits for the row lock of the one before).
    psql_ -c "CREATE TABLE bench.counters (subject text PRIMARY KEY, n int NOT NULL, window_start timestamptz NOT NULL)"
    # rate_check reads the policy and the overrides: raise api so it stays
    # allowed.
    psql_ -c "SELECT authx.rate_policy_set('api', $max, '$per')" >/dev/null
    [ "$(psql_ -tAc "SELECT allowed FROM authx.rate_check('api', 'key:bench')")" = t ] || die "ratelimit bench: refused"
    local s1=() fx=() fs=() fa=() rd=() ck=() hw=() hr=()
    for _ in $(seq "$ROUNDS"); do
        s1+=("$(tps 2 select1.sql)")
        fx+=("$(tps 2 ratelimit_fixed.sql -D subject=ip:fixed -D per="$per")")
        fs+=("$(tps 2 ratelimit_fixed_scalar.sql -D subject=ip:fixed -D per="$per")")
        fa+=("$(tps 2 ratelimit_fixed_allowed.sql -D subject=ip:fixed -D per="$per")")
        rd+=("$(tps 2 ratelimit_random.sql -D per="$per")")
        ck+=("$(tps 2 ratelimit_check.sql -D policy=api -D subject=key:bench)")
        hw+=("$(tps 2 ratelimit_handwritten.sql -D subject=ip:fixed -D per="$per" -D max="$max")")
        hr+=("$(tps 2 ratelimit_handwritten_random.sql -D per="$per" -D max="$max")")
    done
    local denied ev S1 FX FS FA RD CK HW HR
    denied=$(psql_ -tAc "SELECT value FROM authx.stats WHERE name = 'rate_limit_denied'")
    ev=$(psql_ -tAc "SELECT value FROM authx.stats WHERE name = 'rate_limit_evictions'")
    [ "$denied" = 0 ] || die "ratelimit bench: $denied calls were refused"
    S1=$(best "${s1[@]}") FX=$(best "${fx[@]}") RD=$(best "${rd[@]}")
    FS=$(best "${fs[@]}") FA=$(best "${fa[@]}")
    CK=$(best "${ck[@]}") HW=$(best "${hw[@]}") HR=$(best "${hr[@]}")
    echo
    echo "## Rate limits ($(nproc) cores, 2 clients, prepared, $ROUNDS rounds of ${SECS}s; TPS = best round, ratios = median of the rounds' pairs)"
    echo
    row "path" "TPS" "vs SELECT 1" "vs hand-written SQL"
    row "---" "---:" "---:" "---:"
    row "SELECT 1" "$S1" "1.000" ""
    row "SELECT * FROM authx.rate_limit(\$1, $max, '$per'), one subject" "$FX" "$(median_ratio "${fx[*]}" "${s1[*]}")" "$(median_ratio "${fx[*]}" "${hw[*]}")"
    row "SELECT allowed, retry_after FROM authx.rate_limit(...)" "$FA" "$(median_ratio "${fa[*]}" "${s1[*]}")" "$(median_ratio "${fa[*]}" "${hw[*]}")"
    row "SELECT authx.rate_limit(...) (one composite column)" "$FS" "$(median_ratio "${fs[*]}" "${s1[*]}")" "$(median_ratio "${fs[*]}" "${hw[*]}")"
    row "authx.rate_limit('ip:' || :i, ...), $n subjects" "$RD" "$(median_ratio "${rd[*]}" "${s1[*]}")" "$(median_ratio "${rd[*]}" "${hr[*]}")"
    row "authx.rate_check('api', \$1) (policy + override lookup)" "$CK" "$(median_ratio "${ck[*]}" "${s1[*]}")" "$(median_ratio "${ck[*]}" "${hw[*]}")"
    row "hand-written UPSERT counter, one subject" "$HW" "$(median_ratio "${hw[*]}" "${s1[*]}")" "1.000"
    row "hand-written UPSERT counter, $n subjects" "$HR" "$(median_ratio "${hr[*]}" "${s1[*]}")" "1.000"
    echo
    echo "every call allowed (rate_limit_denied = 0); rate_limit_evictions = $ev"

    # The Redis store, beside the plain Redis round trip it is made of.
    local rport rr=() ri=() RR RI fb
    rport=$(free_port)
    redis_start "$rport" "$WORK/redis-rl"
    psql_ -c "ALTER SYSTEM SET authx.redis_url = 'redis://127.0.0.1:$rport'" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 1
    for _ in $(seq "$ROUNDS"); do
        rr+=("$(PGOPTIONS="-c authx.rate_limit_store=redis" tps 2 ratelimit_fixed.sql -D subject=ip:fixed -D per="$per")")
        ri+=("$(redis-benchmark -p "$rport" -c 2 -n $((SECS * 30000)) -q INCR bench:counter 2>/dev/null \
                | tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)")
    done
    fb=$(psql_ -tAc "SELECT value FROM authx.stats WHERE name = 'rate_limit_fallbacks'")
    [ "$fb" = 0 ] || die "ratelimit bench: $fb Redis answers fell back"
    psql_ -c "ALTER SYSTEM RESET authx.redis_url" -c "SELECT pg_reload_conf()" >/dev/null
    redis_stop "$rport"
    RR=$(best "${rr[@]}") RI=$(best "${ri[@]}")
    echo
    echo "### Redis store (Redis on the same machine, 2 clients)"
    echo
    row "path" "TPS" "vs SELECT 1" "vs Redis INCR"
    row "---" "---:" "---:" "---:"
    row "SELECT * FROM authx.rate_limit(...), authx.rate_limit_store = redis" "$RR" "$(median_ratio "${rr[*]}" "${s1[*]}")" "$(median_ratio "${rr[*]}" "${ri[*]}")"
    row "plain Redis INCR round trip (redis-benchmark -c 2)" "$RI" "" "1.000"
    echo
    echo "no answer fell back (rate_limit_fallbacks = 0)"
}

bench_ipblock() {
    # 10,000 blocks: 1,000 IPv4 /16, 3,000 /24, 4,000 /32 and 2,000 IPv6
    # /64; the same networks in bench.ip_nets with a GiST inet_ops index
    # for the hand-written EXISTS.
    say "ipblock: 10,000 blocks (/16, /24, /32 IPv4 and /64 IPv6), one blocked and one free address"
    psql_ <<'SQL' >/dev/null
CREATE TABLE bench.ip_nets (net cidr NOT NULL);
INSERT INTO bench.ip_nets
SELECT network(set_masklen('100.0.0.0'::inet + i * 65536, 16)) FROM generate_series(0, 999) i
UNION ALL SELECT network(set_masklen('20.0.0.0'::inet + i * 256, 24)) FROM generate_series(0, 2999) i
UNION ALL SELECT set_masklen('30.0.0.0'::inet + i * 7, 32)::cidr FROM generate_series(0, 3999) i
UNION ALL SELECT format('2001:db8:%s:%s::/64', to_hex(i / 65536), to_hex(i % 65536))::cidr FROM generate_series(0, 1999) i;
CREATE INDEX ON bench.ip_nets USING gist (net inet_ops);
ANALYZE bench.ip_nets;
INSERT INTO authx.ip_blocks (net, reason) SELECT net, 'bench' FROM bench.ip_nets;
SQL
    local hit=20.5.6.7 miss=50.1.2.3 n
    n=$(psql_ -tAc "SELECT count(*) FROM authx.ip_blocks")
    [ "$n" = 10000 ] || die "ipblock bench: $n blocks instead of 10000"
    [ "$(psql_ -tAc "SELECT authx.ip_blocked('$hit')::text || authx.ip_blocked('$miss')::text")" = truefalse ] \
        || die "ipblock bench: wrong answers"
    [ "$(psql_ -tAc "SELECT (SELECT EXISTS (SELECT 1 FROM bench.ip_nets WHERE net >>= '$hit'::inet))::text
                            || (SELECT EXISTS (SELECT 1 FROM bench.ip_nets WHERE net >>= '$miss'::inet))::text")" = truefalse ] \
        || die "ipblock bench: wrong hand-written answers"
    local t0
    t0=$(psql_ -tAc "SELECT value FROM authx.stats WHERE name = 'ip_block_table_lookups'")
    local s1=() bh=() bm=() hh=() hm=()
    for _ in $(seq "$ROUNDS"); do
        s1+=("$(tps 2 select1.sql)")
        bh+=("$(tps 2 ipblock_blocked.sql -D ip="$hit")")
        bm+=("$(tps 2 ipblock_blocked.sql -D ip="$miss")")
        hh+=("$(tps 2 ipblock_handwritten.sql -D ip="$hit")")
        hm+=("$(tps 2 ipblock_handwritten.sql -D ip="$miss")")
    done
    local t1 rl S1 BH BM HH HM
    t1=$(psql_ -tAc "SELECT value FROM authx.stats WHERE name = 'ip_block_table_lookups'")
    rl=$(psql_ -tAc "SELECT value FROM authx.stats WHERE name = 'ip_block_reloads'")
    [ "$t1" = "$t0" ] || die "ipblock bench: $((t1 - t0)) answers came from the table"
    S1=$(best "${s1[@]}") BH=$(best "${bh[@]}") BM=$(best "${bm[@]}") HH=$(best "${hh[@]}") HM=$(best "${hm[@]}")
    echo
    echo "## IP blocks ($(nproc) cores, 2 clients, prepared, 10,000 blocks, $ROUNDS rounds of ${SECS}s; TPS = best round, ratios = median of the rounds' pairs)"
    echo
    row "path" "TPS" "vs SELECT 1" "vs hand-written SQL"
    row "---" "---:" "---:" "---:"
    row "SELECT 1" "$S1" "1.000" ""
    row "SELECT authx.ip_blocked(\$1), blocked address" "$BH" "$(median_ratio "${bh[*]}" "${s1[*]}")" "$(median_ratio "${bh[*]}" "${hh[*]}")"
    row "SELECT authx.ip_blocked(\$1), free address" "$BM" "$(median_ratio "${bm[*]}" "${s1[*]}")" "$(median_ratio "${bm[*]}" "${hm[*]}")"
    row "EXISTS (... net >>= \$1) GiST inet_ops, blocked address" "$HH" "$(median_ratio "${hh[*]}" "${s1[*]}")" "1.000"
    row "EXISTS (... net >>= \$1) GiST inet_ops, free address" "$HM" "$(median_ratio "${hm[*]}" "${s1[*]}")" "1.000"
    echo
    echo "every ip_blocked answer from the shared copy (ip_block_table_lookups unchanged); ip_block_reloads = $rl"
}

bench_tokens() {
    # token_verify: one Ed25519 and one HS256 token presented again and
    # again (the backend's cache of checked signatures hits; exp and the
    # session named by sid are checked every time), and 2,000 distinct
    # Ed25519 tokens at random (more than the 256 cache slots: mostly
    # misses, the signature checked); the hand-written check is pgcrypto
    # HMAC + payload decode + exp, as pgjwt does it, with no session check.
    # token_refresh: 2,000 refresh-token families rotated at random, each
    # new token written back (an UPDATE of bench.refresh per call).
    say "tokens: token_verify (EdDSA, HS256) and token_refresh over 2,000 families"
    local uid ted teh key
    uid=$(psql_ -tAc "SELECT authx.user_create('tokens@example.com', 'correct horse battery staple')")
    ted=$(psql_ -tAc "SET authx.token_ttl = '1h'; SELECT access_token FROM authx.token_issue('$uid')" | tail -1)
    teh=$(psql_ -tAc "SET authx.token_ttl = '1h'; SET authx.token_alg = 'HS256'; SELECT access_token FROM authx.token_issue('$uid')" | tail -1)
    key=$(psql_ -tAc "SELECT encode(authx.signing_key_secret(kid), 'hex') FROM authx.signing_keys WHERE alg = 'HS256'")
    psql_ <<SQL >/dev/null
UPDATE authx.rate_limit_policies SET max = 100000000 WHERE name = 'refresh';
CREATE TABLE bench.refresh (i integer PRIMARY KEY, tok text);
CREATE TABLE bench.access (i integer PRIMARY KEY, tok text);
SET authx.token_ttl = '1h';
DO \$\$ BEGIN FOR i IN 1..2000 LOOP
    INSERT INTO bench.refresh SELECT i, t.refresh_token FROM authx.token_issue('$uid') t;
    INSERT INTO bench.access SELECT i, t.access_token FROM authx.token_issue('$uid') t;
END LOOP; END \$\$;
SQL
    [ "$(psql_ -tAc "SELECT (authx.token_verify('$ted') IS NOT NULL)::text || (authx.token_verify('$teh') IS NOT NULL)::text")" = truetrue ] \
        || die "tokens bench: the tokens do not verify"
    [ "$(sed "s/:tok/:'tok'/g; s/:key/:'key'/g" "$AUTHX_ROOT/bench/token_verify_pgcrypto.sql" \
          | as_user psql -X -h 127.0.0.1 -p "$PORT" -U postgres -d authx_bench -tA -v tok="$teh" -v key="$key" \
          | grep -c sub)" = 1 ] \
        || die "tokens bench: the hand-written check rejects the token"
    local s1=() ve=() vh=() vp=() rf=() vo=()
    for _ in $(seq "$ROUNDS"); do
        s1+=("$(tps 2 select1.sql)")
        ve+=("$(tps 2 token_verify.sql -D tok="$ted")")
        vo+=("$(tps 2 token_verify_pool.sql)")
        vh+=("$(tps 2 token_verify.sql -D tok="$teh")")
        vp+=("$(tps 2 token_verify_pgcrypto.sql -D tok="$teh" -D key="$key")")
        rf+=("$(tps 2 token_refresh.sql)")
    done
    local bad
    bad=$(psql_ -tAc "SELECT count(*) FROM bench.refresh WHERE tok IS NULL")
    [ "$bad" = 0 ] || die "tokens bench: $bad refreshes did not answer ok"
    local S1 VE VH VP RF VO
    S1=$(best "${s1[@]}") VE=$(best "${ve[@]}") VH=$(best "${vh[@]}") VP=$(best "${vp[@]}") RF=$(best "${rf[@]}")
    VO=$(best "${vo[@]}")
    echo
    echo "## Access and refresh tokens ($(nproc) cores, 2 clients, prepared, $ROUNDS rounds of ${SECS}s; TPS = best round, ratios = median of the rounds' pairs)"
    echo
    row "path" "TPS" "vs SELECT 1" "vs hand-written SQL"
    row "---" "---:" "---:" "---:"
    row "SELECT 1" "$S1" "1.000" ""
    row "authx.token_verify(\$1), EdDSA" "$VE" "$(median_ratio "${ve[*]}" "${s1[*]}")" "$(median_ratio "${ve[*]}" "${vp[*]}")"
    row "authx.token_verify(tok), EdDSA, 2,000 distinct tokens (cache misses)" "$VO" "$(median_ratio "${vo[*]}" "${s1[*]}")" ""
    row "authx.token_verify(\$1), HS256" "$VH" "$(median_ratio "${vh[*]}" "${s1[*]}")" "$(median_ratio "${vh[*]}" "${vp[*]}")"
    row "pgcrypto hmac + decode + exp (HS256, no session check)" "$VP" "$(median_ratio "${vp[*]}" "${s1[*]}")" "1.000"
    row "authx.token_refresh + UPDATE of the stored token" "$RF" "$(median_ratio "${rf[*]}" "${s1[*]}")" ""
}

bench_usage() {
    # usage_record next to SELECT 1 and to the INSERT a user would write per
    # request (the maintenance worker drains the queue meanwhile, on the same
    # 2 cores); then usage_summary over 30 days of 10,000,000 raw rows.
    say "usage: usage_record per request; usage_summary over 10M raw rows"
    psql_ -c "CREATE TABLE bench.requests (at timestamptz, endpoint text, status smallint, latency_ms real,
                                          api_key_id uuid, user_id uuid, ip inet)" >/dev/null
    local s1=() ur=() hw=()
    for _ in $(seq "$ROUNDS"); do
        s1+=("$(tps 2 select1.sql)")
        ur+=("$(tps 2 usage_record.sql)")
        hw+=("$(tps 2 usage_handwritten.sql)")
    done
    local rec wr dr
    # The worker has written (or dropped) every record before the rows below
    # replace what it wrote.
    for _ in $(seq 100); do
        [ "$(psql_ -tAc "SELECT value FROM authx.stats WHERE name = 'usage_queue_depth'")" = 0 ] && break
        sleep 0.2
    done
    sleep 1
    read -r dr rec wr < <(psql_ -tAc "SELECT string_agg(value::text, ' ' ORDER BY name) FROM authx.stats
                                      WHERE name IN ('usage_recorded', 'usage_written', 'usage_dropped')")
    # 10M raw rows over 30 days: 40 endpoints, 200 keys, 5% 4xx, 1% 5xx,
    # log-normal-ish latencies; rollups built from them as the worker would.
    psql_ <<'SQL' >/dev/null
SET max_parallel_workers_per_gather = 0;
TRUNCATE authx.usage_log, authx.usage_hourly, authx.usage_hourly_total, authx.usage_daily, authx.usage_hourly_ip,
         authx.usage_daily_ip;
INSERT INTO authx.usage_log (at, endpoint, status, latency_ms, api_key_id, ip)
SELECT now() - (i % 2592000) * interval '1 second',
       'GET /route/' || (i % 40),
       CASE WHEN i % 100 = 0 THEN 500 WHEN i % 20 = 0 THEN 404 ELSE 200 END,
       (exp((i % 1000) / 150.0))::real,
       CASE WHEN i % 3 = 0 THEN ('00000000-0000-0000-0000-' || lpad((i % 200)::text, 12, '0'))::uuid END,
       ('10.0.' || (i % 250) || '.' || (i % 199))::inet
  FROM generate_series(1, 10000000) i;
INSERT INTO authx.usage_hourly (hour, endpoint, status_class, api_key_id, requests, latency_sum_ms, latency_hist)
SELECT date_trunc('hour', at, 'UTC'), endpoint, status / 100, coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'),
       count(*), sum(latency_ms), authx._latency_hist(array_agg(latency_ms))
  FROM authx.usage_log GROUP BY 1, 2, 3, 4;
INSERT INTO authx.usage_hourly_total (hour, requests, errors_4xx, errors_5xx, latency_sum_ms, latency_hist)
SELECT date_trunc('hour', at, 'UTC'), count(*), count(*) FILTER (WHERE status / 100 = 4),
       count(*) FILTER (WHERE status / 100 = 5), sum(latency_ms), authx._latency_hist(array_agg(latency_ms))
  FROM authx.usage_log GROUP BY 1;
INSERT INTO authx.usage_daily (day, endpoint, status_class, api_key_id, requests, latency_sum_ms, latency_hist)
SELECT (at AT TIME ZONE 'UTC')::date, endpoint, status / 100, coalesce(api_key_id, '00000000-0000-0000-0000-000000000000'),
       count(*), sum(latency_ms), authx._latency_hist(array_agg(latency_ms))
  FROM authx.usage_log GROUP BY 1, 2, 3, 4;
-- As maintenance leaves it: each finished hour keeps its 100 busiest addresses.
INSERT INTO authx.usage_hourly_ip (hour, ip, requests, errors)
SELECT hour, ip, requests, errors
  FROM (SELECT date_trunc('hour', at, 'UTC') AS hour, ip, count(*) AS requests,
               count(*) FILTER (WHERE status >= 400) AS errors,
               row_number() OVER (PARTITION BY date_trunc('hour', at, 'UTC') ORDER BY count(*) DESC, ip) AS rn
          FROM authx.usage_log GROUP BY 1, 2) x
 WHERE rn <= 100 OR hour >= date_trunc('hour', now(), 'UTC');
-- and each finished day its 100 busiest, summed from those hours.
INSERT INTO authx.usage_daily_ip (day, ip, requests, errors)
SELECT day, ip, requests, errors
  FROM (SELECT (hour AT TIME ZONE 'UTC')::date AS day, ip, sum(requests) AS requests, sum(errors) AS errors,
               row_number() OVER (PARTITION BY (hour AT TIME ZONE 'UTC')::date ORDER BY sum(requests) DESC, ip) AS rn
          FROM authx.usage_hourly_ip WHERE hour < date_trunc('day', now(), 'UTC') GROUP BY 1, 2) x
 WHERE rn <= 100;
ANALYZE authx.usage_hourly, authx.usage_hourly_total, authx.usage_daily, authx.usage_hourly_ip, authx.usage_daily_ip;
-- And the maintenance pass the worker would make: the raw rows into their
-- daily partitions (not measured meanwhile).
SELECT authx.maintenance_run();
SQL
    local raw roll hrows iprows ms
    raw=$(psql_ -tAc "SELECT count(*) FROM authx.usage_log")
    roll=$(psql_ -tAc "SELECT sum(requests) FROM authx.usage_hourly")
    [ "$raw" = "$roll" ] || die "usage bench: rollups count $roll, raw rows $raw"
    hrows=$(psql_ -tAc "SELECT (SELECT count(*) FROM authx.usage_hourly) || ' hourly, ' ||
                                (SELECT count(*) FROM authx.usage_hourly_total) || ' hourly-total, ' ||
                                (SELECT count(*) FROM authx.usage_daily) || ' daily'")
    iprows=$(psql_ -tAc "SELECT (SELECT count(*) FROM authx.usage_hourly_ip) || ' hourly + ' ||
                                 (SELECT count(*) FROM authx.usage_daily_ip) || ' daily'")
    [ "$(psql_ -tAc "SELECT (authx.usage_summary('30 days')->>'requests')::bigint")" -gt 9000000 ] \
        || die "usage bench: usage_summary does not see the rows"
    ms=$(as_user pgbench -n -M prepared -c 1 -j 1 -t 20 -h 127.0.0.1 -p "$PORT" -U postgres \
             -f "$AUTHX_ROOT/bench/usage_summary.sql" authx_bench 2>/dev/null | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    local S1 UR HW
    S1=$(best "${s1[@]}") UR=$(best "${ur[@]}") HW=$(best "${hw[@]}")
    echo
    echo "## Usage analytics ($(nproc) cores, 2 clients, prepared, $ROUNDS rounds of ${SECS}s; TPS = best round, ratios = median of the rounds' pairs)"
    echo
    row "path" "TPS" "vs SELECT 1" "vs hand-written SQL"
    row "---" "---:" "---:" "---:"
    row "SELECT 1" "$S1" "1.000" ""
    row "authx.usage_record(...)" "$UR" "$(median_ratio "${ur[*]}" "${s1[*]}")" "$(median_ratio "${ur[*]}" "${hw[*]}")"
    row "INSERT INTO a requests table, one row per request" "$HW" "$(median_ratio "${hw[*]}" "${s1[*]}")" "1.000"
    echo
    echo "usage_record during the runs: recorded $rec, written by the worker $wr, dropped $dr (queue: authx.usage_queue_size)"
    echo "usage_summary('30 days') over $raw raw rows (rollup rows: $hrows; per-address: $iprows): ${ms} ms average of 20 calls"
}

bench_scaleout() {
    # A coordinator (a second cluster on the same 2 cores) routing through
    # PL/Proxy to the bench cluster as its only data node: the cost of the
    # extra hop for a call routed by user id.
    say "scaleout: has_permission through a PL/Proxy coordinator vs directly"
    local cport
    cport=$(free_port)
    pg_init "$CDATA" "$cport" "$WORK/coord" authx_coord
    pg_start "$CDATA"
    cpsql_() { as_user psql -X -q -h 127.0.0.1 -p "$cport" -U postgres -d authx_coord -v ON_ERROR_STOP=1 "$@"; }
    cpsql_ -c "CREATE EXTENSION authx" >/dev/null
    cpsql_ -tAc "SELECT authx.cluster_setup(ARRAY['host=127.0.0.1 port=$PORT dbname=authx_bench user=postgres'])" >/dev/null
    # Session tokens that name their bucket, for the coordinator to route.
    psql_ -c "ALTER SYSTEM SET authx.shard_tokens = on" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 1
    local suid stok
    suid=$(cpsql_ -tAc "SELECT authx_cluster.user_create('scale@example.com', '$PW')")
    stok=$(cpsql_ -tAc "SELECT session_token FROM authx_cluster.session_create('$suid')")
    [ "$(cpsql_ -tAc "SELECT authx_cluster.session_validate('$stok')")" = "$suid" ] \
        || die "scaleout bench: session_validate through the coordinator failed"
    cpsql_ -tAc "SELECT authx_cluster.user_grant('$suid', 'admin')" >/dev/null
    [ "$(cpsql_ -tAc "SELECT authx_cluster.has_permission('$suid', 'docs:read')")" = t ] \
        || die "scaleout bench: no permission through the coordinator"
    local s1=() hd=() hc=() vd=() vc=()
    for _ in $(seq "$ROUNDS"); do
        s1+=("$(tps 2 select1.sql)")
        hd+=("$(tps 2 has_permission_param.sql -D uid="$suid" -D perm=docs:read)")
        hc+=("$(tps_on "$cport" authx_coord 2 has_permission_cluster_param.sql -D uid="$suid" -D perm=docs:read)")
        vd+=("$(tps 2 session_validate_param.sql -D tok="$stok")")
        vc+=("$(tps_on "$cport" authx_coord 2 session_validate_cluster_param.sql -D tok="$stok")")
    done
    psql_ -c "ALTER SYSTEM RESET authx.shard_tokens" -c "SELECT pg_reload_conf()" >/dev/null
    local S1 HD HC VD VC
    S1=$(best "${s1[@]}") HD=$(best "${hd[@]}") HC=$(best "${hc[@]}") VD=$(best "${vd[@]}") VC=$(best "${vc[@]}")
    echo
    echo "## Scale-out ($(nproc) cores, coordinator and data node on the same machine, 2 clients, prepared, $ROUNDS rounds of ${SECS}s)"
    echo
    row "path" "TPS" "vs SELECT 1" "vs direct"
    row "---" "---:" "---:" "---:"
    row "SELECT 1 on the data node" "$S1" "1.000" ""
    row "authx.has_permission(\$1, \$2) on the data node" "$HD" "$(median_ratio "${hd[*]}" "${s1[*]}")" "1.000"
    row "authx_cluster.has_permission(\$1, \$2) through the coordinator" "$HC" "$(median_ratio "${hc[*]}" "${s1[*]}")" "$(median_ratio "${hc[*]}" "${hd[*]}")"
    row "authx.session_validate(\$1) on the data node" "$VD" "$(median_ratio "${vd[*]}" "${s1[*]}")" "1.000"
    row "authx_cluster.session_validate(\$1) through the coordinator" "$VC" "$(median_ratio "${vc[*]}" "${s1[*]}")" "$(median_ratio "${vc[*]}" "${vd[*]}")"
}

for section in $SECTIONS; do
    "bench_$section"
done

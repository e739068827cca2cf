#!/usr/bin/env bash
# `make test`: build, install, and run every suite on throw-away servers.
#
#   test/run.sh [regress] [isolation] [pgtap] [tap]     (default: all)
#
# Suites:
#   regress    pg_regress, sql/NAME.sql against expected/NAME.out
#   isolation  isolation specs, test/isolation/specs/NAME.spec
#   pgtap      pgTAP files test/pgtap/*.sql, run with pg_prove
#   tap        Perl TAP files test/t/*.pl (PostgreSQL::Test::Cluster)
#
# The first three share one cluster (database authx_test, settings from
# test/authx.conf) and a Redis, both on free loopback ports; the TAP tests
# make their own.  Servers run as an unprivileged user (postgres when run
# as root) in a scratch directory that is removed on success and kept
# (path printed) on failure.  Ends with an "N passed, N failed" line.
set -uo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

SUITES=("$@")
[ ${#SUITES[@]} -eq 0 ] && SUITES=(regress isolation pgtap tap)

ensure_packages || exit 1
# AUTHX_SKIP_BUILD=1 reuses the installed build (parallel test runs);
# AUTHX_ONLY=GLOB runs only the pgTAP / Perl TAP files matching it.
[ "${AUTHX_SKIP_BUILD:-0}" = 1 ] || build_install || die "build failed"

PGXS_DIR=$(dirname "$(dirname "$(pg_config --pgxs)")")    # .../lib/pgxs/src
WORK=$(mktemp -d /tmp/authx-test.XXXXXX)
chmod 755 "$WORK"
cp -r "$AUTHX_ROOT/sql" "$AUTHX_ROOT/expected" "$AUTHX_ROOT/test" "$AUTHX_ROOT/examples" "$WORK/" 2>/dev/null
[ "$(id -u)" = 0 ] && chown -R "$(run_user)" "$WORK"

export AUTHX_PGPORT AUTHX_REDIS_PORT
AUTHX_PGPORT=$(free_port)
AUTHX_REDIS_PORT=$(free_port)
DB=authx_test
DATA="$WORK/pg/data"
passed=0
failed=0
failures=()

cleanup() {
    pg_stop "$DATA"
    redis_stop "$AUTHX_REDIS_PORT"
}
trap cleanup EXIT

# count LOG: tally "... ok" / "... FAILED" (pg_regress) or ".. ok" / other
# (prove) lines of one suite's output.
tally() {
    local suite=$1 log=$2 ok bad
    case "$suite" in
        regress|isolation)
            ok=$(grep -cE '^(ok|test|     ).* \.\.\. ok|^ok [0-9]+ ' "$log")
            bad=$(grep -cE '\.\.\. FAILED|^not ok [0-9]+ ' "$log")
            ;;
        *)
            # prove: "Files=N, Tests=M" counts tests; "Failed X/Y subtests"
            # and files that died (Dubious, no plan) count as failures.
            local total sub died
            total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$log" | tail -1)
            sub=$(awk '/Failed [0-9]+\/[0-9]+ subtests/ { split($0, a, "Failed "); split(a[2], b, "/"); n += b[1] } END { print n + 0 }' "$log")
            died=$(grep -cE '^Dubious|\.\. Dubious|No subtests run|^Parse errors' "$log")
            ok=$(( ${total:-0} - sub ))
            bad=$(( sub + died ))
            ;;
    esac
    passed=$((passed + ok))
    failed=$((failed + bad))
}

start_cluster() {
    [ -f "$DATA/postmaster.pid" ] && return 0
    # The cache is on in the shared cluster, so every suite runs through the
    # session triggers and the queue to a real Redis.
    redis_start "$AUTHX_REDIS_PORT" "$WORK/redis"
    pg_init "$DATA" "$AUTHX_PGPORT" "$WORK/pg" "$DB"
    cat "$WORK/test/authx.conf" >>"$DATA/postgresql.conf"
    echo "authx.redis_url = 'redis://127.0.0.1:$AUTHX_REDIS_PORT'" >>"$DATA/postgresql.conf"
    pg_start "$DATA" || { cat "$WORK/pg/postgres.log"; die "cluster did not start"; }
    as_user psql -X -q -h 127.0.0.1 -p "$AUTHX_PGPORT" -U postgres -d "$DB" \
        -c "CREATE EXTENSION authx; CREATE EXTENSION pgtap;" >/dev/null || die "CREATE EXTENSION failed"
}

run_suite() {
    local suite=$1 log="$WORK/$1.log" rc=0
    say "suite: $suite"
    case "$suite" in
        regress)
            start_cluster
            local tests
            tests=$(cd "$WORK/sql" && ls [0-9]*.sql | sed 's/\.sql$//' | sort)
            as_user "$PGXS_DIR/test/regress/pg_regress" --use-existing --bindir="$PGBIN" \
                --host=127.0.0.1 --port="$AUTHX_PGPORT" --user=postgres --dbname="$DB" \
                --inputdir="$WORK" --outputdir="$WORK/regress" $tests >"$log" 2>&1 || rc=$?
            [ $rc -ne 0 ] && [ -f "$WORK/regress/regression.diffs" ] && cat "$WORK/regress/regression.diffs" >>"$log"
            ;;
        isolation)
            start_cluster
            local specs
            specs=$(cd "$WORK/test/isolation/specs" && ls *.spec 2>/dev/null | sed 's/\.spec$//' | sort)
            [ -z "$specs" ] && { echo "no specs" >"$log"; return 0; }
            as_user "$PGXS_DIR/test/isolation/pg_isolation_regress" --use-existing --bindir="$PGBIN" \
                --host=127.0.0.1 --port="$AUTHX_PGPORT" --user=postgres --dbname="$DB" \
                --inputdir="$WORK/test/isolation" --outputdir="$WORK/isolation" $specs >"$log" 2>&1 || rc=$?
            [ $rc -ne 0 ] && [ -f "$WORK/isolation/regression.diffs" ] && cat "$WORK/isolation/regression.diffs" >>"$log"
            ;;
        pgtap)
            start_cluster
            as_user pg_prove -h 127.0.0.1 -p "$AUTHX_PGPORT" -U postgres -d "$DB" \
                "$WORK"/test/pgtap/${AUTHX_ONLY:-*}.sql >"$log" 2>&1 || rc=$?
            ;;
        tap)
            mkdir -p "$WORK/tap" && [ "$(id -u)" = 0 ] && chown "$(run_user)" "$WORK/tap"
            (cd "$WORK/tap" && as_user env \
                PERL5LIB="$PGXS_DIR/test/perl:$WORK/test/perl" \
                PG_REGRESS="$PGXS_DIR/test/regress/pg_regress" \
                TESTDIR="$WORK/tap" AUTHX_SRC="$WORK" \
                prove --timer "$WORK"/test/t/${AUTHX_ONLY:-*}.pl) >"$log" 2>&1 || rc=$?
            ;;
        *) die "unknown suite $suite" ;;
    esac
    cat "$log"
    local before=$failed
    tally "$suite" "$log"
    local bad=$((failed - before))
    if [ $rc -ne 0 ]; then
        failures+=("$suite")
        # A failing suite counts as at least one failure, whatever it printed.
        [ "$bad" -gt 0 ] || failed=$((failed + 1))
    fi
}

for s in "${SUITES[@]}"; do
    run_suite "$s"
done

echo
if [ ${#failures[@]} -gt 0 ]; then
    say "failed suites: ${failures[*]}; outputs kept in $WORK"
    [ -f "$WORK/pg/postgres.log" ] && { echo "--- server log (tail) ---"; tail -50 "$WORK/pg/postgres.log"; }
    echo "$passed passed, $failed failed"
    exit 1
fi
cleanup
trap - EXIT
rm -rf "$WORK"
echo "$passed passed, $failed failed"

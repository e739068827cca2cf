#!/usr/bin/env bash
# Screenshot of a running dashboard with headless Chromium.
#
#   examples/dashboard/screenshot.sh [URL] [OUT.png]
#
# URL defaults to http://127.0.0.1:$PORT/ (PORT defaults to 8080), OUT to
# docs/dashboard.png in the repository.  WINDOW_SIZE (default 1280,1600)
# sets the page size; SINCE (e.g. "7 days") picks the window shown.
# Needs Debian's chromium (apt-get install --no-install-recommends chromium).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
url=${1:-http://127.0.0.1:${PORT:-8080}/}
out=${2:-$root/docs/dashboard.png}
size=${WINDOW_SIZE:-1280,1600}

if [ -n "${SINCE:-}" ]; then
    sep='?'; case "$url" in *\?*) sep='&';; esac
    url="$url${sep}since=$(printf '%s' "$SINCE" | sed 's/ /%20/g')"
fi

chrome=
for c in chromium chromium-browser google-chrome; do
    if command -v "$c" >/dev/null 2>&1; then chrome=$(command -v "$c"); break; fi
done
[ -n "$chrome" ] || { echo "screenshot.sh: chromium not found (apt-get install chromium)" >&2; exit 1; }

# The dashboard must answer before Chromium looks at it.
if ! timeout 10 python3 - "$url" <<'PY' >/dev/null 2>&1
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
opener.open(sys.argv[1], timeout=8).read()
PY
then
    echo "screenshot.sh: no dashboard answering at $url (start examples/dashboard/server.py)" >&2
    exit 1
fi

profile=$(mktemp -d /tmp/authx-dashboard-shot.XXXXXX)
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$out")"
tmp_out="$profile/shot.png"

# --virtual-time-budget lets the page's fetches and drawing finish before
# the picture is taken (the 30 s refresh timer does not fire within it).
HOME="$profile" timeout 90 "$chrome" --headless --no-sandbox --disable-gpu \
    --disable-dev-shm-usage --no-first-run --no-default-browser-check \
    --disable-extensions --hide-scrollbars --no-proxy-server \
    --user-data-dir="$profile/profile" \
    --force-device-scale-factor=1 --window-size="$size" \
    --virtual-time-budget=10000 --screenshot="$tmp_out" "$url" \
    >"$profile/chromium.log" 2>&1 || {
    echo "screenshot.sh: chromium failed:" >&2
    tail -20 "$profile/chromium.log" >&2
    exit 1
}
[ -s "$tmp_out" ] || { echo "screenshot.sh: chromium wrote no picture" >&2; exit 1; }
mv "$tmp_out" "$out"
echo "$out"

#!/usr/bin/env bash
# Install the Debian packages authx needs (idempotent).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ensure_packages
say "all packages present"

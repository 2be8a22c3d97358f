#!/usr/bin/env bash
# contrib/test.sh — installs what is missing, builds build/, runs the unit tests (ctest) and
# the integration suite (pytest with dnspython against a real NSD upstream). Exits non-zero
# when anything fails; the last line it prints is pytest's "N passed".
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=contrib/deps.sh
source "$root/contrib/deps.sh"

vd_deps_install
vd_build "$root"
ctest --test-dir "$root/build" --output-on-failure

export PYTHONDONTWRITEBYTECODE=1
export VPCDNS_BIN="$root/build/vpcdns"
exec /usr/bin/python3 -m pytest -q "$root/tests/integration"

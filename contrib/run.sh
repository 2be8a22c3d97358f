#!/usr/bin/env bash
# contrib/run.sh — installs what is missing, builds build/, then runs vpcdns on
# 127.0.0.1:5300 with the example AWS snapshot and zone of zones/example/, forwarding every
# other name to the nameservers of /etc/resolv.conf. Extra arguments go to vpcdns.
#   ./contrib/run.sh            then   dig @127.0.0.1 -p 5300 sqs.us-east-1.amazonaws.com
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=contrib/deps.sh
source "$root/contrib/deps.sh"

vd_deps_install
vd_build "$root"
exec build/vpcdns --listen 127.0.0.1:5300 --snapshot zones/example \
        --zone zones/example/corp.zone "$@"

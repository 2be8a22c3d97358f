# contrib/deps.sh — sourced by contrib/run.sh and contrib/test.sh: installs the Debian 12
# packages vpcdns needs to build and test, and touches apt only when one is missing.
# Defines vd_deps_install and vd_build; runs nothing by itself.

# shellcheck shell=bash
VD_DEPS=(
        cmake gcc libc6-dev make pkg-config
        libuv1-dev libc-ares-dev libldns-dev ldnsutils libcriterion-dev libjansson-dev libyaml-dev
        nsd dnsutils python3 python3-dnspython python3-pytest clang-format
)

vd_deps_missing() {
        local pkg status
        for pkg in "${VD_DEPS[@]}"; do
                status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
                if [[ $status != ii* ]]; then
                        printf '%s\n' "$pkg"
                fi
        done
}

vd_deps_install() {
        local missing
        mapfile -t missing < <(vd_deps_missing)
        if ((${#missing[@]} == 0)); then
                return 0
        fi
        echo "deps: installing ${missing[*]}" >&2
        local sudo=()
        if ((EUID != 0)); then
                sudo=(sudo)
        fi
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y --no-install-recommends "${missing[@]}"
}

# vd_build ROOT: configures and builds ROOT/build (warnings are errors when CI=true).
vd_build() {
        local root=$1
        local werror=OFF
        if [[ ${CI:-} == true ]]; then
                werror=ON
        fi
        cmake -S "$root" -B "$root/build" -DVD_WERROR="$werror"
        cmake --build "$root/build" -j "$(nproc 2>/dev/null || echo 2)"
}

# contrib/deps.sh — sourced by contrib/run.sh and contrib/test.sh: installs the Debian 12
# packages vpcdns needs to build and test, and touches apt only when one is missing.
# Defines vd_deps_install, vd_deps_install_checks and vd_build; runs nothing by itself.

# shellcheck shell=bash
VD_DEPS=(
        cmake gcc libc6-dev make pkg-config
        libuv1-dev libc-ares-dev libldns-dev ldnsutils libcriterion-dev libcjson-dev libyaml-dev
        libmicrohttpd-dev libfstrm-dev
        libcurl4-openssl-dev # az: imds asks the EC2 instance metadata service (resolver/az.c)
        nsd unbound dnsutils python3 python3-dnspython python3-pytest clang-format
        prometheus fstrm-bin dnstap-ldns
        jq mandoc # vpcdns-snapshot reads the AWS CLI's JSON with jq; man pages are linted
        iproute2
)
# What the slower checks of contrib/test.sh add: the clang build, ASan/UBSan and TSan with
# clang's runtime (llvm-symbolizer for readable stacks), libFuzzer, valgrind memcheck.
VD_DEPS_CHECKS=(clang libclang-rt-14-dev llvm valgrind)
# What stage debian13 of contrib/test.sh needs on the host to make its chroot (whose own
# packages are VD_DEPS, as Debian 13 names them too).
VD_DEPS_DEBIAN13=(mmdebstrap)
# tests/integration/test_manifests.py reads the Kubernetes examples with PyYAML; stage container
# of contrib/test.sh builds and runs contrib/Dockerfile with podman through runc (crun fails on
# these machines), on a base image it makes with mmdebstrap.
VD_DEPS+=(python3-yaml)
VD_DEPS_CONTAINER=(podman runc mmdebstrap)
# What stage package of contrib/test.sh needs on the host: dpkg-shlibdeps (the .deb's
# dependencies) and mmdebstrap (the clean Debian 12 chroot it installs the .deb in).
VD_DEPS_PACKAGE=(dpkg-dev mmdebstrap)

# vd_deps_missing PKG...: prints the packages of the list that are not installed.
vd_deps_missing() {
        local pkg status
        for pkg in "$@"; do
                status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
                if [[ $status != ii* ]]; then
                        printf '%s\n' "$pkg"
                fi
        done
}

# vd_deps_install_from PKG...: installs whatever of PKG... is missing (apt-get update first).
vd_deps_install_from() {
        local missing
        mapfile -t missing < <(vd_deps_missing "$@")
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

# vd_deps_install: what building, running and the unit and integration tests need.
vd_deps_install() {
        vd_deps_install_from "${VD_DEPS[@]}"
}

# vd_deps_install_checks: that and what the checks of contrib/test.sh add.
vd_deps_install_checks() {
        vd_deps_install_from "${VD_DEPS[@]}" "${VD_DEPS_CHECKS[@]}"
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

#!/usr/bin/env bash
# contrib/test.sh — the whole test suite (CI runs it through .ci/run with CI=true). Installs
# what is missing, then runs these stages in order and stops at the first that fails, naming it:
#   1 check     contrib/check.sh: no banned calls, every C file formatted
#   2 clang     clang -Werror build (build-ci-clang) + unit tests
#   3 asan      ASan+UBSan build (clang, build-ci-asan): unit tests + integration suite; any
#               sanitizer report fails the stage
#   4 tsan      ThreadSanitizer build (clang, build-ci-tsan): unit tests + integration suite
#               (with tests/integration/test_reload_stress.py: SIGHUP reloads under load on
#               four workers); any report fails the stage; contrib/tsan.supp lists the
#               suppressed ones, each with its reason
#   5 valgrind  the unit tests of build-ci-clang under valgrind memcheck
#   6 fuzz      when tests/fuzz/build.sh exists: libFuzzer harnesses (build-ci-fuzz), corpus
#               replay, then VD_FUZZ_SECONDS (default 20) of fuzzing per harness
#   7 gcc       gcc build (build/, -Werror when CI=true) + unit tests + integration suite
#               (outside CI: in CI the suite runs in asan, tsan and debian13)
#   8 debian13  in a Debian 13 (trixie) chroot made with mmdebstrap (build-ci-debian13/chroot,
#               or VD_DEBIAN13_CHROOT; made once, reused while complete): gcc -Werror build +
#               unit tests + integration suite against trixie's libraries (c-ares 1.34, libuv
#               1.50); needs root; /proc, /dev and /sys are mounted for the stage only
#   9 container contrib/Dockerfile built with podman on a base image made by mmdebstrap, run
#               with the host network on 127.53.0.1:53: dig, /ready, HEALTHCHECK, size <= 100 MB
#  10 package   cpack -G DEB (build-ci-package), then in a clean Debian 12 chroot (mmdebstrap,
#               its tarball cached in build-ci-package): apt-get install ./vpcdns_*.deb, the
#               files in place, --check of the installed config, the unit's ExecStart run on
#               loopback and queried with dig, systemd-analyze verify, purge; needs root
# Each stage prints its duration when it ends. Environment: VD_QUICK=1 runs only stages 1 and
# 7; VD_STAGES="check asan gcc" runs the named stages; both are ignored when CI=true (CI runs
# everything). VD_FUZZ_SECONDS=0 only replays.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=contrib/deps.sh
source "$root/contrib/deps.sh"

all_stages=(check clang asan tsan valgrind fuzz gcc debian13 container package)
if [[ ${CI:-} == true ]]; then
        if [[ -n ${VD_QUICK:-}${VD_STAGES:-} ]]; then
                echo "test.sh: CI=true runs every stage; VD_QUICK and VD_STAGES are ignored" >&2
        fi
        stages=("${all_stages[@]}")
elif [[ -n ${VD_STAGES:-} ]]; then
        read -r -a stages <<<"$VD_STAGES"
elif [[ ${VD_QUICK:-0} == 1 ]]; then
        stages=(check gcc)
else
        stages=("${all_stages[@]}")
fi
for s in "${stages[@]}"; do
        if [[ " ${all_stages[*]} " != *" $s "* ]]; then
                echo "test.sh: unknown stage '$s' (stages: ${all_stages[*]})" >&2
                exit 2
        fi
done

jobs=$(nproc 2>/dev/null || echo 2)
werror=OFF
if [[ ${CI:-} == true ]]; then
        werror=ON
fi
fuzz_seconds=${VD_FUZZ_SECONDS:-20}
export PYTHONDONTWRITEBYTECODE=1

current=setup
debian13_mounted=() # what stage debian13 mounted: on_exit unmounts it
started=$SECONDS
stage_started=$SECONDS
on_exit() {
        local rc=$?
        debian13_unmount
        if ((rc != 0)); then
                printf '\n=== test.sh: stage %s FAILED (exit %d) after %d s ===\n' \
                        "$current" "$rc" $((SECONDS - stage_started)) >&2
        fi
}
trap on_exit EXIT
# A signal ends the script through exit, so on_exit runs (and unmounts) then too.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

banner() {
        current=$1
        stage_started=$SECONDS
        printf '\n=== test.sh: stage %s: %s (%d s elapsed) ===\n' "$1" "$2" $((SECONDS - started))
}

# cmake_build DIR CC ARGS...: configures DIR with the compiler CC and builds it.
cmake_build() {
        local dir=$1 cc=$2
        shift 2
        # CMake keeps the compiler of the first configure: start afresh when it differs.
        local cached
        cached=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$root/$dir/CMakeCache.txt" 2>/dev/null ||
                true)
        if [[ -n $cached && $(readlink -f "$cached") != $(readlink -f "$(command -v "$cc")") ]]; then
                echo "test.sh: $dir was configured with $cached, reconfiguring with $cc"
                rm -rf "$root/$dir/CMakeCache.txt" "$root/$dir/CMakeFiles"
        fi
        CC=$cc cmake -S "$root" -B "$root/$dir" "$@"
        cmake --build "$root/$dir" -j "$jobs"
}

# Sanitizer reports fail the process (abort / exit 1) and, for the integration suite, go to
# files in a directory that must stay empty: a test that expects vpcdns to fail would not
# notice an ASan abort, and a report in a daemon's stderr would pass unseen.
sanitizer_env() {
        local logdir=${1:-}
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
        if [[ -n $logdir ]]; then
                ASAN_OPTIONS+=:log_path=$logdir/report
                UBSAN_OPTIONS+=:log_path=$logdir/report
        fi
        export ASAN_OPTIONS UBSAN_OPTIONS
        # LeakSanitizer at the end of each Criterion worker (what 2.4 does anyway).
        export CRITERION_NO_EARLY_EXIT=1
}

# free_port: an unused port on 127.0.0.1, free for both TCP and UDP, printed (stages container
# and package start daemons on it).
free_port() {
        /usr/bin/python3 - <<'PY'
import socket
for _ in range(100):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        u.close()
        t.close()
    print(port)
    break
else:
    raise SystemExit("no free port on 127.0.0.1")
PY
}

stage_check() {
        banner check "banned calls and clang-format"
        "$root/contrib/check.sh"
}

stage_clang() {
        banner clang "clang -Werror build (build-ci-clang) and unit tests"
        # VD_VALGRIND registers the memcheck runs of stage valgrind on the same binaries.
        cmake_build build-ci-clang clang -DVD_WERROR=ON -DVD_SANITIZE=OFF -DVD_VALGRIND=ON
        ctest --test-dir "$root/build-ci-clang" -L unit --output-on-failure
}

stage_asan() {
        banner asan "ASan+UBSan build (build-ci-asan): unit tests and integration suite"
        # clang: gcc 12's libubsan ignores log_path, clang's runtime honours it.
        cmake_build build-ci-asan clang -DVD_WERROR="$werror" -DVD_SANITIZE=ON -DVD_VALGRIND=OFF
        (
                sanitizer_env
                ctest --test-dir "$root/build-ci-asan" -L unit --output-on-failure
        )
        local logdir="$root/build-ci-asan/sanitizer-logs"
        rm -rf "$logdir"
        mkdir -p "$logdir"
        local rc=0
        (
                sanitizer_env "$logdir"
                VPCDNS_BIN="$root/build-ci-asan/vpcdns" /usr/bin/python3 -m pytest -q \
                        "$root/tests/integration"
        ) || rc=$?
        local reports
        mapfile -t reports < <(find "$logdir" -type f | LC_ALL=C sort)
        if ((${#reports[@]} > 0)); then
                echo "test.sh: ${#reports[@]} sanitizer reports from vpcdns during the" \
                        "integration suite (the first 5):" >&2
                local f
                for f in "${reports[@]:0:5}"; do
                        printf -- '--- %s\n' "$f" >&2
                        head -n 60 "$f" >&2
                done
                return 1
        fi
        return "$rc"
}

# ThreadSanitizer: every report fails. Unit tests abort on the first (halt_on_error); the
# daemons of the integration suite write theirs to files in a directory that must stay
# empty, as in stage asan. contrib/tsan.supp names the only reports ignored, each with why.
tsan_env() {
        local logdir=${1:-}
        TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:second_deadlock_stack=1"
        TSAN_OPTIONS+=":suppressions=$root/contrib/tsan.supp"
        if [[ -n $logdir ]]; then
                TSAN_OPTIONS+=:log_path=$logdir/report
        fi
        export TSAN_OPTIONS
        export CRITERION_NO_EARLY_EXIT=1
}

stage_tsan() {
        banner tsan "ThreadSanitizer build (build-ci-tsan): unit tests and integration suite"
        cmake_build build-ci-tsan clang -DVD_WERROR="$werror" -DVD_TSAN=ON -DVD_SANITIZE=OFF \
                -DVD_VALGRIND=OFF
        (
                tsan_env
                ctest --test-dir "$root/build-ci-tsan" -L unit --output-on-failure
        )
        local logdir="$root/build-ci-tsan/sanitizer-logs"
        rm -rf "$logdir"
        mkdir -p "$logdir"
        local rc=0
        (
                tsan_env "$logdir"
                VPCDNS_BIN="$root/build-ci-tsan/vpcdns" /usr/bin/python3 -m pytest \
                        -q "$root/tests/integration"
        ) || rc=$?
        local reports
        mapfile -t reports < <(find "$logdir" -type f | LC_ALL=C sort)
        if ((${#reports[@]} > 0)); then
                echo "test.sh: ${#reports[@]} ThreadSanitizer reports from vpcdns during the" \
                        "integration suite (the first 5):" >&2
                local f
                for f in "${reports[@]:0:5}"; do
                        printf -- '--- %s\n' "$f" >&2
                        head -n 80 "$f" >&2
                done
                return 1
        fi
        return "$rc"
}

stage_valgrind() {
        banner valgrind "unit tests under valgrind memcheck (build-ci-clang)"
        cmake_build build-ci-clang clang -DVD_WERROR=ON -DVD_SANITIZE=OFF -DVD_VALGRIND=ON
        CRITERION_NO_EARLY_EXIT=1 ctest --test-dir "$root/build-ci-clang" -L valgrind \
                --output-on-failure -j "$jobs"
}

stage_fuzz() {
        banner fuzz "libFuzzer harnesses (build-ci-fuzz): corpus replay, ${fuzz_seconds} s each"
        if [[ ! -x $root/tests/fuzz/build.sh ]]; then
                echo "test.sh: no tests/fuzz/build.sh, nothing to fuzz"
                return 0
        fi
        CC=clang "$root/tests/fuzz/build.sh" "$root/build-ci-fuzz"
        "$root/tests/fuzz/run.sh" "$root/build-ci-fuzz" 0
        # The replay above (corpus and every known regression) is deterministic and fails the
        # run. New inputs found by the bounded exploration below differ from run to run: they
        # are reported loudly with their artifacts, for a developer to turn into a regression
        # and a fix, but do not fail CI (set VD_FUZZ_STRICT=1 to make them fatal).
        if ((fuzz_seconds > 0)); then
                if ! KEEP=1 JOBS=$jobs "$root/tests/fuzz/run.sh" "$root/build-ci-fuzz" \
                        "$fuzz_seconds"; then
                        echo "test.sh: WARNING: exploratory fuzzing found new inputs (see above)"
                        [[ ${VD_FUZZ_STRICT:-0} == 1 ]] && return 1
                fi
        fi
}

# ---- stage debian13: the gcc build and both suites on Debian 13 (trixie), in a chroot ----
# The chroot is made with mmdebstrap (installed on the host when missing) from VD_DEPS of
# contrib/deps.sh, in VD_DEBIAN13_CHROOT (default build-ci-debian13/chroot), and reused while
# its marker file lists the same packages. /proc, /dev (with /dev/shm, which Criterion needs)
# and /sys are mounted into it for the stage and unmounted on exit, whatever happens; mounts
# that were there before the stage are used and left alone. The source tree is copied in
# (no build tree, no .git), the build directory stays in the chroot between runs.
debian13_dir=${VD_DEBIAN13_CHROOT:-$root/build-ci-debian13/chroot}
debian13_marker=.vpcdns-chroot-complete

debian13_packages() {
        local p
        for p in "${VD_DEPS[@]}"; do
                # clang-format only serves stage check, on the host
                [[ $p == clang-format ]] || printf '%s\n' "$p"
        done
}

# Unmounts, innermost first, what stage debian13 mounted. Run by on_exit.
debian13_unmount() {
        local i
        for ((i = ${#debian13_mounted[@]} - 1; i >= 0; i--)); do
                umount -R "${debian13_mounted[$i]}" 2>/dev/null ||
                        umount -R -l "${debian13_mounted[$i]}" ||
                        echo "test.sh: could not unmount ${debian13_mounted[$i]}" >&2
        done
        debian13_mounted=()
}

# Any mount at or below DIR?
debian13_has_mounts() {
        local dir
        dir=$(realpath -m "$1")
        awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' \
                /proc/self/mounts
}

debian13_chroot_ready() {
        local want
        want=$(debian13_packages | LC_ALL=C sort | tr '\n' ' ')
        [[ -f $debian13_dir/$debian13_marker && $(<"$debian13_dir/$debian13_marker") == "$want" ]]
}

debian13_make_chroot() {
        if debian13_chroot_ready; then
                echo "test.sh: reusing the Debian 13 chroot $debian13_dir"
                return 0
        fi
        if debian13_has_mounts "$debian13_dir"; then
                echo "test.sh: $debian13_dir is incomplete or has other packages, but something" \
                        "is mounted in it: not removing it" >&2
                return 1
        fi
        vd_deps_install_from "${VD_DEPS_DEBIAN13[@]}"
        local packages
        packages=$(debian13_packages | LC_ALL=C sort | tr '\n' ' ')
        echo "test.sh: creating the Debian 13 chroot $debian13_dir (mmdebstrap, about a minute)"
        rm -rf "$debian13_dir"
        mkdir -p "$(dirname "$debian13_dir")"
        mmdebstrap --variant=apt --include="${packages// /,}" trixie "$debian13_dir"
        printf '%s' "$packages" >"$debian13_dir/$debian13_marker"
}

# debian13_mount TYPE SOURCE TARGET (TYPE: bind or rbind), unless TARGET is a mount point.
debian13_mount() {
        local kind=$1 src=$2 target=$3
        if mountpoint -q "$target"; then
                return 0
        fi
        mkdir -p "$target"
        mount "--$kind" "$src" "$target"
        debian13_mounted+=("$target")
        # what the host mounts later under SOURCE must not show up here, nor the reverse
        mount --make-rslave "$target"
}

stage_debian13() {
        banner debian13 "Debian 13 chroot: gcc -Werror build, unit tests and integration suite"
        if ((EUID != 0)); then
                echo "test.sh: stage debian13 needs root (mmdebstrap, mount, chroot)" >&2
                return 1
        fi
        debian13_make_chroot
        debian13_mount bind /proc "$debian13_dir/proc"
        debian13_mount rbind /dev "$debian13_dir/dev"
        debian13_mount bind /sys "$debian13_dir/sys"
        rm -rf "$debian13_dir/vpcdns-src"
        mkdir -p "$debian13_dir/vpcdns-src"
        tar -C "$root" --exclude=./.git --exclude='./build' --exclude='./build-*' \
                --exclude=__pycache__ --exclude=.pytest_cache -cf - . |
                tar -C "$debian13_dir/vpcdns-src" -xf -
        chroot "$debian13_dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
                LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 JOBS="$jobs" /bin/bash -euo pipefail -c '
                cd /vpcdns-src
                echo "debian13: $(. /etc/os-release && echo "$PRETTY_NAME"), $(gcc --version | head -n 1)," \
                        "c-ares $(pkg-config --modversion libcares), libuv $(pkg-config --modversion libuv)"
                CC=gcc cmake -S . -B /vpcdns-build -DVD_WERROR=ON
                cmake --build /vpcdns-build -j "$JOBS"
                ctest --test-dir /vpcdns-build -L unit --output-on-failure
                VPCDNS_BIN=/vpcdns-build/vpcdns python3 -m pytest -q -p no:cacheprovider \
                        tests/integration'
        debian13_unmount
}

# In CI the integration suite is not run here: asan and tsan run it on Debian 12, debian13 on a
# gcc build, and a fourth run (about 270 s) would take CI past its 40 minutes. A developer's run
# (VD_QUICK=1, VD_STAGES=gcc) still runs it: it is the quick path's only integration run.
stage_gcc() {
        banner gcc "gcc build (build/), unit tests and (outside CI) integration suite"
        vd_build "$root"
        ctest --test-dir "$root/build" -L unit --output-on-failure
        if [[ ${CI:-} == true ]]; then
                echo "test.sh: integration suite: run by stages asan, tsan and debian13 in CI"
                return 0
        fi
        VPCDNS_BIN="$root/build/vpcdns" /usr/bin/python3 -m pytest -q "$root/tests/integration"
}

# ---- stage container: contrib/Dockerfile built and run with podman -------------------------------
# The base image docker.io/library/debian:bookworm-slim is made here, not pulled: mmdebstrap
# (minbase, merged /usr without the usrmerge package, no docs, man pages or locales, as the
# official slim image) writes build-ci-container/bookworm-slim.tar once, podman imports it under
# that name, and both are reused while present (VD_CONTAINER_REBASE=1 makes them anew), so
# contrib/Dockerfile stays the one users build. podman runs through runc (crun fails on these
# machines) with bounded ulimits; the build's apt steps and the container use the host network.
# The container serves on 127.53.0.1:53, as its unprivileged user through the binary's file
# capability, forwarding to an ldns-testns upstream on 127.0.0.1 started by the stage: traffic
# never leaves loopback. Checks: an endpoint name and a forwarded name over UDP and TCP, /ready,
# the image's HEALTHCHECK (healthy, and failing against a port nothing serves), the uid the
# daemon runs as, the runtime image at most 100 MB, a clean exit on podman stop. When
# contrib/vpcdns-snapshot exists the refresher target is built too, and its tools must run
# locked down (no capability, no-new-privileges, read-only root). Where systemd
# does not run, podman logs that it cannot add the periodic health timer: harmless, the stage
# runs the check itself. The build stage's untagged layers (label vpcdns.stage=build) are
# removed after the build so that runs do not pile them up.
container_dir=$root/build-ci-container
container_base=docker.io/library/debian:bookworm-slim
container_image=localhost/vpcdns:ci
container_refresher=localhost/vpcdns-refresher:ci
container_max_bytes=100000000
container_addr=127.53.0.1

container_podman() {
        podman --runtime runc "$@"
}

container_base_image() {
        if [[ ${VD_CONTAINER_REBASE:-0} == 1 ]]; then
                rm -f "$container_dir/bookworm-slim.tar"
                container_podman rmi -f "$container_base" >/dev/null 2>&1 || true
        fi
        if container_podman image exists "$container_base"; then
                echo "test.sh: reusing the base image $container_base"
                return 0
        fi
        mkdir -p "$container_dir"
        if [[ ! -s $container_dir/bookworm-slim.tar ]]; then
                echo "test.sh: making $container_dir/bookworm-slim.tar (mmdebstrap, about a minute)"
                mmdebstrap --variant=minbase --format=tar \
                        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
                        --dpkgopt='path-exclude=/usr/share/man/*' \
                        --dpkgopt='path-exclude=/usr/share/doc/*' \
                        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
                        --dpkgopt='path-exclude=/usr/share/locale/*' \
                        --dpkgopt='path-exclude=/usr/share/info/*' \
                        bookworm "$container_dir/bookworm-slim.tar.tmp" http://deb.debian.org/debian
                mv "$container_dir/bookworm-slim.tar.tmp" "$container_dir/bookworm-slim.tar"
        fi
        container_podman import --change 'CMD ["bash"]' "$container_dir/bookworm-slim.tar" \
                "$container_base" >/dev/null
}


# container_http_status URL: the HTTP status code of GET URL (000 when nothing answers).
container_http_status() {
        /usr/bin/python3 - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    print("000")
PY
}

# container_dig EXPECTED ARGS...: dig +short ARGS must print EXPECTED (sorted lines, one string).
container_dig() {
        local want=$1 got
        shift
        got=$(dig +time=2 +tries=2 +short "@$container_addr" -p 53 "$@" | LC_ALL=C sort | tr '\n' ' ')
        if [[ $got != "$want" ]]; then
                echo "test.sh: dig $*: expected '$want', got '$got'" >&2
                return 1
        fi
        echo "test.sh: dig $*: $got"
}

container_run_checks() {
        local work=$1 name=$2
        local upstream_port metrics_port
        upstream_port=$(free_port)
        metrics_port=$(free_port)
        # The upstream: every name it holds is one vpcdns has no local data for.
        cat >"$work/upstream.data" <<'DATA'
ENTRY_BEGIN
MATCH opcode qtype qname
ADJUST copy_id copy_query
REPLY QR RA NOERROR
SECTION QUESTION
dynamodb.us-east-1.amazonaws.com. IN A
SECTION ANSWER
dynamodb.us-east-1.amazonaws.com. 60 IN A 192.0.2.53
ENTRY_END
ENTRY_BEGIN
MATCH opcode
ADJUST copy_id copy_query
REPLY QR RA NXDOMAIN
ENTRY_END
DATA
        ldns-testns -p "$upstream_port" "$work/upstream.data" >"$work/upstream.log" 2>&1 &
        echo $! >"$work/upstream.pid"

        container_podman run -d --name "$name" --network=host \
                --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
                -e VPCDNS_HEALTH_HOST="$container_addr" -e VPCDNS_HEALTH_PORT="$metrics_port" \
                "$container_image" --config /etc/vpcdns/vpcdns.yaml \
                --listen "$container_addr:53" --metrics-listen "$container_addr:$metrics_port" \
                --upstream "127.0.0.1:$upstream_port" >/dev/null
        local ready=000 i
        for ((i = 0; i < 40; i++)); do
                ready=$(container_http_status "http://$container_addr:$metrics_port/ready")
                [[ $ready == 200 ]] && break
                if [[ $(container_podman inspect --format '{{.State.Running}}' "$name") != true ]]; then
                        break
                fi
                sleep 0.5
        done
        if [[ $ready != 200 ]]; then
                echo "test.sh: /ready answered $ready, not 200; the container's log:" >&2
                container_podman logs "$name" >&2 || true
                return 1
        fi
        echo "test.sh: /ready 200"
        container_dig "10.0.1.10 10.0.2.10 10.0.3.10 " sqs.us-east-1.amazonaws.com A
        container_dig "10.0.1.10 10.0.2.10 10.0.3.10 " +tcp sqs.us-east-1.amazonaws.com A
        container_dig "192.0.2.53 " dynamodb.us-east-1.amazonaws.com A
        container_dig "192.0.2.53 " +tcp dynamodb.us-east-1.amazonaws.com A

        local pid uid
        pid=$(container_podman inspect --format '{{.State.Pid}}' "$name")
        uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
        if [[ $uid != 10053 ]]; then
                echo "test.sh: vpcdns runs in the container as uid $uid, not 10053" >&2
                return 1
        fi
        echo "test.sh: vpcdns runs as uid $uid and serves port 53"

        # The HEALTHCHECK of the image, run by podman as the runtime would; and the same command
        # must fail when /health is not where it looks.
        container_podman healthcheck run "$name" 2>/dev/null
        local health
        health=$(container_podman inspect --format '{{.State.Health.Status}}' "$name")
        if [[ $health != healthy ]]; then
                echo "test.sh: the container's health is '$health', not healthy" >&2
                return 1
        fi
        local probe
        probe=$(container_podman image inspect --format '{{join .Config.Healthcheck.Test " "}}' \
                "$container_image")
        probe=${probe#CMD /bin/bash -c }
        if container_podman exec -e VPCDNS_HEALTH_PORT="$upstream_port" "$name" /bin/bash -c \
                "$probe" 2>/dev/null; then
                echo "test.sh: the HEALTHCHECK passed against a port that serves no /health" >&2
                return 1
        fi
        echo "test.sh: HEALTHCHECK: healthy, and fails where /health does not answer"

        local started_stop=$SECONDS code
        container_podman stop -t 30 "$name" >/dev/null
        code=$(container_podman inspect --format '{{.State.ExitCode}}' "$name")
        if [[ $code != 0 ]]; then
                echo "test.sh: vpcdns exited $code on podman stop; its log:" >&2
                container_podman logs "$name" >&2 || true
                return 1
        fi
        echo "test.sh: podman stop: exit 0 after $((SECONDS - started_stop)) s (lameduck)"
}

container_cleanup() {
        local work=$1 name=$2
        container_podman rm -f "$name" >/dev/null 2>&1 || true
        if [[ -s $work/upstream.pid ]]; then
                kill "$(<"$work/upstream.pid")" 2>/dev/null || true
        fi
        rm -rf "$work"
}

# container_build TARGET TAG: builds a target of contrib/Dockerfile, then removes the image
# TAG named before (if another) and the build stage's untagged layers.
container_build() {
        local target=$1 tag=$2 before after
        before=$(container_podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
        container_podman build --network=host --ulimit nofile=1024:1024 \
                --ulimit nproc=1024:1024 --format docker --target "$target" \
                -f "$root/contrib/Dockerfile" -t "$tag" "$root"
        after=$(container_podman image inspect --format '{{.Id}}' "$tag")
        if [[ -n $before && $before != "$after" ]]; then
                container_podman rmi "$before" >/dev/null 2>&1 || true
        fi
        container_podman image prune -f --filter label=vpcdns.stage=build >/dev/null
}

# The refresher image (when contrib/vpcdns-snapshot exists): its tools must run as its user
# with every capability dropped, no-new-privileges and a read-only root, as the Kubernetes
# examples run it.
container_refresher_checks() {
        if [[ ! -f $root/contrib/vpcdns-snapshot ]]; then
                echo "test.sh: no contrib/vpcdns-snapshot: the refresher image is not built"
                return 0
        fi
        container_build refresher "$container_refresher"
        # A whole capture inside the image, with the tests' stand-in aws first on PATH (the
        # image's python3 runs it; nothing leaves the container, which has no network).
        container_podman run --rm --network=none --ulimit nofile=1024:1024 \
                --ulimit nproc=1024:1024 --cap-drop ALL --security-opt no-new-privileges \
                --read-only --tmpfs /tmp:rw,size=64m \
                -v "$root/tests/integration/fakeaws:/fakeaws:ro" \
                -v "$root/zones/example:/data:ro" -e FAKE_AWS_DATA=/data \
                --entrypoint /bin/bash "$container_refresher" -euo pipefail -c '
                [[ $(id -u) == 10053 ]] || { echo "runs as uid $(id -u), not 10053" >&2; exit 1; }
                aws --version
                vpcdns --version
                jq --version
                mkdir /tmp/snap
                PATH=/fakeaws:$PATH vpcdns-snapshot --region us-east-1 /tmp/snap/current
                test -s /tmp/snap/current/describe-vpc-endpoints.json
                test -s /tmp/snap/current/describe-network-interfaces.json
                vpcdns --check --snapshot /tmp/snap/current --upstream 127.0.0.1:5353 >/dev/null'
        echo "test.sh: refresher image $container_refresher:" \
                "$(container_podman image inspect --format '{{.Size}}' "$container_refresher") bytes"
}

stage_container() {
        banner container "contrib/Dockerfile: podman build, run, dig, /ready, HEALTHCHECK, size"
        if ((EUID != 0)); then
                echo "test.sh: stage container needs root (podman with runc, mmdebstrap)" >&2
                return 1
        fi
        vd_deps_install_from "${VD_DEPS_CONTAINER[@]}"
        container_base_image
        container_build runtime "$container_image"
        local size
        size=$(container_podman image inspect --format '{{.Size}}' "$container_image")
        echo "test.sh: runtime image $container_image: $size bytes"
        if ((size > container_max_bytes)); then
                echo "test.sh: the runtime image is $size bytes, over $container_max_bytes" >&2
                return 1
        fi
        local work name=vpcdns-ci-$$
        work=$(mktemp -d)
        # The stage's container and upstream go away however the checks end.
        (
                trap 'container_cleanup "$work" "$name"' EXIT
                trap 'exit 130' INT
                trap 'exit 143' TERM
                container_run_checks "$work" "$name"
        )
        container_refresher_checks
}

# ---- stage package: the .deb, installed on a clean Debian 12 and started with its unit ----
# cpack -G DEB in build-ci-package (prefix /usr; only the daemon is built). The chroot is a
# tarball made once with mmdebstrap (VD_PACKAGE_CHROOT_TAR, default
# build-ci-package/bookworm.tar; remade when its package list changes), unpacked afresh each
# run so every install starts clean: Debian 12 with apt, systemd (for systemd-analyze and the
# unit conventions, not running), procps (/bin/kill, on every installed Debian), man-db (the
# unit's Documentation= man: links, which verify opens) and dig; not vpcdns's own libraries
# (apt-get must pull them from the .deb's Depends). systemd does not run in a chroot, so the
# unit is emulated: its ExecStartPre and ExecStart command lines, read from the installed
# unit, run as an unprivileged user (as DynamicUser does) with its StateDirectory made for
# that user, on a free loopback port and a closed loopback upstream (nothing leaves the
# machine).
package_tar=${VD_PACKAGE_CHROOT_TAR:-$root/build-ci-package/bookworm.tar}
package_root=$root/build-ci-package/root
package_include=(dnsutils man-db procps systemd)

package_make_tar() {
        local want="${package_include[*]}"
        if [[ -f $package_tar && -f $package_tar.packages &&
                $(<"$package_tar.packages") == "$want" ]]; then
                echo "test.sh: reusing the Debian 12 chroot tarball $package_tar"
                return 0
        fi
        echo "test.sh: creating the Debian 12 chroot tarball $package_tar (mmdebstrap, about a minute)"
        mkdir -p "$(dirname "$package_tar")"
        rm -f "$package_tar" "$package_tar.packages" "$package_tar.tmp"
        local list="${package_include[*]}"
        mmdebstrap --variant=apt --format=tar --include="${list// /,}" bookworm "$package_tar.tmp"
        mv "$package_tar.tmp" "$package_tar"
        printf '%s' "$want" >"$package_tar.packages"
}


stage_package() {
        banner package "cpack -G DEB, installed and started in a clean Debian 12 chroot"
        if ((EUID != 0)); then
                echo "test.sh: stage package needs root (mmdebstrap, mount, chroot)" >&2
                return 1
        fi
        vd_deps_install_from "${VD_DEPS_PACKAGE[@]}"
        # The install rules need only the daemon: the tests are not built for the package.
        CC=gcc cmake -S "$root" -B "$root/build-ci-package" -DVD_WERROR="$werror" \
                -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON
        cmake --build "$root/build-ci-package" -j "$jobs" --target vpcdns
        rm -f "$root"/build-ci-package/vpcdns_*.deb
        (cd "$root/build-ci-package" && cpack -G DEB)
        local debs
        mapfile -t debs < <(find "$root/build-ci-package" -maxdepth 1 -name 'vpcdns_*.deb')
        if ((${#debs[@]} != 1)); then
                echo "test.sh: expected one vpcdns_*.deb from cpack, found ${#debs[@]}" >&2
                return 1
        fi
        dpkg-deb --field "${debs[0]}" Package Version Depends

        package_make_tar
        if debian13_has_mounts "$package_root"; then
                echo "test.sh: something is mounted in $package_root: not removing it" >&2
                return 1
        fi
        rm -rf "$package_root"
        mkdir -p "$package_root"
        tar -C "$package_root" -xf "$package_tar"
        cp -L /etc/resolv.conf "$package_root/etc/resolv.conf"
        cp "${debs[0]}" "$package_root/tmp/"
        debian13_mount bind /proc "$package_root/proc"
        debian13_mount rbind /dev "$package_root/dev"
        debian13_mount bind /sys "$package_root/sys"
        local port upstream_port
        port=$(free_port)
        upstream_port=$(free_port) # nothing listens there: a closed upstream
        chroot "$package_root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
                LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PORT="$port" \
                UPSTREAM_PORT="$upstream_port" /bin/bash -euo pipefail -c "$(package_chroot_script)"
        debian13_unmount
        rm -rf "$package_root"
}

# What runs inside the chroot: prints the script (bash, set -euo pipefail by the caller).
package_chroot_script() {
        cat <<'SCRIPT'
fail() { echo "package: FAILED: $*" >&2; exit 1; }
echo "package: $(. /etc/os-release && echo "$PRETTY_NAME")"
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends /tmp/vpcdns_*.deb
dpkg-query -W -f='package: installed ${Package} ${Version}\n' vpcdns

unit=/usr/lib/systemd/system/vpcdns.service
for f in /usr/sbin/vpcdns /etc/vpcdns/vpcdns.yaml "$unit" /usr/share/man/man8/vpcdns.8.gz \
        /usr/share/man/man5/vpcdns.yaml.5.gz /usr/share/vpcdns/example/describe-vpc-endpoints.json \
        /usr/share/doc/vpcdns/README.md; do
        [[ -f $f ]] || fail "$f is not installed"
done
if dpkg-query -L vpcdns | grep -qx /usr/bin/vpcdns-snapshot; then
        [[ -x /usr/bin/vpcdns-snapshot ]] || fail "/usr/bin/vpcdns-snapshot is not executable"
fi
dpkg-query -W -f='${Conffiles}\n' vpcdns | grep -q '^ /etc/vpcdns/vpcdns.yaml ' ||
        fail "/etc/vpcdns/vpcdns.yaml is not a conffile"
[[ -L /etc/systemd/system/multi-user.target.wants/vpcdns.service ]] ||
        fail "the postinst did not enable vpcdns.service"
[[ $(stat -c %a /etc/vpcdns/vpcdns.yaml) == 644 ]] ||
        fail "/etc/vpcdns/vpcdns.yaml is not 0644: the DynamicUser cannot read it"
pages=0
while read -r page; do
        MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q '^NAME' || fail "man cannot show $page"
        pages=$((pages + 1))
done < <(dpkg-query -L vpcdns | grep '^/usr/share/man/man[1-8]/.*\.gz$')
echo "package: files in place, conffile registered, unit enabled, $pages man pages shown by man"

vpcdns --config /etc/vpcdns/vpcdns.yaml --check | tail -n 3
vpcdns --config /etc/vpcdns/vpcdns.yaml --check | grep -qx ok || fail "--check is not ok"

if command -v systemd-analyze >/dev/null; then
        units=(/usr/lib/systemd/system/vpcdns*.service /usr/lib/systemd/system/vpcdns*.socket
                /usr/lib/systemd/system/vpcdns*.timer)
        existing=()
        for u in "${units[@]}"; do
                [[ -f $u ]] && existing+=("$u")
        done
        echo "package: systemd-analyze verify ${existing[*]##*/}"
        SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "${existing[@]}"
fi

# The unit's command lines: the last ExecStartPre/ExecStart wins as systemd reads them; the
# prefixes -@:+! only change how systemd runs them. $MAINPID and the like are not used.
unit_line() {
        sed -n "s/^$1=//p" "$unit" | tail -n 1 | sed 's/^[-@:+!]*//'
}
start_pre=$(unit_line ExecStartPre)
start=$(unit_line ExecStart)
state=$(unit_line StateDirectory)
[[ -n $start ]] || fail "$unit has no ExecStart"
echo "package: ExecStartPre=$start_pre"
echo "package: ExecStart=$start"
read -r -a start_pre_argv <<<"$start_pre"
read -r -a start_argv <<<"$start"
# DynamicUser: an unprivileged user and group of its own; the state directory is its.
run_as=(setpriv --reuid=61234 --regid=61234 --clear-groups --)
if [[ -n $state ]]; then
        install -d -o 61234 -g 61234 -m 0700 "/var/lib/$state"
fi
if [[ -n $start_pre ]]; then
        "${run_as[@]}" "${start_pre_argv[@]}" >/dev/null || fail "ExecStartPre failed"
fi
log=/tmp/vpcdns.log
"${run_as[@]}" "${start_argv[@]}" --listen "127.0.0.1:$PORT" \
        --upstream "127.0.0.1:$UPSTREAM_PORT" 2>"$log" &
pid=$!
# A failure below must not leave the daemon serving the port from a deleted chroot.
trap 'kill -KILL "$pid" 2>/dev/null || true' EXIT
answer=
# Up to 30 s for the first answer. Only address lines count: dig prints its errors (";; ...
# connection refused" before vpcdns has bound) on stdout, which once ended this wait at once.
for _ in $(seq 1 300); do
        answer=$(dig @127.0.0.1 -p "$PORT" +short +time=1 +tries=1 \
                sqs.us-east-1.amazonaws.com A 2>/dev/null |
                grep -E '^[0-9]+(\.[0-9]+){3}$' | sort | tr '\n' ' ') || true
        [[ -n $answer ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "vpcdns exited at start"; }
        sleep 0.1
done
echo "package: sqs.us-east-1.amazonaws.com A: $answer"
if [[ $answer != "10.0.1.10 10.0.2.10 10.0.3.10 " ]]; then
        echo "package: vpcdns's log:" >&2
        cat "$log" >&2
        # Where a silent daemon waits, for whoever reads the failure.
        for t in /proc/"$pid"/task/*; do
                echo "package: thread ${t##*/}: $(cat "$t/comm" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null) $(grep ^State "$t/status" 2>/dev/null)" >&2
        done
        fail "expected the example's three sqs addresses"
fi
answer=$(dig @127.0.0.1 -p "$PORT" +short +time=2 +tries=1 db.corp.example.internal A)
echo "package: db.corp.example.internal A: $answer"
[[ $answer == 10.0.3.20 ]] || { cat "$log" >&2; fail "expected the zone file's 10.0.3.20"; }
kill -TERM "$pid"
rc=0
for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        fail "vpcdns did not stop within 10 s of SIGTERM"
fi
wait "$pid" || rc=$?
trap - EXIT
[[ $rc == 0 ]] || { cat "$log" >&2; fail "vpcdns exited with $rc after SIGTERM"; }
echo "package: started from the unit's command line, answered, stopped cleanly"

# An administrator's disable survives an upgrade (here a reinstall of the same .deb).
systemctl disable vpcdns.service 2>/dev/null
dpkg -i /tmp/vpcdns_*.deb >/dev/null
[[ ! -e /etc/systemd/system/multi-user.target.wants/vpcdns.service ]] ||
        fail "reinstalling enabled vpcdns.service again after systemctl disable"
echo "package: systemctl disable kept across a reinstall"
# remove keeps the config, purge takes everything.
apt-get remove -y -q vpcdns >/dev/null
[[ ! -e /usr/sbin/vpcdns && -f /etc/vpcdns/vpcdns.yaml ]] ||
        fail "apt-get remove should delete /usr/sbin/vpcdns and keep /etc/vpcdns/vpcdns.yaml"
apt-get purge -y -q vpcdns >/dev/null
for f in /usr/sbin/vpcdns /etc/vpcdns /etc/systemd/system/multi-user.target.wants/vpcdns.service \
        /etc/systemd/system/vpcdns.service "/var/lib/${state:-vpcdns}"; do
        [[ ! -e $f ]] || fail "$f is still there after apt-get purge"
done
echo "package: purged without a trace"
SCRIPT
}

current=deps
if [[ " ${stages[*]} " =~ \ (clang|asan|tsan|valgrind|fuzz)\  ]]; then
        vd_deps_install_checks
else
        vd_deps_install
fi
durations=()
for s in "${stages[@]}"; do
        "stage_$s"
        durations+=("$s $((SECONDS - stage_started)) s")
        printf '=== test.sh: stage %s passed in %d s ===\n' "$s" $((SECONDS - stage_started))
done
printf '\n=== test.sh: all %d stages passed in %d s: %s ===\n' "${#stages[@]}" \
        $((SECONDS - started)) "$(IFS=,; echo "${durations[*]}" | sed 's/,/, /g')"

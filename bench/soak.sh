#!/usr/bin/env bash
# bench/soak.sh [SECONDS] — the soak test: the ASan+UBSan daemon under 50 % of its
# maximum rate for SECONDS (default 600) with a mix of endpoint, zone-file, forwarded and
# NXDOMAIN queries (dnsperf), malformed UDP packets and hostile TCP clients
# (bench/soak_mix.py), and an upstream (NSD) that is stopped for ~10 s every ~60 s.
# Passes when: vpcdns exits 0 on SIGTERM, its stderr holds no sanitizer report, its resident
# memory after warm-up stays flat (last sample <= 1.1 x the sample at WARMUP s), every valid
# query gets an answer (SERVFAIL while the upstream is down counts as one), and forwarding
# comes back after each outage. Prints a summary table; exits non-zero when a criterion fails.
# Beside RSS it samples the UDP receive-buffer drops (host-wide and on vpcdns's listening
# sockets), which tell whether a lost query ever reached the daemon.
#
# Everything runs on 127.0.0.1; every loop is bounded in time. dnsperf gets 4 MiB socket
# buffers (-b) so that the load generator is not where answers are lost. Logs stay in the work
# directory it prints (SOAK_DIR to choose it). Tunables (environment): SOAK_WARMUP (60),
# SOAK_OUTAGE_EVERY (60), SOAK_OUTAGE_FOR (10), SOAK_LOAD_PERCENT (50), SOAK_MALFORMED_RATE
# (50 packets/s), SOAK_BUILD_DIR (build-soak), SOAK_SKIP_BUILD (1: use the existing binary).
set -euo pipefail

# The whole script is one block: bash parses it before running, so editing this file during
# a run cannot change the run.
{
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-600}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 30 || seconds > 86400)); then
        echo "usage: $0 [SECONDS]   (30..86400, default 600)" >&2
        exit 2
fi
warmup=${SOAK_WARMUP:-60}
((warmup * 2 > seconds)) && warmup=$((seconds / 2))
outage_every=${SOAK_OUTAGE_EVERY:-60}
outage_for=${SOAK_OUTAGE_FOR:-10}
load_percent=${SOAK_LOAD_PERCENT:-50}
malformed_rate=${SOAK_MALFORMED_RATE:-50}
build=${SOAK_BUILD_DIR:-$root/build-soak}
py=/usr/bin/python3
mix="$py $root/bench/soak_mix.py"
origin=soak.example
work=${SOAK_DIR:-$(mktemp -d /tmp/vpcdns-soak.XXXXXX)}
mkdir -p "$work"

log() { printf '[soak %s] %s\n' "$(date +%T)" "$*"; }
# nsd_write_conf, nsd_start, stop_pid (functions only)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

# ---------------------------------------------------------------- tools and build
if ! command -v dnsperf >/dev/null; then
        log "installing dnsperf"
        apt-get update -qq && apt-get install -y -qq dnsperf >/dev/null
fi
for tool in nsd dig; do
        command -v $tool >/dev/null || [[ -x /usr/sbin/$tool ]] || {
                echo "$tool is missing (apt-get install nsd dnsutils)" >&2
                exit 2
        }
done
nsd_bin=$(command -v nsd || echo /usr/sbin/nsd)

if [[ ${SOAK_SKIP_BUILD:-0} != 1 ]]; then
        log "building the ASan+UBSan daemon in $build"
        cmake -S "$root" -B "$build" -DVD_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
                >"$work/build.log" 2>&1
        cmake --build "$build" -j2 --target vpcdns >>"$work/build.log" 2>&1 ||
                { tail -30 "$work/build.log" >&2; exit 2; }
fi
vpcdns=$build/vpcdns
[[ -x $vpcdns ]] || { echo "$vpcdns does not exist" >&2; exit 2; }

# Leaks are reports too; UBSan prints a stack and stops at the first finding. ASan's
# quarantine of freed memory (256 MB by default) would fill for minutes and look like a leak:
# 32 MB fills within the warm-up and still catches a use soon after a free.
asan_default=detect_leaks=1:halt_on_error=1:strict_string_checks=1:quarantine_size_mb=32
export ASAN_OPTIONS=${ASAN_OPTIONS:-$asan_default}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# ---------------------------------------------------------------- processes
# On any exit, end the children of this shell that still run (jobs lists only those).
# shellcheck disable=SC2317
cleanup() {
        local p
        for p in $(jobs -p); do
                kill "$p" 2>/dev/null || true
        done
}
trap cleanup EXIT

nsd_pid=
# NSD is stopped and started again for each outage: nsd_start (bench/lib.sh) waits for it.
nsd_up() { nsd_start "$nsd_bin" "$work" "$nsd_port" "h1.$origin." || exit 1; }
nsd_stop() { stop_pid "$nsd_pid"; }

# "SECONDS STATUSES": seconds until vpcdns answers a forwarded name with NOERROR again (at
# most 15, else "never"), and how many of the tries before got SERVFAIL or no answer in 1 s.
forward_recovery() {
        local t0=$SECONDS servfail=0 silent=0 st
        while ((SECONDS - t0 < 15)); do
                st=$(dig +time=1 +tries=1 -p "$port" @127.0.0.1 "h2.$origin" A 2>/dev/null |
                        grep -oE 'status: [A-Z]+' || true)
                case $st in
                "status: NOERROR")
                        echo "$((SECONDS - t0)) servfail=$servfail,silent=$silent"
                        return
                        ;;
                "status: SERVFAIL") servfail=$((servfail + 1)) ;;
                *) silent=$((silent + 1)) ;;
                esac
                sleep 0.2
        done
        echo "never servfail=$servfail,silent=$silent"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# UDP datagrams the kernel dropped for a full receive buffer, host-wide (other programs too).
rcvbuf_errors() { awk '/^Udp:/ && $6 ~ /^[0-9]+$/ {print $6}' /proc/net/snmp; }
# The same, counted by the kernel on vpcdns's own listening sockets on 127.0.0.1:$port.
listener_drops() {
        awk -v p="$(printf '%04X' "$port")" \
                'NR > 1 && $2 == "0100007F:" p { n += $NF } END { print n + 0 }' /proc/net/udp
}
# "SECONDS RSS_KB HOST_DROPS LISTENER_DROPS" since the start of the soak.
sample() {
        printf '%d %s %d %d\n' "$1" "$(rss_kb "$vd_pid")" $(($(rcvbuf_errors) - rcvbuf0)) \
                $(($(listener_drops) - ldrops0)) >>"$work/rss.tsv"
}

# ---------------------------------------------------------------- data and configuration
nsd_port=$($mix port)
port=$($mix port)
while [[ $port == "$nsd_port" ]]; do port=$($mix port); done
$mix upstream-zone "$origin" "$work/$origin.zone"
nsd_write_conf "$work" "$nsd_port" "$origin"
cat >"$work/vpcdns.yaml" <<EOF
# written by bench/soak.sh
workers: 2
log_level: info
EOF
$mix queries --vpcdns "$vpcdns" --snapshot "$root/zones/example" \
        --zone "$root/zones/example/corp.zone" --origin "$origin" \
        --mix "$work/queries-mix.txt" --local "$work/queries-local.txt"
probe=$(awk 'NR == 1 {print $1}' "$work/queries-local.txt")

# ---------------------------------------------------------------- start
nsd_up
log "NSD on 127.0.0.1:$nsd_port (zone $origin)"
"$vpcdns" --config "$work/vpcdns.yaml" --listen "127.0.0.1:$port" \
        --upstream "127.0.0.1:$nsd_port" --snapshot "$root/zones/example" \
        --zone "$root/zones/example/corp.zone" </dev/null >"$work/vpcdns.stdout" \
        2>"$work/vpcdns.stderr" &
vd_pid=$!
for ((i = 0; i < 100; i++)); do
        dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 "$probe" A 2>/dev/null |
                grep -q . && break
        kill -0 "$vd_pid" 2>/dev/null || { cat "$work/vpcdns.stderr" >&2; exit 1; }
        sleep 0.1
done
log "vpcdns (pid $vd_pid, ASan+UBSan, 2 workers) on 127.0.0.1:$port; work dir $work"

# ---------------------------------------------------------------- maximum rate
log "measuring the maximum rate for 10 s (local endpoint names)"
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries-local.txt" -l 10 -c 8 -T 2 -q 500 -t 2 -b 4096 \
        >"$work/dnsperf-max.out" 2>&1 || true
max_qps=$(awk '/Queries per second:/ {printf "%d", $4}' "$work/dnsperf-max.out")
if [[ -z $max_qps ]] || ((max_qps < 10)); then
        echo "dnsperf measured no rate; see $work/dnsperf-max.out" >&2
        exit 1
fi
offered=$((max_qps * load_percent / 100))
log "maximum $max_qps qps; offering $offered qps ($load_percent %) for $seconds s"
sleep 2 # let the queue of the overload run drain

# ---------------------------------------------------------------- soak
rss0=$(rss_kb "$vd_pid")
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries-mix.txt" -l "$seconds" -Q "$offered" \
        -c 4 -T 2 -q 2000 -t 5 -b 4096 -S 60 >"$work/dnsperf-soak.out" 2>&1 &
perf_pid=$!
$mix malformed --port "$port" --seconds "$seconds" --rate "$malformed_rate" --probe "$probe" \
        --out "$work/malformed.json" >"$work/malformed.log" 2>&1 &
mal_pid=$!

: >"$work/outages.txt"
rcvbuf0=$(rcvbuf_errors)
ldrops0=$(listener_drops)
printf '0 %s 0 0\n' "$rss0" >"$work/rss.tsv"
start=$SECONDS
next_rss=10
next_outage=$((outage_every - outage_for > 0 ? outage_every - outage_for : outage_every))
nsd_down_at=
while :; do
        t=$((SECONDS - start))
        ((t >= seconds)) && break
        kill -0 "$vd_pid" 2>/dev/null || { log "vpcdns exited at t=$t s"; break; }
        if ((t >= next_rss)); then
                sample "$t"
                next_rss=$((next_rss + 10))
        fi
        if [[ -z $nsd_down_at ]] && ((t >= next_outage && t + outage_for < seconds)); then
                nsd_stop
                nsd_down_at=$t
                log "t=$t s: upstream stopped"
        elif [[ -n $nsd_down_at ]] && ((t >= nsd_down_at + outage_for)); then
                nsd_up
                up=$((SECONDS - start))
                rec=$(forward_recovery)
                printf '%d %d up %s\n' "$nsd_down_at" "$up" "$rec" >>"$work/outages.txt"
                log "t=$up s: upstream back; forwarded name answered NOERROR after: $rec"
                next_outage=$((nsd_down_at + outage_every))
                nsd_down_at=
        fi
        sleep 1
done
# A daemon that died early ends the run; otherwise wait for the senders (bounded).
for ((i = 0; i < 30; i++)); do
        kill -0 "$perf_pid" 2>/dev/null || kill -0 "$mal_pid" 2>/dev/null || break
        sleep 1
done
[[ -n $nsd_down_at ]] && nsd_up
sample $((SECONDS - start))
kill "$perf_pid" "$mal_pid" 2>/dev/null || true
wait "$perf_pid" 2>/dev/null || true
wait "$mal_pid" 2>/dev/null || true
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- stop and judge
log "SIGTERM to vpcdns"
kill -TERM "$vd_pid" 2>/dev/null || true
for ((i = 0; i < 300; i++)); do # LeakSanitizer runs at exit: allow 30 s
        kill -0 "$vd_pid" 2>/dev/null || break
        sleep 0.1
done
if kill -0 "$vd_pid" 2>/dev/null; then
        log "vpcdns still running 30 s after SIGTERM: SIGKILL"
        kill -KILL "$vd_pid"
fi
status=0
wait "$vd_pid" || status=$?
nsd_stop
sanitizer=$(grep -cE '^==[0-9]+==(ERROR|WARNING): |runtime error: |^SUMMARY: [A-Za-z]+Sanitizer' \
        "$work/vpcdns.stderr" || true)

cat >"$work/run.env" <<EOF
seconds=$seconds
warmup=$warmup
max_qps=$max_qps
offered_qps=$offered
exit_status=$status
sanitizer_reports=$sanitizer
loadavg=$loadavg
EOF
rc=0
$mix report --dir "$work" | tee "$work/summary.txt" || rc=$?
if ((sanitizer > 0)); then
        echo "--- sanitizer lines of $work/vpcdns.stderr ---"
        grep -E -A12 '^==[0-9]+==(ERROR|WARNING): |runtime error: ' "$work/vpcdns.stderr" | head -60
fi
exit $rc
}

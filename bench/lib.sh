# shellcheck shell=bash
# bench/lib.sh — shell functions shared by the benchmarks (sourced, not run). It only defines
# functions: sourcing it starts nothing. The upstream of bench/compare.sh, bench/soak.sh and
# bench/callgrind.sh is NSD on 127.0.0.1 serving one zone; these functions write its
# configuration, start it and wait for its first answer, and stop it. bench/qlog_cost.sh and
# bench/reload.sh check their binaries and wait for vpcdns's first answer with the last two.
#
# Globals: nsd_start sets nsd_pid (the callers' cleanup traps kill it); nothing else is read or
# written outside the arguments.

# nsd_write_conf DIR PORT ORIGIN: writes DIR/nsd.conf, NSD listening on 127.0.0.1@PORT only and
# serving the zone ORIGIN from DIR/ORIGIN.zone, with every file it keeps (pid, log, zone list,
# xfrd state) in DIR.
nsd_write_conf() {
        local dir=$1 port=$2 origin=$3
        cat >"$dir/nsd.conf" <<EOF
# written by bench/lib.sh
server:
    ip-address: 127.0.0.1@$port
    port: $port
    username: ""
    chroot: ""
    zonesdir: "$dir"
    pidfile: "$dir/nsd.pid"
    database: ""
    zonelistfile: "$dir/zone.list"
    xfrdfile: "$dir/xfrd.state"
    xfrdir: "$dir"
    logfile: "$dir/nsd.log"
    verbosity: 1
    hide-version: yes
    server-count: 1
    # NSD's response rate limiting (200 qps by default) would drop compare.sh's warm-up
    # queries and soak.sh's forwarded NXDOMAINs (which all count as one name): the upstream
    # must not be the bottleneck.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "$origin"
    zonefile: "$origin.zone"
EOF
}

# nsd_start NSD_BIN DIR PORT NAME [CPUS]: starts NSD_BIN on DIR/nsd.conf in the background
# (pinned with taskset -c CPUS when given; stderr appended to DIR/nsd.stderr), sets nsd_pid,
# and waits until 127.0.0.1:PORT answers NAME type A with an address: 10 s at most, less when
# NSD exits. Returns 1, after printing the end of NSD's stderr and log, when no answer came.
nsd_start() {
        local nsd_bin=$1 dir=$2 port=$3 name=$4 cpus=${5:-}
        local pin=()
        [[ -n $cpus ]] && pin=(taskset -c "$cpus")
        "${pin[@]}" "$nsd_bin" -d -c "$dir/nsd.conf" </dev/null >/dev/null 2>>"$dir/nsd.stderr" &
        nsd_pid=$!
        # dnspython, with -I: no script or working directory on sys.path. Exit 0 on the first
        # NOERROR answer holding an A record, 2 when NSD has exited, 1 after 10 s.
        /usr/bin/python3 -I - "$port" "$name" "$nsd_pid" <<'PY' && return 0
import os, sys, time
import dns.exception, dns.message, dns.query, dns.rcode, dns.rdatatype
port, name, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
deadline = time.monotonic() + 10.0
while time.monotonic() < deadline:
    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port,
                              timeout=0.5)
        if reply.rcode() == dns.rcode.NOERROR and any(
                rrset.rdtype == dns.rdatatype.A for rrset in reply.answer):
            sys.exit(0)
    except (dns.exception.Timeout, OSError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(2)
    time.sleep(0.1)
sys.exit(1)
PY
        echo "NSD (pid $nsd_pid) did not answer $name on 127.0.0.1:$port; its stderr and log:" >&2
        tail -n 20 "$dir/nsd.stderr" "$dir/nsd.log" >&2 2>/dev/null || true
        return 1
}

# stop_pid PID: SIGTERM to the child PID, SIGKILL when it still runs 5 s later, then reaps it.
# An empty or finished PID is fine.
stop_pid() {
        local pid=$1 i
        [[ -n $pid ]] || return 0
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
}

# need_executables FILE...: exits 2, naming the first FILE that is not executable (not built).
need_executables() {
        local f
        for f in "$@"; do
                [[ -x $f ]] || { echo "$f is missing: build first" >&2; exit 2; }
        done
}

# wait_answering PORT TRIES: returns once the server on 127.0.0.1:PORT answers a question (dig,
# any rcode), trying TRIES times 0.1 s apart; returns 1 when it never did.
wait_answering() {
        local port=$1 tries=$2 i
        for ((i = 0; i < tries; i++)); do
                dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 nothing.invalid >/dev/null 2>&1 &&
                        return 0
                sleep 0.1
        done
        return 1
}

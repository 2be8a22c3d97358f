#!/usr/bin/env bash
# bench/scale.sh --out DIR [--endpoints N] [--build DIR] — start-up time and resident memory
# of vpcdns, Unbound, dnsmasq and Knot Resolver holding the names of one large AWS snapshot
# (by default 10,000 endpoints x 3 ENIs, about 40,000 names).
#
# 1. Builds vpcdns (Release) in the build directory when it is not there yet (default
#    build-release/), generates the snapshot with bench/gen-snapshot.py, dumps it with
#    `vpcdns --dump` and turns the dump into each peer's data with bench/peers.py (Unbound
#    local-data, dnsmasq host-record/cname, a hosts file for kresd's hints module).
# 2. Starts each server three times, pinned with `taskset -c 1`, on a free 127.0.0.1 port and
#    with no reachable upstream (vpcdns and Unbound forward to the dead 127.0.0.1:1, dnsmasq
#    has no-resolv, kresd forwards to 127.0.0.1@1 without priming). From the spawn, one UDP
#    query for the snapshot's last-dumped name goes out every 5 ms until the right A set
#    comes back (at most 30 s): start-up to first answer. 1 s after that answer, VmRSS and
#    VmHWM are read from /proc/PID/status. The median of the three starts is reported.
# 3. Writes DIR/scale.json ({endpoints, enis, names, query, servers: {NAME: {startup_s,
#    rss_kb, hwm_kb, runs} or {error}}}) and prints a markdown table with the vpcdns/Unbound
#    ratios. A server that fails gets an "error" string and the run goes on.
#
# Traffic: 127.0.0.1 only. Time: about a minute; every wait is bounded and the whole run
# stops measuring after 150 s. Every server started is killed on exit. SCALE_KEEP_WORK=1
# keeps the work directory (snapshot, dump, configs, each start's stderr) and prints it.
set -euo pipefail

{
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=/usr/bin/python3
out=""
endpoints=10000
enis=3
build=$root/build-release

usage() {
        echo "usage: $0 --out DIR [--endpoints N] [--enis N] [--build DIR]" >&2
        exit 2
}
while (($#)); do
        case $1 in
        --out) out=${2:-}; shift 2 || usage ;;
        --endpoints) endpoints=${2:-}; shift 2 || usage ;;
        --enis) enis=${2:-}; shift 2 || usage ;;
        --build) build=${2:-}; shift 2 || usage ;;
        -h | --help) usage ;;
        *) echo "scale.sh: unknown argument $1" >&2; usage ;;
        esac
done
[[ -n $out ]] || usage
if ! [[ $endpoints =~ ^[1-9][0-9]*$ && $enis =~ ^[1-9][0-9]*$ ]]; then
        echo "scale.sh: --endpoints and --enis take a positive number" >&2
        exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
[[ $build == /* ]] || build=$PWD/$build

log() { printf '[scale %s] %s\n' "$(date +%T)" "$*" >&2; }

work=$(mktemp -d /tmp/vpcdns-scale.XXXXXX)
measure_pid=""
# shellcheck disable=SC2317
cleanup() {
        # the measuring process kills its servers on SIGTERM; then anything left of ours
        if [[ -n $measure_pid ]]; then
                kill "$measure_pid" 2>/dev/null || true
                wait "$measure_pid" 2>/dev/null || true
        fi
        local p
        for p in $(jobs -p); do
                kill "$p" 2>/dev/null || true
        done
        if [[ ${SCALE_KEEP_WORK:-0} == 1 ]]; then
                log "work directory kept: $work"
        else
                rm -rf "$work"
        fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build and data
vpcdns=$build/vpcdns
if [[ ! -x $vpcdns ]]; then
        log "building vpcdns (Release) in $build"
        if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release &&
                cmake --build "$build" -j2 --target vpcdns; } >"$work/build.log" 2>&1; then
                tail -30 "$work/build.log" >&2
                exit 2
        fi
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == Release ]] || log "warning: $build is a '${build_type:-unknown}' build, not Release"

snap=$work/snapshot
log "generating a snapshot of $endpoints endpoints x $enis ENIs"
$py "$root/bench/gen-snapshot.py" "$snap" --endpoints "$endpoints" --enis "$enis"
"$vpcdns" --snapshot "$snap" --upstream 127.0.0.1:1 --check >"$work/check.txt" 2>"$work/check.err" ||
        { cat "$work/check.err" >&2; exit 2; }
names=$(sed -n 's/^names: *//p' "$work/check.txt")
log "vpcdns --check: $names names, $(sed -n 's/^records: *//p' "$work/check.txt") records"
"$vpcdns" --snapshot "$snap" --upstream 127.0.0.1:1 --dump >"$work/dump.txt" 2>"$work/dump.err" ||
        { cat "$work/dump.err" >&2; exit 2; }
$py "$root/bench/peers.py" --dump "$work/dump.txt" --unbound "$work/unbound-local.conf" \
        --dnsmasq "$work/dnsmasq-records.conf" --kresd-hosts "$work/kresd.hosts"

# ---------------------------------------------------------------- measure
log "measuring start-up and memory (3 starts per server)"
cat >"$work/measure.py" <<'PYEOF'
"""Starts each server 3 times, times spawn -> first correct answer, reads VmRSS/VmHWM."""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

import dns.message
import dns.rcode
import dns.rdatatype

work, out, vpcdns, snap, endpoints, enis, names, bench_dir = sys.argv[1:9]
sys.path.insert(0, bench_dir)
import peers  # noqa: E402  bench/peers.py: the peers' configs
STARTS = 3
POLL_S = 0.005
STARTUP_LIMIT_S = 30.0
RSS_DELAY_S = 1.0
DEADLINE = time.monotonic() + 150.0
children = []


def stop_all(*_):
    for p in children:
        if p.poll() is None:
            p.kill()
    sys.exit(130)


signal.signal(signal.SIGTERM, stop_all)
signal.signal(signal.SIGINT, stop_all)


def pick_query():
    """The last non-wildcard owner with A records in the dump, and its A set."""
    owner, addrs = None, {}
    with open(os.path.join(work, "dump.txt")) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 5 and fields[3] == "A" and not fields[0].startswith("*."):
                addrs.setdefault(fields[0], set()).add(fields[4])
                owner = fields[0]
    if owner is None:
        sys.exit("scale: no A record in the dump")
    return owner, addrs[owner]


def free_port():
    import random
    for _ in range(200):
        port = random.randrange(20000, 60000)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind(("127.0.0.1", port))
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError("no free port")


def config(server, port, rundir):
    """argv of one server listening on 127.0.0.1:port, its files in rundir."""
    if server == "vpcdns":
        return [vpcdns, "--workers", "1", "--listen", "127.0.0.1:%d" % port, "--snapshot", snap,
                "--upstream", "127.0.0.1:1", "--log-level", "warn"]
    # The peers' configs come from bench/peers.py: no --upstream there, so Unbound and kresd
    # forward to the dead 127.0.0.1@1 (kresd without priming), dnsmasq has no server.
    local = {"unbound": "unbound-local.conf", "dnsmasq": "dnsmasq-records.conf",
             "kresd": "kresd.hosts"}[server]
    conf = peers.write_config(server, port, rundir, os.path.join(work, local))
    if server == "unbound":
        return ["unbound", "-d", "-c", conf]
    if server == "dnsmasq":
        return ["dnsmasq", "-k", "-C", conf]
    if server == "kresd":
        return ["kresd", "-n", "-c", conf, rundir]
    raise ValueError(server)


def proc_status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def answered(sock, qname, want):
    """One query, wait at most POLL_S for its answer; True when it is right."""
    q = dns.message.make_query(qname, dns.rdatatype.A)
    q.flags |= 0x0100  # RD
    sock.settimeout(POLL_S)
    try:
        sock.send(q.to_wire())
        end = time.monotonic() + POLL_S
        while True:
            data = sock.recv(4096)
            try:
                r = dns.message.from_wire(data)
            except Exception:
                continue
            if r.id != q.id:
                if time.monotonic() > end:
                    return False
                continue
            got = set()
            for rrset in r.answer:
                if rrset.rdtype == dns.rdatatype.A:
                    got |= {rd.address for rd in rrset}
            return r.rcode() == dns.rcode.NOERROR and got == want
    except (socket.timeout, ConnectionRefusedError, OSError):
        return False


def one_start(server, qname, want, index):
    rundir = os.path.join(work, "%s-%d" % (server, index))
    os.makedirs(rundir, exist_ok=True)
    port = free_port()
    argv = ["taskset", "-c", "1"] + config(server, port, rundir)
    errlog = open(os.path.join(rundir, "stderr"), "wb")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog,
                            cwd=rundir)
    children.append(proc)
    try:
        limit = t0 + STARTUP_LIMIT_S
        while True:
            now = time.monotonic()
            if answered(sock, qname, want):
                startup = time.monotonic() - t0
                break
            if proc.poll() is not None:
                raise RuntimeError("exited with status %d before answering" % proc.returncode)
            if now > limit:
                raise RuntimeError("no correct answer within %.0f s" % STARTUP_LIMIT_S)
            rest = POLL_S - (time.monotonic() - now)
            if rest > 0:
                time.sleep(rest)
        time.sleep(RSS_DELAY_S)
        if proc.poll() is not None:
            raise RuntimeError("exited with status %d after answering" % proc.returncode)
        st = proc_status(proc.pid)
        return startup, st.get("VmRSS"), st.get("VmHWM")
    finally:
        sock.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        errlog.close()


def last_lines(server):
    try:
        with open(os.path.join(work, "%s-0" % server, "stderr"), "rb") as f:
            text = f.read().decode(errors="replace").strip().splitlines()
        return (": " + " | ".join(text[-3:])) if text else ""
    except OSError:
        return ""


def measure(server, qname, want):
    runs = []
    for i in range(STARTS):
        if time.monotonic() > DEADLINE:
            if runs:
                break
            return {"error": "not run: the 150 s budget of scale.sh was spent"}
        try:
            runs.append(one_start(server, qname, want, i))
        except FileNotFoundError as err:
            return {"error": "%s is not installed" % err.filename}
        except RuntimeError as err:
            return {"error": "start %d: %s%s" % (i + 1, err, last_lines(server))[:400]}
        print("[scale] %s start %d: %.3f s, VmRSS %d kB" % (server, i + 1, runs[-1][0],
                                                           runs[-1][1]), file=sys.stderr)
    return {
        "startup_s": round(statistics.median(r[0] for r in runs), 4),
        "rss_kb": int(statistics.median(r[1] for r in runs)),
        "hwm_kb": int(statistics.median(r[2] for r in runs)),
        "runs": [{"startup_s": round(r[0], 4), "rss_kb": r[1], "hwm_kb": r[2]} for r in runs],
    }


def main():
    qname, want = pick_query()
    result = {"endpoints": int(endpoints), "enis": int(enis), "names": int(names),
              "query": {"name": qname, "type": "A", "addresses": sorted(want)},
              "servers": {}}
    for server in ("vpcdns", "unbound", "dnsmasq", "kresd"):
        result["servers"][server] = measure(server, qname, want)
    v, u = result["servers"]["vpcdns"], result["servers"]["unbound"]
    if "error" not in v and "error" not in u:
        result["ratios_vs_unbound"] = {
            "startup": round(v["startup_s"] / u["startup_s"], 3),
            "rss": round(v["rss_kb"] / u["rss_kb"], 3),
        }
    with open(os.path.join(out, "scale.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    print("\nStart-up and memory: %d endpoints x %d ENIs, %d names (query %s)\n"
          % (result["endpoints"], result["enis"], result["names"], qname))
    print("| server | start-up to first answer (s) | VmRSS (MB) | VmHWM (MB) | vs Unbound |")
    print("|---|---|---|---|---|")
    for server, r in result["servers"].items():
        if "error" in r:
            print("| %s | error: %s | | | |" % (server, r["error"].replace("|", "/")))
            continue
        ratio = ""
        if "error" not in u:
            ratio = "start-up %.2f x, RSS %.2f x" % (r["startup_s"] / u["startup_s"],
                                                    r["rss_kb"] / u["rss_kb"])
        print("| %s | %.3f | %.1f | %.1f | %s |" % (server, r["startup_s"], r["rss_kb"] / 1024,
                                                   r["hwm_kb"] / 1024, ratio))
    if "ratios_vs_unbound" in result:
        ratios = result["ratios_vs_unbound"]
        print("\nTargets: RSS %.2f x Unbound (<= 0.7: %s), start-up %.2f x Unbound "
              "(<= 0.6: %s)" % (ratios["rss"], "met" if ratios["rss"] <= 0.7 else "missed",
                                ratios["startup"],
                                "met" if ratios["startup"] <= 0.6 else "missed"))


main()
PYEOF
$py "$work/measure.py" "$work" "$out" "$vpcdns" "$snap" "$endpoints" "$enis" "$names" \
        "$root/bench" &
measure_pid=$!
rc=0
wait "$measure_pid" || rc=$?
measure_pid=""
exit $rc
}

#!/usr/bin/env bash
# bench/compare.sh [--quick] [--out DIR] [--snapshot DIR] [--rate QPS] [--workers N]
#                  [--vpcdns BIN] [--servers LIST] — vpcdns against Unbound, dnsmasq and Knot
# Resolver. From one AWS snapshot it generates equivalent configurations
# for the three peers (bench/peers.py), starts an upstream (NSD on loopback), then runs each
# server in turn pinned to core 1 while vpcdns-bench drives it from core 0, for two
# scenarios: "local" (endpoint names the server holds itself, type A) and "cached" (names
# forwarded to NSD once, then answered from the cache). Per server and scenario it measures
# the server's CPU time per answered query (user and system, from /proc/PID/stat) and the
# latency percentiles at 100k qps offered (--rate), the maximum rate (200 queries outstanding) and
# the resident memory. For vpcdns the cached run is made once more while `perf stat` counts its
# futex calls (when perf is installed): how often its threads wait for one another on the
# shared structures. vpcdns alone then gets 50 % of its maximum rate for 60 s, where no
# query may be lost. The kernel floor (vpcdns-null-responder, bench/null-responder.c: a
# do-nothing recvmmsg/sendmmsg echo) gets the local open-loop run only, like a server: its
# CPU per query is the kernel's UDP work alone. Last, bench/scale.sh (start-up and memory
# with a 10,000-endpoint snapshot) runs when it exists. Writes DIR/compare.md (tables,
# targets met or missed, the floor), DIR/latency.png (bench/plot.gp) and the raw JSON of
# every run; DIR defaults to bench/results. A full run with the default DIR also refreshes
# the results block in bench/README.md and the targets block in README.md.
#
# Every server listens on 127.0.0.1 only and forwards only to the NSD on 127.0.0.1; every
# run is bounded (vpcdns-bench -l, and timeout around it). A full run takes about 7 minutes
# with bench/scale.sh; --quick (2 s runs, 10 s loss run) about 2. Progress goes to stderr.
#
# For A/B runs of vpcdns alone: --workers N runs vpcdns with N worker threads (default 1,
# pinned to core 1; with 2 or more, cores 0-1, which it then shares with the load generator:
# compare CPU per answer, not rates); --vpcdns BIN measures another vpcdns binary (an older
# build) in the same harness; --servers "vpcdns" skips the peers. Runs with any of these
# never refresh the READMEs.
set -euo pipefail

# The whole script is one block: bash parses it before running, so editing this file during
# a run cannot change the run.
{
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Python with -I: no script directory or working directory on sys.path (a stray json.py or
# bisect.py in /tmp would shadow the standard library), no user site packages.
py() { /usr/bin/python3 -I "$@"; }
quick=0
out=$root/bench/results
out_given=0
snapshot=$root/zones/example
offered_rate=100000
vpcdns_workers=1
vpcdns_given=
servers_given=
usage() {
        echo "usage: $0 [--quick] [--out DIR] [--snapshot DIR] [--rate QPS] [--workers N]" \
                "[--vpcdns BIN] [--servers LIST]" >&2
        exit 2
}
while (($#)); do
        case $1 in
        --quick) quick=1 ;;
        --out)
                (($# >= 2)) || usage
                out=$2
                out_given=1
                shift
                ;;
        --snapshot)
                (($# >= 2)) || usage
                snapshot=$2
                shift
                ;;
        --rate)
                if (($# < 2)) || ! [[ $2 =~ ^[1-9][0-9]{2,6}$ ]]; then usage; fi
                offered_rate=$2
                shift
                ;;
        --workers)
                if (($# < 2)) || ! [[ $2 =~ ^[1-9][0-9]?$ ]]; then usage; fi
                vpcdns_workers=$2
                shift
                ;;
        --vpcdns)
                (($# >= 2)) || usage
                vpcdns_given=$(realpath "$2")
                shift
                ;;
        --servers)
                (($# >= 2)) || usage
                servers_given=$2
                shift
                ;;
        -h | --help) usage ;;
        *) usage ;;
        esac
        shift
done
command_line="bench/compare.sh"
((quick)) && command_line+=" --quick"
((out_given)) && command_line+=" --out $out"
[[ $snapshot != "$root/zones/example" ]] && command_line+=" --snapshot $snapshot"
((offered_rate != 100000)) && command_line+=" --rate $offered_rate"
((vpcdns_workers != 1)) && command_line+=" --workers $vpcdns_workers"
[[ -n $vpcdns_given ]] && command_line+=" --vpcdns $vpcdns_given"
[[ -n $servers_given ]] && command_line+=" --servers '$servers_given'"
ab_run=0
[[ $vpcdns_workers != 1 || -n $vpcdns_given$servers_given ]] && ab_run=1

if ((quick)); then
        run_seconds=2
        rate_repeats=1
        loss_seconds=10
else
        run_seconds=5
        rate_repeats=3
        loss_seconds=60
fi
outstanding=200
build=$root/build-compare
servers=(vpcdns unbound dnsmasq kresd)
if [[ -n $servers_given ]]; then
        read -r -a servers <<<"$servers_given"
        for s in "${servers[@]}"; do
                [[ " vpcdns unbound dnsmasq kresd " == *" $s "* ]] || usage
        done
fi
vpcdns_cores=1
((vpcdns_workers > 1)) && vpcdns_cores=0-1

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
        log "error: $*"
        exit 1
}

# ---------------------------------------------------------------- tools and build
# shellcheck source=contrib/deps.sh
source "$root/contrib/deps.sh"
# nsd_write_conf, nsd_start, stop_pid (functions only)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
# What the build needs (VD_DEPS) and the peers; apt-get runs only when one is missing.
vd_deps_install_from "${VD_DEPS[@]}" unbound dnsmasq-base knot-resolver gnuplot-nox linux-perf >&2

mkdir -p "$out"
out=$(cd "$out" && pwd)
[[ -r $snapshot/describe-vpc-endpoints.json ]] || die "$snapshot holds no AWS snapshot"
snapshot=$(cd "$snapshot" && pwd)
vpcdns=${vpcdns_given:-$build/vpcdns}
bench=$build/vpcdns-bench
null_responder=$build/vpcdns-null-responder
nsd_bin=$(command -v nsd || echo /usr/sbin/nsd)
unbound_bin=$(command -v unbound || echo /usr/sbin/unbound)
dnsmasq_bin=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
kresd_bin=$(command -v kresd || echo /usr/sbin/kresd)

# ---------------------------------------------------------------- processes
work=$(mktemp -d /tmp/vpcdns-compare.XXXXXX)
server_pid=
nsd_pid=
bench_pid=
# shellcheck disable=SC2317
# On exit: SIGTERM to every process this script started (NSD then ends its own children),
# SIGKILL to those still there after 3 s, then the work directory goes.
cleanup() {
        local p i alive
        for p in $bench_pid $server_pid $nsd_pid $(jobs -p); do
                kill -TERM "$p" 2>/dev/null || true
        done
        for ((i = 0; i < 30; i++)); do
                alive=
                for p in $bench_pid $server_pid $nsd_pid $(jobs -p); do
                        kill -0 "$p" 2>/dev/null && alive=1
                done
                [[ -z $alive ]] && break
                sleep 0.1
        done
        for p in $bench_pid $server_pid $nsd_pid $(jobs -p); do
                kill -KILL "$p" 2>/dev/null || true
        done
        rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building vpcdns, vpcdns-bench and vpcdns-null-responder (Release) in $build"
{ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$build" -j2 --target vpcdns vpcdns-bench vpcdns-null-responder; } \
        >"$work/build.log" 2>&1 ||
        { tail -30 "$work/build.log" >&2; die "the build failed"; }
[[ -x $bench ]] || die "$bench does not exist: the load generator is needed"

# A port over 20000 that is free for UDP and TCP on 127.0.0.1.
free_port() {
        py - <<'PY'
import random, socket
for _ in range(200):
    port = random.randint(20001, 60999)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", port))
            u.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
else:
    raise SystemExit("no free port")
PY
}

# The checks, warm-up and report, in Python (dnspython), written to the work directory.
cat >"$work/helper.py" <<'PY'
"""compare.sh's helper: answer checks, cache warm-up, the report. Talks to 127.0.0.1 only."""
import glob
import json
import math
import os
import sys
import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


def ask(port, name, rtype="A", tries=3):
    """(rcode text, sorted addresses of the answer's A/AAAA records) or ("TIMEOUT", [])."""
    query = dns.message.make_query(name, rtype)
    query.flags |= dns.flags.RD
    for _ in range(tries):
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=1.0)
        except dns.exception.Timeout:
            continue
        want = dns.rdatatype.from_text(rtype)
        addresses = sorted(r.to_text() for rrset in reply.answer if rrset.rdtype == want
                           for r in rrset)
        return dns.rcode.to_text(reply.rcode()), addresses
    return "TIMEOUT", []


def cmd_record(port, out, names):
    """Writes vpcdns's answers for names to out (JSON)."""
    answers = {n: ask(port, n) for n in names}
    with open(out, "w") as f:
        json.dump(answers, f, indent=1)
    bad = [n for n, (rcode, addrs) in answers.items() if rcode != "NOERROR" or not addrs]
    if bad:
        print(f"vpcdns gives no address for {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def cmd_check(port, ref):
    """Exit 0 when the server on port answers as vpcdns did; else prints what differs."""
    with open(ref) as f:
        answers = json.load(f)
    diffs = []
    for name, want in answers.items():
        got = list(ask(port, name))
        if got != want:
            diffs.append(f"{name}: {got[0]} {','.join(got[1]) or '-'} "
                         f"(vpcdns: {want[0]} {','.join(want[1]) or '-'})")
    if diffs:
        print("; ".join(diffs[:3]) + (f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""))
        return 1
    return 0


def cmd_warm(port, qfile):
    """Asks every name of a query file once; prints how many got NOERROR."""
    names = [line.split()[0] for line in open(qfile) if line.strip()]
    ok = sum(1 for n in names if ask(port, n)[0] == "NOERROR")
    print(ok)
    return 0 if ok == len(names) else 1


def cmd_wait(port, name, seconds):
    """Exit 0 once the server on port answers name (any rcode), 1 after seconds."""
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        if ask(port, name, tries=1)[0] != "TIMEOUT":
            return 0
        time.sleep(0.05)
    return 1


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def run_figures(outdir, server, scenario):
    """The figures of one server and scenario, from its run files and meta file."""
    rate = load(f"{outdir}/{server}-{scenario}-rate.json") or {}
    peak = load(f"{outdir}/{server}-{scenario}-max.json") or {}
    cpu = rate.get("server_cpu") or {}
    lat = rate.get("latency_us") or {}
    meta = load(f"{outdir}/{server}-meta.json") or {}
    rss = meta.get(f"rss_kb_{scenario}")
    return {
        "status": meta.get("status", "not run"),
        "user": cpu.get("user_us_per_query"),
        "total": cpu.get("total_us_per_query"),
        "p50": lat.get("p50"),
        "p99": lat.get("p99"),
        "p999": lat.get("p99_9"),
        "qps": rate.get("qps"),
        "sent": rate.get("sent"),
        "lost": rate.get("lost"),
        "max": peak.get("qps"),
        "rss_mb": rss / 1024 if rss else None,
    }


NAMES = {"vpcdns": "vpcdns", "unbound": "Unbound", "dnsmasq": "dnsmasq",
         "kresd": "Knot Resolver"}
# The kernel floor (bench/null-responder.c): local scenario, open-loop run only.
FLOOR_NAME = "kernel floor (do-nothing recvmmsg/sendmmsg responder)"


def scale_figures(outdir):
    """{server: {"startup_s", "rss_mb", "error"}} from bench/scale.sh's DIR/scale.json:
    {endpoints, enis, names, query, servers: {NAME: {startup_s, rss_kb, ...} or {error}}}."""
    data = load(f"{outdir}/scale.json") or {}
    found = {}
    for server, entry in (data.get("servers") or {}).items():
        if not isinstance(entry, dict):
            continue
        rss = entry.get("rss_kb")
        found[server] = {"startup_s": entry.get("startup_s"),
                         "rss_mb": rss / 1024 if isinstance(rss, (int, float)) else None,
                         "error": entry.get("error")}
    if found:
        found["_names"] = data.get("names")
        found["_endpoints"] = data.get("endpoints")
        found["_enis"] = data.get("enis")
    return found


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def floor_note(figures, rate):
    """The lines under the targets table that set total CPU against the kernel floor: what
    the do-nothing responder costs next to Unbound, and each server's cost above it."""
    floor = figures.get(("floor", "local"))
    mine = figures[("vpcdns", "local")]["total"]
    theirs = figures[("unbound", "local")]["total"]
    if not floor or floor["total"] is None or mine is None or theirs is None:
        return []
    base = floor["total"]
    share = ratio(base, theirs)
    text = (f"Kernel floor, local, {rate} qps: the do-nothing recvmmsg/sendmmsg responder "
            f"spends {fmt(base, 2)} µs of CPU per query ({fmt(floor['user'], 2)} µs user), "
            f"{fmt(share, 3)} × Unbound's total. ")
    budget = 0.8 * theirs - base
    if budget > 0:
        text += (f"The 0.8 × total-CPU target leaves vpcdns {fmt(budget, 2)} µs/q above the "
                 f"floor. ")
    else:
        text += ("The 0.8 × total-CPU target is below the floor in this run: it asks for "
                 "less CPU per query than the do-nothing responder spends. ")
    above_mine, above_theirs = mine - base, theirs - base
    if above_mine < 0 or above_theirs <= 0:
        # The floor is a measurement too: at a fixed rate, a server that wakes up less often
        # (more datagrams per batch) can spend less kernel time per query than the echo.
        text += (f"vpcdns's total is {fmt(-above_mine, 2)} µs/q below the floor and "
                 f"Unbound's {fmt(above_theirs, 2)} µs/q above it in this run: "
                 if above_mine < 0 else
                 f"vpcdns's own cost above the floor: {fmt(above_mine, 2)} µs/q, while "
                 f"Unbound's total is {fmt(-above_theirs, 2)} µs/q below it in this run: ")
        text += ("the floor is a measurement too (a server that wakes up less often makes "
                 "fewer system calls per query), so compare repeated runs.")
    else:
        text += (f"vpcdns's own cost above the floor: {fmt(above_mine, 2)} µs/q vs "
                 f"Unbound's {fmt(above_theirs, 2)} µs/q "
                 f"({fmt(ratio(above_mine, above_theirs), 3)} ×).")
    return ["", text]


def cmd_readmes(table, bench_readme, top_readme):
    """Replaces the block between <!-- compare:begin --> and <!-- compare:end --> of
    bench/README.md with compare.md (without its title), and that of the top-level README.md
    with the machine line, the targets (with the floor note) and the plot. A file without
    both markers is left alone."""
    report = open(table).read()
    body = report.split("\n", 2)[2]  # without the title
    bench = (body.replace("](latency.png)", "](results/latency.png)")
             .replace("\n## ", "\n#### "))
    machine = next(line for line in report.split("\n") if line.startswith("Measured "))
    targets = report[report.index("\n## Targets\n") + len("\n## Targets\n"):]
    targets = targets.replace("](latency.png)", "](bench/results/latency.png)")
    top = machine + "\n\n" + targets.strip("\n")
    changed = []
    for path, block in ((bench_readme, bench), (top_readme, top)):
        text = open(path).read()
        begin, end = "<!-- compare:begin -->\n", "<!-- compare:end -->"
        if begin not in text or end not in text.partition(begin)[2]:
            continue
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        with open(path, "w") as f:
            f.write(head + begin + block.strip("\n") + "\n" + end + tail)
        changed.append(path)
    print(" ".join(changed))
    return 0


def cmd_report(outdir, env_file, titles):
    env = {}
    with open(env_file) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            env[key] = value
    rate = env["rate"]
    lines = ["# vpcdns compared with Unbound, dnsmasq and Knot Resolver", ""]
    lines += [f"Measured {env['date']} on {env['nproc']} cores ({env['cpu']}), "
              f"Linux {env['kernel']}, with `{env['command']}`. Load average (1 min) "
              f"{env['load_start']} before the run, {env['load_end']} after it.", ""]
    lines += ["| server | version |", "|---|---|"]
    for s in NAMES:
        lines.append(f"| {NAMES[s]} | {env.get('version_' + s, '?')} |")
    lines.append(f"| NSD (upstream) | {env.get('version_nsd', '?')} |")
    lines += ["", f"Each server runs alone, pinned to core 1 (`taskset -c 1`), one worker or "
              f"thread; `vpcdns-bench` drives it from core 0 over UDP on 127.0.0.1. "
              f"CPU is the server's utime and stime from /proc/PID/stat over a measured "
              f"{env['run_seconds']} s (after 1 s of warm-up), divided by the answers; "
              f"the {rate} qps open-loop run is made {env['rate_repeats']} times and each "
              f"figure is the median of the runs (the loss is their sum; the plot shows the "
              f"run whose p99 is the median); \"max QPS\" is a closed loop with "
              f"{env['outstanding']} queries "
              f"outstanding; RSS is VmRSS after the runs. The kernel floor is "
              f"`bench/null-responder.c`, run the same way for the local {rate} qps run "
              f"only: it sets QR in each query and sends it back (recvmmsg/sendmmsg, 32 per "
              f"batch), so its CPU time is the kernel's UDP work alone.", ""]
    figures = {}
    for scenario, title in (("local", "Local endpoint answers (the snapshot's names with an "
                             "A record, type A)"),
                            ("cached", "Cached forwarded answers (1000 names of an NSD zone "
                             "on loopback, each asked once before)")):
        lines += [f"## {title}", "",
                  "| server | CPU user µs/q | CPU total µs/q | p50 µs | p99 µs | p99.9 µs "
                  f"| lost at {rate} | max QPS | RSS MB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in NAMES:
            f = run_figures(outdir, s, scenario)
            figures[(s, scenario)] = f
            if f["status"] != "ok":
                lines.append(f"| {NAMES[s]} | {f['status']} |||||||| ")
                continue
            lost = "–" if f["lost"] is None else f"{f['lost']:,} of {f['sent']:,}"
            lines.append(f"| {NAMES[s]} | {fmt(f['user'], 2)} | {fmt(f['total'], 2)} "
                         f"| {fmt(f['p50'], 0)} | {fmt(f['p99'], 0)} | {fmt(f['p999'], 0)} "
                         f"| {lost} | {fmt(f['max'], 0)} | {fmt(f['rss_mb'])} |")
        floor = run_figures(outdir, "floor", scenario)
        if scenario == "local" and floor["status"] == "ok":
            figures[("floor", scenario)] = floor
            lost = "–" if floor["lost"] is None else f"{floor['lost']:,} of {floor['sent']:,}"
            # No maximum, cache or memory figure means anything for a server that echoes.
            lines.append(f"| {FLOOR_NAME} | {fmt(floor['user'], 2)} | {fmt(floor['total'], 2)} "
                         f"| {fmt(floor['p50'], 0)} | {fmt(floor['p99'], 0)} "
                         f"| {fmt(floor['p999'], 0)} | {lost} | – | – |")
        elif scenario == "local" and floor["status"] != "not run":
            lines.append(f"| {FLOOR_NAME} | {floor['status']} |||||||| ")
        lines.append("")
        if scenario == "cached":
            lines += futex_note(outdir, rate)

    loss = load(f"{outdir}/vpcdns-local-loss.json") or {}
    scale = scale_figures(outdir)
    if scale:
        lines += [f"## Start-up and memory with {fmt(scale['_endpoints'], 0)} endpoints × "
                  f"{scale['_enis']} ENIs ({fmt(scale['_names'], 0)} names, bench/scale.sh)",
                  "", "Start-up: from the spawn to the first right answer (median of three); "
                  "RSS: VmRSS 1 s after it.", "",
                  "| server | start-up to first answer s | RSS MB |", "|---|---:|---:|"]
        for s in NAMES:
            if s in scale and scale[s]["error"]:
                lines.append(f"| {NAMES[s]} | {scale[s]['error']} | |")
            elif s in scale:
                lines.append(f"| {NAMES[s]} | {fmt(scale[s]['startup_s'], 2)} "
                             f"| {fmt(scale[s]['rss_mb'])} |")
        lines.append("")

    def vd(s, k):
        return figures[("vpcdns", s)][k]

    def ub(s, k):
        return figures[("unbound", s)][k]

    targets = [
        (f"user CPU per local answer, {rate} qps", vd("local", "user"), ub("local", "user"),
         "≤ 0.25 ×", lambda r: r <= 0.25, 2),
        (f"user CPU per cached answer, {rate} qps", vd("cached", "user"), ub("cached", "user"),
         "≤ 0.4 ×", lambda r: r <= 0.4, 2),
        (f"total CPU per local answer, {rate} qps", vd("local", "total"), ub("local", "total"),
         "≤ 0.8 ×", lambda r: r <= 0.8, 2),
        (f"p99 latency, local, {rate} qps (µs)", vd("local", "p99"), ub("local", "p99"),
         "≤ 1 ×", lambda r: r <= 1.0, 0),
        (f"p99 latency, cached, {rate} qps (µs)", vd("cached", "p99"), ub("cached", "p99"),
         "≤ 1 ×", lambda r: r <= 1.0, 0),
        ("maximum QPS, one worker, local", vd("local", "max"), ub("local", "max"),
         "≥ 1.3 ×", lambda r: r >= 1.3, 0),
        ("RSS with the large snapshot (MB)", scale.get("vpcdns", {}).get("rss_mb"),
         scale.get("unbound", {}).get("rss_mb"), "≤ 0.7 ×", lambda r: r <= 0.7, 1),
        ("start-up to first answer, large snapshot (s)",
         scale.get("vpcdns", {}).get("startup_s"), scale.get("unbound", {}).get("startup_s"),
         "≤ 0.6 ×", lambda r: r <= 0.6, 2),
    ]
    lines += ["## Targets", "", "| target | vpcdns | Unbound | vpcdns / Unbound | goal | |",
              "|---|---:|---:|---:|---|---|"]
    for label, mine, theirs, goal, test, digits in targets:
        r = ratio(mine, theirs)
        verdict = "–" if r is None else ("met" if test(r) else "**missed**")
        lines.append(f"| {label} | {fmt(mine, digits)} | {fmt(theirs, digits)} "
                     f"| {fmt(r, 3)} | {goal} | {verdict} |")
    lost = loss.get("lost")
    verdict = "–" if lost is None else ("met" if lost == 0 and not loss.get("timeouts")
                                        else "**missed**")
    loss_rate = fmt(loss.get("rate_offered"), 0)
    lines.append(f"| queries lost at 50 % of the maximum ({loss_rate} qps) for "
                 f"{env['loss_seconds']} s | {fmt(lost, 0)} of {fmt(loss.get('sent'), 0)} "
                 f"| | | 0 | {verdict} |")
    lines += floor_note(figures, rate)
    lines += ["", f"![latency at {rate} qps](latency.png)", ""]
    with open(f"{outdir}/compare.md", "w") as f:
        f.write("\n".join(lines))
    # The plot's legend: each server's name, with its loss when it dropped queries.
    with open(titles, "w") as f:
        for (s, scenario), fig in figures.items():
            title = NAMES[s] if s in NAMES else "kernel floor (do-nothing responder)"
            if fig["lost"] and fig["sent"]:
                title += f" ({100 * fig['lost'] / fig['sent']:.1f} % lost)"
            f.write(f'title_{s}_{scenario} = "{title}"\n')
    return 0


def cmd_median(target, best_hist, hist_out, files):
    """Folds repeated runs of one open-loop measurement into target: the median of every
    rate, CPU and latency figure, the sums of the counts; copies the histogram of the run
    whose p99 is the median to hist_out (best_hist: the runs' histograms, FILE-N.hist)."""
    runs = [(path, load(path)) for path in files]
    runs = [(path, d) for path, d in runs if d]
    if not runs:
        return 1

    def med(values):
        values = sorted(v for v in values if v is not None)
        return values[len(values) // 2] if values else None

    merged = dict(runs[0][1])
    for key in ("sent", "answered", "lost", "timeouts", "mismatched", "late", "truncated"):
        merged[key] = sum(d.get(key) or 0 for _, d in runs)
    merged["duration_s"] = sum(d.get("duration_s") or 0 for _, d in runs)
    merged["qps"] = med([d.get("qps") for _, d in runs])
    for group in ("latency_us", "server_cpu"):
        if all(isinstance(d.get(group), dict) for _, d in runs):
            merged[group] = {k: med([d[group].get(k) for _, d in runs])
                             for k in runs[0][1][group]}
    merged["runs"] = [os.path.basename(path) for path, _ in runs]
    with open(target, "w") as f:
        json.dump(merged, f, indent=1)
    p99 = merged.get("latency_us", {}).get("p99")
    for path, d in runs:
        if (d.get("latency_us") or {}).get("p99") == p99:
            n = path.rsplit("-", 1)[1].split(".")[0]
            try:
                with open(f"{best_hist}-{n}.hist") as src, open(hist_out, "w") as dst:
                    dst.write(src.read())
            except OSError:
                pass
            break
    return 0


def cmd_futex(perf_csv, bench_json, seconds, workers, out):
    """From perf stat's CSV (futex calls over the run plus its warm-up second) and the run's
    JSON, writes out: the calls, the answers in the same window and the calls per 1000."""
    calls = None
    try:
        for line in open(perf_csv):
            fields = line.strip().split(",")
            if len(fields) > 2 and fields[2].endswith("sys_enter_futex"):
                calls = int(fields[0]) if fields[0].isdigit() else None
    except OSError:
        pass
    run = load(bench_json) or {}
    if calls is None or not run.get("qps"):
        return 1
    answers = run["qps"] * (int(seconds) + 1)  # perf counts the warm-up second too
    json.dump({"futex_calls": calls, "answers": round(answers), "workers": int(workers),
               "seconds": int(seconds) + 1, "per_1000": 1000.0 * calls / answers},
              open(out, "w"), indent=1)
    return 0


def futex_note(outdir, rate):
    """The lock-wait line of the report, when compare.sh could measure it."""
    f = load(f"{outdir}/vpcdns-futex.json")
    if not f:
        return []
    return [f"Lock waits (vpcdns, {f['workers']} worker{'s' if f['workers'] != 1 else ''}, "
            f"cached answers at {rate} qps): {f['futex_calls']:,} futex calls in "
            f"{f['seconds']} s and about {f['answers']:,} answers, "
            f"{fmt(f['per_1000'], 3)} per 1000 answers (`perf stat -e "
            f"syscalls:sys_enter_futex`). A pthread mutex enters the kernel only to wait for "
            f"another thread or to wake one, so this counts how often threads met on the "
            f"shared cache, in-flight registry and per-client tables.", ""]


def main(argv):
    cmd = argv[0]
    if cmd == "futex":
        return cmd_futex(argv[1], argv[2], argv[3], argv[4], argv[5])
    if cmd == "median":
        return cmd_median(argv[1], argv[2], argv[3], argv[4:])
    if cmd == "record":
        return cmd_record(int(argv[1]), argv[2], argv[3:])
    if cmd == "check":
        return cmd_check(int(argv[1]), argv[2])
    if cmd == "warm":
        return cmd_warm(int(argv[1]), argv[2])
    if cmd == "wait":
        return cmd_wait(int(argv[1]), argv[2], argv[3])
    if cmd == "report":
        return cmd_report(argv[1], argv[2], argv[3])
    if cmd == "readmes":
        return cmd_readmes(argv[1], argv[2], argv[3])
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
PY
helper() { py "$work/helper.py" "$@"; }

# ---------------------------------------------------------------- data
load_start=$(cut -d' ' -f1 /proc/loadavg)
log "work directory $work; results in $out"
rm -f "$out"/*.json "$out"/*.hist "$out"/compare.md "$out"/latency.png
"$vpcdns" --snapshot "$snapshot" --dump >"$work/dump.txt" ||
        die "vpcdns --snapshot $snapshot --dump failed"
py "$root/bench/peers.py" --dump "$work/dump.txt" --unbound "$work/unbound-local.conf" \
        --dnsmasq "$work/dnsmasq-local.conf" --kresd-hosts "$work/kresd.hosts" \
        --names "$work/local.txt" || die "bench/peers.py failed"

origin=bench.example
{
        # shellcheck disable=SC2016 # $ORIGIN and $TTL are zone-file directives
        printf '$ORIGIN %s.\n$TTL 86400\n' "$origin"
        printf '@ IN SOA ns.%s. hostmaster.%s. 1 7200 900 1209600 86400\n' "$origin" "$origin"
        printf '@ IN NS ns.%s.\nns IN A 127.0.0.1\n' "$origin"
        for ((i = 1; i <= 1000; i++)); do
                printf 'h%d IN A 10.%d.%d.%d\n' "$i" $((i / 65536)) $((i / 256 % 256)) $((i % 256))
        done
} >"$work/$origin.zone"
for ((i = 1; i <= 1000; i++)); do printf 'h%d.%s. A\n' "$i" "$origin"; done >"$work/cached.txt"
probe=$(awk 'NR == 1 {print $1}' "$work/local.txt")
check_names=$(awk 'NR <= 5 {print $1}' "$work/local.txt")
check_names+=" $(awk 'END {print $1}' "$work/local.txt") h1.$origin. h777.$origin."
log "$(wc -l <"$work/local.txt") local names from $snapshot, 1000 names in $origin."

# ---------------------------------------------------------------- upstream
nsd_port=$(free_port)
port=$(free_port)
while [[ $port == "$nsd_port" ]]; do port=$(free_port); done
nsd_write_conf "$work" "$nsd_port" "$origin"
# NSD runs on core 0 with the load generator: it only sees the warm-up queries.
nsd_start "$nsd_bin" "$work" "$nsd_port" "h1.$origin." 0 || die "NSD did not answer"
log "NSD (pid $nsd_pid) on 127.0.0.1:$nsd_port serves $origin."

# ---------------------------------------------------------------- servers
# Unbound, dnsmasq and kresd as forwarding caches to NSD, configured by bench/peers.py:
# Unbound with 256 MB of messages, 512 MB of RRsets and the receive buffer vpcdns asks for
# (4 MB), kresd with a 256 MB cache, dnsmasq with its 10,000 entries.
write_configs() {
        local pair server
        for pair in unbound:unbound-local.conf dnsmasq:dnsmasq-local.conf kresd:kresd.hosts; do
                server=${pair%%:*}
                py "$root/bench/peers.py" config "$server" --port "$port" --dir "$work" \
                        --local "$work/${pair#*:}" --upstream "127.0.0.1@$nsd_port" \
                        --cache-mb 256 --rcvbuf-mb 4 --quiet || die "bench/peers.py config failed"
        done
        mkdir -p "$work/kresd-run"
}

start_server() {
        local name=$1
        # exec: the background subshell becomes the server, so $! is the server's pid.
        case $name in
        vpcdns)
                exec taskset -c "$vpcdns_cores" "$vpcdns" --workers "$vpcdns_workers" --listen "127.0.0.1:$port" \
                        --snapshot "$snapshot" --upstream "127.0.0.1:$nsd_port" \
                        --allow 127.0.0.0/8 --log-level warn ;;
        unbound) exec taskset -c 1 "$unbound_bin" -d -c "$work/unbound.conf" ;;
        dnsmasq) exec taskset -c 1 "$dnsmasq_bin" -k -C "$work/dnsmasq.conf" ;;
        kresd) exec taskset -c 1 "$kresd_bin" -n -c "$work/kresd.conf" "$work/kresd-run" ;;
        floor) exec taskset -c 1 "$null_responder" "127.0.0.1:$port" ;;
        esac </dev/null >"$work/$name.stdout" 2>"$work/$name.stderr" &
        server_pid=$!
}

stop_server() {
        stop_pid "$server_pid"
        server_pid=
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# run_bench SERVER SCENARIO KIND [ARGS...]: one vpcdns-bench run, JSON to the out directory.
run_bench() {
        local server=$1 scenario=$2 kind=$3
        shift 3
        local seconds=$run_seconds
        [[ $kind == loss ]] && seconds=$loss_seconds
        local qfile=$work/$scenario.txt
        timeout $((seconds + 15)) "$bench" -s "127.0.0.1:$port" -d "$qfile" -l "$seconds" \
                -w 1 --cpu 0 --pid "$server_pid" --label "$server $scenario $kind" -q \
                --json "$out/$server-$scenario-$kind.json" "$@" \
                >"$work/bench-$server-$scenario-$kind.out" 2>&1 &
        bench_pid=$!
        local status=0
        wait "$bench_pid" || status=$?
        bench_pid=
        if ((status != 0)); then
                log "  vpcdns-bench failed ($status) for $server $scenario $kind:"
                tail -5 "$work/bench-$server-$scenario-$kind.out" >&2
        fi
        return 0
}

# run_rate SERVER SCENARIO: the open-loop run at the offered rate, rate_repeats times; the
# figures kept (SERVER-SCENARIO-rate.json) are the medians, so that one scheduling hiccup of a
# shared machine does not decide a verdict; the runs' own JSON stay beside it.
run_rate() {
        local server=$1 scenario=$2 r files=()
        for ((r = 1; r <= rate_repeats; r++)); do
                run_bench "$server" "$scenario" "rate-$r" -r "$offered_rate" \
                        --histogram "$work/$server-$scenario-$r.hist"
                files+=("$out/$server-$scenario-rate-$r.json")
        done
        helper median "$out/$server-$scenario-rate.json" "$work/$server-$scenario" \
                "$out/$server-$scenario.hist" "${files[@]}" ||
                log "  no result for $server $scenario at $offered_rate qps"
}

# measure SERVER SCENARIO: the open-loop runs at the offered rate, then the closed-loop maximum.
measure() {
        local server=$1 scenario=$2
        log "$server: $scenario, ${offered_rate} qps offered, $rate_repeats x $run_seconds s"
        run_rate "$server" "$scenario"
        log "  $(summary "$out/$server-$scenario-rate.json")"
        log "$server: $scenario, closed loop, $outstanding outstanding"
        run_bench "$server" "$scenario" max -c "$outstanding"
        log "  $(summary "$out/$server-$scenario-max.json")"
}

# measure_futex: the cached scenario once more at the offered rate while `perf stat` counts
# vpcdns's futex calls (DIR/vpcdns-futex.json). A pthread mutex enters the kernel only to wait
# for another thread or to wake one, so the count per answer shows whether the workers
# serialise on the shared cache, in-flight registry and per-client tables. Skipped, with a
# line in the log, without perf or without access to the syscall tracepoints.
measure_futex() {
        if ! command -v perf >/dev/null; then
                log "  perf is not installed: lock waits not measured"
                return 0
        fi
        log "vpcdns: cached, ${offered_rate} qps for $run_seconds s, futex calls counted by perf"
        perf stat -x, -e syscalls:sys_enter_futex -p "$server_pid" -o "$work/futex.csv" \
                -- sleep $((run_seconds + 1)) 2>"$work/perf.stderr" &
        local perf_pid=$! status=0
        run_bench vpcdns cached futex -r "$offered_rate"
        wait "$perf_pid" || status=$?
        if ((status != 0)) || ! helper futex "$work/futex.csv" "$out/vpcdns-cached-futex.json" \
                "$run_seconds" "$vpcdns_workers" "$out/vpcdns-futex.json"; then
                log "  perf stat could not count futex calls: $(tail -1 "$work/perf.stderr")"
                return 0
        fi
        log "  $(py -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d futex calls, %.3f per 1000 answers" % (d["futex_calls"], d["per_1000"]))' "$out/vpcdns-futex.json")"
}

# summary FILE: "qps=… p99=…µs lost=… cpu=…µs/q" of one run's JSON, for the progress lines.
summary() {
        py -c '
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("no result"); sys.exit()
cpu = d.get("server_cpu") or {}
lat = d.get("latency_us") or {}
print("qps=%.0f p99=%sus lost=%s cpu=%sus/q" % (d.get("qps") or 0, lat.get("p99"),
      d.get("lost"), cpu.get("total_us_per_query")))' "$1"
}

meta() { # meta SERVER STATUS [KEY=VALUE...]: the server's meta JSON
        local server=$1 status=$2
        shift 2
        py -c '
import json, sys
d = {"server": sys.argv[1], "status": sys.argv[2]}
for kv in sys.argv[4:]:
    k, _, v = kv.partition("=")
    d[k] = int(v) if v.isdigit() else v
json.dump(d, open(sys.argv[3], "w"), indent=1)' "$server" "$status" "$out/$server-meta.json" "$@"
}

write_configs
max_local=0
for server in "${servers[@]}"; do
        log "$server: starting on 127.0.0.1:$port, pinned to core 1"
        start_server "$server"
        if ! helper wait "$port" "$probe" 15 || ! kill -0 "$server_pid" 2>/dev/null; then
                log "$server did not start; see below"
                tail -5 "$work/$server.stderr" >&2 || true
                meta "$server" "did not start"
                stop_server
                continue
        fi
        if [[ $server == vpcdns ]]; then
                # shellcheck disable=SC2086
                helper record "$port" "$work/reference.json" $check_names ||
                        die "vpcdns does not answer its own names"
        elif ! diff=$(helper check "$port" "$work/reference.json"); then
                log "$server disagrees with vpcdns: $diff"
                meta "$server" "disagrees with vpcdns: ${diff//|/\\|}"
                stop_server
                continue
        fi
        log "$server (pid $server_pid) gives vpcdns's answers"

        measure "$server" local
        rss_local=$(rss_kb "$server_pid")

        if [[ $server == vpcdns ]]; then
                max_local=$(py -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["qps"]))' \
                        "$out/vpcdns-local-max.json" 2>/dev/null || echo 0)
        fi

        if ! warmed=$(helper warm "$port" "$work/cached.txt"); then
                log "  warm-up: only $warmed of 1000 names answered NOERROR"
        fi
        measure "$server" cached
        rss_cached=$(rss_kb "$server_pid")
        [[ $server == vpcdns ]] && measure_futex

        if [[ $server == vpcdns ]] && ((max_local > 0 && !ab_run)); then
                log "vpcdns: local, $((max_local / 2)) qps (50 % of its maximum) for $loss_seconds s"
                run_bench vpcdns local loss -r $((max_local / 2))
                log "  $(summary "$out/vpcdns-local-loss.json")"
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
                log "$server exited during the runs"
                meta "$server" "exited during the runs"
                server_pid=
                continue
        fi
        meta "$server" ok rss_kb_local="$rss_local" rss_kb_cached="$rss_cached"
        stop_server
done

# ---------------------------------------------------------------- kernel floor
# The do-nothing responder, run like a server for the local open-loop run only: its CPU time
# per query is the kernel's UDP work alone. It echoes, so there is no answer to check, and
# no maximum, cache or memory figure would mean anything.
if ((ab_run)); then
        log "A/B run: no kernel floor, loss run or start-up figures"
else
        log "kernel floor: the do-nothing responder on 127.0.0.1:$port, pinned to core 1"
        start_server floor
        if ! helper wait "$port" "$probe" 15 || ! kill -0 "$server_pid" 2>/dev/null; then
                log "the do-nothing responder did not start; see below"
                tail -5 "$work/floor.stderr" >&2 || true
                meta floor "did not start"
                stop_server
        else
                log "kernel floor: local, ${offered_rate} qps offered, $rate_repeats x $run_seconds s"
                run_rate floor local
                log "  $(summary "$out/floor-local-rate.json")"
                if kill -0 "$server_pid" 2>/dev/null; then
                        meta floor ok
                        stop_server
                else
                        log "the do-nothing responder exited during the run"
                        meta floor "exited during the run"
                        server_pid=
                fi
        fi
fi

# ---------------------------------------------------------------- scale
if ((ab_run)); then
        :
elif [[ -x $root/bench/scale.sh ]]; then
        log "bench/scale.sh --out $out --build $build (about a minute)"
        timeout 300 "$root/bench/scale.sh" --out "$out" --build "$build" >"$work/scale.out" 2>&1 ||
                { log "bench/scale.sh failed:"; tail -10 "$work/scale.out" >&2; }
else
        log "bench/scale.sh does not exist: no start-up and memory figures"
fi

# ---------------------------------------------------------------- report
first_line() { "$@" 2>&1 | head -1 || true; }
rate_text() { ((offered_rate % 1000)) && echo "$offered_rate" || echo "$((offered_rate / 1000))k"; }
cat >"$work/env" <<EOF
date=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$load_start
load_end=$(cut -d' ' -f1 /proc/loadavg)
nproc=$(nproc)
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
kernel=$(uname -r)
command=$command_line
run_seconds=$run_seconds
rate_repeats=$rate_repeats
loss_seconds=$loss_seconds
rate=$(rate_text)
outstanding=$outstanding
version_vpcdns=$(first_line "$vpcdns" --version)
version_unbound=$(first_line "$unbound_bin" -V | sed 's/^Version/Unbound/')
version_dnsmasq=$(first_line "$dnsmasq_bin" --version | sed 's/  Copyright.*//')
version_kresd=$(first_line "$kresd_bin" --version)
version_nsd=$(first_line "$nsd_bin" -v)
EOF
helper report "$out" "$work/env" "$work/titles.gp"

plot_local='' plot_cached=''
for server in "${servers[@]}"; do
        [[ -s $out/$server-local.hist ]] && plot_local+="$server "
        [[ -s $out/$server-cached.hist ]] && plot_cached+="$server "
done
[[ -s $out/floor-local.hist ]] && plot_local+="floor "
if [[ -n $plot_local$plot_cached ]]; then
        gnuplot -e "outdir='$out'; local_servers='$plot_local'; cached_servers='$plot_cached'; rate='$(rate_text)'; titles='$work/titles.gp'" \
                "$root/bench/plot.gp" 2>"$work/gnuplot.err" ||
                { log "gnuplot failed:"; cat "$work/gnuplot.err" >&2; }
fi

# A full run into the default directory refreshes the results in bench/README.md (all of
# compare.md) and README.md (the machine line, the targets and the plot).
if ((!quick && !out_given && !ab_run)); then
        updated=$(helper readmes "$out/compare.md" "$root/bench/README.md" "$root/README.md")
        if [[ -n $updated ]]; then log "updated: $updated"; fi
fi
log "done: $out/compare.md, $out/latency.png"
cat "$out/compare.md"
exit 0
}

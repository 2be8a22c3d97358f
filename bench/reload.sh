#!/usr/bin/env bash
# bench/reload.sh [--rate QPS] [--seconds S] [--every S] [--rounds N] [--endpoints N]
#                 [--trigger watch|sighup] [--build DIR] — what reloading costs the answers:
# latency percentiles of local answers at a fixed offered rate, with vpcdns reloading a large
# snapshot every few seconds, against the same without reloads.
#
# The snapshot is bench/gen-snapshot.py's (10,000 endpoints by default), reached through a
# symlink that is swapped atomically (ln -s + mv -T, as a refresher would) every --every
# seconds (default 2) during the measured window. Three settings take turns, --rounds times
# (default 3), and the median of each figure is kept:
#   none       no reload;
#   reload     the symlink alternates between two captures that differ (one ENI address), so
#              every reload reads, compiles and publishes the whole snapshot;
#   identical  the symlink alternates between two byte-identical copies: every reload finds
#              the inputs unchanged and compiles nothing.
# --trigger watch (default) lets the file watch see the swap; sighup also sends SIGHUP after
# each swap (for a build without the watch). vpcdns runs with one worker pinned to core 1 with
# everything else of its process (the reload thread too), vpcdns-bench drives it from core 0.
#
# Everything runs on 127.0.0.1 (local names only: no upstream is contacted) and every run is
# bounded; the snapshots and logs live in a temporary directory, removed at the end. Default:
# 50000 qps for 20 s per run, about 4 minutes in all. Needs the build (cmake --build build):
# vpcdns and vpcdns-bench. Prints a Markdown table: p50, p90, p99 (µs), answers lost, reloads
# done and skipped, and p99 as a ratio to the run without reloads (target ≤ 1.5).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
rate=50000
seconds=20
every=2
rounds=3
endpoints=10000
trigger=watch
build=$repo/build
while (($#)); do
        case $1 in
        --rate) rate=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --every) every=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --endpoints) endpoints=$2; shift 2 ;;
        --trigger) trigger=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        *)
                echo "usage: $0 [--rate QPS] [--seconds S] [--every S] [--rounds N]" \
                        "[--endpoints N] [--trigger watch|sighup] [--build DIR]" >&2
                exit 2
                ;;
        esac
done
[[ $trigger == watch || $trigger == sighup ]] || { echo "--trigger: watch or sighup" >&2; exit 2; }
vpcdns=$build/vpcdns
bench=$build/vpcdns-bench
need_executables "$vpcdns" "$bench"

work=$(mktemp -d /tmp/reload-bench.XXXXXX)
server_pid=
swapper_pid=
cleanup() {
        [[ -n $swapper_pid ]] && kill "$swapper_pid" 2>/dev/null && wait "$swapper_pid" 2>/dev/null
        [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
        rm -rf "$work"
}
trap cleanup EXIT

# Capture a, its twin a2 (the same bytes) and b (one ENI address changed: same names).
echo "generating a snapshot of $endpoints endpoints" >&2
/usr/bin/python3 "$repo/bench/gen-snapshot.py" "$work/a" --endpoints "$endpoints" >/dev/null
cp -r "$work/a" "$work/a2"
cp -r "$work/a" "$work/b"
/usr/bin/python3 - "$work/b/describe-network-interfaces.json" <<'PY'
import json, sys
path = sys.argv[1]
doc = json.load(open(path))
eni = doc["NetworkInterfaces"][0]
old = eni["PrivateIpAddress"]
new = old.rsplit(".", 1)[0] + "." + ("254" if not old.endswith(".254") else "253")
text = open(path).read().replace('"%s"' % old, '"%s"' % new)
open(path, "w").write(text)
PY
cmp -s "$work/a/describe-network-interfaces.json" "$work/b/describe-network-interfaces.json" &&
        { echo "capture b does not differ from a" >&2; exit 1; }

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# swap_loop FIRST SECOND: points $work/snap at FIRST and SECOND in turn, every $every s.
swap_loop() {
        local target=$1 other=$2
        while true; do
                sleep "$every"
                ln -sfn "$target" "$work/snap.new"
                mv -T "$work/snap.new" "$work/snap"
                [[ $trigger == sighup ]] && kill -HUP "$server_pid"
                local t=$target
                target=$other
                other=$t
        done
}

# run MODE ROUND: one measured run; the JSON report and the server's stderr stay in $work.
run() {
        local mode=$1 round=$2
        ln -sfn "$work/a" "$work/snap.new"
        mv -T "$work/snap.new" "$work/snap"
        taskset -c 1 "$vpcdns" --workers 1 --listen "127.0.0.1:$port" --upstream 127.0.0.1:9 \
                --snapshot "$work/snap" --allow 127.0.0.0/8 --log-level info \
                </dev/null >/dev/null 2>"$work/$mode-$round.stderr" &
        server_pid=$!
        wait_answering "$port" 100 || true # a server that did not start shows in the results
        case $mode in
        reload) swap_loop "$work/b" "$work/a" & swapper_pid=$! ;;
        identical) swap_loop "$work/a2" "$work/a" & swapper_pid=$! ;;
        esac
        timeout $((seconds + 30)) "$bench" -s "127.0.0.1:$port" --snapshot "$work/a" \
                -r "$rate" -l "$seconds" -w 1 --cpu 0 -q \
                --json "$work/$mode-$round.json" >"$work/$mode-$round.out" 2>&1 || true
        if [[ -n $swapper_pid ]]; then
                kill "$swapper_pid"
                wait "$swapper_pid" 2>/dev/null || true
                swapper_pid=
        fi
        kill "$server_pid"
        wait "$server_pid" || true
        server_pid=
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 1; r <= rounds; r++)); do
        for mode in none reload identical; do
                echo "round $r/$rounds: $mode" >&2
                run "$mode" "$r"
        done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

/usr/bin/python3 - "$work" "$rounds" "$rate" "$endpoints" "$every" "$trigger" <<'PY'
import json, statistics, sys
work, rounds, rate, endpoints, every, trigger = sys.argv[1:7]
rounds = int(rounds)
res = {}
for mode in ("none", "reload", "identical"):
    runs = []
    for r in range(1, rounds + 1):
        try:
            d = json.load(open(f"{work}/{mode}-{r}.json"))
        except (OSError, ValueError):
            continue
        log = open(f"{work}/{mode}-{r}.stderr").read()
        lat = d.get("latency_us") or d.get("latency") or {}
        runs.append({
            "p50": lat.get("p50"), "p90": lat.get("p90"), "p99": lat.get("p99"),
            "lost": d.get("lost") or 0,
            "done": log.count("event=reload_done"),
            "skipped": log.count("event=reload_skipped trigger=watch")
            + log.count("event=reload_skipped trigger=sighup"),
            "failed": log.count("event=reload_failed"),
        })
    res[mode] = runs

def med(runs, key):
    vals = [x[key] for x in runs if x[key] is not None]
    return statistics.median(vals) if vals else None

base = med(res["none"], "p99")
print(f"reload cost: {endpoints} endpoints, {rate} qps offered, a swap every {every} s "
      f"(trigger {trigger}), 1 worker on 1 core, median of {rounds} rounds")
print("| run | p50 µs | p90 µs | p99 µs | p99 / p99(none) | lost | reloads done | skipped | failed | p99 of each round |")
print("|---|---|---|---|---|---|---|---|---|---|")
for mode in ("none", "reload", "identical"):
    runs = res[mode]
    p99 = med(runs, "p99")
    ratio = f"{p99 / base:.2f}" if p99 and base else "-"
    print(f"| {mode} | {med(runs, 'p50')} | {med(runs, 'p90')} | {p99} | {ratio} | "
          f"{sum(x['lost'] for x in runs)} | {sum(x['done'] for x in runs)} | "
          f"{sum(x['skipped'] for x in runs)} | {sum(x['failed'] for x in runs)} | "
          + ", ".join(str(x["p99"]) for x in runs) + " |")
PY

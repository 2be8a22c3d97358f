#!/usr/bin/env bash
# bench/qlog_cost.sh [--rate QPS] [--seconds S] [--rounds N] [--build DIR] — what the query
# log costs: CPU per answer of vpcdns at a fixed offered rate with the log off, with route53
# and with dnstap, in one run, as ratios to the run without a log. Local answers only (the
# endpoint names of zones/example, type A): the answer path is shortest there, so the log's
# share of the CPU is largest. vpcdns runs with one worker pinned to core 1, vpcdns-bench
# drives it from core 0; the three settings take turns, --rounds times (default 3), and the
# median of each is kept, so one hiccup of a shared machine does not decide. Also reports
# the answers lost (must be 0: logging never costs an answer) and query_log_dropped.
#
# Everything runs on 127.0.0.1 (no upstream is contacted: local names only); every run is
# bounded. The logs go to a temporary directory, removed at the end. Default: 100000 qps for
# 10 s per run, about 2 minutes in all. Needs the build (cmake --build build): vpcdns and
# vpcdns-bench.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
rate=100000
seconds=10
rounds=3
build=$repo/build
while (($#)); do
        case $1 in
        --rate) rate=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        *) echo "usage: $0 [--rate QPS] [--seconds S] [--rounds N] [--build DIR]" >&2; exit 2 ;;
        esac
done
vpcdns=$build/vpcdns
bench=$build/vpcdns-bench
need_executables "$vpcdns" "$bench"

work=$(mktemp -d /tmp/qlog-cost.XXXXXX)
server_pid=
cleanup() {
        [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
        rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# run MODE ROUND: one measured run; the JSON report and the server's stderr stay in $work.
run() {
        local mode=$1 round=$2 log=()
        case $mode in
        route53) log=(--query-log "route53:$work/queries.log") ;;
        dnstap) log=(--query-log "dnstap:$work/queries.dnstap") ;;
        esac
        taskset -c 1 "$vpcdns" --workers 1 --listen "127.0.0.1:$port" --upstream 127.0.0.1:9 \
                --snapshot "$repo/zones/example" --allow 127.0.0.0/8 --log-level info "${log[@]}" \
                </dev/null >/dev/null 2>"$work/$mode-$round.stderr" &
        server_pid=$!
        wait_answering "$port" 50 || true # a server that did not start shows in the results
        timeout $((seconds + 20)) "$bench" -s "127.0.0.1:$port" --snapshot "$repo/zones/example" \
                -r "$rate" -l "$seconds" -w 1 --cpu 0 --pid "$server_pid" -q \
                --json "$work/$mode-$round.json" >"$work/$mode-$round.out" 2>&1 || true
        kill "$server_pid"
        wait "$server_pid" || true
        server_pid=
        rm -f "$work/queries.log" "$work/queries.dnstap"
}

for ((r = 1; r <= rounds; r++)); do
        for mode in off route53 dnstap; do
                echo "round $r/$rounds: $mode" >&2
                run "$mode" "$r"
        done
done

python3 - "$work" "$rounds" "$rate" <<'PY'
import json, re, statistics, sys
work, rounds, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
res = {}
for mode in ("off", "route53", "dnstap"):
    cpu, lost, dropped, answered = [], 0, 0, 0
    for r in range(1, rounds + 1):
        try:
            d = json.load(open(f"{work}/{mode}-{r}.json"))
        except (OSError, ValueError):
            continue
        c = (d.get("server_cpu") or {}).get("total_us_per_query")
        if c is not None:
            cpu.append(c)
        lost += d.get("lost") or 0
        answered += d.get("answered") or d.get("received") or 0
        m = re.search(r"query_log_dropped=(\d+)", open(f"{work}/{mode}-{r}.stderr").read())
        dropped += int(m.group(1)) if m else 0
    res[mode] = (statistics.median(cpu) if cpu else None, lost, dropped, cpu)
base = res["off"][0]
print(f"query log cost at {rate} qps offered, {rounds} rounds, local answers, 1 worker")
print("| log | CPU µs/answer (median) | ratio to off | target | answers lost | log entries dropped | runs µs/answer |")
print("|---|---|---|---|---|---|---|")
for mode, target in (("off", ""), ("route53", "≤ 1.6"), ("dnstap", "≤ 1.3")):
    c, lost, dropped, runs = res[mode]
    ratio = f"{c / base:.2f}" if c and base else "-"
    print(f"| {mode} | {c if c is None else round(c, 3)} | {ratio} | {target} | {lost} | {dropped} | "
          + ", ".join(f"{x:.3f}" for x in runs) + " |")
PY

#!/usr/bin/env bash
# bench/cost.sh — what an observability feature costs the answer path, in instructions per
# local answer counted by callgrind (a figure that does not move with the load of a shared
# machine): vpcdns with one worker answers a local name at a fixed offered rate, once per
# MODE, and every mode's figure is printed with its ratio to "off". The load is a closed loop
# (one question at a time, from a small driver), and "scraped every second" is one GET /metrics
# after every RATE answers: what a per-second scrape costs at RATE queries/s, independent of how
# fast valgrind runs or what else the machine does, so the figures repeat from run to run.
#   off      no HTTP endpoint, no query log (the statistics are always counted)
#   metrics  the HTTP endpoint on and GET /metrics every second (target: within 3 % of off)
#   route53  the route53 query log on, every query (the writer thread's work included)
#   dnstap   the dnstap query log on, every query
# Start-up is not counted: callgrind_control zeroes the counts once vpcdns answers. In modes off
# and metrics it also dumps them after the last query, so that shutdown stays out too (its
# hand-offs between threads spin for a varying while under valgrind, which moved a figure by up to
# 2 %); the query logs are counted to the exit, so that the entries their writer thread still
# holds after the last answer are counted too. Each mode runs twice with a different number of
# queries so that what a run costs whatever its length (the first scrape's set-up, the zeroing,
# the dump or the shutdown) cancels out: per answer =
# (Ir(big) - Ir(small)) / (answers(big) - answers(small)), answers taken from the server_stop
# line. In metrics mode it also prints what rendering one /metrics body costs alone
# (vd_http_render_metrics, inclusive, over the scrapes that big has more than small). One worker,
# local answers (tests/data/integ/corp.zone), loopback only; bounded query counts, so it ends.
# For the query logs' CPU time at 100k qps and the answers lost, see bench/qlog_cost.sh.
#
# Usage: bench/cost.sh [BUILD_DIR] [MODE...]   (default build and all four modes; needs
#   BUILD_DIR/vpcdns and valgrind, whose callgrind_control talks to the running vpcdns)
#   SMALL=5000 BIG=30000: the two query counts; RATE=5000: answers per scrape (the query rate
#   that a scrape every second stands for); ROUNDS=3: rounds per mode, the median is printed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
(($# > 0)) && shift
modes=("$@")
((${#modes[@]} > 0)) || modes=(off metrics route53 dnstap)
for m in "${modes[@]}"; do
        [[ $m =~ ^(off|metrics|route53|dnstap)$ ]] || { echo "cost: unknown mode $m" >&2; exit 2; }
done
vpcdns=$build/vpcdns
small=${SMALL:-5000}
big=${BIG:-30000}
rate=${RATE:-5000}
[[ $rate =~ ^[1-9][0-9]*$ ]] || { echo "cost: RATE must be a positive number, not $rate" >&2; exit 2; }
rounds=${ROUNDS:-3}
[[ $rounds =~ ^[1-9][0-9]{0,2}$ ]] || { echo "cost: ROUNDS must be 1 to 999, not $rounds" >&2; exit 2; }
for bin in "$vpcdns" /usr/bin/valgrind /usr/bin/callgrind_control /usr/bin/callgrind_annotate; do
        [[ -x $bin ]] || { echo "cost: $bin is missing" >&2; exit 1; }
done

work=$(mktemp -d)
server_pid=
cleanup() {
        [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
        rm -rf "$work"
}
trap cleanup EXIT

# The questions: www.corp.example/A every time, asked by bench/closed_loop.py one at a time (with a
# GET /metrics after every RATE answers in metrics mode).
driver=$root/bench/closed_loop.py
printf 'www.corp.example.\n' >"$work/names.txt"

# free_port: a TCP and UDP port free on 127.0.0.1 now.
free_port() {
        /usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p)); print(p)'
}

# run MODE QUERIES: prints "IR ANSWERS RENDER SCRAPES" of one callgrind run: the instructions
# from the zeroing to the dump (off, metrics) or to the exit (query logs), the answers, and in
# metrics mode the instructions of rendering /metrics in them and the scrapes (0 0 otherwise).
# It runs in a command substitution (a subshell), whose own EXIT trap stops what it started
# however it ends.
run() {
        local mode=$1 queries=$2 port mport=0 out extra=() answered scrapes
        trap '[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; true' EXIT
        port=$(free_port)
        out=$work/callgrind.$mode.$queries
        rm -f "$out" "$out.1" # a round's dump must not be read in the next one
        printf 'lameduck_ms: 0\n' >"$work/cfg.yaml"
        case $mode in
        metrics)
                mport=$(free_port)
                extra=(--metrics-listen "127.0.0.1:$mport")
                ;;
        route53 | dnstap) extra=(--query-log "$mode:$work/query.log.$queries") ;;
        esac
        valgrind --tool=callgrind --callgrind-out-file="$out" "$vpcdns" --config "$work/cfg.yaml" \
                --listen "127.0.0.1:$port" --upstream 127.0.0.1:9 --workers 1 \
                --zone "$root/tests/data/integ/corp.zone" "${extra[@]}" 2>"$out.stderr" &
        server_pid=$!
        timeout 90 /usr/bin/python3 -I "$driver" wait "$port" www.corp.example. ||
                { echo "cost: vpcdns did not answer under valgrind" >&2; tail -5 "$out.stderr" >&2; exit 1; }
        timeout 60 callgrind_control -z "$server_pid" >/dev/null 2>&1 ||
                { echo "cost: callgrind_control could not zero the counts" >&2; exit 1; }
        read -r answered scrapes < <(timeout 900 /usr/bin/python3 -I "$driver" ask "$port" \
                "$work/names.txt" "$queries" "$rate" "$mport")
        ((answered == queries)) || { echo "cost: $mode: $answered of $queries answered" >&2; exit 1; }
        local counts=$out # the query logs: counted to the exit, their writer's last drain included
        if [[ $mode == off || $mode == metrics ]]; then
                counts=$out.1
                if ! timeout 60 callgrind_control -d "$server_pid" >/dev/null 2>&1 || [[ ! -s $counts ]]; then
                        echo "cost: callgrind_control could not dump the counts" >&2
                        exit 1
                fi
        fi
        kill -TERM "$server_pid"
        wait "$server_pid" || true
        server_pid=
        rm -f "$work/query.log.$queries"
        [[ $mode == metrics ]] && echo "  $mode, $queries queries: $scrapes scrapes" >&2
        local ir answers render=0
        ir=$(grep -E '^(summary|totals):' "$counts" | head -1 | awk '{print $2}')
        answers=$(grep -o 'local_answers=[0-9]*' "$out.stderr" | tail -1 | cut -d= -f2)
        [[ $mode == metrics ]] &&
                render=$(callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$counts" |
                        awk '/:vd_http_render_metrics( |$)/ { gsub(",", "", $1); print $1; exit }')
        echo "$ir $answers ${render:-0} $scrapes"
}

# per_answer MODE: prints "PER_ANSWER RENDER", the instructions per local answer and, in metrics
# mode, of rendering one /metrics body (0 otherwise): the median of ROUNDS rounds.
per_answer() {
        local round ir1 n1 r1 s1 ir2 n2 r2 s2 figures=()
        for ((round = 1; round <= rounds; round++)); do
                read -r ir1 n1 r1 s1 <<<"$(run "$1" "$small")"
                read -r ir2 n2 r2 s2 <<<"$(run "$1" "$big")"
                echo "  $1, round $round: $n1 answers $ir1 Ir, $n2 answers $ir2 Ir" >&2
                ((s2 > s1)) && echo "  $1, round $round: rendering /metrics: $s1 and $s2" \
                        "scrapes, $r1 and $r2 Ir" >&2
                figures+=("$ir1,$n1,$r1,$s1,$ir2,$n2,$r2,$s2")
        done
        /usr/bin/python3 - "${figures[@]}" <<'PY'
import statistics, sys
per, render = [], []
for f in sys.argv[1:]:
    ir1, n1, r1, s1, ir2, n2, r2, s2 = map(int, f.split(","))
    per.append((ir2 - ir1) / (n2 - n1))
    render.append((r2 - r1) / (s2 - s1) if s2 > s1 else 0)
print(statistics.median(per), statistics.median(render))
PY
}

results=()
for m in off "${modes[@]}"; do
        [[ $m == off && ${#results[@]} -gt 0 ]] && continue
        read -r per render <<<"$(per_answer "$m")"
        results+=("$m=$per,$render")
done
/usr/bin/python3 - "$rate" "$rounds" "${results[@]}" <<'PY'
import sys
rate, rounds = int(sys.argv[1]), sys.argv[2]
res = {k: tuple(map(float, v.split(","))) for k, v in (a.split("=", 1) for a in sys.argv[3:])}
off = res["off"][0]
targets = {"metrics": "within 3 %", "route53": "", "dnstap": ""}
print("instructions per local answer, one worker, one scrape per %d answers, median of %s rounds"
      % (rate, rounds))
print("| mode | instructions/answer | ratio to off | target |")
print("|---|---|---|---|")
for mode, (v, _) in res.items():
    print("| %s | %.0f | %.4f | %s |" % (mode, v, v / off, targets.get(mode, "")))
if "metrics" in res:
    v, render = res["metrics"]
    rendered = ("%.0f instructions" % render if render > 0 else
                "not counted (a build without symbols: use -DCMAKE_BUILD_TYPE=RelWithDebInfo)")
    print("\nrendering one /metrics body: %s; all that metrics adds in %d answers "
          "(a scrape, the HTTP thread, the workers' heartbeats): %.0f instructions"
          % (rendered, rate, (v - off) * rate))
PY

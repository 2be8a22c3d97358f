#!/usr/bin/env bash
# bench/cost.sh — what an observability feature costs the answer path, in instructions per
# local answer counted by callgrind (a figure that does not move with the load of a shared
# machine): vpcdns with one worker answers a local name at a fixed offered rate, once per
# MODE, and every mode's figure is printed with its ratio to "off":
#   off      no HTTP endpoint, no query log (the statistics are always counted)
#   metrics  the HTTP endpoint on and GET /metrics every second (target: within 3 % of off)
#   route53  the route53 query log on, every query (the writer thread's work included)
#   dnstap   the dnstap query log on, every query
# Each mode runs twice with a different number of queries so that start-up and shutdown cancel
# out: per answer = (Ir(big) - Ir(small)) / (answers(big) - answers(small)), answers taken from
# the server_stop line. One worker, local answers (tests/data/integ/corp.zone), loopback only;
# bounded query counts, so it ends. The open loop's batching varies from run to run: a figure
# moves by a few percent between invocations; compare figures of one invocation. For the query
# logs' CPU time at 100k qps and the answers lost, see bench/qlog_cost.sh.
#
# Usage: bench/cost.sh [BUILD_DIR] [MODE...]   (default build and all four modes; needs vpcdns
#   and vpcdns-bench, valgrind, curl)
#   SMALL=5000 BIG=30000: the two query counts; RATE=5000: queries per second offered (open
#   loop), so that the runs last seconds and the scrapes (one a second) fall between answers.
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
bench=$build/vpcdns-bench
small=${SMALL:-5000}
big=${BIG:-30000}
rate=${RATE:-5000}
for bin in "$vpcdns" "$bench" /usr/bin/valgrind /usr/bin/curl; do
        [[ -x $bin ]] || { echo "cost: $bin is missing" >&2; exit 1; }
done

work=$(mktemp -d)
server_pid=
scraper_pid=
cleanup() {
        [[ -n $scraper_pid ]] && kill "$scraper_pid" 2>/dev/null || true
        [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
        rm -rf "$work"
}
trap cleanup EXIT
echo "www.corp.example A" >"$work/queries.txt"

# free_port: a TCP and UDP port free on 127.0.0.1 now.
free_port() {
        /usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p)); print(p)'
}

# run MODE QUERIES: prints "IR ANSWERS" of one callgrind run. It runs in a command
# substitution (a subshell), whose own EXIT trap stops what it started however it ends.
run() {
        local mode=$1 queries=$2 port mport out extra=()
        trap '[[ -n $scraper_pid ]] && kill "$scraper_pid" 2>/dev/null
              [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; true' EXIT
        port=$(free_port)
        mport=$(free_port)
        out=$work/callgrind.$mode.$queries
        printf 'lameduck_ms: 0\n' >"$work/cfg.yaml"
        case $mode in
        metrics) extra=(--metrics-listen "127.0.0.1:$mport") ;;
        route53 | dnstap) extra=(--query-log "$mode:$work/query.log.$queries") ;;
        esac
        valgrind --tool=callgrind --callgrind-out-file="$out" "$vpcdns" --config "$work/cfg.yaml" \
                --listen "127.0.0.1:$port" --upstream 127.0.0.1:9 --workers 1 \
                --zone "$root/tests/data/integ/corp.zone" "${extra[@]}" 2>"$out.stderr" &
        server_pid=$!
        # until it answers (under callgrind start-up takes a few seconds): 60 s at most
        for _ in $(seq 600); do
                if "$bench" -s "127.0.0.1:$port" -d "$work/queries.txt" -n 1 -l 1 -t 200 -q \
                        --json - 2>/dev/null | grep -Eq '"answered":[[:space:]]*1'; then
                        break
                fi
                sleep 0.1
        done
        : >"$work/scrapes"
        if [[ $mode == metrics ]]; then
                (while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$mport/metrics" &&
                        echo >>"$work/scrapes"; done) &
                scraper_pid=$!
        fi
        "$bench" -s "127.0.0.1:$port" -d "$work/queries.txt" -n "$queries" -l 600 -r "$rate" \
                --sockets 1 -q >/dev/null
        if [[ -n $scraper_pid ]]; then
                kill "$scraper_pid" 2>/dev/null || true
                wait "$scraper_pid" 2>/dev/null || true
                scraper_pid=
        fi
        kill -TERM "$server_pid"
        wait "$server_pid" || true
        server_pid=
        local ir answers scrapes
        scrapes=$(wc -l <"$work/scrapes")
        rm -f "$work/scrapes"
        [[ $mode == metrics ]] && echo "  $mode, $queries queries: ${scrapes:-0} scrapes" >&2
        rm -f "$work/query.log.$queries"
        ir=$(grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}')
        answers=$(grep -o 'local_answers=[0-9]*' "$out.stderr" | tail -1 | cut -d= -f2)
        echo "$ir $answers"
}

per_answer() { # MODE: instructions per local answer
        local a b
        read -r ir1 n1 <<<"$(run "$1" "$small")"
        read -r ir2 n2 <<<"$(run "$1" "$big")"
        echo "  $1: $n1 answers $ir1 Ir, $n2 answers $ir2 Ir" >&2
        /usr/bin/python3 -c "print(($ir2 - $ir1) / ($n2 - $n1))"
}

results=()
for m in off "${modes[@]}"; do
        [[ $m == off && ${#results[@]} -gt 0 ]] && continue
        results+=("$m=$(per_answer "$m")")
done
/usr/bin/python3 - "$rate" "${results[@]}" <<'PY'
import sys
rate = sys.argv[1]
res = dict(a.split("=", 1) for a in sys.argv[2:])
off = float(res["off"])
targets = {"metrics": "within 3 %", "route53": "", "dnstap": ""}
print("instructions per local answer at %s queries/s offered, one worker" % rate)
print("| mode | instructions/answer | ratio to off | target |")
print("|---|---|---|---|")
for mode, v in res.items():
    v = float(v)
    print("| %s | %.0f | %.4f | %s |" % (mode, v, v / off, targets.get(mode, "")))
PY

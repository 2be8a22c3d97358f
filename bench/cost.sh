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
# Each mode runs twice with a different number of queries so that start-up and shutdown cancel
# out: per answer = (Ir(big) - Ir(small)) / (answers(big) - answers(small)), answers taken from
# the server_stop line. One worker, local answers (tests/data/integ/corp.zone), loopback only;
# bounded query counts, so it ends. For the query logs' CPU time at 100k qps and the answers
# lost, see bench/qlog_cost.sh.
#
# Usage: bench/cost.sh [BUILD_DIR] [MODE...]   (default build and all four modes; needs
#   BUILD_DIR/vpcdns and valgrind)
#   SMALL=5000 BIG=30000: the two query counts; RATE=5000: answers per scrape (the query rate
#   that a scrape every second stands for).
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
for bin in "$vpcdns" /usr/bin/valgrind; do
        [[ -x $bin ]] || { echo "cost: $bin is missing" >&2; exit 1; }
done

work=$(mktemp -d)
server_pid=
cleanup() {
        [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
        rm -rf "$work"
}
trap cleanup EXIT

# The driver: "wait PORT" until vpcdns answers (60 s at most); "ask PORT COUNT EVERY MPORT":
# COUNT questions for www.corp.example/A one at a time, and a GET /metrics on MPORT after
# every EVERY answers (MPORT 0: none). Prints the answers and the scrapes.
cat >"$work/driver.py" <<'PY'
import socket, struct, sys, time, urllib.request

def ask(sock, port, qid):
    sock.sendto(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
                + b"\x03www\x04corp\x07example\x00\x00\x01\x00\x01", ("127.0.0.1", port))
    while True:
        data = sock.recv(4096)
        if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
            return data[3] & 0xF == 0

cmd, port = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if cmd == "wait":
    sock.settimeout(0.5)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ask(sock, port, 1)
            sys.exit(0)
        except OSError:
            time.sleep(0.2)
    sys.exit(1)
count, every, mport = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sock.settimeout(5.0)
answered = scrapes = 0
for i in range(count):
    try:
        answered += ask(sock, port, i & 0xFFFF)
    except OSError:
        pass
    if mport and (i + 1) % every == 0:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=30) as r:
            r.read()
        scrapes += 1
print(answered, scrapes)
PY

# free_port: a TCP and UDP port free on 127.0.0.1 now.
free_port() {
        /usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p)); print(p)'
}

# run MODE QUERIES: prints "IR ANSWERS" of one callgrind run. It runs in a command
# substitution (a subshell), whose own EXIT trap stops what it started however it ends.
run() {
        local mode=$1 queries=$2 port mport=0 out extra=() answered scrapes
        trap '[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; true' EXIT
        port=$(free_port)
        out=$work/callgrind.$mode.$queries
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
        timeout 90 /usr/bin/python3 -I "$work/driver.py" wait "$port" ||
                { echo "cost: vpcdns did not answer under valgrind" >&2; tail -5 "$out.stderr" >&2; exit 1; }
        read -r answered scrapes < <(timeout 900 /usr/bin/python3 -I "$work/driver.py" ask "$port" \
                "$queries" "$rate" "$mport")
        ((answered == queries)) || { echo "cost: $mode: $answered of $queries answered" >&2; exit 1; }
        kill -TERM "$server_pid"
        wait "$server_pid" || true
        server_pid=
        rm -f "$work/query.log.$queries"
        [[ $mode == metrics ]] && echo "  $mode, $queries queries: $scrapes scrapes" >&2
        local ir answers
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
print("instructions per local answer, one worker, one scrape per %s answers" % rate)
print("| mode | instructions/answer | ratio to off | target |")
print("|---|---|---|---|")
for mode, v in res.items():
    v = float(v)
    print("| %s | %.0f | %.4f | %s |" % (mode, v, v / off, targets.get(mode, "")))
PY

#!/usr/bin/env bash
# bench/restart.sh — queries lost across a restart of vpcdns under load: vpcdns-bench offers
# RATE queries per second of local answers (the example snapshot, loopback only) for DURATION
# seconds, and halfway through the server is replaced, in each of these ways:
#
#   takeover      a new vpcdns started with --takeover takes the listening sockets from the
#                 running one over its control socket; the old one exits by itself
#   systemd       socket activation emulated by bench/sd_launch.py (systemd is not PID 1
#                 here): the launcher holds the sockets, starts a second vpcdns on the same
#                 fds, waits for its READY=1 and SIGTERMs the first
#   systemd-stop  the same launcher in the order of `systemctl restart`: SIGTERM, wait for the
#                 exit, start the new one; the kernel queues the queries in between
#   plain         SIGTERM the old one, wait for its exit, start a new one that binds afresh:
#                 what a restart without either costs (losses expected)
#
# Prints one line per scenario: sent, answered, lost, and the bench's JSON goes to WORK/.
# Usage: bench/restart.sh [BUILD_DIR] [SCENARIO...]   (default build; all four scenarios)
#   RATE=20000 DURATION=60 WORKERS=2 TIMEOUT_MS=1000: offered qps, seconds, server threads,
#   and how long an unanswered query counts as pending before it is lost.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
shift || true
scenarios=("$@")
((${#scenarios[@]})) || scenarios=(takeover systemd systemd-stop plain)
vpcdns=$build/vpcdns
bench=$build/vpcdns-bench
rate=${RATE:-20000}
duration=${DURATION:-60}
workers=${WORKERS:-2}
timeout_ms=${TIMEOUT_MS:-1000}
snapshot=$root/tests/data/integ/snapshot
for bin in "$vpcdns" "$bench"; do
        [[ -x $bin ]] || { echo "restart: $bin is missing (build it first)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/vpcdns-restart.XXXXXX)
pids=()
cleanup() {
        local pid
        for pid in "${pids[@]}"; do
                kill "$pid" 2>/dev/null || true
        done
        wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
        /usr/bin/python3 -I -c 'import socket
for _ in range(100):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        t.close(); u.close()'
}

# wait_answer PORT: until 127.0.0.1:PORT answers (10 s at most).
wait_answer() {
        local port=$1 i
        for ((i = 0; i < 100; i++)); do
                if dig +time=1 +tries=1 +short -p "$port" @127.0.0.1 \
                        "sqs.eu-west-1.amazonaws.com" A >/dev/null 2>&1; then
                        return 0
                fi
                sleep 0.1
        done
        echo "restart: nothing answers on 127.0.0.1:$port" >&2
        return 1
}

# wait_exit PID: until the process is gone (15 s at most); reaps it when it is our child.
wait_exit() {
        local pid=$1 i
        for ((i = 0; i < 150; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        wait "$pid" 2>/dev/null || true
}

server_args() { # PORT
        echo --listen "127.0.0.1:$1" --upstream 127.0.0.1:9 --snapshot "$snapshot" \
                --workers "$workers" --log-level info
}

# run_bench NAME PORT: the load, in the background (sets bench_pid).
run_bench() {
        "$bench" --server "127.0.0.1:$2" --snapshot "$snapshot" --rate "$rate" \
                --duration "$duration" --timeout "$timeout_ms" --json "$work/$1.json" \
                --label "restart-$1" -q &
        bench_pid=$!
        pids+=("$bench_pid")
}

half=$(awk -v d="$duration" 'BEGIN { printf "%.1f", d / 2 }')

scenario() {
        local name=$1 port old new launcher
        port=$(free_port)
        # shellcheck disable=SC2046 # server_args is a word list
        case $name in
        takeover | plain)
                "$vpcdns" $(server_args "$port") 2>>"$work/$name.log" &
                old=$!
                pids+=("$old")
                wait_answer "$port"
                run_bench "$name" "$port"
                sleep "$half"
                if [[ $name == takeover ]]; then
                        "$vpcdns" $(server_args "$port") --takeover 2>>"$work/$name.log" &
                        new=$!
                        pids+=("$new")
                        wait_exit "$old" # it leaves by itself once the new one serves
                else
                        kill -TERM "$old"
                        wait_exit "$old"
                        "$vpcdns" $(server_args "$port") 2>>"$work/$name.log" &
                        new=$!
                        pids+=("$new")
                fi
                wait "$bench_pid" || true
                kill -TERM "$new"
                wait_exit "$new"
                ;;
        systemd | systemd-stop)
                local mode=overlap
                [[ $name == systemd-stop ]] && mode=stop-start
                # shellcheck disable=SC2046
                /usr/bin/python3 -I "$root/bench/sd_launch.py" --listen "127.0.0.1:$port" \
                        --mode "$mode" --restart-after "$half" \
                        --stop-after "$(awk -v d="$duration" 'BEGIN { print d + 3 }')" \
                        --notify "$work/notify.sock" --log "$work/$name.log" \
                        -- "$vpcdns" $(server_args "$port") 2>>"$work/$name.launcher" &
                launcher=$!
                pids+=("$launcher")
                wait_answer "$port"
                run_bench "$name" "$port"
                wait "$bench_pid" || true
                wait "$launcher" || echo "restart: $name: the launcher reported a failure" >&2
                ;;
        *)
                echo "restart: unknown scenario $name" >&2
                return 1
                ;;
        esac
        /usr/bin/python3 -I -c 'import json, sys
r = json.load(open(sys.argv[1]))
print("%-13s sent %9d  answered %9d  lost %7d" % (sys.argv[2], r["sent"], r["answered"], r["lost"]))' \
                "$work/$name.json" "$name"
}

echo "restart: $rate qps for $duration s, restart at $half s, $workers workers, timeout" \
        "$timeout_ms ms; logs and JSON in $work"
for s in "${scenarios[@]}"; do
        scenario "$s"
done

#!/usr/bin/env bash
# bench/callgrind.sh [--vpcdns BIN] [--workers N] [--queries K] [--function NAME] [--out FILE]
#                    [-- ARGS...] —
# instructions vpcdns executes per answer, counted by valgrind's callgrind: a figure that does
# not move with the load of a shared machine, for A/B comparisons of two builds (or of one
# build with and without a setting: ARGS after -- are passed to vpcdns).
#
# For each scenario — "local" (the example snapshot's names with an A record) and "cached"
# (1000 names of an NSD zone on 127.0.0.1, each asked once before) — vpcdns runs twice under
# callgrind: once answering K queries and once answering 2K, one query outstanding at a time,
# after the same start-up and warm-up. Start-up, warm-up and shutdown cost the same in both
# runs, so (instructions of the second − instructions of the first) / K is the cost of one
# answer, every thread included (the workers, the control thread, the timers). Prints one line
# per scenario and writes FILE (default: none) as JSON. --function NAME counts only the
# instructions inside NAME and what it calls (callgrind's --toggle-collect), for example
# vd_snapshot_answer_chase: the threads' idle wake-ups, which move with the machine's load,
# then count nothing, so two builds compare to the instruction. Every query goes to
# 127.0.0.1; each run is bounded by timeouts. Takes about 2 minutes with the defaults.
set -euo pipefail
{
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py() { /usr/bin/python3 -I "$@"; }
vpcdns=
workers=1
queries=3000
out_file=
function_name=
usage() {
        echo "usage: $0 [--vpcdns BIN] [--workers N] [--queries K] [--function NAME] [--out FILE] [-- ARGS...]" >&2
        exit 2
}
while (($#)); do
        case $1 in
        --vpcdns) (($# >= 2)) || usage; vpcdns=$2; shift ;;
        --workers) (($# >= 2)) || usage; workers=$2; shift ;;
        --queries) (($# >= 2)) || usage; queries=$2; shift ;;
        --out) (($# >= 2)) || usage; out_file=$2; shift ;;
        --function) (($# >= 2)) || usage; function_name=$2; shift ;;
        --) shift; break ;;
        *) usage ;;
        esac
        shift
done
extra=("$@")
[[ $workers =~ ^[1-9][0-9]*$ && $queries =~ ^[1-9][0-9]*$ ]] || usage

# shellcheck source=contrib/deps.sh
source "$root/contrib/deps.sh"
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
vd_deps_install_from "${VD_DEPS[@]}" valgrind >&2
if [[ -z $vpcdns ]]; then
        build=$root/build-compare
        mkdir -p "$build"
        { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release &&
                cmake --build "$build" -j2 --target vpcdns; } >"$build/callgrind-build.log" 2>&1 ||
                { echo "build failed: see $build/callgrind-build.log" >&2; exit 1; }
        vpcdns=$build/vpcdns
fi

work=$(mktemp -d /tmp/vpcdns-callgrind.XXXXXX)
nsd_pid=
server_pid=
cleanup() {
        stop_pid "$server_pid"
        stop_pid "$nsd_pid"
        rm -rf "$work"
}
trap cleanup EXIT
log() { printf '[callgrind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() {
        py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

"$vpcdns" --snapshot "$root/zones/example" --dump >"$work/dump.txt"
py "$root/bench/peers.py" --dump "$work/dump.txt" --names "$work/local.txt"
origin=bench.example
{
        # shellcheck disable=SC2016 # $ORIGIN and $TTL are zone-file directives
        printf '$ORIGIN %s.\n$TTL 86400\n' "$origin"
        printf '@ IN SOA ns.%s. hostmaster.%s. 1 7200 900 1209600 86400\n' "$origin" "$origin"
        printf '@ IN NS ns.%s.\nns IN A 127.0.0.1\n' "$origin"
        for ((i = 1; i <= 1000; i++)); do printf 'h%d IN A 10.0.%d.%d\n' "$i" $((i / 256)) $((i % 256)); done
} >"$work/$origin.zone"
for ((i = 1; i <= 1000; i++)); do printf 'h%d.%s. A\n' "$i" "$origin"; done >"$work/cached.txt"

nsd_port=$(free_port)
nsd_write_conf "$work" "$nsd_port" "$origin"
nsd_start /usr/sbin/nsd "$work" "$nsd_port" "h1.$origin." || exit 1

# run SCENARIO COUNT: instructions of one callgrind run answering COUNT questions.
# Runs in a command substitution, a subshell: its own EXIT trap stops the server it started,
# whichever way it ends (the main cleanup cannot see this subshell's server_pid).
run() {
        local scenario=$1 count=$2 port answered
        trap 'stop_pid "$server_pid"' EXIT
        port=$(free_port)
        local toggle=()
        [[ -z $function_name ]] || toggle=("--toggle-collect=$function_name")
        valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "${toggle[@]}" \
                "$vpcdns" --workers "$workers" --listen "127.0.0.1:$port" \
                --snapshot "$root/zones/example" --upstream "127.0.0.1:$nsd_port" \
                --allow 127.0.0.0/8 "${extra[@]}" >"$work/vpcdns.log" 2>&1 &
        server_pid=$!
        timeout 90 /usr/bin/python3 -I "$root/bench/closed_loop.py" wait "$port" "$(awk 'NR == 1 {print $1}' "$work/local.txt")" ||
                { echo "vpcdns did not answer under valgrind; its log:" >&2; tail -5 "$work/vpcdns.log" >&2; exit 1; }
        if [[ $scenario == cached ]]; then
                timeout 300 /usr/bin/python3 -I "$root/bench/closed_loop.py" ask "$port" "$work/cached.txt" 1000 >/dev/null
        fi
        answered=$(timeout 900 /usr/bin/python3 -I "$root/bench/closed_loop.py" ask "$port" "$work/$scenario.txt" "$count")
        ((answered == count)) || { echo "$scenario: $answered of $count answered NOERROR" >&2; exit 1; }
        stop_pid "$server_pid"
        server_pid=
        awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.out"
}

declare -A per_answer
for scenario in local cached; do
        log "$scenario: $queries and $((2 * queries)) answers under callgrind, $workers worker(s)"
        one=$(run "$scenario" "$queries")
        two=$(run "$scenario" $((2 * queries)))
        per_answer[$scenario]=$(py -c 'import sys; print("%.1f" % ((int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3])))' "$one" "$two" "$queries")
        printf '%s: %s instructions per answer%s (%s workers, %s)\n' "$scenario" \
                "${per_answer[$scenario]}" "${function_name:+ in $function_name}" "$workers" "$vpcdns"
done
if [[ -n $out_file ]]; then
        py -c 'import json, sys
json.dump({"vpcdns": sys.argv[2], "workers": int(sys.argv[3]), "queries": int(sys.argv[4]),
           "instructions_per_answer": {"local": float(sys.argv[5]), "cached": float(sys.argv[6])},
           "extra_args": sys.argv[7:]}, open(sys.argv[1], "w"), indent=1)' \
                "$out_file" "$vpcdns" "$workers" "$queries" "${per_answer[local]}" \
                "${per_answer[cached]}" "${extra[@]}"
fi
exit 0
}

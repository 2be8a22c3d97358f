#!/bin/sh
# run.sh — runs the harnesses built by build.sh:
#     tests/fuzz/run.sh OUTDIR SECONDS   fuzz each harness SECONDS seconds from its seed corpus
#     tests/fuzz/run.sh OUTDIR 0         replay corpus/<name>/ and regress/<name>/ (next to
#                                        this script) once
# Exits non-zero when any harness crashes (or any reproducer in regress/ still does).
# The corpus is copied to a scratch directory so that runs never grow the repository.
# Environment: JOBS=N runs N harnesses at a time (default 1); TARGETS="query relay" picks
# harnesses; KEEP=1 keeps the scratch directory (logs, new inputs, crash artifacts);
# FORK=1 keeps fuzzing past a crash (-fork=1 -ignore_crashes=1) to collect distinct ones.
set -u

if [ $# -ne 2 ]; then
        echo "usage: $0 OUTDIR SECONDS" >&2
        exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "$1" && pwd) || exit 2
seconds=$2
jobs=${JOBS:-1}
targets=${TARGETS:-"query relay aws zonefile hosted_zone config tcp"}
work=$(mktemp -d "${TMPDIR:-/tmp}/vpcdns-fuzz-run-XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

max_len_of() {
        case $1 in
        query) echo 2048 ;;    # one message; TCP-sized answers need no bigger question
        relay) echo 8192 ;;    # query + selectors + an answer past every truncation limit
        aws) echo 100000 ;;    # the example snapshot is 83 KB
        zonefile) echo 8192 ;;
        hosted_zone) echo 16384 ;; # tests/data/hosted/corp.json is 9 KB
        config) echo 4096 ;;
        tcp) echo 4096 ;;      # a chunk-size byte + a few framed queries
        esac
}

run_one() {
        t=$1
        exe="$bin/fuzz_$t"
        log="$work/$t.log"
        if [ ! -x "$exe" ]; then
                echo "FAIL $t: $exe not built" >"$work/$t.status"
                return
        fi
        dirs=""
        for d in "$here/regress/$t"; do
                [ -d "$d" ] && [ -n "$(ls -A "$d")" ] && dirs="$dirs $d"
        done
        mkdir -p "$work/artifacts"
        # Leaks inside ldns's parser of hostile upstream bytes (relay only): see lsan-relay.supp.
        lsan=${LSAN_OPTIONS:-}
        if [ "$t" = relay ]; then
                lsan="${lsan:+$lsan:}suppressions=$here/lsan-relay.supp"
        fi
        export LSAN_OPTIONS="$lsan"
        if [ "$seconds" = 0 ]; then
                # shellcheck disable=SC2086
                "$exe" -runs=0 -max_len="$(max_len_of "$t")" -artifact_prefix="$work/artifacts/$t-" \
                        "$here/corpus/$t" $dirs >"$log" 2>&1
        else
                mkdir -p "$work/corpus/$t"
                cp -R "$here/corpus/$t/." "$work/corpus/$t/"
                fork=""
                [ "${FORK:-0}" = 1 ] && fork="-fork=1 -ignore_crashes=1"
                # shellcheck disable=SC2086
                "$exe" -max_total_time="$seconds" -max_len="$(max_len_of "$t")" -timeout=25 \
                        -print_final_stats=1 -artifact_prefix="$work/artifacts/$t-" $fork \
                        "$work/corpus/$t" $dirs >"$log" 2>&1
        fi
        rc=$?
        # Fork mode exits 0 after ignored crashes: the artifacts tell.
        crashes=$(find "$work/artifacts" -name "$t-*" | wc -l)
        [ "$rc" -eq 0 ] && [ "$crashes" -gt 0 ] && rc=1
        last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        if [ $rc -eq 0 ]; then
                echo "ok   $t: ${last:-no status line} ${execs:+execs=$execs} ${rate:+exec/s=$rate}"
        else
                echo "FAIL $t (exit $rc): $(grep -m1 -E 'ERROR|invariant failed|check failed|runtime error' "$log")"
                echo "     log: $log"
                echo "     $crashes artifact(s), first ones:"
                find "$work/artifacts" -name "$t-*" | head -n 5 | sed 's/^/     /'
        fi >"$work/$t.status"
}

running=0
pids=""
for t in $targets; do
        run_one "$t" &
        pids="$pids $!"
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then
                wait
                running=0
        fi
done
wait

failed=0
for t in $targets; do
        cat "$work/$t.status"
        grep -q '^FAIL' "$work/$t.status" && failed=1
done
if [ "$failed" -ne 0 ]; then
        echo "crashes found; logs and artifacts kept in $work" >&2
        trap - EXIT
fi
exit "$failed"

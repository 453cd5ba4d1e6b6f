#!/usr/bin/env bash
# Fuzzes every target for SECONDS (default 600) each, JOBS (default 2) at
# a time, then minimises each corpus. The summary (executions, coverage,
# crashes) goes to fuzz/last-run.txt; crashes to fuzz/artifacts/TARGET/.
#
#   fuzz/run-all.sh [SECONDS] [JOBS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain takes
# its nightly flags with RUSTC_BOOTSTRAP=1. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
jobs=${2:-2}
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/kiln-fuzz-target}
cargo fuzz build -s none --release
targets=$(cargo fuzz list)
logs=$(mktemp -d)
run() {
    # -rss_limit_mb bounds a decoder that would inflate without end;
    # -timeout flags an input that takes over 10 s.
    cargo fuzz run -s none --release "$1" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        > "$logs/$1.log" 2>&1 && echo "$1 ok" || echo "$1 FAILED"
}
export -f run
export seconds logs
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run "$@"' _ {}
{
    echo "fuzzed $(date -u +%Y-%m-%d) at $(git rev-parse --short HEAD), ${seconds} s per target, ${jobs} at a time"
    for target in $targets; do
        log="$logs/$target.log"
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
        crashed=$(grep -c 'SUMMARY: libFuzzer\|panicked at' "$log" || true)
        echo "$target: ${execs} executions, coverage ${cov} edges, ${crashed} crash reports"
    done
} | tee last-run.txt
for target in $targets; do
    # Keep the inputs that reach new edges (counters and value profiles
    # would keep thousands more for little).
    cargo fuzz cmin -s none --release "$target" -- -use_counters=0 -use_value_profile=0 \
        > "$logs/$target.cmin.log" 2>&1 || true
done
echo "corpora minimised; logs in $logs"

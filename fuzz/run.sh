#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time, then prints a summary.
#
#   fuzz/run.sh                      # every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run.sh     # longer
#   fuzz/run.sh template sticky      # only these targets
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain it sets
# RUSTC_BOOTSTRAP=1 so that cargo-fuzz's nightly-only flags (-Zsanitizer) work.
# Exits 1 if any target found a crash (inputs in fuzz/artifacts/TARGET/).
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-1}"
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build --release

mkdir -p logs
summary=()
failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    # Seed corpora checked in under fuzz/seeds/TARGET start each run off with real inputs.
    seeds=()
    if [ -d "seeds/$target" ]; then
        seeds=("seeds/$target")
    fi
    log="logs/$target.log"
    echo "== $target: ${seconds}s" >&2
    status=ok
    # -jobs makes libFuzzer run children that log to ./fuzz-N.log: only when asked.
    parallel=()
    if [ "$jobs" -gt 1 ]; then
        parallel=(-jobs="$jobs" -workers="$jobs")
    fi
    # -timeout: one input taking more than 10 s is a hang, reported like a crash.
    if ! cargo fuzz run --release "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 "${parallel[@]}" \
        -print_final_stats=1 >"$log" 2>&1; then
        status=CRASH
        failed=1
    fi
    [ "$jobs" -gt 1 ] && cat fuzz-*.log >>"$log" 2>/dev/null && rm -f fuzz-*.log
    runs=$(grep -ho 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
    corpus=$(find "corpus/$target" -type f | wc -l)
    artifacts=$(find "artifacts/$target" -type f 2>/dev/null | wc -l)
    summary+=("$(printf '%-20s %-6s %12s execs %7s corpus %4s artifacts' "$target" "$status" "$runs" "$corpus" "$artifacts")")
done

echo
echo "target               result        executions   corpus files   artifacts (fuzz/artifacts/TARGET/)"
printf '%s\n' "${summary[@]}"
echo "logs: fuzz/logs/TARGET.log"
exit "$failed"

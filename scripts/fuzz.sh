#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 30), on the stable toolchain.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Cpasses=sancov-module...), so
# the stable compiler is told to accept them with RUSTC_BOOTSTRAP=1. New inputs go to
# fuzz/target/corpus/<target> (not committed); fuzz/corpus/<target> holds the seeds. A crash
# leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>   (from fuzz/)
# Exits non-zero if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-30}"
shift || true
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# libFuzzer is built from C++ source by libfuzzer-sys.
if ! command -v c++ >/dev/null 2>&1; then
    apt-get update && apt-get install -y build-essential
fi

cd fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build
# FUZZ_BUILD_ONLY=1: build the targets and stop (`.ci/run` builds them beside the tests).
if [ -n "${FUZZ_BUILD_ONLY:-}" ]; then
    exit 0
fi

# Targets run side by side, one per core (FUZZ_JOBS to change it): each libFuzzer process is
# single-threaded, so on N cores N targets get their full SECONDS each in 1/N of the wall
# time. Each target's output goes to a log, printed when it ends.
jobs=${FUZZ_JOBS:-$(nproc)}
logs=target/fuzz-logs
mkdir -p "$logs"

run_target() {
    local target=$1 work="target/corpus/$1"
    mkdir -p "$work" "corpus/$target"
    # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: a leak or a blow-up.
    cargo fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -dict=dict/relay.dict >"$logs/$target.log" 2>&1
}

declare -A running=()
failed=()
# Waits for one running target; reports it, and records it if it crashed.
reap() {
    local pid status=0
    wait -n -p pid "${!running[@]}" || status=$?
    local target=${running[$pid]}
    unset "running[$pid]"
    echo "== fuzz $target (${duration}s): $([ $status -eq 0 ] && echo ok || echo "CRASH, exit $status")"
    tail -n 15 "$logs/$target.log"
    [ $status -eq 0 ] || failed+=("$target")
}

for target in "${targets[@]}"; do
    while [ ${#running[@]} -ge "$jobs" ]; do reap; done
    run_target "$target" &
    running[$!]=$target
done
while [ ${#running[@]} -gt 0 ]; do reap; done

if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${duration}s each without a crash"

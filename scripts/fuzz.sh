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

failed=()
for target in "${targets[@]}"; do
    work="target/corpus/$target"
    mkdir -p "$work" "corpus/$target"
    echo "== fuzz $target for ${duration}s"
    # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: a leak or a blow-up.
    if ! cargo fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -dict=dict/relay.dict; then
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${duration}s each without a crash"

#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while (default 60 s each) on its corpus in fuzz/corpus.
# A crash fails the run, leaving the input in fuzz/artifacts/<target>/. Usage:
#   bash scripts/fuzz.sh [seconds] [target...]
# The targets build with libFuzzer's coverage instrumentation and no sanitizer (the code under
# test is safe Rust); cargo-fuzz's -Z flags are allowed on the stable toolchain through
# RUSTC_BOOTSTRAP, so no nightly toolchain is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi
cd fuzz
cargo fuzz build --sanitizer none
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  echo "fuzz: $t for ${secs}s"
  mkdir -p "$work/$t"
  # New inputs go to the scratch directory; the committed corpus is only read.
  set +e
  cargo fuzz run --sanitizer none "$t" "$work/$t" "corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 >"$work/$t.log" 2>&1
  status=$?
  set -e
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$work/$t.log" || true
  if [ "$status" -ne 0 ]; then
    grep -E -A12 "panicked|ERROR|SUMMARY" "$work/$t.log" | head -60 >&2 || tail -40 "$work/$t.log" >&2
    echo "fuzz: $t failed (exit $status); the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done

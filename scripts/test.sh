#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up, format and lint checks, then every test
# (unit, end-to-end, and the differential tests against a stock Envoy), then a minute of each
# fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ENVOY_BIN="${ENVOY_BIN:-$(cat target/envoy-bin)}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
bash scripts/audit.sh
# The end-to-end tests run the ferry and ferry-iptables binaries themselves (same profile).
cargo build -p ferry -p ferry-iptables
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
# The fuzz targets (config, xDS resources, HTTP/1 requests, route matching), a minute each.
bash scripts/fuzz.sh 60

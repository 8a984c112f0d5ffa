#!/usr/bin/env bash
# Builds Ferry and runs it on the bundled example: a listener on :10000 that proxies to a
# second listener on :10001 answering with a direct response. Try, in another terminal:
#   curl -i http://127.0.0.1:10000/hello      and      curl http://127.0.0.1:9901/stats
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ferry
exec ./target/release/ferry -c "${1:-examples/front-proxy.yaml}" --concurrency "${CONCURRENCY:-1}"

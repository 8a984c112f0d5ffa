#!/usr/bin/env bash
# A first side-by-side: the same bootstrap through Envoy and through Ferry (release build), one
# worker each, HTTP/1.1 keep-alive load from wrk against a direct-response upstream listener on
# the same proxy. Reports requests/s, proxy CPU per request and RSS (idle and after load).
# Loopback only; bounded by DURATION seconds per target.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
CONNS="${CONNS:-32}"
ENVOY_BIN="${ENVOY_BIN:-$(cat target/envoy-bin 2>/dev/null || true)}"
[ -x "$ENVOY_BIN" ] || { echo "set ENVOY_BIN or run scripts/setup.sh" >&2; exit 1; }
cargo build --release -p ferry >/dev/null 2>&1
FERRY_BIN=./target/release/ferry
cfg=examples/front-proxy.yaml
cpu_of() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_of() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
tick=$(getconf CLK_TCK)
run() {
  local name=$1 bin=$2
  local pin=""; command -v taskset >/dev/null && pin="taskset -c 0"
  $pin "$bin" -c "$cfg" --concurrency 1 --disable-hot-restart -l error >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 50); do curl -sf http://127.0.0.1:9901/ready >/dev/null && break; sleep 0.2; done
  sleep 1
  local idle; idle=$(rss_of $pid)
  local c0; c0=$(cpu_of $pid)
  local wpin=""; command -v taskset >/dev/null && wpin="taskset -c 1"
  local out; out=$($wpin wrk -t1 -c"$CONNS" -d"${DURATION}s" http://127.0.0.1:10000/hello)
  local c1; c1=$(cpu_of $pid)
  local loaded; loaded=$(rss_of $pid)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local us; us=$(awk -v c=$((c1 - c0)) -v t="$tick" -v n="$reqs" 'BEGIN { printf "%.1f", c / t * 1e6 / n }')
  echo "$name rps=$rps cpu_us_per_rq=$us rss_idle_kb=$idle rss_loaded_kb=$loaded"
}
# Each request crosses the proxy twice (front listener → backend listener), as a sidecar pair would.
run envoy "$ENVOY_BIN"
run ferry "$FERRY_BIN"

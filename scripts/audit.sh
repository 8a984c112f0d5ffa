#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): every dependency's license is a permissive
# one, no wildcard versions, crates only from crates.io. The RustSec advisory database is a
# git repository on GitHub, which this project's machines cannot reach (only the package
# registries), so advisories are checked only where it is reachable: AUDIT_ADVISORIES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deny --version >/dev/null 2>&1; then
  cargo install cargo-deny --locked --version 0.20.2
fi
cargo deny check licenses bans sources
if [ "${AUDIT_ADVISORIES:-0}" = 1 ]; then
  cargo deny check advisories
else
  echo "audit: advisories not checked (set AUDIT_ADVISORIES=1 where GitHub is reachable)"
fi

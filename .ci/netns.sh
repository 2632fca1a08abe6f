#!/usr/bin/env bash
# Network-namespace measurements (issues 9, 10): the harness tests, the ICE-TCP tests, then the link-cut table of
# examples/bench_linkcut.rs (the official Python client next to this SDK's Session).
# Needs root and iproute2; .ci/run calls it last (it skips without root). Arguments go to bench_linkcut, e.g.
#   bash .ci/netns.sh --cuts 2,20 --modes blackhole
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "netns.sh: needs root (ip netns); skipped" >&2
  exit 0
fi
if ! command -v ip >/dev/null 2>&1; then
  echo "netns.sh: iproute2 (ip) is not installed; skipped" >&2
  exit 0
fi
probe="mlcprobe$$"
if ! ip netns add "$probe" 2>/dev/null; then
  echo "netns.sh: this machine does not allow network namespaces (ip netns add failed); skipped" >&2
  exit 0
fi
ip netns del "$probe"
export LIVEKIT_SERVER_BIN="${LIVEKIT_SERVER_BIN:-${MENLO_TOOLS_DIR:-$HOME/.local/share/menlo-robot-sdk/bin}/livekit-server}"
MENLO_NETNS=1 cargo test --all-features --test live netns::
# Restrictive networks (issue 10): the per-path table (UDP; UDP blocked => ICE over TCP; UDP and TCP 7881 blocked
# => TURN over TLS on 443), each next to the official Python client; everything blocked => an error naming each path.
MENLO_NETNS=1 cargo test --all-features --test live icetcp::netns_ -- --test-threads=1 --nocapture
cargo run --quiet --release --example bench_linkcut --features livekit,dev -- "$@"

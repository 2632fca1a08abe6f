#!/usr/bin/env bash
# Benchmarks and size figures. Printed for the record; nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --example bench_control_plane --features dev
# One core for client and emulator alike: cross-core wake-ups on a busy 2-core machine are
# bimodal (14 µs or 75 µs a request) and would drown the difference being measured.
pin=""; command -v taskset >/dev/null 2>&1 && pin="taskset -c 0"
$pin target/release/examples/bench_control_plane
cargo build --quiet --release --example control_plane
size=$(stat -c %s target/release/examples/control_plane)
echo "release size of examples/control_plane (default features): $size bytes ($((size / 1024)) KiB)"
stripped=$(mktemp) && strip -o "$stripped" target/release/examples/control_plane && echo "  stripped: $(stat -c %s "$stripped") bytes" && rm -f "$stripped"
crates=$(cargo tree -e normal --prefix none --no-dedupe 2>/dev/null | sed 's/ (\*)//' | sort -u | wc -l)
echo "crates in cargo tree -e normal (default features, incl. this one): $crates"
LIVEKIT_SERVER_BIN="${LIVEKIT_SERVER_BIN:-${MENLO_TOOLS_DIR:-$HOME/.local/share/menlo-robot-sdk/bin}/livekit-server}" cargo run --quiet --release --example bench_live --features livekit,dev
# The embedded SFU next to livekit-server: start time, state round trip, a 1280×720 frame,
# and 50 robots polled at 10 Hz (issue 7's figures).
LIVEKIT_SERVER_BIN="${LIVEKIT_SERVER_BIN:-${MENLO_TOOLS_DIR:-$HOME/.local/share/menlo-robot-sdk/bin}/livekit-server}" BENCH_ROBOTS=50 BENCH_SECS=30 cargo run --quiet --release --example bench_sfu --features dev
# The quickstart's wall time on the embedded platform (release build, run timed alone).
cargo build --quiet --release --example quickstart --features dev
start=$(date +%s%N); env -u MENLO_API_KEY target/release/examples/quickstart >/dev/null
echo "quickstart on the embedded platform (release): $(( ($(date +%s%N) - start) / 1000000 )) ms wall time"

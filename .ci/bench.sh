#!/usr/bin/env bash
# Benchmarks and size figures. Printed for the record; nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release --example bench_control_plane --features dev
cargo build --quiet --release --example quickstart
size=$(stat -c %s target/release/examples/quickstart)
echo "release size of examples/quickstart (default features): $size bytes ($((size / 1024)) KiB)"
stripped=$(mktemp) && strip -o "$stripped" target/release/examples/quickstart && echo "  stripped: $(stat -c %s "$stripped") bytes" && rm -f "$stripped"
crates=$(cargo tree -e normal --prefix none --no-dedupe 2>/dev/null | sed 's/ (\*)//' | sort -u | wc -l)
echo "crates in cargo tree -e normal (default features, incl. this one): $crates"

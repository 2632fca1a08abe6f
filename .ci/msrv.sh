#!/usr/bin/env bash
# Fails when a dependency declares a `rust-version` above the crate's own: the crate's
# `rust-version` must state what its dependency tree needs. Every package Cargo resolves with
# all features counts (normal, build and dev dependencies, every platform), so the stated
# version holds for any feature set and for building the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

metadata="$(mktemp)"
trap 'rm -f "$metadata"' EXIT
cargo metadata --format-version 1 --all-features --locked >"$metadata"

python3 - "$metadata" <<'PY'
import json
import sys

def version(text):
    return tuple(int(part) for part in text.split("."))

def at_least_3(parts):
    return parts + (0,) * (3 - len(parts))

with open(sys.argv[1]) as f:
    meta = json.load(f)
root_id = meta["resolve"]["root"]
resolved = {node["id"] for node in meta["resolve"]["nodes"]}
packages = {p["id"]: p for p in meta["packages"] if p["id"] in resolved}
root = packages[root_id]
if not root.get("rust_version"):
    sys.exit("msrv: Cargo.toml has no rust-version")
ours = at_least_3(version(root["rust_version"]))

needs = sorted(
    ((at_least_3(version(p["rust_version"])), p["name"], p["version"], p["rust_version"])
     for pid, p in packages.items() if pid != root_id and p.get("rust_version")),
    reverse=True,
)
too_new = [n for n in needs if n[0] > ours]
highest = needs[0] if needs else None
print(f"msrv: crate rust-version {root['rust_version']}; highest dependency need: "
      + (f"{highest[1]} {highest[2]} ({highest[3]})" if highest else "none declared"))
if too_new:
    for _, name, ver, rv in too_new:
        print(f"msrv: {name} {ver} needs rust {rv}", file=sys.stderr)
    sys.exit(f"msrv: {len(too_new)} dependencies need a newer Rust than rust-version {root['rust_version']}")
PY

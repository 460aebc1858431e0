#!/usr/bin/env bash
# Run the core's tests on Windows: cross-compiled for x86_64-pc-windows-gnu
# with Debian's mingw-w64 and run under Wine (Debian's wine64), in a Wine
# prefix of the project's own (file locks, timeouts, shared locks, RLock,
# temporary and PID-file locks, semaphores, open_atomic, and several
# processes on one lock: host/portalocker/tests/cross_process.rs).
#
# Where Wine differs from Windows the tests say so where they assert it:
# see host/portalocker/tests/cross_process.rs (mandatory locks) and
# host/portalocker/src/sys/windows.rs (unlocking an unlocked file).
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${PORTALOCKER_CACHE:-$HOME/.cache/portalocker-rs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export WINEPREFIX="${PORTALOCKER_WINEPREFIX:-$cache/wine}"
export WINEDEBUG=-all

wine=$(command -v wine64 || command -v wine || echo /usr/lib/wine/wine64)
if ! [ -x "$wine" ] || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    echo "wine-test: Wine and mingw-w64 are missing; install them (Debian: sudo apt-get install wine64 gcc-mingw-w64-x86-64), or run scripts/setup.sh as root" >&2
    exit 1
fi

# A prefix of our own, made once, with the ProcessPrng shim in system32.
shim="$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
if ! [ -f "$WINEPREFIX/system.reg" ]; then
    echo "wine-test: creating the Wine prefix $WINEPREFIX"
    "$wine" wineboot --init >/dev/null 2>&1
    "${wine%64}server" -w 2>/dev/null || wineserver -w 2>/dev/null || true
fi
if ! [ -f "$shim" ] || [ scripts/wine/bcryptprimitives.c -nt "$shim" ]; then
    x86_64-w64-mingw32-gcc -shared -O2 -o "$shim" \
        scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -lbcrypt
fi

export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$wine"
cargo test -p portalocker --features async --target x86_64-pc-windows-gnu --locked

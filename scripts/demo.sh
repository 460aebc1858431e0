#!/usr/bin/env bash
# The main job: build the `portalocker` command and start several workers at
# once, Rust CLI invocations and a Python program using portalocker 4.4.2,
# that all append to one journal under one lock. Each worker writes a
# "begin" and an "end" line around a short pause; because they serialise on
# the lock, every begin is followed by its own end, never interleaved.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cache="${PORTALOCKER_CACHE:-$HOME/.cache/portalocker-rs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
python="${PORTALOCKER_PYTHON:-${PORTALOCKER_VENV:-$cache/venv}/bin/python}"

cargo build --release --locked -p portalocker-cli
portalocker="$CARGO_TARGET_DIR/release/portalocker"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
lock="$work/journal.lock"
journal="$work/journal.txt"

echo "demo: 4 CLI workers and 1 Python worker append to one journal under $lock"
for i in 1 2 3 4; do
    "$portalocker" lock "$lock" -- sh -c "echo \"begin cli-$i (pid \$\$)\" >> '$journal'; sleep 0.2; echo \"end   cli-$i\" >> '$journal'" &
done
"$python" - "$lock" "$journal" <<'PY' &
import os, sys, time, portalocker
lock, journal = sys.argv[1:]
with portalocker.Lock(lock, timeout=30):
    with open(journal, "a") as f:
        f.write(f"begin python (pid {os.getpid()})\n"); f.flush()
        time.sleep(0.2)
        f.write("end   python\n")
PY
wait

cat "$journal"
# Check the journal: begins and ends alternate and match.
awk '
    /^begin/ { if (open != "") { bad = 1 } open = $2 }
    /^end/   { if ($2 != open) { bad = 1 } open = "" }
    END { if (bad || NR != 10) { print "demo: INTERLEAVED"; exit 1 } print "demo: 5 workers, no interleaving: each held the lock alone" }
' "$journal"

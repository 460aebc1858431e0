#!/usr/bin/env bash
# The main job: build the example plugin (guest/examples/job-runner) and the
# `portalocker` command, then run at once
#   - 4 plugin instances under `portalocker run`, each running 5 jobs,
#   - 2 native `portalocker lock` loops of 5 jobs each,
#   - 1 Python program using portalocker 4.4.2, 5 jobs,
# all sharing one jobs directory: every job takes the lock journal.lock,
# bumps the counter and writes a begin and an end line to journal.txt.
# Because they all serialise on the same OS lock, the journal never
# interleaves and the counter ends at exactly 35. The script checks both.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cache="${PORTALOCKER_CACHE:-$HOME/.cache/portalocker-rs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
python="${PORTALOCKER_PYTHON:-${PORTALOCKER_VENV:-$cache/venv}/bin/python}"

echo "demo: building the portalocker command and the job-runner plugin"
cargo build --quiet --release --locked -p portalocker-cli
cargo build --quiet --release --locked --manifest-path guest/Cargo.toml --target wasm32-wasip2 -p job-runner
portalocker="$CARGO_TARGET_DIR/release/portalocker"
plugin="$CARGO_TARGET_DIR/wasm32-wasip2/release/job-runner.wasm"

jobs="$(mktemp -d)"
trap 'rm -rf "$jobs"' EXIT
echo "demo: 4 plugins, 2 native loops and 1 Python program share $jobs"

for i in 1 2 3 4; do
    "$portalocker" run --dir "$jobs::/jobs" "$plugin" -- "plugin-$i" 5 &
done
for i in 1 2; do
    (
        for job in 1 2 3 4 5; do
            "$portalocker" lock -q "$jobs/journal.lock" -- sh -c '
                n=$(cat "$1/counter" 2>/dev/null || echo 0)
                echo "begin native-$2 job $3" >> "$1/journal.txt"
                sleep 0.005
                echo $((n + 1)) > "$1/counter"
                echo "end   native-$2 job $3" >> "$1/journal.txt"' sh "$jobs" "$i" "$job"
        done
        echo "native-$i: ran 5 jobs"
    ) &
done
"$python" - "$jobs" <<'PY' &
import sys, time, portalocker
jobs = sys.argv[1]
for job in range(1, 6):
    with portalocker.Lock(f"{jobs}/journal.lock", timeout=60, check_interval=0.001):
        try:
            n = int(open(f"{jobs}/counter").read().strip() or 0)
        except FileNotFoundError:
            n = 0
        with open(f"{jobs}/journal.txt", "a") as journal:
            journal.write(f"begin python job {job}\n"); journal.flush()
            time.sleep(0.005)
            open(f"{jobs}/counter", "w").write(str(n + 1))
            journal.write(f"end   python job {job}\n")
print("python: ran 5 jobs")
PY
wait

echo
echo "demo: the journal (first 12 of $(wc -l < "$jobs/journal.txt") lines):"
head -12 "$jobs/journal.txt" | sed 's/^/    /'
echo "demo: counter = $(cat "$jobs/counter") (expected 35)"
awk -v count="$(cat "$jobs/counter")" '
    /^begin/ { if (open != "") bad = 1; open = $2 }
    /^end/   { if ($2 != open) bad = 1; open = "" }
    END {
        if (bad || open != "" || NR != 70 || count != 35) { print "demo: FAILED: interleaved journal or lost jobs"; exit 1 }
        print "demo: OK: 35 jobs from 7 workers in three kinds of process, never two at once"
    }' "$jobs/journal.txt"

#!/usr/bin/env bash
# Runs the Windows non-blocking and Tokio test binaries many times in a row under Wine and
# counts the runs that fail, alone and beside a CPU hog (one busy process per core).
#
#   bash ci/wine/repeat.sh [RUNS] [TEST ...]
#
# RUNS defaults to 500; TEST names test binaries of pipekit-tests (default: mio_windows
# tokio_windows nonblocking_windows). Each failing run's output is kept under
# target/wine-repeat/. Exits 1 if any run failed. Needs what ci/test.sh installs (Wine, MinGW,
# the x86_64-pc-windows-gnu target); makes the Wine prefix itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-500}"
shift || true
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(mio_windows tokio_windows nonblocking_windows)

export WINEPREFIX="${WINEPREFIX:-$PWD/target/wine}" WINEDEBUG=-all
bash ci/wine/setup.sh
target=x86_64-pc-windows-gnu
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done
# The binaries, built once; cargo prints each executable's path.
mapfile -t exes < <(cargo test --locked --target "$target" -p pipekit-tests "${args[@]}" --no-run \
    --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
[ ${#exes[@]} -eq ${#tests[@]} ] || { echo "repeat.sh: expected ${#tests[@]} test binaries, got ${#exes[@]}" >&2; exit 2; }

logs=target/wine-repeat
mkdir -p "$logs"
wineserver -p >/dev/null 2>&1 || true # keep one wineserver for all runs

hog_pids=()
start_hog() {
    for _ in $(seq "$(nproc)"); do
        (while :; do :; done) &
        hog_pids+=($!)
    done
}
stop_hog() {
    [ ${#hog_pids[@]} -eq 0 ] || kill "${hog_pids[@]}" 2>/dev/null || true
    hog_pids=()
}
trap stop_hog EXIT

failed=0
run_all() {
    local label="$1"
    for exe in "${exes[@]}"; do
        local name fails=0 start
        name="$(basename "$exe" .exe)"
        start=$(date +%s)
        for i in $(seq "$runs"); do
            if ! timeout 300 wine "$exe" --test-threads=2 >"$logs/last.log" 2>&1; then
                fails=$((fails + 1))
                mv "$logs/last.log" "$logs/$label-$name-run$i.log"
            fi
        done
        printf 'repeat.sh: %-10s %-40s %d runs, %d failed (%ds)\n' \
            "$label" "$name" "$runs" "$fails" "$(($(date +%s) - start))"
        failed=$((failed + fails))
    done
}

run_all alone
start_hog
run_all cpu-hog
stop_hog
wineserver -k || true
[ "$failed" -eq 0 ]

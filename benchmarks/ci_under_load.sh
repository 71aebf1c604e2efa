#!/usr/bin/env bash
# The test suite as CI runs it (a fresh clone, `.ci/run`), N times in a row while two busy
# processes keep both cores loaded: the check that no test depends on timing.
# Usage: benchmarks/ci_under_load.sh [N=3] [LOG_DIR=/tmp/ci_under_load]
# BUSY=0 starts no busy loop (when other work, e.g. `tufl ablate` or the demo, loads the cores).
set -uo pipefail
runs=${1:-3}
logs=${2:-/tmp/ci_under_load}
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$logs"
work=$(mktemp -d)
git clone -q "$src" "$work/x"
busy=()
for _ in $(seq "${BUSY:-2}"); do
  python3 -c "while True: pass" &
  busy+=($!)
done
trap 'kill "${busy[@]}" 2>/dev/null; rm -rf "$work"' EXIT
echo "commit $(git -C "$work/x" rev-parse --short HEAD), $(nproc) cores, ${BUSY:-2} busy loops; load $(cut -d' ' -f1 /proc/loadavg)"
for n in $(seq "$runs"); do
  start=$(date +%s)
  (cd "$work/x" && ./.ci/run) > "$logs/run$n.log" 2>&1
  status=$?
  echo "run $n: exit $status in $(( $(date +%s) - start )) s; $(grep -E '[0-9]+ (passed|failed)' "$logs/run$n.log" | tail -1)"
done

#!/usr/bin/env bash
# One entry point for a fresh machine with Python >= 3.10 and pip.
#
#   ./run.sh demo [tufl demo options]   main job: built-in synthetic->realistic benchmark
#   ./run.sh test [pytest options]      the test suite (what CI runs)
#   ./run.sh tufl <command> ...         any tufl command inside the project environment
#
# Each call creates or reuses ./.venv with the pinned dependencies; a second call
# with unchanged requirements skips installation.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${TUFL_VENV:-.venv}
PYTHON=${PYTHON:-python3}

ensure_env() {  # $1: "core" or "test"
    local kind=$1 files=(requirements.txt pyproject.toml)
    [ "$kind" = test ] && files+=(requirements-test.txt)
    local want
    want=$(cat "${files[@]}" | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
    local stamp="$VENV/.tufl-$kind.sha256"
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "[run.sh] preparing $VENV ($kind dependencies)..." >&2
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    local pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
    "${pip[@]}" -r requirements.txt
    [ "$kind" = test ] && "${pip[@]}" -r requirements-test.txt
    "${pip[@]}" --no-deps -e .
    echo "$want" > "$stamp"
    # A test environment is a superset of the core one.
    [ "$kind" = test ] && cat requirements.txt pyproject.toml | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())' > "$VENV/.tufl-core.sha256"
    return 0
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)
        ensure_env core
        exec "$VENV/bin/python" -m tufl demo "$@" ;;
    test)
        ensure_env test
        exec "$VENV/bin/python" -m pytest tests "$@" ;;
    tufl)
        ensure_env core
        exec "$VENV/bin/python" -m tufl "$@" ;;
    *)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        [ -z "$cmd" ] || { echo "unknown command: $cmd" >&2; exit 2; }
        exit 2 ;;
esac

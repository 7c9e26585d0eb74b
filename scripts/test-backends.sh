#!/usr/bin/env bash
# Each folder of tests/backends (a backend's, or the shared lowering's) in a pytest process of
# its own, with the interpreter that backend's workers get (convbench.runner.interpreter_for:
# e.g. mxnet's declared venv), so frameworks are never imported together into one process.
# JOBS folders at a time (default 2); each one's output is printed whole when it ends.
# Exit 1 if any folder fails (all of them still run), after naming the failures.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
JOBS=${JOBS:-2}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run_one() {  # run_one DIR: pytest of DIR in its backend's interpreter; output to $logs
  local dir=$1 name python
  name=$(basename "$dir")
  if ! python=$("$PYTHON" -c 'import sys; from convbench.runner import interpreter_for; print(interpreter_for(sys.argv[1]))' "$name"); then
    echo "no interpreter for $name" >"$logs/$name.out"; echo 1 >"$logs/$name.rc"; return
  fi
  { echo "$python -m pytest -q $dir"; "$python" -m pytest -q "$dir"; } >"$logs/$name.out" 2>&1
  echo $? >"$logs/$name.rc"
}

dirs=()
for dir in tests/backends/*/; do
  ls "$dir"test_*.py >/dev/null 2>&1 && dirs+=("${dir%/}")
done
running=0
for dir in "${dirs[@]}"; do
  run_one "$dir" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait
failed=()
for dir in "${dirs[@]}"; do
  name=$(basename "$dir")
  cat "$logs/$name.out"
  [ "$(cat "$logs/$name.rc")" = 0 ] || failed+=("$name")
done
if [ "${#failed[@]}" -gt 0 ]; then echo "backend test folders failed: ${failed[*]}"; exit 1; fi
echo "every backend test folder passed (${#dirs[@]})"

#!/usr/bin/env bash
# The whole test suite: lint, the panel's unit tests and bundle check, then pytest (unit tests, a real ComfyUI,
# a real PostgreSQL, headless Chromium) on every ComfyUI of the matrix that scripts/provision.sh prepared (0.3.75, and
# 0.8.0 when RUN_TELEMETRY_COMFYUI_080_TARBALL names its tarball). Extra arguments go to pytest, e.g.
# `scripts/test.sh -m "not comfyui"`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
eval "$(bash scripts/provision.sh)"
export COMFYUI_DIR CHROMIUM_PATH RUN_TELEMETRY_COMFYUI_TREES RUN_TELEMETRY_FRONTEND_DIR
# The whole suite fuzzes every route with 8 examples per operation and mode (a bare pytest run of the fast tests: 3).
export RUN_TELEMETRY_FUZZ_EXAMPLES="${RUN_TELEMETRY_FUZZ_EXAMPLES:-8}"

echo "== ruff"
"$VENV/bin/ruff" check .

if [ -f web/package.json ]; then
  echo "== panel: typecheck, unit tests, bundle is up to date"
  (cd web && npm run --silent typecheck && npm test --silent && npm run --silent check-bundle)
fi

echo "== pytest"
if [ "${RUN_TELEMETRY_PARALLEL:-0}" != 1 ] || [[ "${RUN_TELEMETRY_COMFYUI_TREES:-}" != *0.8.0* ]]; then
  exec "$VENV/bin/python" -m pytest "$@"
fi

# RUN_TELEMETRY_PARALLEL=1 (CI): the matrix as two pytest sessions at once, one per ComfyUI version. Most of a
# real-server test is ComfyUI starting, executing or being waited for, so two sessions share two cores well.
#   leg 0.3.75: the ComfyUI-free tests, every 0.3.75 test, and the browser leg with the newest frontend;
#   leg 0.8.0:  every 0.8.0 test and the browser leg with 0.8.0's own frontend.
out="${RUN_TELEMETRY_TEST_OUTPUT:-$here/test-output}"
mkdir -p "$out"
export RUN_TELEMETRY_TEST_OUTPUT="$out"
rm -f "$out"/faults-*.json "$out"/faults-*.md
run_leg() {  # run_leg NAME KEYWORDS ARGS...
  local name=$1 keywords=$2; shift 2
  RUN_TELEMETRY_LEG="$name" "$VENV/bin/python" -m pytest -k "$keywords" --basetemp="$out/pytest-tmp-$name" \
    --junitxml="$out/junit-$name.xml" "$@" > "$out/pytest-$name.log" 2>&1
}
run_leg 0.3.75 "not comfy0.8.0 or fe1.58.1" "$@" & first=$!
run_leg 0.8.0 "comfy0.8.0 and not fe1.58.1" "$@" & second=$!
set +e
wait "$first"; code_first=$?
wait "$second"; code_second=$?
set -e
for name in 0.3.75 0.8.0; do
  echo "== pytest leg $name ($out/pytest-$name.log)"
  cat "$out/pytest-$name.log"
done
echo "== fault report (both legs)"
"$VENV/bin/python" tests/fault_report.py "$out"
"$VENV/bin/python" - "$out/junit-0.3.75.xml" "$out/junit-0.8.0.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET

totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        continue
    for suite in root.iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
failed = totals["failures"] + totals["errors"]
passed = totals["tests"] - failed - totals["skipped"]
print(f"both legs: {passed} passed, {failed} failed, {totals['skipped']} skipped")
PY
for code in "$code_first" "$code_second"; do
  [ "$code" = 0 ] || exit "$code"
done

#!/usr/bin/env bash
# The whole test suite: lint, the panel's unit tests and bundle check, then pytest (unit tests, a real ComfyUI,
# a real PostgreSQL, headless Chromium). Extra arguments go to pytest, e.g. `scripts/test.sh -m "not comfyui"`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
eval "$(bash scripts/provision.sh)"
export COMFYUI_DIR CHROMIUM_PATH

echo "== ruff"
"$VENV/bin/ruff" check .

if [ -f web/package.json ]; then
  echo "== panel: typecheck, unit tests, bundle is up to date"
  (cd web && npm run --silent typecheck && npm test --silent && npm run --silent check-bundle)
fi

echo "== pytest"
exec "$VENV/bin/python" -m pytest "$@"

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

echo "== ruff"
"$VENV/bin/ruff" check .

if [ -f web/package.json ]; then
  echo "== panel: typecheck, unit tests, bundle is up to date"
  (cd web && npm run --silent typecheck && npm test --silent && npm run --silent check-bundle)
fi

echo "== pytest"
exec "$VENV/bin/python" -m pytest "$@"

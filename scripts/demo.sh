#!/usr/bin/env bash
# Starts a real ComfyUI with the pack and demo runs on http://127.0.0.1:8188 (SQLite, default configuration).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
eval "$(RUN_TELEMETRY_SKIP_BROWSER=1 bash scripts/provision.sh)"
export COMFYUI_DIR
exec "$VENV/bin/python" scripts/demo.py "$@"

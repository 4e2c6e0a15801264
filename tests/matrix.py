"""The real-server matrix for the tests: which ComfyUI legs exist, and skipping (or, under
RUN_TELEMETRY_REQUIRE_ALL=1, failing) with a clear reason when a leg is not provisioned."""

from __future__ import annotations

import os

import pytest
from comfy_harness import ComfyTree, comfyui_trees, frontend_root, matrix_versions, pinned_frontend

REQUIRE_ALL = os.environ.get("RUN_TELEMETRY_REQUIRE_ALL") == "1"


def skip_or_fail(reason: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (RUN_TELEMETRY_REQUIRE_ALL=1: nothing may be skipped)")
    pytest.skip(reason)


def missing_tree_reason(version: str) -> str:
    hint = ("set RUN_TELEMETRY_COMFYUI_080_TARBALL to comfyui-0.8.0.tar.gz and run scripts/provision.sh"
            if version == "0.8.0" else "run scripts/provision.sh or set COMFYUI_DIR")
    return f"ComfyUI {version} is not provisioned, skipped its leg of the matrix ({hint})"


def require_tree(version: str, frontend: str | None = None) -> ComfyTree:
    """The matrix leg for `version`, served with `frontend` (default: the tree's pinned one, from the provisioned
    frontends when there), or skip/fail saying what is missing."""
    root = comfyui_trees().get(version)
    if root is None:
        skip_or_fail(missing_tree_reason(version))
    wanted = frontend or pinned_frontend(root)
    static = frontend_root(wanted)
    if frontend and static is None:
        skip_or_fail(f"ComfyUI frontend {frontend} is not provisioned (scripts/provision.sh downloads it)")
    return ComfyTree(version=version, root=root, frontend=wanted if static else None, front_end_root=static)


def matrix_header() -> str:
    trees = comfyui_trees()
    lines = []
    for version in matrix_versions():
        root = trees.get(version)
        if root is None:
            lines.append(f"ComfyUI {version}: MISSING, {missing_tree_reason(version)}")
        else:
            pinned = pinned_frontend(root)
            served = f"frontend {pinned} (--front-end-root)" if frontend_root(pinned) else "its installed frontend"
            lines.append(f"ComfyUI {version} at {root} with {served}")
    return "real-server matrix: " + "; ".join(lines)

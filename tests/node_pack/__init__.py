"""Nodes the real-ComfyUI tests need, linked into each test server's custom_nodes (tests/comfy_harness.py).

Not part of the pack: users never load these. Model-free, CPU-only.

- `TelemetryTestExpand` expands at run time into a chain of ComfyUI's own ImageInvert nodes, built with
  `comfy_execution.graph_utils.GraphBuilder` and returned as `{"result": ..., "expand": graph}` (ComfyUI's node
  expansion; execution.py adds the inner nodes as ephemeral nodes whose parent is this node).
- `TelemetryTestSleep` holds the worker for a given time, so that prompts queued behind it can be cancelled
  before they start.
"""

from __future__ import annotations

import time
from typing import Any


class TelemetryTestExpand:
    CATEGORY = "testing/telemetry"
    FUNCTION = "expand"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        return {"required": {"image": ("IMAGE",), "count": ("INT", {"default": 2, "min": 1, "max": 16})}}

    def expand(self, image: Any, count: int) -> dict[str, Any]:
        from comfy_execution.graph_utils import GraphBuilder

        graph = GraphBuilder()
        current: Any = image
        for _ in range(count):
            current = graph.node("ImageInvert", image=current).out(0)
        return {"result": (current,), "expand": graph.finalize()}


class TelemetryTestSleep:
    CATEGORY = "testing/telemetry"
    FUNCTION = "sleep"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        return {"required": {"seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 60.0})}}

    def sleep(self, seconds: float) -> dict[str, Any]:
        time.sleep(seconds)
        return {}


NODE_CLASS_MAPPINGS = {"TelemetryTestExpand": TelemetryTestExpand, "TelemetryTestSleep": TelemetryTestSleep}

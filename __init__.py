"""Run Telemetry: a ComfyUI custom node pack that records every workflow run.

ComfyUI imports this file at start-up. It starts the recorder, installs the execution hooks, adds the REST
routes under /telemetry and serves the panel from web/dist. Nothing here may stop ComfyUI from starting.
"""

import logging
import sys

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web/dist"

# Only inside a ComfyUI process (its server and execution modules are loaded before custom nodes); importing
# the package elsewhere (pytest, tools) must not start a recorder.
_IN_COMFYUI = "execution" in sys.modules and "folder_paths" in sys.modules

try:
    if _IN_COMFYUI:
        from .telemetry.capture.plugin import start_plugin

        start_plugin()
except Exception:  # the pack must never break ComfyUI
    logging.getLogger("run_telemetry").exception("Run Telemetry failed to load; ComfyUI continues without it")



async def comfy_entrypoint():  # noqa: ANN201 - returns ComfyUI's ComfyExtension, imported only inside ComfyUI
    """The V3 entry point, beside the V1 mappings above. ComfyUI's loader takes the V1 branch whenever
    NODE_CLASS_MAPPINGS exists (nodes.load_custom_node in 0.3.75 and 0.8.0), and the import above has then already
    started the pack and registered its ExecutionLifecycle handler where ComfyUI has that API. A loader that
    calls this instead gets an extension whose `on_load` does the same (idempotent: one plugin, one handler)."""
    from comfy_api.latest import ComfyExtension

    class RunTelemetryExtension(ComfyExtension):
        async def on_load(self) -> None:
            try:
                from .telemetry.capture.plugin import start_plugin

                start_plugin()
            except Exception:
                logging.getLogger("run_telemetry").exception("Run Telemetry failed to load")

        async def get_node_list(self) -> list:
            return []  # the Run Label node is a V1 node, registered through NODE_CLASS_MAPPINGS

    return RunTelemetryExtension()


__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY", "comfy_entrypoint"]

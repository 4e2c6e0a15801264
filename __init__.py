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

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

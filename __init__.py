"""Run Telemetry: a ComfyUI custom node pack that records every workflow run.

ComfyUI imports this file at start-up. It starts the recorder, installs the execution hooks, adds the REST
routes under /telemetry and serves the panel from web/dist. Nothing here may stop ComfyUI from starting.
"""

import logging

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web/dist"

try:
    from .telemetry.capture.plugin import start_plugin

    start_plugin()
except Exception:  # the pack must never break ComfyUI
    logging.getLogger("run_telemetry").exception("Run Telemetry failed to load; ComfyUI continues without it")

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

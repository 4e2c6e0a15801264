"""The standalone watcher: records the runs of a ComfyUI the pack is not installed in, through its HTTP and
websocket API, with the same collector, recorder, store and REST routes as the plugin."""

from .client import ComfyClient, ComfyUnavailable
from .watcher import Watcher

__all__ = ["ComfyClient", "ComfyUnavailable", "Watcher"]

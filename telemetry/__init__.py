"""Run Telemetry: records every ComfyUI run into a database and serves it over REST.

Everything in this package except `telemetry.capture` imports and runs without ComfyUI.
"""

__version__ = "0.1.0"

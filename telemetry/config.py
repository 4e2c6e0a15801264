"""Configuration: defaults, then a JSON config file, then environment variables (which win).

Config file: `TELEMETRY_CONFIG` if set, else `<data dir>/config.json`. The data dir is ComfyUI's system user
directory for the pack (`<user>/__run_telemetry`), which ComfyUI's `/userdata` route can never serve.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

log = logging.getLogger("run_telemetry.config")

ENV_PREFIX = "TELEMETRY_"


@dataclass
class TelemetryConfig:
    database_url: str | None = None  # None: SQLite at <data dir>/telemetry.db
    gpu_sample_interval_ms: int = 100
    gpu_samples_per_run: int = 600  # stored per run, downsampled keeping peaks
    retention_days: float | None = None
    retention_max_runs: int | None = None
    buffer_max_runs: int = 10_000  # runs kept in memory while the database is unavailable
    queue_max_events: int = 50_000  # bound on the worker → recorder hand-off
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    instance: str | None = None  # defaults to host:port
    enabled: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(name: str, raw: str, annotation: str) -> Any:
    if raw.strip().lower() in ("", "none", "null"):
        return None
    if "bool" in annotation:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if "int" in annotation:
        return int(raw)
    if "float" in annotation:
        return float(raw)
    return raw


def load_config(data_dir: str, environ: dict[str, str] | None = None) -> TelemetryConfig:
    """Read the config file and environment. Bad values are logged and skipped: they never stop ComfyUI."""
    environ = dict(os.environ if environ is None else environ)
    config = TelemetryConfig()
    known = {f.name: str(f.type) for f in fields(TelemetryConfig)}
    path = environ.get("TELEMETRY_CONFIG") or os.path.join(data_dir, "config.json")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            for key, value in (data.items() if isinstance(data, dict) else []):
                if key in known:
                    setattr(config, key, value)
                elif key != "analysis":
                    log.warning("telemetry config %s: unknown key %r ignored", path, key)
        except (OSError, ValueError) as exc:
            log.warning("telemetry config %s could not be read (%s); using defaults", path, exc)
    for name, annotation in known.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        try:
            setattr(config, name, _coerce(name, raw, annotation))
        except ValueError:
            log.warning("environment %s%s=%r is not a valid %s; ignored", ENV_PREFIX, name.upper(), raw, annotation)
    return config

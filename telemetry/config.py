"""The one validated configuration: defaults, then the JSON config file, then environment variables (which win).

Config file: `TELEMETRY_CONFIG` if set, else `<data dir>/config.json`. The data dir is ComfyUI's system user
directory for the pack (`<user>/__run_telemetry`), which ComfyUI's `/userdata` route can never serve. Its keys
are the settings below (lower case, no prefix) plus an `"analysis"` object (`telemetry.analysis.config`);
environment variables are `TELEMETRY_<KEY>`.

Every value goes through `telemetry.validation`, the same path `PUT /telemetry/config` takes: "50000" is 50000,
"false" is false, and a value that cannot be used (a typo, a negative size, a file that does not parse) becomes a
warning naming the key, the value, what was expected and the value used instead. Warnings are logged and served
in `/telemetry/health` (`config_warnings`); `load_config` never raises, so nothing in a config stops ComfyUI or
makes a hook raise.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr

from .analysis.config import SECTION as ANALYSIS_SECTION
from .analysis.config import AnalysisConfig, settings_from_file
from .validation import ConfigWarning, NoBool, apply_settings, read_config_file

log = logging.getLogger("run_telemetry.config")

ENV_PREFIX = "TELEMETRY_"
CONFIG_FILE_NAME = "config.json"
_NULLS = ("none", "null")
_SECRET_KEYS = frozenset({"admin_token", "webhook_secret"})

PositiveInt = Annotated[int, NoBool, Field(ge=1, le=2**62)]
# The schema's DDL is kept for SQLite and PostgreSQL (store.migrations): other databases are not offered.
DATABASE_SCHEMES = ("sqlite", "sqlite3", "sqliteext", "postgres", "postgresql", "postgresext", "postgresqlext",
                    "postgres+pool")


def _known_database_scheme(url: str) -> str:
    """What `store.database.open_database` can open; anything else would keep the whole pack from starting."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in DATABASE_SCHEMES or not rest or len(url) > 4096:
        raise ValueError("not a supported database URL")
    return url.strip()


class TelemetryConfig(BaseModel):
    """The pack's settings. `warnings` lists what could not be used; `path` is the config file read."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    database_url: Annotated[str, AfterValidator(_known_database_scheme)] | None = Field(  # None: SQLite here
        None, json_schema_extra={"expected": "a database URL: sqlite:///path/to/file.db or "
                                             "postgresql://user:password@host:5432/database"})
    gpu_sample_interval_ms: Annotated[int, NoBool, Field(ge=1, le=3_600_000)] = 100
    gpu_samples_per_run: Annotated[int, NoBool, Field(ge=1, le=1_000_000)] = 600  # stored per run, peaks kept
    retention_days: Annotated[float, NoBool, Field(gt=0, le=1e6, allow_inf_nan=False)] | None = None
    retention_max_runs: PositiveInt | None = None
    buffer_max_runs: PositiveInt = 10_000  # runs kept in memory while the database is unavailable
    queue_max_events: PositiveInt = 50_000  # bound on the worker → recorder hand-off
    retry_initial_s: Annotated[float, NoBool, Field(gt=0, le=3600, allow_inf_nan=False)] = 1.0
    retry_max_s: Annotated[float, NoBool, Field(gt=0, le=86_400, allow_inf_nan=False)] = 60.0
    instance: Annotated[str, Field(min_length=1, max_length=200)] | None = None  # defaults to host:port
    enabled: bool = True
    # Required as `Authorization: Bearer <token>` by prune and config writes when ComfyUI listens beyond
    # loopback. Never served, logged or stored in the database.
    admin_token: Annotated[str, Field(min_length=8, max_length=4096)] | None = None
    # Webhooks (telemetry.webhooks): a comma list of URLs (environment) or, in the config file, a list of URLs
    # or {"url", "events", "format"} objects; each entry is checked by telemetry.webhooks.config.
    # Any JSON here: telemetry.webhooks.config checks each entry and says what it expected.
    webhook_urls: Any = None
    # Signs every webhook body (HMAC-SHA256). Never served, logged, stored or sent.
    webhook_secret: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    webhook_timeout_s: Annotated[float, NoBool, Field(gt=0, le=300, allow_inf_nan=False)] = 5.0
    webhook_retry_initial_s: Annotated[float, NoBool, Field(gt=0, le=86_400, allow_inf_nan=False)] = 10.0
    webhook_retry_max_s: Annotated[float, NoBool, Field(gt=0, le=86_400, allow_inf_nan=False)] = 3600.0
    webhook_retry_window_s: Annotated[float, NoBool, Field(gt=0, le=30 * 86_400, allow_inf_nan=False)] = 86_400.0
    # Where people open ComfyUI (e.g. https://render-1.studio.lan:8188): webhooks link to the run in the panel.
    public_url: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    # What a kWh of electricity costs: prices each run's GPU energy (/stats total_cost, the panel, /metrics).
    # None: no cost is shown. `currency` only labels it (e.g. "EUR").
    energy_price_per_kwh: Annotated[float, NoBool, Field(ge=0, le=1e6, allow_inf_nan=False)] | None = None
    currency: Annotated[str, Field(min_length=1, max_length=8, pattern=r"^[A-Za-z$€£¥]+$")] | None = None
    # ComfyUI's own history: the last N runs put back into its in-memory history at start (0: off).
    history_restore_runs: Annotated[int, NoBool, Field(ge=0, le=10_000)] = 200
    # A running node past this many times its expected duration sends `telemetry.slow` to the panel.
    slow_node_factor: Annotated[float, NoBool, Field(gt=1, le=1000, allow_inf_nan=False)] = 3.0
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)

    _warnings: list[ConfigWarning] = PrivateAttr(default_factory=list)
    _path: str | None = PrivateAttr(default=None)

    @property
    def warnings(self) -> list[ConfigWarning]:
        return self._warnings

    @property
    def path(self) -> str | None:
        return self._path

    def to_dict(self) -> dict[str, Any]:
        """The settings without secrets (the admin token shows as set or not)."""
        data = self.model_dump(exclude=set(_SECRET_KEYS))
        data["admin_token_set"] = self.admin_token is not None
        data["webhook_secret_set"] = self.webhook_secret is not None
        from .webhooks.config import targets_of  # webhook URLs often hold a token: only their redacted form

        data["webhook_urls"] = [target.label for target in targets_of(self)]
        return data

    def warning_dicts(self) -> list[dict[str, Any]]:
        return [w.to_dict() for w in self._warnings]


_TOP_KEYS = frozenset(TelemetryConfig.model_fields) - {"analysis"}


def _consistency(config: TelemetryConfig) -> list[tuple[tuple[str, ...], str]]:
    problems: list[tuple[tuple[str, ...], str]] = []
    if config.retry_max_s < config.retry_initial_s:
        problems.append((("retry_max_s", "retry_initial_s"), f"at least retry_initial_s ({config.retry_initial_s:g})"))
    if config.webhook_retry_max_s < config.webhook_retry_initial_s:
        problems.append((("webhook_retry_max_s", "webhook_retry_initial_s"),
                         f"at least webhook_retry_initial_s ({config.webhook_retry_initial_s:g})"))
    return problems


def config_path(data_dir: str, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(ENV_PREFIX + "CONFIG") or os.path.join(data_dir, CONFIG_FILE_NAME)


def _environment_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """`TELEMETRY_<KEY>` values by key; empty means unset, "none"/"null" means null for optional keys."""
    values: dict[str, Any] = {}
    for key in _TOP_KEYS:
        raw = environ.get(ENV_PREFIX + key.upper())
        if raw is None or raw.strip() == "":
            continue
        values[key] = None if raw.strip().lower() in _NULLS and _optional(key) else raw.strip()
    return values


def _optional(key: str) -> bool:
    return TelemetryConfig.model_fields[key].default is None


def load_config(data_dir: str, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
    """Defaults, the config file, then the environment. Never raises: unusable values are warnings."""
    environ = dict(os.environ if environ is None else environ)
    path = config_path(data_dir, environ)
    warnings: list[ConfigWarning] = []
    data, problem = read_config_file(path)
    file_source = f"config file {path}"
    if problem:
        warnings.append(ConfigWarning(file_source, "(file)", None, problem, "the defaults and the environment",
                                      kind="file"))
    top = {k: v for k, v in data.items() if k != ANALYSIS_SECTION}
    base = TelemetryConfig.model_construct(**TelemetryConfig().model_dump(exclude={"analysis"}),
                                           analysis=AnalysisConfig())
    config, found = apply_settings(TelemetryConfig, base, top, source=file_source, skip=frozenset({ANALYSIS_SECTION}),
                                   check=_consistency)
    warnings += found
    config, found = apply_settings(TelemetryConfig, config, _environment_values(environ), source="environment",
                                   check=_consistency)
    warnings += found
    analysis, found = settings_from_file(data.get(ANALYSIS_SECTION), file_source)
    warnings += [dataclasses.replace(w, key=f"{ANALYSIS_SECTION}.{w.key}") for w in found]
    config = TelemetryConfig.model_construct(**{**config.__dict__, "analysis": analysis})
    from .webhooks.config import target_warnings  # the entries of webhook_urls, one warning per unusable part

    warnings += target_warnings(config)
    warnings = [_redacted(w) for w in warnings]
    config._warnings = warnings
    config._path = path
    for warning in warnings:
        log.warning("Run Telemetry config: %s", warning.message)
    return config


def _redacted(warning: ConfigWarning) -> ConfigWarning:
    if warning.key == "webhook_urls" and warning.source != "config":
        # a value the type check refused, as written: it may hold webhook tokens (telemetry.webhooks.config's
        # own warnings, source "config", show URLs redacted)
        return dataclasses.replace(warning, value="(hidden)")
    if warning.key in _SECRET_KEYS and warning.value is not None:
        return dataclasses.replace(warning, value="(hidden)", used="(hidden)" if warning.used else None)
    if warning.key == "database_url":
        from .store.database import redact_url

        def hide(value: Any) -> Any:
            return redact_url(value) if isinstance(value, str) else value
        return dataclasses.replace(warning, value=hide(warning.value), used=hide(warning.used))
    return warning


__all__ = ["ENV_PREFIX", "TelemetryConfig", "ConfigWarning", "config_path", "load_config"]

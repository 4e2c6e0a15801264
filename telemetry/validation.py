"""Typed settings, validated one key at a time: the single path by which the environment, the config file and
`PUT /telemetry/config` turn raw values into settings (`telemetry.config`, `telemetry.analysis.config`).

Values are read the way people write them: "50000" is 50000 and "false" is false (pydantic's lax mode), but a
boolean is never a number. `apply_settings` returns the settings with every usable value applied and, for each
value that cannot be used, a `ConfigWarning` naming the key, the value, what was expected and the value used
instead; `strict=True` raises `ConfigError` instead (a 400 for the PUT). Nothing here raises anything else.

The config file itself is read by `read_config_file` (never raises) and rewritten only by `write_config_section`,
which refuses (`ConfigFileError`, a 409) to overwrite a file it cannot parse: the user's other keys would be lost.
"""

from __future__ import annotations

import json
import math
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, BeforeValidator, TypeAdapter, ValidationError

from .fileperms import write_private_file
from .filters import FilterError

M = TypeVar("M", bound=BaseModel)
Check = Callable[[Any], list[tuple[tuple[str, ...], str]]]
_NoneType = type(None)


class ConfigError(FilterError):
    """A setting that cannot be used, from a request (served as a 400). The message names the key, what it
    accepts and what it got."""


class ConfigFileError(Exception):
    """The config file exists but is not a JSON object; it is left as it is (served as a 409)."""


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


NoBool = BeforeValidator(_no_bool)
"""Put on numeric fields: `true` for a count or a threshold is a mistake, not 1."""


@dataclass(frozen=True)
class ConfigWarning:
    """A value that could not be used. `kind`: "value" (a known key with an unusable value), "unknown" (a key
    that is no setting) or "file" (the config file as a whole)."""

    source: str  # "config file /path", "environment", "request"
    key: str
    value: Any
    expected: str
    used: Any
    kind: str = "value"

    @property
    def message(self) -> str:
        if self.kind == "file":
            return f"{self.source} {self.expected}; using {self.used}"
        if self.kind == "unknown":
            return f"{self.source}: unknown key {self.key!r} ignored (known: {self.expected})"
        return (f"{self.source}: {self.key} = {_show(self.value)} cannot be used (expected {self.expected}); "
                f"using {_show(self.used)}")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "key": self.key, "value": _show(self.value), "expected": self.expected,
                "used": self.used if _plain(self.used) else _show(self.used), "message": self.message}


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value))


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def expectation(model: type[BaseModel], name: str) -> str:
    """What a field accepts, in words: "an integer between 1 and 1000", "true or false", "a string or null"."""
    field = model.model_fields[name]
    if isinstance(field.json_schema_extra, dict) and "expected" in field.json_schema_extra:
        return str(field.json_schema_extra["expected"])
    annotation = field.annotation
    metadata = list(field.metadata)
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not _NoneType]
        optional = len(args) < len(get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
    if get_origin(annotation) is Annotated:
        annotation, *inner = get_args(annotation)
        for meta in inner:
            metadata.extend(getattr(meta, "metadata", None) or [meta])
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(annotation,
                                                                                                 "a valid value")
    low = high = None
    low_open = high_open = False
    min_length = max_length = None
    for meta in metadata:
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            low, low_open = meta.gt, True
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
        elif isinstance(meta, annotated_types.Lt):
            high, high_open = meta.lt, True
        elif isinstance(meta, annotated_types.MinLen):
            min_length = meta.min_length
        elif isinstance(meta, annotated_types.MaxLen):
            max_length = meta.max_length
    if low is not None and high is not None and not low_open and not high_open:
        words += f" between {_number(low)} and {_number(high)}"
    else:
        if low is not None:
            words += f" above {_number(low)}" if low_open else f" of at least {_number(low)}"
        if high is not None:
            words += (" and" if low is not None else "") + (f" below {_number(high)}" if high_open
                                                            else f" of at most {_number(high)}")
    if max_length is not None:
        words += f" of {min_length or 0} to {max_length} characters"
    return words + (" or null" if optional else "")


_ADAPTERS: dict[tuple[type, str], TypeAdapter] = {}


def _adapter(model: type[BaseModel], name: str) -> TypeAdapter:
    key = (model, name)
    adapter = _ADAPTERS.get(key)
    if adapter is None:
        field = model.model_fields[name]
        adapter = TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)
        _ADAPTERS[key] = adapter
    return adapter


def validate_value(model: type[BaseModel], name: str, value: Any) -> Any:
    """The value as the field reads it; ValueError (with the field's expectation) when it cannot be used."""
    try:
        return _adapter(model, name).validate_python(value)
    except ValidationError:
        raise ValueError(expectation(model, name)) from None


def apply_settings(model: type[M], base: M, changes: Any, *, source: str, strict: bool = False,
                   skip: frozenset[str] = frozenset(), check: Check | None = None,
                   ) -> tuple[M, list[ConfigWarning]]:
    """`base` with the usable values of `changes` applied (keys of `model`; keys in `skip` are left to the
    caller). `check` returns cross-field problems as ((key, other keys...), expectation): those keys keep their
    `base` values."""
    warnings: list[ConfigWarning] = []

    def problem(key: str, value: Any, expected: str, used: Any) -> None:
        if strict:
            raise ConfigError(f"'{key}' must be {expected}, got {_show(value)}")
        warnings.append(ConfigWarning(source, key, value, expected, used))

    if not isinstance(changes, Mapping):
        if strict:
            raise ConfigError("the settings must be a JSON object of setting: value, e.g. "
                              "{\"duration_threshold_ms\": 90000}")
        warnings.append(ConfigWarning(source, "(settings)", changes, "is not a JSON object of settings",
                                      "the defaults", kind="file"))
        return base, warnings
    unknown = [str(k) for k in changes if k not in model.model_fields and k not in skip]
    if unknown:
        if strict:
            raise ConfigError(f"unknown setting(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(model.model_fields)}")
        for key in unknown:
            warnings.append(ConfigWarning(source, key, changes[key], ", ".join(model.model_fields), None,
                                          kind="unknown"))
    values = dict(base.__dict__)  # shallow: nested settings stay models
    for key, value in changes.items():
        if key not in model.model_fields:
            continue
        try:
            values[key] = validate_value(model, key, value)
        except ValueError as exc:
            problem(key, value, str(exc), values[key])
    result = model.model_construct(**values)
    for keys, expected in (check(result) if check else []):
        key = keys[0]
        problem(key, values[key], expected, getattr(base, key))
        for name in keys:  # the base is consistent: go back to it for every key involved
            values[name] = getattr(base, name)
    if check:
        result = model.model_construct(**values)
    return result, warnings


# -- the config file ----------------------------------------------------------------------------------------


def read_config_file(path: str | None) -> tuple[dict[str, Any], str | None]:
    """The file's JSON object ({} when there is no file) and, when it cannot be used, why. Never raises."""
    if not path or not os.path.exists(path):
        return {}, None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        return {}, f"cannot be read as JSON ({exc})"
    if not isinstance(data, dict):
        return {}, f"is not a JSON object (it holds {type(data).__name__ if data is not None else 'null'})"
    return data, None


def write_config_section(path: str, key: str, value: Any) -> None:
    """Set `key` of the JSON object in the config file at `path`, keeping every other key. The file is replaced
    atomically and created owner-only (0600, its folder 0700). A file that exists but does not parse as a JSON
    object is never overwritten: `ConfigFileError` says why."""
    data, problem = read_config_file(path)
    if problem:
        raise ConfigFileError(f"the config file {path} {problem}; it was left unchanged. "
                              "Fix or remove it, then try again")
    data[key] = value
    write_private_json(path, data)


def write_private_json(path: str, data: Any) -> None:
    """Write `data` as JSON to `path` atomically, owner-only (`fileperms.write_private_file`)."""
    write_private_file(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))

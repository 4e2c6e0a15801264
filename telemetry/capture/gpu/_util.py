"""Small helpers shared by the GPU modules: lazy imports of torch and pynvml, and calls that must not raise.

Neither torch nor pynvml is imported when this module is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("run_telemetry.gpu")


def _import_torch() -> Any | None:
    try:
        import torch
    except Exception:
        return None
    return torch


def _import_pynvml() -> Any | None:
    try:
        import pynvml
    except Exception:
        return None
    return pynvml


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _attempt(read: Callable[[], Any]) -> Any | None:
    try:
        return read()
    except Exception:
        return None


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception:
        logger.debug("ignored failure in %r", call, exc_info=True)

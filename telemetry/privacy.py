"""What must never be stored: ComfyUI's API keys and anything that looks like a credential."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# execution.SENSITIVE_EXTRA_DATA_KEYS in ComfyUI, plus the names other packs use for credentials.
SENSITIVE_EXTRA_DATA_KEYS = frozenset({"auth_token_comfy_org", "api_key_comfy_org"})
_SENSITIVE_NAME = re.compile(r"(api[_-]?key|auth[_-]?token|access[_-]?token|secret|password|passwd|credential)", re.I)

REDACTED = "[redacted]"


def is_sensitive_key(name: Any) -> bool:
    return isinstance(name, str) and (name in SENSITIVE_EXTRA_DATA_KEYS or bool(_SENSITIVE_NAME.search(name)))


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with every credential-like key's value replaced. Bounded depth for odd inputs."""
    if depth > 64:
        return None
    if isinstance(value, Mapping):
        return {k: (REDACTED if is_sensitive_key(k) else redact(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, depth + 1) for v in value]
    return value


def without_sensitive(extra_data: Any) -> dict[str, Any]:
    """`extra_data` without ComfyUI's API keys (the form `/history` stores)."""
    if not isinstance(extra_data, Mapping):
        return {}
    return {k: v for k, v in extra_data.items() if not is_sensitive_key(k)}

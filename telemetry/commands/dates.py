"""Points in time as the commands take them: `--since 7d`, `--before 2026-11-01`, `--since 2026-11-01T08:00Z`.

A relative value (`90s`, `30m`, `24h`, `7d`, `2w`) counts back from now; an ISO date or date-time without an
offset is local time, one with an offset (`Z`, `+01:00`) is that time. `parse_when` returns milliseconds since
the epoch, the unit of every `*_ms` filter, or raises `argparse.ArgumentTypeError` (argparse: exit 2).
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime

UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_RELATIVE = re.compile(r"(\d{1,9})\s*([smhdw])")
FORMS = "a relative age like 90s, 30m, 24h, 7d or 2w, or an ISO date or date-time like 2026-11-01 or " \
        "2026-11-01T08:00:00Z"


def parse_when(text: str, now_ms: int | None = None) -> int:
    """`text` as milliseconds since the epoch (see the module docstring for the forms)."""
    value = text.strip()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    relative = _RELATIVE.fullmatch(value.lower())
    if relative:
        return now - int(relative.group(1)) * UNIT_MS[relative.group(2)]
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read "Z"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: use {FORMS}") from None
    try:
        stamp = int(moment.timestamp() * 1000)  # naive: local time
    except (OverflowError, OSError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is out of range") from None
    if stamp < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is before 1970")
    return stamp


def when_argument(text: str) -> int:
    """An argparse `type=` for a time option."""
    return parse_when(text)


def format_ms(stamp_ms: int | None) -> str:
    """A stored time as local `YYYY-MM-DD HH:MM:SS` ("-" for none)."""
    if stamp_ms is None:
        return "-"
    return datetime.fromtimestamp(stamp_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")

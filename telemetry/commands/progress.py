"""A progress bar on stderr, drawn only where someone watches it (a terminal), with no dependency."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30
REDRAW_S = 0.1


class ProgressBar:
    """`advance()` once per item; `finish()` draws the last state and ends the line. `total` may be exceeded
    (items added while exporting): the bar then stays full and the count goes on."""

    def __init__(self, total: int, label: str, unit: str = "runs", stream: TextIO | None = None) -> None:
        self.total = max(0, total)
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.done = 0
        self._drawn_at = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._drawn_at >= REDRAW_S:
            self._drawn_at = now
            self._draw()

    def finish(self) -> None:
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self) -> None:
        share = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(share * WIDTH)
        bar = "#" * filled + "." * (WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {share * 100:3.0f}% {self.done}/{self.total} {self.unit}")
        self.stream.flush()


def watched(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

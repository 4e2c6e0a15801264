"""Exponential backoff with jitter for reconnecting to a ComfyUI that is down.

`next_delay()` doubles from `initial_s` up to `max_s`, each delay spread by +-`jitter` (a fraction), so several
watchers of one fleet that lost the same ComfyUI (or a whole rack restarting) do not retry in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(self, initial_s: float = 1.0, max_s: float = 30.0, jitter: float = 0.2,
                 rand: Callable[[], float] = random.random) -> None:
        self.max_s = max(0.001, max_s)
        self.initial_s = min(max(0.001, initial_s), self.max_s)
        self.jitter = min(max(0.0, jitter), 0.9)
        self._rand = rand
        self.attempts = 0

    def reset(self) -> None:
        self.attempts = 0

    def next_delay(self) -> float:
        """The wait before the next attempt: initial * 2**attempts, capped, with jitter (never above the cap)."""
        base = min(self.max_s, self.initial_s * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        spread = base * self.jitter * (2 * self._rand() - 1)
        return min(self.max_s, max(0.001, base + spread))

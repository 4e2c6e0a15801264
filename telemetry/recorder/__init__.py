"""The recorder: the single writer thread between the capture (or the watcher) and the store.

Its parts, each with its own concern: `handoff` (the bounded, non-blocking hand-off from ComfyUI's worker),
`schedule` (what may wait for an idle ComfyUI), `writer` (committing runs, buffering and retrying while the
database is away), `retention` (pruning old runs in batches), `stats` (what was stored and dropped, by reason),
and `recorder` (the thread that runs them, durable at once).
"""

from .handoff import TICK_S, RunJob
from .recorder import CRASH_REASON, Listener, Recorder
from .stats import RecorderStats

__all__ = ["CRASH_REASON", "TICK_S", "Listener", "Recorder", "RecorderStats", "RunJob"]

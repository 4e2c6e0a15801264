"""What the cancel hooks cost ComfyUI's event loop: `PromptQueue.wipe_queue` and `delete_queue_item`, with and
without the pack's wrappers, side by side, at growing queue lengths. The wrappers must stay O(1) (a reference to
the removed items and one job for the recorder), so the added time must not grow with the queue.

The queue class is tests/fakes/comfy.py's copy of ComfyUI 0.8.0's PromptQueue (execution.py:1110-1203), so no
ComfyUI or torch import is needed; the recorder is a plain list (what a submit costs is the recorder's own
benchmark).

    python bench/bench_cancel_hooks.py
"""

from __future__ import annotations

import gc
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from fakes.comfy import PromptQueue  # noqa: E402

from telemetry.capture import hooks  # noqa: E402
from telemetry.collector import BuildContext  # noqa: E402

LENGTHS = (10, 1_000, 100_000)
REPEATS = 200


class ListRecorder:
    def __init__(self) -> None:
        self.jobs: list = []

    def submit(self, job, reason="run", **kwargs) -> bool:  # noqa: ANN001, ANN003
        self.jobs.append(job)
        return True


def _queue_class(wrapped: bool) -> type:
    cls = type("PromptQueue", (PromptQueue,), {})
    if wrapped:
        capture = hooks.Capture(ListRecorder(), BuildContext())
        cls.delete_queue_item = hooks._wrap_delete_queue_item(cls.delete_queue_item, capture)
        cls.wipe_queue = hooks._wrap_wipe_queue(cls.wipe_queue, capture)
    return cls


def _filled(cls: type, length: int) -> PromptQueue:
    queue = cls()
    queue.queue = [(i, f"p{i}", {}, {"create_time": i}, []) for i in range(length)]  # already a heap
    return queue


def _time_us(cls: type, length: int, operation: str) -> float:
    samples, kept = [], []
    gc.collect()
    gc.disable()  # a collection triggered mid-call would charge the queue's size to whichever side hit it
    for _ in range(REPEATS if length < 100_000 else 20):
        queue = _filled(cls, length)
        kept.append(queue.queue)  # both sides: freeing the old list is not what is compared
        began = time.perf_counter_ns()
        if operation == "wipe":
            queue.wipe_queue()
        else:
            queue.delete_queue_item(lambda item: item[1] == "p0")  # the head: ComfyUI's own scan stops at once
        samples.append((time.perf_counter_ns() - began) / 1000)
    kept.clear()
    gc.enable()
    return statistics.median(samples)


def main() -> int:
    print(f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}, "
          f"{platform.processor() or 'unknown cpu'}")
    print(f"{'operation':10} {'queue':>8} {'without µs':>11} {'with µs':>9} {'added µs':>9} {'ratio':>6}")
    for operation in ("wipe", "delete"):
        for length in LENGTHS:
            plain = _time_us(_queue_class(False), length, operation)
            hooked = _time_us(_queue_class(True), length, operation)
            print(f"{operation:10} {length:>8} {plain:>11.2f} {hooked:>9.2f} {hooked - plain:>9.2f} "
                  f"{hooked / plain if plain else float('nan'):>6.2f}")
    print("(whole calls: ComfyUI's own delete is O(n) (pop + heapify); their differences are mostly noise)")
    hand_over = {length: _hand_over_us(length) for length in (LENGTHS[0], LENGTHS[-1])}
    print(f"the hook's own hand-over (Capture.queue_items_cancelled): {hand_over[LENGTHS[0]]:.2f} µs for "
          f"{LENGTHS[0]} items, {hand_over[LENGTHS[-1]]:.2f} µs for {LENGTHS[-1]}; ratio "
          f"{hand_over[LENGTHS[-1]] / hand_over[LENGTHS[0]]:.2f} (about 1: O(1))")
    return 0


def _hand_over_us(length: int) -> float:
    items = [(i, f"p{i}", {}, {}, []) for i in range(length)]
    capture = hooks.Capture(ListRecorder(), BuildContext())
    samples = []
    for _ in range(2000):
        began = time.perf_counter_ns()
        capture.queue_items_cancelled(items)
        samples.append((time.perf_counter_ns() - began) / 1000)
    return statistics.median(samples)


if __name__ == "__main__":
    raise SystemExit(main())

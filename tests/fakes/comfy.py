"""Test doubles shaped on ComfyUI's own code, for the hook unit tests (no ComfyUI needed).

Each class copies the behaviour the pack depends on from a named source, so a test fails where the real code
would break the pack:
- `ProgressHandler`, `ProgressRegistry`, `ProgressModule`: comfy_execution/progress.py (0.3.75 and 0.8.0, same
  file): the base `set_registry` does nothing; `add_progress_handler` calls `handler.set_registry(registry)` and
  then registers it; `reset_progress_state(prompt_id, dynprompt)` makes a new registry per prompt.
- `DynamicPrompt`: comfy_execution/graph.py (0.8.0) `get_node`, `add_ephemeral_node`, `get_parent_node_id`,
  `get_display_node_id` (node expansion adds ephemeral nodes with their parent and display node).
- `PromptQueue`: execution.py:1110-1203 (0.8.0) `put`, `get`, `task_done`, `wipe_queue` (rebinds `self.queue`),
  `delete_queue_item` (first item the predicate accepts; calls `wipe_queue` when it was the only one).
- `SyncOutputCache` (0.8.0 caching.py:260, `def get`) and `AsyncOutputCache` (Comfy-Org/ComfyUI caching.py
  @dec8fb2: `async def get` plus a sync `get_local`).
"""

from __future__ import annotations

import copy
import heapq
import threading
import time
import types
from typing import Any


class ProgressHandler:
    def __init__(self, name: str) -> None:
        self.name = name
        self.enabled = True

    def set_registry(self, registry: Any) -> None:
        pass  # ComfyUI's base class: the registry is dropped unless a handler overrides this

    def start_handler(self, node_id: str, state: Any, prompt_id: str) -> None:
        pass

    def update_handler(self, node_id: str, value: float, max_value: float, state: Any, prompt_id: str,
                       image: Any = None) -> None:
        pass

    def finish_handler(self, node_id: str, state: Any, prompt_id: str) -> None:
        pass

    def reset(self) -> None:
        pass


class ProgressRegistry:
    def __init__(self, prompt_id: str, dynprompt: Any) -> None:
        self.prompt_id = prompt_id
        self.dynprompt = dynprompt
        self.nodes: dict[str, dict[str, Any]] = {}
        self.handlers: dict[str, ProgressHandler] = {}

    def register_handler(self, handler: ProgressHandler) -> None:
        self.handlers[handler.name] = handler

    def start_progress(self, node_id: str) -> None:
        entry = self.nodes.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})
        entry["state"] = "running"
        for handler in self.handlers.values():
            if handler.enabled:
                handler.start_handler(node_id, entry, self.prompt_id)

    def update_progress(self, node_id: str, value: float, max_value: float, image: Any = None) -> None:
        entry = self.nodes.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})
        entry.update(state="running", value=value, max=max_value)
        for handler in self.handlers.values():
            if handler.enabled:
                handler.update_handler(node_id, value, max_value, entry, self.prompt_id, image)

    def set_activity(self, node_id: str, activity: str | None) -> None:
        """Comfy-Org/ComfyUI progress.py @1b71f27: what a running node spends its time on (e.g. "loading"), or
        None to clear it; handlers hear it through update_handler with five positional arguments, no image."""
        entry = self.nodes.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})
        if entry.get("activity") == activity:
            return
        if activity is None:
            entry.pop("activity", None)
        else:
            entry["activity"] = activity
        for handler in self.handlers.values():
            if handler.enabled:
                handler.update_handler(node_id, entry["value"], entry["max"], entry, self.prompt_id)

    def finish_progress(self, node_id: str) -> None:
        entry = self.nodes.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})
        entry["state"] = "finished"
        for handler in self.handlers.values():
            if handler.enabled:
                handler.finish_handler(node_id, entry, self.prompt_id)

    def reset_handlers(self) -> None:
        for handler in self.handlers.values():
            handler.reset()


class ProgressModule(types.SimpleNamespace):
    """The module-level functions of comfy_execution.progress, around one global registry."""

    def __init__(self) -> None:
        super().__init__(ProgressHandler=ProgressHandler, global_progress_registry=None)

    def reset_progress_state(self, prompt_id: str, dynprompt: Any) -> None:
        if self.global_progress_registry is not None:
            self.global_progress_registry.reset_handlers()
        self.global_progress_registry = ProgressRegistry(prompt_id, dynprompt)

    def add_progress_handler(self, handler: ProgressHandler) -> None:
        registry = self.get_progress_state()
        handler.set_registry(registry)
        registry.register_handler(handler)

    def get_progress_state(self) -> ProgressRegistry:
        if self.global_progress_registry is None:
            self.global_progress_registry = ProgressRegistry("", DynamicPrompt({}))
        return self.global_progress_registry


class DynamicPrompt:
    def __init__(self, original_prompt: dict[str, Any]) -> None:
        self.original_prompt = original_prompt
        self.ephemeral_prompt: dict[str, Any] = {}
        self.ephemeral_parents: dict[str, str] = {}
        self.ephemeral_display: dict[str, str] = {}

    def get_node(self, node_id: str) -> Any:
        if node_id in self.ephemeral_prompt:
            return self.ephemeral_prompt[node_id]
        if node_id in self.original_prompt:
            return self.original_prompt[node_id]
        raise KeyError(f"Node {node_id} not found")

    def add_ephemeral_node(self, node_id: str, node_info: Any, parent_id: str, display_id: str) -> None:
        self.ephemeral_prompt[node_id] = node_info
        self.ephemeral_parents[node_id] = parent_id
        self.ephemeral_display[node_id] = display_id

    def get_parent_node_id(self, node_id: str) -> str | None:
        return self.ephemeral_parents.get(node_id, None)

    def get_display_node_id(self, node_id: str) -> str:
        while node_id in self.ephemeral_display:
            node_id = self.ephemeral_display[node_id]
        return node_id


class _Server:
    def __init__(self) -> None:
        self.updates = 0

    def queue_updated(self) -> None:
        self.updates += 1


class PromptQueue:
    def __init__(self, server: Any = None) -> None:
        self.server = server or _Server()
        self.mutex = threading.RLock()
        self.not_empty = threading.Condition(self.mutex)
        self.task_counter = 0
        self.queue: list[Any] = []
        self.currently_running: dict[int, Any] = {}
        self.history: dict[str, Any] = {}

    def put(self, item: Any) -> None:
        with self.mutex:
            heapq.heappush(self.queue, item)
            self.server.queue_updated()
            self.not_empty.notify()

    def get(self, timeout: float | None = None) -> Any:
        with self.not_empty:
            while len(self.queue) == 0:
                self.not_empty.wait(timeout=timeout)
                if timeout is not None and len(self.queue) == 0:
                    return None
            item = heapq.heappop(self.queue)
            i = self.task_counter
            self.currently_running[i] = copy.deepcopy(item)
            self.task_counter += 1
            self.server.queue_updated()
            return (item, i)

    def task_done(self, item_id: int, history_result: Any, status: Any, process_item: Any = None) -> None:
        with self.mutex:
            prompt = self.currently_running.pop(item_id)
            status_dict = dict(status) if status is not None else None
            if process_item is not None:
                prompt = process_item(prompt)
            self.history[prompt[1]] = {"prompt": prompt, "outputs": {}, "status": status_dict}
            self.history[prompt[1]].update(history_result)
            self.server.queue_updated()

    def wipe_queue(self) -> None:
        with self.mutex:
            self.queue = []
            self.server.queue_updated()

    def delete_queue_item(self, function: Any) -> bool:
        with self.mutex:
            for x in range(len(self.queue)):
                if function(self.queue[x]):
                    if len(self.queue) == 1:
                        self.wipe_queue()
                    else:
                        self.queue.pop(x)
                        heapq.heapify(self.queue)
                    self.server.queue_updated()
                    return True
        return False


class NewestPromptQueue(PromptQueue):
    """The queue of the newest cores, as Comfy-Org/ComfyUI server.py @5e14d797 and execution.py @04e2a914 use it:
    items are 6-tuples `(number, prompt_id, prompt, extra_data, outputs_to_execute, sensitive)` (the API keys
    travel in `sensitive`, app/prompt_worker.py @280bc659 puts them back into extra_data for `execute` and strips
    them with `process_item` in task_done); `put` returns whether it queued the item (the server answers 409
    "prompt_id already exists" on False; clients may now choose the prompt id); `wipe_queue` returns what it
    removed; `interrupt_if_running(prompt_id)` interrupts only while that prompt runs. The execution.py that
    returns False from `put` was not among the files seen: it is taken to refuse an id that is queued, running or
    in history."""

    def __init__(self, server: Any = None, interrupt: Any = None) -> None:
        super().__init__(server)
        self.interrupt = interrupt

    def put(self, item: Any) -> bool:  # type: ignore[override]
        with self.mutex:
            prompt_id = item[1]
            if (prompt_id in self.history or any(q[1] == prompt_id for q in self.queue)
                    or any(r[1] == prompt_id for r in self.currently_running.values())):
                return False
            heapq.heappush(self.queue, item)
            self.server.queue_updated()
            self.not_empty.notify()
            return True

    def wipe_queue(self) -> list:  # type: ignore[override]
        with self.mutex:
            removed = self.queue
            self.queue = []
            self.server.queue_updated()
            return removed

    def interrupt_if_running(self, prompt_id: str) -> bool:
        with self.mutex:
            for item in self.currently_running.values():
                if item[1] == prompt_id:
                    self.interrupt()
                    return True
        return False


class CacheEntry(types.SimpleNamespace):
    """caching.CacheEntry: `ui` and `outputs` (a list of output slots, each a list of values)."""


class SyncOutputCache:
    def __init__(self, entries: dict[str, Any]) -> None:
        self.entries = entries

    def get(self, node_id: str) -> Any:
        return self.entries.get(node_id)


class AsyncOutputCache:
    def __init__(self, entries: dict[str, Any]) -> None:
        self.entries = entries
        self.async_calls = 0

    async def get(self, node_id: str) -> Any:
        self.async_calls += 1
        return self.entries.get(node_id)

    def get_local(self, node_id: str) -> Any:
        return self.entries.get(node_id)


class RamPressureOutputCache(AsyncOutputCache):
    """The RAM_PRESSURE cache (the newest cores' default): `get_local` is BasicCache.get_local (caching.py
    @dec8fb2), which returns None once `ram_release` has evicted the entry, as it may between nodes."""

    def ram_release(self) -> None:
        self.entries.clear()


class Shape(tuple):
    """A tensor's `.shape` stand-in, for frame counting (only `.shape` is read)."""


class Tensor:
    def __init__(self, *shape: int) -> None:
        self.shape = Shape(shape)


def make_execution(progress: ProgressModule, expand: bool = False, newest: bool = False) -> types.SimpleNamespace:
    """An `execution` module whose PromptExecutor.execute walks a prompt as ComfyUI does: a new progress registry
    per prompt (`reset_progress_state(prompt_id, dynprompt)` then ComfyUI's own handler), start/finish per node,
    and, with `expand`, node "2" expanding into two ephemeral nodes ("2.0.0.1", "2.0.0.2") whose parent and
    display node are "2" (execution.py:553 `dynprompt.add_ephemeral_node(node_id, node_info, unique_id,
    display_id)`).

    With `newest`, the shapes of Comfy-Org/ComfyUI execution.py @04e2a914: `PromptExecutor(server, cache_type,
    cache_args, asset_manager=None)`, the NewestPromptQueue, and `interrupt_processing()` (the flag that
    `interrupt_if_running` sets), which ends the run as execute() does: the node that sees it gets no
    finish_progress, an `execution_interrupted` message is added and execute returns normally. A node may say
    `"loading_s": seconds` (it sets the activity "loading" for that long, then clears it) or `"during": fn`
    (called while the node runs, e.g. a cancel arriving from the server's thread)."""
    # A class of its own per module, as each ComfyUI process has one: the hooks wrap it once.
    base_queue = NewestPromptQueue if newest else PromptQueue
    execution = types.SimpleNamespace(PromptQueue=type("PromptQueue", (base_queue,), {}), interrupted=[False],
                                      progress=progress)

    def interrupt_processing(value: bool = True) -> None:
        execution.interrupted[0] = value

    def reset_progress_state(prompt_id: str, dynprompt: Any) -> None:
        progress.reset_progress_state(prompt_id, dynprompt)

    class PromptExecutor:
        def __init__(self, server: Any = None, cache_type: Any = False, cache_args: Any = None,
                     asset_manager: Any = None) -> None:
            self.server, self.cache_type, self.cache_args, self.asset_manager = (
                server, cache_type, cache_args, asset_manager)
            self.caches = types.SimpleNamespace(outputs=SyncOutputCache({}))

        def execute(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):  # noqa: B006 (ComfyUI's signature)
            interrupt_processing(False)
            dynprompt = DynamicPrompt(prompt)
            execution.reset_progress_state(prompt_id, dynprompt)
            progress.add_progress_handler(ProgressHandler("webui"))
            registry = progress.get_progress_state()
            self.status_messages = [("execution_start", {"prompt_id": prompt_id, "timestamp": 1})]
            self.success = True
            self.history_result = {"outputs": {}, "meta": {}}
            executed: list[str] = []
            for node_id in sorted(prompt):
                node = prompt[node_id]
                registry.start_progress(node_id)
                if node.get("loading_s"):
                    registry.set_activity(node_id, "loading")
                    time.sleep(node["loading_s"])
                    registry.set_activity(node_id, None)
                if callable(node.get("during")):
                    node["during"]()
                if execution.interrupted[0]:
                    self.status_messages.append(("execution_interrupted", {
                        "prompt_id": prompt_id, "node_id": node_id, "node_type": node.get("class_type"),
                        "executed": list(executed), "timestamp": 4}))
                    self.success = False
                    return None
                if expand and node_id == "2":
                    for inner in ("2.0.0.1", "2.0.0.2"):
                        dynprompt.add_ephemeral_node(inner, {"class_type": "ImageInvert", "inputs": {}}, "2", "2")
                        registry.start_progress(inner)
                        registry.finish_progress(inner)
                registry.finish_progress(node_id)
                executed.append(node_id)
                if node.get("raise"):
                    raise ValueError("node code failed")
            self.status_messages.append(("execution_success", {"prompt_id": prompt_id, "timestamp": 5}))
            return "result"

    execution.PromptExecutor = PromptExecutor
    execution.reset_progress_state = reset_progress_state
    execution.interrupt_processing = interrupt_processing
    return execution

"""The delivery thread: sends the outbox's due deliveries, signed, off every ComfyUI thread.

- Enqueue (`enqueue_run`, `enqueue_recommendations`) runs on the recorder thread, after a run is stored: one row
  per target that wants the event, written to the outbox at once (if the database refuses, the rows wait in
  memory, bounded, and the delivery thread writes them later). It never sends.
- The thread `run-telemetry-webhooks` takes due rows, POSTs each with urllib (at most `timeout_s`, 5 s by
  default, a few at once on its own small pool; redirects are not followed) and records the answer: a 2xx is
  delivered; anything else is retried with exponential backoff and jitter (`retry_initial_s` doubling up to
  `retry_max_s`, each delay drawn between half and all of it) until `retry_window_s` (24 h) after the event, then
  marked failed. A 410 Gone fails at once (the receiver says the hook is deleted).
- Nothing here logs or reports a URL unredacted, or the secret.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..model import Run, RunStatus
from ..store.store import Store
from . import outbox
from .config import TEST_EVENT, WebhookTarget, redact_webhook_url
from .payloads import envelope, recommendation_summary, render, run_summary
from .signing import EVENT_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, event_key, sign

log = logging.getLogger("run_telemetry.webhooks")

USER_AGENT = "run-telemetry-webhooks/1"
SEND_WORKERS = 4
BATCH = 20
MEMORY_MAX_ROWS = 10_000
IDLE_WAIT_S = 30.0
DB_RETRY_S = 5.0
PRUNE_EVERY_S = 3600.0
_ERROR_MAX = 300


@dataclass(frozen=True)
class WebhookSettings:
    targets: tuple[WebhookTarget, ...]
    secret: str | None = None
    timeout_s: float = 5.0
    retry_initial_s: float = 10.0
    retry_max_s: float = 3600.0
    retry_window_s: float = 86_400.0
    public_url: str | None = None

    @classmethod
    def from_config(cls, config: Any) -> WebhookSettings:
        from .config import targets_of

        return cls(tuple(targets_of(config)), config.webhook_secret, config.webhook_timeout_s,
                   config.webhook_retry_initial_s, config.webhook_retry_max_s, config.webhook_retry_window_s,
                   config.public_url)


@dataclass(frozen=True)
class Attempt:
    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer like any other non-2xx: retried, never re-sent elsewhere


_OPENER = urllib.request.build_opener(_NoRedirect)


def backoff_s(attempts: int, initial_s: float, max_s: float, rng: Callable[[], float] = random.random) -> float:
    """The wait after the `attempts`-th failed attempt: initial * 2^(attempts-1), capped, times a jitter in
    [0.5, 1)."""
    base = min(max_s, initial_s * (2 ** min(max(attempts - 1, 0), 40)))
    return base * (0.5 + 0.5 * rng())


class WebhookSender:
    def __init__(self, store: Store, settings: WebhookSettings, *, instance: str | None) -> None:
        self.store = store
        self.settings = settings
        self.instance = instance
        self._targets = {t.key: t for t in settings.targets}
        self._memory: deque[dict[str, Any]] = deque()
        self._memory_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._next_prune = 0.0
        self.sent = 0
        self.dropped = 0
        self.last_db_error: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._targets)

    # -- enqueue (recorder thread, REST threads) --------------------------------------------------------------

    def enqueue_run(self, run: Run) -> None:
        """Listener for stored runs: a final run becomes one delivery per target that wants it, unless it ended
        longer ago than the retry window. Never raises."""
        if not self._targets or run.status not in RunStatus.FINAL:
            return
        ended = run.finished_at_ms or run.started_at_ms
        if ended is not None and ended < outbox.now_ms() - self.settings.retry_window_s * 1000:
            return  # old news (a watcher's backfill of an old history): it would be given up at once anyway
        try:
            summary = run_summary(run, self.settings.public_url)
            self._enqueue(((t, t.run_event(run.status)) for t in self._targets.values()), run.run_id,
                          lambda event, key, at: envelope(event, key, at, self.instance, run=summary))
        except Exception:
            log.exception("webhooks: could not queue the events of run %s", run.run_id)

    def enqueue_recommendations(self, recommendations: Iterable[dict[str, Any]] | None) -> None:
        if not self._targets:
            return
        for rec in recommendations or []:
            try:
                summary = recommendation_summary(rec)
                subject = f"recommendation:{rec.get('id')}:{rec.get('updated_at_ms')}"
                self._enqueue(((t, "recommendation" if "recommendation" in t.events else None)
                               for t in self._targets.values()), subject,
                              lambda event, key, at, s=summary: envelope(event, key, at, self.instance,
                                                                         recommendation=s))
            except Exception:
                log.exception("webhooks: could not queue a recommendation event")

    def enqueue_test(self) -> list[dict[str, Any]]:
        """A `test` event to every target (POST /telemetry/webhooks/test); returns what was queued."""
        subject = f"test:{time.time_ns()}"
        queued = self._enqueue(((t, TEST_EVENT) for t in self._targets.values()), subject,
                               lambda event, key, at: envelope(event, key, at, self.instance,
                                                               message="a test event from Run Telemetry"))
        return [{"event_id": row["event_id"], "target": row["target_label"]} for row in queued]

    def _enqueue(self, wanted: Iterable[tuple[WebhookTarget, str | None]], subject: str,
                 data: Callable[[str, str, int], dict[str, Any]]) -> list[dict[str, Any]]:
        at = outbox.now_ms()
        rows = []
        for target, event in wanted:
            if event is None:
                continue
            key = event_key(event, subject, target.key, self.instance)
            rows.append({"event_id": key, "event": event, "subject": subject[:256], "target_key": target.key,
                         "target_label": target.label, "instance": self.instance,
                         "body": render(data(event, key, at), target.format).decode("utf-8"),
                         "state": outbox.PENDING, "attempts": 0, "created_at_ms": at, "next_attempt_at_ms": at,
                         "expires_at_ms": at + int(self.settings.retry_window_s * 1000)})
        if not rows:
            return rows
        try:
            with self.store.bound():
                outbox.insert(rows)
        except Exception as exc:
            self._keep_in_memory(rows, exc)
        self._wake.set()
        return rows

    def _keep_in_memory(self, rows: list[dict[str, Any]], exc: BaseException) -> None:
        self.last_db_error = f"{type(exc).__name__}: {exc}"[:_ERROR_MAX]
        with self._memory_lock:
            for row in rows:
                if len(self._memory) >= MEMORY_MAX_ROWS:
                    self._memory.popleft()
                    self.dropped += 1
                self._memory.append(row)
        log.warning("webhooks: the outbox is unavailable (%s); %d event(s) wait in memory", self.last_db_error,
                    len(self._memory))

    # -- the thread -------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None and self._targets:
            self._pool = concurrent.futures.ThreadPoolExecutor(SEND_WORKERS,
                                                               thread_name_prefix="run-telemetry-webhook-send")
            self._thread = threading.Thread(target=self._loop, name="run-telemetry-webhooks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        self.store.bind_thread()
        while not self._stopping.is_set():
            try:
                wait_s = self._cycle()
            except Exception as exc:
                self.last_db_error = f"{type(exc).__name__}: {exc}"[:_ERROR_MAX]
                log.warning("webhooks: delivery cycle failed (%s); retrying in %g s", self.last_db_error, DB_RETRY_S)
                wait_s = DB_RETRY_S
            self._wake.wait(wait_s)
            self._wake.clear()

    def _cycle(self) -> float:
        """Send what is due; returns how long to sleep (a new event wakes the thread sooner)."""
        with self.store.db.connection_context():
            self.store.ensure_schema()
            self._flush_memory()
            while not self._stopping.is_set():
                rows = outbox.due(self.instance, outbox.now_ms(), BATCH)
                if not rows:
                    break
                self._send_batch(rows)
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_EVERY_S
                outbox.prune(self.instance, outbox.now_ms())
            next_ms = outbox.next_due_ms(self.instance)
            self.last_db_error = None
        if next_ms is None:
            return IDLE_WAIT_S
        return min(IDLE_WAIT_S, max(0.01, (next_ms - outbox.now_ms()) / 1000.0))

    def _flush_memory(self) -> None:
        with self._memory_lock:
            rows = list(self._memory)
        if rows:
            outbox.insert(rows)
            with self._memory_lock:
                for _ in rows:
                    if self._memory:
                        self._memory.popleft()

    def _send_batch(self, rows: list[Any]) -> None:
        pool = self._pool
        futures = []
        for row in rows:
            target = self._targets.get(row.target_key)
            if target is None:
                outbox.record_attempt(row.id, state=outbox.FAILED, attempts=row.attempts, at_ms=outbox.now_ms(),
                                      status=None, error="the target is no longer configured")
                continue
            body = row.body.encode("utf-8")
            if pool is None:
                return
            futures.append((row, pool.submit(self.post, target, row.event_id, row.event, body)))
        outcomes = []
        for row, future in futures:
            try:
                attempt = future.result()
            except Exception as exc:  # a bug of ours, not the receiver's answer
                attempt = Attempt(None, f"{type(exc).__name__}: {exc}"[:_ERROR_MAX])
            outcomes.append((row, attempt))
        with self.store.db.atomic():  # one short write transaction per batch: the recorder's writes go first
            for row, attempt in outcomes:
                self._record(row, attempt)

    def _record(self, row: Any, attempt: Attempt) -> None:
        at = outbox.now_ms()
        attempts = row.attempts + 1
        if attempt.ok:
            self.sent += 1
            outbox.record_attempt(row.id, state=outbox.DELIVERED, attempts=attempts, at_ms=at, status=attempt.status,
                                  error=None)
            return
        if attempt.status == 410 or at >= row.expires_at_ms:
            log.warning("webhooks: giving up on %s event %s to %s after %d attempt(s): %s", row.event, row.event_id,
                        row.target_label, attempts, attempt.error)
            outbox.record_attempt(row.id, state=outbox.FAILED, attempts=attempts, at_ms=at, status=attempt.status,
                                  error=attempt.error)
            return
        delay_ms = int(1000 * backoff_s(attempts, self.settings.retry_initial_s, self.settings.retry_max_s))
        outbox.record_attempt(row.id, state=outbox.PENDING, attempts=attempts, at_ms=at, status=attempt.status,
                              error=attempt.error, next_attempt_at_ms=min(at + max(delay_ms, 1), row.expires_at_ms))

    def post(self, target: WebhookTarget, event_id: str, event: str, body: bytes) -> Attempt:
        """One POST (a send thread). The answer's status, or why there was none; never raises."""
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                   EVENT_HEADER: event_id, EVENT_TYPE_HEADER: event}
        if self.settings.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.settings.secret)
        url, authorization = _split_credentials(target.url)
        if authorization:
            headers["Authorization"] = authorization
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=self.settings.timeout_s) as response:
                response.read(65_536)
                return Attempt(response.status, None if 200 <= response.status < 300 else f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            with exc:
                return Attempt(exc.code, _scrub(f"HTTP {exc.code} {exc.reason}", target))
        except Exception as exc:
            reason = getattr(exc, "reason", None) or exc
            return Attempt(None, _scrub(f"{type(exc).__name__}: {reason}", target))

    # -- health (REST threads) --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Counts, the oldest pending age and the last error per target, URLs redacted; never the secret."""
        at = outbox.now_ms()
        report: dict[str, Any] = {"enabled": self.enabled, "signed": bool(self.settings.secret),
                                  "thread_alive": bool(self._thread and self._thread.is_alive()),
                                  "in_memory": len(self._memory), "dropped": self.dropped,
                                  "outbox_error": self.last_db_error}
        try:
            with self.store.bound():
                by_key = outbox.summary(self.instance, at)
        except Exception as exc:
            report["outbox_error"] = f"{type(exc).__name__}: {exc}"[:_ERROR_MAX]
            by_key = {}
        targets = []
        for key, target in self._targets.items():
            entry = by_key.pop(key, None) or {"target": target.label, "pending": 0, "delivered": 0, "failed": 0,
                                              "oldest_pending_age_ms": None, "last_error": None,
                                              "last_status": None, "last_error_at_ms": None,
                                              "last_delivered_at_ms": None}
            targets.append({**entry, "target": target.label, "format": target.format,
                            "events": sorted(target.events), "configured": True})
        targets += [{**entry, "configured": False} for entry in by_key.values()]
        ages = [t["oldest_pending_age_ms"] for t in targets if t.get("oldest_pending_age_ms") is not None]
        report.update(pending=sum(t["pending"] for t in targets), failed=sum(t["failed"] for t in targets),
                      delivered=sum(t["delivered"] for t in targets),
                      oldest_pending_age_ms=max(ages) if ages else None, targets=targets)
        return json.loads(json.dumps(report, default=str))


def _split_credentials(url: str) -> tuple[str, str | None]:
    """`https://user:pass@host/...` as the URL without them and a Basic Authorization header (urllib sends
    neither by itself)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport)), f"Basic {token}"


def _scrub(text: str, target: WebhookTarget) -> str:
    """An error text without the target's URL (urllib may quote it)."""
    return text.replace(target.url, redact_webhook_url(target.url))[:_ERROR_MAX]

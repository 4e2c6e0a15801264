"""The watcher's network edge: ComfyUI's HTTP and websocket API (docs/comfyui-integration.md §5), over aiohttp.

Only what the watcher needs: `GET /queue`, `GET /history?max_items=N`, `GET /history/{id}`, `GET /system_stats`,
`GET /api/jobs?status=completed,failed[,cancelled]` (newer ComfyUI only: feature-detected, see `supports_jobs` and
`finished_jobs`) and
`/ws?clientId=<our own id>` for `status` frames. Every failure to reach ComfyUI (refused, reset, timeout,
5xx, a body that is not JSON) becomes `ComfyUnavailable`, so the caller has one thing to retry on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

CLIENT_ID_PREFIX = "run-telemetry-watch-"


class ComfyUnavailable(Exception):
    """ComfyUI did not answer usefully (down, restarting, wrong URL, overloaded)."""


class ComfyNotFound(ComfyUnavailable):
    """ComfyUI answered 404/405: it has no such route (an older version), which is not an outage."""


class ComfyBadRequest(ComfyUnavailable):
    """ComfyUI answered 400: it does not accept a parameter this version of the request uses."""


# The statuses of a finished job. The newest cores list an interrupted run as `cancelled` (Comfy-Org/ComfyUI
# comfy_execution/jobs.py: `JobStatus.CANCELLED if was_interrupted else JobStatus.FAILED`); 0.8.0 has no such
# status and answers 400 to it, so it is asked for once and dropped on a 400.
FINISHED_STATUSES = ("completed", "failed", "cancelled")
FINISHED_STATUSES_080 = ("completed", "failed")


def new_client_id() -> str:
    """A websocket client id of our own. Reusing a browser's id would disconnect that browser (§5)."""
    return CLIENT_ID_PREFIX + uuid.uuid4().hex


def normalize_base_url(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL for ComfyUI: {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _ws_timeout(seconds: float) -> Any:
    ws_timeout = getattr(aiohttp, "ClientWSTimeout", None)  # aiohttp >= 3.11; a float before
    return ws_timeout(ws_receive=None, ws_close=seconds) if ws_timeout is not None else seconds


class ComfyClient:
    def __init__(self, base_url: str, *, client_id: str | None = None, timeout_s: float = 10.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = normalize_base_url(base_url)
        self.client_id = client_id or new_client_id()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._own_session = session is None
        # The finished-job statuses this ComfyUI's /api/jobs accepts, once known (again after `supports_jobs`).
        self._finished_statuses: tuple[str, ...] | None = None

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/ws", "clientId=" + quote(self.client_id), ""))

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> ComfyClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        try:
            async with self._http().get(url, params=params, timeout=self._timeout) as resp:
                if resp.status in (404, 405):
                    raise ComfyNotFound(f"GET {path} answered HTTP {resp.status}")
                if resp.status == 400:
                    raise ComfyBadRequest(f"GET {path} answered HTTP 400")
                if resp.status >= 400:
                    raise ComfyUnavailable(f"GET {path} answered HTTP {resp.status}")
                text = await resp.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ComfyUnavailable(f"GET {path}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ComfyUnavailable(f"GET {path} did not answer JSON ({text[:80]!r})") from exc

    async def queue(self) -> dict[str, Any]:
        data = await self.get_json("/queue")
        if not isinstance(data, dict):
            raise ComfyUnavailable("GET /queue did not answer a JSON object")
        return data

    async def history(self, max_items: int) -> dict[str, Any]:
        """The last `max_items` history entries, oldest first (ComfyUI keeps insertion order)."""
        data = await self.get_json("/history", {"max_items": str(max(1, int(max_items)))})
        if not isinstance(data, dict):
            raise ComfyUnavailable("GET /history did not answer a JSON object")
        return data

    async def history_item(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry of one prompt, or None when ComfyUI has none (never ran, cleared, restarted)."""
        data = await self.get_json("/history/" + quote(prompt_id, safe=""))
        item = data.get(prompt_id) if isinstance(data, dict) else None
        return item if isinstance(item, dict) else None

    async def supports_jobs(self) -> bool:
        """Whether this ComfyUI serves `/api/jobs` (0.8.0 and newer; 0.3.75 answers 404). Raises ComfyUnavailable
        when ComfyUI is down, so a failed probe is never mistaken for an old version."""
        self._finished_statuses = None  # it may have come back as another version
        try:
            data = await self.get_json("/api/jobs", {"status": "completed", "limit": "1"})
        except ComfyNotFound:
            return False
        return isinstance(data, dict) and isinstance(data.get("jobs"), list) and isinstance(data.get("pagination"),
                                                                                             dict)

    async def finished_jobs(self, limit: int, offset: int = 0) -> tuple[list[dict[str, Any]], bool]:
        """A page of finished jobs (`completed`, `failed`, and `cancelled` where ComfyUI has it: the newest cores'
        word for an interrupted run), newest created first, as `/api/jobs` lists them (ids and times, no prompt,
        no outputs): `(jobs, has_more)`."""
        params = {"sort_by": "created_at", "sort_order": "desc", "limit": str(max(1, int(limit))),
                  "offset": str(max(0, int(offset)))}
        statuses = self._finished_statuses or FINISHED_STATUSES
        try:
            data = await self.get_json("/api/jobs", {"status": ",".join(statuses), **params})
        except ComfyBadRequest:
            if statuses == FINISHED_STATUSES_080:
                raise
            statuses = FINISHED_STATUSES_080
            data = await self.get_json("/api/jobs", {"status": ",".join(statuses), **params})
        self._finished_statuses = statuses
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if not isinstance(jobs, list):
            raise ComfyUnavailable("GET /api/jobs did not answer a job list")
        pagination = data.get("pagination") if isinstance(data.get("pagination"), dict) else {}
        jobs = [j for j in jobs if isinstance(j, dict) and isinstance(j.get("id"), str)]
        return jobs, bool(pagination.get("has_more"))

    async def system_stats(self) -> dict[str, Any]:
        data = await self.get_json("/system_stats")
        return data if isinstance(data, dict) else {}

    async def frames(self, heartbeat_s: float = 30.0) -> AsyncIterator[tuple[str, Any]]:
        """Text frames `(type, data)` from `/ws` until the socket closes. Binary frames (previews) are skipped.

        Raises ComfyUnavailable when the socket cannot be opened; returns when it closes.
        """
        try:
            ws = await self._http().ws_connect(self.ws_url, heartbeat=heartbeat_s, max_msg_size=0,
                                               timeout=_ws_timeout(self._timeout.total or 10.0))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ComfyUnavailable(f"websocket: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        frame = json.loads(msg.data)
                    except ValueError:
                        continue
                    if isinstance(frame, dict) and isinstance(frame.get("type"), str):
                        yield frame["type"], frame.get("data")
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ComfyUnavailable(f"websocket: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        finally:
            await ws.close()

"""ComfyUI 0.8.0's `GET /api/jobs` (server.py `get_jobs`, comfy_execution/jobs.py `get_all_jobs`,
`normalize_history_item`), copied in the parts the watcher depends on, over an in-memory history:

- `status` is a comma list of pending, in_progress, completed, failed (anything else: 400); a history entry whose
  `status.status_str` is "error" is failed, every other one completed;
- sorted by `create_time` (extra_data) with `sort_order` desc by default; `offset` skips, `limit` cuts (a limit
  that is not a positive integer: 400);
- `{"jobs": [{id, status, priority, create_time, execution_start_time, execution_end_time, outputs_count}],
  "pagination": {offset, limit, total, has_more}}`, no prompt and no outputs (those are in `/history/{id}`).

With `newest`, the newest cores' version (Comfy-Org/ComfyUI comfy_execution/jobs.py, `JobStatus.ALL` with
`cancelled`): an "error" entry whose messages hold `execution_interrupted` is `cancelled`, not failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

ALL = ["pending", "in_progress", "completed", "failed"]
ALL_NEWEST = [*ALL, "cancelled"]


def normalize_history_item(prompt_id: str, item: Mapping[str, Any], newest: bool = False) -> dict[str, Any]:
    priority, _, _, extra_data, _ = item["prompt"]
    status_info = item.get("status") or {}
    status = "failed" if status_info.get("status_str") == "error" else "completed"
    start = end = None
    for entry in status_info.get("messages", []):
        if isinstance(entry, (list, tuple)) and len(entry) >= 2 and isinstance(entry[1], dict):
            if entry[0] == "execution_start":
                start = entry[1].get("timestamp")
            elif entry[0] in ("execution_success", "execution_error", "execution_interrupted"):
                end = entry[1].get("timestamp")
                if newest and entry[0] == "execution_interrupted" and status == "failed":
                    status = "cancelled"
    outputs = item.get("outputs") or {}
    count = sum(len(v) for node in outputs.values() if isinstance(node, dict)
                for k, v in node.items() if k != "animated" and isinstance(v, list))
    job = {"id": prompt_id, "status": status, "priority": priority, "create_time": extra_data.get("create_time"),
           "execution_start_time": start, "execution_end_time": end, "outputs_count": count}
    return {k: v for k, v in job.items() if v is not None}


def jobs_response(history: Mapping[str, Mapping[str, Any]], query: Mapping[str, str],
                  newest: bool = False) -> web.Response:
    known = ALL_NEWEST if newest else ALL
    statuses = [s.strip().lower() for s in query.get("status", "").split(",") if s.strip()] or known
    if any(s not in known for s in statuses):
        return web.json_response({"error": "Invalid status value(s)"}, status=400)
    limit = None
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            return web.json_response({"error": "limit must be an integer"}, status=400)
        if limit <= 0:
            return web.json_response({"error": "limit must be a positive integer"}, status=400)
    offset = max(0, int(query.get("offset", "0")))
    jobs = [normalize_history_item(pid, item, newest) for pid, item in history.items()]
    jobs = [j for j in jobs if j["status"] in statuses]
    jobs.sort(key=lambda j: j.get("create_time", 0), reverse=query.get("sort_order", "desc") == "desc")
    total = len(jobs)
    jobs = jobs[offset:]
    if limit is not None:
        jobs = jobs[:limit]
    return web.json_response({"jobs": jobs, "pagination": {"offset": offset, "limit": limit, "total": total,
                                                           "has_more": offset + len(jobs) < total}})

"""The OpenAPI 3.1 description of every REST route (core and analysis), served at `GET /telemetry/openapi.json`.

It is what clients and the fuzzer (schemathesis, tests/integration/test_fuzz_real_comfyui.py) read: parameters
with their bounds (integers within 64 bits), request bodies, and each answer with its schema, errors included
(`{"error": "..."}`). tests/test_openapi.py compares its paths and methods with the routes that `routes.py` and
`analysis_routes.py` register, so the two cannot drift. Response schemas name the keys a client can rely on and
allow more (new fields are not a breaking change).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from ..analysis.config import AnalysisConfig
from ..filters import COUNT_CAP, FILTER_KEYS, INT64_MAX, MAX_LIMIT, SORTS
from ..model import RunStatus

PREFIX = "/telemetry"
INT64 = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}


def _nullable(kind: str | list[str]) -> dict[str, Any]:
    kinds = [kind] if isinstance(kind, str) else list(kind)
    return {"type": [*kinds, "null"]}


def _obj(properties: dict[str, Any] | None = None, required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties or {}}
    if required:
        schema["required"] = required
    return schema


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


STATUSES = sorted(RunStatus.ALL)
STATUS_LIST = {"type": "string", "pattern": f"^({'|'.join(STATUSES)})(,({'|'.join(STATUSES)}))*$",
               "maxLength": 200}
NUMBER_OR_NULL = _nullable("number")


def _bounds(prop: dict[str, Any]) -> dict[str, Any]:
    """A pydantic property as plain JSON Schema (pydantic writes ge/le when a validator wraps the type)."""
    names = {"type": "type", "default": "default", "minimum": "minimum", "maximum": "maximum", "ge": "minimum",
             "le": "maximum"}
    return {names[k]: v for k, v in prop.items() if k in names}
INT_OR_NULL = _nullable("integer")
STR_OR_NULL = _nullable("string")

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": {"type": "string"}}, ["error"]),
    "RunSummary": _obj({
        "run_id": {"type": "string"}, "status": {"type": "string"},
        "workflow_id": STR_OR_NULL, "workflow_name": STR_OR_NULL, "fingerprint": STR_OR_NULL,
        "queued_at_ms": INT_OR_NULL, "started_at_ms": INT_OR_NULL, "finished_at_ms": INT_OR_NULL,
        "duration_ms": NUMBER_OR_NULL, "queue_wait_ms": NUMBER_OR_NULL,
        "error": {"oneOf": [{"type": "null"}, _obj({"message": {"type": "string"}, "kind": {"type": "string"}})]},
        "labels": {"oneOf": [{"type": "null"}, _obj({"tags": _array({"type": "string"})})]},
        "parameters": {"type": "object"}, "instance": STR_OR_NULL,
        "energy_j": {**NUMBER_OR_NULL, "description": "GPU energy of the run in joules (ComfyUI's GPU); null "
                     "without a GPU reading"},
        "energy_source": {"type": ["string", "null"], "enum": ["nvml_counter", "power_samples", None]},
        "energy_per_frame_j": NUMBER_OR_NULL,
        "gpus": _array(_ref("RunGpu")),
    }, ["run_id", "status"]),
    "RunGpu": _obj({
        "index": {"type": "integer", "description": "NVML's index (CUDA_VISIBLE_DEVICES does not renumber it)"},
        "name": STR_OR_NULL, "uuid": STR_OR_NULL, "peak_used_bytes": INT_OR_NULL,
        "external_bytes": {**INT_OR_NULL, "description": "largest memory other processes held on this GPU"},
        "comfyui_device": {"type": "boolean"}, "energy_j": NUMBER_OR_NULL,
    }, ["index", "name", "uuid", "peak_used_bytes", "external_bytes", "comfyui_device"]),
    "RunDetail": {"allOf": [_ref("RunSummary"), _obj({
        "nodes": _array(_obj({"node_id": {"type": "string"}, "class_type": {"type": "string"},
                              "status": {"type": "string"}, "energy_j": NUMBER_OR_NULL},
                             ["node_id", "class_type", "status"])),
        "outputs": _array({"type": "object"}),
        "gpu_samples": _array(_obj({"t_ms": {"type": "integer"}, "used_bytes": INT_OR_NULL,
                                    "power_w": NUMBER_OR_NULL, "gpu_index": INT_OR_NULL})),
        "cost": {**NUMBER_OR_NULL, "description": "energy_j priced at energy_price_per_kwh"},
        "currency": STR_OR_NULL,
        "node_types": _array({"type": "object"}), "subgraphs": _array({"type": "object"}),
        "current_node": {"oneOf": [{"type": "null"}, _ref("LiveNode")],
                         "description": "only while the run is running: the node executing now"},
        "eta_ms": {**NUMBER_OR_NULL, "description": "only while the run is running: expected time left (ms), "
                                                    "null without history of this graph"},
        "run_ms": {**NUMBER_OR_NULL, "description": "only while the run is running: time it has run (ms)"},
    }, ["nodes", "outputs", "gpu_samples", "node_types", "subgraphs"])]},
    "LiveNode": _obj({"node_id": {"type": "string"}, "class_type": STR_OR_NULL, "elapsed_ms": {"type": "number"},
                      "expected_ms": {**NUMBER_OR_NULL, "description": (
                          "median of this node's executed durations in recent runs of the same graph, scaled "
                          "by the prediction model's workload ratio")}},
                     ["node_id", "class_type", "elapsed_ms", "expected_ms"]),
    "LiveRun": _obj({"run_id": {"type": "string"}, "current_node": {"oneOf": [{"type": "null"}, _ref("LiveNode")]},
                     "eta_ms": NUMBER_OR_NULL, "run_ms": {"type": "number"}, "queue_wait_ms": NUMBER_OR_NULL,
                     "history_runs": {"type": "integer"},
                     "nodes_done": _array(_obj({"node_id": {"type": "string"}, "class_type": STR_OR_NULL,
                                                "start_offset_ms": {"type": "number"},
                                                "duration_ms": {"type": "number"}},
                                               ["node_id", "start_offset_ms", "duration_ms"]))},
                    ["run_id", "current_node", "eta_ms", "run_ms", "nodes_done"]),
    "RunList": _obj({"runs": _array(_ref("RunSummary")),
                     "total": {"type": "integer", "description": (
                         f"matching runs, counted up to {COUNT_CAP:,} unless count=exact (see total_capped)")},
                     "total_capped": {"type": "boolean", "description": f"true: more than {COUNT_CAP:,} match"},
                     "limit": {"type": "integer"}, "offset": {"type": "integer"},
                     "next_cursor": {**STR_OR_NULL, "description": "pass as 'cursor' (same sort and filters) for "
                                     "the next page; null on the last page"}},
                    ["runs", "total", "total_capped", "limit", "offset", "next_cursor"]),
    "Pruned": _obj({"deleted": {"type": "integer", "minimum": 0}, "before_ms": INT_OR_NULL, "keep": INT_OR_NULL},
                   ["deleted", "before_ms", "keep"]),
    "Stats": _obj({
        "total_runs": {"type": "integer"}, "success_rate": NUMBER_OR_NULL, "total_frames": {"type": "integer"},
        "avg_duration_ms": NUMBER_OR_NULL, "p50_duration_ms": NUMBER_OR_NULL, "p95_duration_ms": NUMBER_OR_NULL,
        "max_gpu_peak_bytes": INT_OR_NULL, "max_ram_peak_bytes": INT_OR_NULL,
        "total_energy_wh": {**NUMBER_OR_NULL, "description": "GPU energy of the runs that have one"},
        "total_cost": {**NUMBER_OR_NULL, "description": "total_energy_wh priced at energy_price_per_kwh"},
        "energy_price_per_kwh": NUMBER_OR_NULL, "currency": STR_OR_NULL,
        "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
        "by_workflow": _array(_obj({"workflow": STR_OR_NULL, "runs": {"type": "integer"},
                                    "energy_wh": NUMBER_OR_NULL, "cost": NUMBER_OR_NULL})),
    }, ["total_runs", "success_rate", "by_status", "by_workflow"]),
    "NodeTypeStats": _obj({"node_types": _array(_obj({"class_type": {"type": "string"},
                                                      "executions": {"type": "integer"}}))}, ["node_types"]),
    "Health": _obj({
        "status": {"type": "string"}, "source": {"type": "string"},
        "instance": STR_OR_NULL,
        "hooks": {**_obj({"comfyuis": _array(_ref("WatchedComfyUI"))}),
                  "description": "the plugin's hooks, or the watcher's state (one ComfyUI's at the top level; "
                                 "every watched ComfyUI's in comfyuis)"},
        "database": _obj({"kind": {"type": "string"}, "state": {"type": "string"}}, ["kind", "state"]),
        "queue_depth": {"type": "integer"}, "buffered": {"type": "integer"}, "dropped": {"type": "integer"},
        "recorder": {"type": "object"},
        "config_warnings": _array(_obj({"key": {"type": "string"}, "message": {"type": "string"}},
                                       ["key", "message"])),
        "webhooks": _ref("WebhookHealth"),
    }, ["status", "database", "config_warnings"]),
    "WatchedComfyUI": _obj({
        "comfyui_url": {"type": "string"}, "instance": STR_OR_NULL, "client_id": {"type": "string"},
        "state": {"enum": ["starting", "connected", "reconnecting"]}, "connected": _nullable("boolean"),
        "websocket": {"type": "boolean"},
        "reconnecting_since_ms": {**INT_OR_NULL, "description": "when it became unreachable"},
        "next_try_at_ms": {**INT_OR_NULL, "description": "when the next attempt is due (exponential backoff)"},
        "retries": {"type": "integer", "minimum": 0}, "last_error": STR_OR_NULL,
        "history_api": {"enum": ["jobs", "history", None], "description": "/api/jobs where ComfyUI serves it"},
        "cursor": {**_nullable("object"), "properties": {"run_id": STR_OR_NULL, "finished_at_ms": INT_OR_NULL,
                                                          "known_runs": {"type": "integer"}},
                   "description": "the newest final run stored for this instance (the stored runs are the cursor)"},
        "caught_up": {"type": "integer", "minimum": 0, "description": "runs found in ComfyUI's history at start"},
        "runs_recorded": {"type": "integer"}, "running": _array({"type": "string"}),
    }, ["comfyui_url", "state", "connected"]),
    "WebhookHealth": _obj({
        "enabled": {"type": "boolean"}, "signed": {"type": "boolean"}, "pending": {"type": "integer"},
        "failed": {"type": "integer"}, "delivered": {"type": "integer"}, "oldest_pending_age_ms": INT_OR_NULL,
        "targets": _array(_obj({
            "target": {"type": "string", "description": "the URL, redacted (no credentials, tokens or query)"},
            "pending": {"type": "integer"}, "failed": {"type": "integer"}, "delivered": {"type": "integer"},
            "oldest_pending_age_ms": INT_OR_NULL, "last_error": STR_OR_NULL, "last_status": INT_OR_NULL,
            "configured": {"type": "boolean"}}, ["target", "pending", "failed"])),
    }, ["enabled"]),
    "Instance": _obj({
        "instance": {"type": "string"}, "source": STR_OR_NULL, "pack_version": STR_OR_NULL,
        "comfyui_version": STR_OR_NULL, "frontend_version": STR_OR_NULL, "gpu_name": STR_OR_NULL,
        "queue_depth": INT_OR_NULL, "health": STR_OR_NULL, "details": {"type": "object"},
        "started_at_ms": INT_OR_NULL, "last_seen_ms": INT_OR_NULL, "runs": {"type": "integer"},
        "last_started_at_ms": INT_OR_NULL, "online": {"type": "boolean"}, "offline_after_ms": {"type": "integer"},
    }, ["instance", "last_seen_ms", "online", "runs"]),
    "Filters": {**_obj({
        "status": {"anyOf": [STATUS_LIST, _array({"type": "string", "enum": STATUSES})]},
        "workflow": {"type": "string", "maxLength": 500}, "since_ms": INT64, "until_ms": INT64,
        "label": {"type": "string", "maxLength": 500}, "q": {"type": "string", "maxLength": 500},
        "instance": {"type": "string", "maxLength": 500},
    }), "additionalProperties": False},
    "Prompt": {"type": "object", "minProperties": 1, "description": "an API-format prompt: node id -> node",
               "additionalProperties": _obj({"class_type": {"type": "string"}, "inputs": {"type": "object"}},
                                            ["class_type"])},
    "Preset": _obj({"id": {"type": "integer"}, "name": {"type": "string"}, "filters": {"type": "object"},
                    "created_at_ms": {"type": "integer"}}, ["id", "name", "filters", "created_at_ms"]),
    "PresetList": _obj({"presets": _array(_ref("Preset"))}, ["presets"]),
    "Recommendation": _obj({
        "id": {"type": "integer"}, "kind": {"type": "string"}, "severity": {"type": "string"},
        "workflow": STR_OR_NULL, "workflow_name": STR_OR_NULL, "evidence_run_ids": _array({"type": "string"}),
        "message": {"type": "string"}, "action": STR_OR_NULL, "created_at_ms": {"type": "integer"},
        "updated_at_ms": {"type": "integer"}, "state": {"type": "string"},
        "actions": {**_array(_ref("RecommendationAction")), "description": (
            "graph changes this recommendation offers (telemetry/analysis/actions.py), empty when none; apply them "
            "to a copy of the run's API prompt or UI workflow")},
    }, ["id", "kind", "severity", "message", "state", "actions"]),
    "GraphChange": {"oneOf": [
        _obj({"node_id": {"type": "string"}, "class_type": {"type": "string"}, "input": {"type": "string"},
              "from": {"description": "the value in the run's prompt (null: the input is new, after a "
                                      "replacement)"},
              "to": {"type": ["integer", "number", "string", "boolean"]}},
             ["node_id", "class_type", "input", "from", "to"]),
        _obj({"node_id": {"type": "string"}, "class_type": {"type": "string"},
              "replace_class_type": {"type": "string"}}, ["node_id", "class_type", "replace_class_type"]),
    ]},
    "RecommendationAction": _obj({
        "kind": {"type": "string", "enum": ["vae_tiled", "halve_batch", "lower_steps", "split_scenes"]},
        "title": {"type": "string"}, "run_id": {"type": "string", "description": "the run whose prompt it edits"},
        "changes": _array(_ref("GraphChange")),
        "copies": {**_array(_obj({"title": {"type": "string"}, "scene": {"type": "string"},
                                  "changes": _array(_ref("GraphChange"))}, ["title", "scene", "changes"])),
                   "description": "split_scenes: one workflow copy per scene, each with its own changes"},
    }, ["kind", "title", "run_id", "changes"]),
    "RunWorkflow": _obj({"run_id": {"type": "string"},
                         "prompt": {"oneOf": [{"type": "null"}, _ref("Prompt")]},
                         "workflow": {"oneOf": [{"type": "null"}, {"type": "object"}],
                                      "description": "the UI workflow the frontend sent (extra_pnginfo)"}},
                        ["run_id", "prompt", "workflow"]),
    "Prediction": _obj({"fingerprint": {"type": "string"}, "enough_history": {"type": "boolean"},
                        "duration_ms": {"type": "object"}, "gpu_peak_bytes": {"type": "object"}},
                       ["fingerprint", "enough_history", "duration_ms", "gpu_peak_bytes"]),
    "AnalysisConfig": {"type": "object", "additionalProperties": {"type": "number"}},
    "AnalysisSettings": {"type": "object", "additionalProperties": False, "description": (
        "a partial set of analysis settings; numbers may also be written as strings"), "properties": {
            name: _bounds(prop) for name, prop in AnalysisConfig.model_json_schema()["properties"].items()}},
}

_ERRORS = {
    "400": "the request is malformed; the message says what is wrong",
    "401": "the admin token is missing or wrong",
    "403": "refused: a cross-origin request, or no admin token is configured on a server beyond loopback",
    "404": "not found",
    "409": "the config file cannot be parsed, so it is left unchanged",
    "503": "the telemetry database or analysis is unavailable",
}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: dict[str, Any] | None, *errors: str, ok_status: str = "200",
               content: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {ok_status: {"description": "OK", "content": content or _json_content(ok or {})}}
    for code in ("400", "503", *errors):
        out[code] = {"description": _ERRORS[code], "content": _json_content(_ref("Error"))}
    # aiohttp itself answers a request line or header over its limit (8190 bytes) before any route runs
    out["400"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    return out


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


FILTER_PARAMETERS = [
    _query("status", STATUS_LIST, "comma list of run statuses, e.g. failed,interrupted"),
    _query("workflow", {"type": "string", "maxLength": 500}, "a workflow id, name or fingerprint"),
    _query("since_ms", INT64, "runs that started at or after this time (ms since the epoch)"),
    _query("until_ms", INT64, "runs that started at or before this time (ms since the epoch)"),
    _query("label", {"type": "string", "maxLength": 500}, "a story title, scene or tag"),
    _query("q", {"type": "string", "maxLength": 500}, "text in names, ids, errors and labels"),
    _query("instance", {"type": "string", "maxLength": 500}, "the instance that recorded the run"),
]
assert [p["name"] for p in FILTER_PARAMETERS] == list(FILTER_KEYS)
PAGE_PARAMETERS = [
    _query("sort", {"type": "string", "enum": list(SORTS)}, "order of the runs"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "runs per page (default 50)"),
    _query("offset", INT64, "runs to skip"),
]
# Only /runs pages by cursor and caps its count; /export takes the three above.
RUNS_PAGE_PARAMETERS = PAGE_PARAMETERS + [
    _query("cursor", {"type": "string", "maxLength": 1000},
           "a previous page's next_cursor: the page after it, without counting the rows before (not with offset)"),
    _query("count", {"type": "string", "enum": ["capped", "exact"]},
           f"capped (default): total counts up to {COUNT_CAP:,}; exact: all matching runs"),
]
ADMIN = [{"bearerAuth": []}, {}]  # the token is needed only when the server listens beyond loopback


def _op(summary: str, responses: dict[str, Any], parameters: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, security: list[dict[str, Any]] | None = None,
        tags: tuple[str, ...] = ("core",)) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": list(tags), "responses": responses,
                          "operationId": summary.split(":")[0].replace(" ", "_").lower()}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json_content(body)}
    if security is not None:
        op["security"] = security
    return op


def _paths() -> dict[str, Any]:
    analysis = ("analysis",)
    return {
        PREFIX + "/runs": {
            "get": _op("list runs: filtered, sorted and paged", _responses(_ref("RunList")),
                       FILTER_PARAMETERS + RUNS_PAGE_PARAMETERS),
            "delete": _op("prune runs: delete finished runs that started before before_ms and/or beyond the "
                          "newest keep", _responses(_ref("Pruned"), "401", "403"),
                          [_query("before_ms", INT64, "delete runs that started before this time (ms)"),
                           _query("keep", INT64, "keep only the newest N finished runs")], security=ADMIN),
        },
        PREFIX + "/runs/{run_id}": {
            "get": _op("get run: with nodes, outputs, GPU samples and totals per node type and subgraph",
                       _responses(_ref("RunDetail"), "404"),
                       [_path("run_id", {"type": "string", "minLength": 1, "maxLength": 200}, "the prompt id")]),
        },
        PREFIX + "/runs/{run_id}/workflow": {
            "get": _op("get run workflow: the run's API prompt and UI workflow as ComfyUI recorded them (null when "
                       "not kept)", _responses(_ref("RunWorkflow"), "404"),
                       [_path("run_id", {"type": "string", "minLength": 1, "maxLength": 200}, "the prompt id")]),
        },
        PREFIX + "/live": {"get": _op("live: the running run (current node, ETA, nodes finished so far, queue "
                                      "wait and run time apart), or null", _responses(_obj({
                                          "run": {"oneOf": [{"type": "null"}, _ref("LiveRun")]},
                                          "listening": {"type": "boolean"}}, ["run", "listening"]), "404"))},
        PREFIX + "/live/listen": {
            "post": _op("listen: a panel is open; the websocket carries telemetry.progress (at most once a second) "
                        "and telemetry.slow for the lease, which the panel renews while it stays open",
                        _responses(_obj({"lease_s": {"type": "number"}, "progress_every_s": {"type": "number"},
                                         "slow_node_factor": {"type": "number"}},
                                        ["lease_s", "progress_every_s", "slow_node_factor"]), "403", "404"),
                        body={**_obj({"seconds": {"type": "number", "minimum": 1, "maximum": 120}}),
                              "additionalProperties": False}),
        },
        PREFIX + "/stats": {"get": _op("stats: totals, success rate, percentiles, by status and workflow",
                                       _responses(_ref("Stats")), FILTER_PARAMETERS)},
        PREFIX + "/stats/node_types": {"get": _op(
            "node type stats of the executed nodes of the matching runs: executions, average duration, GPU peak; "
            "the 50 longest on average first (none last, then by class type)",
            _responses(_ref("NodeTypeStats")), FILTER_PARAMETERS)},
        PREFIX + "/health": {"get": _op("health: hooks, database, queue, buffered and dropped runs, config "
                                        "warnings", _responses(_ref("Health")))},
        PREFIX + "/instances": {"get": _op("instances: every recording instance's last heartbeat (versions, GPU, "
                                           "queue depth, health), online when seen within 2 minutes",
                                           _responses(_obj({"instances": _array(_ref("Instance"))},
                                                           ["instances"])))},
        PREFIX + "/metrics": {"get": _op("metrics: Prometheus exposition (prometheus_client), text format 0.0.4 or "
                                         "OpenMetrics when Accept asks for application/openmetrics-text; every "
                                         "series labelled comfyui_instance (404 when prometheus_client cannot "
                                         "be imported)", _responses(
            None, "404", content={"text/plain": {"schema": {"type": "string"}},
                           "application/openmetrics-text": {"schema": {"type": "string"}}}))},
        PREFIX + "/presets": {
            "get": _op("list presets", _responses(_ref("PresetList"))),
            "post": _op("save preset: a named set of run filters (replaces one of the same name)",
                        _responses(_ref("Preset"), "403", ok_status="201"),
                        body=_obj({"name": {"type": "string", "minLength": 1, "maxLength": 200},
                                   "filters": _ref("Filters")}, ["name"])),
        },
        PREFIX + "/presets/{preset_id}": {
            "delete": _op("delete preset", _responses(_obj({"deleted": {"type": "integer"}}, ["deleted"]), "403",
                                                      "404"), [_path("preset_id", INT64, "the preset's id")]),
        },
        PREFIX + "/workflows": {
            "post": _op("name workflow: the panel reports the open workflow's name; its runs are renamed",
                        _responses(_obj({"id": {"type": "string"}, "name": {"type": "string"},
                                         "runs_renamed": {"type": "integer"}}, ["id", "name", "runs_renamed"]),
                                   "403"),
                        body=_obj({"id": {"type": "string", "minLength": 1, "maxLength": 128},
                                   "name": {"type": "string", "minLength": 1, "maxLength": 500}}, ["id", "name"])),
        },
        PREFIX + "/export": {
            "get": _op("export: every matching run, streamed as CSV or JSON lines", _responses(None, content={
                "text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}),
                [_query("format", {"type": "string", "enum": ["csv", "jsonl"]}, "csv or jsonl (default)"),
                 *FILTER_PARAMETERS, *PAGE_PARAMETERS]),
        },
        PREFIX + "/webhooks/test": {
            "post": _op("send test webhook: queue a signed test event to every configured webhook URL",
                        _responses(_obj({"queued": _array(_obj({"event_id": {"type": "string"},
                                                                "target": {"type": "string"}},
                                                               ["event_id", "target"]))}, ["queued"]),
                                   "401", "403", ok_status="202"), security=ADMIN, tags=("webhooks",)),
        },
        PREFIX + "/openapi.json": {"get": _op("openapi: this description", _responses({"type": "object"}))},
        PREFIX + "/recommendations": {
            "get": _op("list recommendations", _responses(_obj({"recommendations": _array(_ref("Recommendation"))},
                                                               ["recommendations"])),
                       [_query("state", {"type": "string", "enum": ["open", "dismissed", "resolved"]}, "state"),
                        _query("severity", {"type": "string", "enum": ["info", "warning", "critical"]}, "severity"),
                        _query("workflow", {"type": "string", "maxLength": 500}, "a workflow key, id or name")],
                       tags=analysis),
        },
        PREFIX + "/recommendations/evaluate": {
            "post": _op("evaluate recommendations now: one workflow or every recent one",
                        _responses(_obj({"workflows_evaluated": {"type": "integer"},
                                         "opened": _array(_ref("Recommendation"))}, ["workflows_evaluated", "opened"]),
                                   "403", "404"),
                        [_query("workflow", {"type": "string", "maxLength": 500}, "a workflow key, id or name")],
                        tags=analysis),
        },
        PREFIX + "/recommendations/{rec_id}/dismiss": {
            "post": _op("dismiss recommendation", _responses(_ref("Recommendation"), "403", "404"),
                        [_path("rec_id", INT64, "the recommendation's id")], tags=analysis),
        },
        PREFIX + "/trends": {
            "get": _op("trends: points, rolling p50/p95, slope, Mann-Kendall test and change points",
                       _responses(_obj({"workflow": {"type": "string"}, "metric": {"type": "string"},
                                        "points": _array({"type": "object"}), "rolling": _array({"type": "object"}),
                                        "change_points": _array({"type": "object"})},
                                       ["workflow", "metric", "points"]), "404"),
                       [_query("workflow", {"type": "string", "minLength": 1, "maxLength": 500}, "the workflow",
                               required=True),
                        _query("metric", {"type": "string", "enum": ["duration_ms", "gpu_peak_bytes", "success_rate",
                                                                    "fps"]}, "the metric", required=True),
                        _query("node_type", {"type": "string", "minLength": 1, "maxLength": 256},
                               "a node class: the metric of that node")], tags=analysis),
        },
        PREFIX + "/stats/timeline": {
            "get": _op("timeline: per hour or day bucket", _responses(_obj({
                "bucket": {"type": "string"}, "since_ms": {"type": "integer"}, "until_ms": INT_OR_NULL,
                "points": _array(_obj({"t_ms": {"type": "integer"}, "runs": {"type": "integer"}}))},
                ["bucket", "points"])),
                [_query("bucket", {"type": "string", "enum": ["hour", "day"]}, "bucket size (default day)"),
                 *FILTER_PARAMETERS], tags=analysis),
        },
        PREFIX + "/predict": {
            "post": _op("predict: duration and GPU peak for an API-format prompt", _responses(
                _ref("Prediction"), "403"), body={"anyOf": [
                    _obj({"prompt": _ref("Prompt")}, ["prompt"]), _ref("Prompt")]}, tags=analysis),
        },
        PREFIX + "/predict/accuracy": {
            "get": _op("prediction accuracy: backtest per workflow", _responses(_obj({
                "interval_coverage_target": {"type": "number"}, "overall": {"type": "object"},
                "workflows": _array({"type": "object"})}, ["overall", "workflows"])), tags=analysis),
        },
        PREFIX + "/queue/eta": {
            "get": _op("queue ETA: predicted start and finish per queued run", _responses(_obj({
                "items": _array(_obj({"prompt_id": STR_OR_NULL, "instance": {"type": "string"}})),
                "has_predictions": {"type": "boolean"},
                "queues": _array(_obj({"instance": {"type": "string"}, "items": _array({"type": "object"}),
                                       "has_predictions": {"type": "boolean"}}, ["instance", "items"]))},
                ["items"])),
                parameters=[_query("instance", {"type": "string"},
                                   "a watcher of several ComfyUIs: only this instance's queue (each instance's "
                                   "queue is predicted on its own, in `queues`)")], tags=analysis),
        },
        PREFIX + "/config": {
            "get": _op("get config: the analysis thresholds", _responses(_ref("AnalysisConfig")), tags=analysis),
            "put": _op("set config: change analysis thresholds (saved to the config file's analysis section)",
                       _responses(_ref("AnalysisConfig"), "401", "403", "409"), body=_ref("AnalysisSettings"),
                       security=ADMIN, tags=analysis),
        },
    }


@lru_cache(maxsize=1)
def _spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Run Telemetry", "version": "1", "description": (
            "Every ComfyUI run, its statistics, trends, predictions and recommendations. Also served under /api. "
            "State-changing requests with an Origin header must come from the same host:port; prune and config "
            "writes need 'Authorization: Bearer <TELEMETRY_ADMIN_TOKEN>' when the server listens beyond "
            "loopback.")},
        "paths": _paths(),
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
    }


def openapi_spec() -> dict[str, Any]:
    """The description (a fresh copy: callers may change it)."""
    return copy.deepcopy(_spec())


def described_routes() -> set[tuple[str, str]]:
    """(METHOD, path) for every operation described."""
    return {(method.upper(), path) for path, ops in _spec()["paths"].items() for method in ops}

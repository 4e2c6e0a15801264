"""schemathesis fuzzes every described route of the standalone server (the same route tables the plugin mounts
in ComfyUI) over a real SQLite file and the real PostgreSQL server: no answer >= 500, every answer as the OpenAPI
description says. The same fuzzing against a real ComfyUI is tests/integration/test_fuzz_real_comfyui.py."""

from __future__ import annotations

import os

import pytest
from api_server import ApiServer
from fault_report import record_fuzz_result
from fuzz_openapi import fuzz

from telemetry.model import Run, RunError, RunLabels

# scripts/test.sh (the whole suite, CI) sets 8 examples, positive and negative; a bare pytest run of the fast
# tests fuzzes lighter: 3 schema-valid examples per operation.
EXAMPLES = int(os.environ.get("RUN_TELEMETRY_FUZZ_EXAMPLES", "3"))
NEGATIVE = "RUN_TELEMETRY_FUZZ_EXAMPLES" in os.environ


def seed_runs() -> list[Run]:
    runs = [Run(f"run-{i}", "success" if i % 3 else "failed", started_at_ms=1_760_000_000_000 + i * 60_000,
                duration_ms=1000.0 + i, workflow_id="wf-1", workflow_name="Fuzz \u202e name", fingerprint="fp-1",
                labels=RunLabels(story_title="story", scene="s1", tags=["a", "\x07bell"]),
                error=RunError("3", "KSampler", "RuntimeError", "boom") if i % 3 == 0 else None)
            for i in range(30)]
    return runs + [Run("still-running", "running", started_at_ms=1_760_000_000_000)]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request):
    return None if request.param == "sqlite" else request.getfixturevalue("pg_schema_url")


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_description(tmp_path, database_url):
    server = ApiServer(tmp_path, seed_runs(), database_url=database_url).start()
    try:
        outcome = fuzz(server.url, max_examples=EXAMPLES, negative=NEGATIVE)
    finally:
        server.stop()
    kind = "PostgreSQL" if database_url else "SQLite"
    record_fuzz_result(f"schemathesis on /telemetry (standalone server, {kind})", requests=outcome.requests,
                       responses_5xx=outcome.responses_5xx)
    assert outcome.operations >= 23 and outcome.requests > 5 * EXAMPLES
    assert outcome.responses_5xx == 0, outcome.summary()
    assert outcome.failures == [], outcome.summary()
    assert outcome.by_status.get(200) and outcome.by_status.get(400)

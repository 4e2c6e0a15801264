"""schemathesis over `/telemetry/openapi.json` against a running server: schema-valid and schema-violating
requests for every operation (a bounded number of examples each), checking that no answer is >= 500 and that
every answer (status, content type, body) is one the description promises. Used by tests/test_api_fuzz.py (the
standalone server, in-process) and tests/integration/test_fuzz_real_comfyui.py (a real ComfyUI with the pack).

The pytest plugin of schemathesis (`from_fixture`) does not run under pytest 9, so each operation's hypothesis
test is driven here directly; the cases are schemathesis' own.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@dataclass
class FuzzOutcome:
    requests: int = 0
    responses_5xx: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    operations: int = 0

    def summary(self) -> str:
        return "\n\n".join(self.failures[:10]) + (f"\n... and {len(self.failures) - 10} more"
                                                  if len(self.failures) > 10 else "")


def load_spec(base_url: str) -> dict:
    with urllib.request.urlopen(base_url + "/telemetry/openapi.json", timeout=30) as response:
        return json.loads(response.read())


def fuzz(base_url: str, max_examples: int = 20, negative: bool = True) -> FuzzOutcome:
    """Fuzz every operation the server describes, positive (and negative); never raises for a finding. Most of
    the time goes into building each operation's strategies (about 0.3 s per operation and mode), not requests."""
    schema = schemathesis.openapi.from_dict(load_spec(base_url))
    outcome = FuzzOutcome()
    for result in schema.get_all_operations():
        operation = result.ok()
        outcome.operations += 1
        has_input = bool(operation.definition.raw.get("parameters") or operation.definition.raw.get("requestBody"))
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_input and negative else [])
        for mode in modes:
            _fuzz_operation(operation, mode, base_url, max_examples, outcome)
    return outcome


def _fuzz_operation(operation, mode: GenerationMode, base_url: str, max_examples: int, outcome: FuzzOutcome) -> None:
    seen: set[str] = set()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=max_examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        response = case.call(base_url=base_url, timeout=60)
        outcome.requests += 1
        outcome.by_status[response.status_code] = outcome.by_status.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            outcome.responses_5xx += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as exc:  # schemathesis raises an exception group of its findings
            if isinstance(exc, KeyboardInterrupt):
                raise
            text = f"{operation.label} ({mode.value}): {exc}"
            if text[:200] not in seen:
                seen.add(text[:200])
                outcome.failures.append(text[:1500])

    try:
        run()
    except Unsatisfiable:
        pass

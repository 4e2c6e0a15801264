"""The OpenAPI 3.1 description: served at /telemetry/openapi.json, it describes exactly the routes the server
registers (core and analysis), so it cannot drift from them, and every parameter is bounded the way the routes
validate it."""

from __future__ import annotations

import json
import urllib.request

import schemathesis
from api_server import ApiServer

from telemetry.api.openapi import described_routes, openapi_spec
from telemetry.filters import INT64_MAX


def registered_routes(web_app) -> set[tuple[str, str]]:
    """(METHOD, path) of every route the app serves itself (not the /api copy, not HEAD twins)."""
    out = set()
    for route in web_app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method != "HEAD":
            out.add((route.method, path))
    return out


def test_the_description_lists_exactly_the_registered_routes(tmp_path):
    server = ApiServer(tmp_path)
    try:
        from telemetry.watch.app import make_web_app

        registered = registered_routes(make_web_app(server.app))
    finally:
        server.app.store.close()
    own = {(m, p) for m, p in registered if not p.startswith("/api/")}
    assert len(own) >= 23
    assert own == described_routes(), (
        f"registered but not described: {sorted(own - described_routes())}; "
        f"described but not registered: {sorted(described_routes() - own)}")
    assert registered - own == {(m, "/api" + p) for m, p in described_routes()}


def test_the_description_is_served_and_loads_as_openapi_3_1(tmp_path):
    server = ApiServer(tmp_path).start()
    try:
        with urllib.request.urlopen(server.url + "/telemetry/openapi.json") as response:
            served = json.loads(response.read())
        with urllib.request.urlopen(server.url + "/api/telemetry/openapi.json") as response:
            assert json.loads(response.read()) == served
    finally:
        server.stop()
    assert served == openapi_spec() and served["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(served)
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert labels == {f"{method} {path}" for method, path in described_routes()}


def _walk(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def test_every_integer_parameter_is_bounded_to_64_bits_and_every_operation_describes_its_errors():
    spec = openapi_spec()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for parameter in op.get("parameters", []):
                schema = parameter["schema"]
                if schema.get("type") == "integer":
                    assert 0 <= schema["minimum"] and schema["maximum"] <= INT64_MAX, (method, path, parameter)
            error = op["responses"]["400"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, (method, path)
            if method != "get":
                assert "403" in op["responses"], f"{method} {path} must describe the cross-origin refusal"
    for where, node in _walk(spec):
        if node.get("type") == "integer" and "maximum" in node:
            assert node["maximum"] <= 2**63 - 1, where

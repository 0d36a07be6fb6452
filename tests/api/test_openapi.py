"""The OpenAPI document describes exactly the routes the API serves."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.api import API_APP
from storage.db import Database
from tests.api.conftest import Client, make_app

METHODS = {"get", "post", "put", "patch", "delete"}


def _served(app: web.Application) -> set[tuple[str, str]]:
    api = app[API_APP]
    found = set()
    for route in api.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        assert path is not None
        found.add((route.method.lower(), re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)))
    return found


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_document_lists_every_route_and_nothing_else(
    sqlite_api: Client, sqlite_database: Database
) -> None:
    response = await sqlite_api.get("/api/openapi.json")
    document = await response.json()
    assert isinstance(document, dict)
    assert document["openapi"] == "3.1.0"
    documented = {
        (method, path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in METHODS
    }
    served = _served(make_app(sqlite_database))
    assert documented == served
    assert all(path.startswith("/api/") for _, path in served)
    assert ("post", "/api/customers/{id}/merge") in served


async def test_every_operation_is_fully_described(sqlite_api: Client) -> None:
    document = await (await sqlite_api.get("/api/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas
    ids = []
    for path, operations in document["paths"].items():
        for name in re.findall(r"\{(\w+)\}", path):
            for operation in operations.values():
                assert {"name": name, "in": "path"}.items() <= next(
                    p for p in operation["parameters"] if p["name"] == name
                ).items()
        for operation in operations.values():
            ids.append(operation["operationId"])
            assert any(code.startswith("2") for code in operation["responses"])
            assert "500" in operation["responses"]
            if path != "/api/openapi.json":
                assert "401" in operation["responses"]
    assert len(ids) == len(set(ids))
    search = document["paths"]["/api/customers"]["get"]
    limit = next(p for p in search["parameters"] if p["name"] == "limit")
    assert {"minimum": 1, "maximum": 200, "default": 50}.items() <= limit["schema"].items()
    body = document["paths"]["/api/events"]["post"]["requestBody"]["content"]
    event = schemas[body["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert {"customer", "type", "data", "occurred_at", "idempotency_key"} <= set(
        event["properties"]
    )

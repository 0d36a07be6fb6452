"""The OpenAPI 3.1 document, generated from the route table and its pydantic models."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway.api.routes import Reply, Route, path_params
from gateway.api.schemas import ErrorOut

__all__ = ["OPENAPI_PATH", "build_document", "with_openapi"]

OPENAPI_PATH = "/api/openapi.json"
REF = "#/components/schemas/{model}"

ERRORS = {
    400: "Malformed JSON or a bad cursor",
    401: "No API key, or a wrong one",
    404: "No such customer or merge",
    409: "Conflicts with what is stored",
    422: "Invalid input; `detail` names each field and its problem",
    500: "Unexpected error; logged on the server",
    503: "Not configured in this deployment (flows need CHATGATE_FLOWS_DIR)",
}


def build_document(routes: Sequence[Route], *, title: str, version: str) -> dict[str, Any]:
    """The document for `routes`; every schema comes from the models the handlers use."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorOut, "serialization")]
    for route in routes:
        if route.body is not None:
            wanted.append((route.body, "validation"))
        wanted.extend(
            (reply.body, "serialization")
            for reply in route.replies.values()
            if isinstance(reply.body, type)
        )
    refs, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF)

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, refs)
        paths.setdefault(route.template, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The chatgate JSON API: customers, their cross-channel history, "
            "merges, erasure and events. Send `Authorization: Bearer <api key>`.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


Refs = Mapping[tuple[Any, JsonSchemaMode], Any]


def _operation(route: Route, refs: Refs) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "parameters": _parameters(route),
        "responses": {str(status): _reply(reply, refs) for status, reply in route.replies.items()},
    }
    if route.tags:
        operation["tags"] = list(route.tags)
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
        }
    errors = (*route.errors, 500) if route.public else (*route.errors, 401, 500)
    for status in sorted(set(errors)):
        operation["responses"][str(status)] = _reply(Reply(ERRORS[status], ErrorOut), refs)
    if route.public:
        operation["security"] = []
    return operation


def _reply(reply: Reply, refs: Refs) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.body is None:
        return out
    schema = refs[(reply.body, "serialization")] if isinstance(reply.body, type) else reply.body
    out["content"] = {"application/json": {"schema": schema}}
    return out


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1} if numeric else {"type": "string"},
        }
        for name, numeric in path_params(route.path)
    ]
    if route.query is not None:
        schema = route.query.model_json_schema(mode="validation")
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            param: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": _query_schema(prop, schema.get("$defs", {})),
            }
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
    return params


def _query_schema(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: standalone, and never null (it is absent instead)."""
    schema: dict[str, Any] = _inline(prop, defs)
    options = [s for s in schema.pop("anyOf", ()) if s != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    if schema.get("default", 0) is None:
        del schema["default"]
    return {k: v for k, v in schema.items() if k != "title"}


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """`schema` with local `$ref`s replaced by what they point at (parameters stand alone)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "description"}
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    return schema


def with_openapi(routes: Sequence[Route], *, title: str, version: str) -> list[Route]:
    """`routes` and the route serving their document, which describes itself too."""
    text: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=text[0], content_type="application/json")

    everything = [
        *routes,
        Route(
            "GET",
            OPENAPI_PATH,
            serve,
            "openapi",
            "This document",
            replies={200: Reply("The OpenAPI 3.1 document", {"type": "object"})},
            public=True,
        ),
    ]
    text.append(json.dumps(build_document(everything, title=title, version=version)))
    return everything

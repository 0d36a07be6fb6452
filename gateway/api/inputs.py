"""Reading a request's body, query and path into models, or a 400/422 naming the field."""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.api.errors import ApiError, from_pydantic

__all__ = ["bad_cursor", "path_id", "read_body", "read_query"]

M = TypeVar("M", bound=BaseModel)


async def read_body(request: web.Request, model: type[M]) -> M:
    """The JSON body as `model`: 400 when it is not JSON, 422 when it does not fit."""
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = "the body is empty" if not raw.strip() else f"the body is not JSON: {exc}"
        raise ApiError.field(400, "bad_request", "body", problem) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_pydantic(exc) from exc


def read_query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`; unknown parameters are ignored, as browsers add some."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise from_pydantic(exc) from exc


def path_id(request: web.Request, name: str = "id") -> int:
    """An integer path parameter; the route's pattern admits digits only."""
    return int(request.match_info[name])


def bad_cursor() -> ApiError:
    return ApiError.field(
        400, "bad_request", "cursor", "invalid cursor; pass next_cursor from a previous page"
    )

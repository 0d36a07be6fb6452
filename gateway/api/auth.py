"""Bearer-key authentication for every API path except the OpenAPI document."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.api.errors import error_response
from gateway.api.state import API_KEY

__all__ = ["PUBLIC_PATHS", "auth_middleware"]

# The description of the API is no secret, and tools fetch it without a key.
PUBLIC_PATHS = frozenset({"/api/openapi.json"})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 unless `Authorization: Bearer <api key>` carries the configured key."""
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error_response(
            401,
            "unauthorized",
            "send the API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="chatgate"'},
        )
    expected = request.config_dict[API_KEY].encode()
    if not hmac.compare_digest(token.strip().encode(), expected):
        return error_response(
            401,
            "unauthorized",
            "the API key is wrong",
            headers={"WWW-Authenticate": 'Bearer realm="chatgate", error="invalid_token"'},
        )
    return await handler(request)

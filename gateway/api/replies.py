"""Writing a model as the JSON answer."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

__all__ = ["json_reply"]


def json_reply(body: BaseModel, status: int = 200) -> web.Response:
    return web.Response(status=status, text=body.model_dump_json(), content_type="application/json")

"""The route table: one entry per endpoint, read by the router and by the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp.typedefs import Handler
from pydantic import BaseModel

__all__ = ["Reply", "Route", "path_params"]

# A raw JSON schema for answers no model describes (the free-form export).
Schema = dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """One documented answer: what it means and the model of its body (None: no body)."""

    description: str
    body: type[BaseModel] | Schema | None = None


@dataclass(frozen=True)
class Route:
    """An endpoint: how aiohttp reaches it and what OpenAPI says about it."""

    method: str
    path: str  # in aiohttp's syntax: "/api/customers/{id:\\d{1,18}}"
    handler: Handler
    operation_id: str
    summary: str
    replies: Mapping[int, Reply]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    public: bool = False  # served without the API key
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def template(self) -> str:
        """The path as OpenAPI writes it: "/api/customers/{id}"."""
        return _PARAM.sub(lambda m: "{" + m.group(1) + "}", self.path)


_PARAM = re.compile(r"\{(\w+)(?::((?:[^{}]|\{[^{}]*\})*))?\}")


def path_params(path: str) -> list[tuple[str, bool]]:
    """The (name, is_integer) of each parameter in an aiohttp path."""
    return [(m.group(1), "\\d" in (m.group(2) or "")) for m in _PARAM.finditer(path)]

"""Typed access to Bot API call parameters from JSON, query, urlencoded or multipart bodies.

aiogram sends every call as form data with non-string values JSON-encoded ("123", "true",
'{"inline_keyboard": ...}'), while other clients send JSON; getters accept both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.sandbox.telegram.errors import bad_request


@dataclass(frozen=True)
class Upload:
    """A file sent in the multipart body."""

    data: bytes
    filename: str
    content_type: str


class Params:
    """One call's parameters with typed getters that raise Telegram-style 400s."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    @classmethod
    async def from_request(cls, request: web.Request) -> Params:
        """Read query string and body whatever the content type."""
        values: dict[str, Any] = dict(request.query)
        if request.method != "POST" or not request.body_exists:
            return cls(values)
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError as exc:
                raise bad_request("can't parse JSON request body") from exc
            if not isinstance(body, dict):
                raise bad_request("request body must be a JSON object")
            values.update(body)
            return cls(values)
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                values[key] = Upload(value.file.read(), value.filename or key, value.content_type)
            else:
                values[key] = value
        return cls(values)

    def has(self, name: str) -> bool:
        """Whether the parameter was given at all (empty strings count as absent)."""
        return self._values.get(name) not in (None, "")

    def raw(self) -> dict[str, Any]:
        """All values as received, for logging and inspection."""
        return dict(self._values)

    def text(self, name: str, *, required: bool = False) -> str | None:
        """A string parameter."""
        value = self._values.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(f"{name} is empty")
            return None
        if isinstance(value, Upload):
            raise bad_request(f"{name} must be a string")
        return value if isinstance(value, str) else str(value)

    def integer(self, name: str, *, required: bool = False) -> int | None:
        """An integer parameter; form values arrive as decimal strings."""
        value = self._values.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(f"{name} is empty")
            return None
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError as exc:
            raise bad_request(f'field "{name}" must be of type Integer') from exc

    def flag(self, name: str) -> bool:
        """A boolean; accepts JSON true, "true", "True" (aiogram's str(bool)) and "1"."""
        value = self._values.get(name)
        if isinstance(value, bool):
            return value
        if value is None:
            return False
        return str(value).strip().lower() in ("true", "1")

    def obj(self, name: str) -> Any:
        """A JSON-serialized object or array (reply_markup, entities, allowed_updates)."""
        value = self._values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise bad_request(f"can't parse {name} JSON object") from exc
        return value

    def chat_id(self, name: str = "chat_id") -> int | str:
        """A chat id: an integer or an @username."""
        value = self.text(name, required=True)
        assert value is not None
        if value.startswith("@"):
            return value
        try:
            return int(value)
        except ValueError as exc:
            raise bad_request("chat not found") from exc

    def input_file(self, name: str) -> Upload | str | None:
        """A file: an upload (directly or via attach://key), a file_id or a URL."""
        value = self._values.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = self._values.get(value.removeprefix("attach://"))
            if value is None:
                raise bad_request(f"wrong remote file identifier specified: {name}")
        if value is None or value == "":
            return None
        return value if isinstance(value, Upload) else str(value)

"""A fake SMS provider HTTP server, a recording sink, and a client for our webhooks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict

from tests.fakes import RecordingSink


@dataclass
class Seen:
    """One request the fake provider got."""

    method: str
    path: str
    query: MultiDict[str]
    form: MultiDict[str]
    headers: dict[str, str]


@dataclass
class FakeProvider:
    """Records requests and answers each with the next queued reply (or a slow one)."""

    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    replies: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0

    def reply(self, status: int, body: str | dict[str, Any], **headers: str) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        self.replies.append((status, body, headers))

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else MultiDict()
        self.requests.append(
            Seen(
                request.method,
                request.path,
                MultiDict(request.query),
                MultiDict((k, str(v)) for k, v in form.items()),
                dict(request.headers),
            )
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        status, body, headers = self.replies.pop(0)
        return web.Response(status=status, text=body, headers=headers)


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


async def webhook_client(app: web.Application) -> TestClient[web.Request, web.Application]:
    client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    return client

"""Every /api path wants the bearer key; the OpenAPI document does not."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from storage.db import Database
from tests.api.conftest import AUTH, make_app


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic czNjcmV0LWFwaS1rZXk="},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "basic", "empty"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/customers"),
        ("POST", "/api/customers"),
        ("GET", "/api/customers/1"),
        ("DELETE", "/api/customers/1"),
        ("POST", "/api/events"),
        ("GET", "/api/no-such-endpoint"),
    ],
)
async def test_without_the_right_key_the_answer_is_401(
    sqlite_database: Database, headers: dict[str, str], method: str, path: str
) -> None:
    async with TestClient(TestServer(make_app(sqlite_database))) as client:
        response = await client.request(method, path, headers=headers, json={})
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.json()
        assert body["error"] == "unauthorized"


async def test_with_the_key_the_api_answers(sqlite_database: Database) -> None:
    async with TestClient(TestServer(make_app(sqlite_database))) as client:
        response = await client.get("/api/customers", headers=AUTH)
        assert response.status == 200
        assert await response.json() == {"items": [], "next_cursor": None}
        scheme_in_lower_case = {"Authorization": AUTH["Authorization"].replace("Bearer", "bearer")}
        assert (await client.get("/api/customers", headers=scheme_in_lower_case)).status == 200


async def test_openapi_document_needs_no_key(sqlite_database: Database) -> None:
    async with TestClient(TestServer(make_app(sqlite_database))) as client:
        response = await client.get("/api/openapi.json")
        assert response.status == 200
        assert (await response.json())["openapi"] == "3.1.0"


async def test_paths_outside_the_api_are_left_alone(sqlite_database: Database) -> None:
    app = make_app(sqlite_database)

    async def webhook(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_post("/webhooks/telegram", webhook)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/webhooks/telegram")
        assert response.status == 200
        assert await response.text() == "ok"

"""Unexpected failures answer a plain JSON 500 and are logged, never shown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from storage.db import Database
from tests.api.conftest import AUTH, make_app


@pytest.fixture
async def unmigrated(tmp_path: Path) -> AsyncIterator[Database]:
    """A store without tables: every query fails inside the database driver."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    yield db
    await db.aclose()


async def test_database_failure_is_a_logged_json_500(
    unmigrated: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async with TestClient(TestServer(make_app(unmigrated)), headers=AUTH) as client:
        with caplog.at_level(logging.ERROR, logger="chatgate.api"):
            response = await client.post("/api/customers", json={"phone": "+79991234567"})
        assert response.status == 500
        body = await response.json()
        assert body["error"] == "internal"
        text = await response.text()
        assert "Traceback" not in text
        assert "customer" not in body["message"]  # no SQL, no table names
    assert any(r.exc_info for r in caplog.records if r.name == "chatgate.api")

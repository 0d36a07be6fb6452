"""A whole chatgate process in the sandbox: emulators, bots, store, outbox, dialog."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.app import App
from gateway.config import load_settings
from storage.migrate import upgrade
from tests.conftest import POSTGRES_URL, free_port, service_missing

T = TypeVar("T")


async def eventually(probe: Callable[[], T | None], *, within: float = 15.0) -> T:
    """Poll `probe` until it returns something truthy; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


@pytest.fixture(params=["sqlite", "postgres"])
async def sandbox_app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[App]:
    """chatgate with no tokens configured: the sandbox, on each store, on a free port."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'sandbox.db'}"
    database = None
    if request.param == "postgres":
        database = f"e2e_{uuid.uuid4().hex[:12]}"
        database_url = await _create_database(database)
    settings = load_settings(
        database_url=database_url,
        http_port=free_port(),
        sandbox=True,
        api_key="test-key",
    )
    app = App(settings)
    try:
        if database is not None:
            await upgrade(app.db.engine)  # what `chatgate migrate` does
        await app.start()
        yield app
    finally:
        await app.aclose()
        if database is not None:
            await _drop_database(database)


async def _admin(sql: str) -> None:
    engine = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


async def _create_database(name: str) -> str:
    try:
        await _admin(f'CREATE DATABASE "{name}"')
    except (OSError, sa.exc.DBAPIError) as exc:
        service_missing("PostgreSQL", exc)
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


async def _drop_database(name: str) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""A whole chatgate process in the sandbox: emulators, bots, store, outbox, dialog."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.app import App
from gateway.clock import Clock
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


class SandboxFactory(Protocol):
    """Starts a sandbox chatgate on this test's store; `prepare` runs before `start()`."""

    async def __call__(
        self,
        *,
        clock: Clock | None = None,
        prepare: Callable[[App], None] | None = None,
        **settings: Any,
    ) -> App: ...


@pytest.fixture(params=["sqlite", "postgres"])
async def sandbox_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SandboxFactory]:
    """Builds chatgate in the sandbox, on each store, on a free port; closes it afterwards.

    Keyword settings add to (or override) the sandbox's own: no tokens, the
    API key `test-key`. On PostgreSQL each test gets its own database, migrated
    as `chatgate migrate` would, and dropped at the end.
    """
    apps: list[App] = []
    databases: list[str] = []

    async def start(
        *,
        clock: Clock | None = None,
        prepare: Callable[[App], None] | None = None,
        **settings: Any,
    ) -> App:
        database_url = f"sqlite+aiosqlite:///{tmp_path / f'sandbox{len(apps)}.db'}"
        if request.param == "postgres":
            database = f"e2e_{uuid.uuid4().hex[:12]}"
            database_url = await _create_database(database)
            databases.append(database)
        app = App(
            load_settings(
                **{
                    "database_url": database_url,
                    "http_port": free_port(),
                    "sandbox": True,
                    "api_key": "test-key",
                    **settings,
                }
            ),
            clock=clock,
        )
        apps.append(app)
        if prepare is not None:
            prepare(app)
        if request.param == "postgres":
            await upgrade(app.db.engine)  # what `chatgate migrate` does
        await app.start()
        return app

    try:
        yield start
    finally:
        for app in reversed(apps):
            await app.aclose()
        for database in databases:
            await _drop_database(database)


@pytest.fixture
async def sandbox_app(sandbox_factory: SandboxFactory) -> App:
    """chatgate with no tokens configured: the sandbox, on each store, on a free port."""
    return await sandbox_factory()


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

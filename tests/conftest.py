"""Shared fixtures: the store on every backend, isolated per test.

Storage tests run on SQLite and on PostgreSQL (`CHATGATE_TEST_POSTGRES_URL`).
Locally a missing server skips those tests with a loud reason; with
`CHATGATE_REQUIRE_SERVICES=1` (CI) a missing server fails the run.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.db import Database
from storage.migrate import upgrade

POSTGRES_URL = os.environ.get(
    "CHATGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CHATGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("CHATGATE_REQUIRE_SERVICES") == "1"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never one this run handed out before.

    The kernel may give a just-released port again; two of them in one test would
    collide once both servers start.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def service_missing(name: str, error: BaseException) -> None:
    """Fail under CI, skip loudly elsewhere."""
    reason = f"{name} is not reachable ({type(error).__name__}: {error})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason}; CHATGATE_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {reason}; set CHATGATE_REQUIRE_SERVICES=1 to make this fail")


async def _postgres(schema: str) -> Database:
    admin = Database(POSTGRES_URL, pool_size=1, max_overflow=0)
    try:
        async with admin.engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except (OSError, sa.exc.DBAPIError) as exc:
        await admin.aclose()
        service_missing("PostgreSQL", exc)
    await admin.aclose()
    return Database(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})


async def _drop_schema(schema: str) -> None:
    admin = Database(POSTGRES_URL, pool_size=1, max_overflow=0)
    try:
        async with admin.engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await admin.aclose()


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty store of its own on each backend."""
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}")
        await upgrade(db.engine)
        yield db
        await db.aclose()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    db = await _postgres(schema)
    try:
        await upgrade(db.engine)
        yield db
    finally:
        await db.aclose()
        await _drop_schema(schema)


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite store, for tests about something other than the backend."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}")
    await upgrade(db.engine)
    yield db
    await db.aclose()

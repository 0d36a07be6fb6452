"""The database handle: engine, sessions and the health probe."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.batches import GroupCommit, Unit

__all__ = ["Database"]

T = TypeVar("T")


class Database:
    """One engine and its session factory; `aclose()` disposes of the pool."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        commit_lanes: int | None = None,
        **engine_options: Any,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            engine_options.setdefault("connect_args", {"timeout": 30})
        else:
            engine_options.setdefault("pool_size", 10)
            engine_options.setdefault("max_overflow", 20)
            engine_options.setdefault("pool_pre_ping", True)
        self.engine: AsyncEngine = create_async_engine(url, echo=echo, **engine_options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Taking turns here, rather than in SQLite's
        # busy handler (which sleeps in growing steps), keeps the process fast under
        # concurrency and avoids "database is locked" when a reader turns writer.
        self._turn = asyncio.Lock() if self.is_sqlite else None
        self._holder: asyncio.Task[object] | None = None
        # SQLite commits one writer at a time; PostgreSQL overlaps a few batches, so
        # one batch waiting on the server doesn't hold up the next.
        lanes = commit_lanes or (1 if self.is_sqlite else 4)
        self._lanes = [GroupCommit(self.session) for _ in range(lanes)]

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error."""
        task = asyncio.current_task()
        if self._turn is None or (task is not None and self._holder is task):
            # A nested session of the task that has the turn goes straight through.
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with self._turn:
            self._holder = task
            try:
                async with self.sessions() as session, session.begin():
                    yield session
            finally:
                self._holder = None

    async def batched(self, unit: Unit[T], *, key: str = "") -> T:
        """Run `unit(session)` in a transaction shared with concurrent callers (group commit).

        Returns its result once that transaction committed; see storage.batches.
        For the hot path's many small writers: one commit carries them all. Units
        with the same `key` (say, a chat: units that lock the same rows) go to the
        same lane, in order, so batches of different lanes seldom wait on each
        other's rows (when they do, PostgreSQL's deadlock detection fails one,
        and its units are redone one by one).
        """
        return await self._lane(key).run(unit)

    def _lane(self, key: str) -> GroupCommit:
        return self._lanes[zlib.crc32(key.encode()) % len(self._lanes)]

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers work while the outbox writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # SQLite's lower() folds ASCII only; customers are searched by Cyrillic names too.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value

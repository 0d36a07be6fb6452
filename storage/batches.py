"""Group commit: concurrent units of work share one transaction and one commit.

A transaction costs more than the few statements of a small unit: its own
connection checkout, BEGIN and COMMIT round trips, an fsync, and on SQLite a turn
of the one writer. Units offered while a batch is committing wait for the next
batch, so under load one commit carries many units, and alone a unit commits at
once (a batch of one).

A failing unit must not fail the others: the batch is rolled back and each unit
is redone in a transaction of its own, so only its own caller sees its error and
nothing of the batch is half committed. A unit may therefore run twice; it must
do nothing but work in the session it is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["GroupCommit", "Unit"]

log = logging.getLogger("chatgate.storage")

T = TypeVar("T")
Unit = Callable[[AsyncSession], Awaitable[T]]
Transaction = Callable[[], AbstractAsyncContextManager[AsyncSession]]
"""A session whose transaction commits on success (Database.session)."""


@dataclass(slots=True)
class _Waiting(Generic[T]):
    unit: Unit[T]
    future: asyncio.Future[T]


class GroupCommit:
    """Runs units of work in shared transactions; `run(unit)` returns after the commit."""

    def __init__(self, transaction: Transaction, *, max_units: int = 64) -> None:
        self._transaction = transaction
        self.max_units = max_units
        self._waiting: deque[_Waiting[Any]] = deque()
        self._committer: asyncio.Task[None] | None = None

    async def run(self, unit: Unit[T]) -> T:
        """Run `unit` in a transaction shared with other callers; its result once committed.

        A caller cancelled before its unit started takes it out of the batch; one
        cancelled later leaves it to commit with the others (as any transaction
        whose commit was under way), it just isn't told.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(unit, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_all())
        return await future

    async def _commit_all(self) -> None:
        try:
            while self._waiting:
                batch = self._next_batch()
                if batch:
                    await self._commit(batch)
        except BaseException:
            # Cancelled with the loop: nobody may wait forever on a batch that won't run.
            for waiting in self._waiting:
                waiting.future.cancel()
            self._waiting.clear()
            raise

    def _next_batch(self) -> list[_Waiting[Any]]:
        batch: list[_Waiting[Any]] = []
        while self._waiting and len(batch) < self.max_units:
            waiting = self._waiting.popleft()
            if not waiting.future.done():  # its caller was cancelled meanwhile
                batch.append(waiting)
        return batch

    async def _commit(self, batch: list[_Waiting[Any]]) -> None:
        try:
            results = await self._together(batch)
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, exc=exc)
                return
            log.info("storage.batch_redone", extra={"units": len(batch), "why": repr(exc)})
            for waiting in batch:
                await self._alone(waiting)
            return
        for waiting, result in zip(batch, results, strict=True):
            _settle(waiting.future, result=result)

    async def _together(self, batch: list[_Waiting[Any]]) -> list[Any]:
        async with self._transaction() as session:
            return [await waiting.unit(session) for waiting in batch]

    async def _alone(self, waiting: _Waiting[Any]) -> None:
        if waiting.future.done():
            return
        try:
            async with self._transaction() as session:
                result = await waiting.unit(session)
        except asyncio.CancelledError:
            waiting.future.cancel()
            raise
        except Exception as exc:
            _settle(waiting.future, exc=exc)
        else:
            _settle(waiting.future, result=result)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    if future.done():
        return  # the caller is gone; a committed unit's result has nobody to go to
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)

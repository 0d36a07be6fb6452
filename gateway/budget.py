"""Work a webhook waits for up to a budget, then lets finish in the background.

A platform retries a webhook that answers late or with an error. The handler
waits for the work (so "ok" means stored); past the budget it answers anyway
and the work goes on, and on shutdown it gets a grace period before it is
cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["Budget"]


class Budget:
    """Runs work for webhook handlers; `aclose()` lets late work finish, within `grace`."""

    def __init__(self, name: str, *, budget: float, grace: float = 5.0) -> None:
        self._log = logging.getLogger(name)
        self._name = name
        self._budget = budget
        self._grace = grace
        self._late: set[asyncio.Task[None]] = set()

    async def run(self, work: Coroutine[Any, Any, None]) -> bool:
        """True when the work finished in time; raises what it raised; False if late."""
        task = asyncio.get_running_loop().create_task(work)
        done, _ = await asyncio.wait({task}, timeout=self._budget)
        if not done:
            self._late.add(task)
            task.add_done_callback(self._finished)
            return False
        task.result()
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._late.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._log.error(f"{self._name}.failed_late", exc_info=error)

    async def aclose(self) -> None:
        if not self._late:
            return
        _, pending = await asyncio.wait(set(self._late), timeout=self._grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

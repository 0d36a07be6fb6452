"""A background task that repeats one step for as long as the app runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Repeating"]


class Repeating:
    """Calls `step` again at once while it reports more work, else after `pause`.

    A failing step is logged as `failed_event` and tried again after the pause:
    one bad pass must not stop the service.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[bool]],
        *,
        pause: Callable[[], Awaitable[None]],
        log: logging.Logger,
        failed_event: str,
    ) -> None:
        self.name = name
        self._step = step
        self._pause = pause
        self._log = log
        self._failed_event = failed_event
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            busy = False
            try:
                busy = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception(self._failed_event)
            if not busy:
                await self._pause()

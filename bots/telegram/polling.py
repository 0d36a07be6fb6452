"""getUpdates long polling, our own loop around aiogram's GetUpdates.

Not `Dispatcher.start_polling`: that one handles updates as concurrent tasks (order
lost, offset confirmed before handling finished), installs signal handlers and only
stops from inside. Here each batch is handled in order before the next getUpdates
confirms it, so a crash mid-batch makes Telegram hand the rest over again, and the
update_id dedupe in TelegramEvents drops what was already done. `aclose()` cancels
a pending long poll at once but lets an update being handled finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramConflictError, TelegramNetworkError
from aiogram.methods import GetUpdates

from bots.telegram.inbound import ALLOWED_UPDATES, TelegramEvents

__all__ = ["TelegramPolling"]

log = logging.getLogger(__name__)


class TelegramPolling:
    """Polls one bot and hands every update to TelegramEvents, in order."""

    def __init__(
        self,
        bot: Bot,
        events: TelegramEvents,
        *,
        timeout: int = 25,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        grace: float = 10.0,
    ) -> None:
        self._bot = bot
        self._events = events
        self._timeout = timeout
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._grace = grace
        self._task: asyncio.Task[None] | None = None
        self._handling = False
        self._stopping = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="telegram-polling")

    async def _run(self) -> None:
        offset: int | None = None
        failures = 0
        # Longer than the long poll itself, or every quiet poll would time out.
        request_timeout = int(self._bot.session.timeout + self._timeout)
        while not self._stopping.is_set():
            call = GetUpdates(offset=offset, timeout=self._timeout, allowed_updates=ALLOWED_UPDATES)
            try:
                updates = await self._bot(call, request_timeout=request_timeout)
            except (TelegramAPIError, TelegramNetworkError, TimeoutError) as exc:
                # 409: a webhook is set or another poller runs; 5xx, network: an outage.
                failures = min(failures + 1, 30)
                level = logging.ERROR if isinstance(exc, TelegramConflictError) else logging.WARNING
                log.log(
                    level, "telegram.poll_failed", extra={"why": f"{type(exc).__name__}: {exc}"}
                )
                await self._sleep(min(self._max_backoff, self._backoff * failures))
                continue
            failures = 0
            self._handling = True
            try:
                for update in updates:
                    offset = update.update_id + 1
                    try:
                        await self._events.process(update)
                    except Exception:
                        # The offset moves on: a poison update is logged, not retried forever.
                        log.exception(
                            "telegram.poll_update_failed", extra={"update": update.update_id}
                        )
            finally:
                self._handling = False

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def aclose(self) -> None:
        """Stop: a pending long poll is cancelled, an update being handled may finish."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        if self._handling:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self._grace)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

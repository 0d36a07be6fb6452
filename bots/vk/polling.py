"""Bots Long Poll runner on vkbottle's BotPolling.

BotPolling already does what the protocol asks: `failed: 1` takes the new ts,
`failed: 2` refetches the key and keeps ts, `failed: 3` refetches both, and network
errors back off with asyncio.sleep. We switch off the one thing we can't have:
it saves ts to `./.vkbottle/bot-polling/<group>.json` in the working directory.
Instead the ts goes to a `CursorStore` (the database), so a restart resumes where
the last run stopped and events VK still holds are not lost.
Events repeated after `failed: 1` are dropped by VKEvents' event_id dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from vkbottle import API
from vkbottle.exception_factory import ErrorHandler
from vkbottle.polling import BotPolling

from bots.vk.inbound import VKEvents

__all__ = ["VKPolling"]

log = logging.getLogger(__name__)


class CursorStore(Protocol):
    async def load(self, name: str) -> str | None: ...

    async def save(self, name: str, value: str) -> None: ...


class _Polling(BotPolling):
    """BotPolling that keeps no files: the ts lives in memory for VKPolling to store."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(skip_old_events=False, **kwargs)
        self.restored_ts: str | None = None  # from the last run, used once
        self.connected = asyncio.Event()

    def restore_server_ts(self, server: dict[str, Any]) -> dict[str, Any]:
        self.connected.set()
        if self.restored_ts is not None:
            server["ts"], self.restored_ts = self.restored_ts, None
        return server

    def save_server_ts(self, server: dict[str, Any]) -> None:
        return None  # VKPolling stores the ts of each answer once it is handed over


async def _log_error(error: Exception) -> None:
    log.warning("vk.poll_error", extra={"why": f"{type(error).__name__}: {error}"})


class VKPolling:
    """Polls one community and hands every update to VKEvents, in order."""

    def __init__(
        self,
        api: API,
        events: VKEvents,
        *,
        wait: int = 25,
        backoff: float = 1.0,
        cursors: CursorStore | None = None,
    ) -> None:
        errors = ErrorHandler()
        errors.register_undefined_error_handler(_log_error)
        self._polling = _Polling(api=api, group_id=events.group_id, wait=wait, error_handler=errors)
        self._events = events
        self._backoff = backoff
        self._cursors = cursors
        self._cursor_name = f"vk:{events.group_id}:longpoll_ts"
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, *, ready_within: float = 10.0) -> None:
        """Start polling; return once the first server was fetched (or after a while)."""
        if self.running:
            return
        if self._cursors is not None:
            self._polling.restored_ts = await self._cursors.load(self._cursor_name)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="vk-longpoll")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._polling.connected.wait(), ready_within)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                async for answer in self._polling.listen():
                    failures = 0
                    await self._hand_over(answer.get("updates") or [])
                    await self._save_ts(answer.get("ts"))
            except Exception as exc:
                # listen() fetches its first server outside its own retry loop, so a VK
                # outage at start ends the generator; begin again after a pause.
                failures = min(failures + 1, 30)
                log.warning("vk.poll_restart", extra={"why": f"{type(exc).__name__}: {exc}"})
                await asyncio.sleep(self._backoff * failures)

    async def _save_ts(self, ts: object) -> None:
        if self._cursors is None or ts is None:
            return
        try:
            await self._cursors.save(self._cursor_name, str(ts))
        except Exception:
            log.warning("vk.poll_ts_not_saved", exc_info=True)

    async def _hand_over(self, updates: list[Any]) -> None:
        for update in updates:
            if not isinstance(update, dict):
                continue
            try:
                await self._events.process(update)
            except Exception:
                # The ts has moved on; a failure here is logged, not retried forever.
                log.exception("vk.poll_update_failed", extra={"event": update.get("event_id")})

    async def aclose(self) -> None:
        """Stop at once: the pending long request is cancelled, not waited out."""
        self._polling.stop()
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

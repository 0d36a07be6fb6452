"""Handle each platform update once, across resends, concurrency and restarts.

Platforms resend what they think failed (Telegram and VK webhooks, SMS
callbacks) and pollers may see an event twice. An update is recorded as handled
only after its handling succeeded, so one that a crash interrupted is handled
again when it comes back; what it stores is idempotent downstream (a message's
external id is unique), so a second pass never doubles anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gateway.channels import Sink

__all__ = ["Once"]


class Once:
    """Runs a handler for an update key unless that key was handled before."""

    def __init__(self, sink: Sink, source: str) -> None:
        self.sink = sink
        self.source = source  # the key namespace, e.g. "telegram:<bot id>"
        self._in_flight: dict[str, asyncio.Future[None]] = {}

    async def run(self, key: str, handler: Callable[[], Awaitable[None]]) -> bool:
        """Handle `key` with `handler` unless done already; False for a duplicate.

        Raises what the handler raised, so the sender retries.
        """
        running = self._in_flight.get(key)
        if running is not None:
            # A resend while the first delivery is still being handled: share its fate.
            await asyncio.shield(running)
            return False
        if await self.sink.seen(self.source, key):
            return False
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = done
        try:
            await handler()
            await self.sink.first_seen(self.source, key)
        except BaseException as exc:
            done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            done.exception()  # retrieved: nobody else may be waiting for it
            raise
        else:
            done.set_result(None)
        finally:
            del self._in_flight[key]
        return True

"""Handle each platform update once, across resends, concurrency and restarts.

Platforms resend what they think failed (Telegram and VK webhooks, SMS
callbacks) and pollers may see an event twice. An update is recorded as handled
only after its handling succeeded, so one that a crash interrupted is handled
again when it comes back; what it stores is idempotent downstream (a message's
external id is unique), so a second pass never doubles anything.

A customer's message records its update key itself, in the transaction that
stores it (`run_recording`): one commit instead of a read before and a write
after, and the key can no longer be recorded without the message or vice versa.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gateway.channels import Sink, UpdateKey

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

        async def checked() -> bool:
            if await self.sink.seen(self.source, key):
                return False
            await handler()
            await self.sink.first_seen(self.source, key)
            return True

        return await self._alone(key, checked)

    async def run_recording(
        self, key: str, handler: Callable[[UpdateKey], Awaitable[None]]
    ) -> bool:
        """Handle `key` with a handler that hands it to the sink with the message it stores.

        The handler puts the key on its Inbound (`update`); the sink records it in
        the message's own transaction and drops a message whose key it has. Here
        only a resend that arrives while the first is in flight is caught, so False
        means that one; a later resend reaches the sink and stores nothing. An
        update the handler keeps nothing of is recorded nowhere: its resend runs
        the handler again, harmless when keeping nothing is all it did.
        Raises what the handler raised, so the sender retries.
        """

        async def recording() -> bool:
            await handler(UpdateKey(self.source, key))
            return True

        return await self._alone(key, recording)

    async def _alone(self, key: str, handling: Callable[[], Awaitable[bool]]) -> bool:
        """Run `handling` for `key`; a resend meanwhile waits and shares its fate."""
        running = self._in_flight.get(key)
        if running is not None:
            await asyncio.shield(running)
            return False
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = done
        try:
            handled = await handling()
        except BaseException as exc:
            done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            done.exception()  # retrieved: nobody else may be waiting for it
            raise
        else:
            done.set_result(None)
        finally:
            del self._in_flight[key]
        return handled

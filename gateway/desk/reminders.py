"""Reminding the managers' group of conversations nobody took in time."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from gateway.clock import Clock
from gateway.desk.mirror import Mirror
from gateway.outbox import Enqueued, Outbox
from gateway.repeating import Repeating
from storage.conversations import Conversations
from storage.db import Database

__all__ = ["Reminders"]

log = logging.getLogger("chatgate.desk")


class Reminders:
    """Every `every_s`, a line in the topic of each conversation waiting over `after_s`.

    Each waiting spell is reminded of once (reminded_at after waiting_since); one
    process at a time sweeps, under the broker's lock.
    """

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        mirror: Mirror,
        *,
        clock: Clock,
        after_s: float,
        every_s: float = 30.0,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.mirror = mirror
        self.clock = clock
        self.after_s = after_s
        self.every_s = every_s
        self._loop = Repeating(
            "desk-reminders",
            self._sweep,
            pause=lambda: asyncio.sleep(every_s),
            log=log,
            failed_event="desk.remind_failed",
        )

    async def remind_due(self) -> int:
        """Remind of every conversation due now; returns how many."""
        now = self.clock.now()
        copies: list[int] = []
        async with self.db.session() as session:
            conversations = Conversations(session)
            for conversation in await conversations.unanswered(
                now - timedelta(seconds=self.after_s)
            ):
                since = conversation.waiting_since or now
                minutes = int((now - since).total_seconds() // 60)
                copies.append(
                    await self.mirror.notice(
                        session,
                        conversation,
                        f"⏰ Клиент ждёт ответа {minutes} мин. Возьмите диалог: /take",
                    )
                )
                await conversations.update(conversation, reminded_at=now)
        if copies:
            await self.outbox.release(Enqueued(0, (), 0.0, tuple(copies)))
            log.info("desk.reminded", extra={"count": len(copies)})
        return len(copies)

    async def _sweep(self) -> bool:
        """Remind of what is due when this process holds the sweep; Repeating waits `every_s`."""
        if await self.outbox.broker.try_lock("desk:reminders", self.every_s * 2):
            await self.remind_due()
        return False

    async def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.aclose()

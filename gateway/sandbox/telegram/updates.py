"""A bot's pending-update queue, shared by getUpdates long polling and webhook delivery."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
from typing import Any

from gateway.sandbox.telegram.errors import ApiError

# Types left out when allowed_updates is not given or empty (Bot API getUpdates docs).
_OPT_IN_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_TERMINATED = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)


class UpdateQueue:
    """Updates waiting to be confirmed, with increasing update_id and wake-ups for waiters."""

    def __init__(self, first_update_id: int = 1) -> None:
        self._ids = itertools.count(first_update_id)
        self.pending: list[dict[str, Any]] = []
        self.allowed_updates: list[str] | None = None
        self.history: list[dict[str, Any]] = []
        self._event = asyncio.Event()
        self._generation = 0
        self._unseen_duplicates: list[dict[str, Any]] = []
        self._released = False

    def _wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def _wanted(self, kind: str) -> bool:
        if self.allowed_updates:
            return kind in self.allowed_updates
        return kind not in _OPT_IN_TYPES

    def push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Enqueue an update of `kind`; None when allowed_updates filters it out."""
        if not self._wanted(kind):
            return None
        update = {"update_id": next(self._ids), kind: payload}
        self.pending.append(update)
        self.history.append(update)
        self._wake()
        return update

    def redeliver(self, update_id: int) -> dict[str, Any]:
        """Queue an exact copy of an earlier update again, as Telegram does after a timeout.

        The copy survives offset confirmation until one getUpdates has returned it, so
        pollers see the duplicate too (real Telegram only re-sends through webhooks).
        """
        for update in reversed(self.history):
            if update["update_id"] == update_id:
                duplicate: dict[str, Any] = copy.deepcopy(update)
                self.pending.append(duplicate)
                self._unseen_duplicates.append(duplicate)
                self._wake()
                return duplicate
        raise KeyError(update_id)

    def confirm(self, offset: int) -> None:
        """Forget updates below offset; a negative offset keeps only the last -offset ones."""
        if offset < 0:
            self.pending = self.pending[offset:]
        else:
            self.pending = [
                u
                for u in self.pending
                if u["update_id"] >= offset or any(u is d for d in self._unseen_duplicates)
            ]

    def delivered(self, update: dict[str, Any]) -> None:
        """Drop one update a webhook accepted (by identity, so duplicates stay queued)."""
        for index, queued in enumerate(self.pending):
            if queued is update:
                del self.pending[index]
                self._unseen_duplicates = [d for d in self._unseen_duplicates if d is not update]
                return

    def drop_all(self) -> None:
        """drop_pending_updates=True."""
        self.pending.clear()

    async def wait_for_pending(self) -> None:
        """Return once something is queued."""
        while not self.pending:
            await self._event.wait()

    def release(self) -> None:
        """Answer every waiting getUpdates now: the emulator is shutting down."""
        self._released = True
        self._event.set()

    async def poll(self, offset: int | None, limit: int, wait: float) -> list[dict[str, Any]]:
        """getUpdates: confirm, then return up to `limit` updates, waiting up to `wait` s."""
        if offset:
            self.confirm(offset)
        self._generation += 1
        generation = self._generation
        self._wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            if generation != self._generation:
                raise ApiError(409, _TERMINATED)
            if self.pending:
                batch = self.pending[:limit]
                self._unseen_duplicates = [
                    d for d in self._unseen_duplicates if not any(d is u for u in batch)
                ]
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0 or self._released:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), remaining)

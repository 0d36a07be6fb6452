"""Who may act in the managers' group: listed user ids, or the group's admins."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError

__all__ = ["ManagerAccess"]

log = logging.getLogger(__name__)


class ManagerAccess:
    """CHATGATE_MANAGERS, or an admin per getChatAdministrators (cached for `ttl_s`)."""

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        managers: Iterable[int] = (),
        *,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._listed = frozenset(managers)
        self._ttl_s = ttl_s
        self._clock = clock
        self._admins: frozenset[int] = frozenset()
        self._fetched_at: float | None = None

    async def allows(self, user_id: int) -> bool:
        """Whether the user is a manager; an admin list Telegram won't give counts as empty."""
        if user_id in self._listed:
            return True
        return user_id in await self._group_admins()

    async def _group_admins(self) -> frozenset[int]:
        now = self._clock()
        if self._fetched_at is not None and now - self._fetched_at < self._ttl_s:
            return self._admins
        try:
            members = await self._bot.get_chat_administrators(self._chat_id)
        except (TelegramAPIError, TelegramNetworkError, TimeoutError) as exc:
            log.warning("managers.admins_unavailable", extra={"why": str(exc)})
            return self._admins  # the last known list; nobody new is let in meanwhile
        self._admins = frozenset(m.user.id for m in members if not m.user.is_bot)
        self._fetched_at = now
        return self._admins

"""Sends the desk's stored copies into the conversation's topic, which it keeps alive.

It stands in for the bot's TelegramAdapter (same channel and account, so the
same lane and the group's bucket): deliveries without a desk mark pass straight
through. A desk copy names its conversation; its topic is looked up when it is
sent, created if there is none (the first copy is the customer card), and
re-created, card and recent history first, when Telegram says the thread is gone.
Copies to the group are sent one at a time in stored order (one chat, one head),
and the topic id is recorded with a compare-and-set: one conversation, one topic.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramNetworkError
from aiohttp import ClientError

from bots.telegram.adapter import failure_for
from gateway.channels import ChannelAdapter, Failure, Outbound, Sent
from gateway.desk.cards import Card

__all__ = ["DeskAdapter", "Topics"]

log = logging.getLogger(__name__)

_GONE = ("thread not found", "topic_deleted", "topic_id_invalid")


class Topics(Protocol):
    """gateway.desk.TopicBook: the store's side of conversation ↔ topic."""

    async def topic_of(self, conversation_id: int) -> int | None: ...

    async def card_of(self, conversation_id: int) -> Card: ...

    async def swap(self, conversation_id: int, old: int | None, new: int | None) -> int | None: ...


class DeskAdapter:
    """The bot's adapter, plus topics for the desk's copies."""

    channel = "telegram"

    def __init__(self, bot: Bot, inner: ChannelAdapter, topics: Topics, chat_id: int) -> None:
        self.account = inner.account
        self._bot = bot
        self._inner = inner
        self._topics = topics
        self._chat_id = chat_id

    async def send(self, message: Outbound) -> Sent | Failure:
        desk = message.meta.get("desk")
        if not isinstance(desk, dict) or "conversation" not in desk:
            return await self._inner.send(message)
        conversation_id = int(desk["conversation"])
        try:
            thread = await self._topic(conversation_id, repost=False)
            if desk.get("retitle"):
                await self._retitle(conversation_id, thread)
            result = await self._inner.send(dataclasses.replace(message, thread_id=thread))
            if isinstance(result, Failure) and _gone(result.reason):
                log.info(
                    "managers.topic_gone", extra={"conversation": conversation_id, "topic": thread}
                )
                await self._topics.swap(conversation_id, thread, None)
                thread = await self._topic(conversation_id, repost=True)
                result = await self._inner.send(dataclasses.replace(message, thread_id=thread))
        except (TelegramAPIError, TelegramNetworkError, ClientError, TimeoutError) as exc:
            return failure_for(exc)
        return result

    async def _topic(self, conversation_id: int, *, repost: bool) -> int:
        """The conversation's topic; a new one (with the card, if `repost`) if none."""
        current = await self._topics.topic_of(conversation_id)
        if current is not None:
            return current
        card = await self._topics.card_of(conversation_id)
        created = await self._bot.create_forum_topic(chat_id=self._chat_id, name=card.name)
        thread = created.message_thread_id
        kept = await self._topics.swap(conversation_id, None, thread)
        if kept != thread:
            # Another sender recorded one first: ours goes, theirs stays.
            try:
                await self._bot.delete_forum_topic(chat_id=self._chat_id, message_thread_id=thread)
            except TelegramAPIError:
                log.warning("managers.extra_topic_left", extra={"topic": thread})
            assert kept is not None
            return kept
        log.info("managers.topic_created", extra={"conversation": conversation_id, "topic": thread})
        if repost:
            await self._bot.send_message(
                chat_id=self._chat_id, text=card.html, parse_mode="HTML", message_thread_id=thread
            )
        return thread

    async def _retitle(self, conversation_id: int, thread: int) -> None:
        """Rename the topic after the customer as they are now (a new channel linked)."""
        card = await self._topics.card_of(conversation_id)
        try:
            await self._bot.edit_forum_topic(
                chat_id=self._chat_id, message_thread_id=thread, name=card.name
            )
        except TelegramBadRequest as exc:
            if "not_modified" not in exc.message.lower():
                raise

    async def aclose(self) -> None:
        await self._inner.aclose()


def _gone(reason: str) -> bool:
    text = reason.lower()
    return any(word in text for word in _GONE)

"""Messages in the managers' group → desk actions; everyone else's are refused.

In a topic: /take /release /close /history [N] /note <text> /via <channel> /link
/card, and plain text, which is the reply to the customer. Anywhere: /queue, /mine.
Answers about the conversation go into its topic through the outbox (stored
first); refusals and /queue, /mine lists are answered on the spot.
"""

from __future__ import annotations

import asyncio
import logging
from html import escape

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramRetryAfter
from aiogram.types import Message

from bots.telegram.managers.access import ManagerAccess
from gateway.desk import Actor, Desk, DeskError
from storage.errors import NotFound

__all__ = ["HELP", "REFUSAL", "ManagersGroup"]

ANSWER_ATTEMPTS = 4

log = logging.getLogger(__name__)

REFUSAL = "Только менеджеры могут работать с диалогами здесь."
HELP = (
    "В теме диалога: /take, /release, /close, /history [N], /note текст, "
    "/via telegram|vk|sms|email, /link, /card; просто текст уходит клиенту. "
    "Везде: /queue, /mine."
)


def parse_command(text: str) -> tuple[str | None, str]:
    """'/history@shop_bot 20' → ('history', '20'); plain text → (None, text)."""
    if not text.startswith("/"):
        return None, text
    head, _, rest = text.partition(" ")
    return head[1:].split("@", 1)[0].lower(), rest.strip()


class ManagersGroup:
    """The group handler TelegramEvents calls for group messages."""

    def __init__(self, bot: Bot, desk: Desk, access: ManagerAccess, chat_id: int) -> None:
        self._bot = bot
        self._desk = desk
        self._access = access
        self._chat_id = chat_id

    async def __call__(self, message: Message) -> None:
        if message.chat.id != self._chat_id:
            return  # some other group the bot was added to
        sender = message.from_user
        if sender is None or sender.is_bot:
            return
        text = message.text if message.text is not None else (message.caption or "")
        thread = message.message_thread_id if message.is_topic_message else None
        command, args = parse_command(text.strip())
        if command is None and thread is None:
            return  # talk in the General topic is not for us
        if not await self._access.allows(sender.id):
            log.info("managers.refused", extra={"user": sender.id, "command": command})
            await self._answer(thread, REFUSAL)
            return
        actor = Actor(telegram_user_id=sender.id, name=sender.full_name, username=sender.username)
        if command in {"queue", "mine"}:
            listing = await (self._desk.queue() if command == "queue" else self._desk.mine(actor))
            await self._answer(thread, listing)
            return
        if thread is None:
            await self._answer(None, "Эта команда работает в теме диалога. " + HELP)
            return
        conversation_id = await self._desk.conversation_for_topic(thread)
        if conversation_id is None:
            await self._answer(thread, "Эта тема не связана с диалогом.")
            return
        try:
            await self._act(conversation_id, actor, command, args, text, message)
        except (DeskError, NotFound) as exc:
            await self._desk.say(conversation_id, "⚠️ " + escape(str(exc)))

    async def _act(
        self,
        conversation_id: int,
        actor: Actor,
        command: str | None,
        args: str,
        text: str,
        message: Message,
    ) -> None:
        desk = self._desk
        if command is None:
            if not text.strip():
                raise DeskError("клиенту пока уходит только текст")
            await desk.reply(conversation_id, actor, text)
        elif command == "take":
            await desk.take(conversation_id, actor)
        elif command == "release":
            await desk.release(conversation_id, actor)
        elif command == "close":
            await desk.close(conversation_id, actor)
        elif command == "history":
            if args and not args.isdigit():
                raise DeskError("/history [N]: N — число сообщений")
            await desk.history(conversation_id, int(args) if args else 20)
        elif command == "note":
            await desk.note(conversation_id, actor, args)
            await desk.say(conversation_id, "📝 заметка сохранена, клиент её не увидит")
        elif command == "via":
            await desk.via(conversation_id, args)
        elif command == "link":
            await desk.link(conversation_id)
        elif command == "card":
            await desk.card(conversation_id)
        else:
            await desk.say(conversation_id, escape(HELP))

    async def _answer(self, thread: int | None, html: str) -> None:
        # Answers to the managers themselves are not customer messages: sent at once,
        # but a 429 from the group's 20/min limit is waited out, not dropped.
        for attempt in range(ANSWER_ATTEMPTS):
            try:
                await self._bot.send_message(
                    chat_id=self._chat_id, text=html, parse_mode="HTML", message_thread_id=thread
                )
                return
            except TelegramRetryAfter as exc:
                if attempt == ANSWER_ATTEMPTS - 1:
                    log.warning("managers.answer_failed", extra={"why": str(exc)})
                    return
                await asyncio.sleep(exc.retry_after + 0.5)
            except (TelegramAPIError, TelegramNetworkError, TimeoutError) as exc:
                log.warning("managers.answer_failed", extra={"why": str(exc)})
                return

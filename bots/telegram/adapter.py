"""The Telegram bot's outbound side: Outbound → sendMessage, sendPhoto, sendDocument."""

from __future__ import annotations

import logging

import aiohttp
from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods.base import Response
from aiogram.types import Message

from bots.telegram.render import Markup, Rendered, RenderError, render
from gateway.channels import Attachment, Failure, Outbound, Sent

__all__ = ["MAX_CAPTION", "TelegramAdapter", "failure_for"]

log = logging.getLogger(__name__)

MAX_CAPTION = 1024
# aiogram reads every answer through Response[<what the method returns>], a class
# pydantic builds once and caches only weakly. Nothing else holds it, so each garbage
# collection dropped it and the next send built it again: about 4 ms, more than the
# rest of a send. Held here for the answers of every send (a Message) and of button
# presses (True).
_RESPONSES = (Response[Message], Response[bool])
# 400s that are about the address, not the message: the chat is gone or never was.
_UNREACHABLE_400 = ("chat not found", "user not found", "peer_id_invalid", "chat_id is empty")
# Words a global (whole-bot) flood wait would carry; Telegram's usual 429 text says
# nothing about scope, so by default a 429 pauses only the chat it was about.
_GLOBAL_FLOOD = ("global", "all chats", "bot lane")


def failure_for(exc: BaseException) -> Failure:
    """What an aiogram exception from a send means for the outbox."""
    reason = f"telegram: {type(exc).__name__}: {exc}"
    if isinstance(exc, TelegramRetryAfter):
        # The Bot API doesn't say whether a 429 is about one chat or the whole bot
        # (its text is "Too Many Requests: retry after N" either way). We pause the
        # chat; the outbox's own per-bot rate limit keeps the bot as a whole under the
        # ~30/s global limit, and a description naming a global flood pauses the lane.
        text = exc.message.lower()
        return Failure(
            reason,
            retryable=True,
            retry_after=float(exc.retry_after),
            lane_wide=any(word in text for word in _GLOBAL_FLOOD),
        )
    if isinstance(exc, TelegramForbiddenError):
        # Blocked, deactivated, never started the bot, kicked: final for this chat.
        return Failure(reason, retryable=False, unreachable=True)
    if isinstance(exc, TelegramMigrateToChat):
        return Failure(
            f"{reason} (group moved to {exc.migrate_to_chat_id})", retryable=False, unreachable=True
        )
    if isinstance(exc, TelegramBadRequest):
        text = exc.message.lower()
        # "message is too long", "can't parse entities", BUTTON_DATA_INVALID,
        # "message thread not found", ...: the message is at fault, not the person.
        return Failure(
            reason, retryable=False, unreachable=any(s in text for s in _UNREACHABLE_400)
        )
    if isinstance(exc, TelegramServerError | TelegramNetworkError | ClientDecodeError):
        return Failure(reason, retryable=True)  # no retry_after: the outbox backs off
    if isinstance(exc, aiohttp.ClientError | TimeoutError):
        return Failure(reason, retryable=True)
    # 401 (token revoked), 404, 409, 413 and unknown API errors: retrying the same
    # request can't help.
    return Failure(reason, retryable=False)


class TelegramAdapter:
    """Sends through one bot; never raises for a platform refusal or a network error."""

    channel = "telegram"

    def __init__(self, bot: Bot, account: str) -> None:
        self.account = account
        self._bot = bot

    async def send(self, message: Outbound) -> Sent | Failure:
        try:
            chat_id = int(message.address)
        except ValueError:
            return Failure(f"not a Telegram chat id: {message.address!r}", retryable=False)
        try:
            rendered = render(message)
            for attachment in message.attachments:
                _check_attachment(attachment)
        except RenderError as exc:
            return Failure(f"telegram: {exc}", retryable=False)
        try:
            sent = await self._deliver(chat_id, message, rendered)
        except (TelegramAPIError, aiohttp.ClientError, TimeoutError) as exc:
            failure = failure_for(exc)
        else:
            return Sent(external_id=f"{sent.chat.id}:{sent.message_id}")
        log.info(
            "telegram.send_failed",
            extra={"delivery": message.delivery_id, "chat": chat_id, "why": failure.reason},
        )
        return failure

    async def _deliver(self, chat_id: int, message: Outbound, rendered: Rendered) -> Message:
        """The text, or each attachment with the text as the last one's caption.

        A text over the caption limit follows the attachments as its own message, which
        then carries the keyboard and is the one we report as sent.
        """
        if not message.attachments:
            return await self._bot.send_message(
                chat_id=chat_id,
                text=rendered.text,
                parse_mode=rendered.parse_mode,
                reply_markup=rendered.reply_markup,
                message_thread_id=message.thread_id,
            )
        text_as_caption = len(rendered.text) <= MAX_CAPTION
        last = len(message.attachments) - 1
        sent: Message | None = None
        for index, attachment in enumerate(message.attachments):
            with_text = index == last and text_as_caption
            sent = await self._media(
                chat_id,
                message.thread_id,
                attachment,
                caption=rendered.text if with_text and rendered.text else None,
                parse_mode=rendered.parse_mode if with_text else None,
                reply_markup=rendered.reply_markup if with_text else None,
            )
        if not text_as_caption:
            sent = await self._bot.send_message(
                chat_id=chat_id,
                text=rendered.text,
                parse_mode=rendered.parse_mode,
                reply_markup=rendered.reply_markup,
                message_thread_id=message.thread_id,
            )
        assert sent is not None
        return sent

    async def _media(
        self,
        chat_id: int,
        thread_id: int | None,
        attachment: Attachment,
        *,
        caption: str | None,
        parse_mode: str | None,
        reply_markup: Markup | None,
    ) -> Message:
        source = attachment.file_id or attachment.url
        assert source is not None
        if attachment.kind == "photo":
            return await self._bot.send_photo(
                chat_id=chat_id,
                photo=source,
                caption=caption,
                parse_mode=parse_mode,
                reply_markup=reply_markup,
                message_thread_id=thread_id,
            )
        return await self._bot.send_document(
            chat_id=chat_id,
            document=source,
            caption=caption,
            parse_mode=parse_mode,
            reply_markup=reply_markup,
            message_thread_id=thread_id,
        )

    async def aclose(self) -> None:
        await self._bot.session.close()


def _check_attachment(attachment: Attachment) -> None:
    if attachment.kind not in ("photo", "document"):
        raise RenderError(f"can't send a {attachment.kind} attachment yet (photo, document only)")
    if not (attachment.file_id or attachment.url):
        raise RenderError(f"a {attachment.kind} attachment needs a file_id or a url")

"""Telegram updates (webhook and polling alike) → Inbound, reachability, group hand-off.

Both transports give `TelegramEvents.process()` a parsed aiogram `Update`; it dedupes
on update_id through the sink (a seen-set in the store, so it survives restarts and
copes with Telegram's random ids after a quiet week) and feeds the Dispatcher, whose
router maps private messages, button presses and block/unblock onto the Sink.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot, Dispatcher, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError
from aiogram.types import CallbackQuery, ChatMemberUpdated, Message, Update, User

from gateway.channels import Attachment, Inbound, Signal, Sink, UpdateKey
from gateway.once import Once

__all__ = [
    "ALLOWED_UPDATES",
    "GroupHandler",
    "TelegramEvents",
    "attachments_of",
    "inbound_of",
    "normalise_phone",
    "split_start",
]

log = logging.getLogger(__name__)

CHANNEL = "telegram"
# What the router handles; asked for explicitly so a setting left by another
# deployment of the same token can't starve us (allowed_updates is sticky).
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
_GROUPS = ("group", "supergroup")
# What t.me/<bot>?start=<payload> may carry (aiogram's deep_linking check).
_DEEP_LINK = re.compile(r"[A-Za-z0-9_-]{1,64}")

GroupHandler = Callable[[Message], Awaitable[None]]


def normalise_phone(phone: str) -> str:
    """Telegram's "79991234567" or "+7 999 …" as "+79991234567"."""
    return "+" + re.sub(r"\D", "", phone)


def split_start(text: str) -> tuple[str, str | None]:
    """A deep-link `/start <payload>` as ("/start", payload); any other text unchanged.

    The payload is a link token, a proof of identity: it goes to `link_token` and not
    into the stored text, which managers read. The person saw only "/start" anyway.
    A typed "/start with words" is not a deep link and stays as typed.
    """
    command, _, rest = text.strip().partition(" ")
    name = command.split("@", 1)[0]
    payload = rest.strip()
    if name == "/start" and _DEEP_LINK.fullmatch(payload):
        return "/start", payload
    return text, None


def _sent_at(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _full_name(user: User | None) -> str | None:
    return user.full_name if user is not None else None


def _pressed_label(message: object, data: str) -> str:
    """The label of the pressed button, so the history reads "Доставка", not a payload."""
    markup = getattr(message, "reply_markup", None)
    for row in getattr(markup, "inline_keyboard", None) or ():
        for button in row:
            if button.callback_data == data:
                return str(button.text)
    return ""


def attachments_of(message: Message) -> tuple[Attachment, ...]:
    """Our Attachments for what a message carries besides text."""
    found: list[Attachment] = []
    if message.photo:
        largest = max(
            message.photo, key=lambda size: (size.width * size.height, size.file_size or 0)
        )
        found.append(
            Attachment(
                "photo",
                file_id=largest.file_id,
                size=largest.file_size,
                data={"width": largest.width, "height": largest.height},
            )
        )
    for kind in ("document", "voice", "audio", "video"):
        media = getattr(message, kind)
        if media is None:
            continue
        duration = getattr(media, "duration", None)
        found.append(
            Attachment(
                kind,
                file_id=media.file_id,
                name=getattr(media, "file_name", None),
                mime=media.mime_type,
                size=media.file_size,
                data={"duration": duration} if duration is not None else {},
            )
        )
    if (sticker := message.sticker) is not None:
        found.append(
            Attachment(
                "sticker",
                file_id=sticker.file_id,
                size=sticker.file_size,
                data={"emoji": sticker.emoji} if sticker.emoji else {},
            )
        )
    if (place := message.location) is not None:
        found.append(
            Attachment("location", data={"latitude": place.latitude, "longitude": place.longitude})
        )
    if (contact := message.contact) is not None:
        data: dict[str, Any] = {"phone": contact.phone_number, "first_name": contact.first_name}
        if contact.last_name:
            data["last_name"] = contact.last_name
        if contact.user_id is not None:
            data["user_id"] = contact.user_id
        found.append(Attachment("contact", data=data))
    return tuple(found)


def _verified_phone(message: Message) -> str | None:
    """The sender's own phone, vouched for by Telegram (the request_contact button).

    A contact picked from the attachment menu is someone else's (another or no
    user_id): it proves nothing about the sender.
    """
    contact, sender = message.contact, message.from_user
    if contact is None or sender is None or contact.user_id != sender.id:
        return None
    return normalise_phone(contact.phone_number)


def _private(message: Message) -> bool:
    """A customer's chat with the bot, as opposed to a group."""
    return message.chat.type == "private"


def inbound_of(message: Message, account: str, update: UpdateKey | None = None) -> Inbound | None:
    """A private message as an Inbound; None when it carries nothing we keep."""
    raw_text = message.text if message.text is not None else (message.caption or "")
    text, link_token = split_start(raw_text) if message.text is not None else (raw_text, None)
    attachments = attachments_of(message)
    if not text and not attachments:
        return None  # service messages, dice, polls, ...
    sender = message.from_user
    meta: dict[str, Any] = {"message_id": message.message_id}
    if sender is not None and sender.language_code:
        meta["language_code"] = sender.language_code
    if message.reply_to_message is not None:
        meta["reply_to"] = f"{message.chat.id}:{message.reply_to_message.message_id}"
    return Inbound(
        channel=CHANNEL,
        account=account,
        address=str(message.chat.id),
        text=text,
        external_id=f"{message.chat.id}:{message.message_id}",
        attachments=attachments,
        name=_full_name(sender) or message.chat.full_name or None,
        username=sender.username if sender is not None else message.chat.username,
        verified_phone=_verified_phone(message),
        link_token=link_token,
        sent_at=_sent_at(message.date),
        meta=meta,
        update=update,
    )


class TelegramEvents:
    """One bot's updates onto the Sink; dedupes on update_id across restarts."""

    def __init__(
        self, bot: Bot, account: str, sink: Sink, *, group_handler: GroupHandler | None = None
    ) -> None:
        self._bot = bot
        self.account = account
        self.source = f"{CHANNEL}:{account}"
        self._sink = sink
        self._group_handler = group_handler
        self._once = Once(sink, self.source)
        self.dispatcher = Dispatcher()
        self.dispatcher.include_router(self._router())

    def handle_groups(self, handler: GroupHandler) -> None:
        """Give group messages to `handler` (the managers' group bot)."""
        self._group_handler = handler

    def _router(self) -> Router:
        router = Router(name=f"telegram-{self.account}")
        router.message.register(self._private_message, _private)
        router.message.register(self._group_message, F.chat.type.in_(_GROUPS))
        router.callback_query.register(self._callback_query)
        router.my_chat_member.register(self._my_chat_member, F.chat.type == "private")
        return router

    async def process(self, update: Update) -> None:
        """Handle one update once; raises if handling failed, so the sender may retry."""
        key = str(update.update_id)
        if update.message is not None and _private(update.message):
            # The sink records the update with the message it stores: one transaction.
            handled = await self._once.run_recording(
                key, lambda seen: self.dispatcher.feed_update(self._bot, update, update_key=seen)
            )
        else:
            handled = await self._once.run(
                key, lambda: self.dispatcher.feed_update(self._bot, update)
            )
        if not handled:
            log.info("telegram.duplicate_update", extra={"update": update.update_id})

    async def _private_message(self, message: Message, update_key: UpdateKey) -> None:
        inbound = inbound_of(message, self.account, update_key)
        if inbound is None:
            log.debug("telegram.nothing_to_keep", extra={"message": message.message_id})
            return
        await self._sink.inbound(inbound)

    async def _group_message(self, message: Message) -> None:
        # The managers' group speaks through its own handler; other groups are not ours.
        if self._group_handler is not None:
            await self._group_handler(message)

    async def _callback_query(self, query: CallbackQuery) -> None:
        # Answer first and always, or the client spins for a while. A failed answer
        # costs the person a spinner, not us the press, so it is not fatal.
        try:
            await self._bot.answer_callback_query(query.id)
        except (TelegramAPIError, TelegramNetworkError, TimeoutError) as exc:
            log.warning("telegram.callback_answer_failed", extra={"query": query.id, "why": exc})
        message = query.message
        if query.data is None or (message is not None and message.chat.type != "private"):
            return  # games, and presses in groups (the managers' group bot's business)
        address = message.chat.id if message is not None else query.from_user.id
        meta: dict[str, Any] = {}
        if message is not None:
            meta["message"] = f"{message.chat.id}:{message.message_id}"
            # A press is engagement with the message that carried the button.
            await self._sink.signal(
                Signal(
                    kind="clicked",
                    channel=CHANNEL,
                    account=self.account,
                    external_id=meta["message"],
                    address=str(address),
                    detail=query.data,
                )
            )
        await self._sink.inbound(
            Inbound(
                channel=CHANNEL,
                account=self.account,
                address=str(address),
                text=_pressed_label(message, query.data),
                external_id=f"cb:{query.id}",
                name=_full_name(query.from_user),
                username=query.from_user.username,
                button=query.data,
                sent_at=datetime.now(UTC),
                meta=meta,
            )
        )

    async def _my_chat_member(self, event: ChatMemberUpdated) -> None:
        # In a private chat this arrives only when the person blocks or unblocks the bot.
        status = event.new_chat_member.status
        if status == "kicked":
            reachable, reason = False, "blocked"
        elif status == "member":
            reachable, reason = True, "unblocked"
        else:
            return
        await self._sink.reachability(
            CHANNEL, self.account, str(event.chat.id), reachable=reachable, reason=reason
        )

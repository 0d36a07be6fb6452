"""The shared state every bot and the control API act on, plus lookups with Telegram's errors."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from gateway.sandbox.telegram.errors import (
    BLOCKED,
    CHAT_NOT_FOUND,
    THREAD_NOT_FOUND,
    ControlError,
    bad_request,
    forbidden,
)
from gateway.sandbox.telegram.state import Account, BotAccount, Chat, FileStore, StoredMessage


class World:
    """Users, bots, groups and files; chat lookups raise the errors a bot would see."""

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        self.wall_clock = wall_clock
        self.bots: dict[str, BotAccount] = {}
        self.users: dict[int, Account] = {}
        self.groups: dict[int, Chat] = {}
        self.files = FileStore()
        self.user_ids = itertools.count(100_000_001)
        self.group_ids = itertools.count(1_000_000_001)
        self.callback_ids = itertools.count(4_000_000_000_001)

    def now(self) -> int:
        """Unix time for message dates."""
        return int(self.wall_clock())

    def bot(self, token: str) -> BotAccount | None:
        """The bot owning a token, if registered."""
        return self.bots.get(token)

    def bot_by_id(self, bot_id: int | None) -> BotAccount:
        """A bot by id, or the only bot when there is just one (for control calls)."""
        if bot_id is None:
            if len(self.bots) != 1:
                raise ControlError("several bots are registered: say which one (bot_id)")
            return next(iter(self.bots.values()))
        for bot in self.bots.values():
            if bot.id == bot_id:
                return bot
        raise ControlError(f"no bot with id {bot_id}")

    def user(self, user_id: int) -> Account:
        """A registered user, for control calls."""
        try:
            return self.users[user_id]
        except KeyError:
            raise ControlError(f"no user with id {user_id}") from None

    def group(self, chat_id: int) -> Chat:
        """A registered group, for control calls."""
        try:
            return self.groups[chat_id]
        except KeyError:
            raise ControlError(f"no group with id {chat_id}") from None

    def private_chat(self, bot: BotAccount, user: Account) -> Chat:
        """The private chat between a bot and a user, opened on first use."""
        chat = bot.private_chats.get(user.id)
        if chat is None:
            chat = bot.private_chats[user.id] = Chat(id=user.id, type="private", peer=user)
        return chat

    def resolve_chat(self, bot: BotAccount, chat_id: int | str) -> Chat:
        """The chat a bot addresses, or the 400/403 Telegram would answer."""
        if isinstance(chat_id, str):
            found = [g for g in self.groups.values() if g.username == chat_id.lstrip("@")]
            if not found:
                raise bad_request(CHAT_NOT_FOUND)
            chat_id = found[0].id
        group = self.groups.get(chat_id)
        if group is not None:
            status = group.members.get(bot.id)
            if status in (None, "left"):
                raise bad_request(CHAT_NOT_FOUND)
            if status == "kicked":
                raise forbidden("bot was kicked from the supergroup chat")
            return group
        chat = bot.private_chats.get(chat_id)
        if chat is None:
            if chat_id in self.users:
                raise forbidden("bot can't initiate conversation with a user")
            raise bad_request(CHAT_NOT_FOUND)
        return chat

    def writable_chat(self, bot: BotAccount, chat_id: int | str) -> Chat:
        """resolve_chat plus the block check that sending (not reading) is subject to."""
        chat = self.resolve_chat(bot, chat_id)
        if chat.type == "private" and chat.id in bot.blocked_by:
            raise forbidden(BLOCKED)
        return chat

    def check_thread(self, bot: BotAccount, chat: Chat, thread_id: int | None) -> None:
        """message_thread_id must name an open topic of a forum (admins may post in closed)."""
        if thread_id is None:
            return
        topic = chat.topics.get(thread_id) if chat.is_forum else None
        if topic is None:
            raise bad_request(THREAD_NOT_FOUND)
        if topic.closed and chat.members.get(bot.id) not in ("administrator", "creator"):
            raise bad_request("TOPIC_CLOSED")

    def store(self, chat: Chat, sender: Account, **fields: Any) -> StoredMessage:
        """Append a message to a chat with the next message_id."""
        message = StoredMessage(chat.next_message_id(), chat, sender, self.now(), **fields)
        chat.messages[message.message_id] = message
        return message

    def bots_in(self, chat: Chat) -> list[BotAccount]:
        """Bots that receive updates from a group."""
        return [
            b
            for b in self.bots.values()
            if chat.members.get(b.id) in ("member", "administrator", "creator")
        ]

    def enqueue(self, bot: BotAccount, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for a bot (delivered by getUpdates or the webhook task)."""
        update = bot.updates.push(kind, payload)
        return update if update is not None else {"filtered": kind}

"""In-memory world of the emulator: users, bots, chats, topics, messages and files."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from gateway.sandbox.telegram.limits import FloodControl
from gateway.sandbox.telegram.updates import UpdateQueue


@dataclass
class Account:
    """A Telegram user or bot account, rendered as a Bot API User."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    phone: str | None = None
    language_code: str | None = None
    is_bot: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The User object as it appears in messages."""
        user: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key) is not None:
                user[key] = getattr(self, key)
        return user

    @property
    def full_name(self) -> str:
        """First and last name, as Telegram clients show it."""
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name


@dataclass
class Topic:
    """A forum topic; its thread id is the id of its creation service message."""

    thread_id: int
    name: str
    icon_color: int
    icon_custom_emoji_id: str | None = None
    closed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The ForumTopic object."""
        topic: dict[str, Any] = {
            "message_thread_id": self.thread_id,
            "name": self.name,
            "icon_color": self.icon_color,
        }
        if self.icon_custom_emoji_id:
            topic["icon_custom_emoji_id"] = self.icon_custom_emoji_id
        return topic


@dataclass
class StoredMessage:
    """A message in a chat; `html` keeps the raw text a bot sent with parse_mode=HTML."""

    message_id: int
    chat: Chat
    sender: Account
    date: int
    text: str | None = None
    html: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    caption: str | None = None
    thread_id: int | None = None
    reply_markup: dict[str, Any] | None = None
    content: dict[str, Any] = field(default_factory=dict)
    edit_date: int | None = None
    method: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The Message object."""
        message: dict[str, Any] = {
            "message_id": self.message_id,
            "from": self.sender.to_dict(),
            "chat": self.chat.to_dict(),
            "date": self.date,
        }
        if self.thread_id is not None:
            message["message_thread_id"] = self.thread_id
            if self.chat.is_forum:
                message["is_topic_message"] = True
        if self.text is not None:
            message["text"] = self.text
            if self.entities:
                message["entities"] = self.entities
        if self.caption is not None:
            message["caption"] = self.caption
            if self.entities:
                message["caption_entities"] = self.entities
        message.update(self.content)
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            message["reply_markup"] = self.reply_markup
        if self.edit_date is not None:
            message["edit_date"] = self.edit_date
        return message

    def inspect(self) -> dict[str, Any]:
        """The message plus what only the emulator knows (raw HTML, any keyboard, method)."""
        return {
            **self.to_dict(),
            "html": self.html,
            "reply_markup": self.reply_markup,
            "method": self.method,
        }


@dataclass
class Chat:
    """A private chat (one per bot and user) or a (forum) supergroup shared by its members."""

    id: int
    type: str
    title: str | None = None
    peer: Account | None = None
    is_forum: bool = False
    username: str | None = None
    members: dict[int, str] = field(default_factory=dict)
    topics: dict[int, Topic] = field(default_factory=dict)
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_message_id(self) -> int:
        """Message ids grow by one per chat."""
        return next(self._ids)

    @property
    def is_group(self) -> bool:
        """Whether group limits and membership apply."""
        return self.type in ("group", "supergroup")

    def to_dict(self) -> dict[str, Any]:
        """The Chat object embedded in messages."""
        chat: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.peer is not None:
            chat.update(
                {
                    k: v
                    for k, v in self.peer.to_dict().items()
                    if k in ("first_name", "last_name", "username")
                }
            )
        if self.title is not None:
            chat["title"] = self.title
        if self.username is not None:
            chat["username"] = self.username
        if self.is_forum:
            chat["is_forum"] = True
        return chat


@dataclass
class StoredFile:
    """An uploaded or referenced file, addressable by file_id and downloadable by path."""

    file_id: str
    unique_id: str
    data: bytes
    name: str | None = None
    mime_type: str | None = None
    url: str | None = None

    @property
    def path(self) -> str:
        """The file_path getFile returns and /file/bot<token>/<path> serves."""
        return f"files/{self.unique_id}"


@dataclass
class Webhook:
    """setWebhook settings plus the delivery status getWebhookInfo reports."""

    url: str
    secret_token: str | None = None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class BotAccount:
    """A registered bot: its account, private chats, update queue and bookkeeping."""

    token: str
    account: Account
    flood: FloodControl
    can_join_groups: bool = True
    can_read_all_group_messages: bool = False
    private_chats: dict[int, Chat] = field(default_factory=dict)
    blocked_by: set[int] = field(default_factory=set)
    commands: list[dict[str, Any]] = field(default_factory=list)
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    error_counts: dict[int, int] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    updates: UpdateQueue = field(default_factory=UpdateQueue)
    webhook: Webhook | None = None

    @property
    def id(self) -> int:
        """The bot's user id (the number before the colon of its token)."""
        return self.account.id

    def me(self) -> dict[str, Any]:
        """The getMe User object."""
        return {
            **self.account.to_dict(),
            "can_join_groups": self.can_join_groups,
            "can_read_all_group_messages": self.can_read_all_group_messages,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }


class FileStore:
    """file_id -> file, shared by all bots (real file_ids are per bot; tests don't care)."""

    def __init__(self) -> None:
        self._by_id: dict[str, StoredFile] = {}
        self._by_path: dict[str, StoredFile] = {}

    def add(
        self,
        data: bytes,
        name: str | None = None,
        mime_type: str | None = None,
        url: str | None = None,
    ) -> StoredFile:
        """Store content and mint Telegram-looking ids."""
        digest = hashlib.sha256(data + (url or "").encode() + str(len(self._by_id)).encode())
        unique = digest.hexdigest()[:16]
        stored = StoredFile(
            f"AgAC{unique}{len(self._by_id):04d}", unique, data, name, mime_type, url
        )
        self._by_id[stored.file_id] = stored
        self._by_path[stored.path] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        """A file by file_id."""
        return self._by_id.get(file_id)

    def by_path(self, path: str) -> StoredFile | None:
        """A file by its getFile path."""
        return self._by_path.get(path)

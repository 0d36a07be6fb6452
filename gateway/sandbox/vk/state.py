"""In-memory world of the VK emulator: communities, users, dialogs and their messages."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from gateway.sandbox.vk.errors import VKError


@dataclass(slots=True)
class CallbackServer:
    """One Callback API server of a community (VK allows ten; we keep one)."""

    server_id: int
    url: str
    secret: str | None
    title: str = "chatgate"
    status: str = "unconfigured"  # "ok" once the confirmation handshake succeeded
    events: dict[str, bool] | None = None  # None: every event type is sent


@dataclass(slots=True)
class Community:
    group_id: int
    name: str
    screen_name: str
    tokens: set[str]
    confirmation_code: str
    events_version: str = "5.199"
    """API version of the event objects (Long Poll and Callback API settings)."""
    echo_replies: bool = False
    """Emit message_reply for the community's own sends."""
    callback: CallbackServer | None = None


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    first_name: str
    last_name: str


@dataclass(slots=True)
class Message:
    """A message in a community dialog, in either direction (`out` = sent by the community)."""

    message_id: int
    conversation_message_id: int
    peer_id: int
    from_id: int
    text: str
    date: int
    out: bool
    random_id: int = 0
    keyboard: dict[str, Any] | None = None
    attachments: list[Any] = field(default_factory=list)
    payload: str | None = None
    ref: str | None = None
    ref_source: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    """The raw messages.send parameters (minus the token), for inspection."""

    def as_dict(self) -> dict[str, Any]:
        """The inspection view used by the control API."""
        return {
            "message_id": self.message_id,
            "conversation_message_id": self.conversation_message_id,
            "peer_id": self.peer_id,
            "from_id": self.from_id,
            "text": self.text,
            "date": self.date,
            "out": self.out,
            "random_id": self.random_id,
            "keyboard": self.keyboard,
            "attachments": self.attachments,
            "payload": self.payload,
            "ref": self.ref,
            "ref_source": self.ref_source,
            "params": self.params,
        }


@dataclass(slots=True)
class Dialog:
    """A community's conversation with one peer, and the user's messaging permission."""

    group_id: int
    peer_id: int
    allowed: bool = False
    messages: list[Message] = field(default_factory=list)
    random_ids: dict[int, tuple[Message, float]] = field(default_factory=dict)
    in_read: int = 0
    out_read: int = 0
    last_cmid: int = 0
    same_text_run: tuple[str, int] = ("", 0)

    def next_cmid(self) -> int:
        self.last_cmid += 1
        return self.last_cmid

    @property
    def sent(self) -> list[Message]:
        return [message for message in self.messages if message.out]


class Store:
    """Owns every entity; ids are handed out here so they stay unique per community."""

    def __init__(self) -> None:
        self.communities: dict[int, Community] = {}
        self.users: dict[int, User] = {}
        self.dialogs: dict[tuple[int, int], Dialog] = {}
        self._tokens: dict[str, int] = {}
        self._message_ids: dict[int, int] = {}
        self._next_user_id = 1000

    def add_community(
        self,
        group_id: int,
        name: str,
        screen_name: str | None,
        tokens: list[str] | None,
        confirmation_code: str | None,
    ) -> Community:
        community = Community(
            group_id=group_id,
            name=name,
            screen_name=screen_name or f"club{group_id}",
            tokens=set(tokens or [f"vk1.a.group{group_id}-{secrets.token_hex(8)}"]),
            confirmation_code=confirmation_code or secrets.token_hex(4),
        )
        self.communities[group_id] = community
        self._tokens.update(dict.fromkeys(community.tokens, group_id))
        return community

    def add_token(self, group_id: int, token: str) -> None:
        self.community(group_id).tokens.add(token)
        self._tokens[token] = group_id

    def community(self, group_id: int) -> Community:
        try:
            return self.communities[group_id]
        except KeyError:
            raise KeyError(f"no community {group_id} in the VK emulator") from None

    def community_for_token(self, token: str) -> Community | None:
        group_id = self._tokens.get(token)
        return None if group_id is None else self.communities[group_id]

    def add_user(self, user_id: int | None, first_name: str, last_name: str) -> User:
        if user_id is None:
            self._next_user_id += 1
            while self._next_user_id in self.users:
                self._next_user_id += 1
            user_id = self._next_user_id
        user = User(user_id=user_id, first_name=first_name, last_name=last_name)
        self.users[user_id] = user
        return user

    def user(self, user_id: int) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise KeyError(f"no user {user_id} in the VK emulator") from None

    def dialog(self, group_id: int, peer_id: int) -> Dialog:
        key = (group_id, peer_id)
        if key not in self.dialogs:
            self.dialogs[key] = Dialog(group_id=group_id, peer_id=peer_id)
        return self.dialogs[key]

    def next_message_id(self, group_id: int) -> int:
        self._message_ids[group_id] = self._message_ids.get(group_id, 0) + 1
        return self._message_ids[group_id]

    def can_write(self, group_id: int, peer_id: int) -> bool:
        """Whether the community may message this peer (error 901 otherwise)."""
        if peer_id not in self.users:
            return False
        return self.dialog(group_id, peer_id).allowed

    def resolve_group(self, raw: str | None, default: Community) -> Community:
        """A group given by id, `club123` or screen name; error 100 when unknown."""
        if not raw:
            return default
        text = raw.strip().removeprefix("-")
        for community in self.communities.values():
            if text in {
                str(community.group_id),
                community.screen_name,
                f"club{community.group_id}",
            }:
                return community
        raise VKError(100, f"group_id is undefined: {raw}")

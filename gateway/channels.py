"""The contract every channel implements, in our own frozen types.

aiogram, vkbottle, SMTP and SMS-provider objects stop at their adapter; the
router and the outbox only ever see these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

__all__ = [
    "Attachment",
    "Button",
    "ChannelAdapter",
    "Failure",
    "Inbound",
    "Outbound",
    "Sent",
    "Signal",
    "SignalKind",
    "Sink",
    "UpdateKey",
]

SignalKind = Literal[
    "delivered", "read", "clicked", "replied", "unsubscribed", "failed", "bounced", "blocked"
]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file, place or contact that came with a message or goes out with one."""

    kind: str  # photo, document, voice, audio, video, sticker, location, contact
    file_id: str | None = None
    name: str | None = None
    mime: str | None = None
    size: int | None = None
    url: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for key in ("file_id", "name", "mime", "size", "url"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.data:
            out["data"] = dict(self.data)
        return out


@dataclass(frozen=True, slots=True)
class Button:
    """A button; channels without buttons render it as a numbered option."""

    text: str
    payload: str | None = None  # what a press reports back
    url: str | None = None  # a link button instead of a callback
    request_contact: bool = False  # Telegram's "share my phone" button


@dataclass(frozen=True, slots=True)
class UpdateKey:
    """The platform update that carried a message, as Once dedupes it."""

    source: str  # the key namespace, e.g. "telegram:<bot id>"
    key: str  # the platform's id of the update: Telegram's update_id, VK's event_id


@dataclass(frozen=True, slots=True)
class Inbound:
    """One thing a customer did on a channel: wrote, pressed, shared, arrived."""

    channel: str
    account: str  # our bot id, VK group id, SMS number, mailbox
    address: str  # the customer's chat id, peer id, phone, email
    text: str = ""
    external_id: str | None = None  # unique within (channel, account)
    attachments: tuple[Attachment, ...] = ()
    name: str | None = None
    username: str | None = None
    verified_phone: str | None = None  # proven by the platform: Telegram's own contact
    link_token: str | None = None  # /start payload, VK ref, reply+token, ...
    button: str | None = None  # payload of a pressed button
    sent_at: datetime | None = None
    auto_reply: bool = False  # out-of-office and the like: store, never answer
    meta: Mapping[str, Any] = field(default_factory=dict)
    # Recorded by the sink in the transaction that stores the message, so that a
    # resend of the update is a duplicate (Once.run_recording).
    update: UpdateKey | None = None


@dataclass(frozen=True, slots=True)
class Outbound:
    """One stored delivery, ready for its channel."""

    delivery_id: int
    channel: str
    account: str
    address: str
    text: str
    html: str | None = None
    subject: str | None = None
    buttons: tuple[tuple[Button, ...], ...] = ()  # rows of buttons
    inline: bool = True  # inline keyboard vs. reply keyboard
    thread_id: int | None = None  # Telegram forum topic
    attachments: tuple[Attachment, ...] = ()
    purpose: str = "service"
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sent:
    """The platform took the message."""

    external_id: str | None
    segments: int | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """The platform refused the message, for now or for good."""

    reason: str
    retryable: bool
    retry_after: float | None = None  # the platform asked us to wait this long
    lane_wide: bool = False  # the pause applies to the whole bot, not one chat
    unreachable: bool = False  # final and about the address: mark the identity


@dataclass(frozen=True, slots=True)
class Signal:
    """What became of something we sent: delivered, read, clicked, ..."""

    kind: SignalKind
    channel: str
    account: str = ""
    external_id: str | None = None  # the platform's id of our message
    delivery_id: int | None = None  # when the signal carries our own id
    address: str | None = None
    at: datetime | None = None
    machine: bool = False  # a scanner or a proxy, not a person
    detail: str | None = None


class ChannelAdapter(Protocol):
    """A channel's outbound side; inbound arrives through its webhook or poller."""

    channel: str
    account: str

    async def send(self, message: Outbound) -> Sent | Failure: ...

    async def aclose(self) -> None: ...


class Sink(Protocol):
    """Where a channel hands what arrived: the router implements it."""

    async def seen(self, source: str, key: str) -> bool:
        """Whether an update key was recorded as handled (within the dedupe window)."""
        ...

    async def first_seen(self, source: str, key: str) -> bool:
        """Record an update key as handled; True the first time. Survives restarts."""
        ...

    async def inbound(self, message: Inbound) -> None:
        """Store a message and answer it.

        A message that carries its `update` records that key with it, atomically;
        one whose key was recorded before is a resend: nothing is stored or answered.
        """
        ...

    async def signal(self, signal: Signal) -> None: ...

    async def reachability(
        self, channel: str, account: str, address: str, *, reachable: bool, reason: str
    ) -> None:
        """The customer blocked/unblocked the bot, denied/allowed messages, bounced."""
        ...

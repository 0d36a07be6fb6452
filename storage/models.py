"""The tables of the one conversation store.

A `Customer` is one person; `Identity` rows are the addresses they are reachable
at (a Telegram chat, a VK peer, a phone, a mailbox). Each customer has one
`Conversation` that carries every `Message` in and out on every channel, and
every outbound message has one `Delivery` per attempt-to-deliver on a channel,
which doubles as the outbox.

Times are stored in UTC and always come back timezone-aware, on SQLite too.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "Author",
    "Broadcast",
    "Channel",
    "Consent",
    "Conversation",
    "ConversationMode",
    "Conversion",
    "Cursor",
    "Customer",
    "CustomerTag",
    "Delivery",
    "DeliveryStatus",
    "Direction",
    "Event",
    "FlowRun",
    "FlowStep",
    "FlowVersion",
    "Identity",
    "LinkToken",
    "Manager",
    "Merge",
    "Message",
    "SeenUpdate",
    "utcnow",
]


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and read back timezone-aware on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware one")
        value = value.astimezone(UTC)
        # SQLite keeps text; a fixed naive-UTC form keeps ordering and comparisons right.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Integer keys autoincrement on SQLite only as INTEGER PRIMARY KEY.
BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> Any:
    return Field(default=None, sa_column=sa.Column(BigID, primary_key=True, autoincrement=True))


def _fk(
    target: str, *, nullable: bool = False, index: bool = True, ondelete: str | None = None
) -> Any:
    return Field(
        default=None,
        sa_column=sa.Column(
            BigID, sa.ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index
        ),
    )


def _time(*, nullable: bool = True, index: bool = False, now: bool = False) -> Any:
    if now:
        return Field(
            default_factory=utcnow,
            sa_column=sa.Column(UTCDateTime(), nullable=False, index=index),
        )
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=sa.Column(sa.JSON(), nullable=False))


class Channel(enum.StrEnum):
    telegram = "telegram"
    vk = "vk"
    sms = "sms"
    email = "email"


class Direction(enum.StrEnum):
    inbound = "in"
    outbound = "out"


class Author(enum.StrEnum):
    customer = "customer"
    bot = "bot"
    manager = "manager"
    flow = "flow"
    system = "system"


class ConversationMode(enum.StrEnum):
    bot = "bot"
    waiting = "waiting"
    manager = "manager"
    closed = "closed"
    merged = "merged"  # absorbed by a merge; its messages now live in the survivor's


class DeliveryStatus(enum.StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    delivered = "delivered"
    read = "read"
    clicked = "clicked"
    replied = "replied"
    failed = "failed"


class Customer(SQLModel, table=True):
    """One person, whatever channel they write on."""

    __tablename__ = "customer"

    id: int | None = _id()
    external_id: str | None = Field(default=None, max_length=200, unique=True, index=True)
    name: str | None = Field(default=None, max_length=300)
    phone: str | None = Field(default=None, max_length=20, unique=True, index=True)
    email: str | None = Field(default=None, max_length=320, unique=True, index=True)
    timezone: str | None = Field(default=None, max_length=64)
    locale: str | None = Field(default=None, max_length=16)
    attributes: dict[str, Any] = _json(dict)
    merged_into_id: int | None = _fk("customer.id", nullable=True)
    erased_at: datetime | None = _time()
    created_at: datetime = _time(now=True)
    updated_at: datetime = _time(now=True)


class CustomerTag(SQLModel, table=True):
    """A tag on a customer; a table, so segments filter on it in plain SQL."""

    __tablename__ = "customer_tag"

    customer_id: int = Field(
        sa_column=sa.Column(
            BigID, sa.ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True
        )
    )
    tag: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True, index=True))


class Consent(SQLModel, table=True):
    """Whether a customer agreed to get messages of a purpose on a channel.

    `channel` is "*" for a consent that covers every channel.
    """

    __tablename__ = "consent"

    customer_id: int = Field(
        sa_column=sa.Column(
            BigID, sa.ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True
        )
    )
    channel: str = Field(sa_column=sa.Column(sa.String(16), primary_key=True))
    purpose: str = Field(sa_column=sa.Column(sa.String(32), primary_key=True))
    granted: bool
    source: str | None = Field(default=None, max_length=100)
    updated_at: datetime = _time(now=True)


class Identity(SQLModel, table=True):
    """An address a customer is reachable at: (channel, account, address)."""

    __tablename__ = "identity"
    __table_args__ = (
        sa.UniqueConstraint("channel", "account", "address", name="uq_identity_address"),
    )

    id: int | None = _id()
    customer_id: int = _fk("customer.id")
    channel: str = Field(max_length=16)
    account: str = Field(max_length=100)  # bot id, VK group id, SMS sender, mailbox
    address: str = Field(max_length=320)  # chat id, peer id, E.164 phone, email
    display_name: str | None = Field(default=None, max_length=300)
    username: str | None = Field(default=None, max_length=100)
    verified: bool = False
    reachable: bool = True
    unreachable_reason: str | None = Field(default=None, max_length=200)
    soft_bounces: int = 0
    last_seen_at: datetime | None = _time()
    created_at: datetime = _time(now=True)


class Manager(SQLModel, table=True):
    """A person who answers customers from the managers' Telegram group."""

    __tablename__ = "manager"

    id: int | None = _id()
    telegram_user_id: int = Field(sa_column=sa.Column(sa.BigInteger(), unique=True, nullable=False))
    name: str | None = Field(default=None, max_length=300)
    username: str | None = Field(default=None, max_length=100)
    active: bool = True
    created_at: datetime = _time(now=True)


class Conversation(SQLModel, table=True):
    """The customer's one dialogue across channels."""

    __tablename__ = "conversation"

    id: int | None = _id()
    customer_id: int = _fk("customer.id")
    mode: str = Field(default=ConversationMode.bot, max_length=16, index=True)
    assignee_id: int | None = _fk("manager.id", nullable=True)
    last_channel: str | None = Field(default=None, max_length=16)
    last_inbound_channel: str | None = Field(default=None, max_length=16)
    reply_via: str | None = Field(default=None, max_length=16)
    topic_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger(), nullable=True, index=True)
    )
    dialog_state: dict[str, Any] = _json(dict)
    merged_into_id: int | None = _fk("conversation.id", nullable=True, index=False)
    waiting_since: datetime | None = _time()
    # The managers' desk: when the conversation first needed a person (from then on
    # every message is mirrored into its topic) and when the group was last reminded.
    desk_opened_at: datetime | None = _time()
    reminded_at: datetime | None = _time()
    last_message_at: datetime | None = _time(index=True)
    created_at: datetime = _time(now=True)
    updated_at: datetime = _time(now=True)


class Message(SQLModel, table=True):
    """Every message in and out, on every channel: the history managers read.

    `external_id` is the platform's id, unique within (channel, account): for
    Telegram "<chat_id>:<message_id>", since message ids repeat across chats.
    """

    __tablename__ = "message"
    __table_args__ = (
        sa.UniqueConstraint("channel", "account", "external_id", name="uq_message_external"),
        sa.Index("ix_message_conversation_id_id", "conversation_id", "id"),
    )

    id: int | None = _id()
    conversation_id: int = _fk("conversation.id", index=False)
    customer_id: int = _fk("customer.id")
    channel: str = Field(max_length=16)
    account: str = Field(default="", max_length=100)
    direction: str = Field(max_length=3)
    author: str = Field(max_length=16)
    author_ref: str | None = Field(default=None, max_length=100)  # manager id, flow run, ...
    kind: str = Field(default="text", max_length=16)  # text, note (internal), system
    external_id: str | None = Field(default=None, max_length=200)
    text: str = Field(default="", sa_column=sa.Column(sa.Text(), nullable=False, default=""))
    attachments: list[dict[str, Any]] = _json(list)
    meta: dict[str, Any] = _json(dict)
    sent_at: datetime = _time(now=True)  # when the customer or we sent it
    created_at: datetime = _time(now=True)


class Delivery(SQLModel, table=True):
    """One outbound message on one channel: the outbox row and its fate."""

    __tablename__ = "delivery"
    __table_args__ = (
        sa.Index("ix_delivery_due", "status", "next_attempt_at"),
        # The outbox finds each chat's oldest pending delivery to keep order.
        sa.Index("ix_delivery_chat", "channel", "account", "address", "status"),
    )

    id: int | None = _id()
    message_id: int = _fk("message.id")
    customer_id: int = _fk("customer.id")
    identity_id: int | None = _fk("identity.id", nullable=True)
    channel: str = Field(max_length=16)
    account: str = Field(default="", max_length=100)
    address: str = Field(max_length=320)
    purpose: str = Field(default="service", max_length=32)  # service, transactional, marketing
    status: str = Field(default=DeliveryStatus.queued, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = _time()
    external_id: str | None = Field(default=None, max_length=200, index=True)
    segments: int | None = None
    error: str | None = Field(default=None, max_length=1000)
    final: bool = False  # the failure will not get better by retrying
    payload: dict[str, Any] = _json(dict)  # what to send: rendered content, buttons
    sent_at: datetime | None = _time()
    delivered_at: datetime | None = _time()
    read_at: datetime | None = _time()
    clicked_at: datetime | None = _time()
    replied_at: datetime | None = _time()
    failed_at: datetime | None = _time()
    created_at: datetime = _time(now=True)
    updated_at: datetime = _time(now=True)


class Event(SQLModel, table=True):
    """Something that happened to a customer: an order, a cart, a purchase."""

    __tablename__ = "event"
    __table_args__ = (
        sa.Index("ix_event_customer_type_time", "customer_id", "type", "occurred_at"),
    )

    id: int | None = _id()
    customer_id: int = _fk("customer.id", index=False)
    type: str = Field(max_length=100)
    data: dict[str, Any] = _json(dict)
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    source: str = Field(default="api", max_length=32)
    occurred_at: datetime = _time(now=True)
    created_at: datetime = _time(now=True)


class LinkToken(SQLModel, table=True):
    """A single-use proof token: a deep link, a reply address, a one-time code.

    Only a hash of the secret is stored, so a leaked database leaks no live token.
    """

    __tablename__ = "link_token"

    id: int | None = _id()
    token_hash: str = Field(max_length=64, unique=True, index=True)
    customer_id: int = _fk("customer.id")
    purpose: str = Field(max_length=32)  # link, code, reply
    channel: str | None = Field(default=None, max_length=16)
    address: str | None = Field(default=None, max_length=320)  # what a code was sent to
    attempts: int = 0
    expires_at: datetime = _time(nullable=False)
    used_at: datetime | None = _time()
    created_at: datetime = _time(now=True)


class Merge(SQLModel, table=True):
    """The audit record of a merge, with what moved, so it can be undone."""

    __tablename__ = "merge"

    id: int | None = _id()
    survivor_id: int = _fk("customer.id")
    absorbed_id: int = _fk("customer.id")
    moved: dict[str, Any] = _json(dict)
    actor: str | None = Field(default=None, max_length=100)
    created_at: datetime = _time(now=True)
    undone_at: datetime | None = _time()


class SeenUpdate(SQLModel, table=True):
    """A platform update already handled: dedupe that survives restarts.

    Telegram may redeliver an update_id and VK retries an event_id; both are
    remembered for a window rather than compared with "the last one seen".
    """

    __tablename__ = "seen_update"

    source: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    key: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    seen_at: datetime = _time(now=True, index=True)


class Cursor(SQLModel, table=True):
    """Where a poller stopped reading a platform (VK Long Poll's ts), kept across restarts."""

    __tablename__ = "cursor"

    name: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    value: str = Field(max_length=200)
    updated_at: datetime = _time(now=True)


# --- Flows (issue 6): versions, runs, their steps, conversions, broadcasts ---------


class FlowVersion(SQLModel, table=True):
    """One compiled version of a flow file, kept so a run reads the version it started on."""

    __tablename__ = "flow_version"
    __table_args__ = (sa.UniqueConstraint("flow_name", "version", name="uq_flow_version"),)

    id: int | None = _id()
    flow_name: str = Field(max_length=100)
    version: str = Field(max_length=64)
    definition: dict[str, Any] = _json(dict)  # Flow.to_json()
    created_at: datetime = _time(now=True)


class Broadcast(SQLModel, table=True):
    """A flow started for a whole segment, planned in batches by customer id."""

    __tablename__ = "broadcast"

    id: int | None = _id()
    name: str = Field(max_length=200)
    flow_name: str = Field(max_length=100)
    segment: str = Field(default="", sa_column=sa.Column(sa.Text(), nullable=False, default=""))
    status: str = Field(default="planning", max_length=16)  # planning running paused cancelled done
    planned: int = 0
    total: int | None = None
    cursor: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), nullable=True))
    created_at: datetime = _time(now=True)
    updated_at: datetime = _time(now=True)
    finished_at: datetime | None = _time()


class FlowRun(SQLModel, table=True):
    """One customer going through one flow: where they are, and when to look again.

    `pc` indexes the flow version's program; `pending` is the cascade in progress
    ({"step", "channel_index", "message_ids", "delivery_ids", "since"}); `goal` is the
    open goal window ({"event", "until", "exit"}).
    """

    __tablename__ = "flow_run"
    __table_args__ = (
        sa.UniqueConstraint("flow_name", "customer_id", "trigger_key", name="uq_flow_run_trigger"),
        sa.Index("ix_flow_run_due", "status", "next_at"),
    )

    id: int | None = _id()
    flow_name: str = Field(max_length=100)
    version: str = Field(max_length=64)
    customer_id: int = _fk("customer.id")
    trigger_key: str = Field(max_length=200)
    status: str = Field(default="active", max_length=16)
    pc: int = 0
    next_at: datetime | None = _time()
    context: dict[str, Any] = _json(dict)
    variant: str | None = Field(default=None, max_length=50)
    holdout: bool = False
    pending: dict[str, Any] = _json(dict)
    goal: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON(), nullable=True))
    broadcast_id: int | None = _fk("broadcast.id", nullable=True)
    claimed_by: str | None = Field(default=None, max_length=100)
    claimed_until: datetime | None = _time()
    started_at: datetime = _time(now=True)
    updated_at: datetime = _time(now=True)
    ended_at: datetime | None = _time()
    end_reason: str | None = Field(default=None, max_length=200)


class FlowStep(SQLModel, table=True):
    """What happened at one step of a run, with the reason: sent, skipped, postponed, ..."""

    __tablename__ = "flow_step"

    id: int | None = _id()
    run_id: int = _fk("flow_run.id")
    flow_name: str = Field(max_length=100, index=True)
    step: str = Field(max_length=100)
    channel: str | None = Field(default=None, max_length=16)
    variant: str | None = Field(default=None, max_length=50)
    outcome: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=500)
    delivery_id: int | None = _fk("delivery.id", nullable=True)
    message_id: int | None = _fk("message.id", nullable=True, index=False)
    at: datetime = _time(now=True)


class Conversion(SQLModel, table=True):
    """A run's goal reached: the one conversion of that run, credited to one message."""

    __tablename__ = "conversion"

    id: int | None = _id()
    run_id: int = Field(
        default=None,
        sa_column=sa.Column(BigID, sa.ForeignKey("flow_run.id"), nullable=False, unique=True),
    )
    flow_name: str = Field(max_length=100, index=True)
    step: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=16)
    variant: str | None = Field(default=None, max_length=50)
    delivery_id: int | None = _fk("delivery.id", nullable=True, index=False)
    event_id: int = _fk("event.id", index=False)
    amount: Decimal | None = Field(
        default=None, sa_column=sa.Column(sa.Numeric(18, 4), nullable=True)
    )
    currency: str | None = Field(default=None, max_length=3)
    at: datetime = _time(now=True)

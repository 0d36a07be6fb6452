"""The JSON the API reads and writes, as pydantic models.

The handlers validate with these models and the OpenAPI document is generated
from them, so the description cannot drift from what the code accepts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from storage.models import Channel

__all__ = [
    "ConsentBody",
    "ConsentOut",
    "ContinuationLinksOut",
    "CustomerBody",
    "CustomerList",
    "CustomerOut",
    "CustomerQuery",
    "CustomerRef",
    "CustomerSummary",
    "ErrorOut",
    "EventBody",
    "EventOut",
    "FieldError",
    "HistoryQuery",
    "IdentityOut",
    "MergeBody",
    "MergeOut",
    "MergeRecord",
    "MessageList",
    "MessageOut",
    "UndoOut",
]


def _iso(value: datetime) -> str:
    return value.isoformat()


# Always with an explicit offset ("+00:00"), which every ISO 8601 parser reads.
Timestamp = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
ConsentChannel = Literal["*", "telegram", "vk", "sms", "email"]


class Request(BaseModel):
    """A request body: unknown fields are refused, so a typo is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid")


class FieldError(BaseModel):
    field: str = Field(description='Dotted path of the culprit, e.g. "consents.0.channel".')
    message: str


class ErrorOut(BaseModel):
    """Every error answer has this shape."""

    error: str = Field(
        description="validation, bad_request, unauthorized, not_found, conflict, internal, …"
    )
    message: str
    detail: list[FieldError] = Field(default_factory=list)


class ConsentBody(Request):
    """The customer's yes or no to messages of `purpose` on `channel`."""

    channel: ConsentChannel = Field(description='A channel, or "*" for every channel.')
    purpose: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    granted: bool
    source: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        default=None, description='Where the answer was given, e.g. "checkout form".'
    )


class CustomerBody(Request):
    """A customer to create, or to update when one of its keys is known.

    Keys are matched in the order external_id, phone, email. Fields left out
    stay as they are; `tags` replaces the tag set; `attributes` are merged
    key by key, and a null value removes the key.
    """

    external_id: Annotated[Text, StringConstraints(max_length=200)] | None = Field(
        default=None, description="The shop's own id for this customer."
    )
    phone: str | None = Field(default=None, description="Any common notation; stored as E.164.")
    email: str | None = None
    name: Annotated[str, StringConstraints(max_length=300)] | None = None
    timezone: str | None = Field(default=None, description='An IANA zone, e.g. "Europe/Moscow".')
    locale: Annotated[str, StringConstraints(max_length=16)] | None = None
    attributes: dict[str, Any] | None = None
    tags: list[Annotated[Text, StringConstraints(max_length=100)]] | None = None
    consents: list[ConsentBody] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"{value!r} is not a known IANA time zone") from exc
        return value

    @model_validator(mode="after")
    def _has_key(self) -> CustomerBody:
        if self.external_id is None and self.phone is None and self.email is None:
            raise ValueError("one of external_id, phone, email is required")
        return self


class ConsentOut(BaseModel):
    channel: str
    purpose: str
    granted: bool
    source: str | None
    updated_at: Timestamp


class IdentityOut(BaseModel):
    """An address the customer is reachable at on a channel."""

    id: int
    channel: str
    account: str = Field(description="The bot, VK community, SMS sender or mailbox.")
    address: str = Field(description="Chat id, peer id, E.164 phone or email address.")
    display_name: str | None
    username: str | None
    verified: bool
    reachable: bool
    last_seen_at: Timestamp | None


class CustomerSummary(BaseModel):
    """A customer as listed by search."""

    id: int
    external_id: str | None
    name: str | None
    phone: str | None
    email: str | None
    timezone: str | None
    locale: str | None
    tags: list[str]
    created_at: Timestamp
    updated_at: Timestamp


class CustomerOut(CustomerSummary):
    """The whole profile; blank, with `erased_at` set, after erasure."""

    attributes: dict[str, Any]
    consents: list[ConsentOut]
    identities: list[IdentityOut]
    erased_at: Timestamp | None


class CustomerList(BaseModel):
    items: list[CustomerSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class CustomerQuery(BaseModel):
    q: str | None = Field(
        default=None, description="Part of a name or email, a phone, or an external id."
    )
    channel: Channel | None = Field(default=None, description="Has an identity on this channel.")
    tag: str | None = Field(default=None, description="Carries this tag.")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None


class HistoryQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None


class MessageOut(BaseModel):
    """One message of the cross-channel history."""

    id: int
    conversation_id: int
    channel: str
    direction: Literal["in", "out"]
    author: Literal["customer", "bot", "manager", "flow", "system"]
    kind: str = Field(description="text, note (internal to managers) or system.")
    text: str
    attachments: list[dict[str, Any]]
    sent_at: Timestamp
    delivery_status: str | None = Field(
        description="The latest delivery attempt's status; null for inbound messages."
    )


class MessageList(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class MergeBody(Request):
    other: int = Field(ge=1, description="The customer merged INTO the one in the path.")


class MergeRecord(BaseModel):
    id: int
    survivor: int
    absorbed: int
    created_at: Timestamp
    undone_at: Timestamp | None


class MergeOut(BaseModel):
    merge: MergeRecord
    customer: CustomerOut = Field(description="The surviving profile.")


class ContinuationLinksOut(BaseModel):
    """One single-use link per channel the company has; absent channels are left out."""

    telegram: str | None = Field(None, description="https://t.me/<bot>?start=<token>")
    vk: str | None = Field(None, description="https://vk.me/club<group id>?ref=<token>")
    email: str | None = Field(None, description="mailto:reply+<token>@<domain>")
    sms: str | None = Field(None, description="sms:<number>?body=<text with the token>")


class UndoOut(BaseModel):
    merge: MergeRecord
    survivor: CustomerOut
    absorbed: CustomerOut


class CustomerRef(Request):
    """Who an event happened to: an id, or a key that creates the customer if unknown."""

    id: int | None = Field(default=None, ge=1)
    external_id: Annotated[Text, StringConstraints(max_length=200)] | None = None
    phone: str | None = None
    email: str | None = None

    @model_validator(mode="after")
    def _has_key(self) -> CustomerRef:
        if all(v is None for v in (self.id, self.external_id, self.phone, self.email)):
            raise ValueError("one of id, external_id, phone, email is required")
        return self


class EventBody(Request):
    customer: CustomerRef
    type: Annotated[Text, StringConstraints(max_length=100)] = Field(
        description='What happened, e.g. "cart_abandoned", "order_placed", "purchase".'
    )
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: AwareDatetime | None = Field(default=None, description="Defaults to now.")
    idempotency_key: Annotated[Text, StringConstraints(max_length=200)] | None = Field(
        default=None, description="A repeat with the same key is stored once."
    )


class EventOut(BaseModel):
    id: int
    customer_id: int
    duplicate: bool = Field(description="True when this idempotency key was seen before.")

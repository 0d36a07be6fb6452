"""What managers read in the group: topic names, customer cards, mirrored lines.

Telegram HTML (parse_mode=HTML); everything from customers is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.customers import Customers
from storage.identities import Identities
from storage.messages import HistoryItem, Messages
from storage.models import Author, Conversation, Customer, Direction, Event, Identity, Message

__all__ = ["BADGES", "Card", "badge", "card_html", "line_html", "topic_name"]

BADGES = {"telegram": "Telegram", "vk": "VK", "sms": "SMS", "email": "Email"}
MAX_LINE = 3000  # a mirrored line stays one Telegram message (4096 with markup)
MAX_TOPIC_NAME = 128
MAX_CARD = 4000
_AUTHORS: dict[str, str] = {
    Author.bot: "бот",
    Author.manager: "менеджер",
    Author.flow: "рассылка",
    Author.system: "система",
}


def badge(channel: str) -> str:
    """A channel as managers see it: [VK], [Telegram], ..."""
    return f"[{BADGES.get(channel, channel)}]"


def topic_name(customer: Customer, identities: Sequence[Identity]) -> str:
    """'Анна Петрова · VK · Telegram': the customer and the channels they use."""
    name = customer.name or _identity_name(identities) or f"Клиент #{customer.id}"
    channels: list[str] = []
    for identity in identities:
        label = BADGES.get(identity.channel, identity.channel)
        if label not in channels:
            channels.append(label)
    return " · ".join([name, *channels])[:MAX_TOPIC_NAME]


def _identity_name(identities: Sequence[Identity]) -> str | None:
    return next((i.display_name for i in identities if i.display_name), None)


def line_html(
    *,
    channel: str,
    direction: str,
    author: str,
    kind: str,
    text: str,
    attachments: Sequence[object],
    customer_name: str,
) -> str:
    """One message as a line in the topic: its channel, who, which way, what."""
    if direction == Direction.inbound:
        who = f"← {escape(customer_name)}"
    else:
        who = f"→ {_AUTHORS.get(author, author)}"
    if kind == "note":
        who = "📝 заметка"
    body = text if len(text) <= MAX_LINE else text[:MAX_LINE] + "…"
    extra = f" 📎×{len(attachments)}" if attachments else ""
    return f"<b>{badge(channel)} {who}</b>{extra}\n{escape(body)}"


def message_line(message: Message | HistoryItem, customer_name: str) -> str:
    """`line_html` of a stored message or a history item."""
    return line_html(
        channel=message.channel,
        direction=message.direction,
        author=message.author,
        kind=message.kind,
        text=message.text,
        attachments=message.attachments,
        customer_name=customer_name,
    )


@dataclass(frozen=True, slots=True)
class Card:
    """A customer card: the topic's name and its opening message."""

    name: str
    html: str


async def card_html(
    session: AsyncSession, conversation: Conversation, *, history: int = 10
) -> Card:
    """The customer card: name, phone, email, identities, tags, consents, recent
    events and the last `history` messages, so nobody asks the customer to repeat."""
    customers = Customers(session)
    customer = await customers.get(conversation.customer_id)
    assert customer.id is not None
    identities = await Identities(session).for_customer(customer.id)
    name = topic_name(customer, identities)
    display = customer.name or _identity_name(identities) or f"Клиент #{customer.id}"
    lines = [f"👤 <b>{escape(display)}</b> · диалог #{conversation.id}"]
    if customer.phone:
        lines.append(f"📞 {escape(customer.phone)}")
    if customer.email:
        lines.append(f"✉️ {escape(customer.email)}")
    for identity in identities:
        who = (identity.username and f"@{identity.username}") or identity.display_name or ""
        state = "" if identity.reachable else f" ⛔ {identity.unreachable_reason or 'недоступен'}"
        lines.append(f"{badge(identity.channel)} {escape(identity.address)} {escape(who)}{state}")
    tags = await customers.tags(customer.id)
    if tags:
        lines.append("🏷 " + escape(", ".join(tags)))
    consents = await customers.consents(customer.id)
    if consents:
        parts = [f"{c.purpose}/{c.channel} {'✓' if c.granted else '✗'}" for c in consents]
        lines.append("✅ согласия: " + escape(", ".join(parts)))
    events = await session.scalars(
        sa.select(Event)
        .where(col(Event.customer_id) == customer.id)
        .order_by(col(Event.occurred_at).desc())
        .limit(5)
    )
    for event in events:
        data = ", ".join(f"{k}={v}" for k, v in list(event.data.items())[:4])
        when = event.occurred_at.strftime("%d.%m %H:%M")
        lines.append(f"🧾 {escape(event.type)} {when} {escape(data)}")
    lines.append(f"Режим: {conversation.mode}")
    recent = [
        message_line(item, display)
        for item in await Messages(session).last(conversation.id or 0, history)
    ]
    # One Telegram message: the oldest history lines give way first.
    while recent and len("\n".join([*lines, "", *recent])) > MAX_CARD:
        recent.pop(0)
    if recent:
        lines += ["\n<b>История</b>", *recent]
    return Card(name, "\n".join(lines)[:MAX_CARD])

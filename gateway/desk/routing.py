"""Where a manager's reply goes: the customer's last channel, unless told or unreachable.

The channel of the customer's last inbound message, or the one a manager chose
with /via; if that address failed finally (blocked the bot, hard bounce), the
most recently seen reachable one, and the managers are told so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.desk.cards import badge
from gateway.outbox import Target
from storage.identities import Identities
from storage.models import Conversation, Identity

__all__ = ["CHANNELS", "NoChannel", "Route", "reply_route"]

CHANNELS = ("telegram", "vk", "sms", "email")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NoChannel(LookupError):
    """The customer has no address a message can reach."""


@dataclass(frozen=True, slots=True)
class Route:
    """The target, and what the managers should know about the choice (a fallback)."""

    target: Target
    wanted: str | None
    detour: str | None  # why it is not `wanted`, for the topic


async def reply_route(
    session: AsyncSession, conversation: Conversation, *, exclude: frozenset[int] = frozenset()
) -> Route:
    """The customer's address for a manager's reply (see the module's docstring)."""
    assert conversation.id is not None
    identities = await Identities(session).for_customer(conversation.customer_id)
    wanted = conversation.reply_via or conversation.last_inbound_channel
    usable = [i for i in identities if i.reachable and i.id not in exclude]
    if not usable:
        raise NoChannel(f"customer {conversation.customer_id} has no reachable address")
    usable.sort(key=lambda i: (i.channel != wanted, -_seen(i).timestamp(), -(i.id or 0)))
    chosen = usable[0]
    detour = None
    if wanted is not None and chosen.channel != wanted:
        failed = [i for i in identities if i.channel == wanted]
        why = next((i.unreachable_reason for i in failed if i.unreachable_reason), "недоступен")
        detour = f"{badge(wanted)} {why} — ответ уходит в {badge(chosen.channel)}"
    assert chosen.id is not None
    return Route(
        Target(
            conversation_id=conversation.id,
            customer_id=conversation.customer_id,
            channel=chosen.channel,
            account=chosen.account,
            address=chosen.address,
            identity_id=chosen.id,
        ),
        wanted,
        detour,
    )


def _seen(identity: Identity) -> datetime:
    return identity.last_seen_at or identity.created_at or _EPOCH

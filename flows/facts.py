"""What a send needs to know about its customer, read for a chunk of runs at once.

A send looks at the customer's tags, consents, identities, live conversation and
recent marketing sends: five queries a run when each run reads its own. The
engine reads them for a chunk of claimed runs in five queries, in the chunk's
own transaction before it advances the runs. A customer's facts serve only the first send of the
first run of that customer in the chunk (`take` hands them out once): whatever a
send changes (a conversation created, one more send for the caps) is read afresh
by the next.

In that transaction the engine also gives the chunk's customers who are about
to be sent something their first conversation in bulk (`open_conversations`),
by `Conversations.open_for`'s rule: under the customers' row locks, look again
and create only what is still missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.conversations import lock_customers
from storage.models import (
    Consent,
    Conversation,
    ConversationMode,
    CustomerTag,
    Delivery,
    FlowRun,
    FlowStep,
    Identity,
    utcnow,
)

__all__ = ["CustomerFacts", "Facts", "load_facts", "open_conversations"]


@dataclass(slots=True)
class CustomerFacts:
    """One customer's send-relevant rows, in the order the per-run queries give them."""

    tags: list[str] = field(default_factory=list)
    consents: list[Consent] = field(default_factory=list)
    # By channel, most recently seen first (then newest), as `Cascade._target` reads them.
    identities: dict[str, list[Identity]] = field(default_factory=dict)
    # The live (newest unmerged) conversation: its id and mode; None when there is none.
    conversation: tuple[int, str] | None = None
    # When the customer's marketing flow messages since `since` were sent (for the caps).
    sent_times: list[datetime] = field(default_factory=list)


class Facts:
    """The facts of a chunk's customers; each handed out once."""

    def __init__(self, by_customer: dict[int, CustomerFacts] | None = None) -> None:
        self._by_customer = by_customer or {}

    def take(self, customer_id: int) -> CustomerFacts | None:
        return self._by_customer.pop(customer_id, None)

    def peek(self, customer_id: int) -> CustomerFacts | None:
        """The customer's facts without handing them out."""
        return self._by_customer.get(customer_id)


async def load_facts(
    session: AsyncSession, customer_ids: Sequence[int], *, since: datetime
) -> Facts:
    """Read the facts of `customer_ids` in five queries."""
    ids = sorted(set(customer_ids))
    if not ids:
        return Facts()
    facts = {i: CustomerFacts() for i in ids}
    for customer_id, tag in await session.execute(
        sa.select(col(CustomerTag.customer_id), col(CustomerTag.tag))
        .where(col(CustomerTag.customer_id).in_(ids))
        .order_by(col(CustomerTag.customer_id), col(CustomerTag.tag))
    ):
        facts[customer_id].tags.append(tag)
    for consent in await session.scalars(
        sa.select(Consent).where(
            col(Consent.customer_id).in_(ids),
            col(Consent.purpose).in_(["marketing", "transactional"]),
        )
    ):
        facts[consent.customer_id].consents.append(consent)
    for identity in await session.scalars(
        sa.select(Identity)
        .where(col(Identity.customer_id).in_(ids))
        .order_by(col(Identity.last_seen_at).desc().nulls_last(), col(Identity.id).desc())
    ):
        facts[identity.customer_id].identities.setdefault(identity.channel, []).append(identity)
    for customer_id, conversation in (await _live_conversations(session, ids)).items():
        facts[customer_id].conversation = conversation
    for customer_id, at in await session.execute(
        sa.select(col(FlowRun.customer_id), col(FlowStep.at))
        .join(FlowRun, col(FlowRun.id) == col(FlowStep.run_id))
        .join(Delivery, col(Delivery.id) == col(FlowStep.delivery_id))
        .where(
            col(FlowRun.customer_id).in_(ids),
            col(FlowStep.outcome) == "sent",
            col(FlowStep.at) >= since,
            col(Delivery.purpose) == "marketing",
        )
    ):
        facts[customer_id].sent_times.append(at)
    return Facts(facts)


async def open_conversations(
    session: AsyncSession, facts: Facts, customer_ids: Sequence[int]
) -> None:
    """Make the live conversation of each of `customer_ids` that has none, in one INSERT.

    `Conversations.open_for`'s rule for a batch: take the customers' row locks (so
    a first message arriving at the same time cannot make a second one), look
    again, create the missing. Their facts get the conversation.
    """
    ids = sorted(set(customer_ids))
    if not ids:
        return
    await lock_customers(session, ids)
    found = await _live_conversations(session, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        now = utcnow()
        # executemany of plain rows: ORM objects would go one INSERT each on SQLite.
        made = await session.execute(
            sa.insert(Conversation).returning(
                col(Conversation.id), col(Conversation.customer_id), col(Conversation.mode)
            ),
            [
                {
                    "customer_id": i,
                    "mode": ConversationMode.bot,
                    "dialog_state": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i in missing
            ],
        )
        for conversation_id, customer_id, mode in made:
            assert conversation_id is not None
            found[customer_id] = (conversation_id, mode)
    for customer_id, live in found.items():
        known = facts.peek(customer_id)
        if known is not None:
            known.conversation = live


async def _live_conversations(
    session: AsyncSession, customer_ids: Sequence[int]
) -> dict[int, tuple[int, str]]:
    """Each customer's live (newest unmerged) conversation: its id and mode."""
    live: dict[int, tuple[int, str]] = {}
    for conversation_id, customer_id, mode in await session.execute(
        sa.select(col(Conversation.id), col(Conversation.customer_id), col(Conversation.mode))
        .where(
            col(Conversation.customer_id).in_(list(customer_ids)),
            col(Conversation.merged_into_id).is_(None),
        )
        .order_by(col(Conversation.id))
    ):
        if conversation_id is not None:
            live[customer_id] = (conversation_id, mode)
    return live

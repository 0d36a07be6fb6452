"""Conversations: each customer's one dialogue across channels.

Who may speak into a conversation is decided by its mode, in one place:
`person_owns(mode)` is True while a manager owns it (mode "manager"); then the
bot stays silent and no flow may send it a marketing message. Flows call it
before every send; it costs nothing but a look at the row they already hold.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.customers import Customers
from storage.errors import NotFound
from storage.inserts import dialect_name
from storage.models import Conversation, ConversationMode, Customer, utcnow

__all__ = ["Conversations", "lock_customers", "person_owns"]

# What GET /api/conversations?status= takes: each mode, plus "open" (anything not closed).
STATUSES = frozenset({*(m.value for m in ConversationMode), "open"})


def person_owns(mode: str) -> bool:
    """Whether a manager owns the conversation: no bot or marketing message goes into it."""
    return mode == ConversationMode.manager


class Conversations:
    """Conversation rows of one session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def open_for(self, customer_id: int, *, lock: bool = False) -> Conversation:
        """The customer's conversation (of their survivor, if merged), created if none.

        With `lock`, the row is read with FOR UPDATE (PostgreSQL; SQLite's one
        writer needs none): held until the transaction ends and read as the last
        writer left it, for a caller about to move the dialog on.

        A closed conversation comes back as it is: the caller decides to reopen.
        Two first messages at once must not make two conversations, so creation
        happens under a lock on the customer row: SELECT … FOR UPDATE on
        PostgreSQL, and on SQLite a no-op UPDATE, which takes the database's one
        write lock before we look again.
        """
        found = await self._live(customer_id, lock=lock)
        if found is not None:
            return found
        customer = await Customers(self.session).get(customer_id)
        assert customer.id is not None
        await lock_customers(self.session, [customer.id])
        found = await self._live(customer.id, lock=lock)
        if found is not None:
            return found
        now = utcnow()
        conversation = Conversation(
            customer_id=customer.id, mode=ConversationMode.bot, created_at=now, updated_at=now
        )
        self.session.add(conversation)
        await self.session.flush()
        return conversation

    async def get(self, conversation_id: int) -> Conversation:
        conversation = await self.session.get(Conversation, conversation_id, populate_existing=True)
        if conversation is None:
            raise NotFound("conversation", conversation_id)
        return conversation

    async def update(self, conversation: Conversation, **fields: Any) -> Conversation:
        """Set `fields` (names of Conversation columns) and touch updated_at.

        Setting what is there already writes nothing: the dialog saves its state
        after every message, and most messages leave it as it was.
        """
        for name in fields:
            if name in {"id", "created_at"} or name not in Conversation.model_fields:
                raise ValueError(f"{name!r} is not a conversation field one can set")
        if all(getattr(conversation, name) == value for name, value in fields.items()):
            return conversation
        for name, value in fields.items():
            setattr(conversation, name, value)
        conversation.updated_at = utcnow()
        await self.session.flush()
        return conversation

    async def by_topic(self, topic_id: int) -> Conversation | None:
        """The conversation whose managers' topic has this message_thread_id."""
        result = await self.session.scalars(
            sa.select(Conversation)
            .where(col(Conversation.topic_id) == topic_id)
            .order_by(col(Conversation.id).desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
        return result.first()

    async def listing(
        self,
        *,
        status: str | None = None,
        assignee_id: int | None = None,
        limit: int = 50,
        after: int | None = None,
    ) -> list[Conversation]:
        """Live conversations, newest activity first; filtered by mode and assignee."""
        stmt = sa.select(Conversation).where(col(Conversation.merged_into_id).is_(None))
        if status == "open":
            stmt = stmt.where(col(Conversation.mode) != ConversationMode.closed)
        elif status is not None:
            if status not in STATUSES:
                raise ValueError(f"status must be one of {sorted(STATUSES)}, not {status!r}")
            stmt = stmt.where(col(Conversation.mode) == status)
        if assignee_id is not None:
            stmt = stmt.where(col(Conversation.assignee_id) == assignee_id)
        if after is not None:
            stmt = stmt.where(col(Conversation.id) < after)
        stmt = stmt.order_by(col(Conversation.id).desc()).limit(max(1, min(limit, 500)))
        return list(await self.session.scalars(stmt))

    async def open_desk(self, conversation_id: int, now: datetime) -> bool:
        """Mark the conversation as the managers' from now on; True for the one caller
        that did it (a compare-and-set, so two quick messages open one topic)."""
        result = await self.session.execute(
            sa.update(Conversation)
            .where(
                col(Conversation.id) == conversation_id,
                col(Conversation.desk_opened_at).is_(None),
            )
            .values(desk_opened_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def swap_topic(self, conversation_id: int, old: int | None, new: int | None) -> bool:
        """Set the topic id only if it still is `old` (compare-and-set); True if set."""
        current = col(Conversation.topic_id)
        result = await self.session.execute(
            sa.update(Conversation)
            .where(
                col(Conversation.id) == conversation_id,
                current.is_(None) if old is None else current == old,
            )
            .values(topic_id=new)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def unanswered(self, waiting_before: datetime, limit: int = 100) -> list[Conversation]:
        """Waiting conversations nobody took since `waiting_before`, not yet reminded of."""
        stmt = (
            sa.select(Conversation)
            .where(
                col(Conversation.mode) == ConversationMode.waiting,
                col(Conversation.waiting_since) <= waiting_before,
                sa.or_(
                    col(Conversation.reminded_at).is_(None),
                    col(Conversation.reminded_at) < col(Conversation.waiting_since),
                ),
            )
            .order_by(col(Conversation.waiting_since))
            .limit(limit)
        )
        return list(await self.session.scalars(stmt))

    async def _live(self, customer_id: int, *, lock: bool = False) -> Conversation | None:
        stmt = _LIVE_LOCKED if lock else _LIVE
        return (await self.session.scalars(stmt, {"customer_id": customer_id})).first()


# Every inbound message asks: built once.
_LIVE = (
    sa.select(Conversation)
    .where(
        col(Conversation.customer_id) == sa.bindparam("customer_id"),
        col(Conversation.merged_into_id).is_(None),
    )
    .order_by(col(Conversation.id).desc())
    .limit(1)
    .execution_options(populate_existing=True)
)
_LIVE_LOCKED = _LIVE.with_for_update()


async def lock_customers(session: AsyncSession, customer_ids: list[int]) -> None:
    """Hold the customers' rows until the transaction ends, in id order (no deadlocks).

    PostgreSQL takes row locks with SELECT … FOR UPDATE; SQLite ignores that, so
    a no-op UPDATE takes its single write lock instead.
    """
    ids = sorted(set(customer_ids))
    if dialect_name(session) == "postgresql":
        await session.execute(
            sa.select(col(Customer.id))
            .where(col(Customer.id).in_(ids))
            .order_by(col(Customer.id))
            .with_for_update()
        )
    else:
        await session.execute(
            sa.update(Customer)
            .where(col(Customer.id).in_(ids))
            .values(id=col(Customer.id))
            .execution_options(synchronize_session=False)
        )

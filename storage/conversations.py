"""Conversations: each customer's one dialogue across channels."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.customers import Customers
from storage.errors import NotFound
from storage.inserts import dialect_name
from storage.models import Conversation, ConversationMode, Customer, utcnow

__all__ = ["Conversations", "lock_customers"]


class Conversations:
    """Conversation rows of one session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def open_for(self, customer_id: int) -> Conversation:
        """The customer's conversation (of their survivor, if merged), created if none.

        A closed conversation comes back as it is: the caller decides to reopen.
        Two first messages at once must not make two conversations, so creation
        happens under a lock on the customer row: SELECT … FOR UPDATE on
        PostgreSQL, and on SQLite a no-op UPDATE, which takes the database's one
        write lock before we look again.
        """
        found = await self._live(customer_id)
        if found is not None:
            return found
        customer = await Customers(self.session).get(customer_id)
        assert customer.id is not None
        await lock_customers(self.session, [customer.id])
        found = await self._live(customer.id)
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
        """Set `fields` (names of Conversation columns) and touch updated_at."""
        for name, value in fields.items():
            if name in {"id", "created_at"} or name not in Conversation.model_fields:
                raise ValueError(f"{name!r} is not a conversation field one can set")
            setattr(conversation, name, value)
        conversation.updated_at = utcnow()
        await self.session.flush()
        return conversation

    async def _live(self, customer_id: int) -> Conversation | None:
        result = await self.session.scalars(
            sa.select(Conversation)
            .where(
                col(Conversation.customer_id) == customer_id,
                col(Conversation.merged_into_id).is_(None),
            )
            .order_by(col(Conversation.id).desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
        return result.first()


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

"""The right to be forgotten, and the right to see what is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from storage.conversations import lock_customers
from storage.errors import NotFound
from storage.models import (
    Consent,
    Conversation,
    Customer,
    CustomerTag,
    Delivery,
    Event,
    Identity,
    LinkToken,
    Merge,
    Message,
    utcnow,
)

__all__ = ["Erasure"]


class Erasure:
    """Erase or export one customer's personal data; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def erase(self, customer_id: int) -> None:
        """Blank everything that identifies the customer; keep what stats count.

        Rows stay (a message's channel, direction and time; a delivery's status),
        so funnels and attribution add up after an erasure.
        """
        customer = await self._customer(customer_id)
        # Profiles merged into this one are the same person: they go too.
        absorbed = await self.session.scalars(
            sa.select(col(Customer.id)).where(col(Customer.merged_into_id) == customer_id)
        )
        for other in list(absorbed):
            if other is not None:
                await self.erase(other)
        await lock_customers(self.session, [customer_id])
        now = utcnow()
        # The merge audit keeps earlier values (name, phone, ...): blank it, keep the fact.
        await self.session.execute(
            sa.update(Merge)
            .where(
                sa.or_(col(Merge.survivor_id) == customer_id, col(Merge.absorbed_id) == customer_id)
            )
            .values(moved={"erased": True})
            .execution_options(synchronize_session=False)
        )
        customer.name = customer.phone = customer.email = customer.external_id = None
        customer.timezone = customer.locale = None
        customer.attributes = {}
        customer.erased_at = customer.updated_at = now
        await self.session.execute(
            sa.delete(CustomerTag).where(col(CustomerTag.customer_id) == customer_id)
        )
        await self.session.execute(
            sa.delete(LinkToken).where(col(LinkToken.customer_id) == customer_id)
        )
        await self._blank(
            Identity,
            customer_id,
            address=sa.literal("erased:") + sa.cast(col(Identity.id), sa.String()),
            display_name=None,
            username=None,
            reachable=False,
            unreachable_reason="erased",
        )
        await self._blank(Message, customer_id, text="", attachments=[], meta={})
        await self._blank(Event, customer_id, data={})
        await self._blank(Delivery, customer_id, address="", payload={}, error=None)
        conversations = sa.select(col(Conversation.id)).where(
            col(Conversation.customer_id) == customer_id
        )
        await self.session.execute(
            sa.update(Conversation)
            .where(col(Conversation.id).in_(conversations))
            .values(dialog_state={}, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        await self.session.flush()

    async def export(self, customer_id: int) -> dict[str, Any]:
        """Everything stored about the customer, as JSON-ready data."""
        customer = await self._customer(customer_id)
        where = {"customer_id": customer_id}
        tags = await self.session.scalars(
            sa.select(col(CustomerTag.tag))
            .where(col(CustomerTag.customer_id) == customer_id)
            .order_by(col(CustomerTag.tag))
        )
        return {
            "profile": _plain(customer),
            "tags": list(tags),
            "identities": await self._rows(Identity, where),
            "consents": await self._rows(Consent, where),
            "conversations": await self._rows(Conversation, where),
            "messages": await self._rows(Message, where),
            "events": await self._rows(Event, where),
            "deliveries": await self._rows(Delivery, where, exclude={"payload"}),
        }

    async def _customer(self, customer_id: int) -> Customer:
        customer = await self.session.get(Customer, customer_id, populate_existing=True)
        if customer is None:
            raise NotFound("customer", customer_id)
        return customer

    async def _blank(self, model: Any, customer_id: int, **values: Any) -> None:
        await self.session.execute(
            sa.update(model)
            .where(model.customer_id == customer_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    async def _rows(
        self, model: Any, where: dict[str, Any], exclude: set[str] | None = None
    ) -> list[dict[str, Any]]:
        order = [c for c in sa.inspect(model).primary_key]
        rows = await self.session.scalars(
            sa.select(model)
            .filter_by(**where)
            .order_by(*order)
            .execution_options(populate_existing=True)
        )
        return [_plain(row, exclude) for row in rows]


def _plain(row: SQLModel, exclude: set[str] | None = None) -> dict[str, Any]:
    data = row.model_dump(exclude=exclude)
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}

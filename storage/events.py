"""Events: what happened to a customer, stored once per idempotency key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.errors import NotFound
from storage.inserts import insert
from storage.models import Event, utcnow

__all__ = ["Events"]


class Events:
    """Event rows of one session; never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self,
        *,
        customer_id: int,
        type: str,
        data: dict[str, Any] | None = None,
        occurred_at: datetime | None = None,
        idempotency_key: str | None = None,
        source: str = "api",
    ) -> tuple[Event, bool]:
        """Store the event; a retried `idempotency_key` returns the stored one, created False."""
        if not type.strip():
            raise ValueError("type must not be blank")
        now = utcnow()
        stmt = insert(self.session, Event).values(
            customer_id=customer_id,
            type=type,
            data=dict(data or {}),
            idempotency_key=idempotency_key,
            source=source,
            occurred_at=occurred_at or now,
            created_at=now,
        )
        if idempotency_key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["idempotency_key"])
        event = (
            await self.session.scalars(
                stmt.returning(Event), execution_options={"populate_existing": True}
            )
        ).first()
        if event is not None:
            return event, True
        existing = (
            await self.session.scalars(
                sa.select(Event)
                .where(col(Event.idempotency_key) == idempotency_key)
                .execution_options(populate_existing=True)
            )
        ).first()
        if existing is None:
            raise NotFound("event", idempotency_key)
        return existing, False

    async def recent(self, customer_id: int, limit: int = 10) -> list[Event]:
        """The customer's latest events, newest first."""
        rows = await self.session.scalars(
            sa.select(Event)
            .where(col(Event.customer_id) == customer_id)
            .order_by(col(Event.occurred_at).desc(), col(Event.id).desc())
            .limit(limit)
        )
        return list(rows)

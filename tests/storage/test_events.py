"""Events: one row per idempotency key, however many retries race."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from storage.customers import Customers
from storage.db import Database
from storage.events import Events
from storage.models import Event


async def test_concurrent_retries_of_one_event_store_it_once(database: Database) -> None:
    async with database.session() as s:
        customer, _ = await Customers(s).upsert(external_id="crm-1")

    async def record() -> tuple[int, bool]:
        async with database.session() as s:
            event, created = await Events(s).record(
                customer_id=customer.id,
                type="order_placed",
                data={"order": 17},
                idempotency_key="order-17",
            )
            assert event.id is not None
            return event.id, created

    results = await asyncio.gather(*(record() for _ in range(20)))
    assert len({event_id for event_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    async with database.session() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(Event)) == 1


async def test_events_without_key_are_all_stored_and_recent_is_newest_first(
    database: Database,
) -> None:
    async with database.session() as s:
        customer, _ = await Customers(s).upsert(external_id="crm-1")
        for kind in ("cart_abandoned", "order_placed", "purchase"):
            await Events(s).record(customer_id=customer.id, type=kind)
        recent = await Events(s).recent(customer.id, limit=2)
    assert [e.type for e in recent] == ["purchase", "order_placed"]

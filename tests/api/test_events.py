"""`POST /api/events`: stored once per idempotency key, customers created on the way."""

from __future__ import annotations

import sqlalchemy as sa

from storage.db import Database
from storage.models import Event
from tests.api.conftest import Client, create


async def _count_events(db: Database) -> int:
    async with db.session() as s:
        return int(await s.scalar(sa.select(sa.func.count()).select_from(Event)) or 0)


async def test_same_idempotency_key_is_stored_once(api: Client, database: Database) -> None:
    customer = await create(api, external_id="shop-7")
    event = {
        "customer": {"external_id": "shop-7"},
        "type": "cart_abandoned",
        "data": {"cart": [1, 2]},
        "occurred_at": "2025-03-01T12:00:00+03:00",
        "idempotency_key": "cart-991",
    }
    first = await api.post("/api/events", json=event)
    assert first.status == 202
    body = await first.json()
    assert body["duplicate"] is False
    assert body["customer_id"] == customer["id"]

    second = await api.post("/api/events", json=event)
    assert second.status == 202
    repeat = await second.json()
    assert repeat["id"] == body["id"]
    assert repeat["duplicate"] is True
    assert await _count_events(database) == 1

    other = await api.post("/api/events", json=event | {"idempotency_key": "cart-992"})
    assert (await other.json())["id"] != body["id"]
    assert await _count_events(database) == 2


async def test_unknown_phone_creates_the_customer(api: Client) -> None:
    response = await api.post(
        "/api/events",
        json={"customer": {"phone": "8 999 765-43-21"}, "type": "order_placed"},
    )
    assert response.status == 202
    customer_id = (await response.json())["customer_id"]
    profile = await (await api.get(f"/api/customers/{customer_id}")).json()
    assert profile["phone"] == "+79997654321"
    again = await api.post(
        "/api/events", json={"customer": {"phone": "+79997654321"}, "type": "purchase"}
    )
    assert (await again.json())["customer_id"] == customer_id
    listed = await (await api.get("/api/customers")).json()
    assert len(listed["items"]) == 1


async def test_event_errors(sqlite_api: Client, sqlite_database: Database) -> None:
    unknown = await sqlite_api.post("/api/events", json={"customer": {"id": 404}, "type": "x"})
    assert unknown.status == 404
    cases = [
        ({"customer": {"phone": "12"}, "type": "x"}, "customer.phone"),
        ({"customer": {}, "type": "x"}, "customer"),
        ({"customer": {"id": 1}}, "type"),
        ({"customer": {"id": 1}, "type": "  "}, "type"),
        ({"customer": {"id": 1}, "type": "x", "occurred_at": "2025-03-01T12:00:00"}, "occurred_at"),
        ({"customer": {"id": 1}, "type": "x", "data": [1]}, "data"),
    ]
    for payload, field in cases:
        response = await sqlite_api.post("/api/events", json=payload)
        assert response.status == 422, payload
        assert field in [d["field"] for d in (await response.json())["detail"]], payload
    assert await _count_events(sqlite_database) == 0
    assert (await (await sqlite_api.get("/api/customers")).json())["items"] == []

"""The cross-channel history of one customer, as managers and integrations read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.db import Database
from tests.api.conftest import Client, add_message, create

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


async def test_history_is_every_channel_oldest_first_a_page_at_a_time(
    api: Client, database: Database
) -> None:
    customer = await create(api, phone="+79991234567")
    cid = int(customer["id"])
    script = [
        ("telegram", "in", "customer", "Hi, where is my order?", None),
        ("telegram", "out", "bot", "Let me check", "read"),
        ("sms", "out", "manager", "It ships today", "delivered"),
        ("email", "in", "customer", "Thanks!", None),
        ("email", "out", "flow", "Rate your purchase", "failed"),
    ]
    for n, (channel, direction, author, text, status) in enumerate(script):
        await add_message(
            database,
            cid,
            channel=channel,
            direction=direction,
            author=author,
            text=text,
            sent_at=T0 + timedelta(minutes=n),
            delivery_status=status,
        )

    items: list[dict[str, object]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        response = await api.get(f"/api/customers/{cid}/messages", params=params)
        assert response.status == 200
        page = await response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [
        (m["channel"], m["direction"], m["author"], m["text"], m["delivery_status"]) for m in items
    ] == script
    first = items[0]
    assert first["attachments"] == [{"type": "photo", "url": "https://example.com/a.jpg"}]
    assert first["sent_at"] == "2025-03-01T09:00:00+00:00"
    assert datetime.fromisoformat(str(items[-1]["sent_at"])) == T0 + timedelta(minutes=4)
    assert {
        "id",
        "channel",
        "direction",
        "author",
        "text",
        "attachments",
        "sent_at",
        "delivery_status",
    } <= set(first)


async def test_a_customer_without_messages_has_an_empty_history(sqlite_api: Client) -> None:
    customer = await create(sqlite_api, email="quiet@example.com")
    response = await sqlite_api.get(f"/api/customers/{customer['id']}/messages")
    assert await response.json() == {"items": [], "next_cursor": None}

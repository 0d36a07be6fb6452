"""Export everything about a customer, then erase them."""

from __future__ import annotations

from datetime import UTC, datetime

from storage.db import Database
from tests.api.conftest import Client, add_identity, add_message, create


async def test_export_then_erase(api: Client, database: Database) -> None:
    customer = await create(
        api,
        phone="+79991234567",
        email="anna@example.com",
        name="Anna",
        attributes={"city": "Kazan"},
        tags=["vip"],
    )
    cid = int(customer["id"])
    await add_identity(database, cid, "telegram", "1001", "Anna T")
    await add_message(
        database,
        cid,
        channel="telegram",
        direction="in",
        author="customer",
        text="my address is Lenina 1",
        sent_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    events = await api.post(
        "/api/events", json={"customer": {"id": cid}, "type": "order_placed", "data": {"sum": 10}}
    )
    assert events.status == 202

    response = await api.get(f"/api/customers/{cid}/export")
    assert response.status == 200
    export = await response.json()
    assert export["profile"]["name"] == "Anna"
    assert export["profile"]["phone"] == "+79991234567"
    assert export["tags"] == ["vip"]
    assert [i["address"] for i in export["identities"]] == ["1001"]
    assert [m["text"] for m in export["messages"]] == ["my address is Lenina 1"]
    assert [e["data"] for e in export["events"]] == [{"sum": 10}]

    erased = await api.delete(f"/api/customers/{cid}")
    assert erased.status == 204
    assert await erased.read() == b""

    profile = await (await api.get(f"/api/customers/{cid}")).json()
    assert profile["erased_at"] is not None
    for field in ("name", "phone", "email", "external_id", "timezone", "locale"):
        assert profile[field] is None
    assert profile["attributes"] == {}
    assert profile["tags"] == []
    assert all(i["address"] != "1001" and i["display_name"] is None for i in profile["identities"])
    history = await (await api.get(f"/api/customers/{cid}/messages")).json()
    assert [m["text"] for m in history["items"]] == [""]
    after = await (await api.get(f"/api/customers/{cid}/export")).json()
    assert "Anna" not in str(after)
    assert "Lenina" not in str(after)
    assert "79991234567" not in str(after)
    # The phone is free again: a new customer may take it.
    again = await api.post("/api/customers", json={"phone": "+79991234567"})
    assert again.status == 201
    assert (await again.json())["id"] != cid


async def test_erasing_an_unknown_customer_is_404(sqlite_api: Client) -> None:
    response = await sqlite_api.delete("/api/customers/12345")
    assert response.status == 404

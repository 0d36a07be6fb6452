"""Merging two customers into one, and undoing it."""

from __future__ import annotations

from datetime import UTC, datetime

from storage.db import Database
from tests.api.conftest import Client, add_identity, add_message, create


async def test_merge_then_undo(api: Client, database: Database) -> None:
    anna = await create(api, phone="+79991234567", name="Anna", tags=["vip"])
    other = await create(api, email="anna@example.com", tags=["newsletter"])
    aid, oid = int(anna["id"]), int(other["id"])
    await add_identity(database, oid, "vk", "777", "Anna VK")
    await add_message(
        database,
        oid,
        channel="vk",
        direction="in",
        author="customer",
        text="hello from vk",
        sent_at=datetime(2025, 1, 1, tzinfo=UTC),
    )

    response = await api.post(f"/api/customers/{aid}/merge", json={"other": oid})
    assert response.status == 200
    merged = await response.json()
    assert merged["merge"]["survivor"] == aid
    assert merged["merge"]["absorbed"] == oid
    survivor = merged["customer"]
    assert survivor["id"] == aid
    assert survivor["email"] == "anna@example.com"
    assert survivor["tags"] == ["newsletter", "vip"]
    assert [i["address"] for i in survivor["identities"]] == ["777"]
    history = await (await api.get(f"/api/customers/{aid}/messages")).json()
    assert [m["text"] for m in history["items"]] == ["hello from vk"]
    # The absorbed id still answers, with the survivor.
    assert (await (await api.get(f"/api/customers/{oid}")).json())["id"] == aid

    again = await api.post(f"/api/customers/{aid}/merge", json={"other": oid})
    assert again.status == 409

    response = await api.post(f"/api/merges/{merged['merge']['id']}/undo")
    assert response.status == 200
    undone = await response.json()
    assert undone["merge"]["undone_at"] is not None
    assert undone["survivor"]["email"] is None
    assert undone["survivor"]["tags"] == ["vip"]
    assert undone["survivor"]["identities"] == []
    restored = await (await api.get(f"/api/customers/{oid}")).json()
    assert restored["id"] == oid
    assert restored["email"] == "anna@example.com"
    assert restored["tags"] == ["newsletter"]
    assert [i["address"] for i in restored["identities"]] == ["777"]
    history = await (await api.get(f"/api/customers/{oid}/messages")).json()
    assert [m["text"] for m in history["items"]] == ["hello from vk"]
    assert (await (await api.get(f"/api/customers/{aid}/messages")).json())["items"] == []

    twice = await api.post(f"/api/merges/{merged['merge']['id']}/undo")
    assert twice.status == 409


async def test_merge_errors(sqlite_api: Client) -> None:
    one = await create(sqlite_api, external_id="one")
    merge_path = f"/api/customers/{one['id']}/merge"
    self_merge = await sqlite_api.post(merge_path, json={"other": one["id"]})
    assert self_merge.status == 409
    assert (await self_merge.json())["detail"][0]["field"] == "other"
    unknown = await sqlite_api.post(merge_path, json={"other": 999})
    assert unknown.status == 404
    missing = await sqlite_api.post(merge_path, json={})
    assert missing.status == 422
    assert (await missing.json())["detail"][0]["field"] == "other"
    assert (await sqlite_api.post("/api/merges/999/undo")).status == 404

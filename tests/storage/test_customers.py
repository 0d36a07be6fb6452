"""Customers: upsert by keys, conflicts, tags, consents, search."""

from __future__ import annotations

import pytest

from storage.customers import ConsentIn, Customers
from storage.db import Database
from storage.errors import Conflict, InvalidAddress, NotFound
from storage.identities import Identities


async def test_upsert_creates_then_updates_the_same_customer(database: Database) -> None:
    async with database.session() as s:
        customer, created = await Customers(s).upsert(
            phone="8 999 123-45-67",
            name="Anna",
            attributes={"city": "Kazan", "plan": "free"},
            tags=["vip", "new"],
            timezone="Europe/Moscow",
        )
    assert created
    assert customer.phone == "+79991234567"
    async with database.session() as s:
        again, created = await Customers(s).upsert(
            phone="+7 999 123 45 67",
            email="Anna@Mail.RU",
            attributes={"plan": "pro", "city": None},
            tags=["vip"],
        )
        tags = await Customers(s).tags(again.id)
    assert not created
    assert again.id == customer.id
    assert again.email == "anna@mail.ru"
    assert again.name == "Anna"
    assert again.attributes == {"plan": "pro"}
    assert tags == ["vip"]


async def test_upsert_finds_by_external_id_first(database: Database) -> None:
    async with database.session() as s:
        first, _ = await Customers(s).upsert(external_id="crm-1", email="a@example.com")
        second, created = await Customers(s).upsert(external_id="crm-1", phone="+79990000001")
    assert not created
    assert second.id == first.id
    assert second.phone == "+79990000001"


async def test_keys_of_two_customers_conflict_naming_the_field(database: Database) -> None:
    async with database.session() as s:
        await Customers(s).upsert(phone="+79990000001")
        await Customers(s).upsert(email="b@example.com")
    async with database.session() as s:
        with pytest.raises(Conflict) as info:
            await Customers(s).upsert(phone="+79990000001", email="b@example.com")
    assert info.value.field == "email"


async def test_upsert_refuses_missing_keys_bad_timezone_and_bad_phone(database: Database) -> None:
    async with database.session() as s:
        repo = Customers(s)
        with pytest.raises(ValueError, match="at least one"):
            await repo.upsert(name="Nobody")
        with pytest.raises(ValueError, match="timezone"):
            await repo.upsert(phone="+79990000001", timezone="Mars/Olympus")
        with pytest.raises(InvalidAddress, match="not a valid phone"):
            await repo.upsert(phone="+7 999")


async def test_concurrent_upserts_of_one_new_phone_make_one_customer(database: Database) -> None:
    import asyncio

    async def upsert(n: int) -> int:
        async with database.session() as s:
            customer, _ = await Customers(s).upsert(phone="+79995550000", attributes={f"k{n}": n})
            assert customer.id is not None
            return customer.id

    ids = await asyncio.gather(*(upsert(n) for n in range(10)))
    assert len(set(ids)) == 1


async def test_consents_are_upserted_and_read_back(database: Database) -> None:
    async with database.session() as s:
        customer, _ = await Customers(s).upsert(
            phone="+79990000001",
            consents=[
                ConsentIn("*", "marketing", True, "form"),
                ConsentIn("sms", "marketing", True),
            ],
        )
        await Customers(s).set_consent(customer.id, ConsentIn("*", "marketing", False, "STOP"))
        consents = await Customers(s).consents(customer.id)
    assert [(c.channel, c.purpose, c.granted, c.source) for c in consents] == [
        ("*", "marketing", False, "STOP"),
        ("sms", "marketing", True, None),
    ]


async def test_get_follows_a_merge_and_unknown_ids_are_not_found(database: Database) -> None:
    async with database.session() as s:
        survivor, _ = await Customers(s).upsert(phone="+79990000001")
        absorbed, _ = await Customers(s).upsert(phone="+79990000002")
        absorbed.merged_into_id = survivor.id
        await s.flush()
        assert (await Customers(s).get(absorbed.id)).id == survivor.id
        found = await Customers(s).find(phone="8 999 000-00-02")
        assert found is not None
        assert found.id == survivor.id
        with pytest.raises(NotFound) as info:
            await Customers(s).get(10**9)
    assert info.value.kind == "customer"


async def test_search_filters_and_pages(database: Database) -> None:
    async with database.session() as s:
        repo = Customers(s)
        for n in range(5):
            await repo.upsert(
                external_id=f"crm-{n}", name=f"Olga {n}", tags=["vip"] if n % 2 else []
            )
        await repo.upsert(external_id="crm-x", name="Boris", email="boris@example.com")
        _, customer, _ = await Identities(s).resolve(
            channel="telegram", account="bot1", address="777", display_name="Telegram Tom"
        )
    async with database.session() as s:
        repo = Customers(s)
        first = await repo.search(q="olga", limit=2)
        assert [c.name for c in first.items] == ["Olga 0", "Olga 1"]
        assert first.next_cursor is not None
        second = await repo.search(q="olga", limit=2, cursor=first.next_cursor)
        third = await repo.search(q="olga", limit=2, cursor=second.next_cursor)
        assert [c.name for c in second.items + third.items] == ["Olga 2", "Olga 3", "Olga 4"]
        assert third.next_cursor is None
        assert [c.name for c in (await repo.search(tag="vip")).items] == ["Olga 1", "Olga 3"]
        assert [c.name for c in (await repo.search(q="BORIS@example")).items] == ["Boris"]
        assert [c.id for c in (await repo.search(channel="telegram")).items] == [customer.id]
        with pytest.raises(ValueError, match="invalid cursor"):
            await repo.search(cursor="garbage!")


async def test_search_is_case_insensitive_for_cyrillic_names(database: Database) -> None:
    async with database.session() as s:
        await Customers(s).upsert(external_id="c1", name="Анна Иванова")
        await Customers(s).upsert(external_id="c2", name="Борис")
    async with database.session() as s:
        page = await Customers(s).search(q="аННа")
    assert [c.name for c in page.items] == ["Анна Иванова"]

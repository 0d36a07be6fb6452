"""Identities: first contact creates a customer once, however many arrive at once."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from storage.customers import Customers
from storage.db import Database
from storage.identities import Identities
from storage.models import Customer, Identity


async def count(database: Database, model: type) -> int:
    async with database.session() as s:
        return int(await s.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


async def test_first_contact_creates_identity_and_customer_once(database: Database) -> None:
    async with database.session() as s:
        identity, customer, created = await Identities(s).resolve(
            channel="telegram", account="bot1", address="1001", display_name="Ivan", username="ivan"
        )
    assert created
    assert customer.name == "Ivan"
    async with database.session() as s:
        again, same, created = await Identities(s).resolve(
            channel="telegram", account="bot1", address="1001", display_name="Ivan P."
        )
    assert not created
    assert (again.id, same.id) == (identity.id, customer.id)
    assert again.display_name == "Ivan P."
    assert again.last_seen_at is not None
    assert again.last_seen_at >= identity.last_seen_at


async def test_twenty_concurrent_first_contacts_make_one_identity(database: Database) -> None:
    async def resolve() -> tuple[int, int]:
        async with database.session() as s:
            identity, customer, _ = await Identities(s).resolve(
                channel="vk", account="club1", address="42", display_name="Peer"
            )
            assert identity.id is not None
            assert customer.id is not None
            return identity.id, customer.id

    results = await asyncio.gather(*(resolve() for _ in range(20)))
    assert len(set(results)) == 1
    assert await count(database, Identity) == 1
    assert await count(database, Customer) == 1


async def test_sms_number_becomes_the_new_customers_phone(database: Database) -> None:
    async with database.session() as s:
        _, customer, _ = await Identities(s).resolve(
            channel="sms", account="sender", address="+79991112233"
        )
    assert customer.phone == "+79991112233"


async def test_a_known_phone_is_not_attached_to_its_owner_without_proof(database: Database) -> None:
    async with database.session() as s:
        owner, _ = await Customers(s).upsert(email="owner@example.com", phone="+79991112233")
        _, stranger, created = await Identities(s).resolve(
            channel="sms", account="sender", address="+79991112233"
        )
        _, mail_stranger, _ = await Identities(s).resolve(
            channel="email", account="inbox", address="OWNER@example.com"
        )
    assert created
    assert stranger.id != owner.id
    assert stranger.phone is None
    assert mail_stranger.id not in {owner.id, stranger.id}
    assert mail_stranger.email is None


async def test_reachability_and_moving(database: Database) -> None:
    async with database.session() as s:
        repo = Identities(s)
        identity, _, _ = await repo.resolve(channel="telegram", account="b", address="5")
        other, _ = await Customers(s).upsert(external_id="crm-9")
        await repo.mark_unreachable(identity.id, "bot was blocked by the user")
        assert not (await repo.get(identity.id)).reachable
        await repo.mark_reachable(identity.id)
        assert (await repo.get(identity.id)).reachable
        await repo.move(identity.id, other.id)
        assert [i.id for i in await repo.for_customer(other.id)] == [identity.id]

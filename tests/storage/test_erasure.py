"""Erasure blanks what identifies a person; export shows what is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from storage.conversations import Conversations
from storage.customers import ConsentIn, Customers
from storage.db import Database
from storage.erasure import Erasure
from storage.events import Events
from storage.identities import Identities
from storage.messages import Messages, NewMessage
from storage.models import Delivery, LinkToken, Message


async def stored_customer(database: Database) -> int:
    async with database.session() as s:
        identity, customer, _ = await Identities(s).resolve(
            channel="sms", account="sender", address="+79991234567", display_name="Maria"
        )
        await Customers(s).upsert(
            phone="+79991234567",
            email="maria@example.com",
            external_id="crm-5",
            attributes={"birthday": "1990-01-01"},
            tags=["vip"],
            timezone="Asia/Omsk",
            consents=[ConsentIn("*", "marketing", True, "form")],
        )
        conversation = await Conversations(s).open_for(customer.id)
        message, _ = await Messages(s).append(
            NewMessage(
                conversation_id=conversation.id,
                customer_id=customer.id,
                channel="sms",
                direction="in",
                author="customer",
                text="my card is 1234",
                attachments=[{"url": "https://files/passport.jpg"}],
                external_id="sms-1",
            )
        )
        s.add(
            Delivery(
                message_id=message.id,
                customer_id=customer.id,
                channel="sms",
                address="+79991234567",
                payload={"text": "my card is 1234"},
            )
        )
        s.add(
            LinkToken(
                token_hash="h" * 64,
                customer_id=customer.id,
                purpose="link",
                expires_at=datetime.now(UTC) + timedelta(days=1),
            )
        )
        await Events(s).record(customer_id=customer.id, type="purchase", data={"sum": 990})
    assert customer.id is not None
    assert identity.id is not None
    return customer.id


async def test_export_returns_everything_stored_as_json(database: Database) -> None:
    customer_id = await stored_customer(database)
    async with database.session() as s:
        data = await Erasure(s).export(customer_id)
    json.dumps(data)  # serialisable as it is
    assert data["profile"]["phone"] == "+79991234567"
    assert data["profile"]["attributes"] == {"birthday": "1990-01-01"}
    assert data["tags"] == ["vip"]
    assert [i["address"] for i in data["identities"]] == ["+79991234567"]
    assert [(c["channel"], c["granted"]) for c in data["consents"]] == [("*", True)]
    assert len(data["conversations"]) == 1
    assert [m["text"] for m in data["messages"]] == ["my card is 1234"]
    assert [e["data"] for e in data["events"]] == [{"sum": 990}]


async def test_erase_blanks_personal_data_and_keeps_rows_for_stats(database: Database) -> None:
    customer_id = await stored_customer(database)
    async with database.session() as s:
        await Erasure(s).erase(customer_id)
    async with database.session() as s:
        customer = await Customers(s).get(customer_id)
        assert customer.erased_at is not None
        assert (customer.name, customer.phone, customer.email, customer.external_id) == (
            None,
            None,
            None,
            None,
        )
        assert customer.attributes == {}
        assert customer.timezone is None
        assert await Customers(s).tags(customer_id) == []
        assert await Customers(s).find(phone="+79991234567") is None
        [identity] = await Identities(s).for_customer(customer_id)
        assert identity.address == f"erased:{identity.id}"
        assert not identity.reachable
        [message] = (await s.scalars(sa.select(Message))).all()
        assert (message.text, message.attachments, message.channel, message.direction) == (
            "",
            [],
            "sms",
            "in",
        )
        [delivery] = (await s.scalars(sa.select(Delivery))).all()
        assert (delivery.address, delivery.payload) == ("", {})
        assert (await s.scalars(sa.select(LinkToken))).all() == []
        assert [e.data for e in await Events(s).recent(customer_id)] == [{}]
        data = await Erasure(s).export(customer_id)
    assert "1234" not in json.dumps(data)
    assert "+79991234567" not in json.dumps(data)


async def test_erase_reaches_profiles_merged_into_the_customer(database: Database) -> None:
    from storage.errors import Conflict
    from storage.merges import Merges
    from storage.models import Customer, Merge

    async with database.session() as s:
        survivor, _ = await Customers(s).upsert(email="keep@example.com", name="Keeper")
        absorbed, _ = await Customers(s).upsert(phone="+79161234567", name="Secret Name")
        assert survivor.id is not None
        assert absorbed.id is not None
        merge = await Merges(s).merge(survivor.id, absorbed.id)
    async with database.session() as s:
        await Erasure(s).erase(survivor.id)
    async with database.session() as s:
        old = await s.get(Customer, absorbed.id)
        assert old is not None
        assert old.name is None
        assert old.erased_at is not None
        record = await s.get(Merge, merge.id)
        assert record is not None
        assert "Secret Name" not in json.dumps(record.moved)
        assert "+79161234567" not in json.dumps(record.moved)
    with pytest.raises(Conflict, match="erased"):
        async with database.session() as s:
            await Merges(s).unmerge(merge.id)  # type: ignore[arg-type]

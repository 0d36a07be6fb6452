"""Merges: everything moves to the survivor; unmerge puts it all back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.conversations import Conversations
from storage.customers import ConsentIn, Customers
from storage.db import Database
from storage.errors import Conflict
from storage.events import Events
from storage.identities import Identities
from storage.merges import Merges
from storage.messages import Messages, NewMessage

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def customer_with_history(
    database: Database, channel: str, address: str, minute: int
) -> tuple[int, int, int]:
    async with database.session() as s:
        identity, customer, _ = await Identities(s).resolve(
            channel=channel, account="acc", address=address, display_name=f"{channel} person"
        )
        conversation = await Conversations(s).open_for(customer.id)
        await Messages(s).append(
            NewMessage(
                conversation_id=conversation.id,
                customer_id=customer.id,
                channel=channel,
                account="acc",
                direction="in",
                author="customer",
                text=f"hi from {channel}",
                external_id=f"{address}:1",
                sent_at=T0 + timedelta(minutes=minute),
            )
        )
        await Events(s).record(customer_id=customer.id, type=f"{channel}_event")
    return customer.id, identity.id, conversation.id


async def test_merge_moves_everything_and_unmerge_restores_it(database: Database) -> None:
    survivor_id, tg_identity, survivor_conv = await customer_with_history(
        database, "telegram", "1", 0
    )
    absorbed_id, sms_identity, absorbed_conv = await customer_with_history(
        database, "sms", "+79991234567", 1
    )
    async with database.session() as s:
        await Customers(s).upsert(
            phone="+79991234567",
            attributes={"city": "Omsk"},
            tags=["buyer"],
            consents=[ConsentIn("sms", "transactional", True)],
        )
        survivor = await Customers(s).get(survivor_id)
        survivor.attributes = {"city": "Tomsk"}
        merge = await Merges(s).merge(survivor_id, absorbed_id, actor="manager:7")

    async with database.session() as s:
        survivor = await Customers(s).get(survivor_id)
        assert (await Customers(s).get(absorbed_id)).id == survivor_id
        assert survivor.phone == "+79991234567"
        assert survivor.attributes == {"city": "Tomsk"}
        assert await Customers(s).tags(survivor_id) == ["buyer"]
        assert [(c.channel, c.purpose) for c in await Customers(s).consents(survivor_id)] == [
            ("sms", "transactional")
        ]
        identities = await Identities(s).for_customer(survivor_id)
        assert {i.id for i in identities} == {tg_identity, sms_identity}
        history = await Messages(s).history(survivor_id)
        assert [i.text for i in history.items] == ["hi from telegram", "hi from sms"]
        assert {i.conversation_id for i in history.items} == {survivor_conv}
        assert {e.type for e in await Events(s).recent(survivor_id)} == {
            "telegram_event",
            "sms_event",
        }
        assert (await Conversations(s).get(absorbed_conv)).mode == "merged"
        assert (await Conversations(s).open_for(absorbed_id)).id == survivor_conv
        # A message after the merge stays with the survivor when the merge is undone.
        await Messages(s).append(
            NewMessage(
                conversation_id=survivor_conv,
                customer_id=survivor_id,
                channel="sms",
                direction="in",
                author="customer",
                text="after the merge",
                external_id="+79991234567:2",
            )
        )

    async with database.session() as s:
        await Merges(s).unmerge(merge.id)

    async with database.session() as s:
        survivor = await Customers(s).get(survivor_id)
        absorbed = await Customers(s).get(absorbed_id)
        assert absorbed.id == absorbed_id
        assert survivor.phone is None
        assert absorbed.phone == "+79991234567"
        assert absorbed.attributes == {"city": "Omsk"}
        assert await Customers(s).tags(absorbed_id) == ["buyer"]
        assert await Customers(s).tags(survivor_id) == []
        assert await Customers(s).consents(survivor_id) == []
        assert len(await Customers(s).consents(absorbed_id)) == 1
        assert [i.id for i in await Identities(s).for_customer(absorbed_id)] == [sms_identity]
        assert [i.id for i in await Identities(s).for_customer(survivor_id)] == [tg_identity]
        assert [i.text for i in (await Messages(s).history(absorbed_id)).items] == ["hi from sms"]
        assert [i.text for i in (await Messages(s).history(survivor_id)).items] == [
            "hi from telegram",
            "after the merge",
        ]
        assert [e.type for e in await Events(s).recent(absorbed_id)] == ["sms_event"]
        conversation = await Conversations(s).get(absorbed_conv)
        assert (conversation.mode, conversation.merged_into_id) == ("bot", None)
        assert conversation.last_message_at == T0 + timedelta(minutes=1)
        with pytest.raises(Conflict):
            await Merges(s).unmerge(merge.id)


async def test_withdrawn_consent_wins_in_a_merge(database: Database) -> None:
    async with database.session() as s:
        repo = Customers(s)
        granted, _ = await repo.upsert(
            external_id="crm-1",
            consents=[
                ConsentIn("*", "marketing", True),
                ConsentIn("telegram", "marketing", True),
                ConsentIn("email", "marketing", True),
            ],
        )
        withdrawn, _ = await repo.upsert(
            external_id="crm-2",
            consents=[
                ConsentIn("*", "marketing", False, "STOP"),
                ConsentIn("sms", "marketing", True),
            ],
        )
        await Merges(s).merge(granted.id, withdrawn.id)
        consents = await repo.consents(granted.id)
    assert consents
    assert not any(c.granted for c in consents if c.purpose == "marketing")


async def test_refused_merges(database: Database) -> None:
    async with database.session() as s:
        a, _ = await Customers(s).upsert(external_id="a")
        b, _ = await Customers(s).upsert(external_id="b")
        c, _ = await Customers(s).upsert(external_id="c")
        with pytest.raises(Conflict):
            await Merges(s).merge(a.id, a.id)
        await Merges(s).merge(a.id, b.id)
        with pytest.raises(Conflict):
            await Merges(s).merge(c.id, b.id)
        with pytest.raises(Conflict):
            await Merges(s).merge(b.id, c.id)

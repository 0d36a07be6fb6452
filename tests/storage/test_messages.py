"""Messages: stored once per platform id; history oldest first across channels."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from storage.conversations import Conversations
from storage.db import Database
from storage.identities import Identities
from storage.messages import Messages, NewMessage
from storage.models import Conversation, Delivery, Message

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def first_contact(database: Database) -> tuple[int, int]:
    async with database.session() as s:
        _, customer, _ = await Identities(s).resolve(
            channel="telegram", account="bot1", address="100", display_name="Ann"
        )
        conversation = await Conversations(s).open_for(customer.id)
    assert customer.id is not None
    assert conversation.id is not None
    return customer.id, conversation.id


def inbound(
    conversation_id: int, customer_id: int, n: int, channel: str = "telegram"
) -> NewMessage:
    message = outbound(conversation_id, customer_id, n, channel, f"hello {n}")
    return replace(
        message, account="bot1", direction="in", author="customer", external_id=f"100:{n}"
    )


def outbound(
    conversation_id: int, customer_id: int, minute: int, channel: str, text: str
) -> NewMessage:
    return NewMessage(
        conversation_id=conversation_id,
        customer_id=customer_id,
        channel=channel,
        direction="out",
        author="bot",
        text=text,
        sent_at=T0 + timedelta(minutes=minute),
    )


async def test_fifty_concurrent_appends_of_one_message_store_one_row(database: Database) -> None:
    customer_id, conversation_id = await first_contact(database)

    async def append() -> tuple[int, bool]:
        async with database.session() as s:
            message, created = await Messages(s).append(inbound(conversation_id, customer_id, 1))
            assert message.id is not None
            return message.id, created

    results = await asyncio.gather(*(append() for _ in range(50)))
    assert len({message_id for message_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    async with database.session() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(Message)) == 1
        conversation = await Conversations(s).get(conversation_id)
    assert conversation.last_message_at == T0 + timedelta(minutes=1)
    assert conversation.last_inbound_channel == "telegram"


async def test_two_first_messages_at_once_open_one_conversation(database: Database) -> None:
    async with database.session() as s:
        _, customer, _ = await Identities(s).resolve(channel="vk", account="c", address="9")

    async def open_() -> int:
        async with database.session() as s:
            conversation = await Conversations(s).open_for(customer.id)
            assert conversation.id is not None
            return conversation.id

    assert len(set(await asyncio.gather(*(open_() for _ in range(10))))) == 1
    async with database.session() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(Conversation)) == 1


async def test_append_many_is_idempotent_and_keeps_input_order(database: Database) -> None:
    customer_id, conversation_id = await first_contact(database)
    batch = [inbound(conversation_id, customer_id, n) for n in range(5)]
    async with database.session() as s:
        await Messages(s).append(batch[2])
    async with database.session() as s:
        results = await Messages(s).append_many([*batch, batch[0]])
    assert [m.text for m, _ in results] == [f"hello {n}" for n in (0, 1, 2, 3, 4, 0)]
    assert [created for _, created in results] == [True, True, False, True, True, False]
    assert results[0][0].id == results[5][0].id
    async with database.session() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(Message)) == 5


async def test_history_is_oldest_first_across_channels_with_delivery_status(
    database: Database,
) -> None:
    customer_id, conversation_id = await first_contact(database)
    async with database.session() as s:
        repo = Messages(s)
        await repo.append(inbound(conversation_id, customer_id, 0))
        reply, _ = await repo.append(
            outbound(conversation_id, customer_id, 1, "sms", "we answer by SMS")
        )
        for status in ("sent", "delivered"):
            s.add(
                Delivery(
                    message_id=reply.id,
                    customer_id=customer_id,
                    channel="sms",
                    address="+79991234567",
                    status=status,
                )
            )
        await repo.append(inbound(conversation_id, customer_id, 2, channel="vk"))
        await repo.append(inbound(conversation_id, customer_id, 3))
    async with database.session() as s:
        repo = Messages(s)
        first = await repo.history(customer_id, limit=2)
        second = await repo.history(customer_id, limit=2, cursor=first.next_cursor)
        newest = await repo.last(conversation_id, 2)
        conversation = await Conversations(s).get(conversation_id)
    assert [(i.channel, i.direction, i.text) for i in first.items] == [
        ("telegram", "in", "hello 0"),
        ("sms", "out", "we answer by SMS"),
    ]
    assert [i.delivery_status for i in first.items] == [None, "delivered"]
    assert [(i.channel, i.text) for i in second.items] == [
        ("vk", "hello 2"),
        ("telegram", "hello 3"),
    ]
    assert second.next_cursor is None
    assert [i.text for i in newest] == ["hello 2", "hello 3"]
    assert conversation.last_channel == "telegram"
    assert conversation.last_message_at == T0 + timedelta(minutes=3)


async def test_history_refuses_a_forged_cursor(database: Database) -> None:
    customer_id, _ = await first_contact(database)
    async with database.session() as s:
        with pytest.raises(ValueError, match="invalid cursor"):
            await Messages(s).history(customer_id, cursor="eyJ4IjoxfQ")


async def test_each_new_message_moves_its_conversation_forward_never_back(
    database: Database,
) -> None:
    customer_id, conversation_id = await first_contact(database)
    async with database.session() as s:
        before = await Conversations(s).get(conversation_id)

    async def append(new: NewMessage) -> Conversation:
        async with database.session() as s:
            await Messages(s).append(new)
        async with database.session() as s:
            return await Conversations(s).get(conversation_id)

    after_in = await append(inbound(conversation_id, customer_id, 2))
    after_out = await append(outbound(conversation_id, customer_id, 3, "vk", "answered on VK"))
    after_late = await append(inbound(conversation_id, customer_id, 1, channel="sms"))
    after_resend = await append(inbound(conversation_id, customer_id, 2))

    def last(c: Conversation) -> tuple[datetime | None, str | None, str | None]:
        return (c.last_message_at, c.last_channel, c.last_inbound_channel)

    assert last(after_in) == (T0 + timedelta(minutes=2), "telegram", "telegram")
    assert last(after_out) == (T0 + timedelta(minutes=3), "vk", "telegram")
    # Late: the last message stays; the customer still last wrote on SMS.
    assert last(after_late) == (T0 + timedelta(minutes=3), "vk", "sms")
    assert after_resend.updated_at == after_late.updated_at  # a resend touches nothing
    assert last(after_resend) == last(after_late)
    assert (after_resend.customer_id, after_resend.created_at) == (
        before.customer_id,
        before.created_at,
    )

"""Conversations: the desk's compare-and-sets, topic lookup, listing, who owns it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from storage.conversations import Conversations, person_owns
from storage.customers import Customers
from storage.db import Database
from storage.models import ConversationMode

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


async def _conversation(db: Database, name: str) -> int:
    async with db.session() as s:
        customer, _ = await Customers(s).upsert(external_id=name, name=name)
        assert customer.id is not None
        conversation = await Conversations(s).open_for(customer.id)
        assert conversation.id is not None
        return conversation.id


async def test_the_desk_opens_a_conversation_once_whoever_asks(database: Database) -> None:
    conversation_id = await _conversation(database, "anna")

    async def attempt() -> bool:
        async with database.session() as s:
            return await Conversations(s).open_desk(conversation_id, T0)

    results = await asyncio.gather(*(attempt() for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    async with database.session() as s:
        assert (await Conversations(s).get(conversation_id)).desk_opened_at == T0


async def test_a_topic_is_recorded_only_over_the_one_expected(database: Database) -> None:
    conversation_id = await _conversation(database, "anna")
    async with database.session() as s:
        conversations = Conversations(s)
        assert await conversations.swap_topic(conversation_id, None, 11)
        assert not await conversations.swap_topic(conversation_id, None, 12)  # one topic only
        assert (await conversations.by_topic(11)) is not None
        assert await conversations.by_topic(12) is None
        # A deleted topic is forgotten only if it still is the one recorded.
        assert not await conversations.swap_topic(conversation_id, 99, None)
        assert await conversations.swap_topic(conversation_id, 11, None)
        assert await conversations.swap_topic(conversation_id, None, 13)
        found = await conversations.by_topic(13)
    assert found is not None
    assert found.id == conversation_id


async def test_listing_by_status_and_assignee_newest_first(database: Database) -> None:
    ids = [await _conversation(database, name) for name in ("a", "b", "c")]
    async with database.session() as s:
        conversations = Conversations(s)
        waiting = await conversations.get(ids[0])
        await conversations.update(waiting, mode=ConversationMode.waiting, waiting_since=T0)
        closed = await conversations.get(ids[2])
        await conversations.update(closed, mode=ConversationMode.closed)
    async with database.session() as s:
        conversations = Conversations(s)
        assert [c.id for c in await conversations.listing(status="waiting")] == [ids[0]]
        assert [c.id for c in await conversations.listing(status="open")] == [ids[1], ids[0]]
        assert [c.id for c in await conversations.listing()] == ids[::-1]
        assert [c.id for c in await conversations.listing(limit=1, after=ids[2])] == [ids[1]]
        assert await conversations.listing(assignee_id=12345) == []
        with pytest.raises(ValueError, match="status must be one of"):
            await conversations.listing(status="sleeping")


async def test_unanswered_waiting_conversations_come_once_per_waiting_spell(
    database: Database,
) -> None:
    conversation_id = await _conversation(database, "anna")
    async with database.session() as s:
        conversations = Conversations(s)
        row = await conversations.get(conversation_id)
        await conversations.update(row, mode=ConversationMode.waiting, waiting_since=T0)
    async with database.session() as s:
        conversations = Conversations(s)
        assert await conversations.unanswered(T0 - timedelta(minutes=1)) == []
        due = await conversations.unanswered(T0 + timedelta(minutes=10))
        assert [c.id for c in due] == [conversation_id]
        await conversations.update(due[0], reminded_at=T0 + timedelta(minutes=10))
    async with database.session() as s:
        conversations = Conversations(s)
        assert await conversations.unanswered(T0 + timedelta(hours=1)) == []
        row = await conversations.get(conversation_id)
        # Waiting again later (released, asked again): a new spell, a new reminder.
        await conversations.update(row, waiting_since=T0 + timedelta(hours=2))
        assert len(await conversations.unanswered(T0 + timedelta(hours=3))) == 1


def test_only_a_manager_owning_it_silences_bots_and_marketing() -> None:
    assert person_owns(ConversationMode.manager)
    assert not person_owns(ConversationMode.waiting)
    assert not person_owns(ConversationMode.bot)
    assert not person_owns(ConversationMode.closed)

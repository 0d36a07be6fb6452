"""The router stores what arrives and the bot's reply with it, on every backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bots.dialog import Dialog, Reply, Turn, load_script
from bots.dialog.responder import BotResponder
from gateway.app import DEFAULT_SCRIPT
from gateway.broker.memory import MemoryBroker
from gateway.channels import Inbound, UpdateKey
from gateway.clock import FakeClock
from gateway.once import Once
from gateway.outbox import Enqueued, Outbox
from gateway.router import PRUNE_EVERY, SEEN_WINDOW, Arrival, Router
from storage.db import Database
from storage.models import Consent, Delivery, Message, SeenUpdate


def _router(db: Database, dialog: Dialog) -> tuple[Router, Outbox]:
    outbox = Outbox(db, MemoryBroker())
    router = Router(db, clock=FakeClock(), outbox=outbox)
    router.answer_with(bot=BotResponder(db, outbox, dialog, clock=FakeClock()))
    return router, outbox


def _hello(text: str = "Привет", external_id: str | None = "77:1") -> Inbound:
    return Inbound(
        channel="telegram", account="1", address="77", text=text, external_id=external_id
    )


async def _rows(db: Database, model: Any) -> list[Any]:
    async with db.session() as session:
        return list(await session.scalars(sa.select(model).order_by(col(model.id))))


async def test_the_message_and_the_bots_reply_are_stored_together(database: Database) -> None:
    router, _ = _router(database, Dialog(load_script(DEFAULT_SCRIPT)))
    await router.inbound(_hello())
    messages = await _rows(database, Message)
    assert (messages[0].direction, messages[0].author) == ("in", "customer")
    replies = [m for m in messages if m.direction == "out"]
    assert replies
    assert all(m.author == "bot" for m in replies)
    deliveries = await _rows(database, Delivery)
    assert {d.message_id for d in deliveries} == {m.id for m in replies}
    assert all(d.status == "queued" for d in deliveries)  # nothing sent: no outbox running


async def test_a_duplicate_is_neither_stored_nor_answered_twice(database: Database) -> None:
    router, _ = _router(database, Dialog(load_script(DEFAULT_SCRIPT)))
    await router.inbound(_hello())
    before = len(await _rows(database, Delivery))
    await router.inbound(_hello())
    assert len(await _rows(database, Message)) == 1 + before
    assert len(await _rows(database, Delivery)) == before


UPDATE = UpdateKey("telegram:1", "501")


async def test_a_resent_update_writes_and_answers_nothing(database: Database) -> None:
    router, _ = _router(database, Dialog(load_script(DEFAULT_SCRIPT)))
    # No external id to fall back on: only the update key tells the resend apart.
    message = replace(_hello(external_id=None), update=UPDATE)
    await router.inbound(message)
    messages, deliveries = await _rows(database, Message), await _rows(database, Delivery)
    await router.inbound(message)
    assert await _rows(database, Message) == messages
    assert await _rows(database, Delivery) == deliveries
    assert await router.seen(UPDATE.source, UPDATE.key) is True


async def test_a_failed_handling_records_no_key_and_the_resend_is_stored(
    database: Database,
) -> None:
    router, _ = _router(database, Dialog(load_script(DEFAULT_SCRIPT)))
    crashes = [RuntimeError("the process died here")]

    async def crash_once(session: AsyncSession, arrival: Arrival) -> Sequence[Enqueued]:
        if crashes:
            raise crashes.pop()
        return []

    router.on_stored(crash_once)
    message = replace(_hello(), update=UPDATE)
    with pytest.raises(RuntimeError, match="the process died"):
        await router.inbound(message)
    assert await _rows_by(database, SeenUpdate) == []  # the key went down with the message
    assert await _rows(database, Message) == []
    await router.inbound(message)
    assert [m.text for m in await _rows(database, Message) if m.direction == "in"] == ["Привет"]
    assert await router.seen(UPDATE.source, UPDATE.key) is True


async def test_a_message_update_is_checked_and_recorded_by_one_statement(
    database: Database,
) -> None:
    router, _ = _router(database, Dialog(load_script(DEFAULT_SCRIPT)))
    statements: list[str] = []

    def on_seen_update(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "seen_update" in statement:
            statements.append(statement.split()[0].upper())

    async def hand_over(update: UpdateKey) -> None:
        await router.inbound(replace(_hello(), update=update))

    event.listen(database.engine.sync_engine, "before_cursor_execute", on_seen_update)
    try:
        assert await Once(router, UPDATE.source).run_recording(UPDATE.key, hand_over) is True
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", on_seen_update)
    assert statements == ["INSERT"]  # no read before it, no transaction of its own after


async def _keys(db: Database) -> set[str]:
    async with db.session() as session:
        return set(await session.scalars(sa.select(col(SeenUpdate.key))))


async def _remember_long_ago(db: Database, key: str, now: datetime) -> None:
    async with db.session() as session:
        session.add(SeenUpdate(source="t", key=key, seen_at=now - SEEN_WINDOW - timedelta(hours=1)))


async def test_keys_past_the_window_are_dropped_now_and_then(database: Database) -> None:
    clock = FakeClock()
    router = Router(database, clock=clock)
    await _remember_long_ago(database, "last week", clock.now())
    assert await router.first_seen("t", "a") is True
    await clock.advance(PRUNE_EVERY.total_seconds() - 1)
    assert await router.first_seen("t", "b") is True
    assert await _keys(database) == {"last week", "a", "b"}  # not every insert deletes
    await clock.advance(1)
    assert await router.first_seen("t", "c") is True
    assert await _keys(database) == {"a", "b", "c"}
    await _remember_long_ago(database, "last week", clock.now())
    await clock.advance(PRUNE_EVERY.total_seconds())
    await router.inbound(replace(_hello(), update=UpdateKey("t", "d")))
    assert await _keys(database) == {"a", "b", "c", "d"}  # a message's key prunes too


class BrokenDialog(Dialog):
    def handle(
        self,
        state: Mapping[str, Any],
        turn: Turn,
        *,
        now: datetime,
        context: Mapping[str, str] | None = None,
    ) -> Reply:
        raise RuntimeError("a bug in the script engine")


async def test_a_failing_dialog_never_loses_the_customers_message(
    sqlite_database: Database,
) -> None:
    router, _ = _router(sqlite_database, BrokenDialog(load_script(DEFAULT_SCRIPT)))
    await router.inbound(_hello("есть кто?"))
    messages = await _rows(sqlite_database, Message)
    assert [(m.text, m.direction) for m in messages] == [("есть кто?", "in")]
    assert await _rows(sqlite_database, Delivery) == []


async def test_sms_stop_withdraws_marketing_consent_and_is_confirmed(database: Database) -> None:
    router, _ = _router(database, Dialog(load_script(DEFAULT_SCRIPT)))
    sms = Inbound(
        channel="sms",
        account="+70000000000",
        address="+79161234567",
        text="СТОП",
        external_id="sms-1",
        meta={"sms_keyword": "stop"},
    )
    await router.inbound(sms)
    consents = await _rows_by(database, Consent)
    assert [(c.channel, c.purpose, c.granted) for c in consents] == [("sms", "marketing", False)]
    replies = [m for m in await _rows(database, Message) if m.direction == "out"]
    assert [m.author for m in replies] == ["system"]  # a confirmation, not the bot's menu
    assert "START" in replies[0].text

    start = Inbound(
        channel="sms",
        account="+70000000000",
        address="+79161234567",
        text="START",
        external_id="sms-2",
        meta={"sms_keyword": "start"},
    )
    await router.inbound(start)
    consents = await _rows_by(database, Consent)
    assert [(c.channel, c.purpose, c.granted) for c in consents] == [("sms", "marketing", True)]


async def _rows_by(db: Database, model: Any) -> list[Any]:
    async with db.session() as session:
        return list(await session.scalars(sa.select(model)))

"""The engine: runs start once per trigger, wait, cascade, stop, convert and resume."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import col

from flows.engine import split_variant
from flows.facts import load_facts, open_conversations
from flows.spec import Split
from storage.conversations import Conversations
from storage.db import Database
from storage.events import Events
from storage.models import Conversation, CustomerTag
from tests.flows.engine_world import CART_FLOW, HOUR, cart_left_an_hour_ago, make_engine, make_world


async def test_abandoned_cart_walks_the_cascade_until_a_click(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org", telegram="1001", phone="+79990000001")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    assert await world.deliveries(ann) == []  # the flow waits an hour first

    await world.advance(HOUR)
    first = await world.deliveries(ann)
    assert [d.channel for d in first] == ["email"]
    assert first[0].payload["subject"] == "Вы забыли корзину"
    assert first[0].payload["meta"]["flow"] == "abandoned_cart"
    assert first[0].purpose == "marketing"

    await world.signal(first[0], "read")  # an open is a weak signal: the chain goes on
    await world.advance(4 * HOUR)
    second = await world.deliveries(ann)
    assert [d.channel for d in second] == ["email", "telegram"]
    assert "c-1" in second[1].payload["html"]

    await world.signal(second[1], "clicked")
    await world.advance(5 * HOUR)
    assert [d.channel for d in await world.deliveries(ann)] == ["email", "telegram"]
    outcomes = [(s.step, s.channel, s.outcome) for s in await world.steps(ann)]
    assert ("nudge", "email", "expired") in outcomes
    assert outcomes[-1] == ("nudge", "telegram", "engaged")


async def test_the_same_trigger_twice_runs_once(database: Database, tmp_path: Path) -> None:
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
    assert len(await world.runs(ann)) == 1
    assert len(await world.deliveries(ann)) == 1
    await world.event(ann, "cart_abandoned", {"cart_id": "c-2"})  # another cart: another run
    assert len(await world.runs(ann)) == 2


async def test_cancel_on_ends_the_chain(database: Database, tmp_path: Path) -> None:
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR / 2)
    await world.event(ann, "order_placed", {"order": 7})
    await world.advance(10 * HOUR)
    assert await world.deliveries(ann) == []
    [run] = await world.runs(ann)
    assert run.status == "cancelled"
    assert run.end_reason is not None
    assert "order_placed" in run.end_reason


async def test_a_purchase_is_credited_to_the_message_engaged_with(
    database: Database, tmp_path: Path
) -> None:
    world, ann = await cart_left_an_hour_ago(
        database, tmp_path, email="ann@example.org", telegram="1001", phone="+79990000001"
    )
    await world.advance(4 * HOUR)
    _email, telegram = await world.deliveries(ann)
    await world.signal(telegram, "read")
    await world.advance(HOUR)
    await world.event(ann, "purchase", {"amount": "1990.50", "currency": "rub"})
    [conversion] = await world.conversions()
    assert (conversion.step, conversion.channel, conversion.delivery_id) == (
        "nudge",
        "telegram",
        telegram.id,
    )
    assert str(conversion.amount) == "1990.5000"
    assert conversion.currency == "RUB"
    [run] = await world.runs(ann)
    assert run.status == "converted"
    await world.event(ann, "purchase", {"amount": 5})  # one conversion per run
    assert len(await world.conversions()) == 1


async def test_a_purchase_without_engagement_goes_to_the_last_message_sent(
    database: Database, tmp_path: Path
) -> None:
    world, ann = await cart_left_an_hour_ago(
        database, tmp_path, email="ann@example.org", telegram="1001"
    )
    [email] = await world.deliveries(ann)
    await world.signal(email, "clicked", machine=True)  # a scanner's click counts for nothing
    await world.advance(4 * HOUR)
    await world.event(ann, "purchase", {})
    [conversion] = await world.conversions()
    assert conversion.channel == "telegram"
    assert conversion.amount is None


async def test_a_restart_in_the_middle_of_a_wait_resumes_where_it_was(
    database: Database, tmp_path: Path
) -> None:
    world, ann = await cart_left_an_hour_ago(
        database, tmp_path, email="ann@example.org", telegram="1001"
    )
    assert len(await world.deliveries(ann)) == 1
    # The process dies mid-wait: a new engine on the same store and the same folder.
    await world.clock.advance(2 * HOUR)
    reborn = make_engine(database, world.folder, world.clock, world.outbox)
    await reborn.tick()
    assert len(await world.deliveries(ann)) == 1  # not yet: 2h of the 4h passed
    await world.clock.advance(2 * HOUR)
    await reborn.tick()
    await reborn.tick()
    assert [d.channel for d in await world.deliveries(ann)] == ["email", "telegram"]


async def test_an_edited_flow_does_not_reach_runs_in_flight(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org", telegram="1001")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    world.folder.put(CART_FLOW.replace("channels: [email, telegram, sms]", "channels: [sms]"))
    await world.advance(HOUR)
    [old] = await world.deliveries(ann)
    assert old.channel == "email"  # the version the run started with
    bob = await world.customer("Борис", phone="+79990000002")
    await world.event(bob, "cart_abandoned", {"cart_id": "c-9"})
    await world.advance(HOUR)
    [new] = await world.deliveries(bob)
    assert new.channel == "sms"
    versions = {r.version for r in await world.runs()}
    assert len(versions) == 2


def test_split_assignment_is_sticky_and_follows_the_weights() -> None:
    split = Split(1, "subject", {"a": 50, "b": 50}, holdout=10)
    picks = [split_variant("promo", customer, split) for customer in range(4000)]
    assert picks == [split_variant("promo", customer, split) for customer in range(4000)]
    held = picks.count(None) / len(picks)
    assert 0.08 < held < 0.12
    assert 0.4 < picks.count("a") / len(picks) < 0.5


REMINDER_FLOW = """\
name: order_reminder
purpose: transactional
trigger: {event: order_booked}
steps:
  - wait: {until: event.data.starts_at, before: 24h}
  - send: {name: day_before, template: offer, channels: [telegram]}
  - wait: {until: event.data.starts_at, before: 2h}
  - send: {name: soon, template: offer, channels: [telegram]}
"""
MORNING_FLOW = """\
name: morning
trigger: {event: signed_up}
steps:
  - wait: {until_local: "10:00"}
  - if:
      when: "tag = 'vip'"
      then:
        - send: {name: vip_hello, template: offer, channels: [telegram]}
      else:
        - send: {name: hello, template: offer, channels: [telegram]}
  - exit
  - send: {name: never, template: offer, channels: [telegram]}
"""


async def test_waits_until_a_time_from_the_event_minus_an_offset(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path, flows={"r": REMINDER_FLOW})
    ann = await world.customer(telegram="1001", consent=())
    starts = world.clock.now() + timedelta(hours=10)  # booked late: 24h before has passed
    await world.event(ann, "order_booked", {"starts_at": starts.isoformat()})
    await world.event(ann, "order_booked", {"starts_at": "tomorrow"})
    by_run = {r.id: r for r in await world.runs(ann)}
    steps = await world.steps(ann)
    assert [(s.step, s.outcome) for s in steps if by_run[s.run_id].status != "failed"] == [
        ("wait@0", "expired"),
        ("day_before", "sent"),
        ("wait@0", "waiting"),
    ]
    failed = [r for r in by_run.values() if r.status == "failed"]
    assert failed[0].end_reason == "event.data.starts_at = 'tomorrow' is not an ISO time"
    await world.advance(8 * HOUR - 60)
    assert len(await world.deliveries(ann)) == 1
    await world.advance(60)
    assert [d.payload["meta"]["step"] for d in await world.deliveries(ann)] == [
        "day_before",
        "soon",
    ]


async def test_a_local_time_wait_and_an_if_on_tags_and_exit(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path, flows={"m": MORNING_FLOW})
    vip = await world.customer("Вера", telegram="1001", timezone="Asia/Vladivostok")
    plain = await world.customer("Пётр", telegram="1002", timezone="Europe/Moscow")
    async with database.session() as session:
        session.add(CustomerTag(customer_id=vip, tag="vip"))
    await world.event(vip, "signed_up")
    await world.event(plain, "signed_up")
    # 12:00 UTC: 22:00 in Vladivostok, 15:00 in Moscow; 10:00 comes at 00:00 / 07:00 UTC.
    await world.advance(12 * HOUR)
    assert [d.payload["meta"]["step"] for d in await world.deliveries(vip)] == ["vip_hello"]
    assert await world.deliveries(plain) == []
    await world.advance(7 * HOUR)
    assert [d.payload["meta"]["step"] for d in await world.deliveries(plain)] == ["hello"]
    runs = await world.runs()
    assert {r.status for r in runs} == {"exited"}


async def test_an_event_whose_call_was_lost_is_caught_up_from_the_cursor(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org")
    async with database.session() as session:
        await Events(session).record(
            customer_id=ann, type="cart_abandoned", data={"cart_id": "old"}
        )
    await world.engine.start()  # history before the first start is not replayed
    await world.engine.aclose()
    async with database.session() as session:
        # Stored, then the process died before on_event was called.
        await Events(session).record(
            customer_id=ann, type="cart_abandoned", data={"cart_id": "lost"}
        )
    assert await world.runs(ann) == []
    assert await world.engine.catch_up() == 1
    assert await world.engine.catch_up() == 0
    [run] = await world.runs(ann)
    assert run.trigger_key == "lost"


async def test_two_engines_on_one_store_send_each_message_once(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path)
    people = [
        await world.customer(f"c{i}", email=f"c{i}@example.org", telegram=str(4000 + i))
        for i in range(30)
    ]
    for person in people:
        await world.event(person, "cart_abandoned", {"cart_id": f"cart-{person}"})
    other = make_engine(database, world.folder, world.clock, world.outbox)
    await world.clock.advance(HOUR)
    counts = await asyncio.gather(
        world.engine.tick(batch=7),
        other.tick(batch=7),
        world.engine.tick(batch=7),
        other.tick(batch=7),
        world.engine.tick(batch=7),
    )
    assert sum(counts) == 30
    deliveries = await world.deliveries()
    assert len(deliveries) == 30
    assert len({d.customer_id for d in deliveries}) == 30


BROKEN_FLOW = """\
name: broken
trigger: {event: signed_up}
steps:
  - send: {name: hello, template: offer, channels: [telegram]}
  - if: {when: "tag = ", then: [{exit: true}]}
"""


async def test_a_step_that_keeps_raising_is_retried_then_fails_with_its_reason(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path, flows={"b": BROKEN_FLOW})
    ann = await world.customer(telegram="1001")
    await world.event(ann, "signed_up")
    [run] = await world.runs(ann)
    assert run.status == "active"  # the first failure is retried, not final
    assert await world.deliveries(ann) == []  # the send rolled back with the failed step
    for minutes in (2, 4, 8, 16):
        await world.advance(minutes * 60)
    [run] = await world.runs(ann)
    assert run.status == "failed"
    assert run.end_reason is not None
    assert run.end_reason.startswith("SegmentError")
    assert await world.deliveries(ann) == []


WELCOME_FLOW = """\
name: welcome
trigger: {event: signed_up}
steps:
  - wait: 1h
  - send: {name: hello, template: offer, channels: [telegram]}
"""
# The welcome flow on its own event, with an `if` after the send whose segment cannot parse.
POISONED_FLOW = (
    WELCOME_FLOW.replace("welcome", "poisoned").replace("signed_up", "vip_signed_up")
    + '  - if: {when: "tag = ", then: [{exit: true}]}\n'
)


async def test_a_run_that_raises_in_a_chunk_neither_loses_nor_doubles_the_others(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path, flows={"w": WELCOME_FLOW, "p": POISONED_FLOW})
    people = [await world.customer(f"c{i}", telegram=str(6000 + i)) for i in range(6)]
    for person in people[:3]:
        await world.event(person, "signed_up")
    # In the middle of the chunk, by id and priority alike.
    poisoned = await world.customer("Пётр", telegram="6100")
    await world.event(poisoned, "vip_signed_up")
    for person in people[3:]:
        await world.event(person, "signed_up")
    await world.clock.advance(HOUR)
    assert await world.engine.tick() == 7  # one chunk: every run was due at once
    for person in people:
        assert len(await world.deliveries(person)) == 1
        [run] = await world.runs(person)
        assert (run.status, run.claimed_by) == ("done", None)
        assert "_errors" not in run.context
    [run] = await world.runs(poisoned)
    assert (run.status, run.context["_errors"], run.claimed_by) == ("active", 1, None)
    assert await world.deliveries(poisoned) == []  # its send rolled back with its error
    for minutes in (2, 4, 8, 16):
        await world.advance(minutes * 60)
    [run] = await world.runs(poisoned)
    assert run.status == "failed"
    assert (run.end_reason or "").startswith("SegmentError")
    assert len(await world.deliveries()) == len(people)  # nobody got a second message


async def test_first_messages_of_a_chunk_open_one_conversation_each(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path, flows={"w": WELCOME_FLOW})
    talked = await world.customer("Анна", telegram="7001")
    async with database.session() as session:
        before = await Conversations(session).open_for(talked)
    new = [await world.customer(f"c{i}", telegram=str(7100 + i)) for i in range(4)]
    unreachable = await world.customer("Борис")  # no address on telegram
    for person in [talked, *new, unreachable]:
        await world.event(person, "signed_up")
    await world.advance(HOUR)
    conversations = await _conversations(database)
    assert conversations[talked] == [before.id]  # the one she had
    for person in new:
        [conversation] = conversations[person]
        assert [m.conversation_id for m in await world.messages(person)] == [conversation]
    assert unreachable not in conversations  # nothing to say, no empty conversation


async def test_bulk_conversations_wait_for_a_first_message_in_flight(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path)
    ann = await world.customer("Анна")
    people = [ann, *[await world.customer(f"c{i}") for i in range(3)]]

    async def bulk() -> None:
        async with database.session() as session:
            facts = await load_facts(session, people, since=world.clock.now())
            await open_conversations(session, facts, people)

    async with database.session() as session:
        # Her first message is making her conversation, not committed yet.
        mine = await Conversations(session).open_for(ann)
        racing = asyncio.create_task(bulk())
        await asyncio.sleep(0.3)  # the engine's chunk gets as far as it can meanwhile
    await racing
    conversations = await _conversations(database)
    assert conversations[ann] == [mine.id]
    assert all(len(conversations[p]) == 1 for p in people)


async def _conversations(database: Database) -> dict[int, list[int]]:
    """Each customer's conversation ids."""
    async with database.session() as session:
        rows = await session.execute(
            sa.select(col(Conversation.customer_id), col(Conversation.id)).order_by(
                col(Conversation.id)
            )
        )
        found: dict[int, list[int]] = {}
        for customer_id, conversation_id in rows:
            found.setdefault(customer_id, []).append(int(conversation_id or 0))
        return found

"""The engine: runs start once per trigger, wait, cascade, stop, convert and resume."""

from __future__ import annotations

from pathlib import Path

from flows.engine import split_variant
from flows.spec import Split
from storage.db import Database
from tests.flows.engine_world import CART_FLOW, HOUR, make_engine, make_world


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
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org", telegram="1001", phone="+79990000001")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
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
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org", telegram="1001")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
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
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org", telegram="1001")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
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

"""Policies on every flow send: consent, quiet hours, caps with priority, managers."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flows.caps import Caps
from flows.quiet_hours import QuietHours
from storage.conversations import Conversations
from storage.customers import ConsentIn, Customers
from storage.db import Database
from tests.flows.engine_world import CART_FLOW, HOUR, World, cart_left_an_hour_ago, make_world

PROMO_FLOW = """\
name: promo
priority: 10
trigger: {event: promo}
steps:
  - send: {name: offer, template: offer, channels: [telegram]}
"""
SKIPPING_PROMO = PROMO_FLOW.replace("name: promo\n", "name: promo\ncaps: {outcome: skip}\n")
CART_NOW = CART_FLOW.replace("  - wait: 1h\n", "").replace("[email, telegram, sms]", "[telegram]")
REMINDER_FLOW = """\
name: order_reminder
purpose: transactional
trigger: {event: order_booked}
steps:
  - send: {name: remind, template: offer, channels: [telegram]}
"""


def test_quiet_hours_cross_midnight_in_the_customers_zone() -> None:
    quiet = QuietHours.parse("21:00-09:00")
    vladivostok = ZoneInfo("Asia/Vladivostok")  # UTC+10
    at = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # 22:00 there, 15:00 in Moscow
    assert quiet.quiet_at(at, vladivostok)
    assert not quiet.quiet_at(at, ZoneInfo("Europe/Moscow"))
    assert quiet.next_allowed(at, vladivostok) == datetime(2026, 1, 5, 23, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="21:00-09:00"):
        QuietHours.parse("9pm to 9am")
    assert QuietHours.parse("23:30-07:00").end == time(7, 0)


async def test_quiet_hours_postpone_across_a_time_zone_boundary(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path, flows={"promo": PROMO_FLOW})
    moscow = await world.customer("Москва", telegram="1001", timezone="Europe/Moscow")
    far_east = await world.customer("Владивосток", telegram="1002", timezone="Asia/Vladivostok")
    await world.event(moscow, "promo")
    await world.event(far_east, "promo")
    assert len(await world.deliveries(moscow)) == 1  # 15:00 in Moscow
    assert await world.deliveries(far_east) == []  # 22:00 in Vladivostok
    [postponed] = await world.steps(far_east)
    assert postponed.outcome == "postponed"
    assert postponed.reason is not None
    assert "Asia/Vladivostok" in postponed.reason
    await world.advance(11 * HOUR - 60)  # 08:59 there
    assert await world.deliveries(far_east) == []
    await world.advance(60)
    assert len(await world.deliveries(far_east)) == 1  # never dropped
    assert [s.outcome for s in await world.steps(far_east)] == ["postponed", "sent"]


async def test_a_daily_cap_postpones_and_priority_decides_who_gets_the_slot(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(
        database,
        tmp_path,
        flows={"promo": PROMO_FLOW, "abandoned_cart": CART_NOW},
        caps=Caps(per_day=1, per_week=None),
        start=datetime(2026, 1, 5, 19, 0, tzinfo=UTC),  # 22:00 in Moscow: quiet
    )
    ann = await world.customer(telegram="1001", timezone="Europe/Moscow")
    await world.event(ann, "promo")  # the promo comes first ...
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    assert await world.deliveries(ann) == []
    await world.advance(11 * HOUR)  # 09:00 in Moscow: both are due again
    [sent] = await world.deliveries(ann)
    assert sent.payload["meta"]["flow"] == "abandoned_cart"  # ... the cart nudge wins
    promo_steps = [s for s in await world.steps(ann) if s.flow_name == "promo"]
    assert promo_steps[-1].outcome == "capped"
    assert promo_steps[-1].reason is not None
    assert "daily cap" in promo_steps[-1].reason
    await world.advance(24 * HOUR)  # the next day (after its quiet night) the promo goes
    assert len(await world.deliveries(ann)) == 2


async def promo_cart_promo(database: Database, tmp_path: Path, cart_flow: str) -> tuple[World, int]:
    """Two marketing messages a day; at 15:00 in Moscow Анна gets a promo, leaves a cart
    (the nudge, priority 80, waits its hour), and a second promo (priority 10) is due."""
    world = await make_world(
        database,
        tmp_path,
        flows={"promo": PROMO_FLOW, "abandoned_cart": cart_flow},
        caps=Caps(per_day=2, per_week=None),
    )
    ann = await world.customer(telegram="1001", timezone="Europe/Moscow")
    await world.event(ann, "promo")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.event(ann, "promo")
    return world, ann


async def sent_flows(world: World, customer_id: int) -> list[str]:
    return [d.payload["meta"]["flow"] for d in await world.deliveries(customer_id)]


async def test_a_promo_leaves_the_days_last_slot_to_a_cart_nudge_due_today(
    database: Database, tmp_path: Path
) -> None:
    world, ann = await promo_cart_promo(database, tmp_path, CART_FLOW)
    assert await sent_flows(world, ann) == ["promo"]
    kept = [s for s in await world.steps(ann) if s.flow_name == "promo"][-1]
    assert kept.outcome == "capped"
    assert "kept for a higher-priority flow" in (kept.reason or "")
    await world.advance(HOUR)  # 16:00: the nudge takes the day's last slot
    await world.advance(60)
    assert await sent_flows(world, ann) == ["promo", "abandoned_cart"]
    capped = [s for s in await world.steps(ann) if s.flow_name == "promo"][-1]
    assert "daily cap" in (capped.reason or "")
    await world.advance(24 * HOUR)  # tomorrow the second promo goes
    assert await sent_flows(world, ann) == ["promo", "abandoned_cart", "promo"]


async def test_a_nudge_due_after_the_day_does_not_hold_its_last_slot(
    database: Database, tmp_path: Path
) -> None:
    world, ann = await promo_cart_promo(
        database,
        tmp_path,
        CART_FLOW.replace("wait: 1h", "wait: 12h"),  # 03:00 tomorrow
    )
    assert await sent_flows(world, ann) == ["promo", "promo"]


async def test_a_cap_with_outcome_skip_drops_the_step_with_its_reason(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(
        database, tmp_path, flows={"promo": SKIPPING_PROMO}, caps=Caps(per_day=2, per_week=3)
    )
    ann = await world.customer(telegram="1001")
    for _ in range(3):
        await world.event(ann, "promo")
    assert len(await world.deliveries(ann)) == 2
    runs = await world.runs(ann)
    assert [r.status for r in runs] == ["done", "done", "done"]
    capped = [s for s in await world.steps(ann) if s.outcome == "capped"]
    assert len(capped) == 1
    assert capped[0].reason is not None
    assert "skip" in capped[0].reason
    await world.advance(24 * HOUR)
    await world.event(ann, "promo")  # a new day, but the weekly cap of 3 ...
    await world.event(ann, "promo")  # ... lets only one more through
    assert len(await world.deliveries(ann)) == 3


async def test_consent_withdrawn_mid_chain_skips_that_channel(
    database: Database, tmp_path: Path
) -> None:
    world, ann = await cart_left_an_hour_ago(
        database, tmp_path, email="ann@example.org", telegram="1001", phone="+79990000001"
    )
    await world.set_consent(ann, "telegram", False)  # e.g. /stop in the bot
    await world.advance(4 * HOUR)
    assert [d.channel for d in await world.deliveries(ann)] == ["email", "sms"]
    skipped = [s for s in await world.steps(ann) if s.outcome == "skipped"]
    assert [(s.channel, s.reason) for s in skipped] == [
        ("telegram", "the customer withdrew marketing consent for telegram")
    ]


async def test_no_consent_no_marketing_but_transactional_goes_until_stopped(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(
        database, tmp_path, flows={"promo": PROMO_FLOW, "order_reminder": REMINDER_FLOW}
    )
    ann = await world.customer(telegram="1001", consent=())
    await world.event(ann, "promo")
    await world.event(ann, "order_booked")
    [reminder] = await world.deliveries(ann)
    assert reminder.purpose == "transactional"
    async with database.session() as session:
        await Customers(session).set_consent(
            ann, ConsentIn("telegram", "transactional", False, source="telegram /stop")
        )
    await world.event(ann, "order_booked")
    assert len(await world.deliveries(ann)) == 1
    reasons = {s.reason for s in await world.steps(ann) if s.outcome == "skipped"}
    assert "no marketing consent for telegram" in reasons
    assert "the customer stopped all messages on telegram" in reasons


async def _promo_while_with_a_manager(database: Database, tmp_path: Path) -> tuple[World, int]:
    """Анна (Telegram) is talking to a manager when a promo event comes: the world and her id."""
    world = await make_world(database, tmp_path, flows={"promo": PROMO_FLOW})
    ann = await world.customer(telegram="1001")
    async with database.session() as session:
        await Conversations(session).open_for(ann)
    await world.set_mode(ann, "manager")
    await world.event(ann, "promo")
    return world, ann


async def test_a_managers_conversation_pauses_promos_until_released(
    database: Database, tmp_path: Path
) -> None:
    world, ann = await _promo_while_with_a_manager(database, tmp_path)
    assert await world.deliveries(ann) == []
    await world.advance(HOUR)  # re-checked, still the manager's: still nothing, told once
    assert await world.deliveries(ann) == []
    postponed = [s for s in await world.steps(ann) if s.outcome == "postponed"]
    assert len(postponed) == 1
    assert postponed[0].reason is not None
    assert "manager" in postponed[0].reason
    await world.set_mode(ann, "bot")
    await world.advance(15 * 60)
    assert len(await world.deliveries(ann)) == 1


async def test_a_send_postponed_for_over_a_week_expires_with_its_reason(
    database: Database, tmp_path: Path
) -> None:
    world, ann = await _promo_while_with_a_manager(database, tmp_path)
    await world.advance(8 * 24 * HOUR)
    assert await world.deliveries(ann) == []
    [run] = await world.runs(ann)
    assert run.status == "done"
    last = (await world.steps(ann))[-1]
    assert last.outcome == "expired"
    assert last.reason is not None
    assert "postponed for over 7 days" in last.reason


TWO_SENDS = """\
name: promo
priority: 10
trigger: {event: promo}
steps:
  - send: {name: first, template: offer, channels: [telegram]}
  - send: {name: second, template: offer, channels: [telegram]}
"""


async def test_the_cap_counts_a_send_made_earlier_in_the_same_advance(
    database: Database, tmp_path: Path
) -> None:
    """The engine reads caps for a chunk of runs at once; a run's own first send still counts."""
    world = await make_world(
        database, tmp_path, flows={"promo": TWO_SENDS}, caps=Caps(per_day=1, per_week=None)
    )
    ann = await world.customer(telegram="1001")
    await world.event(ann, "promo")
    assert len(await world.deliveries(ann)) == 1
    assert [(s.step, s.outcome) for s in await world.steps(ann)] == [
        ("first", "sent"),
        ("second", "capped"),
    ]

"""The cascade of a `send`: skips, failures, engagement on any earlier channel, modes."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlmodel import col

from flows.cascade import engagement
from storage.db import Database
from storage.models import Delivery, Identity
from tests.flows.engine_world import CART_FLOW, HOUR, make_world

EMAIL_SMS = CART_FLOW.replace("[email, telegram, sms]", "[email, sms]").replace(
    "      next_channel_after: 4h\n",
    "      next_channel_after: 4h\n      stop_on: {email: [opened, clicked]}\n",
)
FIRST_AVAILABLE = CART_FLOW.replace(
    "      next_channel_after: 4h\n", "      mode: first_available\n"
)
TELEGRAM_SMS = CART_FLOW.replace("[email, telegram, sms]", "[telegram, sms]")


async def _fail(world_db: Database, delivery: Delivery, error: str) -> None:
    async with world_db.session() as session:
        row = await session.get(Delivery, delivery.id)
        assert row is not None
        row.status = "failed"
        row.final = True
        row.error = error


async def test_channels_without_an_address_are_skipped_with_the_reason(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path)
    ann = await world.customer(phone="+79990000001")  # no email, no Telegram
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
    assert [d.channel for d in await world.deliveries(ann)] == ["sms"]
    assert [(s.channel, s.outcome, s.reason) for s in await world.steps(ann)][1:] == [
        ("email", "skipped", "no email address"),
        ("telegram", "skipped", "no telegram address"),
        ("sms", "sent", None),
    ]


async def test_an_unreachable_identity_is_skipped(database: Database, tmp_path: Path) -> None:
    world = await make_world(database, tmp_path, flows={"c": TELEGRAM_SMS})
    ann = await world.customer(telegram="1001", phone="+79990000001")
    async with database.session() as session:
        await session.execute(
            sa.update(Identity)
            .where(col(Identity.customer_id) == ann)
            .values(reachable=False, unreachable_reason="blocked")
        )
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
    assert [d.channel for d in await world.deliveries(ann)] == ["sms"]
    skipped = [s for s in await world.steps(ann) if s.outcome == "skipped"]
    assert [s.reason for s in skipped] == ["telegram unreachable: blocked"]


async def test_a_failed_delivery_moves_on_at_once(database: Database, tmp_path: Path) -> None:
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org", telegram="1001")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
    [email] = await world.deliveries(ann)
    await _fail(database, email, "email: 550 mailbox unavailable (bounced)")
    await world.advance(5 * 60)  # the next check, long before next_channel_after
    assert [d.channel for d in await world.deliveries(ann)] == ["email", "telegram"]
    failed = [s for s in await world.steps(ann) if s.outcome == "failed"]
    assert failed[0].channel == "email"
    assert failed[0].reason is not None
    assert "550" in failed[0].reason


async def test_a_late_engagement_with_an_earlier_channel_stops_the_next(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org", telegram="1001", phone="+79990000001")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
    await world.advance(4 * HOUR)  # email ignored: Telegram goes
    email, _telegram = await world.deliveries(ann)
    await world.signal(email, "clicked")  # ... and then the email is clicked after all
    await world.advance(4 * HOUR)
    assert [d.channel for d in await world.deliveries(ann)] == ["email", "telegram"]
    assert (await world.steps(ann))[-1].outcome == "engaged"
    assert (await world.steps(ann))[-1].channel == "email"


async def test_machine_opens_never_count_but_a_persons_open_can(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path, flows={"c": EMAIL_SMS})
    ann = await world.customer(email="ann@example.org", phone="+79990000001")
    bob = await world.customer("Борис", email="bob@example.org", phone="+79990000002")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.event(bob, "cart_abandoned", {"cart_id": "c-2"})
    await world.advance(HOUR)
    [ann_email] = await world.deliveries(ann)
    [bob_email] = await world.deliveries(bob)
    await world.signal(ann_email, "read", machine=True)  # Apple's proxy fetched the pixel
    await world.signal(bob_email, "read")  # Bob opened it; this flow stops on opens
    await world.advance(4 * HOUR)
    assert [d.channel for d in await world.deliveries(ann)] == ["email", "sms"]
    assert [d.channel for d in await world.deliveries(bob)] == ["email"]


async def test_first_available_sends_once(database: Database, tmp_path: Path) -> None:
    world = await make_world(database, tmp_path, flows={"c": FIRST_AVAILABLE})
    ann = await world.customer(telegram="1001", phone="+79990000001")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
    await world.advance(10 * HOUR)
    assert [d.channel for d in await world.deliveries(ann)] == ["telegram"]
    [run] = await world.runs(ann)
    assert run.status == "done"


async def test_a_flow_message_is_stored_with_its_run(database: Database, tmp_path: Path) -> None:
    world = await make_world(database, tmp_path, flows={"c": TELEGRAM_SMS})
    ann = await world.customer(telegram="1001")
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
    [run] = await world.runs(ann)
    [message] = [m for m in await world.messages(ann) if m.direction == "out"]
    assert message.author == "flow"
    assert message.author_ref == f"run:{run.id}"
    [delivery] = await world.deliveries(ann)
    assert delivery.payload["meta"] == {
        "flow": "abandoned_cart",
        "run_id": run.id,
        "step": "nudge",
        "variant": None,
    }
    assert delivery.payload["buttons"][0][0]["url"] == "https://shop.example/cart/c-1"
    assert engagement(delivery) == set()

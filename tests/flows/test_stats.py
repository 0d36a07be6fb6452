"""Flow statistics on a hand-built set of runs, steps, deliveries and conversions."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession

from flows.stats import Counts, Stats, wilson
from gateway.api import setup_api
from gateway.api.flows import FLOWS
from storage.db import Database
from storage.migrate import upgrade
from storage.models import (
    Consent,
    Conversation,
    Conversion,
    Customer,
    Delivery,
    Event,
    FlowRun,
    FlowStep,
    Message,
)
from tests.flows.engine_world import FlowFolder

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


async def _stored(
    s: AsyncSession, row: Customer | Conversation | FlowRun | Message | Delivery | Event
) -> int:
    """`row` added and flushed: its new id."""
    s.add(row)
    await s.flush()
    assert row.id is not None
    return row.id


def _first_nudge(
    run_id: int,
    outcome: str,
    channel: str | None,
    variant: str | None,
    reason: str | None = None,
    delivery_id: int | None = None,
    message_id: int | None = None,
) -> FlowStep:
    """The step row the cart flow's first_nudge leaves, at T0."""
    return FlowStep(
        run_id=run_id,
        flow_name="cart",
        step="first_nudge",
        channel=channel,
        variant=variant,
        outcome=outcome,
        reason=reason,
        delivery_id=delivery_id,
        message_id=message_id,
        at=T0,
    )


class Shop:
    """Builds runs the way the engine leaves them, row by row."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.n = 0

    async def run(
        self, *, variant: str | None, holdout: bool = False, status: str = "active"
    ) -> tuple[int, int, int]:
        """A customer with a conversation and a run; (customer, conversation, run) ids."""
        self.n += 1
        async with self.db.session() as s:
            customer_id = await _stored(
                s, Customer(name=f"c{self.n}", email=f"c{self.n}@example.com")
            )
            conversation_id = await _stored(s, Conversation(customer_id=customer_id))
            run_id = await _stored(
                s,
                FlowRun(
                    flow_name="cart",
                    version="v1",
                    customer_id=customer_id,
                    trigger_key=f"k{self.n}",
                    status=status,
                    variant=variant,
                    holdout=holdout,
                ),
            )
            return customer_id, conversation_id, run_id

    async def sent(
        self,
        ids: tuple[int, int, int],
        channel: str,
        variant: str | None,
        *,
        status: str = "sent",
        delivered: bool = False,
        read: bool = False,
        clicked: bool = False,
        replied: bool = False,
    ) -> int:
        customer_id, conversation_id, run_id = ids
        async with self.db.session() as s:
            message_id = await _stored(
                s,
                Message(
                    conversation_id=conversation_id,
                    customer_id=customer_id,
                    channel=channel,
                    direction="out",
                    author="flow",
                    author_ref=f"run:{run_id}",
                    text="nudge",
                ),
            )
            delivery_id = await _stored(
                s,
                Delivery(
                    message_id=message_id,
                    customer_id=customer_id,
                    channel=channel,
                    address="x",
                    purpose="marketing",
                    status=status,
                    sent_at=T0,
                    delivered_at=T0 + timedelta(minutes=1) if delivered else None,
                    read_at=T0 + timedelta(minutes=2) if read else None,
                    clicked_at=T0 + timedelta(minutes=3) if clicked else None,
                    replied_at=T0 + timedelta(minutes=4) if replied else None,
                    failed_at=T0 if status == "failed" else None,
                ),
            )
            s.add(
                _first_nudge(
                    run_id, "sent", channel, variant, delivery_id=delivery_id, message_id=message_id
                )
            )
            return delivery_id

    async def step(
        self,
        run_id: int,
        outcome: str,
        channel: str | None,
        variant: str | None,
        delivery_id: int | None = None,
    ) -> None:
        async with self.db.session() as s:
            s.add(_first_nudge(run_id, outcome, channel, variant, "test", delivery_id))

    async def converted(
        self,
        ids: tuple[int, int, int],
        amount: str,
        *,
        channel: str | None,
        variant: str | None,
        step: str | None = "first_nudge",
    ) -> None:
        customer_id, _, run_id = ids
        async with self.db.session() as s:
            event_id = await _stored(
                s, Event(customer_id=customer_id, type="purchase", data={"amount": amount})
            )
            s.add(
                Conversion(
                    run_id=run_id,
                    flow_name="cart",
                    step=step,
                    channel=channel,
                    variant=variant,
                    event_id=event_id,
                    amount=Decimal(amount),
                    currency="RUB",
                )
            )


async def build(db: Database) -> None:
    """Variant a: 2 runs, 1 conversion; b: 2 runs, 1; holdout: 3 runs, 1; one other flow."""
    shop = Shop(db)
    r1 = await shop.run(variant="a", status="converted")
    await shop.sent(r1, "email", "a", status="clicked", delivered=True, clicked=True)
    await shop.converted(r1, "100", channel="email", variant="a")

    r2 = await shop.run(variant="a", status="done")
    await shop.sent(r2, "email", "a", status="delivered", delivered=True)
    await shop.sent(r2, "telegram", "a", status="replied", read=True, replied=True)

    r3 = await shop.run(variant="b")
    await shop.step(r3[2], "skipped", "email", "b")  # no consent on email
    failed = await shop.sent(r3, "telegram", "b", status="failed")
    await shop.step(r3[2], "failed", "telegram", "b", delivery_id=failed)

    r4 = await shop.run(variant="b", status="converted")
    await shop.sent(r4, "email", "b", status="delivered", delivered=True)
    async with db.session() as s:  # unsubscribed after the message
        s.add(
            Consent(
                customer_id=r4[0],
                channel="email",
                purpose="marketing",
                granted=False,
                updated_at=T0 + timedelta(hours=1),
            )
        )
    await shop.converted(r4, "50.5", channel="email", variant="b")

    for converts in (True, False, False):
        held = await shop.run(variant="a", holdout=True, status="holdout")
        await shop.step(held[2], "held", None, None)
        if converts:
            await shop.converted(held, "10", channel=None, variant=None, step=None)
    async with db.session() as s:
        s.add(Customer(name="someone else"))


async def test_funnel_per_step_channel_and_variant(database: Database) -> None:
    await build(database)
    stats = await Stats(database).flow("cart")

    rows = {(r.step, r.channel, r.variant): r.counts for r in stats.steps}
    assert rows[("first_nudge", "email", "a")] == Counts(
        entered=2, sent=2, delivered=2, clicked=1, converted=1, revenue=Decimal("100")
    )
    assert rows[("first_nudge", "telegram", "a")] == Counts(
        entered=1, sent=1, delivered=1, read=1, replied=1
    )
    # r3 was skipped on email (entered, not sent); r4 unsubscribed after its email.
    assert rows[("first_nudge", "email", "b")] == Counts(
        entered=2,
        sent=1,
        delivered=1,
        converted=1,
        revenue=Decimal("50.5"),
        unsubscribed=1,
    )
    # The failed delivery has a 'sent' and a 'failed' row: one failure, not two.
    assert rows[("first_nudge", "telegram", "b")] == Counts(entered=1, sent=1, failed=1)
    # The holdout got nothing; its conversion is not the flow's doing.
    assert rows[("first_nudge", None, None)] == Counts(entered=3)
    assert len(rows) == 5

    assert stats.runs == {"converted": 2, "done": 1, "active": 1, "holdout": 3}
    assert stats.totals == Counts(
        entered=7,
        sent=5,
        delivered=4,
        read=1,
        clicked=1,
        replied=1,
        converted=2,
        revenue=Decimal("150.5"),
        unsubscribed=1,
        failed=1,
    )


async def test_ab_rates_intervals_and_lift_against_the_holdout(database: Database) -> None:
    await build(database)
    stats = await Stats(database).flow("cart")

    assert [(v.variant, v.runs, v.conversions) for v in stats.variants] == [
        ("a", 2, 1),
        ("b", 2, 1),
    ]
    a = stats.variants[0]
    assert a.rate == 0.5
    assert (round(a.low, 4), round(a.high, 4)) == (0.0945, 0.9055)
    assert stats.holdout is not None
    assert (stats.holdout.runs, stats.holdout.conversions) == (3, 1)
    assert a.lift == pytest.approx(0.5)  # 50% against 33.3%


async def test_a_flow_without_runs_has_empty_stats(database: Database) -> None:
    await build(database)
    stats = await Stats(database).flow("nothing_here")
    assert stats.runs == {}
    assert stats.steps == []
    assert stats.totals == Counts()
    assert stats.variants == []
    assert stats.holdout is None


async def test_summaries_count_runs_per_flow_and_status(database: Database) -> None:
    await build(database)
    summaries = await Stats(database).summaries()
    assert set(summaries) == {"cart"}
    assert summaries["cart"].active == 1
    assert summaries["cart"].total == 7


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        (1, 2, (0.0945, 0.9055)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (81, 263, (0.2553, 0.3662)),
    ],
)
def test_wilson_interval(successes: int, trials: int, expected: tuple[float, float]) -> None:
    low, high = wilson(successes, trials)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_refuses_impossible_counts() -> None:
    assert wilson(0, 0) == (0.0, 0.0)
    with pytest.raises(ValueError, match="3 successes out of 2"):
        wilson(3, 2)


async def chatgate(*args: str, database_url: str, cwd: Path) -> tuple[int, str, str]:
    """Run the `chatgate` command in its own process; (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    env["CHATGATE_DATABASE_URL"] = database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_prints_the_table(tmp_path: Path) -> None:
    """`chatgate flows stats NAME` in a real process, against the configured database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    db = Database(url)
    await upgrade(db.engine)
    await build(db)
    await db.aclose()
    code, out, err = await chatgate("flows", "stats", "cart", database_url=url, cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "flow cart: 7 runs (active 1, converted 2, done 1, holdout 3)"
    header = next(line for line in lines if line.startswith("step"))
    assert header.split() == [
        "step",
        "channel",
        "variant",
        "entered",
        "sent",
        "delivered",
        "read",
        "clicked",
        "replied",
        "converted",
        "revenue",
        "unsub",
        "failed",
    ]
    rows = [line.split() for line in lines]
    assert [
        "first_nudge",
        "email",
        "b",
        "2",
        "1",
        "1",
        "0",
        "0",
        "0",
        "1",
        "50.5",
        "1",
        "0",
    ] in rows
    assert ["total", "-", "-", "7", "5", "4", "1", "1", "1", "2", "150.5", "1", "1"] in rows
    assert ["a", "2", "1", "50.0%", "9.5%-90.5%", "+50.0%"] in rows
    assert ["holdout", "3", "1", "33.3%", "6.1%-79.2%", "-"] in rows

    code, out, err = await chatgate("flows", "stats", "nope", database_url=url, cwd=tmp_path)
    assert code == 1
    assert "no runs of flow 'nope'" in err


CART = """\
name: cart
purpose: marketing
trigger: {event: cart_abandoned}
steps:
  - send: {name: first_nudge, template: nudge, channels: [email, telegram], next_channel_after: 4h}
"""
NUDGE = 'text: "hi"\nemail: {subject: "s", html: "<p>hi</p>", text: "hi"}\n'


async def test_api_lists_flows_and_serves_their_stats(database: Database, tmp_path: Path) -> None:
    await build(database)
    folder = FlowFolder(tmp_path, {"nudge": NUDGE}, {"cart": CART})
    app = web.Application()
    app[FLOWS] = folder
    setup_api(app, db=database, api_key="k", region="RU")
    async with TestClient(TestServer(app), headers={"Authorization": "Bearer k"}) as client:
        listed = await (await client.get("/api/flows")).json()
        assert listed == {
            "flows": [
                {
                    "name": "cart",
                    "version": folder.flows["cart"].version,
                    "description": "",
                    "purpose": "marketing",
                    "priority": 50,
                    "trigger": {"event": "cart_abandoned", "schedule": None, "segment": None},
                    "active_runs": 1,
                    "total_runs": 7,
                    "runs": {"active": 1, "converted": 2, "done": 1, "holdout": 3},
                }
            ]
        }
        stats = await (await client.get("/api/flows/cart/stats")).json()
        assert stats["totals"]["revenue"] == "150.5"
        row = next(r for r in stats["steps"] if (r["channel"], r["variant"]) == ("email", "b"))
        assert (row["entered"], row["sent"], row["unsubscribed"], row["converted"]) == (2, 1, 1, 1)
        a = stats["variants"][0]
        assert (a["variant"], a["rate"], a["ci_low"], a["ci_high"]) == (
            "a",
            0.5,
            0.094531,
            0.905469,
        )
        assert stats["holdout"]["conversions"] == 1

        missing = await client.get("/api/flows/nope/stats")
        assert missing.status == 404
        assert (await missing.json())["error"] == "not_found"

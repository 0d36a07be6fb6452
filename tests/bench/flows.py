"""Flows at scale: a broadcast to 100,000 customers, sends through the emulators, a cascade.

1. plan + enqueue: a broadcast of a one-send email flow to BENCH_AUDIENCE customers
   (default 100,000) on SQLite and PostgreSQL: seconds to plan every run (keyset
   batches of 1,000 straight from the segment query) and seconds for the engine to
   stage and enqueue every delivery (outbox workers not started: nothing is sent).
2. sends/s: the running app with the Telegram emulator's flood limits off and the
   outbox's raised, BENCH_SENDS customers (default 2,000): from the broadcast being
   posted to every message stored as sent in the emulator, and the outbox's own rate.
3. cascade: BENCH_CASCADE customers (default 10,000) get a flow sending on telegram,
   then on sms after 1 h unless read; a third read the Telegram message (signalled
   through the real Router). Every chain must stop on the right step: readers get
   one message, the others exactly two.

The machine's load average is printed with every section: the figures are only
comparable between runs on an equally quiet machine. The test PostgreSQL runs
without autovacuum, so the bench refreshes the planner's statistics itself as the
tables grow (`analyze`), as autovacuum would: with none, the engine's per-chunk
reads of conversations and sent steps scan whole tables and slow down linearly.

Run (the issue's sizes, both databases): .venv/bin/python tests/bench/flows.py
     options: [--postgres URL] [--sqlite-only] [--skip-broadcast] [--skip-sends]
     [--skip-cascade]; smaller sizes from BENCH_AUDIENCE, BENCH_ENQUEUE (runs
     advanced for the enqueue figure; the whole audience by default), BENCH_SENDS,
     BENCH_CASCADE (PostgreSQL defaults to CHATGATE_TEST_POSTGRES_URL or
     postgres@127.0.0.1/test)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flows.broadcasts import Broadcasts
from gateway.channels import Signal
from storage.db import Database
from storage.migrate import upgrade
from storage.models import (
    Consent,
    Customer,
    CustomerTag,
    Delivery,
    DeliveryStatus,
    Identity,
)
from tests.flows.engine_world import ACCOUNTS, World, make_world

POSTGRES_URL = os.environ.get(
    "CHATGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
AUDIENCE = int(os.environ.get("BENCH_AUDIENCE", 100_000))
# Runs the engine advances for the enqueue figure (default: all); the rest is extrapolated.
ENQUEUE = int(os.environ.get("BENCH_ENQUEUE", 0)) or AUDIENCE
SENDS = int(os.environ.get("BENCH_SENDS", 2_000))
CASCADE = int(os.environ.get("BENCH_CASCADE", 10_000))
CHUNK = 5_000  # rows per INSERT when seeding

TEMPLATE = """\
text: "Распродажа для {{ customer.name }}"
email: {subject: "Распродажа", html: "<p>Распродажа</p>", text: "Распродажа"}
"""
PROMO = """\
name: promo
purpose: marketing
trigger: {schedule: "0 10 * * 1", segment: "tag = 'vip'"}
steps:
  - send: {name: promo, template: promo, channels: [email]}
"""
CASCADE_FLOW = """\
name: nudge
purpose: marketing
trigger: {schedule: "0 10 * * 1", segment: "tag = 'vip'"}
steps:
  - send: {name: nudge, template: promo, channels: [telegram, sms], next_channel_after: 1h}
"""
SENDS_FLOW = """\
name: blast
purpose: marketing
trigger: {schedule: "0 10 * * 1", segment: "tag = 'vip'"}
steps:
  - send: {name: blast, template: promo, channels: [telegram]}
"""


@asynccontextmanager
async def sqlite() -> AsyncIterator[Database]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await upgrade(db.engine)
        try:
            yield db
        finally:
            await db.aclose()


@asynccontextmanager
async def postgres(url: str) -> AsyncIterator[Database]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = Database(url, pool_size=1, max_overflow=0)
    async with admin.engine.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    db = Database(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        await upgrade(db.engine)
        yield db
    finally:
        await db.aclose()
        async with admin.engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.aclose()


async def seed(
    db: Database, count: int, *, telegram: bool = False, account: str = ACCOUNTS["telegram"]
) -> list[int]:
    """`count` VIP customers with an email, a phone, marketing consent and (optionally) a
    Telegram chat; inserted in chunks, as a shop's import would."""
    now = datetime.now(UTC)
    ids: list[int] = []
    for start in range(0, count, CHUNK):
        rows = [
            {
                "name": f"c{n}",
                "email": f"c{n}@example.com",
                "phone": f"+7900{n:07d}",
                "attributes": {},
                "created_at": now,
                "updated_at": now,
            }
            for n in range(start, min(count, start + CHUNK))
        ]
        async with db.session() as session:
            result = await session.execute(sa.insert(Customer).returning(col(Customer.id)), rows)
            chunk = [int(i) for i in result.scalars() if i is not None]
            await session.execute(
                sa.insert(CustomerTag), [{"customer_id": i, "tag": "vip"} for i in chunk]
            )
            await session.execute(
                sa.insert(Consent),
                [
                    {
                        "customer_id": i,
                        "channel": "*",
                        "purpose": "marketing",
                        "granted": True,
                        "source": "bench",
                        "updated_at": now,
                    }
                    for i in chunk
                ],
            )
            if telegram:
                await session.execute(
                    sa.insert(Identity),
                    [
                        {
                            "customer_id": i,
                            "channel": "telegram",
                            "account": account,
                            "address": str(100_000 + i),
                            "verified": True,
                            "reachable": True,
                            "soft_bounces": 0,
                            "created_at": now,
                        }
                        for i in chunk
                    ],
                )
        ids += chunk
    return ids


# Runs advanced between two refreshes of PostgreSQL's statistics.
ANALYZE_EVERY = 10_000
GROWING = (
    "customer",
    "customer_tag",
    "consent",
    "identity",
    "conversation",
    "message",
    "delivery",
    "flow_run",
    "flow_step",
)


async def analyze(db: Database) -> None:
    """Refresh PostgreSQL's planner statistics of the tables the bench fills."""
    if not db.is_sqlite:
        async with db.session() as session:
            await session.execute(sa.text(f"ANALYZE {', '.join(GROWING)}"))


async def count(db: Database, query: Any) -> int:
    async with db.session() as session:
        return int(await session.scalar(query) or 0)


async def drain(world: World, batch: int = 1000) -> None:
    """Tick the engine until nothing is due."""
    while await world.engine.tick(batch=batch):
        pass


async def plan_and_enqueue(db: Database, root: Path) -> dict[str, float]:
    world = await make_world(db, root, templates={"promo": TEMPLATE}, flows={"promo": PROMO})
    start = time.perf_counter()
    await seed(db, AUDIENCE)
    seeded = time.perf_counter() - start
    broadcasts = Broadcasts(db, world.engine, world.folder, clock=world.clock, batch=1000)
    start = time.perf_counter()
    broadcast = await broadcasts.create(flow="promo")
    assert broadcast.id is not None
    batches = await broadcasts.plan(broadcast.id)
    planned = time.perf_counter() - start
    await analyze(db)
    start = time.perf_counter()
    sample = min(ENQUEUE, AUDIENCE)
    advanced = 0
    while advanced < sample:
        claimed = await world.engine.tick(batch=min(1000, sample - advanced))
        if not claimed:
            break
        advanced += claimed
        if advanced % ANALYZE_EVERY == 0:
            await analyze(db)  # counted: it is part of the database's work
    enqueued = time.perf_counter() - start
    deliveries = await count(db, sa.select(sa.func.count()).select_from(Delivery))
    assert deliveries == sample, f"{deliveries} deliveries staged, {sample} expected"
    figures = {
        "seed_s": seeded,
        "plan_batches": batches,
        "plan_s": planned,
        "planned_per_s": AUDIENCE / planned,
        "enqueued": sample,
        "enqueue_s": enqueued,
        "enqueued_per_s": sample / enqueued,
    }
    if sample < AUDIENCE:
        figures["enqueue_all_s_est"] = AUDIENCE * enqueued / sample
    return figures


async def cascade(db: Database, root: Path) -> dict[str, float]:
    world = await make_world(db, root, templates={"promo": TEMPLATE}, flows={"nudge": CASCADE_FLOW})
    ids = await seed(db, CASCADE, telegram=True)
    readers = set(ids[::3])
    broadcasts = Broadcasts(db, world.engine, world.folder, clock=world.clock, batch=1000)
    start = time.perf_counter()
    broadcast = await broadcasts.create(flow="nudge")
    assert broadcast.id is not None
    await broadcasts.plan(broadcast.id)
    await analyze(db)
    await drain(world)
    first = time.perf_counter() - start
    # The outbox sent them all; a third of the customers read theirs.
    async with db.session() as session:
        await session.execute(
            sa.update(Delivery).values(status=DeliveryStatus.sent, sent_at=world.clock.now())
        )
        telegram = list(
            await session.execute(
                sa.select(col(Delivery.id), col(Delivery.customer_id)).where(
                    col(Delivery.channel) == "telegram"
                )
            )
        )
    assert len(telegram) == CASCADE
    start = time.perf_counter()
    for delivery_id, customer_id in telegram:
        if customer_id in readers:
            await world.router.signal(
                Signal(
                    kind="read", channel="telegram", delivery_id=delivery_id, at=world.clock.now()
                )
            )
    signalled = time.perf_counter() - start
    await analyze(db)
    await world.clock.advance(3600 + 60)
    start = time.perf_counter()
    await drain(world)
    second = time.perf_counter() - start
    async with db.session() as session:
        rows = list(
            await session.execute(
                sa.select(col(Delivery.customer_id), col(Delivery.channel)).order_by(
                    col(Delivery.id)
                )
            )
        )
    chains: dict[int, list[str]] = {}
    for customer_id, channel in rows:
        chains.setdefault(customer_id, []).append(channel)
    wrong = sum(
        1 for i in ids if chains.get(i) != (["telegram"] if i in readers else ["telegram", "sms"])
    )
    stopped = sum(1 for i in ids if chains.get(i) == ["telegram"])
    return {
        "customers": CASCADE,
        "stopped_at_telegram": stopped,
        "went_on_to_sms": sum(1 for i in ids if chains.get(i) == ["telegram", "sms"]),
        "wrong_chains": wrong,
        "first_channel_s": first,
        "read_signals_s": signalled,
        "cascade_pass_s": second,
    }


async def sends_through_emulator(root: Path) -> dict[str, float]:
    """The whole app against the Telegram emulator, platform and outbox limits raised."""
    from aiohttp.test_utils import TestServer

    from gateway.app import App
    from gateway.config import load_settings
    from gateway.sandbox.telegram import TelegramEmulator, TelegramLimits
    from tests.conftest import free_port

    emulator = TelegramEmulator(limits=TelegramLimits.disabled())
    emulator.add_bot("4242:bench-token", username="bench_bot")
    server = TestServer(emulator.app, host="127.0.0.1", port=0)
    await server.start_server()
    (root / "flows" / "templates").mkdir(parents=True)
    (root / "flows" / "blast.yaml").write_text(SENDS_FLOW, encoding="utf-8")
    (root / "flows" / "templates" / "promo.yaml").write_text(TEMPLATE, encoding="utf-8")
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{root / 'sends.db'}",
        http_port=free_port(),
        sandbox=False,
        api_key="k",
        telegram_token="4242:bench-token",
        telegram_api_url=str(server.make_url("")).rstrip("/"),
        flows_dir=str(root / "flows"),
        quiet_hours="00:00-00:00",
        marketing_cap_day=None,
        marketing_cap_week=None,
        telegram_rate_per_s=10_000,
        telegram_chat_rate_per_s=100,
    )
    app = App(settings)
    await app.start()
    try:
        ids = await seed(app.db, SENDS, telegram=True, account="4242")
        bot = emulator.bot(4242)
        for i in ids:
            user = emulator.add_user(100_000 + i, first_name=f"c{i}")
            # They started the bot long ago (a bot cannot write first), with no update now.
            emulator.world.private_chat(bot, user)
        start = time.perf_counter()
        broadcast = await app.broadcasts.create(flow="blast")
        assert broadcast.id is not None
        done = (
            sa.select(sa.func.count())
            .select_from(Delivery)
            .where(col(Delivery.status) == DeliveryStatus.sent)
        )
        deadline = start + 600
        while await count(app.db, done) < SENDS:
            assert time.perf_counter() < deadline, "the sends did not finish in 10 minutes"
            await asyncio.sleep(0.2)
        total = time.perf_counter() - start
        async with app.db.session() as session:
            spans = (
                await session.execute(
                    sa.select(
                        sa.func.min(col(Delivery.created_at)),
                        sa.func.max(col(Delivery.created_at)),
                        sa.func.min(col(Delivery.sent_at)),
                        sa.func.max(col(Delivery.sent_at)),
                    )
                )
            ).one()
        staged, sent = (_seconds(first, last) for first, last in (spans[:2], spans[2:]))
        received = sum(len(emulator.sent_messages(100_000 + i)) for i in ids)
        assert received == SENDS, f"the emulator got {received} of {SENDS}"
        # Whichever of the two is slower bounds the end-to-end rate.
        return {
            "messages": SENDS,
            "end_to_end_s": total,
            "end_to_end_per_s": SENDS / total,
            "engine_stage_per_s": SENDS / staged,
            "outbox_send_per_s": SENDS / sent,
        }
    finally:
        await app.aclose()
        await server.close()


def _seconds(first: datetime | None, last: datetime | None) -> float:
    assert first is not None
    assert last is not None
    return max((last - first).total_seconds(), 1e-6)


def show(title: str, figures: dict[str, float]) -> None:
    print(f"  {title} (then {load()})")
    for name, value in figures.items():
        text = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        print(f"    {name:<22} {text:>14}")


def load() -> str:
    """The machine's load average over 1, 5 and 15 minutes."""
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


async def main(args: argparse.Namespace) -> None:
    backends: dict[str, Callable[[], Any]] = {"SQLite": sqlite}
    if not args.sqlite_only:
        backends["PostgreSQL"] = lambda: postgres(args.postgres)
    print(
        f"flows bench: audience {AUDIENCE:,} (enqueue measured on {min(ENQUEUE, AUDIENCE):,}),"
        f" sends {SENDS:,}, cascade {CASCADE:,}; {load()}"
    )
    for name, backend in backends.items():
        print(f"== {name}")
        if not args.skip_broadcast:
            with tempfile.TemporaryDirectory() as tmp:
                async with backend() as db:
                    show(
                        f"broadcast to {AUDIENCE:,}: plan and enqueue",
                        await plan_and_enqueue(db, Path(tmp)),
                    )
        if args.skip_cascade:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            async with backend() as db:
                show(f"cascade over {CASCADE:,}, a third read", await cascade(db, Path(tmp)))
    if not args.skip_sends:
        print("== sends through the Telegram emulator (SQLite, limits raised)")
        with tempfile.TemporaryDirectory() as tmp:
            show(f"{SENDS:,} messages", await sends_through_emulator(Path(tmp)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=POSTGRES_URL, metavar="URL")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--skip-sends", action="store_true", help="skip the emulator run")
    parser.add_argument("--skip-cascade", action="store_true", help="skip the cascade run")
    parser.add_argument(
        "--skip-broadcast", action="store_true", help="skip the plan-and-enqueue run"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))

"""Cron fires (only the leader fires, never twice, missed fires caught up) and segment entry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import col

from flows.broadcasts import Broadcasts
from flows.entry import ENTRY_KEY, SegmentEntry
from flows.scheduler import LEADER_LOCK, FlowScheduler, cron_trigger, last_fire
from flows.spec import Flow
from gateway.broker import Broker, MemoryBroker, RedisBroker
from storage.db import Database
from storage.models import Broadcast, CustomerTag, Event, FlowRun
from tests.broker.test_contract import drop_prefix, redis_client
from tests.flows.engine_world import World, make_world

MSK = ZoneInfo("Europe/Moscow")
# Monday 2026-01-05 10:00:20 in Moscow: twenty seconds after the weekly promo's fire.
AFTER_FIRE = datetime(2026, 1, 5, 7, 0, 20, tzinfo=UTC)
FIRE_KEY = "2026-01-05T07:00:00+00:00"

TEMPLATE = """\
text: "Привет, {{ customer.name }}"
email:
  subject: "Привет"
  html: "<p>Привет</p>"
  text: "Привет"
"""


def flow(name: str, trigger: str) -> str:
    return f"""\
name: {name}
purpose: marketing
trigger: {trigger}
steps:
  - send:
      template: hello
      channels: [email]
"""


FLOWS = {
    "promo": flow("promo", "{schedule: '0 10 * * 1', segment: \"tag = 'vip'\"}"),
    "hourly": flow("hourly", "{schedule: '0 * * * *', segment: \"tag = 'vip'\"}"),
    "minutely": flow("minutely", "{schedule: '* * * * *', segment: \"tag = 'vip'\"}"),
    "welcome": flow("welcome", "{segment: \"tag = 'new'\"}"),
}


async def shop(db: Database, root: Path, *, start: datetime = AFTER_FIRE) -> World:
    world = await make_world(db, root, templates={"hello": TEMPLATE}, flows=FLOWS, start=start)
    for n in range(3):
        customer = await world.customer(f"v{n}", email=f"v{n}@example.com", consent=("email",))
        await tag(db, customer, "vip")
    return world


async def tag(db: Database, customer_id: int, name: str) -> None:
    async with db.session() as session:
        session.add(CustomerTag(customer_id=customer_id, tag=name))


async def untag(db: Database, customer_id: int, name: str) -> None:
    async with db.session() as session:
        await session.execute(
            sa.delete(CustomerTag).where(
                col(CustomerTag.customer_id) == customer_id, col(CustomerTag.tag) == name
            )
        )


async def broadcasts_in(db: Database) -> list[tuple[str, str]]:
    async with db.session() as session:
        rows = await session.execute(
            sa.select(col(Broadcast.flow_name), col(Broadcast.name)).order_by(col(Broadcast.id))
        )
        return [(flow_name, name) for flow_name, name in rows]


def scheduler(
    world: World, broker: Broker, holder: str, *, grace: timedelta = timedelta(hours=1)
) -> FlowScheduler:
    broadcasts = Broadcasts(world.db, world.engine, world.folder, clock=world.clock)
    return FlowScheduler(
        Scheduled(world),
        broadcasts,
        broker,
        clock=world.clock,
        timezone=MSK,
        misfire_grace=grace,
        lease_s=30,
        holder=holder,
    )


class Scheduled:
    """The world's flows, offered the way FlowSet offers them to the scheduler."""

    def __init__(self, world: World) -> None:
        self.world = world

    def get(self, name: str) -> Flow | None:
        return self.world.folder.get(name)

    def scheduled(self) -> list[Flow]:
        return [f for f in self.world.folder.flows.values() if f.trigger.schedule]

    def segment_entry(self) -> list[Flow]:
        flows = self.world.folder.flows.values()
        return [f for f in flows if f.trigger.segment and not f.trigger.schedule]


@pytest.fixture(params=["memory", "redis"])
async def brokers(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Broker, Broker]]:
    """What two processes see: one MemoryBroker shared in-process, or two Redis clients."""
    if request.param == "memory":
        shared = MemoryBroker()
        yield shared, shared
        await shared.aclose()
        return
    prefix = f"test:{uuid.uuid4().hex}:"
    first = RedisBroker(await redis_client(), prefix=prefix)
    second = RedisBroker(await redis_client(), prefix=prefix)
    try:
        yield first, second
    finally:
        await drop_prefix(first.redis, prefix)
        await first.aclose()
        await second.aclose()


async def test_two_schedulers_one_fires(
    database: Database, tmp_path: Path, brokers: tuple[Broker, Broker]
) -> None:
    world = await shop(database, tmp_path)
    one = scheduler(world, brokers[0], "process-1")
    two = scheduler(world, brokers[1], "process-2")

    fired = await one.fire("promo")
    assert fired is not None
    assert await two.fire("promo") is None  # not the leader
    assert (one.leader, two.leader) == (True, False)
    assert await broadcasts_in(database) == [("promo", f"schedule:{FIRE_KEY}")]

    # The leader goes away; the other takes over but does not run the same fire again.
    await one.aclose()
    assert await two.fire("promo") is None
    assert two.leader is True
    assert await broadcasts_in(database) == [("promo", f"schedule:{FIRE_KEY}")]

    # Next week's fire is the new leader's alone.
    await world.clock.advance(7 * 24 * 3600)
    assert await one.fire("promo") is None
    assert await two.fire("promo") is not None
    names = [name for _, name in await broadcasts_in(database)]
    assert names == [f"schedule:{FIRE_KEY}", "schedule:2026-01-12T07:00:00+00:00"]

    # The fire's runs carry the fire time as their trigger key.
    await one.broadcasts.plan(fired)
    async with database.session() as session:
        keys = set(
            await session.scalars(
                sa.select(col(FlowRun.trigger_key)).where(col(FlowRun.broadcast_id) == fired)
            )
        )
    assert keys == {FIRE_KEY}


async def test_a_lease_not_renewed_passes_to_the_other(
    sqlite_database: Database, tmp_path: Path
) -> None:
    world = await shop(sqlite_database, tmp_path)
    clock = [1000.0]
    broker = MemoryBroker(clock=lambda: clock[0])
    one = scheduler(world, broker, "process-1")
    two = scheduler(world, broker, "process-2")
    assert await one.lead() is True
    assert await two.lead() is False
    clock[0] += 20
    assert await one.lead() is True  # renewed within its 30 s
    clock[0] += 20
    assert await two.lead() is False
    clock[0] += 31  # process-1 died and stopped renewing
    assert await two.lead() is True
    assert await one.lead() is False


async def test_missed_fires_coalesce_within_the_grace_time(
    database: Database, tmp_path: Path
) -> None:
    """Down from 07:30 to 10:30 UTC: the hourly flow missed three fires, runs the last."""
    world = await shop(database, tmp_path, start=datetime(2026, 1, 5, 10, 30, tzinfo=UTC))
    late = scheduler(world, MemoryBroker(), "p", grace=timedelta(hours=4))
    started = await late.catch_up()
    assert len(started) == 3
    assert sorted(await broadcasts_in(database)) == [
        ("hourly", "schedule:2026-01-05T10:00:00+00:00"),  # not 08:00, 09:00 as well
        ("minutely", "schedule:2026-01-05T10:30:00+00:00"),
        ("promo", f"schedule:{FIRE_KEY}"),  # 3.5 hours late, within the 4 hours' grace
    ]
    assert await late.catch_up() == []  # nothing runs twice


async def test_a_fire_later_than_the_grace_time_is_dropped(
    database: Database, tmp_path: Path
) -> None:
    world = await shop(database, tmp_path, start=datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    strict = scheduler(world, MemoryBroker(), "p", grace=timedelta(hours=1))
    await strict.catch_up()
    names = {flow_name for flow_name, _ in await broadcasts_in(database)}
    assert "promo" not in names  # five hours late
    assert names == {"hourly", "minutely"}


@pytest.mark.parametrize(
    ("field", "fires_on"),
    [
        ("1", {"Mon"}),
        ("0", {"Sun"}),
        ("7", {"Sun"}),
        ("1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("*/2", {"Sun", "Tue", "Thu", "Sat"}),
        ("5-7", {"Fri", "Sat", "Sun"}),
        ("sat,sun", {"Sat", "Sun"}),
        ("fri-mon", {"Fri", "Sat", "Sun", "Mon"}),
        ("*", {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}),
    ],
)
def test_weekdays_are_counted_as_cron_counts_them(field: str, fires_on: set[str]) -> None:
    """APScheduler 3 alone would fire "0 10 * * 1" on Tuesdays."""
    trigger = cron_trigger(f"0 10 * * {field}", MSK)
    fire = trigger.get_next_fire_time(None, datetime(2026, 1, 4, tzinfo=MSK))
    days = set()
    for _ in range(14):
        assert fire is not None
        days.add(fire.strftime("%a"))
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    assert days == fires_on


def test_a_malformed_cron_is_refused() -> None:
    with pytest.raises(ValueError, match="5 fields"):
        cron_trigger("0 10 * *", MSK)
    with pytest.raises(ValueError, match="is not 0-7"):
        cron_trigger("0 10 * * 9", MSK)


def test_last_fire_reads_the_cron_in_the_deployment_zone() -> None:
    trigger = cron_trigger("0 10 * * 1", MSK)
    week = timedelta(days=7)
    assert last_fire(trigger, AFTER_FIRE, week) == datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    before = AFTER_FIRE - timedelta(minutes=1)
    assert last_fire(trigger, before, timedelta(days=6)) is None
    assert last_fire(trigger, before, week) == datetime(2025, 12, 29, 7, 0, tzinfo=UTC)
    every_minute = cron_trigger("* * * * *", MSK)
    assert last_fire(every_minute, AFTER_FIRE, timedelta(hours=1)) == datetime(
        2026, 1, 5, 7, 0, tzinfo=UTC
    )


async def test_apscheduler_runs_the_timetable(sqlite_database: Database, tmp_path: Path) -> None:
    world = await shop(sqlite_database, tmp_path)
    broker = MemoryBroker()
    running = scheduler(world, broker, "p")
    await running.start()
    try:
        jobs = dict(running.jobs())
        assert set(jobs) == {"flow:promo", "flow:hourly", "flow:minutely", "leader"}
        promo_next = jobs["flow:promo"]
        assert promo_next is not None
        local = promo_next.astimezone(MSK)
        assert (local.weekday(), local.hour, local.minute) == (0, 10, 0)
        assert running.leader is True
        # Starting caught up on the fires of 10:00 Moscow time.
        first = await broadcasts_in(sqlite_database)
        assert ("minutely", f"schedule:{FIRE_KEY}") in first

        # A minute later APScheduler fires the every-minute flow.
        await world.clock.advance(60)
        aps = running._aps
        assert aps is not None
        aps.get_job("flow:minutely").modify(next_run_time=datetime.now(UTC))

        wanted = ("minutely", "schedule:2026-01-05T07:01:00+00:00")
        deadline = asyncio.get_running_loop().time() + 10
        while wanted not in await broadcasts_in(sqlite_database):
            assert asyncio.get_running_loop().time() < deadline, "APScheduler did not fire"
            await asyncio.sleep(0.05)
    finally:
        await running.aclose()
    # Stopping hands the lease over at once, not after it runs out.
    assert await broker.try_lock(LEADER_LOCK, 30, holder="next") is True


async def latest_event(db: Database) -> int:
    async with db.session() as session:
        event_id = await session.scalar(sa.select(sa.func.max(col(Event.id))))
    assert event_id is not None
    return int(event_id)


async def test_segment_entry_starts_newcomers_once(database: Database, tmp_path: Path) -> None:
    world = await shop(database, tmp_path)
    newcomers = []
    for n in range(3):
        customer = await world.customer(f"n{n}", email=f"n{n}@example.com", consent=("email",))
        await tag(database, customer, "new")
        newcomers.append(customer)
    entry = SegmentEntry(database, world.engine, Scheduled(world), clock=world.clock, batch=2)

    assert await entry.evaluate() == 3
    assert await entry.evaluate() == 0

    late = await world.customer("late", email="late@example.com", consent=("email",))
    await tag(database, late, "new")
    assert await entry.for_customer(newcomers[0]) == 0  # only the customer asked about
    await world.event(late, "signed_up")  # what POST /api/events hands the listeners
    await entry.on_event(await latest_event(database))
    assert [r.trigger_key for r in await world.runs(late)] == [ENTRY_KEY]

    # Leaving and coming back does not start the flow again.
    await untag(database, newcomers[1], "new")
    assert await entry.evaluate() == 0
    await tag(database, newcomers[1], "new")
    assert await entry.evaluate() == 0

    async with database.session() as session:
        runs = list(
            await session.execute(
                sa.select(col(FlowRun.customer_id), col(FlowRun.trigger_key))
                .where(col(FlowRun.flow_name) == "welcome")
                .order_by(col(FlowRun.customer_id))
            )
        )
    assert runs == [(c, ENTRY_KEY) for c in [*newcomers, late]]

    # The run does what the flow says: the welcome goes out.
    await world.engine.tick()
    sent = {d.customer_id for d in await world.deliveries()}
    assert sent == {*newcomers, late}

"""Broadcasts: batches straight from the segment query, pause/resume/cancel, progress, API, CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from flows.broadcasts import BroadcastError, Broadcasts
from flows.engine import FlowEngine
from flows.spec import Flow
from gateway.api import setup_api
from gateway.api.broadcasts import BROADCASTS
from gateway.app import App
from gateway.config import load_settings
from gateway.outbox import Enqueued
from storage.db import Database
from storage.migrate import upgrade
from storage.models import Broadcast, Customer, CustomerTag, Delivery, FlowRun
from tests.conftest import free_port
from tests.flows.engine_world import World, make_world
from tests.flows.test_stats import chatgate

PROMO_TEMPLATE = """\
text: "Распродажа для {{ customer.name }}"
email:
  subject: "Распродажа"
  html: "<p>Распродажа для {{ customer.name }}</p>"
  text: "Распродажа для {{ customer.name }}"
"""

PROMO_FLOW = """\
name: promo
purpose: marketing
trigger: {schedule: "0 10 * * 1", segment: "tag = 'vip'"}
steps:
  - send:
      name: promo
      template: promo
      channels: [email]
"""

VIP, OTHERS, BATCH = 25, 5, 10
T = TypeVar("T")


class Recording:
    """The real engine, with the size of every batch it was handed written down."""

    def __init__(self, engine: FlowEngine) -> None:
        self.engine = engine
        self.batches: list[int] = []

    async def start_runs(
        self,
        session: AsyncSession,
        flow: Flow,
        customer_ids: Sequence[int],
        *,
        trigger_key: str,
        context: dict[str, Any],
        broadcast_id: int | None = None,
    ) -> int:
        self.batches.append(len(customer_ids))
        return await self.engine.start_runs(
            session,
            flow,
            customer_ids,
            trigger_key=trigger_key,
            context=context,
            broadcast_id=broadcast_id,
        )


async def shop(db: Database, root: Path) -> tuple[World, Recording, Broadcasts, list[int]]:
    """VIP customers (with email and consent) interleaved with others; ids of the VIPs."""
    world = await make_world(
        db, root, templates={"promo": PROMO_TEMPLATE}, flows={"promo": PROMO_FLOW}
    )
    vips = []
    for n in range(VIP + OTHERS):
        customer = await world.customer(f"c{n}", email=f"c{n}@example.com", consent=("email",))
        if n % 6 != 5:
            vips.append(customer)
            async with db.session() as session:
                session.add(CustomerTag(customer_id=customer, tag="vip"))
    assert len(vips) == VIP
    recording = Recording(world.engine)
    broadcasts = Broadcasts(db, recording, world.folder, clock=world.clock, batch=BATCH)
    return world, recording, broadcasts, vips


async def runs_of(db: Database, broadcast_id: int) -> list[FlowRun]:
    async with db.session() as session:
        return list(
            await session.scalars(
                sa.select(FlowRun)
                .where(col(FlowRun.broadcast_id) == broadcast_id)
                .order_by(col(FlowRun.customer_id))
            )
        )


async def deliveries(db: Database) -> list[Delivery]:
    async with db.session() as session:
        return list(await session.scalars(sa.select(Delivery).order_by(col(Delivery.id))))


async def test_planning_walks_the_segment_in_batches(database: Database, tmp_path: Path) -> None:
    _, recording, broadcasts, vips = await shop(database, tmp_path)
    broadcast = await broadcasts.create(flow="promo", name="spring sale")
    assert broadcast.id is not None
    assert (broadcast.status, broadcast.total, broadcast.planned) == ("planning", VIP, 0)
    assert broadcast.segment == "tag = 'vip'"  # the flow's own

    limited: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "customer_tag" in statement and "LIMIT" in statement.upper():
            limited.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        assert await broadcasts.plan_batch(broadcast.id) is True
        progress = await broadcasts.progress(broadcast.id)
        assert progress is not None
        assert (progress.status, progress.planned, progress.total) == ("planning", 10, VIP)
        assert await broadcasts.plan(broadcast.id) == 2
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)

    # Three bounded reads of the audience, never the whole of it at once.
    assert recording.batches == [10, 10, 5]
    assert len(limited) == 3
    runs = await runs_of(database, broadcast.id)
    assert [r.customer_id for r in runs] == vips
    assert {r.trigger_key for r in runs} == {f"broadcast:{broadcast.id}"}
    progress = await broadcasts.progress(broadcast.id)
    assert progress is not None
    assert (progress.status, progress.planned, progress.total) == ("running", VIP, VIP)
    assert progress.fraction == 1.0
    assert progress.runs == {"active": VIP}
    assert (progress.sent, progress.pending) == (0, VIP)


async def test_a_replanned_batch_starts_nobody_twice(database: Database, tmp_path: Path) -> None:
    """A crash after the runs but before the cursor: the next process repeats the batch."""
    world, _, broadcasts, vips = await shop(database, tmp_path)
    broadcast = await broadcasts.create(flow="promo")
    assert broadcast.id is not None
    await broadcasts.plan(broadcast.id, max_batches=2)
    async with database.session() as session:
        await session.execute(
            sa.update(Broadcast)
            .where(col(Broadcast.id) == broadcast.id)
            .values(cursor=None, planned=0)
        )
    restarted = Broadcasts(database, world.engine, world.folder, clock=world.clock, batch=BATCH)
    assert await restarted.plan(broadcast.id) == 3
    runs = await runs_of(database, broadcast.id)
    assert [r.customer_id for r in runs] == vips


async def test_progress_counts_sent_and_pending_runs(database: Database, tmp_path: Path) -> None:
    world, _, broadcasts, _ = await shop(database, tmp_path)
    broadcast = await broadcasts.create(flow="promo", segment="tag = 'vip' and name != 'c0'")
    assert broadcast.id is not None
    await broadcasts.plan(broadcast.id)
    await world.engine.tick(batch=7)  # seven runs send their message

    progress = await broadcasts.progress(broadcast.id)
    assert progress is not None
    assert progress.total == VIP - 1
    assert (progress.sent, progress.pending) == (7, VIP - 1 - 7)
    assert progress.deliveries == {"queued": 7}

    await world.engine.tick()
    await world.engine.tick()
    progress = await broadcasts.progress(broadcast.id)
    assert progress is not None
    assert (progress.sent, progress.pending) == (VIP - 1, 0)
    assert progress.deliveries == {"queued": VIP - 1}


async def test_pause_sends_nothing_new_and_resume_carries_on(
    database: Database, tmp_path: Path
) -> None:
    world, recording, broadcasts, _ = await shop(database, tmp_path)
    broadcast = await broadcasts.create(flow="promo")
    assert broadcast.id is not None
    await broadcasts.plan(broadcast.id, max_batches=1)

    paused = await broadcasts.pause(broadcast.id)
    assert paused.status == "paused"
    assert await broadcasts.plan_batch(broadcast.id) is False  # no planning while paused
    await broadcasts.work()
    assert await world.engine.tick() == 0
    await world.advance(3600)
    assert await deliveries(database) == []
    progress = await broadcasts.progress(broadcast.id)
    assert progress is not None
    assert (progress.status, progress.planned) == ("paused", 10)

    resumed = await broadcasts.resume(broadcast.id)
    assert resumed.status == "planning"
    await world.engine.tick()
    assert len(await deliveries(database)) == 10  # the held runs go out, late but not lost
    await broadcasts.work()
    await broadcasts.work()
    await world.engine.tick()
    assert len(await deliveries(database)) == VIP
    assert recording.batches == [10, 10, 5]


async def test_cancel_ends_live_runs_and_withdraws_queued_messages(
    database: Database, tmp_path: Path
) -> None:
    world, _, broadcasts, _ = await shop(database, tmp_path)
    broadcast = await broadcasts.create(flow="promo")
    assert broadcast.id is not None
    await broadcasts.plan(broadcast.id)
    await world.engine.tick(batch=10)  # ten messages wait in the outbox
    assert len(await deliveries(database)) == 10

    cancelled = await broadcasts.cancel(broadcast.id)
    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None

    runs = await runs_of(database, broadcast.id)
    live = [r for r in runs if r.status in ("active", "holdout")]
    assert live == []
    unsent = [r for r in runs if r.status == "cancelled"]
    assert len(unsent) >= VIP - 10
    assert {r.end_reason for r in unsent} == {f"broadcast {broadcast.id} cancelled"}
    withdrawn = await deliveries(database)
    assert {(d.status, d.error) for d in withdrawn} == {
        ("failed", f"broadcast {broadcast.id} cancelled")
    }
    await world.advance(3600)
    assert len(await deliveries(database)) == 10  # nothing more was sent

    with pytest.raises(BroadcastError, match="cancelled; cannot resume"):
        await broadcasts.resume(broadcast.id)


async def between_chunks(
    db: Database, root: Path, action: Callable[[Broadcasts, int], Awaitable[object]]
) -> tuple[World, Broadcasts, int, list[int]]:
    """The promo broadcast planned for the VIPs, its id; the engine advances chunks of 5
    runs, and `action` runs once the first chunk of its next tick has committed and
    released its messages, while that tick still holds the rest of the claimed runs."""
    world, _, broadcasts, vips = await shop(db, root)
    broadcast = await broadcasts.create(flow="promo")
    assert broadcast.id is not None
    await broadcasts.plan(broadcast.id)
    world.engine.chunk = 5
    release = world.outbox.release
    done = False

    async def then_act(*staged: Enqueued) -> None:
        nonlocal done
        await release(*staged)
        if not done:
            done = True
            await action(broadcasts, broadcast.id or 0)

    world.outbox.release = then_act  # type: ignore[method-assign]
    return world, broadcasts, broadcast.id, vips


async def test_a_pause_between_chunks_of_one_tick_holds_the_rest(
    database: Database, tmp_path: Path
) -> None:
    world, broadcasts, broadcast_id, vips = await between_chunks(
        database, tmp_path, Broadcasts.pause
    )
    assert await world.engine.tick() == VIP  # claimed them all, advanced the first chunk only
    assert len(await deliveries(database)) == 5
    progress = await broadcasts.progress(broadcast_id)
    assert progress is not None
    assert (progress.status, progress.sent, progress.pending) == ("paused", 5, VIP - 5)
    await world.advance(3600)
    assert len(await deliveries(database)) == 5

    await broadcasts.resume(broadcast_id)
    await world.engine.tick()
    sent = await deliveries(database)
    assert sorted(d.customer_id for d in sent) == sorted(vips)  # everyone once, late not lost
    progress = await broadcasts.progress(broadcast_id)
    assert progress is not None
    assert (progress.sent, progress.pending, progress.deliveries) == (VIP, 0, {"queued": VIP})


async def test_a_cancel_between_chunks_of_one_tick_sends_nothing_more(
    database: Database, tmp_path: Path
) -> None:
    world, broadcasts, broadcast_id, _ = await between_chunks(database, tmp_path, Broadcasts.cancel)
    await world.engine.tick()
    reason = f"broadcast {broadcast_id} cancelled"
    withdrawn = await deliveries(database)
    assert [(d.status, d.error) for d in withdrawn] == [("failed", reason)] * 5
    runs = await runs_of(database, broadcast_id)
    assert [r.status for r in runs].count("cancelled") == VIP - 5
    await world.advance(3600)
    assert len(await deliveries(database)) == 5
    progress = await broadcasts.progress(broadcast_id)
    assert progress is not None
    assert (progress.status, progress.sent, progress.pending) == ("cancelled", 5, 0)


async def test_done_once_every_run_has_ended(database: Database, tmp_path: Path) -> None:
    world, _, broadcasts, _ = await shop(database, tmp_path)
    broadcast = await broadcasts.create(flow="promo", segment="name in ('c1', 'c2')")
    assert broadcast.id is not None
    await broadcasts.plan(broadcast.id)
    first, second = await runs_of(database, broadcast.id)

    async def set_run(run_id: int | None, **values: Any) -> None:
        async with database.session() as session:
            await session.execute(
                sa.update(FlowRun).where(col(FlowRun.id) == run_id).values(**values)
            )

    await set_run(first.id, status="done", next_at=None, ended_at=world.clock.now())
    # A holdout run is watched for the goal until its window closes.
    await set_run(second.id, status="holdout")
    assert await broadcasts.finish_done() == 0
    await set_run(second.id, ended_at=world.clock.now())
    assert await broadcasts.finish_done() == 1
    progress = await broadcasts.progress(broadcast.id)
    assert progress is not None
    assert progress.status == "done"
    assert progress.finished_at == world.clock.now()


async def test_an_empty_audience_is_done_at_once(sqlite_database: Database, tmp_path: Path) -> None:
    _, recording, broadcasts, _ = await shop(sqlite_database, tmp_path)
    broadcast = await broadcasts.create(flow="promo", segment="tag = 'nobody'")
    assert broadcast.id is not None
    assert broadcast.total == 0
    await broadcasts.work()
    assert recording.batches == []
    progress = await broadcasts.progress(broadcast.id)
    assert progress is not None
    assert (progress.status, progress.planned, progress.fraction) == ("done", 0, 1.0)


async def test_planning_stops_when_the_flow_or_segment_is_gone(
    sqlite_database: Database, tmp_path: Path
) -> None:
    world, _, broadcasts, _ = await shop(sqlite_database, tmp_path)
    orphan = await broadcasts.create(flow="promo")
    broken = await broadcasts.create(flow="promo")
    assert orphan.id is not None
    assert broken.id is not None
    async with sqlite_database.session() as session:
        await session.execute(
            sa.update(Broadcast).where(col(Broadcast.id) == broken.id).values(segment="tag = ")
        )
    assert await broadcasts.plan_batch(broken.id) is False
    world.folder.flows.pop("promo")  # the file was deleted before planning
    assert await broadcasts.plan_batch(orphan.id) is False
    for broadcast_id in (orphan.id, broken.id):
        progress = await broadcasts.progress(broadcast_id)
        assert progress is not None
        assert (progress.status, progress.planned) == ("cancelled", 0)
    assert await runs_of(sqlite_database, orphan.id) == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"flow": "nope"}, 404, "flow"),
        ({"flow": "promo", "segment": "tag = 'vip' and"}, 422, "segment"),
        ({"flow": "promo", "segment": "tag = 'x'; DROP TABLE customer"}, 422, "segment"),
        ({"flow": "promo", "segment": "   "}, 422, "segment"),
        ({"flow": "promo", "name": "schedule:2026-01-01"}, 422, "name"),
        ({"flow": "promo", "audience": "all"}, 422, "audience"),
        ({}, 422, "flow"),
    ],
)
async def test_bad_requests_are_refused_and_nothing_is_stored(
    sqlite_database: Database, tmp_path: Path, body: dict[str, Any], status: int, field: str
) -> None:
    _, _, broadcasts, _ = await shop(sqlite_database, tmp_path)
    async for client in api_client(sqlite_database, broadcasts):
        response = await client.post("/api/broadcasts", json=body)
        assert response.status == status, await response.text()
        answer = await response.json()
        assert [d["field"] for d in answer["detail"]] == [field]
    async with sqlite_database.session() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Broadcast)) == 0


async def api_client(
    db: Database, broadcasts: Broadcasts | None
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    if broadcasts is not None:
        app[BROADCASTS] = broadcasts
    setup_api(app, db=db, api_key="k", region="RU")
    async with TestClient(TestServer(app), headers={"Authorization": "Bearer k"}) as client:
        yield client


async def test_api_create_follow_pause_resume_cancel(database: Database, tmp_path: Path) -> None:
    _, _, broadcasts, _ = await shop(database, tmp_path)
    async for client in api_client(database, broadcasts):
        response = await client.post(
            "/api/broadcasts", json={"flow": "promo", "name": "spring", "segment": "tag = 'vip'"}
        )
        assert response.status == 202, await response.text()
        created = await response.json()
        assert created["status"] == "planning"
        assert (created["planned"], created["total"], created["progress"]) == (0, VIP, 0.0)
        url = f"/api/broadcasts/{created['id']}"

        await broadcasts.work()  # the background planner's first pass
        shown = await (await client.get(url)).json()
        assert (shown["planned"], shown["progress"]) == (10, 0.4)

        assert (await (await client.post(f"{url}/pause")).json())["status"] == "paused"
        await broadcasts.work()
        assert (await (await client.get(url)).json())["planned"] == 10
        assert (await (await client.post(f"{url}/resume")).json())["status"] == "planning"
        await broadcasts.work()
        await broadcasts.work()
        shown = await (await client.get(url)).json()
        assert (shown["status"], shown["planned"], shown["progress"]) == ("running", VIP, 1.0)
        assert shown["runs"] == {"active": VIP}

        cancelled = await (await client.post(f"{url}/cancel")).json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["runs"] == {"cancelled": VIP}
        again = await client.post(f"{url}/pause")
        assert again.status == 409
        assert (await client.get("/api/broadcasts/999999")).status == 404


async def test_api_without_flows_says_so(sqlite_database: Database) -> None:
    async for client in api_client(sqlite_database, None):
        response = await client.post("/api/broadcasts", json={"flow": "promo"})
        assert response.status == 503
        assert "CHATGATE_FLOWS_DIR" in (await response.json())["message"]


async def test_cli_prints_a_progress_bar(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"
    db = Database(url)
    await upgrade(db.engine)
    _, _, broadcasts, _ = await shop(db, tmp_path)
    broadcast = await broadcasts.create(flow="promo", name="spring")
    assert broadcast.id is not None
    await broadcasts.plan(broadcast.id, max_batches=1)
    await db.aclose()

    code, out, err = await chatgate(
        "broadcast", "status", str(broadcast.id), database_url=url, cwd=tmp_path
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"broadcast {broadcast.id} 'spring' of flow promo: planning"
    assert lines[2] == "[############------------------]  40.0%  planned 10/25"
    assert lines[3] == "runs: sent 0, pending 10 (active 10)"

    code, _, err = await chatgate("broadcast", "status", "424242", database_url=url, cwd=tmp_path)
    assert code == 1
    assert "no broadcast 424242" in err


async def test_the_app_serves_flows_and_plans_broadcasts(tmp_path: Path) -> None:
    """`chatgate run` wiring: the shipped flows listed, a broadcast planned in the background."""
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        http_port=free_port(),
        sandbox=False,
        api_key="k",
    )
    app = App(settings)  # the real clock: the background loops sleep in real time
    await app.start()
    try:
        async with app.db.session() as session:
            for n in range(3):
                customer = Customer(name=f"c{n}", email=f"c{n}@example.com")
                session.add(customer)
                await session.flush()
                assert customer.id is not None
                session.add(CustomerTag(customer_id=customer.id, tag="vip"))
        auth = {"Authorization": "Bearer k"}
        async with aiohttp.ClientSession(app.url, headers=auth) as http:
            listed = await (await http.get("/api/flows")).json()
            names = {f["name"]: f for f in listed["flows"]}
            assert {"abandoned_cart", "promo_broadcast", "winback"} <= set(names)
            assert names["winback"]["trigger"]["schedule"] == "0 10 * * 1"
            response = await http.post(
                "/api/broadcasts", json={"flow": "promo_broadcast", "segment": "tag = 'vip'"}
            )
            assert response.status == 202, await response.text()
            url = f"/api/broadcasts/{(await response.json())['id']}"

            async def planned() -> dict[str, Any] | None:
                shown: dict[str, Any] = await (await http.get(url)).json()
                return shown if shown["status"] == "running" else None

            shown = await eventually_async(planned)
            assert (shown["planned"], shown["total"]) == (3, 3)
            stats = await http.get("/api/flows/promo_broadcast/stats")
            assert (await stats.json())["totals"]["entered"] == 3
    finally:
        await app.aclose()


async def eventually_async(probe: Callable[[], Awaitable[T | None]], within: float = 15.0) -> T:
    """Poll the coroutine `probe` until it returns something; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if value is not None:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"not met within {within}s"
        await asyncio.sleep(0.05)

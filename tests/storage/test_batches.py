"""Group commit (Database.batched): many writers, one transaction, each its own result."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.models import SeenUpdate, utcnow


def remember(
    key: str, *, fail: bool = False, gate: asyncio.Event | None = None
) -> Callable[[AsyncSession], Awaitable[str]]:
    """A unit that stores `key` and answers with it; fails after writing when told to."""

    async def unit(session: AsyncSession) -> str:
        if gate is not None:
            await gate.wait()
        session.add(SeenUpdate(source="test", key=key, seen_at=utcnow()))
        await session.flush()
        if fail:
            raise ValueError(f"{key} refused")
        return key

    return unit


async def stored(db: Database) -> set[str]:
    async with db.session() as session:
        keys = await session.scalars(
            sa.select(col(SeenUpdate.key)).where(col(SeenUpdate.source) == "test")
        )
        return set(keys)


def transactions(db: Database) -> list[int]:
    """Counts COMMITs on the engine from now on (one list entry per commit)."""
    commits: list[int] = []
    sa.event.listen(db.engine.sync_engine, "commit", lambda _conn: commits.append(1))
    return commits


async def test_each_caller_gets_its_own_result_and_everything_is_stored(
    database: Database,
) -> None:
    results = await asyncio.gather(*(database.batched(remember(f"k{n}")) for n in range(40)))

    assert results == [f"k{n}" for n in range(40)]
    assert await stored(database) == {f"k{n}" for n in range(40)}


async def test_concurrent_callers_share_commits(database: Database) -> None:
    commits = transactions(database)

    await asyncio.gather(*(database.batched(remember(f"k{n}")) for n in range(40)))

    # The first caller commits alone; everyone arriving meanwhile rides the next batch.
    assert len(commits) <= 3


async def test_a_batch_is_capped(database: Database) -> None:
    commits = transactions(database)
    for lane in database._lanes:
        lane.max_units = 10

    await asyncio.gather(*(database.batched(remember(f"k{n}")) for n in range(40)))

    assert len(commits) >= 4
    assert await stored(database) == {f"k{n}" for n in range(40)}


async def test_a_failing_unit_fails_alone_and_leaves_nothing_behind(database: Database) -> None:
    units = [remember(f"k{n}", fail=n == 7) for n in range(20)]

    results = await asyncio.gather(
        *(database.batched(unit) for unit in units), return_exceptions=True
    )

    assert isinstance(results[7], ValueError)
    assert str(results[7]) == "k7 refused"
    assert [r for n, r in enumerate(results) if n != 7] == [f"k{n}" for n in range(20) if n != 7]
    assert await stored(database) == {f"k{n}" for n in range(20) if n != 7}


async def test_units_that_conflict_with_each_other_are_redone_apart(database: Database) -> None:
    """Two units of one batch inserting the same key: the second fails, the first stays."""
    results = await asyncio.gather(
        database.batched(remember("first")),
        database.batched(remember("same")),
        database.batched(remember("same")),
        return_exceptions=True,
    )

    assert list(results[:2]) == ["first", "same"]
    assert isinstance(results[2], sa.exc.IntegrityError)
    assert await stored(database) == {"first", "same"}


async def test_a_caller_cancelled_while_waiting_has_its_unit_dropped(database: Database) -> None:
    gate = asyncio.Event()
    running = asyncio.create_task(database.batched(remember("running", gate=gate)))
    await asyncio.sleep(0.05)  # "running" holds the batch; the next ones queue behind it
    queued = asyncio.create_task(database.batched(remember("cancelled")))
    after = asyncio.create_task(database.batched(remember("after")))
    await asyncio.sleep(0)
    queued.cancel()
    gate.set()

    assert await running == "running"
    assert await after == "after"
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert await stored(database) == {"running", "after"}


async def test_a_caller_cancelled_mid_batch_does_not_undo_the_others(database: Database) -> None:
    gate = asyncio.Event()
    first = asyncio.create_task(database.batched(remember("first")))
    await asyncio.sleep(0)
    slow = asyncio.create_task(database.batched(remember("slow", gate=gate)))
    other = asyncio.create_task(database.batched(remember("other")))
    await asyncio.sleep(0.05)
    slow.cancel()  # its unit is already running inside the shared transaction
    gate.set()

    assert await first == "first"
    assert await other == "other"
    with pytest.raises(asyncio.CancelledError):
        await slow
    # Committed with its batch, like any transaction whose commit was under way.
    assert await stored(database) == {"first", "slow", "other"}


async def test_on_postgresql_a_slow_batch_holds_up_only_its_own_lane(database: Database) -> None:
    if database.is_sqlite:
        assert len(database._lanes) == 1  # one writer at a time: lanes would only queue
        return
    gate = asyncio.Event()
    slow = asyncio.create_task(database.batched(remember("slow", gate=gate), key="chat a"))
    await asyncio.sleep(0.05)
    elsewhere = next(
        key for key in map(str, range(100)) if database._lane(key) is not database._lane("chat a")
    )

    assert await database.batched(remember("quick"), key=elsewhere) == "quick"
    assert await stored(database) == {"quick"}
    gate.set()
    assert await slow == "slow"

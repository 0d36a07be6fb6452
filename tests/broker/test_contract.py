"""One contract, two brokers: every test runs on MemoryBroker and RedisBroker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.broker import Broker, LockTimeout, MemoryBroker, RedisBroker
from tests.conftest import REDIS_URL, service_missing

VISIBILITY_S = 0.2


class ManualClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    name: str
    broker: Broker
    advance: Callable[[float], Awaitable[None]]


async def redis_client() -> Redis:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        service_missing("Redis", exc)
    return client


async def drop_prefix(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        clock = ManualClock()

        async def advance_clock(seconds: float) -> None:
            clock.now += seconds

        memory = MemoryBroker(visibility_timeout_s=VISIBILITY_S, clock=clock)
        yield Backend("memory", memory, advance_clock)
        await memory.aclose()
        return
    client = await redis_client()
    prefix = f"test:{uuid.uuid4().hex}:"
    broker = RedisBroker(client, prefix=prefix, visibility_timeout_s=VISIBILITY_S)

    async def advance_time(seconds: float) -> None:
        await asyncio.sleep(seconds)

    try:
        yield Backend("redis", broker, advance_time)
    finally:
        await drop_prefix(client, prefix)
        await broker.aclose()


class TestBrokerContract:
    async def test_jobs_come_out_in_order_and_stay_gone_once_acked(self, backend: Backend) -> None:
        broker = backend.broker
        for payload in ("a", "b", "c"):
            await broker.enqueue("q", payload)
        jobs = await broker.consume("q", "c1", count=10, block_s=0)
        assert [job.payload for job in jobs] == ["a", "b", "c"]
        for job in jobs:
            await broker.ack("q", job.id)
        await backend.advance(VISIBILITY_S * 1.5)
        assert await broker.consume("q", "c2", count=10, block_s=0) == []

    async def test_count_limits_a_batch(self, backend: Backend) -> None:
        for payload in ("a", "b", "c"):
            await backend.broker.enqueue("q", payload)
        first = await backend.broker.consume("q", "c1", count=2, block_s=0)
        second = await backend.broker.consume("q", "c1", count=2, block_s=0)
        assert [j.payload for j in first] == ["a", "b"]
        assert [j.payload for j in second] == ["c"]

    async def test_queues_are_separate(self, backend: Backend) -> None:
        await backend.broker.enqueue("one", "x")
        assert await backend.broker.consume("two", "c1", block_s=0) == []
        assert [j.payload for j in await backend.broker.consume("one", "c1", block_s=0)] == ["x"]

    async def test_a_blocked_consumer_wakes_when_a_job_arrives(self, backend: Backend) -> None:
        waiting = asyncio.create_task(backend.broker.consume("q", "c1", count=1, block_s=3))
        await asyncio.sleep(0.05)
        await backend.broker.enqueue("q", "late")
        jobs = await asyncio.wait_for(waiting, timeout=2)
        assert [j.payload for j in jobs] == ["late"]

    async def test_an_unacked_job_is_reclaimed_after_the_visibility_timeout(
        self, backend: Backend
    ) -> None:
        broker = backend.broker
        await broker.enqueue("q", "work")
        taken = await broker.consume("q", "dead", count=1, block_s=0)
        assert [j.payload for j in taken] == ["work"]
        assert await broker.consume("q", "alive", count=1, block_s=0) == []
        await backend.advance(VISIBILITY_S * 1.5)
        again = await broker.consume("q", "alive", count=1, block_s=0)
        assert [j.payload for j in again] == ["work"]
        await broker.ack("q", again[0].id)
        await backend.advance(VISIBILITY_S * 1.5)
        assert await broker.consume("q", "alive", count=1, block_s=0) == []

    async def test_a_delayed_job_is_invisible_until_due(self, backend: Backend) -> None:
        broker = backend.broker
        await broker.enqueue("q", "later", delay=0.3)
        await broker.enqueue("q", "now")
        (now,) = await broker.consume("q", "c1", block_s=0)
        assert now.payload == "now"
        await broker.ack("q", now.id)
        await backend.advance(0.1)
        assert await broker.consume("q", "c1", block_s=0) == []
        await backend.advance(0.3)
        assert [j.payload for j in await broker.consume("q", "c1", block_s=0)] == ["later"]

    async def test_the_bucket_refuses_past_the_burst_and_refills(self, backend: Backend) -> None:
        broker = backend.broker
        for _ in range(3):
            assert await broker.take("lane", rate_per_s=10, burst=3) == 0.0
        wait = await broker.take("lane", rate_per_s=10, burst=3)
        assert 0 < wait <= 0.1 + 1e-6
        assert await broker.take("other", rate_per_s=10, burst=3) == 0.0
        await backend.advance(wait + 0.01)
        assert await broker.take("lane", rate_per_s=10, burst=3) == 0.0
        assert await broker.take("lane", rate_per_s=10, burst=3) > 0

    async def test_a_pause_holds_and_is_never_shortened(self, backend: Backend) -> None:
        broker = backend.broker
        assert await broker.paused_for("lane") == 0.0
        await broker.pause("lane", 0.4)
        assert 0.3 < await broker.paused_for("lane") <= 0.4
        await broker.pause("lane", 0.05)
        assert await broker.paused_for("lane") > 0.3
        await backend.advance(0.45)
        assert await broker.paused_for("lane") == 0.0

    async def test_first_seen_is_true_once_per_ttl(self, backend: Backend) -> None:
        broker = backend.broker
        assert await broker.first_seen("update:1", 0.2) is True
        assert await broker.first_seen("update:1", 0.2) is False
        assert await broker.first_seen("update:2", 0.2) is True
        await backend.advance(0.3)
        assert await broker.first_seen("update:1", 0.2) is True

    async def test_lock_is_exclusive_between_tasks(self, backend: Backend) -> None:
        broker = backend.broker
        async with broker.lock("job", 5):
            with pytest.raises(LockTimeout):
                async with broker.lock("job", 5, wait_s=0.05):
                    pytest.fail("two holders of one lock")
        async with broker.lock("job", 5, wait_s=0.05):
            pass

    async def test_try_lock_holds_renews_and_releases(self, backend: Backend) -> None:
        broker = backend.broker
        assert await broker.try_lock("leader", 5) is True
        assert await broker.try_lock("leader", 5) is True  # the holder renews
        with pytest.raises(LockTimeout):
            async with broker.lock("leader", 5, wait_s=0.05):
                pass
        await broker.release("leader")
        async with broker.lock("leader", 5, wait_s=0.05):
            assert await broker.try_lock("leader", 5) is False

    async def test_an_expired_lock_is_free(self, backend: Backend) -> None:
        broker = backend.broker
        assert await broker.try_lock("leader", 0.1) is True
        await backend.advance(0.15)
        async with broker.lock("leader", 5, wait_s=0.05):
            pass

    async def test_holders_sharing_a_broker_exclude_each_other(self, backend: Backend) -> None:
        """A leader lease: two schedulers on one broker, only one holds it at a time."""
        broker = backend.broker
        assert await broker.try_lock("leader", 0.2, holder="a") is True
        assert await broker.try_lock("leader", 0.2, holder="b") is False
        assert await broker.try_lock("leader", 0.2, holder="a") is True  # renewal
        await broker.release("leader", holder="b")  # not the holder: no effect
        assert await broker.try_lock("leader", 0.2, holder="b") is False
        await broker.release("leader", holder="a")
        assert await broker.try_lock("leader", 0.2, holder="b") is True

    async def test_a_lease_not_renewed_passes_to_another_holder(self, backend: Backend) -> None:
        broker = backend.broker
        assert await broker.try_lock("leader", 0.1, holder="a") is True
        await backend.advance(0.15)
        assert await broker.try_lock("leader", 5, holder="b") is True
        assert await broker.try_lock("leader", 5, holder="a") is False

    async def test_published_messages_reach_subscribers(self, backend: Backend) -> None:
        broker = backend.broker
        subscription = await broker.subscribe("news")
        other = await broker.subscribe("other")
        try:
            await broker.publish("news", "one")
            await broker.publish("news", "two")
            got = [await asyncio.wait_for(anext(subscription), 2) for _ in range(2)]
            assert got == ["one", "two"]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(other), 0.05)
        finally:
            await subscription.aclose()
            await other.aclose()

    async def test_ping(self, backend: Backend) -> None:
        assert await backend.broker.ping() is True


async def test_redis_try_lock_excludes_another_process() -> None:
    """Two RedisBrokers are two processes: a held `try_lock` keeps the other out."""
    prefix = f"test:{uuid.uuid4().hex}:"
    first = RedisBroker(await redis_client(), prefix=prefix)
    second = RedisBroker(await redis_client(), prefix=prefix)
    try:
        assert await first.try_lock("leader", 5) is True
        assert await second.try_lock("leader", 5) is False
        await second.release("leader")  # not the holder: no effect
        assert await second.try_lock("leader", 5) is False
        await first.release("leader")
        assert await second.try_lock("leader", 5) is True
    finally:
        await drop_prefix(first.redis, prefix)
        await first.aclose()
        await second.aclose()


async def test_redis_reclaim_hands_a_dead_consumers_job_to_another_process() -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    dead = RedisBroker(await redis_client(), prefix=prefix, visibility_timeout_s=0.1)
    alive = RedisBroker(await redis_client(), prefix=prefix, visibility_timeout_s=0.1)
    try:
        await dead.enqueue("q", "work")
        assert [j.payload for j in await dead.consume("q", "dead", block_s=0)] == ["work"]
        await dead.aclose()
        await asyncio.sleep(0.15)
        jobs = await alive.consume("q", "alive", block_s=0)
        assert [j.payload for j in jobs] == ["work"]
    finally:
        await drop_prefix(alive.redis, prefix)
        await alive.aclose()


async def test_redis_blocking_consume_sees_a_delayed_job_come_due() -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    broker = RedisBroker(await redis_client(), prefix=prefix)
    try:
        await broker.enqueue("q", "soon", delay=0.1)
        jobs = await asyncio.wait_for(broker.consume("q", "c1", block_s=2), timeout=1)
        if not jobs:  # the block ended at the due time; the next look promotes it
            jobs = await broker.consume("q", "c1", block_s=0)
        assert [j.payload for j in jobs] == ["soon"]
    finally:
        await drop_prefix(broker.redis, prefix)
        await broker.aclose()

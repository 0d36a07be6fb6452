"""The broker for one process: dicts, heaps and asyncio primitives.

Nothing survives a restart; the outbox does not rely on it (it re-queues from
the database), but only one process can share this broker.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from gateway.broker.base import Job, LockTimeout

__all__ = ["MemoryBroker"]

# How often a blocked consumer looks again for delayed or reclaimable jobs.
_POLL_S = 0.01


@dataclass
class _Queue:
    ready: deque[Job] = field(default_factory=deque)
    delayed: list[tuple[float, int, Job]] = field(default_factory=list)
    # job id -> (job, consumer, handed out at)
    pending: dict[str, tuple[Job, str, float]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class _MemorySubscription:
    def __init__(self, channel: str, registry: dict[str, set[asyncio.Queue[str]]]) -> None:
        self._channel = channel
        self._registry = registry
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        registry.setdefault(channel, set()).add(self._inbox)
        self._closed = False

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        if self._closed:
            raise StopAsyncIteration
        return await self._inbox.get()

    async def aclose(self) -> None:
        self._closed = True
        listeners = self._registry.get(self._channel)
        if listeners is not None:
            listeners.discard(self._inbox)
            if not listeners:
                del self._registry[self._channel]


class MemoryBroker:
    """`Broker` in process memory; `clock` (monotonic seconds) is injectable for tests."""

    def __init__(
        self,
        *,
        visibility_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.visibility_timeout_s = visibility_timeout_s
        self._clock = clock
        self._owner = uuid.uuid4().hex
        self._queues: dict[str, _Queue] = {}
        self._ids = itertools.count(1)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._pauses: dict[str, float] = {}  # key -> until
        self._seen: dict[str, float] = {}  # key -> expires at
        self._locks: dict[str, tuple[str, float]] = {}  # name -> (owner token, expires at)
        self._channels: dict[str, set[asyncio.Queue[str]]] = {}

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    async def enqueue(self, queue: str, payload: str, *, delay: float = 0) -> None:
        q = self._queue(queue)
        seq = next(self._ids)
        job = Job(str(seq), payload)
        if delay > 0:
            heapq.heappush(q.delayed, (self._clock() + delay, seq, job))
        else:
            q.ready.append(job)
        q.arrived.set()

    def _collect(self, q: _Queue, consumer: str, count: int) -> list[Job]:
        now = self._clock()
        while q.delayed and q.delayed[0][0] <= now:
            q.ready.append(heapq.heappop(q.delayed)[2])
        jobs: list[Job] = []
        # Jobs of a consumer that stopped acking go first: they are the oldest.
        for job_id, (job, _owner, at) in list(q.pending.items()):
            if len(jobs) >= count:
                break
            if now - at >= self.visibility_timeout_s:
                q.pending[job_id] = (job, consumer, now)
                jobs.append(job)
        while q.ready and len(jobs) < count:
            job = q.ready.popleft()
            q.pending[job.id] = (job, consumer, now)
            jobs.append(job)
        return jobs

    async def consume(
        self, queue: str, consumer: str, *, count: int = 10, block_s: float = 1.0
    ) -> list[Job]:
        q = self._queue(queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(block_s, 0.0)
        while True:
            q.arrived.clear()
            jobs = self._collect(q, consumer, count)
            remaining = deadline - loop.time()
            if jobs or remaining <= 0:
                return jobs
            # Delayed and unacked jobs become due by the clock, not by an event.
            wait = min(remaining, _POLL_S) if (q.delayed or q.pending) else remaining
            with suppress(TimeoutError):
                await asyncio.wait_for(q.arrived.wait(), timeout=wait)

    async def ack(self, queue: str, job_id: str) -> None:
        self._queue(queue).pending.pop(job_id, None)

    async def take(self, key: str, *, rate_per_s: float, burst: float) -> float:
        now = self._clock()
        tokens, at = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - at) * rate_per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate_per_s

    async def pause(self, key: str, seconds: float) -> None:
        until = self._clock() + seconds
        if until > self._pauses.get(key, 0.0):
            self._pauses[key] = until

    async def paused_for(self, key: str) -> float:
        until = self._pauses.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._pauses[key]
            return 0.0
        return left

    async def first_seen(self, key: str, ttl_s: float) -> bool:
        now = self._clock()
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._seen[key] = now + ttl_s
        if len(self._seen) > 10_000:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
        return True

    def _acquire(self, name: str, token: str, ttl_s: float) -> bool:
        now = self._clock()
        held = self._locks.get(name)
        if held is not None and held[1] > now and held[0] != token:
            return False
        self._locks[name] = (token, now + ttl_s)
        return True

    def _release(self, name: str, token: str) -> None:
        held = self._locks.get(name)
        if held is not None and held[0] == token:
            del self._locks[name]

    async def try_lock(self, name: str, ttl_s: float, *, holder: str | None = None) -> bool:
        return self._acquire(name, holder or self._owner, ttl_s)

    async def release(self, name: str, *, holder: str | None = None) -> None:
        self._release(name, holder or self._owner)

    @asynccontextmanager
    async def lock(
        self, name: str, ttl_s: float, *, wait_s: float | None = None
    ) -> AsyncIterator[None]:
        token = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = None if wait_s is None else loop.time() + wait_s
        while not self._acquire(name, token, ttl_s):
            if deadline is not None and loop.time() >= deadline:
                raise LockTimeout(f"lock {name!r} is held by someone else")
            await asyncio.sleep(_POLL_S)
        try:
            yield
        finally:
            self._release(name, token)

    async def publish(self, channel: str, message: str) -> None:
        for inbox in list(self._channels.get(channel, ())):
            inbox.put_nowait(message)

    async def subscribe(self, channel: str) -> _MemorySubscription:
        return _MemorySubscription(channel, self._channels)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._channels.clear()

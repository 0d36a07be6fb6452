"""The broker for many processes: Redis Streams, sorted sets and Lua.

- queue: a stream per queue with one consumer group; a job a dead consumer
  never acked is taken over with XAUTOCLAIM once idle past the visibility
  timeout. Delayed jobs wait in a sorted set (score = due time in ms by the
  Redis clock) and are moved into the stream when a consumer looks.
- rate limits: a token bucket per key, one Lua script, timed by Redis' own
  clock so processes with skewed clocks agree.
- dedupe: SET NX PX. Locks: SET NX PX with an owner token, compare-and-delete.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError, ResponseError

from gateway.broker.base import Job, LockTimeout

__all__ = ["RedisBroker"]

_GROUP = "workers"
_FIELD = "p"
_LOCK_POLL_S = 0.02

# Move due delayed jobs into the stream; return ms until the next one is due, or -1.
_PROMOTE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  local cut = string.find(member, '|', 1, true)
  redis.call('XADD', KEYS[2], '*', 'p', string.sub(member, cut + 1))
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return -1 end
return math.max(0, tonumber(nxt[2]) - now)
"""

_DELAY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
"""

_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then tokens = burst; at = now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return string.format('%.6f', wait)
"""

_PAUSE = """
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
"""

_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1 end
if held then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class _RedisSubscription:
    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        while True:
            if not self._pubsub.subscribed:
                raise StopAsyncIteration
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                return str(message["data"])

    async def aclose(self) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class RedisBroker:
    """`Broker` on Redis; every key starts with `prefix`."""

    def __init__(
        self, redis: Redis, *, prefix: str = "chatgate:", visibility_timeout_s: float = 60.0
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.visibility_timeout_s = visibility_timeout_s
        self._owner = uuid.uuid4().hex
        self._groups: set[str] = set()
        self._promote = redis.register_script(_PROMOTE)
        self._delay = redis.register_script(_DELAY)
        self._take = redis.register_script(_TAKE)
        self._pause = redis.register_script(_PAUSE)
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBroker:
        return cls(Redis.from_url(url, decode_responses=True), **options)

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    async def _ensure_group(self, stream: str) -> None:
        if stream in self._groups:
            return
        try:
            await self.redis.xgroup_create(stream, _GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(stream)

    async def enqueue(self, queue: str, payload: str, *, delay: float = 0) -> None:
        if delay > 0:
            member = f"{uuid.uuid4().hex}|{payload}"
            await self._delay(keys=[self._key("qd", queue)], args=[_ms(delay), member])
            return
        await self.redis.xadd(self._key("q", queue), {_FIELD: payload})

    async def consume(
        self, queue: str, consumer: str, *, count: int = 10, block_s: float = 1.0
    ) -> list[Job]:
        stream = self._key("q", queue)
        try:
            return await self._consume(queue, stream, consumer, count, block_s)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._groups.discard(stream)  # the stream was deleted under us
            return await self._consume(queue, stream, consumer, count, block_s)

    async def _consume(
        self, queue: str, stream: str, consumer: str, count: int, block_s: float
    ) -> list[Job]:
        await self._ensure_group(stream)
        next_due_ms = int(await self._promote(keys=[self._key("qd", queue), stream]))
        claimed = await self.redis.xautoclaim(
            stream, _GROUP, consumer, _ms(self.visibility_timeout_s), "0-0", count=count
        )
        jobs = [Job(str(id_), fields[_FIELD]) for id_, fields in claimed[1] if fields]
        if len(jobs) >= count:
            return jobs
        block_ms = int(block_s * 1000)
        if next_due_ms >= 0:
            block_ms = min(block_ms, max(next_due_ms, 1))
        if jobs or block_ms <= 0:
            block: int | None = None
        else:
            block = block_ms
        response = await self.redis.xreadgroup(
            _GROUP, consumer, {stream: ">"}, count=count - len(jobs), block=block
        )
        entries: list[Any]
        if isinstance(response, dict):  # RESP3
            entries = [item for batch in response.values() for item in batch]
        else:
            entries = [item for _name, batch in response or () for item in batch]
        jobs.extend(Job(str(id_), fields[_FIELD]) for id_, fields in entries if fields)
        return jobs

    async def ack(self, queue: str, job_id: str) -> None:
        stream = self._key("q", queue)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, _GROUP, job_id)
            pipe.xdel(stream, job_id)
            await pipe.execute()

    async def take(self, key: str, *, rate_per_s: float, burst: float) -> float:
        wait = await self._take(keys=[self._key("rate", key)], args=[rate_per_s, burst])
        return float(wait)

    async def pause(self, key: str, seconds: float) -> None:
        await self._pause(keys=[self._key("pause", key)], args=[_ms(seconds)])

    async def paused_for(self, key: str) -> float:
        left = int(await self.redis.pttl(self._key("pause", key)))
        return max(0, left) / 1000

    async def first_seen(self, key: str, ttl_s: float) -> bool:
        return bool(await self.redis.set(self._key("seen", key), "1", nx=True, px=_ms(ttl_s)))

    async def try_lock(self, name: str, ttl_s: float, *, holder: str | None = None) -> bool:
        token = holder or self._owner
        got = await self._acquire(keys=[self._key("lock", name)], args=[token, _ms(ttl_s)])
        return bool(got)

    async def release(self, name: str, *, holder: str | None = None) -> None:
        await self._release(keys=[self._key("lock", name)], args=[holder or self._owner])

    @asynccontextmanager
    async def lock(
        self, name: str, ttl_s: float, *, wait_s: float | None = None
    ) -> AsyncIterator[None]:
        key = self._key("lock", name)
        token = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = None if wait_s is None else loop.time() + wait_s
        while not await self._acquire(keys=[key], args=[token, _ms(ttl_s)]):
            if deadline is not None and loop.time() >= deadline:
                raise LockTimeout(f"lock {name!r} is held by someone else")
            await asyncio.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            await self._release(keys=[key], args=[token])

    async def publish(self, channel: str, message: str) -> None:
        await self.redis.publish(self._key("ch", channel), message)

    async def subscribe(self, channel: str) -> _RedisSubscription:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(self._key("ch", channel))
        # Wait for the server's confirmation: from then on nothing published is missed.
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") == "subscribe":
                break
        return _RedisSubscription(pubsub)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        await self.redis.aclose()

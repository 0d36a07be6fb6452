"""The broker contract: queue, rate limiter, dedupe keys, locks, pub/sub.

One process runs on `MemoryBroker`; several share a `RedisBroker`. Both pass the
same contract tests (tests/broker/test_contract.py), so code written against
`Broker` cannot tell them apart except by what survives a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Broker", "Job", "LockTimeout", "Subscription"]


@dataclass(frozen=True, slots=True)
class Job:
    """One queued payload handed to a consumer; `ack` it when done."""

    id: str
    payload: str


class LockTimeout(TimeoutError):
    """`lock()` waited longer than its `wait_s` for a lock somebody else holds."""


@runtime_checkable
class Subscription(Protocol):
    """Messages published on a channel after the subscription was made."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def __anext__(self) -> str: ...

    async def aclose(self) -> None: ...


class Broker(Protocol):
    """What the runtime needs from a broker; every method is safe to call concurrently."""

    # --- work queue: at-least-once; a job not acked within the visibility
    # timeout (its consumer died) is handed out again.
    async def enqueue(self, queue: str, payload: str, *, delay: float = 0) -> None: ...

    async def consume(
        self, queue: str, consumer: str, *, count: int = 10, block_s: float = 1.0
    ) -> list[Job]: ...

    async def ack(self, queue: str, job_id: str) -> None: ...

    # --- rate limiting
    async def take(self, key: str, *, rate_per_s: float, burst: float) -> float:
        """0.0 when a token was taken, else the seconds until one will be there."""
        ...

    async def pause(self, key: str, seconds: float) -> None:
        """Hold `key` for `seconds`; a shorter pause never cuts a longer one short."""
        ...

    async def paused_for(self, key: str) -> float: ...

    # --- dedupe
    async def first_seen(self, key: str, ttl_s: float) -> bool: ...

    # --- locks: `try_lock` is held by this broker instance (re-entrant, a second
    # call renews the TTL); `lock()` is exclusive even between tasks of one process.
    # `holder` names a contender of its own (a leader lease: SET NX PX, renewed by
    # calling again), so two contenders sharing one broker still exclude each other.
    async def try_lock(self, name: str, ttl_s: float, *, holder: str | None = None) -> bool: ...

    async def release(self, name: str, *, holder: str | None = None) -> None:
        """Let go of `name` if `holder` (default: this broker) holds it; else nothing."""
        ...

    def lock(
        self, name: str, ttl_s: float, *, wait_s: float | None = None
    ) -> AbstractAsyncContextManager[None]: ...

    # --- pub/sub: at-most-once, only to subscribers present when published.
    async def publish(self, channel: str, message: str) -> None: ...

    async def subscribe(self, channel: str) -> Subscription:
        """A live subscription: it hears everything published after this returns."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...

"""Queue, rate limiter, dedupe keys, locks and pub/sub: in memory or on Redis."""

from __future__ import annotations

from gateway.broker.base import Broker, Job, LockTimeout, Subscription
from gateway.broker.memory import MemoryBroker
from gateway.broker.redis import RedisBroker

__all__ = [
    "Broker",
    "Job",
    "LockTimeout",
    "MemoryBroker",
    "RedisBroker",
    "Subscription",
    "make_broker",
]


def make_broker(redis_url: str | None) -> Broker:
    """Redis when a URL is configured (many processes), memory otherwise (one)."""
    if redis_url:
        return RedisBroker.from_url(redis_url)
    return MemoryBroker()

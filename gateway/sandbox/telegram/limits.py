"""Flood limits as token buckets per bot, per chat and per group, on an injected clock.

Telegram's real limits are dynamic and unpublished; these defaults follow the Bot FAQ
(~30 msg/s overall, ~1 msg/s per chat with short bursts, 20 msg/min per group).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass(frozen=True)
class TelegramLimits:
    """Flood-control settings; enabled=False turns all of them off."""

    enabled: bool = True
    global_per_second: float = 30.0
    global_burst: int = 30
    per_chat_per_second: float = 1.0
    per_chat_burst: int = 3
    group_per_minute: float = 20.0
    group_burst: int = 20

    @classmethod
    def disabled(cls) -> TelegramLimits:
        """No flood control at all, for tests that send a lot quickly."""
        return cls(enabled=False)


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_needed(self) -> float:
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass
class FloodControl:
    """One bot's buckets; check() either takes a token from each or returns retry_after."""

    limits: TelegramLimits
    clock: Clock
    _buckets: dict[tuple[str, int], _Bucket] = field(default_factory=dict)

    def _bucket(self, key: tuple[str, int], rate: float, capacity: int, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(rate, float(capacity), float(capacity), now)
        bucket.refill(now)
        return bucket

    def check(self, chat_id: int, is_group: bool) -> int | None:
        """Take one message slot for chat_id, or return seconds to wait (nothing is taken)."""
        if not self.limits.enabled:
            return None
        now = self.clock()
        lim = self.limits
        buckets = [
            self._bucket(("global", 0), lim.global_per_second, lim.global_burst, now),
            self._bucket(("chat", chat_id), lim.per_chat_per_second, lim.per_chat_burst, now),
        ]
        if is_group:
            buckets.append(
                self._bucket(("group", chat_id), lim.group_per_minute / 60, lim.group_burst, now)
            )
        wait = max(bucket.wait_needed() for bucket in buckets)
        if wait > 0:
            return max(1, math.ceil(wait))
        for bucket in buckets:
            bucket.tokens -= 1
        return None

"""Per-bot lanes and per-chat buckets: how fast the outbox may talk to a platform.

A lane is one bot on one channel, (channel, account). Telegram allows about 30
messages a second per bot, 1 a second per chat with short bursts, 20 a minute per
group; VK about 20 a second per community token. The platform has the last word:
a 429 / VK error 6 or 9 pauses the lane (or the chat) for its `retry_after`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Bucket", "RateLimits", "RetryPolicy", "buckets", "chat_key", "lane_key"]


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Sending rates; the settings CHATGATE_TELEGRAM_RATE_PER_S etc. fill these in."""

    telegram_rate_per_s: float = 30.0
    telegram_chat_rate_per_s: float = 1.0
    telegram_chat_burst: float = 3.0
    telegram_group_rate_per_min: float = 20.0
    telegram_group_burst: float = 3.0
    vk_rate_per_s: float = 20.0
    # Added to a platform's retry_after: its clock and ours are not the same clock.
    pause_margin_s: float = 0.5


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for 5xx and timeouts, and when to give up.

    Rate-limited attempts (the platform said when to come back) do not count
    towards `max_attempts`; only `max_age_s` ends those.
    """

    max_attempts: int = 8
    max_age_s: float = 24 * 3600.0
    base_s: float = 2.0
    cap_s: float = 600.0
    jitter: float = 0.25  # +-25 %: spreads retries of one outage apart

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before retry number `attempt` (1 = the first retry)."""
        delay = min(self.cap_s, self.base_s * 2 ** max(0, attempt - 1))
        return float(delay * (1 - self.jitter + 2 * self.jitter * rand()))


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket on the broker: `rate_per_s` tokens a second, up to `burst`."""

    key: str
    rate_per_s: float
    burst: float


def lane_key(channel: str, account: str) -> str:
    return f"outbox:lane:{channel}:{account}"


def chat_key(channel: str, account: str, address: str) -> str:
    return f"outbox:chat:{channel}:{account}:{address}"


def buckets(limits: RateLimits, channel: str, account: str, address: str) -> list[Bucket]:
    """The buckets a send to `address` takes a token from, narrowest first."""
    lane = lane_key(channel, account)
    chat = chat_key(channel, account, address)
    if channel == "telegram":
        if address.startswith("-"):  # groups, supergroups and channels
            per_chat = Bucket(
                chat, limits.telegram_group_rate_per_min / 60.0, limits.telegram_group_burst
            )
        else:
            per_chat = Bucket(chat, limits.telegram_chat_rate_per_s, limits.telegram_chat_burst)
        rate = limits.telegram_rate_per_s
        return [per_chat, Bucket(lane, rate, max(1.0, rate))]
    if channel == "vk":
        return [Bucket(lane, limits.vk_rate_per_s, max(1.0, limits.vk_rate_per_s))]
    return []

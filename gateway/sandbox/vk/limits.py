"""Tunable limits of the VK emulator and the per-token request-rate window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """Wall-clock seconds; injected so rate limits and the random_id window are testable."""

    def __call__(self) -> float: ...


Sleeper = Callable[[float], Awaitable[None]]


def system_clock() -> float:
    """Default clock: Unix time, because VK message dates are Unix timestamps."""
    return time.time()


@dataclass(frozen=True, slots=True)
class VKLimits:
    """Numbers VK enforces (or that we assume it does); override them per test."""

    requests_per_second: int = 20
    """Community-token limit; the next call within the same second gets error 6."""
    max_message_length: int = 4096
    """Longer `message` texts get error 914 (vkbottle splits its answers at 4096)."""
    random_id_window: float = 3600.0
    """A repeated non-zero random_id to the same peer within this many seconds is a no-op."""
    identical_messages_per_peer: int | None = None
    """Same text to one peer more than this many times in a row gives error 9; None: off."""
    longpoll_history: int = 1000
    """Events kept for Long Poll; an older `ts` gets `failed: 1`."""
    longpoll_max_wait: float = 90.0
    callback_retries: int = 5
    """Resends after the first failed Callback API delivery of an event."""
    callback_retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)
    """Delay before each resend; the last value repeats."""
    callback_timeout: float = 5.0
    message_event_ttl: float = 60.0
    """A message_event's event_id can be answered for this long."""
    min_random_id_version: str = "5.90"
    new_event_shape_version: str = "5.103"
    groups_object_version: str = "5.194"


def version_tuple(version: str) -> tuple[int, ...]:
    """Turn "5.199" into (5, 199) for comparisons; garbage compares as (0,)."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def version_at_least(version: str, minimum: str) -> bool:
    return version_tuple(version) >= version_tuple(minimum)


class RateWindow:
    """Sliding one-second window of accepted calls per token."""

    def __init__(self, per_second: int, clock: Clock) -> None:
        self._per_second = per_second
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}

    def admit(self, token: str) -> bool:
        """Record a call and say whether it fits; rejected calls are not counted."""
        now = self._clock()
        calls = self._calls.setdefault(token, deque())
        while calls and now - calls[0] >= 1.0:
            calls.popleft()
        if len(calls) >= self._per_second:
            return False
        calls.append(now)
        return True

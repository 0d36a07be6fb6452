"""Quiet hours: the part of the customer's night when no marketing message goes out.

A message due inside the window is postponed to the window's end in the
customer's own time zone, never dropped (Braze and Knock hold; Novu cancels,
which is what its users complained about).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["QuietHours", "local_zone", "next_local_time"]

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def local_zone(name: str | None, default: ZoneInfo) -> ZoneInfo:
    """The customer's zone, or `default` when none or an unknown one is stored."""
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default


def next_local_time(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The next moment after `now` when the clock on the wall in `zone` shows `at`.

    A wall time that a DST jump skips comes out as the instant right after the jump.
    """
    local = now.astimezone(zone)
    candidate = _wall(local.date(), at, zone)
    if candidate <= now:
        candidate = _wall(local.date() + timedelta(days=1), at, zone)
    return candidate


def _wall(day: date, at: time, zone: ZoneInfo) -> datetime:
    aware = datetime.combine(day, at).replace(tzinfo=zone)
    # Round-trip through UTC normalises wall times a DST gap skips.
    return aware.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window, e.g. 21:00-09:00 (it may cross midnight); equal ends mean none."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """Read "HH:MM-HH:MM"; a ValueError says what is wrong."""
        found = _WINDOW.match(text)
        if found is None:
            raise ValueError(f"quiet hours must look like 21:00-09:00, not {text!r}")
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ValueError(f"quiet hours {text!r}: hours go to 23 and minutes to 59")
        return cls(time(h1, m1), time(h2, m2))

    def quiet_at(self, moment: datetime, zone: ZoneInfo) -> bool:
        """Whether `moment` falls inside the window on the wall clock of `zone`."""
        if self.start == self.end:
            return False
        wall = moment.astimezone(zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end

    def next_allowed(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        """When a send due at `moment` may go: None if now, else the window's end."""
        if not self.quiet_at(moment, zone):
            return None
        return next_local_time(moment, self.end, zone)

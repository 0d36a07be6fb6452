"""Working hours: is somebody there now, and when will somebody be.

Pure functions of an aware `now`; the clock is the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["WorkingHours", "parse_days", "parse_ranges"]

Interval = tuple[int, int]  # minutes since midnight, [start, end)

_DAY_NAMES = {
    "mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
    "пн": 0, "вт": 1, "ср": 2, "чт": 3, "пт": 4, "сб": 5, "вс": 6,
}  # fmt: skip
_SHORT = {
    "ru": ("пн", "вт", "ср", "чт", "пт", "сб", "вс"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_ON_DAY = {
    "ru": (
        "в понедельник", "во вторник", "в среду", "в четверг",
        "в пятницу", "в субботу", "в воскресенье",
    ),
    "en": (
        "on Monday", "on Tuesday", "on Wednesday", "on Thursday",
        "on Friday", "on Saturday", "on Sunday",
    ),
}  # fmt: skip
_WORDS = {
    "ru": {"today": "сегодня", "tomorrow": "завтра", "after": "после", "closed": "выходной"},
    "en": {"today": "today", "tomorrow": "tomorrow", "after": "after", "closed": "closed"},
}
_CLOSED = {"closed", "off", "выходной", "-", ""}
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–—]\s*(\d{1,2}):(\d{2})\s*$")


def parse_ranges(value: str | bool | None) -> tuple[Interval, ...]:
    """`"09:00-13:00, 14:00-18:00"` → intervals; `closed`/null/false → none."""
    if value is None or value is False or str(value).strip().lower() in _CLOSED:
        return ()
    out: list[Interval] = []
    for part in str(value).split(","):
        found = _RANGE.match(part)
        if not found:
            raise ValueError(f"expected 'HH:MM-HH:MM' or 'closed', got {part.strip()!r}")
        h1, m1, h2, m2 = (int(x) for x in found.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60:
            raise ValueError(f"no such time in {part.strip()!r}")
        if end <= start:
            raise ValueError(f"{part.strip()!r} ends before it starts")
        out.append((start, end))
    out.sort()
    return tuple(out)


def parse_days(key: str) -> tuple[int, ...]:
    """`"mon-fri"`, `"sat,sun"`, `"пн-пт"` → weekday numbers (Monday is 0)."""
    days: list[int] = []
    for part in key.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in _DAY_NAMES or (last and last not in _DAY_NAMES):
            raise ValueError(f"unknown day {part!r}; use mon..sun (or пн..вс), e.g. 'mon-fri'")
        a, b = _DAY_NAMES[first], _DAY_NAMES[last or first]
        days.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(days)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """The opening intervals of each weekday in one time zone."""

    zone: ZoneInfo
    week: tuple[tuple[Interval, ...], ...]  # seven entries, Monday first

    @classmethod
    def parse(cls, timezone: str, days: Mapping[str, str | bool | None]) -> WorkingHours:
        """Build from the script's `hours:`; raises ValueError naming what is wrong."""
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc
        week: list[tuple[Interval, ...]] = [()] * 7
        for key, value in days.items():
            intervals = parse_ranges(value)
            for day in parse_days(key):
                week[day] = intervals
        return cls(zone, tuple(week))

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.week[local.weekday()])

    def next_opening(self, now: datetime) -> datetime | None:
        """The first opening after `now` (None if it never opens)."""
        local = now.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            for start, _end in self.week[day.weekday()]:
                if offset == 0 and start <= minute:
                    continue
                return datetime.combine(day, time(start // 60, start % 60), tzinfo=self.zone)
        return None

    def when(self, now: datetime, at: datetime, language: str) -> str:
        """`завтра после 09:00`, `в понедельник после 09:00`, `today after 10:00`."""
        words = _WORDS[language]
        today: date = now.astimezone(self.zone).date()
        local = at.astimezone(self.zone)
        days = (local.date() - today).days
        if days == 0:
            day = words["today"]
        elif days == 1:
            day = words["tomorrow"]
        elif days < 7:
            day = _ON_DAY[language][local.weekday()]
        else:
            day = local.strftime("%d.%m")
        return f"{day} {words['after']} {local:%H:%M}"

    def describe(self, language: str) -> str:
        """`пн–пт 09:00–20:00, сб 10:00–16:00, вс выходной`."""
        names = _SHORT[language]
        parts: list[str] = []
        first = 0
        for day in range(1, 8):
            if day < 7 and self.week[day] == self.week[first]:
                continue
            span = names[first] if day - 1 == first else f"{names[first]}–{names[day - 1]}"
            intervals = self.week[first]
            hours = (
                ", ".join(f"{_hhmm(a)}–{_hhmm(b)}" for a, b in intervals)
                if intervals
                else _WORDS[language]["closed"]
            )
            parts.append(f"{span} {hours}")
            first = day
        return ", ".join(parts)

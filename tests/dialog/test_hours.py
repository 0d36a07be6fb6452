"""Working hours: open now, and the next opening across nights and weekends."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bots.dialog.hours import WorkingHours, parse_days, parse_ranges

MSK = ZoneInfo("Europe/Moscow")
SHOP = WorkingHours.parse(
    "Europe/Moscow", {"mon-fri": "09:00-20:00", "sat": "10:00-16:00", "sun": "closed"}
)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 5, day, hour, minute, tzinfo=MSK)  # 11 May 2026 is a Monday


@pytest.mark.parametrize(
    ("now", "is_open"),
    [
        (at(13, 12), True),
        (at(13, 8, 59), False),
        (at(13, 9), True),
        (at(13, 19, 59), True),
        (at(13, 20), False),
        (at(16, 15, 59), True),
        (at(16, 16), False),
        (at(17, 12), False),
    ],
)
def test_is_open(now: datetime, is_open: bool) -> None:
    assert SHOP.is_open(now) is is_open


@pytest.mark.parametrize(
    ("now", "expected", "phrase"),
    [
        (at(16, 17), at(18, 9), "в понедельник после 09:00"),  # Saturday evening
        (at(17, 12), at(18, 9), "завтра после 09:00"),  # Sunday
        (at(13, 21), at(14, 9), "завтра после 09:00"),
        (at(13, 7), at(13, 9), "сегодня после 09:00"),
        (at(15, 20, 30), at(16, 10), "завтра после 10:00"),  # Friday night → Saturday 10:00
    ],
)
def test_next_opening(now: datetime, expected: datetime, phrase: str) -> None:
    opening = SHOP.next_opening(now)
    assert opening == expected
    assert SHOP.when(now, expected, "ru") == phrase


def test_english_phrases_and_summary() -> None:
    assert SHOP.when(at(16, 17), at(18, 9), "en") == "on Monday after 09:00"
    assert SHOP.describe("en") == "Mon–Fri 09:00–20:00, Sat 10:00–16:00, Sun closed"
    assert SHOP.describe("ru") == "пн–пт 09:00–20:00, сб 10:00–16:00, вс выходной"


def test_lunch_break_and_never_open() -> None:
    hours = WorkingHours.parse("UTC", {"mon-sun": "09:00-13:00, 14:00-18:00"})
    lunch = datetime(2026, 5, 13, 13, 30, tzinfo=ZoneInfo("UTC"))
    assert not hours.is_open(lunch)
    assert hours.next_opening(lunch) == datetime(2026, 5, 13, 14, 0, tzinfo=ZoneInfo("UTC"))
    never = WorkingHours.parse("UTC", {"mon-sun": "closed"})
    assert never.next_opening(lunch) is None


def test_day_keys() -> None:
    assert parse_days("mon-fri") == (0, 1, 2, 3, 4)
    assert parse_days("sat, sun") == (5, 6)
    assert parse_days("пн-ср") == (0, 1, 2)
    assert parse_days("fri-mon") == (4, 5, 6, 0)
    with pytest.raises(ValueError, match="unknown day"):
        parse_days("funday")


@pytest.mark.parametrize("value", ["9-18", "25:00-26:00", "18:00-09:00", "09:00-24:01"])
def test_bad_ranges(value: str) -> None:
    with pytest.raises(ValueError, match=r"expected|no such time|ends before"):
        parse_ranges(value)

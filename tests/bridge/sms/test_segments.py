"""Segment counting against smsutil 1.1.3's results (sms-email.md §4.3)."""

from __future__ import annotations

import pytest

from gateway.bridge.sms.segments import (
    TooManySegments,
    check_segments,
    count_segments,
    is_gsm,
)

REFERENCE = [
    ("a" * 160, "gsm", (160,)),
    ("a" * 161, "gsm", (153, 8)),
    ("{" * 80, "gsm", (160,)),
    ("{" * 81, "gsm", (152, 10)),
    ("a" * 152 + "{", "gsm", (154,)),
    ("Ж" * 70, "ucs2", (140,)),
    ("Ж" * 71, "ucs2", (134, 8)),
    ("Ж" * 134, "ucs2", (134, 134)),
    ("Ж" * 135, "ucs2", (134, 134, 2)),
    ("😀" * 35, "ucs2", (140,)),
    ("😀" * 36, "ucs2", (132, 12)),
]


@pytest.mark.parametrize(("text", "encoding", "parts"), REFERENCE)
def test_matches_the_reference_counter(text: str, encoding: str, parts: tuple[int, ...]) -> None:
    segments = count_segments(text)
    assert segments.encoding == encoding
    assert segments.parts == parts
    assert segments.count == len(parts)


@pytest.mark.parametrize("char", ["€", "{", "}", "[", "]", "~", "|", "^", "\\", "\f"])
def test_extension_characters_cost_two_septets(char: str) -> None:
    assert count_segments(char * 80).parts == (160,)
    assert count_segments("a" * 159 + char).count == 2


@pytest.mark.parametrize("char", ["ê", "ç", "á", "í", "ó", "ú", "`", "Я", "ё", "—", "«"])
def test_one_non_gsm_character_switches_to_ucs2(char: str) -> None:
    segments = count_segments("a" * 69 + char)
    assert not is_gsm(char)
    assert segments.encoding == "ucs2"
    assert segments.parts == (140,)
    assert count_segments("a" * 70 + char).count == 2


def test_gsm_letters_outside_ascii_stay_7_bit() -> None:
    assert count_segments("Ç é ù ì ò Å Ä Ö Ñ Ü ß ΔΦΓΛΩΠΨΣΘΞ £¥¤§¿¡").encoding == "gsm"


def test_emoji_are_two_utf16_units() -> None:
    assert count_segments("Привет 👋").parts == (18,)
    # 66 units + an emoji (2) > 67 per part: the pair moves whole to the next part
    assert count_segments("Ж" * 66 + "😀" + "ЖЖЖ").parts == (132, 10)


def test_max_segments_refuses_instead_of_truncating() -> None:
    assert check_segments("Ж" * 134, 2).count == 2
    with pytest.raises(TooManySegments, match="3 ucs2 SMS parts, more than 2") as caught:
        check_segments("Ж" * 135, 2)
    assert caught.value.segments.count == 3

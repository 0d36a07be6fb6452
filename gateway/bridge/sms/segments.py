"""How many SMS parts a text costs: GSM 03.38 7-bit or UCS-2, as handsets count.

One character outside the GSM basic and extension tables (any Cyrillic letter,
`ê`, `ç`, an emoji) switches the whole message to UCS-2. Extension characters
(`€ { } [ ] ~ | ^ \\` and form feed) cost two septets, an escape pair is never split
across parts, and neither is a UTF-16 surrogate pair (3GPP TS 23.038; the numbers
match smsutil 1.1.3, see the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GSM_BASIC",
    "GSM_EXTENSION",
    "Segments",
    "TooManySegments",
    "check_segments",
    "count_segments",
    "is_gsm",
]

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM_SINGLE, GSM_PART = 160, 153  # septets; a part's UDH takes 7 septets
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units; a part's UDH takes 3 units


@dataclass(frozen=True, slots=True)
class Segments:
    """A text's encoding and the size of each part (septets for gsm, bytes for ucs2)."""

    encoding: Literal["gsm", "ucs2"]
    parts: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.parts)


class TooManySegments(ValueError):
    """The text needs more parts than allowed; we refuse rather than cut it."""

    def __init__(self, segments: Segments, limit: int) -> None:
        super().__init__(
            f"the text needs {segments.count} {segments.encoding} SMS parts, more than {limit}"
        )
        self.segments = segments
        self.limit = limit


def is_gsm(text: str) -> bool:
    """True if every character has a GSM 03.38 septet (basic or extension)."""
    return all(c in GSM_BASIC or c in GSM_EXTENSION for c in text)


def _split(costs: list[int], single: int, per_part: int) -> tuple[int, ...]:
    total = sum(costs)
    if total <= single:
        return (total,)
    parts: list[int] = []
    filled = 0
    for cost in costs:
        if filled + cost > per_part:
            parts.append(filled)
            filled = 0
        filled += cost
    parts.append(filled)
    return tuple(parts)


def count_segments(text: str) -> Segments:
    """The encoding a handset would use for `text` and how it splits into parts."""
    if is_gsm(text):
        septets = [2 if c in GSM_EXTENSION else 1 for c in text]
        return Segments("gsm", _split(septets, GSM_SINGLE, GSM_PART))
    units = [2 if ord(c) > 0xFFFF else 1 for c in text]
    parts = _split(units, UCS2_SINGLE, UCS2_PART)
    return Segments("ucs2", tuple(2 * n for n in parts))


def check_segments(text: str, max_segments: int) -> Segments:
    """`count_segments(text)`, or TooManySegments if it takes more than `max_segments`."""
    segments = count_segments(text)
    if segments.count > max_segments:
        raise TooManySegments(segments, max_segments)
    return segments

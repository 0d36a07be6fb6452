"""One page of a listing and the opaque cursor to the next."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Page", "decode_cursor", "encode_cursor"]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """`items` of one page; `next_cursor` is None on the last page."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(*values: Any) -> str:
    """The keyset `values` as url-safe text a client passes back unchanged."""
    data = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, ...]:
    """The values `encode_cursor` packed; ValueError("invalid cursor") otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(values, list) or not values:
        raise ValueError("invalid cursor")
    return tuple(values)


def int_cursor(cursor: str | None) -> int | None:
    """The single integer id a keyset cursor on id carries."""
    if cursor is None:
        return None
    (value, *rest) = decode_cursor(cursor)
    if rest or not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("invalid cursor")
    return value

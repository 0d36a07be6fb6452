"""Cursors are opaque, round-trip, and refuse garbage."""

from __future__ import annotations

import pytest

from storage.pages import decode_cursor, encode_cursor


def test_cursor_round_trips_and_is_url_safe() -> None:
    cursor = encode_cursor(12345, "2024-01-01T00:00:00+00:00")
    assert decode_cursor(cursor) == (12345, "2024-01-01T00:00:00+00:00")
    assert all(ch.isalnum() or ch in "-_" for ch in cursor)


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "e30", "W10"])
def test_malformed_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(cursor)

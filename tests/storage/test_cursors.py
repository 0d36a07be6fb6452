"""Poller positions survive a restart, on every backend."""

from __future__ import annotations

from storage.cursors import Cursors
from storage.db import Database


async def test_a_saved_cursor_is_loaded_back_and_overwritten(database: Database) -> None:
    cursors = Cursors(database)
    assert await cursors.load("vk:1") is None
    await cursors.save("vk:1", "41")
    await cursors.save("vk:1", "42")
    assert await cursors.load("vk:1") == "42"
    assert await Cursors(database).load("vk:2") is None

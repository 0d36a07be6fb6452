"""A whole chatgate process in the sandbox: emulators, bots, store, outbox, dialog."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gateway.app import App
from gateway.config import load_settings

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(probe: Callable[[], T | None], *, within: float = 15.0) -> T:
    """Poll `probe` until it returns something truthy; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def sandbox_app(tmp_path: Path) -> AsyncIterator[App]:
    """chatgate with no tokens configured: the sandbox, on SQLite, on a free port."""
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sandbox.db'}",
        http_port=free_port(),
        sandbox=True,
        api_key="test-key",
    )
    app = App(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.aclose()

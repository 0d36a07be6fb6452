"""An in-process SMTP relay (aiosmtpd on the test's own loop) that records what it gets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes import FakeRelay, relay_server


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    async with relay_server() as fake:
        yield fake

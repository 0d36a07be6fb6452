"""An in-process SMTP relay (aiosmtpd on the test's own loop) that records what it gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    """One message the relay accepted."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class FakeRelay:
    """Accepts everything, or answers RCPT with `rcpt_reply` when it is set."""

    port: int = 0
    rcpt_reply: str | None = None
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content
        assert isinstance(content, bytes)
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 OK"


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    fake = FakeRelay()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(fake, hostname="relay.test", loop=loop), "127.0.0.1", 0
    )
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()

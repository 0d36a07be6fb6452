"""Fakes at the seams, shared by the channel tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.channels import Inbound, Signal


@dataclass
class RecordingSink:
    """An in-memory router: remembers everything it is handed."""

    seen_keys: set[tuple[str, str]] = field(default_factory=set)
    inbounds: list[Inbound] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    reach: list[tuple[str, str, str, bool, str]] = field(default_factory=list)
    fail_inbounds: int = 0  # the next N inbound calls fail, as a store outage would

    async def seen(self, source: str, key: str) -> bool:
        return (source, key) in self.seen_keys

    async def first_seen(self, source: str, key: str) -> bool:
        if (source, key) in self.seen_keys:
            return False
        self.seen_keys.add((source, key))
        return True

    async def inbound(self, message: Inbound) -> None:
        if self.fail_inbounds:
            self.fail_inbounds -= 1
            raise RuntimeError("the store is down")
        update = message.update
        if update is not None and not await self.first_seen(update.source, update.key):
            return  # a resent update: the router stores nothing
        self.inbounds.append(message)

    async def signal(self, signal: Signal) -> None:
        self.signals.append(signal)

    async def reachability(
        self, channel: str, account: str, address: str, *, reachable: bool, reason: str
    ) -> None:
        self.reach.append((channel, account, address, reachable, reason))

    @property
    def untouched(self) -> bool:
        return not (self.seen_keys or self.inbounds or self.signals or self.reach)


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


@asynccontextmanager
async def relay_server() -> AsyncIterator[FakeRelay]:
    """An SMTP relay on the running loop, on a free loopback port."""
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

"""An in-process SMTP relay (aiosmtpd on the test's own loop), and a real Dovecot."""

from __future__ import annotations

import email
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import Message
from email.policy import default
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from gateway.bridge.email.adapter import EmailAdapter
from gateway.bridge.email.inbound import EmailEvents
from gateway.bridge.email.threads import MailThreads
from gateway.broker import MemoryBroker
from gateway.clock import FakeClock
from gateway.outbox import Outbox, Target
from gateway.router import Router
from storage.db import Database
from storage.models import Conversation, Delivery, Identity
from tests.bridge.email.dovecot import DOVECOT, Dovecot, available
from tests.conftest import free_port, service_missing
from tests.fakes import FakeRelay, relay_server


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    async with relay_server() as fake:
        yield fake


def _dovecot(tls: bool) -> Dovecot:
    if not available():
        service_missing("Dovecot", FileNotFoundError(f"{DOVECOT} (Debian dovecot-imapd)"))
    server = Dovecot(free_port(), free_port(), tls=tls)
    server.start()
    return server


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot IMAP server of this test's own, plain IMAP on a loopback port."""
    server = _dovecot(tls=False)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def dovecot_tls() -> Iterator[Dovecot]:
    """A Dovecot offering STARTTLS on its IMAP port and implicit TLS (imaps) on another."""
    server = _dovecot(tls=True)
    try:
        yield server
    finally:
        server.cleanup()


ROOM_ACCOUNT = "support@shop.example"
ROOM_DOMAIN = "shop.example"
ROOM_SECRET = "mailroom-secret"
ROOM_PUBLIC_URL = "https://chat.shop.example"


@dataclass
class Mailroom:
    """The whole email path on a real store: events → router, outbox → adapter → relay."""

    db: Database
    clock: FakeClock
    router: Router
    outbox: Outbox
    events: EmailEvents
    relay: FakeRelay

    async def receive(self, raw: bytes, to: str = ROOM_ACCOUNT) -> None:
        await self.events.handle(raw, envelope_to=[to])

    async def answer(self, conversation_id: int, **content: Any) -> tuple[Delivery, Message]:
        """Send `content` to the conversation's customer at the email they wrote from."""
        async with self.db.session() as session:
            conversation = await session.get(Conversation, conversation_id)
            assert conversation is not None
            identity = await session.scalar(
                sa.select(Identity).where(
                    col(Identity.customer_id) == conversation.customer_id,
                    col(Identity.channel) == "email",
                )
            )
        assert identity is not None
        assert identity.id is not None
        target = Target(
            conversation_id=conversation_id,
            customer_id=conversation.customer_id,
            channel="email",
            account=ROOM_ACCOUNT,
            address=identity.address,
            identity_id=identity.id,
        )
        before = len(self.relay.received)
        queued = await self.outbox.enqueue(target, **content)
        delivery = await self.outbox.wait_settled(queued.delivery_ids[0], timeout_s=10)
        assert delivery.status == "sent", delivery.error
        assert len(self.relay.received) == before + 1
        sent = email.message_from_bytes(self.relay.received[-1].content, policy=default)
        assert isinstance(sent, Message)
        return delivery, sent


@pytest.fixture
async def mailroom(database: Database, relay: FakeRelay) -> AsyncIterator[Mailroom]:
    clock = FakeClock()
    threads = MailThreads(database, ROOM_ACCOUNT)
    adapter = EmailAdapter(
        smtp_url=f"smtp://127.0.0.1:{relay.port}",
        from_addr=f"Shop <{ROOM_ACCOUNT}>",
        domain=ROOM_DOMAIN,
        verp_secret=ROOM_SECRET,
        public_url=ROOM_PUBLIC_URL,
        threads=threads,
        track=True,
        timeout=5.0,
    )
    outbox = Outbox(database, MemoryBroker(), [adapter], now=clock.now, block_s=0.05, grace_s=1.0)
    router = Router(database, clock=clock, outbox=outbox)
    events = EmailEvents(
        router, ROOM_ACCOUNT, domain=ROOM_DOMAIN, verp_secret=ROOM_SECRET, threads=threads
    )
    await outbox.start()
    try:
        yield Mailroom(database, clock, router, outbox, events, relay)
    finally:
        await outbox.aclose()
        await outbox.broker.aclose()

"""An in-process SMTP relay (aiosmtpd on the test's own loop), and a real Dovecot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

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

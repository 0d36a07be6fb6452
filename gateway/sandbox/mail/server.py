"""The sandbox's SMTP server: chatgate's relay in sandbox mode, a mailbox per recipient.

It runs aiosmtpd's protocol on the app's loop. The socket is bound when the
server is made, so the app knows the port (for `CHATGATE_SMTP_URL`) before
anything starts, and no other process can take it in between.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["MailServer"]

log = logging.getLogger(__name__)

Deliver = Callable[[bytes, str, list[str]], None]
Exists = Callable[[str], bool]


class _Handler:
    """Accepts mail for any address that looks like one and still exists, and hands it on."""

    def __init__(self, deliver: Deliver, exists: Exists) -> None:
        self._deliver = deliver
        self._exists = exists

    async def handle_RCPT(  # the name aiosmtpd calls
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local, at, domain = address.rpartition("@")
        if not (local and at and "." in domain):
            return "553 5.1.3 not a mailbox address"
        if not self._exists(address):
            # What a receiving server answers for a deleted account: a hard 5.1.1.
            return f"550 5.1.1 <{address}>: recipient address rejected: user unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else (content or "").encode()
        self._deliver(raw, envelope.mail_from or "", list(envelope.rcpt_tos))
        return "250 2.0.0 filed"


class MailServer:
    """SMTP on a loopback port chosen at construction; `start()` then `aclose()`."""

    def __init__(
        self, deliver: Deliver, *, exists: Exists = lambda _address: True, host: str = "127.0.0.1"
    ) -> None:
        self._handler = _Handler(deliver, exists)
        self._socket: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((host, 0))
        self.host, self.port = self._socket.getsockname()[:2]
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """`CHATGATE_SMTP_URL` for a chatgate that relays through this server."""
        return f"smtp://{self.host}:{self.port}"

    def _protocol(self) -> SMTP:
        return SMTP(
            self._handler,
            hostname="mail.sandbox.test",
            ident="chatgate sandbox mail",
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> None:
        if self._socket is None:
            raise RuntimeError("the sandbox mail server was closed")
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(self._protocol, sock=self._socket)
            log.info("sandbox mail: SMTP on %s:%s", self.host, self.port)

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        elif self._socket is not None:
            self._socket.close()
        self._socket = None

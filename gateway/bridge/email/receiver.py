"""A built-in SMTP receiver (aiosmtpd) to be our domain's MX, or behind one.

It runs on the app's own loop (`loop.create_server` with aiosmtpd's `SMTP`
protocol, not the threaded `Controller`). RCPT accepts only our own addresses:
`reply+…` and `bounce+…` at our domain and the configured mailboxes; anything
else is refused with 550 so that we never relay. DATA hands the bytes as they
came, with a `Return-Path` for the envelope sender, to `EmailEvents`; if that
fails the answer is 451, and the sending MTA retries later.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable
from typing import Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["MailEvents", "RecipientPolicy", "SmtpReceiver"]

log = logging.getLogger(__name__)

_DEFAULT_SIZE_LIMIT = 25 * 1024 * 1024


class MailEvents(Protocol):
    """What the receiver hands mail to (`EmailEvents`)."""

    async def handle(self, raw: bytes, *, envelope_to: list[str] | None = None) -> bool: ...


class RecipientPolicy:
    """Which RCPT addresses are ours: token addresses at our domain, and named mailboxes."""

    def __init__(self, accept_domain: str, accept_addresses: Iterable[str] = ()) -> None:
        self.domain = accept_domain.lower()
        self.addresses = frozenset(a.strip().lower() for a in accept_addresses)

    def accepts(self, address: str) -> bool:
        address = address.strip().strip("<>").lower()
        if address in self.addresses:
            return True
        local, at, domain = address.rpartition("@")
        if not at or domain != self.domain:
            return False
        prefix, plus, tag = local.partition("+")
        return bool(plus) and bool(tag) and prefix in {"reply", "bounce"}


class _Handler:
    """aiosmtpd's handler hooks, in our terms."""

    def __init__(self, events: MailEvents, policy: RecipientPolicy) -> None:
        self.events = events
        self.policy = policy

    async def handle_RCPT(  # the name aiosmtpd calls
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self.policy.accepts(address):
            log.info("email: refused RCPT %s from %s", address, session.peer)
            return "550 5.7.1 relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else (content or "").encode()
        sender = envelope.mail_from or ""
        if sender == "<>":
            sender = ""
        # What a final-delivery MTA adds: the parser then sees a null sender on bounces.
        raw = f"Return-Path: <{sender}>\r\n".encode() + raw
        try:
            await self.events.handle(raw, envelope_to=list(envelope.rcpt_tos))
        except Exception:
            log.exception("email: handling mail from %s failed; asked to retry", sender or "<>")
            return "451 4.3.0 temporary failure, try again later"
        return "250 2.0.0 OK"


class SmtpReceiver:
    """An SMTP server on the running loop; `start()` then `aclose()`."""

    def __init__(
        self,
        events: MailEvents,
        *,
        host: str,
        port: int,
        accept_domain: str,
        accept_addresses: Iterable[str] = (),
        hostname: str | None = None,
        data_size_limit: int = _DEFAULT_SIZE_LIMIT,
        timeout: float = 300.0,
    ) -> None:
        self.host = host
        self.port = port  # the bound port after start(), when 0 asked for any
        self.policy = RecipientPolicy(accept_domain, accept_addresses)
        self._handler = _Handler(events, self.policy)
        # Named, so aiosmtpd does not resolve our FQDN with a blocking call.
        self.hostname = hostname or f"mx.{self.policy.domain}"
        self.data_size_limit = data_size_limit
        self.timeout = timeout
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def _protocol(self) -> SMTP:
        protocol = SMTP(
            self._handler,
            hostname=self.hostname,
            ident="chatgate",
            data_size_limit=self.data_size_limit,
            timeout=self.timeout,
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(protocol)
        return protocol

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the SMTP receiver is already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("email: SMTP receiver on %s:%s", self.host, self.port)

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Open sessions outlive server.close(); an MTA mid-transfer retries.
            for session in list(self._sessions):
                if session.transport is not None:
                    session.transport.close()
            await server.wait_closed()

    async def __aenter__(self) -> SmtpReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

"""The email channel's outbound side: one `Outbound` → one SMTP transaction.

The relay is named by one URL, parsed with urllib:

- `smtp://user:pass@host:port`: plain, upgraded with STARTTLS when the server
  offers it (port 25 by default);
- `smtp+starttls://…`: STARTTLS required, the send fails without it (587);
- `smtps://…`: implicit TLS from the first byte (465).

User and password are optional and percent-decoded. Each message gets a VERP
envelope sender (`bounce+<delivery>-<sig>@domain`), so a bounce names our
delivery even when the report lacks the original headers. Marketing mail gets
RFC 8058 one-click unsubscribe to `{public_url}/unsubscribe/<token>`, the token
an HMAC over the delivery id (gateway.tracking.tokens). Every message's
Reply-To is its conversation's signed `reply+<token>@domain` (replies.py), and
with tracking on its links and pixel go through `/t/...` (tracked.py); a store
that cannot say which conversation a delivery is in makes the send retry
rather than go out unthreaded. SMTP answers map to `Failure`: 4xx, timeouts and
lost connections retry; 5xx is final, and marks the address unreachable when
the recipient's server says the mailbox does not exist (5.1.x, 5.2.1, or a
bare 550/551/553 on RCPT).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from gateway.bridge.email.bounces import verp_address
from gateway.bridge.email.compose import compose
from gateway.bridge.email.html_text import html_to_text
from gateway.bridge.email.replies import ReplyTokens
from gateway.bridge.email.threads import OutgoingThread
from gateway.bridge.email.tracked import Tracker
from gateway.channels import Failure, Outbound, Sent
from gateway.tracking.tokens import parse_unsubscribe_token, unsubscribe_token
from storage.addresses import normalize_email
from storage.errors import InvalidAddress

__all__ = [
    "EmailAdapter",
    "OutgoingThreads",
    "SmtpRelay",
    "parse_smtp_url",
    "parse_unsubscribe_token",
    "smtp_failure",
    "unsubscribe_token",
]

log = logging.getLogger(__name__)

_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_AUTH_CODES = frozenset({530, 534, 535, 538})
_CONFIG_PAUSE_S = 300.0  # our credentials or sender are refused: every message would fail


class OutgoingThreads(Protocol):
    """Where a delivery belongs (`MailThreads`): its conversation and parent mail."""

    async def outgoing(self, delivery_id: int) -> OutgoingThread | None: ...


@dataclass(frozen=True, slots=True)
class SmtpRelay:
    """Where and how to hand mail over, from `CHATGATE_SMTP_URL`."""

    host: str
    port: int
    use_tls: bool  # implicit TLS (smtps)
    start_tls: bool | None  # True: required; None: when offered
    username: str | None = None
    password: str | None = None


def parse_smtp_url(url: str) -> SmtpRelay:
    """`smtp://`, `smtp+starttls://` or `smtps://` [user[:pass]@]host[:port]."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _PORTS:
        raise ValueError(f"smtp url scheme must be one of {', '.join(_PORTS)}, not {scheme!r}")
    if not parts.hostname:
        raise ValueError(f"smtp url has no host: {url!r}")
    try:
        port = parts.port or _PORTS[scheme]
    except ValueError as exc:
        raise ValueError(f"smtp url has a malformed port: {exc}") from exc
    return SmtpRelay(
        host=parts.hostname,
        port=port,
        use_tls=scheme == "smtps",
        start_tls=True if scheme == "smtp+starttls" else (False if scheme == "smtps" else None),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _mailbox_gone(code: int, text: str) -> bool:
    """Whether a RCPT refusal says the mailbox does not exist (not policy, not full)."""
    found = _ENHANCED.search(text)
    if found is not None:
        klass, subject, detail = found.groups()
        return klass == "5" and (subject == "1" or (subject, detail) == ("2", "1"))
    return code in {550, 551, 553}


def smtp_failure(exc: Exception) -> Failure:
    """The `Failure` an aiosmtplib error means."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients[0] if exc.recipients else None
        if refused is None:
            return Failure("smtp: recipient refused", retryable=False)
        reason = f"smtp: RCPT {refused.code} {refused.message}"
        if refused.code >= 500:
            return Failure(reason, retryable=False, unreachable=_mailbox_gone(refused.code, reason))
        return Failure(reason, retryable=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and (
        isinstance(exc, aiosmtplib.SMTPAuthenticationError)
        or exc.code in _AUTH_CODES
        or (isinstance(exc, aiosmtplib.SMTPSenderRefused) and exc.code >= 500)
    ):
        code = exc.code
        # Our login or envelope sender is refused: a setup fault that would fail
        # every message alike, so pause the lane rather than drop mail for good.
        return Failure(
            f"smtp: relay refused us: {code} {exc}",
            retryable=True,
            retry_after=_CONFIG_PAUSE_S,
            lane_wide=True,
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return Failure(f"smtp: {exc}", retryable=True, retry_after=_CONFIG_PAUSE_S, lane_wide=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reason = f"smtp: {exc.code} {exc.message}"
        if exc.code == 421:
            return Failure(reason, retryable=True, lane_wide=True)
        return Failure(reason, retryable=exc.code < 500)
    if isinstance(
        exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected | TimeoutError
    ):
        return Failure(f"smtp: {type(exc).__name__}: {exc}", retryable=True, lane_wide=True)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | aiosmtplib.SMTPException | OSError):
        return Failure(f"smtp: {type(exc).__name__}: {exc}", retryable=True)
    return Failure(f"smtp: unexpected {type(exc).__name__}: {exc}", retryable=False)


def _references(value: object) -> Sequence[str]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(v for v in value if isinstance(v, str))
    return ()


class EmailAdapter:
    """Sends each `Outbound` through the SMTP relay as one transaction.

    With `threads`, every mail carries its conversation's signed reply address
    (`Reply-To: reply+<token>@domain`) and In-Reply-To/References to the
    conversation's earlier mail. With `track`, links in both parts lead through
    signed click redirects and the HTML part carries the open pixel.

    A connection per message: the outbox paces sends, and a relay that drops
    idle connections cannot strand one. `aclose` therefore has nothing to close.
    """

    channel = "email"

    def __init__(
        self,
        *,
        smtp_url: str,
        from_addr: str,
        domain: str,
        verp_secret: str,
        public_url: str,
        threads: OutgoingThreads | None = None,
        track: bool = False,
        timeout: float = 30.0,
        local_hostname: str | None = None,
    ) -> None:
        if not verp_secret:
            raise ValueError("CHATGATE_EMAIL_SECRET must not be empty")
        self.relay = parse_smtp_url(smtp_url)
        self.from_addr = from_addr
        self.account = normalize_email(from_addr.rsplit("<", 1)[-1].rstrip(">"))
        self.domain = domain.lower()
        self._secret = verp_secret
        self.public_url = public_url.rstrip("/")
        self._threads = threads
        self._tokens = ReplyTokens(verp_secret)
        self._tracker = Tracker(self.public_url, verp_secret) if track else None
        self.timeout = timeout
        self.local_hostname = local_hostname or self.domain

    def unsubscribe_url(self, delivery_id: int) -> str:
        """The one-click unsubscribe URL of one delivery."""
        return f"{self.public_url}/unsubscribe/{unsubscribe_token(delivery_id, self._secret)}"

    async def _thread(self, message: Outbound) -> OutgoingThread | None:
        if self._threads is None:
            return None
        return await self._threads.outgoing(message.delivery_id)

    def _tracked(self, message: Outbound, unsubscribe: str | None) -> Outbound:
        if self._tracker is None:
            return message
        delivery = message.delivery_id
        text = message.text
        if not text.strip() and message.html:
            text = html_to_text(message.html)
        return replace(
            message,
            text=self._tracker.text(delivery, text, unsubscribe_url=unsubscribe),
            html=self._tracker.html(delivery, message.html, unsubscribe_url=unsubscribe)
            if message.html and message.html.strip()
            else None,
        )

    async def send(self, message: Outbound) -> Sent | Failure:
        try:
            address = normalize_email(message.address)
        except InvalidAddress as exc:
            return Failure(f"email: {exc}", retryable=False, unreachable=True)
        try:
            thread = await self._thread(message)
        except Exception as exc:  # the store is down: a later attempt threads it right
            log.warning("email: thread of delivery %s unknown: %s", message.delivery_id, exc)
            return Failure(
                f"email: thread lookup failed: {type(exc).__name__}: {exc}", retryable=True
            )
        try:
            marketing = message.purpose == "marketing"
            unsubscribe = self.unsubscribe_url(message.delivery_id) if marketing else None
            in_reply_to = message.meta.get("in_reply_to")
            if not isinstance(in_reply_to, str):
                in_reply_to = thread.in_reply_to if thread else None
            references = _references(message.meta.get("references")) or (
                thread.references if thread else ()
            )
            if not message.subject and thread is not None and thread.subject:
                message = replace(message, subject=thread.subject)
            mail = compose(
                self._tracked(message, unsubscribe),
                from_addr=self.from_addr,
                reply_to=self._tokens.issue(thread.conversation_id) if thread else None,
                domain=self.domain,
                in_reply_to=in_reply_to,
                references=references,
                list_unsubscribe_url=unsubscribe,
                marketing=marketing,
            )
            sender = verp_address(message.delivery_id, self.domain, self._secret)
        except ValueError as exc:
            return Failure(f"email: {exc}", retryable=False)
        except Exception as exc:  # a bug in composing: never escape the outbox
            log.exception("email: composing delivery %s failed", message.delivery_id)
            return Failure(f"email: composing failed: {type(exc).__name__}: {exc}", retryable=False)
        try:
            await aiosmtplib.send(
                mail,
                sender=sender,
                recipients=[address],
                hostname=self.relay.host,
                port=self.relay.port,
                username=self.relay.username,
                password=self.relay.password,
                use_tls=self.relay.use_tls,
                start_tls=self.relay.start_tls,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
            )
        except Exception as exc:
            failure = smtp_failure(exc)
            log.warning("email: delivery %s not sent: %s", message.delivery_id, failure.reason)
            return failure
        return Sent(external_id=str(mail["Message-ID"]))

    async def aclose(self) -> None:
        """Nothing held between sends."""

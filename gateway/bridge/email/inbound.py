"""Received mail → our Inbound or Signal records, each message handed over once.

The same path serves every way mail arrives (the built-in SMTP receiver, an
IMAP poller, a pipe from the MTA): raw bytes plus, when known, the envelope
recipients. A bounce counts only when it came to a VERP address we signed;
anyone can mail us a report naming any address and delivery, so an unsigned
one is logged and dropped rather than allowed to suppress a customer. Other
mail becomes an `Inbound` from its sender, the quoted history cut off (the
whole body stays in `meta["full_text"]`); out-of-office replies are marked
`auto_reply` so nobody answers them.

Which conversation a reply joins: a `reply+<token>` recipient whose token we
signed names it (`meta["conversation_id"]`, whoever sent it: only someone who
got our mail knows the token); else an In-Reply-To/References naming mail we
sent to this very sender; else none, and the router goes by the sender's
address. Any other `reply+<token>` is handed on as `link_token` for the
linking work to judge (its continuation links write to such addresses).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any, Protocol

from gateway.bridge.email.bounces import Bounce, BouncedRecipient, parse_bounce, parse_verp
from gateway.bridge.email.compose import reply_token
from gateway.bridge.email.parsing import MailAttachment, ParsedMail, parse_message
from gateway.bridge.email.quotes import strip_reply
from gateway.bridge.email.replies import ReplyTokens
from gateway.channels import Attachment, Inbound, Signal, Sink
from gateway.once import Once
from storage.addresses import normalize_email
from storage.errors import InvalidAddress

__all__ = ["EmailEvents", "ThreadLookup", "suppresses"]

log = logging.getLogger(__name__)

_MAX_KEY = 200  # the store's external ids and dedupe keys


class ThreadLookup(Protocol):
    """Finds the conversation of mail we sent (`MailThreads`)."""

    async def replied_conversation(self, message_ids: Sequence[str], sender: str) -> int | None: ...


def suppresses(recipient: BouncedRecipient) -> bool:
    """Whether a bounce proves the address dead: 5.x.x but not full (5.2.2) or policy (5.7.x).

    A full mailbox or a spam/policy refusal says nothing about the address
    existing; those count as failed deliveries and the address stays reachable.
    """
    status = recipient.status or ""
    return recipient.hard and not (status == "5.2.2" or status.startswith("5.7."))


def _attachment(part: MailAttachment) -> Attachment:
    kind = "photo" if part.content_type.startswith("image/") and not part.inline else "document"
    data = {"content_id": part.content_id, "inline": True} if part.inline else {}
    return Attachment(
        kind=kind, name=part.filename, mime=part.content_type, size=part.size, data=data
    )


class EmailEvents:
    """Hands received mail for one mailbox to the sink: replies, bounces, once each."""

    def __init__(
        self,
        sink: Sink,
        account: str,
        *,
        domain: str,
        verp_secret: str,
        own_addresses: Iterable[str] = (),
        threads: ThreadLookup | None = None,
    ) -> None:
        self._sink = sink
        self._tokens = ReplyTokens(verp_secret)
        self._threads = threads
        self.account = account.lower()
        self.domain = domain.lower()
        self._secret = verp_secret
        self.own_addresses = frozenset({self.account, *(a.lower() for a in own_addresses)})
        self._once = Once(sink, f"email:{self.account}")

    async def handle(self, raw: bytes, *, envelope_to: list[str] | None = None) -> bool:
        """Hand one message to the sink unless it was handled before; False for a duplicate.

        Raises what the sink raised, so the sending MTA (or the poller) retries.
        """
        mail = parse_message(raw)
        key = mail.message_id or f"<sha256.{hashlib.sha256(raw).hexdigest()}@chatgate>"
        if len(key) > _MAX_KEY:  # real mailers write Message-IDs of any length
            key = f"<sha256.{hashlib.sha256(key.encode()).hexdigest()}@chatgate>"
        rcpts = [a.strip().strip("<>").lower() for a in envelope_to or ()]
        return await self._once.run(key, partial(self._deliver, mail, key, rcpts))

    async def store_reachable(self) -> bool:
        """Whether the store answers a read: tells a failing message from an outage."""
        try:
            await self._sink.seen(f"email:{self.account}", "<probe@chatgate>")
        except Exception:
            return False
        return True

    async def _deliver(self, mail: ParsedMail, key: str, rcpts: list[str]) -> None:
        recipients = list(dict.fromkeys([*rcpts, *mail.recipients]))
        verp = [a for a in recipients if a.startswith("bounce+")]
        signed = (parse_verp(a, self._secret) for a in verp)
        delivery_id = next((d for d in signed if d is not None), None)
        # An out-of-office reply to the envelope sender is still a message from
        # a person's mailbox; anything else sent to a bounce address is a report.
        if mail.bounce or (verp and not mail.auto_reply):
            await self._bounced(parse_bounce(mail), delivery_id, key)
            return
        await self._inbound(mail, key, recipients)

    async def _bounced(self, bounce: Bounce | None, delivery_id: int | None, key: str) -> None:
        if delivery_id is None:
            log.warning("email: bounce %s not sent to a VERP address we signed; ignored", key)
            return
        if bounce is not None and not bounce.failed:
            log.info("email: report %s for delivery %s names no failure", key, delivery_id)
            return
        if bounce is None:
            log.warning("email: bounce %s for delivery %s unreadable", key, delivery_id)
            await self._sink.signal(
                Signal(
                    kind="failed",
                    channel="email",
                    account=self.account,
                    delivery_id=delivery_id,
                    detail="unrecognised bounce",
                )
            )
            return
        for recipient in bounce.failed:
            dead = suppresses(recipient)
            await self._sink.signal(
                Signal(
                    kind="bounced" if dead else "failed",
                    channel="email",
                    account=self.account,
                    delivery_id=delivery_id,
                    address=recipient.address,
                    detail=recipient.status,
                )
            )
            if dead and recipient.address:
                await self._sink.reachability(
                    "email",
                    self.account,
                    recipient.address,
                    reachable=False,
                    reason=f"hard bounce {recipient.status}",
                )

    async def _inbound(self, mail: ParsedMail, key: str, recipients: list[str]) -> None:
        raw_sender = mail.sender.address if mail.sender else mail.return_path
        if not raw_sender:
            log.warning("email: message %s has no sender; ignored", key)
            return
        try:
            address = normalize_email(raw_sender)
        except InvalidAddress:
            address = raw_sender.strip().lower()
        if address in self.own_addresses:
            log.warning("email: message %s is from our own address %s; ignored", key, address)
            return
        tokens = [t for a in recipients if (t := reply_token(a, self.domain))]
        routed = await self._conversation(mail, tokens, address)
        link_token = next((t for t in tokens if self._tokens.conversation(t) is None), None)
        own = [*self.own_addresses, *(a for a in recipients if reply_token(a, self.domain))]
        await self._sink.inbound(
            Inbound(
                channel="email",
                account=self.account,
                address=address,
                text=strip_reply(mail.text, own_addresses=own),
                external_id=key,
                attachments=tuple(_attachment(a) for a in mail.attachments),
                name=mail.sender.name if mail.sender else None,
                link_token=link_token,
                sent_at=mail.date,
                auto_reply=mail.auto_reply,
                meta={
                    "subject": mail.subject,
                    "in_reply_to": mail.in_reply_to,
                    "references": list(mail.references),
                    "full_text": mail.text,
                    **routed,
                },
            )
        )

    async def _conversation(
        self, mail: ParsedMail, tokens: list[str], sender: str
    ) -> dict[str, Any]:
        """Which conversation the mail proved it belongs to, as Inbound meta (or none)."""
        for token in tokens:
            conversation_id = self._tokens.conversation(token)
            if conversation_id is not None:
                return {"conversation_id": conversation_id, "matched_by": "reply_token"}
        if self._threads is not None and mail.thread_ids:
            conversation_id = await self._threads.replied_conversation(mail.thread_ids, sender)
            if conversation_id is not None:
                return {"conversation_id": conversation_id, "matched_by": "in_reply_to"}
        return {}

"""Bounces: RFC 3464 reports, the plain-text ones real MTAs send, and VERP.

A bounce names the recipient and a status; RFC 3463 class 5 is hard (stop
writing to the address), class 4 soft (count it, retry later). The VERP
return path is the only authenticated link to our delivery: ids recovered
from the returned headers are hints that the caller must cross-check against
the delivery's address, because anyone can send us a fake report.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from email.message import Message

from gateway.bridge.email.headers import decode_header_text, header_text, message_ids
from gateway.bridge.email.parsing import ParsedMail, parse_message

__all__ = [
    "Bounce",
    "BouncedRecipient",
    "delivery_from_message_id",
    "parse_bounce",
    "parse_verp",
    "verp_address",
]

DELIVERY_HEADER = "X-Chatgate-Delivery"
_MESSAGE_ID = re.compile(r"^<chatgate\.(\d{1,18})\.[A-Za-z0-9_-]+@[^<>\s]+>$")
_VERP = re.compile(r"^bounce\+(\d{1,18})-([a-z2-7]{16})@(.+)$")
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_SMTP_CODE = re.compile(r"(?<![\d.])([45]\d\d)(?=[ -])")
_EMAIL = re.compile(r"<?([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>?")
_DAEMON = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)
# Where a plain-text bounce starts quoting the message it returns.
_ORIGINAL = re.compile(
    r"^\s*(?:-+\s*this is a copy of the message|-+\s*below this line is a copy|"
    r"-+\s*original message|original message headers|-+ ?forwarded message|"
    r"-+\s*the header of the original message|received:|return-path:)",
    re.IGNORECASE | re.MULTILINE,
)
_PERMANENT = re.compile(
    r"permanent(?:ly)? (?:error|failure|fatal)|failed permanently|i've given up|"
    r"could not be delivered|delivery has failed|user unknown|no such user|does not exist",
    re.IGNORECASE,
)
_TEMPORARY = re.compile(
    r"temporar(?:y|ily)|will (?:be )?retr|still trying|delayed|has not yet been delivered|"
    r"delivery status notification \(delay\)|retry timeout|mailbox (?:is )?full|over quota",
    re.IGNORECASE,
)
_SIG_BYTES = 10  # 80 bits: 16 base32 characters


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    """One recipient in a report; `status` is the RFC 3463 code when known."""

    address: str | None
    status: str | None = None
    action: str | None = None
    diagnostic: str | None = None
    original: str | None = None

    @property
    def hard(self) -> bool:
        """Permanent (5.x.x): suppress the address."""
        return self.status is not None and self.status.startswith("5")

    @property
    def soft(self) -> bool:
        """Transient (4.x.x) or a delay: count, do not suppress yet."""
        return self.status is not None and self.status.startswith("4")


@dataclass(frozen=True, slots=True)
class Bounce:
    """A delivery report about mail we sent."""

    recipients: tuple[BouncedRecipient, ...]
    standard: bool  # an RFC 3464 delivery-status part, not guessed from prose
    delivery_id: int | None = None  # from the returned headers: a hint, not proof
    original_message_id: str | None = None
    reporting_mta: str | None = None

    @property
    def hard(self) -> bool:
        return any(r.hard for r in self.recipients)

    @property
    def failed(self) -> tuple[BouncedRecipient, ...]:
        """Recipients that failed or were delayed, not the delivered/relayed ones."""
        return tuple(r for r in self.recipients if r.hard or r.soft)


def _key(secret: bytes | str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the VERP secret must not be empty")
    return key


def _signature(delivery_id: int, key: bytes) -> str:
    digest = hmac.new(key, f"chatgate-bounce:{delivery_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:_SIG_BYTES]).decode().lower()


def verp_address(delivery_id: int, domain: str, secret: bytes | str) -> str:
    """The envelope sender for one delivery: `bounce+<id>-<sig>@domain`."""
    if delivery_id < 0:
        raise ValueError(f"delivery id must not be negative, not {delivery_id}")
    return f"bounce+{delivery_id}-{_signature(delivery_id, _key(secret))}@{domain.lower()}"


def parse_verp(address: str, secret: bytes | str) -> int | None:
    """The delivery id of a VERP address we signed, or None (forged, mangled, other)."""
    found = _VERP.match(address.strip().strip("<>").lower())
    if found is None:
        return None
    delivery_id = int(found.group(1))
    expected = _signature(delivery_id, _key(secret))
    return delivery_id if hmac.compare_digest(expected, found.group(2)) else None


def delivery_from_message_id(message_id: str | None) -> int | None:
    """Our delivery id from a `<chatgate.<id>.<random>@domain>` Message-ID."""
    found = _MESSAGE_ID.match((message_id or "").strip())
    return int(found.group(1)) if found else None


def _rfc822_value(value: str | None) -> str | None:
    """`rfc822; a@b` -> `a@b`; other address types are returned as they are."""
    if not value:
        return None
    kind, _, rest = value.partition(";")
    address = rest if rest else kind
    return address.strip().strip("<>").lower() or None


def _status(value: str | None) -> str | None:
    found = _STATUS.search(value or "")
    return ".".join(found.groups()) if found else None


def _returned_headers(msg: Message) -> Message | None:
    """The headers of the message that bounced, wherever the report put them."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in {"message/rfc822", "message/rfc822-headers"}:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if ctype == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return parse_message(data.strip() + b"\n\n").message
    return None


def _ids_from(headers: Message | None, text: str) -> tuple[int | None, str | None]:
    delivery_raw: str | None = None
    message_id: str | None = None
    if headers is not None:
        delivery_raw = header_text(headers, DELIVERY_HEADER)
        ids = message_ids(header_text(headers, "Message-ID"))
        message_id = ids[0] if ids else None
    if delivery_raw is None:
        found = re.search(rf"^{DELIVERY_HEADER}:\s*(\d+)", text, re.IGNORECASE | re.MULTILINE)
        delivery_raw = found.group(1) if found else None
    if message_id is None:
        found = re.search(r"^Message-ID:\s*(<[^<>\s]+>)", text, re.IGNORECASE | re.MULTILINE)
        message_id = found.group(1) if found else None
    delivery_id = int(delivery_raw) if delivery_raw and delivery_raw.strip().isdigit() else None
    return delivery_id or delivery_from_message_id(message_id), message_id


def _standard(msg: Message) -> tuple[list[BouncedRecipient], str | None] | None:
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = [b for b in part.get_payload() if isinstance(b, Message)]
        if not blocks:
            return None
        mta = _rfc822_value(header_text(blocks[0], "Reporting-MTA"))
        recipients = []
        for block in blocks[1:]:
            final = header_text(block, "Final-Recipient")
            original = header_text(block, "Original-Recipient")
            diagnostic = header_text(block, "Diagnostic-Code")
            action = (header_text(block, "Action") or "").strip().lower() or None
            status = _status(header_text(block, "Status")) or _status(diagnostic)
            if status is None and action == "failed":
                status = "5.0.0"
            elif status is None and action == "delayed":
                status = "4.0.0"
            recipients.append(
                BouncedRecipient(
                    address=_rfc822_value(final) or _rfc822_value(original),
                    status=status,
                    action=action,
                    diagnostic=decode_header_text(diagnostic) if diagnostic else None,
                    original=_rfc822_value(original),
                )
            )
        return recipients, mta
    return None


def _guess_status(text: str) -> str | None:
    status = _status(text)
    if status is not None:
        return status
    code = _SMTP_CODE.search(text)
    if code is not None:
        return f"{code.group(1)[0]}.0.0"
    if _TEMPORARY.search(text):
        return "4.0.0"
    if _PERMANENT.search(text):
        return "5.0.0"
    return None


def _heuristic(mail: ParsedMail) -> list[BouncedRecipient]:
    """Recipients and statuses from an Exim/Postfix/qmail/Gmail/Exchange prose bounce."""
    text = mail.text
    cut = _ORIGINAL.search(text)
    report = text[: cut.start()] if cut else text
    ours = {a.address for a in (*mail.to, *mail.cc)} | set(mail.delivered_to)
    if mail.sender is not None:
        ours.add(mail.sender.address)
    found: list[tuple[int, str]] = []
    for match in _EMAIL.finditer(report):
        address = match.group(1).lower().rstrip(".")
        if address in ours or _DAEMON.match(address) or address in (a for _, a in found):
            continue
        found.append((match.start(), address))
    whole_status = _guess_status(report)
    recipients = []
    for index, (start, address) in enumerate(found):
        end = found[index + 1][0] if index + 1 < len(found) else len(report)
        chunk = report[start:end]
        status = _status(chunk) or whole_status
        if _TEMPORARY.search(report) and status and status.endswith(".0.0"):
            status = "4.0.0"
        diagnostic = next((ln.strip() for ln in chunk.splitlines() if _SMTP_CODE.search(ln)), None)
        recipients.append(BouncedRecipient(address=address, status=status, diagnostic=diagnostic))
    return recipients


def parse_bounce(mail: ParsedMail | bytes) -> Bounce | None:
    """The bounce report in `mail`, or None when it is not one."""
    parsed = parse_message(mail) if isinstance(mail, bytes) else mail
    if not parsed.bounce:
        return None
    returned = _returned_headers(parsed.message)
    delivery_id, original_id = _ids_from(returned, parsed.text)
    standard = _standard(parsed.message)
    if standard is not None:
        recipients, mta = standard
        return Bounce(tuple(recipients), True, delivery_id, original_id, mta)
    recipients = _heuristic(parsed)
    if not recipients:
        return None
    return Bounce(tuple(recipients), False, delivery_id, original_id, None)

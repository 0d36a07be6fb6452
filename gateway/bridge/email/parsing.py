"""One raw RFC 5322 message to a `ParsedMail`: addresses, threading, text, files.

Built for the mail people actually send: any charset Python knows, wrong or
missing labels, encoded words, nested multiparts, forwarded messages, HTML-only
newsletters. Parsing never raises on content; only a non-bytes argument fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import Message
from email.utils import parsedate_to_datetime

from gateway.bridge.email.charsets import decode_bytes
from gateway.bridge.email.headers import (
    decode_header_text,
    header_addresses,
    header_text,
    message_ids,
)
from gateway.bridge.email.html_text import html_to_text

__all__ = ["MailAddress", "MailAttachment", "ParsedMail", "parse_message"]


@dataclass(frozen=True, slots=True)
class MailAddress:
    """An address as written, lower-cased, with its decoded display name."""

    address: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class MailAttachment:
    """A file that came with the mail; `data` is the decoded content."""

    filename: str | None
    content_type: str
    size: int
    data: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """What chatgate needs from one inbound message; `message` is the stdlib tree."""

    sender: MailAddress | None
    to: tuple[MailAddress, ...]
    cc: tuple[MailAddress, ...]
    delivered_to: tuple[str, ...]  # Delivered-To, X-Original-To, Envelope-To
    reply_to: tuple[MailAddress, ...]
    subject: str
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    date: datetime | None
    text: str
    html: str | None
    attachments: tuple[MailAttachment, ...]
    auto_reply: bool
    bounce: bool
    return_path: str | None  # "" for the null sender <>
    message: Message = field(repr=False, compare=False)

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every address the mail was for, envelope first, without duplicates."""
        found = [*self.delivered_to, *(a.address for a in (*self.to, *self.cc))]
        return tuple(dict.fromkeys(found))

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """In-Reply-To then References, newest parent first, for conversation lookup."""
        ids = [self.in_reply_to] if self.in_reply_to else []
        return tuple(dict.fromkeys([*ids, *reversed(self.references)]))


_AUTO_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response)|auto:|autoreply|autoresponse|"
    r"out of (?:the )?office|ooo\b|abwesenheitsnotiz|absence|"
    r"автоответ|автоматический ответ|автоматическое уведомление|нет на месте|"
    r"в отпуске|вне офиса)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"mail delivery (?:failed|failure|system)|undeliver(?:ed|able)|delivery status notification|"
    r"returned mail|failure notice|delivery (?:has )?failed|could not be delivered|"
    r"недоставленное сообщение|не удалось доставить|сообщение не доставлено",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)


def _address(address: str) -> str:
    return address.strip().strip("<>").lower()


def _addresses(msg: Message, *names: str) -> tuple[MailAddress, ...]:
    pairs = header_addresses(msg, *names)
    unique = {_address(a): (n or None) for n, a in reversed(pairs)}
    return tuple(MailAddress(a, n) for a, n in reversed(unique.items()))


def _date(msg: Message) -> datetime | None:
    value = header_text(msg, "Date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _auto_reply(msg: Message, subject: str) -> bool:
    submitted = (header_text(msg, "Auto-Submitted") or "no").split(";")[0].strip().lower()
    precedence = (header_text(msg, "Precedence") or "").strip().lower()
    return (
        submitted != "no"
        or precedence in {"bulk", "junk", "list", "auto_reply", "auto-reply"}
        or header_text(msg, "X-Autoreply") is not None
        or header_text(msg, "X-Autorespond") is not None
        or bool(_AUTO_SUBJECT.search(subject))
    )


def _is_bounce(msg: Message, sender: MailAddress | None, subject: str, rpath: str | None) -> bool:
    ctype = msg.get_content_type()
    if ctype == "multipart/report":
        return str(msg.get_param("report-type") or "").lower() == "delivery-status"
    daemon = sender is not None and bool(_DAEMON.match(sender.address))
    return ((daemon or rpath == "") and bool(_BOUNCE_SUBJECT.search(subject))) or (
        daemon and "qmail-send program" in _first_text(msg)
    )


def _first_text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return _part_text(part)
    return ""


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: lines ending in a space continue on the next one."""
    out: list[str] = []
    joining = False
    for line in text.split("\n"):
        if line.startswith(" "):
            line = line[1:]  # space-stuffing
        if joining and out:
            out[-1] += line
        else:
            out.append(line)
        joining = line.endswith(" ") and line != "-- "
        if joining and delsp:
            out[-1] = out[-1][:-1]
    return "\n".join(out)


def _part_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    text = decode_bytes(data, part.get_content_charset()).replace("\r\n", "\n").replace("\r", "\n")
    if str(part.get_param("format") or "").lower() == "flowed":
        text = _unflow(text, str(part.get_param("delsp") or "").lower() == "yes")
    return text


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename() or part.get_param("name")
    except Exception:
        name = None
    if isinstance(name, tuple):  # compat32 returns (charset, language, value)
        name = name[2]
    if not isinstance(name, str) or not name.strip():
        return None
    return decode_header_text(name)


def _attachment(part: Message) -> MailAttachment:
    ctype = part.get_content_type()
    data: bytes
    if part.is_multipart() or ctype.startswith("message/"):
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            try:
                data = inner[0].as_bytes(policy=policy.compat32)
            except Exception:
                data = b""
        else:
            data = part.as_bytes(policy=policy.compat32).split(b"\n\n", 1)[-1]
    else:
        try:
            decoded = part.get_payload(decode=True)
        except Exception:
            decoded = None
        data = decoded if isinstance(decoded, bytes) else b""
    filename = _filename(part)
    if filename is None and ctype == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            subject = header_text(inner[0], "Subject")
            filename = f"{subject or 'message'}.eml"
    cid = header_text(part, "Content-ID")
    return MailAttachment(
        filename=filename,
        content_type=ctype,
        size=len(data),
        data=data,
        content_id=cid.strip("<> ") if cid else None,
        inline=part.get_content_disposition() == "inline",
    )


@dataclass
class _Bodies:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    files: list[MailAttachment] = field(default_factory=list)


def _collect(part: Message, into: _Bodies) -> None:
    ctype = part.get_content_type()
    if ctype == "message/rfc822":  # a forwarded mail is a file, not our text
        into.files.append(_attachment(part))
        return
    if part.is_multipart():
        subparts = [p for p in part.get_payload() if isinstance(p, Message)]
        if ctype == "multipart/alternative":
            branches = [_Bodies() for _ in subparts]
            for sub, branch in zip(subparts, branches, strict=True):
                _collect(sub, branch)
            plain = next((b.plain for b in branches if b.plain), [])
            html = next((b.html for b in reversed(branches) if b.html), [])
            into.plain.extend(plain)
            into.html.extend(html)
            for branch in branches:
                into.files.extend(branch.files)
        elif ctype == "multipart/report":
            if subparts:
                _collect(subparts[0], into)
            into.files.extend(_attachment(p) for p in subparts[1:])
        else:
            for sub in subparts:
                _collect(sub, into)
        return
    is_file = part.get_content_disposition() == "attachment" or _filename(part) is not None
    if ctype == "text/plain" and not is_file:
        into.plain.append(_part_text(part))
    elif ctype == "text/html" and not is_file:
        into.html.append(_part_text(part))
    else:
        into.files.append(_attachment(part))


def _parse(raw: bytes, use: policy.Policy) -> ParsedMail:
    msg = message_from_bytes(raw, policy=use)
    senders = _addresses(msg, "From") or _addresses(msg, "Sender")
    sender = senders[0] if senders else None
    subject = header_text(msg, "Subject") or ""
    rpath_raw = header_text(msg, "Return-Path")
    rpath = _address(rpath_raw) if rpath_raw is not None else None
    bodies = _Bodies()
    _collect(msg, bodies)
    html = "\n".join(bodies.html) if bodies.html else None
    text = "\n\n".join(t.strip("\n") for t in bodies.plain) if bodies.plain else ""
    if not text.strip() and html:
        text = html_to_text(html)
    ids = message_ids(header_text(msg, "Message-ID"))
    parents = message_ids(header_text(msg, "In-Reply-To"))
    delivered = header_addresses(msg, "Delivered-To", "X-Original-To", "Envelope-To")
    return ParsedMail(
        sender=sender,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        delivered_to=tuple(dict.fromkeys(_address(a) for _, a in delivered)),
        reply_to=_addresses(msg, "Reply-To"),
        subject=" ".join(subject.split()),
        message_id=ids[0] if ids else None,
        in_reply_to=parents[-1] if parents else None,
        references=message_ids(header_text(msg, "References")),
        date=_date(msg),
        text=text.strip("\n"),
        html=html,
        attachments=tuple(bodies.files),
        auto_reply=_auto_reply(msg, subject),
        bounce=_is_bounce(msg, sender, subject, rpath),
        return_path=rpath,
        message=msg,
    )


def parse_message(raw: bytes) -> ParsedMail:
    """Parse raw mail bytes; falls back to the lenient compat32 policy if needed."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError(f"parse_message wants bytes, not {type(raw).__name__}")
    data = bytes(raw)
    try:
        return _parse(data, policy.default)
    except Exception:
        return _parse(data, policy.compat32)

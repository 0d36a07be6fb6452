"""Mail filed per address: what a person sees in their mailbox, parsed once on arrival."""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from email.utils import getaddresses
from typing import Any, Literal

__all__ = ["Mail", "Mailboxes", "parse_mail"]

Folder = Literal["inbox", "sent"]
_ANGLED = re.compile(r"<([^<>\s]+)>")
# Headers the console shows; the rest stay in the raw message.
SHOWN = (
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
    "Return-Path",
)


@dataclass(slots=True)
class Mail:
    """One message in one mailbox, with what a mail client needs to show and answer it."""

    id: int
    mailbox: str
    folder: Folder
    sender: str  # the From address
    recipients: list[str]
    reply_to: str | None
    subject: str
    date: str | None
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    text: str
    html: str | None
    unsubscribe: list[str]  # List-Unsubscribe targets, in order
    one_click: bool  # List-Unsubscribe-Post: List-Unsubscribe=One-Click
    envelope_from: str
    headers: list[tuple[str, str]]
    raw: bytes = field(repr=False)

    @property
    def answer_to(self) -> str:
        """Where a reply goes: Reply-To if the message has one, else From (RFC 5322 §3.6.2)."""
        return self.reply_to or self.sender

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mailbox": self.mailbox,
            "folder": self.folder,
            "from": self.sender,
            "to": self.recipients,
            "reply_to": self.reply_to,
            "answer_to": self.answer_to,
            "subject": self.subject,
            "date": self.date,
            "message_id": self.message_id,
            "in_reply_to": self.in_reply_to,
            "references": self.references,
            "text": self.text,
            "html": self.html,
            "unsubscribe": self.unsubscribe,
            "one_click": self.one_click,
            "envelope_from": self.envelope_from,
            "headers": [list(pair) for pair in self.headers],
        }


def _addresses(message: EmailMessage, name: str) -> list[str]:
    return [a.lower() for _, a in getaddresses(message.get_all(name, [])) if "@" in a]


def _ids(value: str | None) -> list[str]:
    return [f"<{found}>" for found in _ANGLED.findall(value or "")]


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def parse_mail(raw: bytes, *, id: int, mailbox: str, folder: Folder, envelope_from: str) -> Mail:
    """Parse `raw` (any RFC 5322 message) into what the mailbox shows."""
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    reply_to = _addresses(message, "Reply-To")
    sender = _addresses(message, "From")
    unsubscribe = _ANGLED.findall(str(message.get("List-Unsubscribe", "")))
    post = str(message.get("List-Unsubscribe-Post", "")).replace(" ", "")
    text = _part(message, "plain")
    html = _part(message, "html")
    return Mail(
        id=id,
        mailbox=mailbox,
        folder=folder,
        sender=sender[0] if sender else envelope_from,
        recipients=_addresses(message, "To") + _addresses(message, "Cc"),
        reply_to=reply_to[0] if reply_to else None,
        subject=str(message.get("Subject", "")),
        date=str(message["Date"]) if message["Date"] else None,
        message_id=next(iter(_ids(str(message.get("Message-ID", "")))), None),
        in_reply_to=next(reversed(_ids(str(message.get("In-Reply-To", "")))), None),
        references=_ids(str(message.get("References", ""))),
        text=text if text is not None else "",
        html=html,
        unsubscribe=unsubscribe,
        one_click=post.lower() == "list-unsubscribe=one-click",
        envelope_from=envelope_from,
        headers=[(name, str(message[name])) for name in SHOWN if message[name] is not None],
        raw=raw,
    )


class Mailboxes:
    """Every address's mail, oldest first; a message is also found by its id."""

    def __init__(self) -> None:
        self._boxes: dict[str, list[Mail]] = {}
        self._by_id: dict[int, Mail] = {}

    def file(self, raw: bytes, *, mailbox: str, folder: Folder, envelope_from: str) -> Mail:
        mail = parse_mail(
            raw,
            id=len(self._by_id) + 1,
            mailbox=mailbox.lower(),
            folder=folder,
            envelope_from=envelope_from,
        )
        self._boxes.setdefault(mail.mailbox, []).append(mail)
        self._by_id[mail.id] = mail
        return mail

    def of(self, address: str) -> list[Mail]:
        return list(self._boxes.get(address.lower(), []))

    def addresses(self) -> list[str]:
        return list(self._boxes)

    def get(self, mail_id: int) -> Mail:
        """The message with `mail_id`; KeyError names it when there is none."""
        try:
            return self._by_id[mail_id]
        except KeyError:
            raise KeyError(f"no message {mail_id}") from None

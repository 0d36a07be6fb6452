"""The mail a person writes from a sandbox mailbox, as a mail client would write it.

A reply goes to the message's Reply-To (else its From), is titled "Re: …", and
threads with `In-Reply-To: <parent's Message-ID>` and `References: <parent's
References> <parent's Message-ID>` (RFC 5322 §3.6.4); below the new text it quotes
the parent under an attribution line, as clients do, so chatgate's quote
stripping has real work to do.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from gateway.sandbox.mail.mailboxes import Mail

__all__ = ["new_mail", "reply_to"]

_RE = re.compile(r"^\s*(re|ответ|aw)\s*:", re.IGNORECASE)


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "sandbox.test"


def _base(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    if "@" not in sender or "@" not in to:
        raise ValueError("both the sender and the recipient must be mail addresses")
    if not text.strip():
        raise ValueError("the text is empty")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=_domain(sender))
    message["User-Agent"] = "chatgate sandbox mail"
    return message


def new_mail(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    """A first message from `sender` to `to`, plain text."""
    message = _base(sender, to, subject.strip() or "(no subject)", text)
    message.set_content(text)
    return message


def reply_to(parent: Mail, text: str) -> EmailMessage:
    """The reply to `parent` from the mailbox it was filed in, quoting it."""
    subject = parent.subject if _RE.match(parent.subject) else f"Re: {parent.subject}"
    message = _base(parent.mailbox, parent.answer_to, subject, text)
    if parent.message_id:
        message["In-Reply-To"] = parent.message_id
        message["References"] = " ".join([*parent.references, parent.message_id])
    quoted = "\n".join(f"> {line}" if line else ">" for line in parent.text.splitlines())
    when = parent.date or "earlier"
    message.set_content(f"{text.rstrip()}\n\nOn {when}, {parent.sender} wrote:\n{quoted}\n")
    return message

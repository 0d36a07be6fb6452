"""One `Outbound` to an `EmailMessage`: threading, reply routing, unsubscribe.

Every message gets our own Message-ID (so replies thread back to us), a
per-conversation `Reply-To: reply+<token>@domain` (the primary routing key for
replies) and `X-Chatgate-Delivery`. Marketing mail carries RFC 2369/8058
one-click unsubscribe headers, which the DKIM signer must cover.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from urllib.parse import urlsplit

from gateway.bridge.email.bounces import DELIVERY_HEADER
from gateway.bridge.email.headers import message_ids
from gateway.bridge.email.html_text import html_to_text
from gateway.channels import Outbound

__all__ = ["compose", "make_message_id", "reply_address", "reply_token"]

_TOKEN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,58}$")
_REPLY = re.compile(r"^reply\+([^@\s]+)@([^@\s]+)$", re.IGNORECASE)
_CONTROL = re.compile(r"[\r\n\x00-\x1f\x7f]+")
_MAX_REFERENCES = 20  # clients keep the first and the last few; so do we


def _one_line(value: str) -> str:
    """Header text without CR/LF or control characters: no header injection."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _address(value: str) -> Address:
    pairs = getaddresses([_one_line(value)])
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        raise ValueError(f"expected exactly one address, not {value!r}")
    name, addr_spec = pairs[0]
    return Address(display_name=name, addr_spec=addr_spec)


def make_message_id(delivery_id: int, domain: str) -> str:
    """`<chatgate.<delivery_id>.<random>@domain>`: unique, and ours on sight."""
    return f"<chatgate.{delivery_id}.{secrets.token_urlsafe(12)}@{domain.lower()}>"


def reply_address(token: str, domain: str) -> str:
    """The per-conversation reply address `reply+<token>@domain`."""
    if not _TOKEN.match(token):
        raise ValueError(f"reply token must be lower-case [a-z0-9_-], 1-59 chars: {token!r}")
    return f"reply+{token}@{domain.lower()}"


def reply_token(address: str, domain: str | None = None) -> str | None:
    """The token of a `reply+<token>@domain` address (any case), or None.

    With `domain`, addresses at other domains are not ours and give None.
    """
    pairs = getaddresses([address])
    addr_spec = pairs[0][1] if pairs and pairs[0][1] else address.strip().strip("<>")
    found = _REPLY.match(addr_spec)
    if found is None:
        return None
    token, at = found.group(1).lower(), found.group(2).lower()
    if domain is not None and at != domain.lower():
        return None
    return token if _TOKEN.match(token) else None


def compose(
    out: Outbound,
    *,
    from_addr: str,
    reply_to: str | None,
    domain: str,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    list_unsubscribe_url: str | None = None,
    list_unsubscribe_mailto: str | None = None,
    marketing: bool = False,
    date: datetime | None = None,
) -> EmailMessage:
    """The email for `out`.

    `reply_to` is the conversation's reply token (not an address): the message
    gets `Reply-To: reply+<token>@<domain>`. `in_reply_to`/`references` thread
    it under earlier mail of the conversation. Marketing mail must have an https
    unsubscribe URL (Gmail and Yahoo require one-click unsubscribe for it).
    """
    if not out.text.strip() and not (out.html or "").strip():
        raise ValueError(f"delivery {out.delivery_id} has neither text nor html")
    marketing = marketing or out.purpose == "marketing"
    if marketing and not _one_click_url(list_unsubscribe_url):
        raise ValueError("marketing mail needs an https list_unsubscribe_url (RFC 8058)")
    msg = EmailMessage()
    msg["From"] = _address(from_addr)
    msg["To"] = _address(out.address)
    msg["Subject"] = _one_line(out.subject or "")
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id or make_message_id(out.delivery_id, domain)
    if reply_to:
        msg["Reply-To"] = reply_address(reply_to, domain)
    parents = message_ids(in_reply_to)
    chain = [*message_ids(" ".join(references)), *parents]
    chain = list(dict.fromkeys(chain))
    if len(chain) > _MAX_REFERENCES:
        chain = chain[:1] + chain[-(_MAX_REFERENCES - 1) :]
    if parents:
        msg["In-Reply-To"] = parents[-1]
    if chain:
        msg["References"] = " ".join(chain)
    msg[DELIVERY_HEADER] = str(out.delivery_id)
    if marketing:
        msg["Auto-Submitted"] = "auto-generated"
    if list_unsubscribe_url or list_unsubscribe_mailto:
        targets = [u for u in (list_unsubscribe_url, list_unsubscribe_mailto) if u]
        links = []
        for target in targets:
            target = _one_line(target)
            if target == list_unsubscribe_mailto and not target.lower().startswith("mailto:"):
                target = f"mailto:{target}"
            links.append(f"<{target}>")
        msg["List-Unsubscribe"] = ", ".join(links)
        if _one_click_url(list_unsubscribe_url):
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    text = out.text if out.text.strip() else html_to_text(out.html or "")
    # Quoted-printable keeps the parts 7-bit: no relay needs 8BITMIME for them.
    msg.set_content(text, cte="quoted-printable")
    if out.html and out.html.strip():
        msg.add_alternative(out.html, subtype="html", cte="quoted-printable")
    return msg


def _one_click_url(url: str | None) -> bool:
    """An https URL, as mailbox providers require; plain http only on this machine (the sandbox)."""
    if not url:
        return False
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}

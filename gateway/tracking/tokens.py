"""Signed tokens for the open pixel and the click redirect.

Each token is HMAC-signed with a purpose prefix of its own, so an open token
never passes as a click token, nor either as an unsubscribe or VERP signature,
even when they all share one secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "Click",
    "click_token",
    "click_url",
    "open_token",
    "open_url",
    "parse_click_token",
    "parse_open_token",
    "parse_unsubscribe_token",
    "unsubscribe_token",
]

_OPEN = re.compile(r"^(\d{1,18})\.([A-Za-z0-9_-]{22})(?:\.gif)?$")
_CLICK = re.compile(r"^(\d{1,18})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})$")
_UNSUB = re.compile(r"^(\d{1,18})\.([A-Za-z0-9_-]{22})$")
_MAX_TARGET = 4000  # long enough for any real link, short enough for a URL path


@dataclass(frozen=True, slots=True)
class Click:
    """A click token we signed: which delivery, and the only place it may lead."""

    delivery_id: int
    target: str


def _sign(purpose: str, message: bytes, secret: bytes | str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the tracking secret must not be empty")
    digest = hmac.new(key, f"chatgate-{purpose}:".encode() + message, hashlib.sha256)
    return _b64(digest.digest()[:16])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _check_id(delivery_id: int) -> None:
    if delivery_id < 0:
        raise ValueError(f"delivery id must not be negative, not {delivery_id}")


def safe_target(url: str) -> bool:
    """Whether a URL may be a redirect target: absolute http(s) with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.netloc) and url.isprintable()


def open_token(delivery_id: int, secret: bytes | str) -> str:
    """`<delivery id>.<hmac>`: the open pixel's path segment."""
    _check_id(delivery_id)
    return f"{delivery_id}.{_sign('open', str(delivery_id).encode(), secret)}"


def parse_open_token(token: str, secret: bytes | str) -> int | None:
    """The delivery id of an open token we signed, or None (forged, mangled)."""
    found = _OPEN.match(token)
    if found is None:
        return None
    delivery_id = int(found.group(1))
    expected = _sign("open", str(delivery_id).encode(), secret)
    return delivery_id if hmac.compare_digest(expected, found.group(2)) else None


def open_url(public_url: str, delivery_id: int, secret: bytes | str) -> str:
    """The 1×1 pixel's URL for one delivery."""
    return f"{public_url.rstrip('/')}/t/o/{open_token(delivery_id, secret)}"


def click_token(delivery_id: int, target_url: str, secret: bytes | str) -> str:
    """`<delivery id>.<target, base64url>.<hmac of both>`: the target can't be swapped."""
    _check_id(delivery_id)
    if not safe_target(target_url):
        raise ValueError(f"a tracked link must be an absolute http(s) URL, not {target_url!r}")
    if len(target_url) > _MAX_TARGET:
        raise ValueError(f"a tracked link must be at most {_MAX_TARGET} characters")
    target = target_url.encode()
    signature = _sign("click", f"{delivery_id}\n".encode() + target, secret)
    return f"{delivery_id}.{_b64(target)}.{signature}"


def parse_click_token(token: str, secret: bytes | str) -> Click | None:
    """The delivery and target of a click token we signed, or None."""
    found = _CLICK.match(token)
    if found is None or len(found.group(2)) > _MAX_TARGET * 2:
        return None
    delivery_id = int(found.group(1))
    try:
        target = _unb64(found.group(2))
    except (binascii.Error, ValueError):
        return None
    expected = _sign("click", f"{delivery_id}\n".encode() + target, secret)
    if not hmac.compare_digest(expected, found.group(3)):
        return None
    try:
        url = target.decode()
    except UnicodeDecodeError:
        return None
    # Only ever signed after the same check; repeated so a leaked secret can't make
    # the redirect lead to javascript: or data: URLs.
    return Click(delivery_id, url) if safe_target(url) else None


def click_url(public_url: str, delivery_id: int, target_url: str, secret: bytes | str) -> str:
    """The tracked link that records a click on `delivery_id` and leads to `target_url`."""
    return f"{public_url.rstrip('/')}/t/c/{click_token(delivery_id, target_url, secret)}"


def _unsubscribe_sig(delivery_id: int, secret: bytes | str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the unsubscribe secret must not be empty")
    # A purpose prefix of its own: a VERP signature never passes as this one.
    digest = hmac.new(key, f"chatgate-unsubscribe:{delivery_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:16]).decode().rstrip("=")


def unsubscribe_token(delivery_id: int, secret: bytes | str) -> str:
    """`<delivery id>.<hmac>`: opaque in the unsubscribe URL, unforgeable without `secret`."""
    if delivery_id < 0:
        raise ValueError(f"delivery id must not be negative, not {delivery_id}")
    return f"{delivery_id}.{_unsubscribe_sig(delivery_id, secret)}"


def parse_unsubscribe_token(token: str, secret: bytes | str) -> int | None:
    """The delivery id of a token we signed, or None (forged, mangled)."""
    found = _UNSUB.match(token.strip())
    if found is None:
        return None
    delivery_id = int(found.group(1))
    expected = _unsubscribe_sig(delivery_id, secret)
    return delivery_id if hmac.compare_digest(expected, found.group(2)) else None

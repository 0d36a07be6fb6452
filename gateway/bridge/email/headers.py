"""Header values to text: encoded words, raw 8-bit bytes, address lists, ids.

The stdlib decodes most of this, but replaces raw 8-bit header bytes with
U+FFFD and has no say in which charset to guess; these functions work on the
raw value (`Message.raw_items()`) so the guess is ours and never raises.
"""

from __future__ import annotations

import base64
import binascii
import re
from email.message import Message
from email.quoprimime import header_decode
from email.utils import getaddresses

from gateway.bridge.email.charsets import decode_bytes

__all__ = ["decode_header_text", "header_addresses", "header_text", "message_ids"]

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(=\?)")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_MSG_ID = re.compile(r"<[^<>\s]+>")


def _unescape(value: str) -> str:
    """Raw 8-bit header bytes (kept as surrogates by the parser) decoded by guess."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    return decode_bytes(value.encode("utf-8", "surrogateescape"))


def _decode_word(match: re.Match[str]) -> str:
    charset, kind, payload = match.group(1), match.group(2).upper(), match.group(3)
    charset = charset.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*ru
    try:
        if kind == "B":
            data = base64.b64decode(payload + "=" * (-len(payload) % 4))
        else:
            data = header_decode(payload).encode("latin-1")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return match.group(0)
    return decode_bytes(data, charset)


def decode_header_text(value: str) -> str:
    """Unfolded, decoded text of one raw header value."""
    value = _unescape(_FOLD.sub("", value))
    if "=?" in value:
        value = _ENCODED_WORD.sub(_decode_word, _BETWEEN_WORDS.sub(r"\1\2", value))
    return value.strip()


def _raw(msg: Message, name: str) -> list[str]:
    lower = name.lower()
    try:
        return [str(v) for k, v in msg.raw_items() if k.lower() == lower]
    except Exception:
        return []


def header_text(msg: Message, name: str) -> str | None:
    """The first `name` header as text, or None."""
    values = _raw(msg, name)
    return decode_header_text(values[0]) if values else None


def header_addresses(msg: Message, *names: str) -> list[tuple[str, str]]:
    """(display name, address) pairs from every `names` header, names decoded."""
    raw = [_unescape(_FOLD.sub("", v)) for name in names for v in _raw(msg, name)]
    pairs: list[tuple[str, str]] = []
    for display, address in getaddresses(raw):
        address = address.strip()
        if not address or "@" not in address:
            continue
        pairs.append((decode_header_text(display).strip("\"' "), address))
    return pairs


def message_ids(value: str | None) -> tuple[str, ...]:
    """Every `<id>` in a Message-ID / In-Reply-To / References value, in order."""
    if not value:
        return ()
    found = _MSG_ID.findall(value)
    if not found and value.strip() and " " not in value.strip():
        found = [f"<{value.strip().strip('<>')}>"]  # bare ids from sloppy clients
    seen: dict[str, None] = dict.fromkeys(found)
    return tuple(seen)

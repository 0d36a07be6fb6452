"""Bytes of a mail part or header to text, whatever its label claims.

Real mail carries unknown labels (`x-unknown`, `utf8mb4`), wrong labels (UTF-8
sent as `us-ascii` or `iso-8859-1`, cp1251 sent as `utf-8`) and no label at
all (8bit bodies without a charset). Decoding never raises.
"""

from __future__ import annotations

import codecs

__all__ = ["decode_bytes", "known_charset"]

_ALIASES = {
    "utf8mb4": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
    "win-1251": "cp1251",
    "windows-1251-": "cp1251",
    "x-cp1251": "cp1251",
    "cp-1251": "cp1251",
    "ks_c_5601-1987": "cp949",
    "x-mac-cyrillic": "mac-cyrillic",
    "x-user-defined": "latin-1",
    "unknown-8bit": "",
    "x-unknown": "",
    "default": "",
}
# Labels often put on text that is really UTF-8: if the bytes are valid UTF-8
# and not plain ASCII, the label is the thing that is wrong.
_WEAK = frozenset({"ascii", "latin-1", "iso8859-1", "cp1252", "iso8859-15"})


def known_charset(label: str | None) -> str | None:
    """Python's codec name for a MIME charset label, or None if Python has none."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _ALIASES.get(name, name)
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_bytes(data: bytes, label: str | None = None) -> str:
    """Text of `data`: the label if it fits, then UTF-8, then cp1251 with replacement."""
    codec = known_charset(label)
    if codec in _WEAK and not data.isascii():
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    if codec is not None:
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if codec is not None:
        # The label is right more often than a guess, even with a few bad bytes.
        try:
            text = data.decode(codec, errors="replace")
        except LookupError:
            text = ""
        if text and text.count("\ufffd") * 50 <= len(text):
            return text
    # Unlabelled 8-bit mail in this market is overwhelmingly windows-1251.
    return data.decode("cp1251", errors="replace")

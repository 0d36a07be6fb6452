"""Per-conversation reply tokens: `reply+<conversation>-<signature>@domain`.

The token names its conversation and proves we minted it: an HMAC-SHA256 over
the conversation id with `CHATGATE_EMAIL_SECRET` (its own purpose prefix, so no
other signature of ours passes as one), truncated to 130 bits and written in
lower-case base32, because mail systems may fold the case of a local part.
Checking one needs no lookup table. Anything else after `reply+` is not ours to
judge here (the linking work's continuation tokens are 32 hex digits).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

__all__ = ["ReplyTokens"]

_TOKEN = re.compile(r"^(\d{1,18})-([a-z2-7]{26})$")


class ReplyTokens:
    """Mints and checks conversation reply tokens with one secret."""

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if not key:
            raise ValueError("CHATGATE_EMAIL_SECRET must not be empty")
        self._key = key

    def _signature(self, conversation_id: int) -> str:
        digest = hmac.new(
            self._key, f"chatgate-reply:{conversation_id}".encode(), hashlib.sha256
        ).digest()
        # 17 bytes → 27 base32 characters; the first 26 carry 130 bits.
        return base64.b32encode(digest[:17]).decode().lower()[:26]

    def issue(self, conversation_id: int) -> str:
        """The token of one conversation; the same every time."""
        if conversation_id < 0:
            raise ValueError(f"conversation id must not be negative, not {conversation_id}")
        return f"{conversation_id}-{self._signature(conversation_id)}"

    def conversation(self, token: str) -> int | None:
        """The conversation a token we signed names, or None (forged, mangled, not ours)."""
        found = _TOKEN.match(token.strip().lower())
        if found is None:
            return None
        conversation_id = int(found.group(1))
        expected = self._signature(conversation_id)
        return conversation_id if hmac.compare_digest(expected, found.group(2)) else None

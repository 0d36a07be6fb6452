"""Long texts cut at a platform's length limit, at the gentlest boundary there is.

Paragraphs first, then sentences, then words; a word is cut only when it alone
is longer than the limit. Channels not in `SPLIT_LIMITS` are never split: SMS
counts segments on its own, email has no practical limit.
"""

from __future__ import annotations

import html
import re

__all__ = ["SPLIT_LIMITS", "split_for", "split_html", "split_text", "strip_tags"]

# Characters per message. VK documents 9000 for messages.send but long messages
# fail in practice well below it; 4096 is what both clients render comfortably.
SPLIT_LIMITS: dict[str, int] = {"telegram": 4096, "vk": 4096}

# Each boundary keeps its separator at the end of the piece before it.
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n\s*"),  # paragraph
    re.compile(r"(?<=[.!?…])[\"»”')\]]*\s+"),  # sentence end, closing quotes included
    re.compile(r"\s+"),  # word
)


def split_for(channel: str, text: str) -> list[str]:
    """`text` in parts that each fit `channel`'s limit (one part when no limit)."""
    limit = SPLIT_LIMITS.get(channel)
    if limit is None:
        return [text]
    return split_text(text, limit)


def split_text(text: str, limit: int) -> list[str]:
    """`text` in order-preserving parts of at most `limit` characters."""
    if limit < 1:
        raise ValueError("limit must be positive")
    if len(text) <= limit:
        return [text]
    return [part for part in _pack(text, limit, 0) if part]


def _pieces(text: str, pattern: re.Pattern[str]) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _pack(text: str, limit: int, level: int) -> list[str]:
    text = text.strip()
    if len(text) <= limit:
        return [text]
    if level == len(_BOUNDARIES):
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    parts: list[str] = []
    current = ""
    for piece in _pieces(text, _BOUNDARIES[level]):
        if len(piece.strip()) > limit:
            if current.strip():
                parts.append(current.strip())
            current = ""
            parts.extend(_pack(piece, limit, level + 1))
        elif len((current + piece).strip()) <= limit:
            current += piece
        else:
            parts.append(current.strip())
            current = piece
    if current.strip():
        parts.append(current.strip())
    return parts


_TAG = re.compile(r"<[^>]*>")


def strip_tags(markup: str) -> str:
    """The visible text of Telegram-style HTML."""
    return html.unescape(_TAG.sub("", markup))


def split_html(markup: str, limit: int) -> list[str]:
    """HTML in parts at the same boundaries as text.

    Parts are measured with their tags, which is stricter than the platform (it
    counts visible characters). A tag spanning a boundary is not re-balanced;
    Telegram's HTML rarely spans paragraphs, and a part it rejects fails visibly.
    """
    return split_text(markup, limit)

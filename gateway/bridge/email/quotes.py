"""The new part of a reply: quoted history, attribution lines and signatures cut.

Our own rules, because no maintained library knows Russian clients (see the
reference notes, section 9). Conservative on purpose: losing what the customer
wrote is worse than showing a signature, and an empty result gives back the
original text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["strip_reply"]

_EMAIL = r"[^\s<>@]+@[^\s<>@]+"
_DATEISH = (
    r"(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,2}:\d{2}|"
    r"\b(?:19|20)\d{2}\b|\b(?:mon|tue|wed|thu|fri|sat|sun)\b|"
    r"\b(?:пн|вт|ср|чт|пт|сб|вс)\b|понедельник|вторник|среда|четверг|пятница|суббота|воскресенье)"
)
# Lines that open the quoted previous message whatever follows them.
_HARD_CUT = re.compile(
    r"^\s*(?:"
    r"-{2,}\s*(?:original message|исходное сообщение|исходное письмо)\s*-{2,}"
    r"|on\b.{0,250}\bwrote:"  # Gmail, Apple Mail, Thunderbird in English
    r"|le\b.{0,200}\ba écrit\s*:"
    r"|am\b.{0,200}\bschrieb.{0,80}:"
    r")\s*$",
    re.IGNORECASE,
)
_WROTE = re.compile(
    r"\b(?:написал(?:а|\(а\))?|написала|пишет|wrote|schrieb|escribió|ha scritto)\s*:\s*$",
    re.IGNORECASE,
)
_WROTE_EARLIER = re.compile(r"\b(?:написал(?:а|\(а\))?|пишет|wrote)\b.*:\s*$", re.IGNORECASE)
_HAS_DATE = re.compile(_DATEISH, re.IGNORECASE)
_HAS_EMAIL = re.compile(_EMAIL)
# Yandex / Mail.ru / Russian Gmail: a date and an address, then a colon.
_ATTRIBUTION = re.compile(rf"^.{{0,250}}{_DATEISH}.{{0,250}}<?{_EMAIL}>?\s*:\s*$", re.IGNORECASE)
_STARTS_ATTRIBUTION = re.compile(rf"^\s*(?:on\b|le\b|am\b|{_DATEISH})", re.IGNORECASE)
_RULE = re.compile(r"^\s*_{10,}\s*$")  # Outlook on the web, before its From/Sent block
_HEADER_FROM = re.compile(r"^\s*\*?(?:from|от|von|de)\s*:\*?\s+\S", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(?:sent|date|to|subject|отправлено|дата|кому|тема|gesendet|envoyé)\s*:",
    re.IGNORECASE,
)
_SIGNATURE = re.compile(r"^-- ?$")
_FOOTER = re.compile(
    r"^\s*(?:sent from my\b|sent from (?:mail|outlook|yahoo|gmail)\b|sent with\b|"
    r"get outlook for\b|отправлено (?:с|со|из)\b|отправлено через\b)",
    re.IGNORECASE,
)
_SIGNATURE_MAX_LINES = 12
_FOOTER_MAX_CHARS = 80


def _joined(lines: list[str], i: int) -> Iterable[tuple[int, str]]:
    """(span, text): line i alone, then joined with the next one or two lines,
    because clients wrap long attribution lines."""
    yield 1, lines[i]
    if not _STARTS_ATTRIBUTION.match(lines[i]):
        return
    for span in (2, 3):
        if i + span <= len(lines) and all(line.strip() for line in lines[i : i + span]):
            yield span, " ".join(line.strip() for line in lines[i : i + span])


def _quote_follows(lines: list[str], i: int) -> bool:
    following = next((line for line in lines[i:] if line.strip()), "")
    return following.lstrip().startswith(">")


def _opens_quote(lines: list[str], i: int, own: tuple[str, ...]) -> bool:
    line = lines[i]
    if own and line.rstrip().endswith(":") and any(a in line.lower() for a in own):
        return True
    if _RULE.match(line) and any(_HEADER_FROM.match(f) for f in lines[i + 1 : i + 3]):
        return True
    if _HEADER_FROM.match(line) and any(_HEADER_NEXT.match(f) for f in lines[i + 1 : i + 5]):
        return True
    for span, text in _joined(lines, i):
        if _HARD_CUT.match(text):
            return True
        if _WROTE.search(text) and (_HAS_DATE.search(text) or _HAS_EMAIL.search(text)):
            return True
        dated = _HAS_DATE.search(text) or _HAS_EMAIL.search(text)
        if (_ATTRIBUTION.match(text) or (_WROTE_EARLIER.search(text) and dated)) and (
            _quote_follows(lines, i + span)
        ):
            return True
    return False


def _cut_at(lines: list[str], own: tuple[str, ...]) -> int:
    """Index of the first line of quoted history, or len(lines)."""
    for i, line in enumerate(lines):
        if not line.lstrip().startswith(">") and _opens_quote(lines, i, own):
            return i
    return len(lines)


def _drop_signature(lines: list[str]) -> list[str]:
    for i, line in enumerate(lines):
        if _SIGNATURE.match(line) and len(lines) - i <= _SIGNATURE_MAX_LINES:
            return lines[:i]
    return lines


def _drop_footers(lines: list[str]) -> list[str]:
    while lines and (not lines[-1].strip() or _is_footer(lines[-1])):
        lines = lines[:-1]
    return lines


def _is_footer(line: str) -> bool:
    return len(line.strip()) <= _FOOTER_MAX_CHARS and bool(_FOOTER.match(line))


def strip_reply(text: str, *, own_addresses: Iterable[str] = ()) -> str:
    """`text` without quoted history, signature and mobile footers.

    `own_addresses` (our From and reply addresses) sharpen the cut: a line
    naming one of them and ending in ':' opens the quote in any language.
    """
    own = tuple(a.lower() for a in own_addresses if a)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = lines[: _cut_at(lines, own)]
    lines = [line for line in lines if not line.lstrip().startswith(">")]
    lines = _drop_footers(_drop_signature(lines))
    result = "\n".join(line.rstrip() for line in lines).strip("\n")
    result = re.sub(r"\n{3,}", "\n\n", result).strip()
    return result or text.strip()

"""Outgoing mail bodies with tracking: signed click redirects, the open pixel, unsubscribe.

Every http(s) link in the HTML part (`<a href>`) and in the plain-text part
becomes `/t/c/<signed token>`, which records a click on this delivery and leads
to exactly the original target (gateway.tracking signs it; it is never an open
redirect). The HTML part gets a 1×1 pixel at `/t/o/<token>` before `</body>`.
Links to our own public URL (the unsubscribe page) are left alone: following
them is not engagement. Marketing mail also gets an unsubscribe link in the
body, for readers whose client shows no List-Unsubscribe button.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass

from gateway.tracking.tokens import click_url, open_url, safe_target

__all__ = ["Tracker"]

_HREF = re.compile(
    r"""(<a\b[^>]*?\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE | re.DOTALL
)
_TEXT_URL = re.compile(r"""https?://[^\s<>"'`]+""", re.IGNORECASE)
_TRAILING = ".,;:!?)]}»"
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_MAX_TARGET = 2000

UNSUBSCRIBE_TEXT = "Отписаться от рассылки"


@dataclass(frozen=True, slots=True)
class Tracker:
    """Rewrites one delivery's bodies; `public_url` is where /t/... is served."""

    public_url: str
    secret: str

    def _own(self, url: str) -> bool:
        return url.startswith(self.public_url.rstrip("/") + "/")

    def _tracked(self, delivery_id: int, url: str) -> str | None:
        if self._own(url) or not safe_target(url) or len(url) > _MAX_TARGET:
            return None
        return click_url(self.public_url, delivery_id, url, self.secret)

    def text(self, delivery_id: int, text: str, *, unsubscribe_url: str | None = None) -> str:
        """The plain-text part with every http(s) link tracked, and the unsubscribe line."""

        def swap(found: re.Match[str]) -> str:
            url = found.group(0)
            tail = ""
            while url and url[-1] in _TRAILING and not _balanced(url):
                url, tail = url[:-1], url[-1] + tail
            tracked = self._tracked(delivery_id, url)
            return (tracked or url) + tail

        out = _TEXT_URL.sub(swap, text)
        if unsubscribe_url:
            out = f"{out.rstrip()}\n\n--\n{UNSUBSCRIBE_TEXT}: {unsubscribe_url}\n"
        return out

    def html(self, delivery_id: int, body: str, *, unsubscribe_url: str | None = None) -> str:
        """The HTML part with every http(s) link tracked, the pixel, and the unsubscribe link."""

        def swap(found: re.Match[str]) -> str:
            raw = found.group(2) if found.group(2) is not None else found.group(3)
            url = htmllib.unescape(raw).strip()
            tracked = self._tracked(delivery_id, url)
            if tracked is None:
                return found.group(0)
            return f'{found.group(1)}"{htmllib.escape(tracked, quote=True)}"'

        out = _HREF.sub(swap, body)
        extra = ""
        if unsubscribe_url:
            link = htmllib.escape(unsubscribe_url, quote=True)
            extra += (
                '<p style="font-size:12px;color:#888888">'
                f'<a href="{link}">{UNSUBSCRIBE_TEXT}</a></p>'
            )
        pixel = htmllib.escape(open_url(self.public_url, delivery_id, self.secret), quote=True)
        extra += (
            f'<img src="{pixel}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0">'
        )
        ends = list(_BODY_END.finditer(out))
        if ends:
            at = ends[-1].start()
            return out[:at] + extra + out[at:]
        return out + extra


def _balanced(url: str) -> bool:
    """Whether a trailing bracket belongs to the URL (a Wikipedia-style `(…)`)."""
    closing = url[-1]
    opening = {")": "(", "]": "[", "}": "{"}.get(closing)
    return opening is not None and url.count(opening) >= url.count(closing)

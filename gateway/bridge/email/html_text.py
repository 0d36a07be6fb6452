"""HTML mail to readable plain text with the stdlib parser.

Paragraphs and line breaks survive, scripts and styles do not, and
`<blockquote>` becomes `> ` lines so that quote stripping treats an HTML-only
reply like a plain-text one.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tbody", "thead", "tfoot", "tr", "ul",
    }
)  # fmt: skip
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "svg"})
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base"})
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")


class _TextBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[int, str]] = []  # (blockquote depth, text)
        self._line: list[str] = []
        self._skip = 0
        self._quote = 0
        self._pre = 0

    def _flush(self, *, blank: bool = False) -> None:
        text = "".join(self._line)
        if not self._pre:
            text = _SPACES.sub(" ", text).strip()
        self._line = []
        if text:
            self.lines.append((self._quote, text))
        if blank and self.lines and self.lines[-1][1]:
            self.lines.append((self._quote, ""))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            if tag not in _VOID:
                self._skip += 1
            return
        if self._skip:
            return
        if tag == "br":
            self._flush()
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt and alt.strip():
                self._line.append(f" {alt.strip()} ")
        elif tag in _BLOCK:
            self._flush(blank=tag in {"p", "blockquote", "h1", "h2", "h3", "table", "ul", "ol"})
            if tag == "blockquote":
                self._quote += 1
            elif tag == "pre":
                self._pre += 1
            elif tag == "li":
                self._line.append("- ")
        elif tag in {"td", "th"} and self._line:
            self._line.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if tag in _BLOCK:
            self._flush(blank=tag in {"p", "blockquote", "h1", "h2", "h3", "table", "ul", "ol"})
            if tag == "blockquote":
                self._quote = max(0, self._quote - 1)
            elif tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            first, *rest = data.split("\n")
            self._line.append(first)
            for piece in rest:
                self._flush()
                self._line.append(piece)
        else:
            self._line.append(data)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body; never raises on malformed markup."""
    builder = _TextBuilder()
    try:
        builder.feed(html)
        builder.close()
    except Exception:
        return _SPACES.sub(" ", re.sub(r"<[^>]*>", " ", html)).strip()
    builder._flush()
    out: list[str] = []
    lines = builder.lines
    for index, (depth, text) in enumerate(lines):
        if not text and (not out or not out[-1].lstrip("> ")):
            continue  # no leading or doubled blank lines
        if not text:
            # A blank line belongs to the shallower of its neighbours' quotes.
            after = next((d for d, t in lines[index + 1 :] if t), 0)
            depth = min(depth, after)
        out.append(("> " * depth + text) if text else ">" * depth)
    while out and not out[-1].lstrip(">").strip():
        out.pop()
    return "\n".join(out)

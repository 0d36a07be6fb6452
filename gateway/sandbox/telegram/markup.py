"""HTML parse_mode and reply_markup validation, done the way the Bot API counts and rejects.

Telegram measures text in UTF-16 code units after entity parsing and reports parse errors
with UTF-8 byte offsets, so both are reproduced here.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from gateway.sandbox.telegram.errors import ApiError, bad_request

_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*?)?)\s*>")
_ENTITY = re.compile(r"&(#x[0-9a-fA-F]+|#[0-9]+|lt|gt|amp|quot);")
_ATTR = re.compile(r"""([a-zA-Z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"']+))""")
_SIMPLE_TAGS = dict.fromkeys(("b", "strong"), "bold") | dict.fromkeys(("i", "em"), "italic")
_SIMPLE_TAGS |= dict.fromkeys(("u", "ins"), "underline")
_SIMPLE_TAGS |= dict.fromkeys(("s", "strike", "del"), "strikethrough")
_SIMPLE_TAGS |= {"tg-spoiler": "spoiler", "code": "code", "pre": "pre"}
_CALLBACK_DATA_MAX_BYTES = 64
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _Open:
    tag: str
    entity: dict[str, Any]
    start: int


@dataclass
class _Parsed:
    text: list[str] = field(default_factory=list)
    offset: int = 0
    entities: list[dict[str, Any]] = field(default_factory=list)

    def add(self, chunk: str) -> None:
        self.text.append(chunk)
        self.offset += utf16_len(chunk)


def _entity_for(tag: str, attrs: str, where: int) -> dict[str, Any]:
    """The MessageEntity a start tag opens, or the parse error Telegram gives for it."""
    values = {m[1].lower(): m[2] or m[3] or m[4] or "" for m in _ATTR.finditer(attrs)}
    if tag in _SIMPLE_TAGS:
        return {"type": _SIMPLE_TAGS[tag]}
    if tag == "span" and values.get("class") == "tg-spoiler":
        return {"type": "spoiler"}
    if tag == "a":
        href = html.unescape(values.get("href", ""))
        match = re.fullmatch(r"tg://user\?id=(\d+)", href)
        if match:
            return {"type": "text_mention", "user": {"id": int(match[1])}}
        return {"type": "text_link", "url": href}
    if tag == "blockquote":
        return {"type": "expandable_blockquote" if "expandable" in attrs else "blockquote"}
    if tag == "tg-emoji" and "emoji-id" in values:
        return {"type": "custom_emoji", "custom_emoji_id": values["emoji-id"]}
    raise _parse_error(f'Unsupported start tag "{tag}" at byte offset {where}')


def _parse_error(reason: str) -> ApiError:
    return bad_request(f"can't parse entities: {reason}")


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities of an HTML-formatted message; 400 on unknown or unbalanced tags."""
    out = _Parsed()
    stack: list[_Open] = []
    i = 0
    while i < len(source):
        char = source[i]
        where = len(source[:i].encode())
        if char == "&":
            match = _ENTITY.match(source, i)
            out.add(html.unescape(match[0]) if match else "&")
            i = match.end() if match else i + 1
            continue
        if char != "<":
            nxt = min(
                (j for j in (source.find("<", i), source.find("&", i)) if j >= 0),
                default=len(source),
            )
            out.add(source[i:nxt])
            i = nxt
            continue
        match = _TAG.match(source, i)
        if match is None:
            name = re.match(r"</?([^\s<>]*)", source[i:])
            raise _parse_error(
                f'Unsupported start tag "{name[1] if name else ""}" at byte offset {where}'
            )
        closing, tag = match[1] == "/", match[2].lower()
        i = match.end()
        if not closing:
            entity = _entity_for(tag, match[3], where)
            if tag == "code" and stack and stack[-1].tag == "pre":
                language = re.search(r'class\s*=\s*"language-([^"]+)"', match[3])
                if language:
                    stack[-1].entity["language"] = language[1]
            stack.append(_Open(tag, entity, out.offset))
            continue
        if not stack:
            raise _parse_error(f"Unexpected end tag at byte offset {where}")
        top = stack.pop()
        if top.tag != tag:
            raise _parse_error(
                f'Unmatched end tag at byte offset {where}, expected "</{top.tag}>", '
                f'found "</{tag}>"'
            )
        if out.offset > top.start:
            out.entities.append(
                {**top.entity, "offset": top.start, "length": out.offset - top.start}
            )
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    out.entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out.text), out.entities


def format_text(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """Apply parse_mode; only HTML is parsed, other modes pass the text through unchanged."""
    if parse_mode is not None and parse_mode.upper() == "HTML":
        return parse_html(text)
    if parse_mode is not None and parse_mode not in ("Markdown", "MarkdownV2"):
        raise bad_request(f"unsupported parse_mode {parse_mode}")
    return text, []


def command_entities(text: str) -> list[dict[str, Any]]:
    """The bot_command entity Telegram attaches to a leading "/command"."""
    match = re.match(r"/[a-zA-Z0-9_]{1,64}(@[a-zA-Z0-9_]+)?", text)
    if match is None:
        return []
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(match[0])}]


def validate_reply_markup(markup: Any) -> dict[str, Any] | None:
    """Check a reply_markup the way Telegram rejects it (BUTTON_DATA_INVALID etc.)."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
            )
        for button in (button for row in rows for button in row):
            _validate_inline_button(button)
    elif "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'field "keyboard" of the ReplyKeyboardMarkup must be an Array of Arrays'
            )
        for button in (button for row in rows for button in row):
            if not isinstance(button, str | dict) or (
                isinstance(button, dict) and not button.get("text")
            ):
                raise bad_request('can\'t find field "text"')
    elif not ("remove_keyboard" in markup or "force_reply" in markup):
        raise bad_request("can't parse reply keyboard markup JSON object")
    return markup


def _validate_inline_button(button: Any) -> None:
    if not isinstance(button, dict) or not button.get("text"):
        raise bad_request('can\'t find field "text"')
    if "callback_data" in button:
        data = button["callback_data"]
        size = len(data.encode()) if isinstance(data, str) else 0
        if not 1 <= size <= _CALLBACK_DATA_MAX_BYTES:
            raise bad_request("BUTTON_DATA_INVALID")
    if sum(1 for key in _BUTTON_ACTIONS if key in button) != 1:
        raise bad_request("text buttons are unallowed in the inline keyboard")


def inline_callback_data(markup: dict[str, Any] | None) -> list[str]:
    """Every callback_data on an inline keyboard, to check a simulated press against."""
    if not markup or "inline_keyboard" not in markup:
        return []
    return [
        b["callback_data"] for row in markup["inline_keyboard"] for b in row if "callback_data" in b
    ]

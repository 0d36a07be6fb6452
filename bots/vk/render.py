"""Outbound → VK `messages.send` text and keyboard JSON.

Payload buttons become callback buttons in an inline keyboard and text buttons
carrying the payload in a reply keyboard. Callback buttons leave no "Доставка"
message in the dialog, can be pressed again and show a spinner we stop with
messages.sendMessageEventAnswer; every current VK client supports them inline
(client_info.button_actions lists "callback"). A reply keyboard stays on screen
like a menu, where a text button that also types its label is what people expect,
and text buttons work on every client. inbound.py understands both.

VK limits (dev.vk.com keyboard docs, vk-io docs): inline keyboards up to 6 rows,
reply keyboards up to 10, at most 5 buttons a row, at most 10 (inline) / 40 (reply)
buttons in all, labels up to 40 characters, payload up to 255. A layout that does
not fit degrades to numbered options in the text, as on channels without buttons,
rather than losing buttons.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bots.dialog.render import render_numbered
from gateway.channels import Button, Outbound

__all__ = ["MAX_LABEL", "MAX_PAYLOAD_BYTES", "Rendered", "button_payload", "random_id", "render"]

MAX_LABEL = 40
MAX_PAYLOAD_BYTES = 255
MAX_COLUMNS = 5
MAX_ROWS = {True: 6, False: 10}
MAX_BUTTONS = {True: 10, False: 40}
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Rendered:
    """What messages.send takes: the text and the keyboard as a JSON string (or None)."""

    text: str
    keyboard: str | None


def random_id(delivery_id: int) -> int:
    """VK's dedupe key for a send: the same delivery always gets the same non-zero int32.

    Delivery ids are unique, so folding them into 1..2^31-1 keeps them unique for the
    first two billion deliveries; a hash would collide far sooner, and a collision
    makes VK silently swallow a different message to the same person.
    """
    return (delivery_id - 1) % _INT32_MAX + 1


def button_payload(value: str) -> str:
    """The payload JSON a button carries; inbound.py reads `button` back."""
    payload = json.dumps({"button": value}, ensure_ascii=False, separators=(",", ":"))
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"button payload is over {MAX_PAYLOAD_BYTES} bytes: {value[:40]!r}…")
    return payload


def _label(text: str) -> str:
    text = " ".join(text.split()) or "…"
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _button(button: Button, inline: bool) -> dict[str, Any]:
    if button.url is not None:
        return {"action": {"type": "open_link", "link": button.url, "label": _label(button.text)}}
    action: dict[str, Any] = {"type": "text", "label": _label(button.text)}
    if button.payload is not None:
        action["payload"] = button_payload(button.payload)
        if inline:
            action["type"] = "callback"
    # VK has no "share my phone" button; it stays a text button that types its label.
    return {"action": action, "color": "secondary"}


def _fits(rows: list[tuple[Button, ...]], inline: bool) -> bool:
    return (
        len(rows) <= MAX_ROWS[inline]
        and all(len(row) <= MAX_COLUMNS for row in rows)
        and sum(len(row) for row in rows) <= MAX_BUTTONS[inline]
    )


def render(message: Outbound) -> Rendered:
    """Text and keyboard for one Outbound; raises ValueError for an unsendable payload."""
    rows = [tuple(row) for row in message.buttons if row]
    if not rows:
        return Rendered(message.text, None)
    if not _fits(rows, message.inline):
        return Rendered(render_numbered(message.text, rows), None)
    keyboard: dict[str, Any] = {
        "inline": message.inline,
        "buttons": [[_button(button, message.inline) for button in row] for row in rows],
    }
    if not message.inline:
        keyboard["one_time"] = False
    return Rendered(message.text, json.dumps(keyboard, ensure_ascii=False))

"""Validation of the `keyboard` JSON parameter of messages.send."""

from __future__ import annotations

import json
from typing import Any

from gateway.sandbox.vk.errors import VKError, invalid_param

ACTION_TYPES = frozenset(
    {
        "text",
        "callback",
        "open_link",
        "location",
        "vkpay",
        "open_app",
        "intent_subscribe",
        "intent_unsubscribe",
    }
)
COLORS = frozenset({"primary", "secondary", "negative", "positive"})
LABELLED = frozenset({"text", "callback", "open_link", "open_app"})
MAX_LABEL = 40
MAX_PAYLOAD = 255
MAX_ROWS_REGULAR, MAX_ROWS_INLINE, MAX_COLUMNS = 10, 6, 5


def _bad(detail: str) -> VKError:
    return VKError(911, detail)


def _check_button(button: Any) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("action"), dict):
        raise _bad("button must have an action object")
    action: dict[str, Any] = button["action"]
    kind = action.get("type")
    if kind not in ACTION_TYPES:
        raise _bad(f"unknown action type {kind!r}")
    if kind in LABELLED:
        label = action.get("label")
        if not isinstance(label, str) or not label:
            raise _bad(f"{kind} button needs a label")
        if len(label) > MAX_LABEL:
            raise _bad(f"label is longer than {MAX_LABEL}")
    if kind == "open_link" and not isinstance(action.get("link"), str):
        raise _bad("open_link button needs a link")
    payload = action.get("payload")
    if payload is not None and (not isinstance(payload, str) or len(payload) > MAX_PAYLOAD):
        raise _bad(f"payload must be a JSON string of at most {MAX_PAYLOAD} characters")
    color = button.get("color")
    if color is not None and (kind not in {"text", "callback"} or color not in COLORS):
        raise _bad(f"color {color!r} is not allowed here")


def parse_keyboard(raw: str) -> dict[str, Any]:
    """Parse and check a keyboard; bad JSON is error 100, a bad layout error 911."""
    try:
        keyboard = json.loads(raw)
    except ValueError:
        raise invalid_param("keyboard is not a valid JSON") from None
    if not isinstance(keyboard, dict):
        raise invalid_param("keyboard is not a valid JSON object")
    buttons = keyboard.get("buttons")
    if not isinstance(buttons, list) or not all(isinstance(row, list) for row in buttons):
        raise _bad("buttons must be an array of arrays")
    inline = bool(keyboard.get("inline", False))
    if inline and keyboard.get("one_time"):
        raise _bad("inline keyboard can't be one_time")
    max_rows = MAX_ROWS_INLINE if inline else MAX_ROWS_REGULAR
    if len(buttons) > max_rows:
        raise _bad(f"too many rows: at most {max_rows}")
    for row in buttons:
        if len(row) > MAX_COLUMNS:
            raise _bad(f"too many buttons in a row: at most {MAX_COLUMNS}")
        for button in row:
            _check_button(button)
    return keyboard


def callback_payloads(keyboard: dict[str, Any] | None) -> list[str]:
    """Payloads of the callback buttons of a keyboard, to check button presses against."""
    if not keyboard:
        return []
    return [
        str(button["action"].get("payload", ""))
        for row in keyboard.get("buttons", [])
        for button in row
        if button["action"].get("type") == "callback"
    ]

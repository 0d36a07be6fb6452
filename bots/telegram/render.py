"""Outbound → Telegram text, parse_mode and reply markup.

`inline=True` (the default) gives an InlineKeyboardMarkup: a payload becomes
callback_data, which inbound.py hands back as `Inbound.button`; a url becomes a link
button. `inline=False` gives a ReplyKeyboardMarkup (resize, one-time) whose buttons
type their label, with `request_contact` for "share my phone".

The reply keyboard is the one piece of client state we leave behind. We don't track
it (several processes send for one bot), so the Outbound says what it wants: an
`inline=False` message with no buttons removes the reply keyboard
(ReplyKeyboardRemove), e.g. the answer after the contact was shared; an inline
message with no buttons leaves the client as it is.

Telegram limits we refuse instead of bending: callback_data is 1–64 bytes of UTF-8,
so a longer payload would either be rejected (BUTTON_DATA_INVALID) or, truncated,
report a different button; url and contact buttons exist only in one keyboard kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from gateway.channels import Button, Outbound

__all__ = ["MAX_CALLBACK_BYTES", "Markup", "RenderError", "Rendered", "callback_data", "render"]

MAX_CALLBACK_BYTES = 64

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


class RenderError(ValueError):
    """The Outbound can't be expressed on Telegram; sending it again won't help."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """sendMessage's text, parse_mode and reply_markup."""

    text: str
    parse_mode: str | None
    reply_markup: Markup | None


def callback_data(button: Button) -> str:
    """What an inline button reports when pressed: its payload, else its label."""
    data = button.payload if button.payload is not None else button.text
    size = len(data.encode())
    if not 1 <= size <= MAX_CALLBACK_BYTES:
        raise RenderError(
            f"button {button.text!r}: callback data is {size} bytes, "
            f"Telegram takes 1–{MAX_CALLBACK_BYTES}: {data[:40]!r}"
        )
    return data


def _inline_button(button: Button) -> InlineKeyboardButton:
    if button.request_contact:
        raise RenderError(f"button {button.text!r}: request_contact needs inline=False")
    if button.url is not None:
        return InlineKeyboardButton(text=button.text, url=button.url)
    return InlineKeyboardButton(text=button.text, callback_data=callback_data(button))


def _reply_button(button: Button) -> KeyboardButton:
    if button.url is not None:
        raise RenderError(f"button {button.text!r}: a link button needs inline=True")
    if button.request_contact:
        return KeyboardButton(text=button.text, request_contact=True)
    return KeyboardButton(text=button.text)


def markup(message: Outbound) -> Markup | None:
    """The reply_markup for an Outbound's buttons (None: leave the client as it is)."""
    rows = [tuple(row) for row in message.buttons if row]
    if message.inline:
        if not rows:
            return None
        return InlineKeyboardMarkup(
            inline_keyboard=[[_inline_button(b) for b in row] for row in rows]
        )
    if not rows:
        return ReplyKeyboardRemove()
    return ReplyKeyboardMarkup(
        keyboard=[[_reply_button(b) for b in row] for row in rows],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def render(message: Outbound) -> Rendered:
    """Text and markup for one Outbound; raises RenderError for what Telegram can't take."""
    if message.html:
        return Rendered(message.html, "HTML", markup(message))
    return Rendered(message.text, None, markup(message))

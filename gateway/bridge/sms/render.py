"""Outbound → SMS plain text: buttons as numbered options, links as bare URLs."""

from __future__ import annotations

from bots.dialog.render import render_numbered
from gateway.channels import Outbound

__all__ = ["render"]


def render(message: Outbound) -> str:
    """The text an SMS carries for `message` (no HTML, no keyboards)."""
    text = render_numbered(message.text, message.buttons)
    links = [a.url for a in message.attachments if a.url]
    if links:
        text = "\n".join([text, *links]) if text else "\n".join(links)
    return text

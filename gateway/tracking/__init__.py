"""Engagement tracking: open pixel, click redirect, one-click unsubscribe.

Wire with `setup_tracking(app, db=..., sink=router, secret=...)`; render links
with `click_url` and the pixel with `open_url` using the same secret.
"""

from __future__ import annotations

from gateway.tracking.machines import is_machine, machine_agent
from gateway.tracking.routes import setup_tracking
from gateway.tracking.tokens import (
    Click,
    click_token,
    click_url,
    open_token,
    open_url,
    parse_click_token,
    parse_open_token,
)

__all__ = [
    "Click",
    "click_token",
    "click_url",
    "is_machine",
    "machine_agent",
    "open_token",
    "open_url",
    "parse_click_token",
    "parse_open_token",
    "setup_tracking",
]

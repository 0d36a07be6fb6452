"""Buttons as numbered options, for channels that have no buttons (SMS, e-mail)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.channels import Button

__all__ = ["choices", "render_numbered"]


def choices(buttons: Iterable[Sequence[Button]]) -> list[Button]:
    """The buttons a number can pick, in reading order (links and contact requests can't)."""
    return [
        button
        for row in buttons
        for button in row
        if button.payload is not None and button.url is None and not button.request_contact
    ]


def render_numbered(
    text: str, buttons: Iterable[Sequence[Button]], *, hint: str | None = None
) -> str:
    """`text`, then `1. Доставка` lines; links are listed as `label: url`.

    The numbers are those `choices()` gives, so "2" picks `choices(buttons)[1]`.
    """
    rows = [tuple(row) for row in buttons]
    lines = [f"{n}. {button.text}" for n, button in enumerate(choices(rows), 1)]
    lines += [f"{b.text}: {b.url}" for row in rows for b in row if b.url is not None]
    if not lines:
        return text
    if hint and choices(rows):
        lines.append(hint)
    return f"{text}\n\n" + "\n".join(lines) if text else "\n".join(lines)

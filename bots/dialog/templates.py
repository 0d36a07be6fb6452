"""`{name}` placeholders in what the bot says."""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter

__all__ = ["fill", "placeholders"]

_FORMATTER = Formatter()


def placeholders(template: str) -> list[str]:
    """The names a template uses; ValueError if it is not a plain `{name}` template."""
    names: list[str] = []
    for _literal, field, spec, conversion in _FORMATTER.parse(template):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder {{{field}}} must be a plain {{name}}")
        names.append(field)
    return names


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def fill(template: str, values: Mapping[str, str]) -> str:
    """The template with its placeholders filled; an unknown value is left blank.

    Values are inserted once and never parsed again, so a customer's "{x}" stays text.
    """
    return template.format_map(_Blank(values))

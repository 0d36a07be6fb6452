"""Checking what a customer typed into a slot: a number, a phone, an e-mail."""

from __future__ import annotations

import re

__all__ = ["clean_answer", "normalise_phone"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMBER = re.compile(r"^\D{0,24}?(\d(?:[\d\s-]*\d)?)\D{0,3}$")
_PHONE_CHARS = re.compile(r"^\+?[\d\s().-]+$")


def normalise_phone(text: str) -> str | None:
    """A phone in E.164 (`+79001234567`), Russian local forms included, or None."""
    text = text.strip()
    if not _PHONE_CHARS.match(text):
        return None
    digits = re.sub(r"\D", "", text)
    if len(digits) == 11 and digits[0] == "8" and not text.startswith("+"):
        digits = "7" + digits[1:]
    elif len(digits) == 10 and digits[0] == "9" and not text.startswith("+"):
        digits = "7" + digits  # a Russian mobile typed without the country code
    if not 10 <= len(digits) <= 15:
        return None
    return "+" + digits


def clean_answer(kind: str, text: str) -> str | None:
    """The value to keep in the slot, or None when the answer does not fit `kind`."""
    text = text.strip()
    if not text:
        return None
    if kind == "number":
        found = _NUMBER.match(text)  # "12345", "№ 12345", "заказ 12-345"
        return re.sub(r"\D", "", found.group(1)) if found else None
    if kind == "phone":
        return normalise_phone(text)
    if kind == "email":
        return text.lower() if _EMAIL.match(text) else None
    return text[:1000]

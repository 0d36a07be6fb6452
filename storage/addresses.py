"""Phone numbers and email addresses in the one form the store compares.

Phones become E.164 ("+79991234567"), so "8 999 123-45-67" and "+7 999 123 45 67"
are the same customer. Emails are lower-cased whole: the local part is case
sensitive by the RFC, but no mailbox provider our customers use treats it so, and
two customers differing only by case are far more likely one person mistyped.
"""

from __future__ import annotations

import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from storage.errors import InvalidAddress

__all__ = ["normalize_email", "normalize_phone"]

# Digits and the punctuation people write numbers with; letters ("1-800-FLOWERS")
# are refused rather than translated, since a customer never means them.
_PHONE_CHARS = re.compile(r"^\+?[\d\s().\-]+$")


def normalize_phone(raw: str, region: str = "RU") -> str:
    """`raw` as E.164; InvalidAddress unless it can be a real number in `region`."""
    text = raw.strip()
    if not text or not _PHONE_CHARS.match(text):
        raise InvalidAddress(
            "phone",
            raw,
            f"{raw!r} is not a valid phone number: only digits, "
            "spaces, '+', '-', '(', ')' and '.' are allowed",
        )
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress("phone", raw, f"{raw!r} is not a valid phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidAddress("phone", raw)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """`raw` validated (syntax only, no DNS) and lower-cased; InvalidAddress if not."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress("email", raw, f"{raw!r} is not a valid email address: {exc}") from exc
    return result.normalized.lower()

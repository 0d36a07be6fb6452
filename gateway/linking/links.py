"""Continuation links: where a customer follows a token into each channel.

Every link is one a person can simply follow on a phone: Telegram and VK open
the company's chat with the token attached (`/start <token>`, VK's `ref`), a
`mailto:` writes to a `reply+<token>@` address our receiver accepts, and an
`sms:` link pre-fills a text carrying the token to the company's number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["SMS_PROMPT", "ContinuationChannels", "token_in_text"]

# What the pre-filled SMS says around the token; any text carrying the token works.
SMS_PROMPT = "Продолжить диалог: {token}"
EMAIL_SUBJECT = "Продолжить диалог"
# A hex link token inside free text (an SMS body, a pasted email link).
_HEX_TOKEN = re.compile(r"(?<![0-9a-z])([0-9a-f]{32})(?![0-9a-z])")


@dataclass(frozen=True, slots=True)
class ContinuationChannels:
    """The company's addresses on each channel; None where the channel is not set up."""

    telegram_username: str | None = None  # from getMe
    vk_group_id: int | None = None
    email_domain: str | None = None  # where reply+<token>@ mail is received
    sms_number: str | None = None  # E.164, a number that can receive texts

    def names(self) -> list[str]:
        """The channels a link can be made for, in the order they are offered."""
        present = {
            "telegram": self.telegram_username,
            "vk": self.vk_group_id,
            "email": self.email_domain,
            "sms": self.sms_number,
        }
        return [name for name, value in present.items() if value]

    def url(self, channel: str, token: str) -> str:
        """The link into `channel` carrying `token`."""
        if channel == "telegram" and self.telegram_username:
            return f"https://t.me/{self.telegram_username}?start={token}"
        if channel == "vk" and self.vk_group_id:
            return f"https://vk.me/club{self.vk_group_id}?ref={token}"
        if channel == "email" and self.email_domain:
            return f"mailto:reply+{token}@{self.email_domain}?subject={quote(EMAIL_SUBJECT)}"
        if channel == "sms" and self.sms_number:
            return f"sms:{self.sms_number}?body={quote(SMS_PROMPT.format(token=token))}"
        raise ValueError(f"no continuation link for channel {channel!r}: it is not configured")


def token_in_text(text: str) -> str | None:
    """The link token a pre-filled SMS (or a pasted link) carries, if any."""
    found = _HEX_TOKEN.search(text.lower())
    return found.group(1) if found else None

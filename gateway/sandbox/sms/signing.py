"""`X-Twilio-Signature`, computed the way Twilio signs every webhook it sends.

Written from Twilio's own validator (twilio-python `request_validator.py`), apart
from chatgate's checker in gateway/bridge/sms/twilio.py: if the two disagreed, the
sandbox would catch it instead of hiding it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["twilio_signature"]


def twilio_signature(url: str, params: Iterable[tuple[str, str]], auth_token: str) -> str:
    """base64 HMAC-SHA1 over the full URL, then each name+value, names and values sorted."""
    by_name: dict[str, list[str]] = {}
    for name, value in params:
        by_name.setdefault(name, []).append(value)
    payload = url
    for name in sorted(by_name):
        for value in sorted(by_name[name]):
            payload += name + value
    mac = hmac.new(auth_token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")

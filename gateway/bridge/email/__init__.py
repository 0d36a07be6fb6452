"""The email bridge: SMTP out, SMTP (or any raw-bytes source) in, one conversation.

Inside, as in every channel package: `adapter` (Outbound → SMTP, VERP sender,
unsubscribe tokens), `inbound` (raw mail → Inbound/Signal, once), `compose`
(rendering an EmailMessage), `receiver` (the built-in aiosmtpd MX), plus
`parsing`, `quotes`, `bounces` and `headers`. Library objects stay in here.
"""

from __future__ import annotations

from gateway.bridge.email.adapter import (
    EmailAdapter,
    SmtpRelay,
    parse_smtp_url,
    parse_unsubscribe_token,
    unsubscribe_token,
)
from gateway.bridge.email.inbound import EmailEvents
from gateway.bridge.email.receiver import SmtpReceiver

__all__ = [
    "EmailAdapter",
    "EmailEvents",
    "SmtpReceiver",
    "SmtpRelay",
    "parse_smtp_url",
    "parse_unsubscribe_token",
    "unsubscribe_token",
]

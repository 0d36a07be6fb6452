"""The email bridge: SMTP out, SMTP or IMAP in, one conversation.

Inside, as in every channel package: `adapter` (Outbound → SMTP, VERP sender,
unsubscribe tokens), `inbound` (raw mail → Inbound/Signal, once), `compose`
(rendering an EmailMessage), `receiver` (the built-in aiosmtpd MX), `imap`
(the IMAP poller, over `imap_client`), `replies` (signed per-conversation reply
tokens), `threads` (which conversation a mail belongs to), `tracked` (click
redirects and the open pixel in outgoing bodies), plus `parsing`, `quotes`,
`bounces` and `headers`. Library objects stay in here.
"""

from __future__ import annotations

from gateway.bridge.email.adapter import (
    EmailAdapter,
    SmtpRelay,
    parse_smtp_url,
    parse_unsubscribe_token,
    unsubscribe_token,
)
from gateway.bridge.email.imap import ImapPoller
from gateway.bridge.email.inbound import EmailEvents
from gateway.bridge.email.receiver import SmtpReceiver
from gateway.bridge.email.replies import ReplyTokens
from gateway.bridge.email.threads import MailThreads

__all__ = [
    "EmailAdapter",
    "EmailEvents",
    "ImapPoller",
    "MailThreads",
    "ReplyTokens",
    "SmtpReceiver",
    "SmtpRelay",
    "parse_smtp_url",
    "parse_unsubscribe_token",
    "unsubscribe_token",
]

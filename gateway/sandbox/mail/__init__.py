"""The sandbox's mail: an SMTP server holding a mailbox per customer, and their replies.

Inside: `mailboxes` (received and written mail per address), `server` (aiosmtpd on
the app's loop: chatgate's SMTP relay in sandbox mode), `writing` (the RFC 5322
messages a person writes: new mail and replies with In-Reply-To/References),
`post_office` (the parts together: file, reply, one-click unsubscribe) and
`control` (the console's JSON endpoints).
"""

from __future__ import annotations

from gateway.sandbox.mail.errors import MailRefused
from gateway.sandbox.mail.mailboxes import Mail, Mailboxes
from gateway.sandbox.mail.post_office import PostOffice
from gateway.sandbox.mail.server import MailServer

__all__ = ["Mail", "MailRefused", "MailServer", "Mailboxes", "PostOffice"]

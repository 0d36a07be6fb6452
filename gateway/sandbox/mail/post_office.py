"""PostOffice: the sandbox mail server, its mailboxes, and the mail people send from them.

Mail chatgate relays through the server is filed in each recipient's inbox. Mail a
person writes goes, like real mail, to the recipient domain's MX: chatgate's own
SMTP receiver for the shop's domain, the sandbox's mailboxes for anyone else; a
copy stays in the writer's "sent" folder. One-click unsubscribe is the POST that
RFC 8058 has the mail provider make, not a page the person visits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import getaddresses

import aiohttp
import aiosmtplib
from aiohttp import web

from gateway.sandbox.mail.control import add_control_routes
from gateway.sandbox.mail.errors import MailRefused
from gateway.sandbox.mail.mailboxes import Mail, Mailboxes
from gateway.sandbox.mail.server import MailServer
from gateway.sandbox.mail.writing import new_mail, reply_to

__all__ = ["MailRefused", "PostOffice"]

log = logging.getLogger(__name__)


def _address(header: str) -> str:
    pairs = getaddresses([header])
    return pairs[0][1].lower() if pairs and pairs[0][1] else header.strip().lower()


class PostOffice:
    """The sandbox's whole mail world beside one shop."""

    def __init__(
        self,
        *,
        shop_address: str,
        shop_domain: str,
        mx_host: str,
        mx_port: int,
        deliver_to: Callable[[str], str] | None = None,
    ) -> None:
        """`mx_*` is chatgate's SMTP receiver, where mail to `shop_domain` goes.

        `deliver_to` maps a link in a message (chatgate's public URL) to where the
        request is really sent; identity by default.
        """
        self.shop_address = shop_address.lower()
        self.shop_domain = shop_domain.lower()
        self.mx_host = mx_host
        self.mx_port = mx_port
        self.mailboxes = Mailboxes()
        self.deleted: set[str] = set()  # addresses whose server answers 550 5.1.1
        self.server = MailServer(self._arrived, exists=self.exists)
        self._deliver_to = deliver_to or (lambda url: url)
        self._session: aiohttp.ClientSession | None = None
        self.app = self.make_app()

    def make_app(self) -> web.Application:
        app = web.Application()
        add_control_routes(app, self)
        return app

    def exists(self, address: str) -> bool:
        """Whether mail to `address` is taken (a deleted mailbox is a hard bounce)."""
        return address.strip().strip("<>").lower() not in self.deleted

    def _arrived(self, raw: bytes, envelope_from: str, recipients: list[str]) -> None:
        for recipient in dict.fromkeys(r.lower() for r in recipients):
            mail = self.mailboxes.file(
                raw, mailbox=recipient, folder="inbox", envelope_from=envelope_from
            )
            log.info("sandbox mail: %r filed for %s", mail.subject, recipient)

    async def send(self, message: EmailMessage) -> Mail:
        """Deliver a message a person wrote; the copy in their "sent" folder.

        Raises MailRefused when chatgate's receiver refuses it or cannot be reached.
        """
        sender = _address(str(message["From"]))
        to = _address(str(message["To"]))
        raw = message.as_bytes()
        if to.rpartition("@")[2] == self.shop_domain:
            try:
                await aiosmtplib.send(
                    message,
                    sender=sender,
                    recipients=[to],
                    hostname=self.mx_host,
                    port=self.mx_port,
                    start_tls=False,
                    timeout=15,
                )
            except aiosmtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients[0] if exc.recipients else None
                answer = f"{refused.code} {refused.message}" if refused else str(exc)
                raise MailRefused(f"chatgate's mail server refused {to}: {answer}") from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise MailRefused(f"chatgate's mail server did not take the mail: {exc}") from exc
        else:
            self._arrived(raw, sender, [to])
        return self.mailboxes.file(raw, mailbox=sender, folder="sent", envelope_from=sender)

    async def write(self, mailbox: str, text: str, *, subject: str = "", to: str = "") -> Mail:
        """A new message from `mailbox`, to the shop unless `to` names someone else."""
        return await self.send(new_mail(mailbox.lower(), to or self.shop_address, subject, text))

    async def reply(self, mail_id: int, text: str) -> Mail:
        """Answer message `mail_id` from the mailbox it is in. KeyError if there is none."""
        parent = self.mailboxes.get(mail_id)
        if parent.folder != "inbox":
            raise ValueError("only received mail can be answered")
        return await self.send(reply_to(parent, text))

    async def unsubscribe(self, mail_id: int) -> int:
        """RFC 8058 one-click: POST `List-Unsubscribe=One-Click` to the message's https link.

        Returns chatgate's HTTP status. ValueError if the message offers no one-click.
        """
        mail = self.mailboxes.get(mail_id)
        links = [u for u in mail.unsubscribe if u.lower().startswith(("https://", "http://"))]
        if not mail.one_click or not links:
            raise ValueError("this message has no one-click unsubscribe (RFC 8058)")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        try:
            async with self._session.post(
                self._deliver_to(links[0]),
                data="List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                allow_redirects=False,
            ) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MailRefused(f"the unsubscribe link did not answer: {exc}") from exc

    async def start(self) -> None:
        await self.server.start()

    async def aclose(self) -> None:
        await self.server.aclose()
        if self._session is not None:
            await self._session.close()

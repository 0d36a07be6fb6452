"""The customer-facing Telegram bot (aiogram 3): webhook or getUpdates in, sendMessage out.

Inside, as in every channel package: `adapter` (outbound), `inbound` (updates →
Inbound/reachability through aiogram's Dispatcher), `render` (text + keyboards),
`webhook` (`POST /webhooks/telegram`) and `polling` (getUpdates). aiogram objects
stay in this package; only the optional group handler (the managers' group bot,
which lives here too) sees them.
"""

from __future__ import annotations

from typing import Literal

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

from bots.telegram.adapter import TelegramAdapter
from bots.telegram.inbound import ALLOWED_UPDATES, GroupHandler, TelegramEvents
from bots.telegram.polling import TelegramPolling
from bots.telegram.webhook import PATH, TelegramWebhook
from gateway.channels import Sink

__all__ = ["TelegramAdapter", "TelegramBot"]

PRODUCTION_API = "https://api.telegram.org"


class TelegramBot:
    """One Telegram bot: its outbound adapter and its inbound transport."""

    def __init__(
        self,
        *,
        token: str,
        sink: Sink,
        api_url: str = PRODUCTION_API,
        mode: Literal["polling", "webhook"] = "polling",
        webhook_secret: str | None = None,
        public_url: str | None = None,
        group_handler: GroupHandler | None = None,
        timeout: float = 15.0,
        poll_timeout: int = 25,
        webhook_budget: float = 25.0,
    ) -> None:
        if mode not in ("polling", "webhook"):
            raise ValueError(f"Telegram mode must be 'polling' or 'webhook', not {mode!r}")
        if mode == "webhook" and not (webhook_secret and public_url):
            raise ValueError(
                "Telegram webhook mode needs webhook_secret and public_url (for setWebhook)"
            )
        self.mode = mode
        self._public_url = public_url.rstrip("/") if public_url else None
        self._secret = webhook_secret
        session = AiohttpSession(
            api=TelegramAPIServer.from_base(api_url.rstrip("/")), timeout=timeout
        )
        self._bot = Bot(token, session=session)  # checks the token's shape
        self.account = str(self._bot.id)
        self.adapter = TelegramAdapter(self._bot, self.account)
        self.events = TelegramEvents(self._bot, self.account, sink, group_handler=group_handler)
        self._webhook = (
            TelegramWebhook(self._bot, self.events, secret=webhook_secret, budget=webhook_budget)
            if mode == "webhook" and webhook_secret
            else None
        )
        self._polling = (
            TelegramPolling(self._bot, self.events, timeout=poll_timeout)
            if mode == "polling"
            else None
        )

    @property
    def bot(self) -> Bot:
        """The aiogram Bot, for the managers' group side of the same bot."""
        return self._bot

    @property
    def webhook_url(self) -> str | None:
        """Where Telegram is told to POST updates (webhook mode)."""
        return None if self._public_url is None else self._public_url + PATH

    def setup_routes(self, app: web.Application) -> None:
        """Add `POST /webhooks/telegram`; in polling mode there is nothing to add."""
        if self._webhook is not None:
            self._webhook.setup_routes(app)

    async def start(self) -> None:
        """Webhook mode: setWebhook. Polling mode: deleteWebhook, then poll.

        Both raise aiogram's TelegramAPIError if Telegram refuses (bad token, bad URL):
        a bot that can't receive anything should stop the start, not limp along.
        """
        if self._webhook is not None:
            await self._bot.set_webhook(
                url=self.webhook_url or "",
                secret_token=self._secret,
                allowed_updates=ALLOWED_UPDATES,
            )
        if self._polling is not None:
            await self._bot.delete_webhook(drop_pending_updates=False)
            await self._polling.start()

    async def aclose(self) -> None:
        """Stop polling, let webhook work finish, close the HTTP session.

        The webhook stays registered: Telegram keeps updates while we restart.
        """
        if self._polling is not None:
            await self._polling.aclose()
        if self._webhook is not None:
            await self._webhook.aclose()
        await self.adapter.aclose()

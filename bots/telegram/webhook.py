"""Webhook endpoint: `POST /webhooks/telegram`.

Telegram resends an update until it gets a 2xx, so we handle the update before
answering: 200 means "stored", and an answer sent before the work is done would lose
the update if the process died in between (aiogram's SimpleRequestHandler answers at
once and works in the background, which is why we don't use it). Telegram waits about
60 s; should handling run past `budget` seconds we answer 200 anyway and let it finish
in the background, since a resend would only wait on the same work again. A handler
that fails answers 500 so Telegram resends, and the resend is not taken for a
duplicate (TelegramEvents remembers failures).
"""

from __future__ import annotations

import hmac
import json
import logging

from aiogram import Bot
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

from bots.telegram.inbound import TelegramEvents
from gateway.budget import Budget

__all__ = ["PATH", "SECRET_HEADER", "TelegramWebhook"]

log = logging.getLogger(__name__)

PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class TelegramWebhook:
    """Checks the secret, parses the Update and hands it to TelegramEvents."""

    def __init__(
        self,
        bot: Bot,
        events: TelegramEvents,
        *,
        secret: str,
        budget: float = 25.0,
        grace: float = 5.0,
    ) -> None:
        if not secret:
            raise ValueError("the Telegram webhook needs a secret token")
        self._bot = bot
        self._events = events
        self._secret = secret.encode()
        self._work = Budget("telegram.webhook", budget=budget, grace=grace)

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)

    def _secret_ok(self, request: web.Request) -> bool:
        given = request.headers.get(SECRET_HEADER)
        # Bytes, not str: compare_digest raises TypeError on non-ASCII str.
        return given is not None and hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), self._secret
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._secret_ok(request):
            log.warning("telegram.webhook_bad_secret", extra={"peer": request.remote})
            return web.Response(status=401, text="Unauthorized")
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "a JSON object (an Update) is expected")
        try:
            update = Update.model_validate(body, context={"bot": self._bot})
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
            return _error(400, f"not a Telegram Update: {', '.join(fields[:5])}")
        try:
            in_time = await self._work.run(self._events.process(update))
        except Exception as error:
            log.error("telegram.webhook_failed", extra={"update": update.update_id}, exc_info=error)
            return _error(500, "retry")
        if not in_time:
            log.warning("telegram.webhook_slow", extra={"update": update.update_id})
        return web.json_response({})

    async def aclose(self) -> None:
        """Let updates still being handled finish, up to `grace` seconds, then cancel them."""
        await self._work.aclose()

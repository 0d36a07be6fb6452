"""Callback API endpoint: `POST /webhooks/vk`.

VK waits for `ok` and resends the event (same event_id) until it gets one. We handle
the event before answering, so `ok` means "stored": an answer sent before the work
is done would lose the event if the process died in between. Handling is a few
database writes, far below VK's patience; should it run past `budget` seconds
(a slow database, a long bot answer) we answer `ok` anyway and let it finish in
the background, because a VK resend would only wait on the same work again and
too many failed answers make VK switch the server off. A handler that fails
answers 500 so VK resends, and the resend is not mistaken for a duplicate.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aiohttp import web

from bots.vk.inbound import VKEvents
from gateway.budget import Budget

__all__ = ["PATH", "VKWebhook"]

log = logging.getLogger(__name__)

PATH = "/webhooks/vk"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class VKWebhook:
    """Checks, confirms and hands Callback API events to VKEvents."""

    def __init__(
        self,
        events: VKEvents,
        *,
        confirmation: str,
        secret: str | None,
        budget: float = 3.0,
        grace: float = 5.0,
    ) -> None:
        self._events = events
        self._confirmation = confirmation
        self._secret = secret
        self._work = Budget("vk.webhook", budget=budget, grace=grace)

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(PATH, self.handle)

    def _secret_ok(self, body: dict[str, Any], *, confirmation: bool) -> bool:
        if not self._secret:
            return True
        given = body.get("secret")
        if given is None and confirmation:
            # The handshake proves nothing and reveals nothing secret; accept it
            # without a secret in case VK sends none with it.
            return True
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self._secret.encode())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            return _error(400, "a JSON object with a string `type` is expected")
        confirmation = body["type"] == "confirmation"
        if not self._secret_ok(body, confirmation=confirmation):
            log.warning("vk.webhook_bad_secret", extra={"peer": request.remote})
            return web.Response(status=403, text="Bad Secret")
        if str(body.get("group_id")) != self._events.account:
            return web.Response(status=403, text="Unknown community")
        if confirmation:
            return web.Response(text=self._confirmation, content_type="text/plain")
        if not isinstance(body.get("object"), dict):
            return _error(400, "`object` is missing")
        try:
            in_time = await self._work.run(self._events.process(body))
        except Exception as exc:
            log.error(
                "vk.webhook_failed",
                extra={"event": body.get("event_id"), "type": body["type"]},
                exc_info=exc,
            )
            return web.Response(status=500, text="retry", content_type="text/plain")
        if not in_time:
            log.warning("vk.webhook_slow", extra={"event": body.get("event_id")})
        return web.Response(text="ok", content_type="text/plain")

    async def aclose(self) -> None:
        """Let events still being handled finish, up to `grace` seconds, then cancel them."""
        await self._work.aclose()

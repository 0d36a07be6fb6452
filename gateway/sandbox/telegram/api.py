"""The /bot<token>/<method> endpoint: dispatch, faults, error rendering, updates and webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.sandbox.telegram import chats, messages
from gateway.sandbox.telegram.errors import ApiError, bad_request
from gateway.sandbox.telegram.faults import Faults
from gateway.sandbox.telegram.params import Params, Upload
from gateway.sandbox.telegram.state import BotAccount, Webhook
from gateway.sandbox.telegram.webhook import WebhookDelivery
from gateway.sandbox.telegram.world import World

Handler = Callable[[World, BotAccount, Params], Awaitable[Any]]
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


class BotApi:
    """Bot API server side; handlers are plain functions of (world, bot, params)."""

    def __init__(
        self,
        world: World,
        delivery: WebhookDelivery,
        faults: Faults,
        closing: asyncio.Event,
        allow_http_webhooks: bool = True,
    ) -> None:
        self._world = world
        self._delivery = delivery
        self._faults = faults
        self._closing = closing
        self._allow_http = allow_http_webhooks
        table: dict[str, Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getFile": self._get_file,
            **messages.HANDLERS,
            **chats.HANDLERS,
        }
        # Telegram matches method names case-insensitively.
        self._handlers = {name.lower(): handler for name, handler in table.items()}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one Bot API call with Telegram's status codes and JSON envelope."""
        bot = self._world.bot(request.match_info["token"])
        if bot is None:
            return _json(ApiError(401, "Unauthorized").payload(), 401)
        method = request.match_info["method"]
        handler = self._handlers.get(method.lower())
        try:
            if handler is None:
                raise ApiError(404, "Not Found")
            params = await Params.from_request(request)
            bot.calls.append(
                (method, {k: v for k, v in params.raw().items() if not isinstance(v, Upload)})
            )
            fault = self._faults.take(bot.id, method)
            if fault is not None and fault.kind == "disconnect":
                assert request.transport is not None
                request.transport.close()
                raise ApiError(502, "Bad Gateway")
            if fault is not None:
                if fault.kind == "timeout":
                    await self._hang(fault.delay)
                raise fault.error()
            result = await handler(self._world, bot, params)
        except ApiError as error:
            bot.error_counts[error.error_code] = bot.error_counts.get(error.error_code, 0) + 1
            return _json(error.payload(), error.error_code)
        return _json({"ok": True, "result": result})

    async def _hang(self, delay: float) -> None:
        """Hold the request like an overloaded server; ends early when the emulator closes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    async def download(self, request: web.Request) -> web.StreamResponse:
        """GET /file/bot<token>/<file_path>, where aiogram's Bot.download fetches from."""
        if self._world.bot(request.match_info["token"]) is None:
            return _json(ApiError(401, "Unauthorized").payload(), 401)
        stored = self._world.files.by_path(request.match_info["path"])
        if stored is None:
            return _json(ApiError(404, "Not Found").payload(), 404)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _get_me(self, world: World, bot: BotAccount, p: Params) -> Any:
        return bot.me()

    async def _get_updates(self, world: World, bot: BotAccount, p: Params) -> Any:
        if bot.webhook is not None:
            raise ApiError(409, _WEBHOOK_CONFLICT)
        allowed = p.obj("allowed_updates")
        if isinstance(allowed, list):
            bot.updates.allowed_updates = allowed
        limit = min(100, max(1, p.integer("limit") or 100))
        timeout = max(0, p.integer("timeout") or 0)
        return await bot.updates.poll(p.integer("offset"), limit, timeout)

    async def _set_webhook(self, world: World, bot: BotAccount, p: Params) -> Any:
        url = p.text("url") or ""
        if not url:
            return await self._delete_webhook(world, bot, p)
        if not url.startswith("https://") and not (self._allow_http and url.startswith("http://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = p.text("secret_token")
        if secret is not None and not _SECRET.fullmatch(secret):
            raise bad_request("secret token contains unallowed characters")
        max_connections = p.integer("max_connections") or 40
        if not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        allowed = p.obj("allowed_updates")
        if isinstance(allowed, list):
            bot.updates.allowed_updates = allowed
        if p.flag("drop_pending_updates"):
            bot.updates.drop_all()
        bot.webhook = Webhook(url, secret, max_connections)
        self._delivery.start(bot)
        return True

    async def _delete_webhook(self, world: World, bot: BotAccount, p: Params) -> Any:
        bot.webhook = None
        await self._delivery.stop(bot)
        if p.flag("drop_pending_updates"):
            bot.updates.drop_all()
        return True

    async def _get_webhook_info(self, world: World, bot: BotAccount, p: Params) -> Any:
        info: dict[str, Any] = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(bot.updates.pending),
        }
        hook = bot.webhook
        if hook is not None:
            info.update(url=hook.url, max_connections=hook.max_connections)
            if hook.last_error_date is not None:
                info.update(
                    last_error_date=hook.last_error_date, last_error_message=hook.last_error_message
                )
        if bot.updates.allowed_updates:
            info["allowed_updates"] = bot.updates.allowed_updates
        return info

    async def _set_my_commands(self, world: World, bot: BotAccount, p: Params) -> Any:
        commands = p.obj("commands")
        if not isinstance(commands, list):
            raise bad_request("commands must be an Array")
        bot.commands = commands
        return True

    async def _get_my_commands(self, world: World, bot: BotAccount, p: Params) -> Any:
        return bot.commands

    async def _delete_my_commands(self, world: World, bot: BotAccount, p: Params) -> Any:
        bot.commands = []
        return True

    async def _get_file(self, world: World, bot: BotAccount, p: Params) -> Any:
        stored = world.files.get(p.text("file_id", required=True) or "")
        if stored is None:
            raise bad_request("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": len(stored.data),
            "file_path": stored.path,
        }

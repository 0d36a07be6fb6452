"""TelegramEmulator: the Bot API over HTTP plus control calls, all state in memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.sandbox.telegram.actions import CustomerActions
from gateway.sandbox.telegram.api import BotApi
from gateway.sandbox.telegram.control import add_control_routes
from gateway.sandbox.telegram.errors import ControlError
from gateway.sandbox.telegram.faults import Fault, FaultKind, Faults
from gateway.sandbox.telegram.limits import Clock, FloodControl, TelegramLimits
from gateway.sandbox.telegram.state import Account, BotAccount, StoredMessage, Topic
from gateway.sandbox.telegram.updates import UpdateQueue
from gateway.sandbox.telegram.webhook import Sleeper, WebhookDelivery, WebhookPolicy
from gateway.sandbox.telegram.world import World


class TelegramEmulator(CustomerActions):
    """A stateful Telegram for aiogram to talk to: serve `.app`, or mount it under a prefix."""

    def __init__(
        self,
        *,
        limits: TelegramLimits | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        webhook_policy: WebhookPolicy | None = None,
        sleep: Sleeper = asyncio.sleep,
        allow_http_webhooks: bool = True,
        first_update_id: int = 1,
    ) -> None:
        self.limits = limits or TelegramLimits()
        self.clock = clock
        self.world = World(wall_clock)
        self.faults = Faults()
        self.delivery = WebhookDelivery(webhook_policy or WebhookPolicy(), wall_clock, sleep)
        self._closing = asyncio.Event()
        self._first_update_id = first_update_id
        self.api = BotApi(
            self.world, self.delivery, self.faults, self._closing, allow_http_webhooks
        )
        self._app: web.Application | None = None

    def make_app(self) -> web.Application:
        """A fresh aiohttp app serving /bot<token>/<method>, /file/... and /control/..."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self.api.handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self.api.download)
        add_control_routes(app, self)

        async def on_cleanup(_: web.Application) -> None:
            await self.aclose()

        app.on_cleanup.append(on_cleanup)
        return app

    @property
    def app(self) -> web.Application:
        """The app, built once; mount with parent.add_subapp("/sandbox/telegram", emu.app)."""
        if self._app is None:
            self._app = self.make_app()
        return self._app

    async def aclose(self) -> None:
        """Release hanging requests and stop webhook delivery."""
        self._closing.set()
        for bot in self.world.bots.values():
            bot.updates.release()
        await self.delivery.aclose()

    async def __aenter__(self) -> TelegramEmulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def add_bot(
        self,
        token: str,
        *,
        username: str | None = None,
        first_name: str = "Test Bot",
        can_join_groups: bool = True,
        can_read_all_group_messages: bool = False,
    ) -> BotAccount:
        """Register a bot; its id is the number before the colon of the token."""
        head, sep, secret = token.partition(":")
        if not (head.isdigit() and sep and secret):
            raise ControlError(f"token must look like <bot_id>:<secret>, got {token!r}")
        bot_id = int(head)
        account = Account(bot_id, first_name, username=username or f"bot{bot_id}_bot", is_bot=True)
        bot = BotAccount(
            token,
            account,
            FloodControl(self.limits, self.clock),
            can_join_groups=can_join_groups,
            can_read_all_group_messages=can_read_all_group_messages,
            updates=UpdateQueue(self._first_update_id),
        )
        self.world.bots[token] = bot
        return bot

    def fail_next(
        self,
        method: str,
        times: int = 1,
        *,
        kind: FaultKind = "error",
        error_code: int = 500,
        description: str = "Internal Server Error",
        retry_after: int | None = None,
        delay: float = 30.0,
        bot_id: int | None = None,
    ) -> Fault:
        """Make the next `times` calls of `method` fail: an error reply (retry_after gives
        a 429), kind="timeout" holds the request `delay` s, kind="disconnect" drops it."""
        return self.faults.arm(
            Fault(method, times, kind, error_code, description, retry_after, delay, bot_id)
        )

    def bot(self, bot_id: int | None = None) -> BotAccount:
        """A registered bot by id (or the only one)."""
        return self.world.bot_by_id(bot_id)

    def messages(self, chat_id: int, *, bot_id: int | None = None) -> list[StoredMessage]:
        """Every message in a chat (a private chat as seen by that bot), oldest first."""
        chat = self.world.groups.get(chat_id)
        if chat is None:
            chat = self.bot(bot_id).private_chats.get(chat_id)
        return [] if chat is None else list(chat.messages.values())

    def sent_messages(
        self, chat_id: int, *, bot_id: int | None = None, thread_id: int | None = None
    ) -> list[StoredMessage]:
        """What bots (or one bot) sent to a chat, optionally only in one topic."""
        bot_ids = {b.id for b in self.world.bots.values()} if bot_id is None else {bot_id}
        return [
            m
            for m in self.messages(chat_id, bot_id=bot_id)
            if m.sender.id in bot_ids
            and (thread_id is None or m.thread_id == thread_id)
            and "forum_topic_created" not in m.content
        ]

    def topics(self, chat_id: int) -> list[Topic]:
        """Forum topics of a group."""
        return list(self.world.group(chat_id).topics.values())

    def chat_actions(self, chat_id: int, *, bot_id: int | None = None) -> list[dict[str, Any]]:
        """sendChatAction calls recorded for a chat."""
        chat = self.world.groups.get(chat_id) or self.bot(bot_id).private_chats.get(chat_id)
        return [] if chat is None else list(chat.actions)

    def error_counts(self, bot_id: int | None = None) -> dict[int, int]:
        """How many error replies of each code (429, 403, ...) the bot has received."""
        return dict(self.bot(bot_id).error_counts)

    def pending_updates(self, bot_id: int | None = None) -> list[dict[str, Any]]:
        """Updates not yet confirmed (polling) or delivered (webhook)."""
        return list(self.bot(bot_id).updates.pending)

    def calls(self, bot_id: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Every Bot API call the bot made, with its parameters (uploads left out)."""
        return list(self.bot(bot_id).calls)

"""The VK community bot (vkbottle 4): Callback API or Bots Long Poll in, messages.send out.

Inside, as in every channel package: `adapter` (outbound), `inbound` (events →
Inbound/Signal/reachability), `render` (text + keyboard), `webhook` (Callback API),
`polling` (Bots Long Poll) and `client` (the vkbottle API without hidden retries).
vkbottle objects stay in this package.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from bots.vk.adapter import VKAdapter
from bots.vk.client import make_api
from bots.vk.inbound import VKEvents
from bots.vk.polling import CursorStore, VKPolling
from bots.vk.webhook import VKWebhook
from gateway.channels import Sink

__all__ = ["VKAdapter", "VKBot"]


class VKBot:
    """One VK community: its outbound adapter and its inbound transport."""

    def __init__(
        self,
        *,
        token: str,
        group_id: int,
        sink: Sink,
        api_url: str = "https://api.vk.com/method/",
        mode: Literal["longpoll", "callback"] = "longpoll",
        secret: str | None = None,
        confirmation: str | None = None,
        timeout: float = 15.0,
        poll_wait: int = 25,
        callback_budget: float = 3.0,
        cursors: CursorStore | None = None,
    ) -> None:
        if mode not in ("longpoll", "callback"):
            raise ValueError(f"VK mode must be 'longpoll' or 'callback', not {mode!r}")
        if mode == "callback" and not confirmation:
            raise ValueError("VK callback mode needs the confirmation code (vk_confirmation)")
        self.mode = mode
        self.group_id = group_id
        self._api = make_api(token, api_url, timeout=timeout)
        self.adapter = VKAdapter(self._api, group_id)
        self.events = VKEvents(self._api, group_id, sink)
        self._webhook = (
            VKWebhook(self.events, confirmation=confirmation, secret=secret, budget=callback_budget)
            if mode == "callback" and confirmation
            else None
        )
        self._polling = (
            VKPolling(self._api, self.events, wait=poll_wait, cursors=cursors)
            if mode == "longpoll"
            else None
        )

    def setup_routes(self, app: web.Application) -> None:
        """Add `POST /webhooks/vk`; in long-poll mode there is nothing to add."""
        if self._webhook is not None:
            self._webhook.setup_routes(app)

    async def start(self) -> None:
        """Start polling (long-poll mode); the webhook needs no start."""
        if self._polling is not None:
            await self._polling.start()

    async def aclose(self) -> None:
        """Stop polling, let webhook work finish, close the HTTP session."""
        if self._polling is not None:
            await self._polling.aclose()
        if self._webhook is not None:
            await self._webhook.aclose()
        await self.adapter.aclose()

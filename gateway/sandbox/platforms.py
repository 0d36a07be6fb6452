"""The sandbox's platforms: Telegram and VK emulators mounted inside chatgate itself.

With no channel tokens configured, chatgate runs its bots against these, over
real HTTP, so a new user can talk to the bot in the console at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.sandbox.telegram import TelegramEmulator, TelegramLimits
from gateway.sandbox.vk import VKEmulator

__all__ = ["SandboxPlatforms", "SandboxTokens"]

TELEGRAM_PREFIX = "/sandbox/telegram"
VK_PREFIX = "/sandbox/vk"


@dataclass(frozen=True, slots=True)
class SandboxTokens:
    """What the bots are configured with when they talk to the emulators."""

    telegram_token: str
    telegram_api_url: str
    vk_token: str
    vk_group_id: int
    vk_api_url: str


class SandboxPlatforms:
    """One emulated Telegram bot and one emulated VK community."""

    telegram_token = "7000000001:sandbox-telegram-token"
    telegram_username = "chatgate_sandbox_bot"
    vk_group_id = 1

    def __init__(self, *, telegram_limits: TelegramLimits | None = None) -> None:
        self.telegram = TelegramEmulator(limits=telegram_limits or TelegramLimits())
        self.telegram.add_bot(
            self.telegram_token, username=self.telegram_username, first_name="Chatgate Sandbox"
        )
        self.vk = VKEmulator(
            group_id=self.vk_group_id, group_name="Chatgate Sandbox", screen_name="chatgate"
        )

    def mount(self, app: web.Application) -> None:
        app.add_subapp(TELEGRAM_PREFIX, self.telegram.app)
        app.add_subapp(VK_PREFIX, self.vk.app)

    def tokens(self, base_url: str) -> SandboxTokens:
        """Bot settings pointing at the emulators served under `base_url`."""
        return SandboxTokens(
            telegram_token=self.telegram_token,
            telegram_api_url=base_url + TELEGRAM_PREFIX,
            vk_token=self.vk.token(),
            vk_group_id=self.vk_group_id,
            vk_api_url=base_url + VK_PREFIX + "/method/",
        )

    async def aclose(self) -> None:
        await self.telegram.aclose()
        await self.vk.aclose()

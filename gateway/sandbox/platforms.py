"""The sandbox's platforms: every channel's emulator, mounted inside chatgate itself.

With no channel tokens configured, chatgate runs its bots against the Telegram and
VK emulators, over real HTTP, so a new user can talk to the bot in the console at
once. Likewise, with no SMS provider and no SMTP configured, its real Twilio
adapter talks to an in-process Twilio and its real email adapter relays through
an in-process mail server, while its SMTP receiver takes the customers' mail:
`settings_for` fills in those settings so that the user needs to give none.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.config import Settings
from gateway.sandbox.mail import PostOffice
from gateway.sandbox.sms import TwilioEmulator
from gateway.sandbox.telegram import TelegramEmulator, TelegramLimits
from gateway.sandbox.vk import VKEmulator

__all__ = ["SandboxPlatforms", "SandboxTokens", "rebase"]

TELEGRAM_PREFIX = "/sandbox/telegram"
VK_PREFIX = "/sandbox/vk"
SMS_PREFIX = "/sandbox/sms"
MAIL_PREFIX = "/sandbox/mail"
SMS_WEBHOOK = "/webhooks/sms/twilio"  # where the sandbox number's inbound SMS go

SHOP_ADDRESS = "support@shop.example"
# Twilio's shape of ids; the number is the one Twilio documents for test sends.
TWILIO_ACCOUNT_SID = "AC" + "5a" * 16
TWILIO_NUMBER = "+15005550006"


@dataclass(frozen=True, slots=True)
class SandboxTokens:
    """What the bots are configured with when they talk to the emulators."""

    telegram_token: str
    telegram_api_url: str
    vk_token: str
    vk_group_id: int
    vk_api_url: str


def rebase(public_url: str, local_url: str) -> Callable[[str], str]:
    """Map a URL under chatgate's public address to the same path on its local one.

    The emulators sign and show what a platform would (the public URL) but reach
    chatgate where it listens, which a tunnel or proxy in PUBLIC_URL may not be.
    """
    public = public_url.rstrip("/")
    local = local_url.rstrip("/")

    def deliver_to(url: str) -> str:
        return local + url[len(public) :] if url.startswith(public + "/") else url

    return deliver_to


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SandboxPlatforms:
    """One emulated Telegram bot, one VK community, and, when asked, Twilio and mail."""

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
        self.sms: TwilioEmulator | None = None
        self.mail: PostOffice | None = None

    def settings_for(self, settings: Settings, local_url: str) -> Settings:
        """`settings` with the sandbox's Twilio and mail where the user configured none.

        `local_url` is where this process listens; the public URL (`base_url`) is
        what the emulators sign webhooks over and what links in mail point to.
        """
        update: dict[str, Any] = {}
        deliver_to = rebase(settings.base_url, local_url)
        if settings.sms_provider is None:
            token = secrets.token_hex(16)
            self.sms = TwilioEmulator(
                account_sid=TWILIO_ACCOUNT_SID,
                auth_token=token,
                number=TWILIO_NUMBER,
                sms_url=settings.base_url + SMS_WEBHOOK,
                deliver_to=deliver_to,
            )
            update |= {
                "sms_provider": "twilio",
                "twilio_account_sid": TWILIO_ACCOUNT_SID,
                "twilio_auth_token": token,
                "twilio_from": TWILIO_NUMBER,
                "twilio_api_url": local_url + SMS_PREFIX,
            }
        if not settings.smtp_url and not settings.smtp_listen:
            address = (settings.email_address or SHOP_ADDRESS).lower()
            domain = settings.email_domain or address.rpartition("@")[2]
            mx_port = _free_loopback_port()
            self.mail = PostOffice(
                shop_address=address,
                shop_domain=domain,
                mx_host="127.0.0.1",
                mx_port=mx_port,
                deliver_to=deliver_to,
            )
            update |= {
                "email_address": address,
                "email_secret": settings.email_secret or secrets.token_urlsafe(32),
                "smtp_url": self.mail.server.url,
                "smtp_listen": f"127.0.0.1:{mx_port}",
            }
        return settings.model_copy(update=update)

    def manager_in(self, chat_id: int | None) -> int | None:
        """A person (not a bot) who administers the managers' group `chat_id` in the emulator.

        The console plays them; None when the group is not in the emulator.
        """
        group = self.telegram.world.groups.get(chat_id) if chat_id is not None else None
        if group is None:
            return None
        users = self.telegram.world.users
        for user_id, status in group.members.items():
            if status in ("creator", "administrator") and user_id in users:
                return user_id
        return None

    def mount(self, app: web.Application) -> None:
        app.add_subapp(TELEGRAM_PREFIX, self.telegram.app)
        app.add_subapp(VK_PREFIX, self.vk.app)
        if self.sms is not None:
            app.add_subapp(SMS_PREFIX, self.sms.app)
        if self.mail is not None:
            app.add_subapp(MAIL_PREFIX, self.mail.app)

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
        if self.sms is not None:
            await self.sms.aclose()
        if self.mail is not None:
            await self.mail.aclose()

"""HTTP routes of the sandbox console: the page, its static files and its settings.

Routes go on the parent application, not a sub-application at /sandbox, so the
emulators mounted at /sandbox/telegram and /sandbox/vk keep their own prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["PREFIX", "ConsoleConfig", "setup_console"]

PREFIX = "/sandbox"
STATIC_DIR = Path(__file__).with_name("static")
# An allow-list rather than add_static: only these files exist, with these types
# (mimetypes differs between Pythons on .js).
STATIC_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "sms.js": "text/javascript; charset=utf-8",
    "mail.js": "text/javascript; charset=utf-8",
    "managers.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
# A developer editing the console wants a reload to show the edit.
NO_CACHE = {"Cache-Control": "no-cache"}


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """What the page needs to reach chatgate's API and each emulator.

    A channel whose token or group is None has no pane. Paths are URLs the browser
    resolves against the page, normally absolute paths on the same server.
    """

    api_key: str
    telegram_token: str | None = None
    telegram_base: str = f"{PREFIX}/telegram"
    telegram_control: str = f"{PREFIX}/telegram/control"
    vk_group_id: int | None = None
    vk_base: str = f"{PREFIX}/vk"
    vk_control: str = f"{PREFIX}/vk/control"
    sms_number: str | None = None  # the shop's number at the sandbox's Twilio
    sms_control: str = f"{PREFIX}/sms/control"
    mail_address: str | None = None  # the shop's address; customers' mail goes there
    mail_control: str = f"{PREFIX}/mail/control"
    managers_chat_id: int | None = None  # the managers' forum in the Telegram emulator
    manager_id: int | None = None  # the manager the person plays there
    api_base: str = "/api"
    poll_interval: float = 1.0

    def as_json(self) -> dict[str, Any]:
        """The body of GET /sandbox/config."""
        telegram = None
        if self.telegram_token is not None:
            telegram = {
                "base": self.telegram_base,
                "bot_token": self.telegram_token,
                "control": self.telegram_control,
            }
        vk = None
        if self.vk_group_id is not None:
            vk = {"base": self.vk_base, "group_id": self.vk_group_id, "control": self.vk_control}
        sms = None
        if self.sms_number is not None:
            sms = {"number": self.sms_number, "control": self.sms_control}
        mail = None
        if self.mail_address is not None:
            mail = {"shop_address": self.mail_address, "control": self.mail_control}
        managers = None
        if self.managers_chat_id is not None and self.manager_id is not None:
            managers = {
                "chat_id": self.managers_chat_id,
                "manager_id": self.manager_id,
                "control": self.telegram_control,
            }
        return {
            "api_key": self.api_key,
            "api_base": self.api_base,
            "poll_interval_ms": round(self.poll_interval * 1000),
            "telegram": telegram,
            "vk": vk,
            "sms": sms,
            "mail": mail,
            "managers": managers,
        }


def setup_console(app: web.Application, *, config: ConsoleConfig) -> None:
    """Serve the console at /sandbox/, its files at /sandbox/static/, settings at /sandbox/config.

    /sandbox/config hands out the API key to anyone who can reach the server: mount
    the console only in sandbox mode, which is a local developer setup.
    """
    settings = config.as_json()

    async def redirect(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{PREFIX}/")

    async def index(_request: web.Request) -> web.StreamResponse:
        return _file("index.html")

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES or name == "index.html":
            raise web.HTTPNotFound()
        return _file(name)

    async def console_config(_request: web.Request) -> web.StreamResponse:
        return web.json_response(settings, headers={"Cache-Control": "no-store"})

    app.router.add_get(PREFIX, redirect)
    app.router.add_get(f"{PREFIX}/", index, name="sandbox_console")
    app.router.add_get(f"{PREFIX}/config", console_config, name="sandbox_console_config")
    app.router.add_get(f"{PREFIX}/static/{{name}}", static, name="sandbox_console_static")


def _file(name: str) -> web.FileResponse:
    # FileResponse reads in a thread, so the loop never waits on the disk.
    headers = {"Content-Type": STATIC_FILES[name], **NO_CACHE}
    return web.FileResponse(STATIC_DIR / name, headers=headers)

"""The composition root: builds every part from the settings and runs them in order."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from contextlib import AsyncExitStack
from typing import Protocol

from aiohttp import web
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from gateway.config import Settings
from gateway.health import Health, setup_health
from storage.db import Database
from storage.migrate import alembic_config, upgrade

__all__ = ["App", "NotMigrated", "serve"]

log = logging.getLogger("chatgate")


class NotMigrated(RuntimeError):
    """The database is behind the code; `chatgate migrate` brings it up to date."""


class Service(Protocol):
    """Anything the app starts after the web server is up and stops before it goes."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class App:
    """Everything one chatgate process runs, wired from one Settings object."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api_key = settings.api_key or secrets.token_urlsafe(24)
        self.api_key_generated = settings.api_key is None
        self.db = Database(settings.database_url)
        self.health = Health()
        self.health.add("database", self.db.ping)
        self.web = web.Application(client_max_size=8 * 1024**2)
        self.services: list[Service] = []
        self._runner: web.AppRunner | None = None
        self._stack = AsyncExitStack()
        self._build()

    def _build(self) -> None:
        setup_health(self.web, self.health)
        from gateway.api import setup_api

        setup_api(
            self.web,
            db=self.db,
            api_key=self.api_key,
            region=self.settings.default_region,
        )

    async def prepare_database(self) -> None:
        """Migrate an SQLite file by itself; insist on `chatgate migrate` for a server."""
        if self.settings.is_sqlite:
            await upgrade(self.db.engine)
            return
        head = ScriptDirectory.from_config(alembic_config(self.settings.database_url)).get_heads()
        async with self.db.engine.connect() as conn:
            current = await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_heads()
            )
        if set(current) != set(head):
            raise NotMigrated(
                f"the database is at {current or 'no revision'}, the code needs {head}: "
                "run `chatgate migrate` first"
            )

    async def start(self) -> None:
        await self.prepare_database()
        self._runner = web.AppRunner(self.web, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        for service in self.services:
            await service.start()
            self._stack.push_async_callback(service.aclose)
        log.info(
            "chatgate.started",
            extra={"url": self.url, "database": self.db.engine.url.render_as_string()},
        )

    @property
    def url(self) -> str:
        """Where this process actually listens (the port may have been 0)."""
        if self._runner is not None and self._runner.addresses:
            host, port = self._runner.addresses[0][:2]
            return f"http://{host}:{port}"
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    async def aclose(self) -> None:
        await self._stack.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.db.aclose()
        log.info("chatgate.stopped")


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then stop every part cleanly."""
    app = App(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        if app.api_key_generated:
            print(f"CHATGATE_API_KEY was not set; this run's API key is: {app.api_key}", flush=True)
        print(f"chatgate is up at {app.url} (health: {app.url}/healthz)", flush=True)
        await stop.wait()
    finally:
        await app.aclose()

"""The composition root: builds every part from the settings and runs them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from importlib.resources import files
from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bots.dialog import Dialog, load_script
from bots.dialog.responder import BotResponder
from flows.engine import FlowEngine
from flows.loader import load_flows
from gateway.api import API_APP as API_SUBAPP
from gateway.api import setup_api
from gateway.api.conversations import DESK
from gateway.api.events import EVENT_LISTENERS, EventListener
from gateway.api.state import API_APP, LINKER
from gateway.broker import make_broker
from gateway.channels import ChannelAdapter
from gateway.clock import Clock, SystemClock
from gateway.config import Settings
from gateway.desk import Desk
from gateway.health import Health, setup_health
from gateway.lanes import RateLimits
from gateway.linking import ContinuationChannels, Linker
from gateway.outbox import Outbox
from gateway.router import Router
from gateway.sandbox.console import ConsoleConfig, setup_console
from gateway.sandbox.platforms import SandboxPlatforms
from gateway.tracking import setup_tracking
from storage.addresses import normalize_phone
from storage.cursors import Cursors
from storage.db import Database
from storage.errors import InvalidAddress
from storage.migrate import alembic_config, upgrade

if TYPE_CHECKING:
    from bots.telegram import TelegramBot

__all__ = ["App", "NotMigrated", "serve"]

log = logging.getLogger("chatgate")

DEFAULT_SCRIPT = str(files("bots.dialog.scripts") / "shop.yaml")


class NotMigrated(RuntimeError):
    """The database is behind the code; `chatgate migrate` brings it up to date."""


class Service(Protocol):
    """Anything the app starts after the web server is up and stops before it goes."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class Channel(Service, Protocol):
    """A bot on a platform: its outbound adapter, its webhook routes, its lifecycle."""

    @property
    def adapter(self) -> ChannelAdapter: ...

    def setup_routes(self, app: web.Application) -> None: ...


@dataclass(frozen=True, slots=True)
class _ChannelSettings:
    telegram_token: str | None
    telegram_api_url: str
    vk_token: str | None
    vk_group_id: int | None
    vk_api_url: str

    @classmethod
    def from_settings(cls, settings: Settings) -> _ChannelSettings:
        return cls(
            telegram_token=settings.telegram_token,
            telegram_api_url=settings.telegram_api_url,
            vk_token=settings.vk_token,
            vk_group_id=settings.vk_group_id,
            vk_api_url=settings.vk_api_url,
        )

    @classmethod
    def for_sandbox(cls, sandbox: SandboxPlatforms, base_url: str) -> _ChannelSettings:
        tokens = sandbox.tokens(base_url)
        return cls(
            telegram_token=tokens.telegram_token,
            telegram_api_url=tokens.telegram_api_url,
            vk_token=tokens.vk_token,
            vk_group_id=tokens.vk_group_id,
            vk_api_url=tokens.vk_api_url,
        )


def _rate_limits(settings: Settings) -> RateLimits:
    return RateLimits(
        telegram_rate_per_s=settings.telegram_rate_per_s,
        telegram_chat_rate_per_s=settings.telegram_chat_rate_per_s,
        telegram_group_rate_per_min=settings.telegram_group_rate_per_min,
        vk_rate_per_s=settings.vk_rate_per_s,
    )


class App:
    """Everything one chatgate process runs, wired from one Settings object."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.api_key = settings.api_key or secrets.token_urlsafe(24)
        self.api_key_generated = settings.api_key is None
        self.db = Database(settings.database_url)
        self.health = Health()
        self.health.add("database", self.db.ping)
        self.web = web.Application(client_max_size=8 * 1024**2)
        self.services: list[Service] = []
        self.desk: Desk | None = None  # the managers' group, when configured
        self._runner: web.AppRunner | None = None
        self._stack = AsyncExitStack()
        self._build()

    def _build(self) -> None:
        settings = self.settings
        setup_health(self.web, self.health)
        setup_api(self.web, db=self.db, api_key=self.api_key, region=settings.default_region)
        self.broker = make_broker(settings.redis_url)
        if settings.redis_url:
            self.health.add("broker", self.broker.ping)
        self.outbox = Outbox(self.db, self.broker, limits=_rate_limits(settings))
        self.router = Router(self.db, clock=self.clock, outbox=self.outbox)
        self.services.append(self.outbox)
        self.sandbox: SandboxPlatforms | None = None
        channels = _ChannelSettings.from_settings(settings)
        if settings.sandbox_enabled:
            self.sandbox = SandboxPlatforms()
            # The bots reach the in-process emulators locally, whatever PUBLIC_URL says.
            host = settings.http_host if settings.http_host not in {"0.0.0.0", "::", ""} else None
            local = f"http://{host or '127.0.0.1'}:{settings.http_port}"
            channels = _ChannelSettings.for_sandbox(self.sandbox, local)
            # SMS and mail unconfigured: the sandbox's Twilio and mail server stand in.
            settings = self.settings = self.sandbox.settings_for(settings, local)
            self.sandbox.mount(self.web)
            if self.sandbox.mail is not None:
                self.services.append(self.sandbox.mail)
        self.telegram: TelegramBot | None = None
        if channels.telegram_token:
            from bots.telegram import TelegramBot

            telegram = TelegramBot(
                token=channels.telegram_token,
                api_url=channels.telegram_api_url,
                mode=settings.telegram_mode if self.sandbox is None else "polling",
                webhook_secret=settings.telegram_webhook_secret,
                public_url=settings.base_url,
                sink=self.router,
            )
            self._add_channel(telegram)
            self.telegram = telegram
            self._add_desk(settings, telegram)
        if channels.vk_token and channels.vk_group_id is not None:
            from bots.vk import VKBot

            vk = VKBot(
                token=channels.vk_token,
                group_id=channels.vk_group_id,
                sink=self.router,
                api_url=channels.vk_api_url,
                mode=settings.vk_mode if self.sandbox is None else "longpoll",
                secret=settings.vk_secret,
                confirmation=settings.vk_confirmation,
                cursors=Cursors(self.db),
            )
            self._add_channel(vk)
        if settings.sms_provider:
            self._add_sms(settings, settings.sms_provider)
        if settings.smtp_url or settings.smtp_listen or settings.imap_url:
            self._add_email(settings)
        if settings.email_secret:
            # Open pixel, signed click redirects and unsubscribe pages; the email
            # adapter signs its List-Unsubscribe links with the same secret.
            setup_tracking(
                self.web,
                db=self.db,
                sink=self.router,
                secret=settings.email_secret,
                clock=self.clock,
            )
        self.dialog = Dialog(load_script(settings.dialog_script or DEFAULT_SCRIPT))
        # An invalid flow stops the start (FlowErrors names each file and line).
        self.flows = load_flows(settings.flows_dir)
        self.flow_engine = FlowEngine.from_settings(
            settings, self.db, self.outbox, self.flows, clock=self.clock
        )
        self.services.append(self.flow_engine)
        # POST /api/events hands each new event to the engine once it is stored.
        listeners: list[EventListener] = [self.flow_engine.on_event]
        self.web[API_SUBAPP][EVENT_LISTENERS] = listeners
        self._add_flow_ops(settings, listeners)
        self.linker = self._linker(settings, channels.vk_group_id)
        self.router.link_with(self.linker)
        self.web[API_APP][LINKER] = self.linker  # POST /api/customers/{id}/link
        self.services.append(self.linker)
        self.router.answer_with(
            bot=BotResponder(
                self.db,
                self.outbox,
                self.dialog,
                clock=self.clock,
                region=settings.default_region,
                codes=self.linker,
            )
        )
        if self.desk is None:  # no managers' group: the API's conversation actions still work
            self.desk = Desk(self.db, self.outbox, None, clock=self.clock)
        self.desk.linker = getattr(self, "linker", None)
        self.outbox.on_unreachable(self.desk.unreachable)  # a reply to a blocked channel moves on
        self.web[API_APP][DESK] = self.desk
        if self.sandbox is not None:
            managers = self.desk.mirror.chat_id if self.desk is not None else None
            setup_console(
                self.web,
                config=ConsoleConfig(
                    api_key=self.api_key,
                    telegram_token=channels.telegram_token,
                    vk_group_id=channels.vk_group_id,
                    sms_number=self.sandbox.sms.number if self.sandbox.sms else None,
                    mail_address=self.sandbox.mail.shop_address if self.sandbox.mail else None,
                    managers_chat_id=managers,
                    manager_id=self.sandbox.manager_in(managers),
                ),
            )

    def _add_desk(self, settings: Settings, telegram: TelegramBot) -> None:
        """The managers' group on the same bot: mirror, topics, commands, reminders."""
        from bots.telegram.managers import DeskAdapter, ManagerAccess, ManagersGroup
        from gateway.desk import Desk, Mirror, Reminders, TopicBook

        chat_id = settings.managers_chat_id
        if chat_id is None and self.sandbox is not None:
            from gateway.sandbox.telegram.desk import sandbox_desk

            chat_id = sandbox_desk(self.sandbox.telegram)
        if chat_id is None:
            return
        mirror = Mirror(self.outbox, chat_id=chat_id, account=telegram.account, clock=self.clock)
        self.outbox.on_stage(mirror.outbound)
        self.router.on_stored(mirror.inbound)
        self.outbox.register(
            DeskAdapter(telegram.bot, telegram.adapter, TopicBook(self.db), chat_id)
        )
        self.desk = Desk(self.db, self.outbox, mirror, clock=self.clock)
        access = ManagerAccess(telegram.bot, chat_id, settings.manager_ids)
        telegram.events.handle_groups(ManagersGroup(telegram.bot, self.desk, access, chat_id))
        self.services.append(
            Reminders(
                self.db,
                self.outbox,
                mirror,
                clock=self.clock,
                after_s=settings.manager_remind_after_s,
            )
        )

    def _linker(self, settings: Settings, vk_group_id: int | None) -> Linker:
        """Linking on proof, with a link into every channel this process receives on."""
        accounts = {channel: account for channel, account in self.outbox.adapters}
        sms_number = None
        if "sms" in accounts:
            # An alphanumeric sender name cannot be texted back: no SMS link then.
            with contextlib.suppress(InvalidAddress):
                sms_number = normalize_phone(accounts["sms"], settings.default_region)
        telegram = self.telegram
        return Linker(
            self.outbox,
            clock=self.clock,
            channels=ContinuationChannels(
                vk_group_id=vk_group_id,
                email_domain=settings.mail_domain if settings.smtp_listen else None,
                sms_number=sms_number,
            ),
            telegram_username=None if telegram is None else _username_of(telegram),
            email_account=accounts.get("email"),
            sms_account=accounts.get("sms"),
            ttl=timedelta(days=settings.link_ttl_days),
            region=settings.default_region,
        )

    def _add_sms(self, settings: Settings, provider: str) -> None:
        from gateway.bridge.sms import make_sms_provider, setup_sms_routes

        adapter = make_sms_provider(
            provider,
            public_url=settings.base_url,
            region=settings.default_region,
            max_segments=settings.sms_max_segments,
            webhook_secret=settings.sms_webhook_secret,
            kannel_url=settings.kannel_url,
            kannel_username=settings.kannel_username,
            kannel_password=settings.kannel_password,
            kannel_from=settings.kannel_from,
            kannel_dlr_mask=settings.kannel_dlr_mask,
            smsru_api_id=settings.smsru_api_id,
            smsru_from=settings.smsru_from,
            smsru_api_url=settings.smsru_api_url,
            twilio_account_sid=settings.twilio_account_sid,
            twilio_auth_token=settings.twilio_auth_token,
            twilio_from=settings.twilio_from,
            twilio_api_url=settings.twilio_api_url,
        )
        self.outbox.register(adapter)
        setup_sms_routes(
            self.web,
            provider=provider,
            sink=self.router,
            public_url=settings.base_url,
            account=adapter.account,
            auth_token=settings.twilio_auth_token,
            region=settings.default_region,
            webhook_secret=settings.sms_webhook_secret,
            smsru_api_id=settings.smsru_api_id,
        )
        # Pushed before any service starts, so it closes after the outbox has stopped.
        self._stack.push_async_callback(adapter.aclose)

    def _add_email(self, settings: Settings) -> None:
        from gateway.bridge.email import (
            EmailAdapter,
            EmailEvents,
            ImapPoller,
            MailThreads,
            SmtpReceiver,
        )

        address, secret, domain = (
            settings.email_address,
            settings.email_secret,
            settings.mail_domain,
        )
        # The settings' validator has made sure of these.
        assert address is not None
        assert secret is not None
        assert domain is not None
        account = address.rsplit("<", 1)[-1].rstrip(">").strip().lower()
        # Replies find their conversation by reply token, then by the mail we sent.
        threads = MailThreads(self.db, account)
        if settings.smtp_url:
            adapter = EmailAdapter(
                smtp_url=settings.smtp_url,
                from_addr=address,
                domain=domain,
                verp_secret=secret,
                public_url=settings.base_url,
                threads=threads,
                track=settings.email_tracking,
            )
            self.outbox.register(adapter)
            self._stack.push_async_callback(adapter.aclose)
        events = EmailEvents(
            self.router,
            address,
            domain=domain,
            verp_secret=secret,
            own_addresses=[address],
            threads=threads,
        )
        if settings.smtp_listen:
            host, _, port = settings.smtp_listen.rpartition(":")
            self.services.append(
                SmtpReceiver(
                    events,
                    host=host,
                    port=int(port),
                    accept_domain=domain,
                    accept_addresses=[address],
                )
            )
        if settings.imap_url:
            self.services.append(
                ImapPoller(
                    settings.imap_url,
                    events,
                    Cursors(self.db),
                    idle=settings.imap_idle,
                    poll_interval_s=settings.imap_poll_interval_s,
                )
            )

    def _add_flow_ops(self, settings: Settings, listeners: list[EventListener]) -> None:
        """Broadcasts, the cron timetable (fired by the leader only) and segment entry."""
        from flows.broadcasts import Broadcasts
        from flows.entry import SegmentEntry
        from flows.scheduler import FlowScheduler
        from gateway.api.broadcasts import BROADCASTS
        from gateway.api.flows import FLOWS

        self.broadcasts = Broadcasts(self.db, self.flow_engine, self.flows, clock=self.clock)
        self.flow_scheduler = FlowScheduler(
            self.flows, self.broadcasts, self.broker, clock=self.clock, timezone=settings.zone
        )
        self.segment_entry = SegmentEntry(self.db, self.flow_engine, self.flows, clock=self.clock)
        self.services += [self.broadcasts, self.flow_scheduler, self.segment_entry]
        listeners.append(self.segment_entry.on_event)
        self.web[BROADCASTS] = self.broadcasts  # /api/broadcasts
        self.web[FLOWS] = self.flows  # /api/flows

    def _add_channel(self, bot: Channel) -> None:
        self.outbox.register(bot.adapter)
        bot.setup_routes(self.web)
        self.services.append(bot)

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
        if self.sandbox is not None:
            await self.sandbox.aclose()  # releases long polls the server would wait out
        if self._runner is not None:
            await self._runner.cleanup()
        await self.broker.aclose()
        await self.db.aclose()
        log.info("chatgate.stopped")


def _username_of(telegram: TelegramBot) -> Callable[[], Awaitable[str | None]]:
    async def username() -> str | None:
        return (await telegram.bot.me()).username

    return username


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

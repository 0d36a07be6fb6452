"""Kannel for real: chatgate ↔ smsbox ↔ bearerbox ↔ fakesmsc (the handset), all on loopback.

Needs Debian's `kannel` (bearerbox, smsbox) and `kannel-extras` (fakesmsc); `.ci/run`
installs both. The fake SMSC answers a message with a success report (type 1) when
the dlr-mask asks for one, which is what moves a delivery to `delivered`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote_from_bytes, unquote_to_bytes

import aiohttp
import pytest
import sqlalchemy as sa
from sqlmodel import col

from gateway.app import App
from gateway.config import load_settings
from gateway.outbox import Target
from storage.models import Delivery, Direction, Message
from tests.conftest import free_port, service_missing

T = TypeVar("T")

SENDER = "12345"  # our short number (CHATGATE_KANNEL_FROM)
PHONE = "79161234567"  # the handset fakesmsc plays
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"


def _binary(name: str) -> str | None:
    # /usr/sbin is not on every user's PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


@dataclass(frozen=True)
class Ports:
    admin: int = field(default_factory=free_port)
    smsbox: int = field(default_factory=free_port)
    smsc: int = field(default_factory=free_port)
    sendsms: int = field(default_factory=free_port)
    chatgate: int = field(default_factory=free_port)


def kannel_conf(ports: Ports, logs: Path) -> str:
    """bearerbox + smsbox in one file: a fake SMSC, a sendsms user, a catch-all MO service."""
    # %b is the raw text (%a squeezes spaces); %c/%C say how to decode it.
    get_url = (
        f"http://127.0.0.1:{ports.chatgate}/webhooks/sms/kannel"
        "?from=%p&to=%P&text=%b&coding=%c&charset=%C&id=%I&ts=%T"
    )
    return f"""
group = core
admin-port = {ports.admin}
smsbox-port = {ports.smsbox}
admin-password = secret
admin-allow-ip = "127.0.0.1"
box-allow-ip = "127.0.0.1"
dlr-storage = internal
log-file = "{logs}/bearerbox.log"
log-level = 1

group = smsc
smsc = fake
smsc-id = fake1
host = 127.0.0.1
port = {ports.smsc}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports.smsbox}
sendsms-port = {ports.sendsms}
sendsms-interface = 127.0.0.1
global-sender = {SENDER}
log-file = "{logs}/smsbox.log"
log-level = 1

group = sendsms-user
username = chatgate
password = foobar
max-messages = 10
concatenation = true

group = sms-service
keyword = default
catch-all = true
max-messages = 0
omit-empty = true
get-url = "{get_url}"
"""


class Handset:
    """fakesmsc in interactive mode: a line on stdin is an SMS to us; stderr shows ours."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._typed = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())

    async def types(self, kind: str, data: str) -> None:
        """Send one MO; fakesmsc takes a line per read, so wait until it went out."""
        assert self.process.stdin is not None
        self._typed += 1
        self.process.stdin.write(f"{PHONE} {SENDER} {kind} {data}\n".encode())
        await self.process.stdin.drain()
        marker = f"sent message {self._typed}"
        await until(lambda: _async(any(marker in line for line in self.lines)))

    def received(self) -> list[str]:
        """Single-part SMS that reached the handset, decoded (parts of long ones are skipped)."""
        texts = []
        for line in self.lines:
            found = re.search(r"Got message \d+: <\S+ (\S+) (text|data|ucs-2) (.*)>$", line)
            if found and found[1] == PHONE:
                # Kannel URL-encodes the bytes, a space as "+".
                raw = unquote_to_bytes(found[3].replace("+", " "))
                texts.append(raw.decode("utf-16-be" if found[2] == "ucs-2" else "utf-8", "replace"))
        return texts

    async def aclose(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def _async(value: T) -> T:
    return value


async def until(probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0) -> T:
    """Poll an async `probe` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


@dataclass
class World:
    app: App
    handset: Handset
    logs: Path


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            # bearerbox lingers ~5 s on SIGTERM while it still holds reports for chatgate.
            await asyncio.wait_for(process.wait(), 1)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _status(ports: Ports) -> str:
    """bearerbox's status page, or "" while it is not listening yet."""
    url = f"http://127.0.0.1:{ports.admin}/status.txt?password=secret"
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return await response.text()
    except aiohttp.ClientError:
        return ""


async def _connected(ports: Ports) -> bool:
    """The fake SMSC has its client (fakesmsc) and an smsbox is connected."""
    status = await _status(ports)
    return "FAKE:" in status and "(online" in status and "smsbox:" in status


@pytest.fixture
def kannel_config(tmp_path: Path) -> tuple[Ports, Path]:
    bearerbox = _binary("bearerbox")
    if bearerbox is None or _binary("smsbox") is None or not Path(FAKESMSC).exists():
        service_missing(
            "Kannel",
            FileNotFoundError(f"bearerbox, smsbox or {FAKESMSC} (apt-get install kannel-extras)"),
        )
    ports = Ports()
    conf = tmp_path / "kannel.conf"
    conf.write_text(kannel_conf(ports, tmp_path))
    return ports, conf


@pytest.fixture
async def world(kannel_config: tuple[Ports, Path], tmp_path: Path) -> AsyncIterator[World]:
    """A full chatgate App sending through a real Kannel to fakesmsc; every process stopped."""
    ports, conf = kannel_config
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}",
        http_port=ports.chatgate,
        sandbox=False,
        api_key="test-key",
        sms_provider="kannel",
        kannel_url=f"http://127.0.0.1:{ports.sendsms}/cgi-bin/sendsms",
        kannel_username="chatgate",
        kannel_password="foobar",
        kannel_from=SENDER,
    )
    app = App(settings)
    processes: list[asyncio.subprocess.Process] = []
    handset: Handset | None = None
    quiet = asyncio.subprocess.DEVNULL
    try:
        await app.start()
        processes.append(
            await asyncio.create_subprocess_exec(
                str(_binary("bearerbox")), str(conf), stdout=quiet, stderr=quiet
            )
        )
        # fakesmsc gives up if the fake SMSC is not listening yet.
        await until(lambda: _status(ports))
        fakesmsc = await asyncio.create_subprocess_exec(
            FAKESMSC,
            *("-H", "127.0.0.1", "-r", str(ports.smsc)),
            stdin=asyncio.subprocess.PIPE,
            stdout=quiet,
            stderr=asyncio.subprocess.PIPE,
        )
        processes.append(fakesmsc)
        handset = Handset(fakesmsc)
        processes.append(
            await asyncio.create_subprocess_exec(
                str(_binary("smsbox")), str(conf), stdout=quiet, stderr=quiet
            )
        )
        await until(lambda: _connected(ports))
        yield World(app, handset, tmp_path)
    finally:
        try:
            await app.aclose()  # first: the outbox would retry against a stopped smsbox
        finally:
            for process in reversed(processes):
                await _stop(process)
            if handset is not None:
                await handset.aclose()


async def _inbound(app: App, text: str) -> Message | None:
    async with app.db.session() as session:
        found = await session.scalars(
            sa.select(Message).where(
                col(Message.channel) == "sms",
                col(Message.direction) == Direction.inbound,
                col(Message.text) == text,
            )
        )
        return found.first()


async def _deliveries(app: App, message_id: int) -> list[Delivery]:
    async with app.db.session() as session:
        found = await session.scalars(
            sa.select(Delivery).where(col(Delivery.message_id) == message_id)
        )
        return list(found)


def _ucs2(text: str) -> str:
    """fakesmsc's `ucs2` message data: URL-encoded UTF-16BE."""
    return quote_from_bytes(text.encode("utf-16-be"), safe="")


async def test_sms_typed_on_the_handset_land_in_the_conversation(world: World) -> None:
    await world.handset.types("ucs2", _ucs2("Привет! Где мой заказ №42?"))
    await world.handset.types("text", "where is my order")

    cyrillic = await until(lambda: _inbound(world.app, "Привет! Где мой заказ №42?"))
    latin = await until(lambda: _inbound(world.app, "where is my order"))

    assert cyrillic.account == SENDER
    assert cyrillic.external_id  # Kannel's %I, which makes a repeated get-url a no-op
    assert latin.conversation_id == cyrillic.conversation_id


async def test_a_reply_reaches_the_handset_and_its_report_marks_it_delivered(
    world: World,
) -> None:
    await world.handset.types("text", "hello")
    inbound = await until(lambda: _inbound(world.app, "hello"))
    assert inbound.id is not None

    reply = "Ваш заказ №42 готов к выдаче"
    enqueued = await world.app.outbox.enqueue(
        Target(
            conversation_id=inbound.conversation_id,
            customer_id=inbound.customer_id,
            channel="sms",
            account=SENDER,
            address=f"+{PHONE}",
        ),
        text=reply,
    )

    await until(lambda: _async(reply in world.handset.received()))

    async def delivered() -> list[Delivery] | None:
        rows = await _deliveries(world.app, enqueued.message_id)
        return rows if rows and all(d.status == "delivered" for d in rows) else None

    (row,) = await until(delivered)
    assert row.id == enqueued.delivery_ids[0]

"""The sandbox console: its page, static files and settings, served beside both emulators."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.sandbox.console import ConsoleConfig, setup_console
from gateway.sandbox.mail import PostOffice
from gateway.sandbox.sms import TwilioEmulator
from gateway.sandbox.telegram import TelegramEmulator
from gateway.sandbox.vk import VKEmulator
from tests.conftest import service_missing

TOKEN = "123456:sandbox-secret"
GROUP_ID = 4242
SHOP_NUMBER = "+15005550006"
SHOP_ADDRESS = "support@shop.example"
MANAGERS_CHAT = -1001000000777
MANAGER = 700_000_001
CONFIG = ConsoleConfig(
    api_key="key-for-tests",
    telegram_token=TOKEN,
    vk_group_id=GROUP_ID,
    sms_number=SHOP_NUMBER,
    mail_address=SHOP_ADDRESS,
    managers_chat_id=MANAGERS_CHAT,
    manager_id=MANAGER,
)


def _twilio() -> TwilioEmulator:
    return TwilioEmulator(
        account_sid="AC" + "0" * 32,
        auth_token="token",
        number=SHOP_NUMBER,
        sms_url="http://127.0.0.1:9/webhooks/sms/twilio",  # nothing listens: no chatgate here
        report_delay=0.01,
    )


def _office() -> PostOffice:
    return PostOffice(
        shop_address=SHOP_ADDRESS, shop_domain="shop.example", mx_host="127.0.0.1", mx_port=9
    )


def _managers_forum(telegram: TelegramEmulator) -> None:
    """The managers' forum with a topic for Anna, as the desk would have opened it."""
    telegram.add_user(MANAGER, "Мария", "Менеджер")
    telegram.create_group(
        "Менеджеры", owner=MANAGER, is_forum=True, chat_id=MANAGERS_CHAT, notify_bots=False
    )
    telegram.create_topic(MANAGERS_CHAT, "Ivan Sidorov · VK", by_user=MANAGER)
    thread = telegram.create_topic(MANAGERS_CHAT, "Anna Petrova · TG · SMS", by_user=MANAGER)
    telegram.member_writes(MANAGERS_CHAT, MANAGER, "/take", thread_id=thread)
    telegram.member_writes(MANAGERS_CHAT, MANAGER, "Добрый день, Анна!", thread_id=thread)


def _app(
    config: ConsoleConfig = CONFIG,
    *,
    twilio: TwilioEmulator | None = None,
    office: PostOffice | None = None,
) -> web.Application:
    """The console mounted like the composition root does: next to every emulator."""
    app = web.Application()
    telegram = TelegramEmulator()
    telegram.add_bot(TOKEN, username="shop_bot", first_name="Shop")
    _managers_forum(telegram)
    vk = VKEmulator(group_id=GROUP_ID)
    app.add_subapp("/sandbox/telegram", telegram.make_app())
    app.add_subapp("/sandbox/vk", vk.make_app())
    sms = twilio or _twilio()
    mail = office or _office()
    app.add_subapp("/sandbox/sms", sms.app)
    app.add_subapp("/sandbox/mail", mail.app)

    async def close(_app: web.Application) -> None:
        await sms.aclose()
        await mail.aclose()

    app.on_cleanup.append(close)
    setup_console(app, config=config)
    return app


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(_app())) as client:
        yield client


async def test_page_has_the_pane_roots_and_loads_the_script(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/sandbox/")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    for root in ('id="topbar"', 'id="api-key"', 'id="customer-picker"', 'id="panes"'):
        assert root in page
    assert '<script src="static/console.js"></script>' in page
    assert 'href="static/console.css"' in page


async def test_bare_prefix_redirects_to_the_page(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/sandbox", allow_redirects=False)
    assert response.status in (301, 302, 307, 308)
    assert response.headers["Location"] == "/sandbox/"


@pytest.mark.parametrize(
    ("name", "content_type", "marker"),
    [
        ("console.js", "text/javascript", "PANE_TYPES"),
        ("console.css", "text/css", ".pane"),
    ],
)
async def test_static_files_have_their_types(
    client: TestClient[web.Request, web.Application], name: str, content_type: str, marker: str
) -> None:
    response = await client.get(f"/sandbox/static/{name}")
    assert response.status == 200
    assert response.content_type == content_type
    assert response.charset == "utf-8"
    assert marker in await response.text()


@pytest.mark.parametrize("name", ["nope.js", "__init__.py", "..%2Froutes.py", "index.html"])
async def test_only_the_console_files_are_served(
    client: TestClient[web.Request, web.Application], name: str
) -> None:
    response = await client.get(f"/sandbox/static/{name}")
    assert response.status == 404


async def test_config_hands_the_page_its_endpoints(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/sandbox/config")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == {
        "api_key": "key-for-tests",
        "api_base": "/api",
        "poll_interval_ms": 1000,
        "telegram": {
            "base": "/sandbox/telegram",
            "bot_token": TOKEN,
            "control": "/sandbox/telegram/control",
        },
        "vk": {"base": "/sandbox/vk", "group_id": GROUP_ID, "control": "/sandbox/vk/control"},
        "sms": {"number": SHOP_NUMBER, "control": "/sandbox/sms/control"},
        "mail": {"shop_address": SHOP_ADDRESS, "control": "/sandbox/mail/control"},
        "managers": {
            "chat_id": MANAGERS_CHAT,
            "manager_id": MANAGER,
            "control": "/sandbox/telegram/control",
        },
    }


async def test_a_channel_without_settings_has_no_pane() -> None:
    async with TestClient(TestServer(_app(ConsoleConfig(api_key="k")))) as client:
        body = await (await client.get("/sandbox/config")).json()
    assert body["telegram"] is None
    assert body["vk"] is None
    assert body["sms"] is None
    assert body["mail"] is None
    assert body["managers"] is None


async def test_emulators_stay_reachable_beside_the_console(
    client: TestClient[web.Request, web.Application],
) -> None:
    """The console's routes must not shadow the emulators mounted under /sandbox."""
    created = await client.post("/sandbox/vk/control/users", json={"first_name": "Anna"})
    assert created.status == 200
    user_id = (await created.json())["id"]
    wrote = await client.post(f"/sandbox/vk/control/users/{user_id}/messages", json={"text": "hi"})
    assert wrote.status == 200
    bots = await (await client.get("/sandbox/telegram/control/bots")).json()
    assert bots["result"][0]["username"] == "shop_bot"


def test_static_files_ship_as_package_data() -> None:
    static = Path(__file__).parents[2] / "gateway" / "sandbox" / "console" / "static"
    assert (static / "__init__.py").is_file()  # a package, so package-data picks the files up
    assert {p.name for p in static.iterdir()} >= {"index.html", "console.js", "console.css"}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


PHONE = "+79161234567"
MAILBOX = "anna@example.org"
SHOP_MAIL = b"""\
From: Shop <support@shop.example>
To: anna@example.org
Reply-To: reply+c42@shop.example
Subject: =?utf-8?b?0JLQsNGIINC30LDQutCw0Lcg0YHQvtCx0YDQsNC9?=
Message-ID: <chatgate.7.abc@shop.example>
In-Reply-To: <q1@example.org>
List-Unsubscribe: <https://shop.example/unsubscribe/7.sig>
List-Unsubscribe-Post: List-Unsubscribe=One-Click
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b"

--b
Content-Type: text/plain; charset=utf-8

Track it: https://shop.example/t/c/7
--b
Content-Type: text/html; charset=utf-8

<p>Track it: <a href="https://shop.example/t/c/7">parcel</a></p>
--b--
"""


async def test_page_renders_every_pane_in_a_browser(tmp_path: Path) -> None:
    """End to end: headless Chromium runs the scripts as a customer from the URL.

    The SMS phone shows what the shop sent it and what it texted (here refused:
    no chatgate listens), the mailbox shows the shop's mail with its threading
    and unsubscribe headers and the HTML part in a script-less frame.
    """
    if CHROMIUM is None:
        service_missing("Chromium", FileNotFoundError("chromium is not installed"))
    assert CHROMIUM is not None
    twilio, office = _twilio(), _office()
    twilio.accept({"To": PHONE, "From": SHOP_NUMBER, "Body": "Ваш код: 4321"})
    await twilio.text_from(PHONE, "Спасибо!")
    office.mailboxes.file(
        SHOP_MAIL.replace(b"\n", b"\r\n"),
        mailbox=MAILBOX,
        folder="inbox",
        envelope_from="bounce+7-x@shop.example",
    )
    runner = web.AppRunner(_app(twilio=twilio, office=office), shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        process = await asyncio.create_subprocess_exec(
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path}",
            "--virtual-time-budget=3000",
            "--dump-dom",
            f"http://{host}:{port}/sandbox/?name=Anna+Petrova&phone=%2B79161234567&email={MAILBOX}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        dom, _ = await asyncio.wait_for(process.communicate(), timeout=45)
    finally:
        await runner.cleanup()
    html = dom.decode()
    for pane in ("telegram", "vk", "sms", "mail", "history", "managers"):
        assert f'data-pane="{pane}"' in html
    sms = html.split('data-pane="sms"', 1)[1].split('data-pane="', 1)[0]
    assert f"you: Anna Petrova · {PHONE}" in sms
    assert "Ваш код: 4321" in sms
    assert "Спасибо!" in sms
    assert "chatgate answered nothing" in sms  # the refused webhook is shown, not hidden
    mail = html.split('data-pane="mail"', 1)[1].split('data-pane="', 1)[0]
    assert f"Mail · {MAILBOX}" in mail
    assert "Ваш заказ собран" in mail  # the encoded-word subject, decoded
    assert "reply+c42@shop.example" in mail
    assert "&lt;q1@example.org&gt;" in mail  # In-Reply-To among the headers
    assert "Unsubscribe (one-click)" in mail
    assert 'class="mail-html"' in mail
    assert "shop.example/t/c/7" in mail
    managers = html.split('data-pane="managers"', 1)[1]
    assert "Ivan Sidorov · VK" in managers  # every topic is listed
    # The customer's own topic is opened: its messages, and the commands a manager has.
    assert '<div class="topic-heading">Anna Petrova · TG · SMS</div>' in managers
    assert "Добрый день, Анна!" in managers
    assert ">/release</button>" in managers

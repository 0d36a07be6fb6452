"""The console driven in a real browser against a whole sandbox chatgate.

Headless Chromium loads the console as a customer; the test types and clicks in
the panes over the DevTools protocol, as a person would, and checks what the
emulators and chatgate then hold: a text from the SMS pane reaches chatgate and
the bot's answer comes back into that phone; mail written in the mailbox pane is
answered by mail, and the Reply button threads the answer's answer into the same
conversation; the managers' pane /take button acts in the customer's topic.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from sqlmodel import col

from gateway.app import App
from gateway.config import load_settings
from storage.models import Message
from tests.conftest import free_port, service_missing
from tests.e2e.conftest import eventually

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHONE = "+79161234567"
MAILBOX = "anna@example.org"


class Page:
    """One browser tab over the DevTools protocol: evaluate JavaScript, wait for a condition."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = 0

    async def evaluate(self, expression: str) -> Any:
        self._ids += 1
        call = self._ids
        await self._ws.send_json(
            {
                "id": call,
                "method": "Runtime.evaluate",
                "params": {"expression": expression, "returnByValue": True, "awaitPromise": True},
            }
        )
        while True:
            reply = json.loads((await self._ws.receive(timeout=30)).data)
            if reply.get("id") == call:
                break
        result = reply["result"]
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, condition: str, *, within: float = 20.0) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            value = await self.evaluate(condition)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                state = await self.evaluate(
                    "document.getElementById('connection').textContent + ' | ' +"
                    " [...document.querySelectorAll('[data-pane]')]"
                    ".map((p) => p.dataset.pane + ': ' + p.innerHTML.slice(0, 1500)).join(' || ')"
                )
                raise AssertionError(f"{condition!r} not true within {within}s; console: {state}")
            await asyncio.sleep(0.2)

    async def submit(self, pane: str, selector: str, text: str) -> None:
        """Type into a field of a pane and submit its form."""
        await self.evaluate(
            f"""(() => {{
              const field = document.querySelector('[data-pane="{pane}"] {selector}');
              field.value = {json.dumps(text)};
              field.closest("form").requestSubmit();
            }})()"""
        )

    async def click(self, pane: str, label: str) -> None:
        """Click the first button in a pane whose text is `label`."""
        clicked = await self.evaluate(
            f"""(() => {{
              const b = [...document.querySelectorAll('[data-pane="{pane}"] button')]
                .find((x) => x.textContent.trim() === {json.dumps(label)});
              if (b) b.click();
              return Boolean(b);
            }})()"""
        )
        assert clicked, f"no {label!r} button in the {pane} pane"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'console.db'}",
        http_port=free_port(),
        sandbox=True,
        api_key="test-key",
    )
    app = App(settings)
    try:
        await app.start()
        yield app
    finally:
        await app.aclose()


@pytest.fixture
async def page(app: App, tmp_path: Path) -> AsyncIterator[Page]:
    if CHROMIUM is None:
        service_missing("Chromium", FileNotFoundError("chromium is not installed"))
    assert CHROMIUM is not None
    port = free_port()
    url = f"{app.url}/sandbox/?name=Anna+Petrova&phone=%2B79161234567&email={MAILBOX}"
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--remote-debugging-port={port}",
        "--window-size=2400,1000",
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            target = await _page_target(http, port)
            async with http.ws_connect(target, max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        process.kill()
        await process.wait()


async def _page_target(http: aiohttp.ClientSession, port: int) -> str:
    for _ in range(150):
        try:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                pages = [t for t in await r.json() if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("Chromium did not open its DevTools port")


async def _inbound(app: App, channel: str) -> list[Message]:
    async with app.db.session() as session:
        rows = await session.execute(
            sa.select(Message)
            .where(col(Message.channel) == channel, col(Message.direction) == "in")
            .order_by(col(Message.id))
        )
        return list(rows.scalars())


@pytest.mark.timeout(180)  # three channels through the real outbox pacing, in one browser
async def test_a_person_texts_mails_and_manages_from_the_console(app: App, page: Page) -> None:
    assert app.sandbox is not None
    twilio, office = app.sandbox.sms, app.sandbox.mail
    assert twilio is not None
    assert office is not None
    await page.until(
        """document.querySelector('[data-pane="sms"] .feed')?.textContent.includes("No SMS yet")""",
        within=60,
    )

    # SMS: typed in the phone pane, signed to chatgate, answered into the phone.
    await page.submit("sms", "form.composer input", "Сколько идёт доставка?")
    phone = twilio.phones.phone(PHONE)
    await eventually(lambda: phone.messages, within=30)
    await eventually(lambda: [m for m in phone.messages if m.direction == "received"], within=60)
    assert phone.messages[0].body == "Сколько идёт доставка?"
    assert phone.messages[0].webhook_status == 200
    await page.until("""[...document.querySelectorAll('[data-pane="sms"] .msg.in')].length > 0""")

    # Mail: a new message from the mailbox pane, then Reply to the shop's answer.
    await page.click("mail", "✉ New")
    await page.submit("mail", "form.mail-compose textarea", "Здравствуйте! Где мой заказ?")

    def answers() -> list[Any]:
        return [m for m in office.mailboxes.of(MAILBOX) if m.folder == "inbox"]

    first = (await eventually(answers, within=30))[0]
    await page.until(
        f"""!!document.querySelector('[data-pane="mail"] .mail-row[data-id="{first.id}"]')"""
    )
    await page.evaluate(
        f"""document.querySelector('[data-pane="mail"] .mail-row[data-id="{first.id}"]').click()"""
    )
    await page.click("mail", "↩ Reply")
    await page.submit("mail", "form.mail-compose textarea", "Номер заказа 12345")
    sent = await eventually(
        lambda: [m for m in office.mailboxes.of(MAILBOX) if m.in_reply_to == first.message_id]
    )
    assert sent[0].folder == "sent"
    for _ in range(100):
        mails = await _inbound(app, "email")
        if len(mails) == 2:
            break
        await asyncio.sleep(0.1)
    assert [m.text.strip() for m in mails] == ["Здравствуйте! Где мой заказ?", "Номер заказа 12345"]
    assert mails[0].conversation_id == mails[1].conversation_id

    # Managers: asking for a person by SMS opens a topic; /take is pressed in it.
    await page.submit("sms", "form.composer input", "позовите оператора")
    await page.until(
        """[...document.querySelectorAll('[data-pane="managers"] .topic')].length > 1""",
        within=30,
    )
    await page.evaluate(
        """document.querySelector('[data-pane="managers"] .topic[data-thread]').click()"""
    )
    await page.until("""[...document.querySelectorAll('[data-pane="managers"] .commands button')]
        .some((b) => b.textContent === "/take")""")
    await page.click("managers", "/take")
    await eventually(
        lambda: [m for m in phone.messages if "менеджер" in m.body.lower() and "подключ" in m.body],
        within=30,
    )

"""Linking on proof through the emulators and the real aiogram/vkbottle clients.

A customer moves between VK, Telegram and SMS by following continuation links,
sharing their Telegram contact or typing back a code; a stranger who types their
phone sees nothing of them. Checked from what people see in each channel and
from the API.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from gateway.app import App
from tests.e2e.conftest import eventually

AUTH = {"Authorization": "Bearer test-key"}


class Api:
    """The JSON API of the app under test."""

    def __init__(self, app: App, http: aiohttp.ClientSession) -> None:
        self.url = app.url
        self.http = http

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.http.request(method, self.url + path, **kwargs) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def owner(self, channel: str, address: str) -> int | None:
        """The id of the customer an identity belongs to, once it exists."""
        found = await self.call("GET", f"/api/customers?channel={channel}&limit=100")
        for item in found["items"]:
            profile = await self.call("GET", f"/api/customers/{item['id']}")
            if any(
                i["channel"] == channel and i["address"] == address for i in profile["identities"]
            ):
                return int(profile["id"])
        return None

    async def wait_owner(self, channel: str, address: str, expected: int | None = None) -> int:
        for _ in range(300):
            owner = await self.owner(channel, address)
            if owner is not None and expected in (None, owner):
                return owner
            await _pause()
        raise AssertionError(f"{channel}:{address} never belonged to {expected}")

    async def texts(self, customer_id: int) -> list[str]:
        history = await self.call("GET", f"/api/customers/{customer_id}/messages?limit=200")
        return [m["text"] for m in history["items"]]


async def _pause() -> None:
    await asyncio.sleep(0.05)


def _texts(messages: list[Any]) -> list[str]:
    return [getattr(m, "text", None) or "" for m in messages]


def _token(url: str, key: str) -> str:
    return parse_qs(urlsplit(url).query)[key][0]


async def test_a_vk_customer_follows_the_telegram_link_and_continues_there(
    sandbox_app: App,
) -> None:
    assert sandbox_app.sandbox is not None
    vk, telegram = sandbox_app.sandbox.vk, sandbox_app.sandbox.telegram
    vk.add_user(7001, "Анна", "Петрова")
    vk.user_writes(7001, "Здравствуйте, где мой заказ 10234?")
    await eventually(lambda: vk.sent_to(7001))
    telegram.add_user(501, first_name="Анна")
    telegram.user_sends_text(501, "Есть доставка в Казань?")  # a Telegram history of her own
    await eventually(lambda: telegram.sent_messages(501))

    async with aiohttp.ClientSession(headers=AUTH) as http:
        api = Api(sandbox_app, http)
        anna = await api.wait_owner("vk", "7001")
        links = await api.call("POST", f"/api/customers/{anna}/link")
        assert set(links) == {"telegram", "vk", "email", "sms"}
        assert links["telegram"].startswith("https://t.me/chatgate_sandbox_bot?start=")
        assert links["vk"].startswith("https://vk.me/club1?ref=")

        before = len(telegram.sent_messages(501))
        telegram.user_starts(501, _token(links["telegram"], "start"))
        replies = await eventually(lambda: _texts(telegram.sent_messages(501)[before:]))
        assert "продолжаем наш разговор" in replies[0]
        await api.wait_owner("telegram", "501", anna)

        texts = await api.texts(anna)
        assert "Здравствуйте, где мой заказ 10234?" in texts
        assert "Есть доставка в Казань?" in texts
        profile = await api.call("GET", f"/api/customers/{anna}")
        assert sorted(i["channel"] for i in profile["identities"]) == ["telegram", "vk"]

        # The conversation goes on in Telegram, in the same history.
        telegram.user_sends_text(501, "доставка")
        await eventually(lambda: [t for t in _texts(telegram.sent_messages(501)) if "СДЭК" in t])
        assert "доставка" in await api.texts(anna)

        # The same link again, from someone else, proves nothing.
        telegram.add_user(502, first_name="Чужой")
        telegram.user_starts(502, _token(links["telegram"], "start"))
        stale = await eventually(lambda: _texts(telegram.sent_messages(502)))
        assert "ссылка уже не действует" in stale[0]
        assert await api.wait_owner("telegram", "502") != anna


async def test_a_telegram_customer_follows_the_vk_link(sandbox_app: App) -> None:
    assert sandbox_app.sandbox is not None
    vk, telegram = sandbox_app.sandbox.vk, sandbox_app.sandbox.telegram
    telegram.add_user(601, first_name="Пётр")
    telegram.user_sends_text(601, "Хочу вернуть заказ")
    await eventually(lambda: telegram.sent_messages(601))
    async with aiohttp.ClientSession(headers=AUTH) as http:
        api = Api(sandbox_app, http)
        petr = await api.wait_owner("telegram", "601")
        links = await api.call("POST", f"/api/customers/{petr}/link")
        vk.add_user(8001, "Пётр", "Иванов")
        vk.user_writes(8001, "Привет", ref=_token(links["vk"], "ref"), ref_source="site")
        replies = await eventually(lambda: vk.sent_to(8001))
        assert "продолжаем наш разговор" in replies[0].text
        await api.wait_owner("vk", "8001", petr)
        assert not any("Здравствуйте" in m.text for m in vk.sent_to(8001))


async def test_telegrams_contact_button_links_a_known_phone(sandbox_app: App) -> None:
    assert sandbox_app.sandbox is not None
    telegram = sandbox_app.sandbox.telegram
    async with aiohttp.ClientSession(headers=AUTH) as http:
        api = Api(sandbox_app, http)
        known = await api.call(
            "POST", "/api/customers", json={"name": "Анна", "phone": "+79161234567"}
        )
        telegram.add_user(701, first_name="Аня", phone="+79161234567")
        telegram.user_sends_text(701, "перезвоните мне")
        await eventually(lambda: telegram.sent_messages(701))
        telegram.user_shares_contact(701)
        await api.wait_owner("telegram", "701", known["id"])


async def test_a_typed_phone_earns_a_code_only_the_phone_sees(sandbox_app: App) -> None:
    """A stranger typing the customer's phone sees nothing; the owner types the code back."""
    sandbox = sandbox_app.sandbox
    assert sandbox is not None
    assert sandbox.sms is not None
    telegram, phones = sandbox.telegram, sandbox.sms.phones
    async with aiohttp.ClientSession(headers=AUTH) as http:
        api = Api(sandbox_app, http)
        await sandbox.sms.text_from("+79161234567", "Мой заказ 10234 опаздывает, Анна Петрова")
        anna = await api.wait_owner("sms", "+79161234567")

        # A stranger types that phone on Telegram.
        telegram.add_user(801, first_name="Чужой")
        telegram.user_sends_text(801, "перезвоните мне")
        await eventually(lambda: telegram.sent_messages(801))
        telegram.user_sends_text(801, "+7 916 123-45-67")
        await eventually(
            lambda: [t for t in _texts(telegram.sent_messages(801)) if "Если этот номер" in t]
        )
        code_sms = await eventually(
            lambda: [m.body for m in phones.phone("+79161234567").messages if "Код" in m.body]
        )
        code = re.search(r"\d{6}", code_sms[-1])
        assert code is not None
        seen = " ".join(_texts(telegram.sent_messages(801)))
        assert code.group(0) not in seen
        assert "10234" not in seen
        assert "Петрова" not in seen
        stranger = await api.wait_owner("telegram", "801")
        assert stranger != anna

        # Whoever holds the phone types the code back where they asked for it.
        before = len(telegram.sent_messages(801))
        telegram.user_sends_text(801, code.group(0))
        replies = await eventually(lambda: _texts(telegram.sent_messages(801)[before:]))
        assert "продолжаем наш разговор" in replies[0]
        await api.wait_owner("telegram", "801", anna)
        assert "Мой заказ 10234 опаздывает, Анна Петрова" in await api.texts(anna)


async def test_the_mail_and_sms_links_bring_their_sender_in(sandbox_app: App) -> None:
    sandbox = sandbox_app.sandbox
    assert sandbox is not None
    assert sandbox.mail is not None
    assert sandbox.sms is not None
    sandbox.vk.add_user(7003, "Анна", "Петрова")
    sandbox.vk.user_writes(7003, "Здравствуйте")
    async with aiohttp.ClientSession(headers=AUTH) as http:
        api = Api(sandbox_app, http)
        anna = await api.wait_owner("vk", "7003")
        links = await api.call("POST", f"/api/customers/{anna}/link")

        mailto = urlsplit(links["email"])
        subject = parse_qs(mailto.query)["subject"][0]
        await sandbox.mail.write(
            "anna@example.ru", "Продолжим по почте", subject=subject, to=mailto.path
        )
        await api.wait_owner("email", "anna@example.ru", anna)

        sms = urlsplit(links["sms"])
        assert sms.path == sandbox.sms.number
        await sandbox.sms.text_from("+79035556677", parse_qs(sms.query)["body"][0])
        await api.wait_owner("sms", "+79035556677", anna)
        assert "Продолжим по почте" in await api.texts(anna)

"""What a customer would notice when platforms misbehave: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from sqlmodel import col

from gateway.app import App
from gateway.config import load_settings
from gateway.sandbox.telegram import TelegramEmulator, TelegramLimits
from storage.models import Delivery, Identity, Message
from tests.conftest import free_port
from tests.e2e.conftest import eventually


async def _count(app: App, text: str) -> int:
    async with app.db.session() as session:
        return int(
            await session.scalar(
                sa.select(sa.func.count()).select_from(Message).where(col(Message.text) == text)
            )
            or 0
        )


async def _wait_count(app: App, text: str, expected: int) -> None:
    for _ in range(300):
        if await _count(app, text) >= expected:
            break
        await _sleep()
    assert await _count(app, text) == expected


async def _sleep() -> None:
    await asyncio.sleep(0.05)


async def test_a_redelivered_telegram_update_is_stored_once(sandbox_app: App) -> None:
    assert sandbox_app.sandbox is not None
    telegram = sandbox_app.sandbox.telegram
    telegram.add_user(601, first_name="Олег")
    telegram.user_sends_text(601, "первое сообщение")
    await _wait_count(sandbox_app, "первое сообщение", 1)
    update_id = telegram.world.bot_by_id(None).updates.history[-1]["update_id"]
    telegram.redeliver(update_id)
    telegram.user_sends_text(601, "второе сообщение")  # the duplicate was handled before it
    await _wait_count(sandbox_app, "второе сообщение", 1)
    assert await _count(sandbox_app, "первое сообщение") == 1


async def test_a_429_storm_loses_nothing_and_doubles_nothing(sandbox_app: App) -> None:
    assert sandbox_app.sandbox is not None
    telegram = sandbox_app.sandbox.telegram
    telegram.add_user(602, first_name="Вера")
    telegram.fail_next("sendMessage", 4, error_code=429, retry_after=1)
    telegram.user_starts(602)
    # Greeting and menu both arrive, once each, after the storm has passed.
    sent = await eventually(lambda: len(telegram.sent_messages(602)) >= 2 or None, within=20)
    assert sent
    assert telegram.error_counts().get(429) == 4
    for _ in range(200):  # the outbox records "sent" just after the emulator has it
        async with sandbox_app.db.session() as session:
            deliveries = list(await session.scalars(sa.select(Delivery).order_by(col(Delivery.id))))
        if all(d.status == "sent" for d in deliveries):
            break
        await _sleep()
    assert len(deliveries) == len(telegram.sent_messages(602)) == 2
    assert all(d.status == "sent" for d in deliveries)
    assert deliveries[0].attempts >= 2  # the same delivery, retried after the pause


async def test_a_customer_who_blocks_the_bot_becomes_unreachable(sandbox_app: App) -> None:
    assert sandbox_app.sandbox is not None
    telegram = sandbox_app.sandbox.telegram
    telegram.add_user(603, first_name="Пётр")
    telegram.user_starts(603)
    await eventually(lambda: telegram.sent_messages(603))
    telegram.user_blocks_bot(603)

    async def reachable() -> bool:
        async with sandbox_app.db.session() as session:
            identity = await session.scalar(
                sa.select(Identity).where(col(Identity.address) == "603")
            )
            assert identity is not None
            return identity.reachable

    for _ in range(200):
        if not await reachable():
            break
        await _sleep()
    assert not await reachable()
    telegram.user_unblocks_bot(603)
    for _ in range(200):
        if await reachable():
            break
        await _sleep()
    assert await reachable()


async def test_webhook_mode_checks_the_secret_and_answers_through_the_emulator(
    tmp_path: Path,
) -> None:
    emulator = TelegramEmulator(limits=TelegramLimits.disabled())
    emulator.add_bot("4242:webhook-token", username="hook_bot")
    server = TestServer(emulator.app, host="127.0.0.1", port=0)
    await server.start_server()
    port = free_port()
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hook.db'}",
        http_port=port,
        sandbox=False,
        api_key="k",
        telegram_token="4242:webhook-token",
        telegram_api_url=str(server.make_url("")).rstrip("/"),
        telegram_mode="webhook",
        telegram_webhook_secret="s3cret",
        public_url=f"http://127.0.0.1:{port}",
    )
    app = App(settings)
    await app.start()
    try:
        emulator.add_user(604, first_name="Ира")
        emulator.user_starts(604)
        greeting = await eventually(lambda: emulator.sent_messages(604))
        assert "Здравствуйте" in (greeting[0].text or "")
        async with aiohttp.ClientSession() as http:
            forged = {
                "update_id": 999,
                "message": {
                    "message_id": 5,
                    "date": 0,
                    "text": "hi",
                    "chat": {"id": 604, "type": "private"},
                },
            }
            async with http.post(
                f"{app.url}/webhooks/telegram",
                json=forged,
                headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
            ) as response:
                assert response.status == 401
            async with http.post(
                f"{app.url}/webhooks/telegram",
                data=b"{not json",
                headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"},
            ) as response:
                assert response.status == 400
                assert "Traceback" not in await response.text()
        assert await _count(app, "hi") == 0
    finally:
        await app.aclose()
        await server.close()

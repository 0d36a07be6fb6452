"""Who may act in the managers' group (bots/telegram/managers/access.py), asked of the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp.test_utils import TestServer

from bots.telegram.managers import ManagerAccess
from gateway.sandbox.telegram import TelegramEmulator

TOKEN = "77:desk-secret"


@pytest.fixture
async def emulator() -> AsyncIterator[TelegramEmulator]:
    emu = TelegramEmulator()
    emu.add_bot(TOKEN)
    for user_id, name in ((1, "Owner"), (2, "Listed"), (3, "Member"), (4, "Later admin")):
        emu.add_user(user_id, name)
    yield emu
    await emu.aclose()


@pytest.fixture
async def bot(emulator: TelegramEmulator) -> AsyncIterator[Bot]:
    server = TestServer(emulator.app, host="127.0.0.1", port=0)
    await server.start_server()
    bot = Bot(
        TOKEN,
        session=AiohttpSession(api=TelegramAPIServer.from_base(f"http://127.0.0.1:{server.port}")),
    )
    yield bot
    await bot.session.close()
    await server.close()


async def test_listed_users_and_group_admins_act_others_do_not(
    emulator: TelegramEmulator, bot: Bot
) -> None:
    group = emulator.create_group("Managers", owner=1, members=[2, 3, 4], notify_bots=False)
    now = [0.0]
    access = ManagerAccess(bot, group.id, managers=[2], ttl_s=60, clock=lambda: now[0])
    assert await access.allows(1)  # the owner: an admin, not listed
    assert await access.allows(2)  # listed, a plain member
    assert not await access.allows(3)
    assert not await access.allows(77)  # the bot itself is never a manager

    emulator.set_member(group.id, 4, "administrator")
    assert not await access.allows(4)  # the admin list is cached...
    now[0] = 61.0
    assert await access.allows(4)  # ...for a minute
    emulator.set_member(group.id, 4, "member")
    now[0] = 200.0
    assert not await access.allows(4)  # demoted: no longer a manager


async def test_when_telegram_cannot_say_nobody_new_is_let_in(
    emulator: TelegramEmulator, bot: Bot
) -> None:
    group = emulator.create_group("Managers", owner=1, members=[3], notify_bots=False)
    emulator.fail_next("getChatAdministrators", error_code=500)
    access = ManagerAccess(bot, group.id, managers=[], clock=lambda: 0.0)
    assert not await access.allows(1)
    assert not await access.allows(3)

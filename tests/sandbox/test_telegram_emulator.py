"""The Telegram emulator driven by the real aiogram client over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.sandbox.telegram import TelegramEmulator, TelegramLimits, WebhookPolicy

TOKEN = "42:TEST-secret"
BOT_ID = 42
USER_ID = 1001


@dataclass
class FakeClock:
    """Monotonic time the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def make_bot(base_url: str, token: str = TOKEN) -> Bot:
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def emulator(clock: FakeClock) -> AsyncIterator[TelegramEmulator]:
    emu = TelegramEmulator(
        clock=clock,
        limits=TelegramLimits(per_chat_burst=3),
        webhook_policy=WebhookPolicy(timeout=5, initial_backoff=0.01, max_backoff=0.05),
    )
    emu.add_bot(TOKEN, username="chatgate_bot", first_name="Chatgate")
    emu.add_user(USER_ID, "Ivan", "Petrov", username="ivan", phone="+79990001122")
    yield emu
    await emu.aclose()


@pytest.fixture
async def base_url(emulator: TelegramEmulator) -> AsyncIterator[str]:
    server = TestServer(emulator.app, host="127.0.0.1", port=0)
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest.fixture
async def bot(base_url: str) -> AsyncIterator[Bot]:
    bot = make_bot(base_url)
    yield bot
    await bot.session.close()


async def control(base_url: str, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{base_url}{path}", json=body) as response,
    ):
        payload = await response.json()
    assert payload["ok"], payload
    return payload["result"]


async def test_get_me_describes_the_bot(bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username, me.can_join_groups) == (
        BOT_ID,
        True,
        "chatgate_bot",
        True,
    )


async def test_unknown_token_is_unauthorized(base_url: str) -> None:
    stranger = make_bot(base_url, "7:nope")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()
    finally:
        await stranger.session.close()


async def test_unknown_method_is_404(base_url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/bot{TOKEN}/sendTelepathy") as response,
    ):
        assert response.status == 404
        assert await response.json() == {
            "ok": False,
            "error_code": 404,
            "description": "Not Found",
        }


async def test_works_mounted_under_a_prefix(emulator: TelegramEmulator) -> None:
    parent = web.Application()
    parent.add_subapp("/sandbox/telegram", emulator.app)
    server = TestServer(parent, host="127.0.0.1", port=0)
    await server.start_server()
    bot = make_bot(f"http://127.0.0.1:{server.port}/sandbox/telegram")
    try:
        assert (await bot.get_me()).id == BOT_ID
        emulator.user_starts(USER_ID)
        await bot.send_message(USER_ID, "hi")
        sent = await control(
            f"http://127.0.0.1:{server.port}/sandbox/telegram",
            "GET",
            f"/control/chats/{USER_ID}/sent",
        )
        assert [m["text"] for m in sent] == ["hi"]
    finally:
        await bot.session.close()
        await server.close()


async def test_html_message_with_inline_keyboard_is_recorded(
    bot: Bot, emulator: TelegramEmulator, base_url: str
) -> None:
    emulator.user_starts(USER_ID, "promo42")
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="vote:yes")]]
    )
    html = '<b>Hello</b>, &lt;Ivan&gt; <a href="https://example.com">site</a>'
    message = await bot.send_message(USER_ID, html, parse_mode="HTML", reply_markup=keyboard)

    assert message.text == "Hello, <Ivan> site"
    assert message.from_user is not None
    assert message.from_user.id == BOT_ID
    assert message.message_id == 2  # the /start the user sent was message 1
    assert message.entities is not None
    assert [(e.type, e.offset, e.length) for e in message.entities] == [
        ("bold", 0, 5),
        ("text_link", 14, 4),
    ]
    sent = await control(base_url, "GET", f"/control/chats/{USER_ID}/sent")
    assert len(sent) == 1
    assert sent[0]["html"] == html
    assert sent[0]["text"] == "Hello, <Ivan> site"
    assert sent[0]["reply_markup"] == {
        "inline_keyboard": [[{"text": "Yes", "callback_data": "vote:yes"}]]
    }


async def test_reply_keyboard_with_request_contact_is_kept(
    bot: Bot, emulator: TelegramEmulator
) -> None:
    emulator.user_starts(USER_ID)
    keyboard = ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text="Share phone", request_contact=True)]],
        resize_keyboard=True,
    )
    await bot.send_message(USER_ID, "Your phone?", reply_markup=keyboard)
    (sent,) = emulator.sent_messages(USER_ID)
    assert sent.reply_markup is not None
    assert sent.reply_markup["keyboard"][0][0] == {"text": "Share phone", "request_contact": True}


async def test_bad_html_is_rejected(bot: Bot, emulator: TelegramEmulator) -> None:
    emulator.user_starts(USER_ID)
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(USER_ID, "<b>bold <i>both</b></i>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "blink"'):
        await bot.send_message(USER_ID, "<blink>x</blink>", parse_mode="HTML")
    assert emulator.sent_messages(USER_ID) == []


async def test_message_length_is_counted_after_tags_in_utf16(
    bot: Bot, emulator: TelegramEmulator
) -> None:
    emulator.user_starts(USER_ID)
    await bot.send_message(USER_ID, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER_ID, "a" * 4097)
    # 2049 emoji are 4098 UTF-16 code units although only 2049 characters.
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER_ID, "😀" * 2049)
    assert len(emulator.sent_messages(USER_ID)) == 1


async def test_blocked_user_gives_forbidden_and_my_chat_member(
    bot: Bot, emulator: TelegramEmulator
) -> None:
    emulator.user_starts(USER_ID)
    emulator.user_blocks_bot(USER_ID)
    with pytest.raises(TelegramForbiddenError) as caught:
        await bot.send_message(USER_ID, "still there?")
    assert "bot was blocked by the user" in caught.value.message
    assert emulator.error_counts()[403] == 1

    updates = await bot.get_updates()
    kinds = [u.event_type for u in updates]
    assert kinds == ["message", "my_chat_member"]
    change = updates[1].my_chat_member
    assert change is not None
    assert (change.old_chat_member.status, change.new_chat_member.status) == ("member", "kicked")

    emulator.user_unblocks_bot(USER_ID)
    await bot.send_message(USER_ID, "welcome back")


async def test_unknown_chat_and_never_started_user(bot: Bot, emulator: TelegramEmulator) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(555, "hello?")
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(USER_ID, "cold call")


async def test_per_chat_flood_limit_gives_retry_after(
    bot: Bot, emulator: TelegramEmulator, clock: FakeClock
) -> None:
    emulator.user_starts(USER_ID)
    for n in range(3):  # the burst
        await bot.send_message(USER_ID, f"msg {n}")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(USER_ID, "one too many")
    assert caught.value.retry_after >= 1
    assert emulator.error_counts()[429] == 1
    clock.now += caught.value.retry_after
    await bot.send_message(USER_ID, "after waiting")
    assert len(emulator.sent_messages(USER_ID)) == 4


async def test_group_limit_is_twenty_per_minute(clock: FakeClock) -> None:
    # A dedicated emulator where only the group limit can bite.
    emu = TelegramEmulator(clock=clock, limits=TelegramLimits(per_chat_burst=100))
    emu.add_bot(TOKEN)
    emu.add_user(USER_ID, "Ivan")
    group = emu.create_group("Support", owner=USER_ID)
    server = TestServer(emu.app, host="127.0.0.1", port=0)
    await server.start_server()
    bot = make_bot(f"http://127.0.0.1:{server.port}")
    try:
        for n in range(20):
            clock.now += 0.1
            await bot.send_message(group.id, f"n{n}")
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(group.id, "21st")
        assert caught.value.retry_after >= 2  # one slot refills every 3 s
    finally:
        await bot.session.close()
        await server.close()


async def test_limits_can_be_disabled() -> None:
    emu = TelegramEmulator(limits=TelegramLimits.disabled())
    emu.add_bot(TOKEN)
    emu.add_user(USER_ID, "Ivan")
    emu.user_starts(USER_ID)
    server = TestServer(emu.app, host="127.0.0.1", port=0)
    await server.start_server()
    bot = make_bot(f"http://127.0.0.1:{server.port}")
    try:
        for n in range(40):
            await bot.send_message(USER_ID, f"n{n}")
    finally:
        await bot.session.close()
        await server.close()
    assert len(emu.sent_messages(USER_ID)) == 40


async def test_long_poll_returns_new_message_and_offset_confirms(
    bot: Bot, emulator: TelegramEmulator
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.05)
    assert not poll.done()
    emulator.user_sends_text(USER_ID, "hello bot")
    updates = await asyncio.wait_for(poll, 5)

    assert len(updates) == 1
    message = updates[0].message
    assert message is not None
    assert (message.text, message.chat.id, message.chat.type) == ("hello bot", USER_ID, "private")
    assert message.from_user is not None
    assert message.from_user.username == "ivan"

    again = await bot.get_updates()
    assert [u.update_id for u in again] == [updates[0].update_id]  # not confirmed yet
    assert await bot.get_updates(offset=updates[0].update_id + 1) == []
    assert emulator.pending_updates() == []


async def test_get_updates_limit_and_duplicate(bot: Bot, emulator: TelegramEmulator) -> None:
    for n in range(3):
        emulator.user_sends_text(USER_ID, f"m{n}")
    first_two = await bot.get_updates(limit=2)
    assert [u.message.text for u in first_two if u.message] == ["m0", "m1"]
    emulator.redeliver(first_two[0].update_id)
    rest = await bot.get_updates(offset=first_two[1].update_id + 1)
    assert [u.update_id for u in rest] == [first_two[1].update_id + 1, first_two[0].update_id]


async def test_get_updates_conflicts_with_webhook(bot: Bot) -> None:
    await bot.set_webhook("https://example.com/hook")
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    await bot.delete_webhook()
    assert await bot.get_updates() == []


async def test_webhook_delivery_with_secret_and_retry(bot: Bot, emulator: TelegramEmulator) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    answers = [500, 200]

    async def hook(request: web.Request) -> web.Response:
        received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        return web.json_response({}, status=answers.pop(0) if answers else 200)

    receiver_app = web.Application()
    receiver_app.router.add_post("/tg", hook)
    receiver = TestServer(receiver_app, host="127.0.0.1", port=0)
    await receiver.start_server()
    try:
        emulator.user_sends_text(USER_ID, "queued before the webhook")
        await bot.set_webhook(
            f"http://127.0.0.1:{receiver.port}/tg",
            secret_token="s3cr3t",
            drop_pending_updates=True,
        )
        emulator.user_sends_text(USER_ID, "via webhook")
        for _ in range(200):
            if len(received) == 2 and not emulator.pending_updates():
                break
            await asyncio.sleep(0.01)
        info = await bot.get_webhook_info()
    finally:
        await receiver.close()

    assert [secret for secret, _ in received] == ["s3cr3t", "s3cr3t"]
    assert received[0][1] == received[1][1]  # the same update retried after the 500
    assert received[0][1]["message"]["text"] == "via webhook"
    assert info.pending_update_count == 0
    assert info.last_error_message is not None
    assert "500" in info.last_error_message
    assert info.last_error_date is not None


async def test_forum_topics_and_thread_ids(bot: Bot, emulator: TelegramEmulator) -> None:
    emulator.add_user(2002, "Olga")
    group = emulator.create_group("Support", owner=2002, members=[USER_ID], notify_bots=False)
    topic = await bot.create_forum_topic(group.id, "Ivan Petrov (@ivan) [1001]")
    thread = topic.message_thread_id

    sent = await bot.send_message(group.id, "new dialogue", message_thread_id=thread)
    assert sent.message_thread_id == thread
    assert sent.is_topic_message is True
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(group.id, "lost", message_thread_id=thread + 100)

    await bot.edit_forum_topic(group.id, thread, name="Ivan (closed case)")
    await bot.close_forum_topic(group.id, thread)
    await bot.reopen_forum_topic(group.id, thread)
    assert [(t.name, t.closed) for t in emulator.topics(group.id)] == [
        ("Ivan (closed case)", False)
    ]

    emulator.member_writes(group.id, 2002, "manager reply", thread_id=thread)
    updates = await bot.get_updates()
    message = updates[-1].message
    assert message is not None
    assert (message.text, message.message_thread_id, message.is_topic_message) == (
        "manager reply",
        thread,
        True,
    )
    admins = await bot.get_chat_administrators(group.id)
    assert {a.user.id: a.status for a in admins} == {2002: "creator", BOT_ID: "administrator"}

    await bot.delete_forum_topic(group.id, thread)
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(group.id, "gone", message_thread_id=thread)
    assert emulator.sent_messages(group.id) == []  # the topic's messages went with it


async def test_callback_data_over_64_bytes_is_rejected(
    bot: Bot, emulator: TelegramEmulator
) -> None:
    emulator.user_starts(USER_ID)

    def keyboard(data: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="go", callback_data=data)]]
        )

    await bot.send_message(USER_ID, "ok", reply_markup=keyboard("x" * 64))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(USER_ID, "too big", reply_markup=keyboard("x" * 65))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(USER_ID, "33 cyrillic = 66 bytes", reply_markup=keyboard("я" * 33))


async def test_button_press_and_callback_answer(
    bot: Bot, emulator: TelegramEmulator, base_url: str
) -> None:
    emulator.user_starts(USER_ID)
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="vote:yes")]]
    )
    sent = await bot.send_message(USER_ID, "Vote?", reply_markup=keyboard)
    pressed = await control(
        base_url,
        "POST",
        f"/control/users/{USER_ID}/press",
        {"message_id": sent.message_id, "data": "vote:yes"},
    )
    query_id = pressed["callback_query_id"]
    updates = await bot.get_updates()
    query = updates[-1].callback_query
    assert query is not None
    assert (query.id, query.data, query.from_user.id) == (query_id, "vote:yes", USER_ID)
    assert query.message is not None
    assert query.message.message_id == sent.message_id

    assert emulator.callback_answer(query_id) is None
    await bot.answer_callback_query(query_id, text="Counted")
    answer = await control(base_url, "GET", f"/control/callbacks/{query_id}")
    assert answer["text"] == "Counted"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)


async def test_contact_sharing_shapes(bot: Bot, emulator: TelegramEmulator) -> None:
    emulator.add_user(3003, "Anna", phone="+79990003333")
    emulator.user_shares_contact(USER_ID)
    emulator.user_sends_contact(USER_ID, "+79990003333", "Anna")
    own, other = (u.message for u in await bot.get_updates())
    assert own is not None
    assert other is not None
    assert own.contact is not None
    assert own.from_user is not None
    assert own.contact.user_id == own.from_user.id == USER_ID
    assert own.contact.phone_number == "+79990001122"
    assert other.contact is not None
    assert other.contact.user_id is None


async def test_photo_upload_file_id_and_download(bot: Bot, emulator: TelegramEmulator) -> None:
    emulator.user_starts(USER_ID)
    first = await bot.send_photo(
        USER_ID,
        BufferedInputFile(b"PNGDATA", filename="a.png"),
        caption="<i>pic</i>",
        parse_mode="HTML",
    )
    assert first.photo is not None
    assert first.caption == "pic"
    file_id = first.photo[-1].file_id
    again = await bot.send_photo(USER_ID, file_id)
    assert again.photo is not None
    assert again.photo[-1].file_id == file_id
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_document(USER_ID, "no-such-file-id")

    emulator.user_sends_document(
        USER_ID, b"invoice", file_name="inv.pdf", mime_type="application/pdf"
    )
    (update,) = [u for u in await bot.get_updates() if u.message and u.message.document]
    assert update.message is not None
    assert update.message.document is not None
    downloaded = await bot.download(update.message.document.file_id)
    assert downloaded is not None
    assert downloaded.read() == b"invoice"


async def test_copy_and_edit_message(bot: Bot, emulator: TelegramEmulator) -> None:
    emulator.add_user(2002, "Olga")
    group = emulator.create_group("Support", owner=2002, notify_bots=False)
    topic = await bot.create_forum_topic(group.id, "Ivan")
    incoming = emulator.user_sends_text(USER_ID, "my order is late")
    copied = await bot.copy_message(
        group.id, USER_ID, incoming["message_id"], message_thread_id=topic.message_thread_id
    )
    (mirror,) = emulator.sent_messages(group.id, thread_id=topic.message_thread_id)
    assert (mirror.message_id, mirror.text) == (copied.message_id, "my order is late")

    reply = await bot.send_message(USER_ID, "Checking…")
    edited = await bot.edit_message_text("Found it", chat_id=USER_ID, message_id=reply.message_id)
    assert not isinstance(edited, bool)
    assert edited.text == "Found it"
    assert edited.edit_date is not None
    assert emulator.sent_messages(USER_ID)[-1].text == "Found it"
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Found it", chat_id=USER_ID, message_id=reply.message_id)


async def test_injected_faults(bot: Bot, emulator: TelegramEmulator) -> None:
    emulator.user_starts(USER_ID)
    emulator.fail_next("sendMessage", retry_after=7)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(USER_ID, "a")
    assert caught.value.retry_after == 7

    emulator.fail_next("sendMessage", times=2)
    for _ in range(2):
        with pytest.raises(TelegramServerError):
            await bot.send_message(USER_ID, "b")

    emulator.fail_next("sendMessage", kind="disconnect")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(USER_ID, "c")

    emulator.fail_next("sendMessage", kind="timeout", delay=5)
    with pytest.raises(TelegramNetworkError, match="timeout"):
        await bot.send_message(USER_ID, "d", request_timeout=1)

    await bot.send_message(USER_ID, "e")
    assert [m.text for m in emulator.sent_messages(USER_ID)] == ["e"]
    assert emulator.error_counts()[500] == 2


async def test_chat_action_and_commands(bot: Bot, emulator: TelegramEmulator) -> None:
    emulator.user_starts(USER_ID)
    await bot.send_chat_action(USER_ID, "typing")
    assert [a["action"] for a in emulator.chat_actions(USER_ID)] == ["typing"]
    from aiogram.types import BotCommand

    assert await bot.set_my_commands([BotCommand(command="start", description="Begin")])
    chat = await bot.get_chat(USER_ID)
    assert (chat.id, chat.type, chat.first_name) == (USER_ID, "private", "Ivan")


async def test_json_bodies_and_get_requests_are_accepted(
    emulator: TelegramEmulator, base_url: str
) -> None:
    emulator.user_starts(USER_ID)
    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url}/bot{TOKEN}/getMe") as response:
            assert (await response.json())["result"]["id"] == BOT_ID
        async with http.post(
            f"{base_url}/bot{TOKEN}/sendMessage",
            json={"chat_id": USER_ID, "text": "json", "reply_markup": markup},
        ) as response:
            body = await response.json()
        async with http.post(
            f"{base_url}/bot{TOKEN}/sendMessage", json={"chat_id": USER_ID, "text": ""}
        ) as response:
            empty = (response.status, await response.json())
    assert body["ok"] is True
    assert body["result"]["reply_markup"] == markup
    assert empty == (
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"},
    )


async def test_http_control_api_round_trip(bot: Bot, base_url: str) -> None:
    user = await control(
        base_url, "POST", "/control/users", {"first_name": "Maria", "phone": "+70000000001"}
    )
    uid = user["id"]
    await control(base_url, "POST", f"/control/users/{uid}/start", {"payload": "ref_7"})
    await control(base_url, "POST", f"/control/users/{uid}/contact", {})
    await control(
        base_url, "POST", f"/control/users/{uid}/location", {"latitude": 55.75, "longitude": 37.6}
    )
    await control(base_url, "POST", f"/control/users/{uid}/block", {})
    updates = await bot.get_updates()
    assert updates[0].message is not None
    assert updates[0].message.text == "/start ref_7"
    assert updates[1].message is not None
    assert updates[1].message.contact is not None
    assert updates[1].message.contact.user_id == uid
    assert updates[2].message is not None
    assert updates[2].message.location is not None
    assert updates[3].my_chat_member is not None
    assert [u.update_id for u in updates] == sorted({u.update_id for u in updates})

    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(uid, "hi")
    stats = await control(base_url, "GET", "/control/stats")
    assert stats["errors"] == {"403": 1}
    assert stats["blocked_by"] == [uid]

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/control/users/999/text", json={"text": "x"}) as response,
    ):
        assert response.status == 400
        assert "no user with id 999" in (await response.json())["error"]


async def test_fault_armed_over_http(bot: Bot, emulator: TelegramEmulator, base_url: str) -> None:
    emulator.user_starts(USER_ID)
    await control(
        base_url,
        "POST",
        "/control/faults",
        {"method": "sendMessage", "error_code": 502, "description": "Bad Gateway"},
    )
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.send_message(USER_ID, "x")
    await bot.send_message(USER_ID, "y")


async def test_allowed_updates_filters_new_updates(bot: Bot, emulator: TelegramEmulator) -> None:
    assert await bot.get_updates(allowed_updates=["my_chat_member"]) == []
    emulator.user_sends_text(USER_ID, "filtered out")
    emulator.user_blocks_bot(USER_ID)
    updates = await bot.get_updates()
    assert [u.event_type for u in updates] == ["my_chat_member"]


async def test_control_api_runs_the_managers_group(
    bot: Bot, emulator: TelegramEmulator, base_url: str
) -> None:
    """What the console's managers' pane does: members, topic messages, a deleted topic."""
    emulator.add_user(3001, "Maria")
    emulator.add_user(3002, "Stranger")
    group = await control(base_url, "POST", "/control/groups", {"title": "Managers", "owner": 3001})
    chat_id = group["id"]
    assert group["is_forum"] is True
    assert (
        await control(base_url, "POST", f"/control/groups/{chat_id}/members", {"user_id": 3002})
        == "member"
    )
    member = await bot.get_chat_member(chat_id, 3002)
    assert member.status == "member"

    topic = await bot.create_forum_topic(chat_id, "Анна Петрова · VK")
    thread = topic.message_thread_id
    written = await control(
        base_url,
        "POST",
        f"/control/groups/{chat_id}/messages",
        {"user_id": 3001, "text": "/take", "thread_id": thread},
    )
    assert (written["message_thread_id"], written["is_topic_message"]) == (thread, True)

    await control(
        base_url,
        "POST",
        f"/control/groups/{chat_id}/members",
        {"user_id": 3002, "status": "administrator"},
    )
    admins = await bot.get_chat_administrators(chat_id)
    assert 3002 in {a.user.id for a in admins}

    assert await control(base_url, "DELETE", f"/control/groups/{chat_id}/topics/{thread}")
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(chat_id, "still there?", message_thread_id=thread)
    assert await control(base_url, "GET", f"/control/groups/{chat_id}/topics") == []

"""The customer Telegram bot against the Telegram emulator, through the real aiogram client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiogram.types import Message
from aiohttp import web
from aiohttp.test_utils import TestServer

from bots.telegram import TelegramBot
from bots.telegram.inbound import split_start
from bots.telegram.render import RenderError, callback_data
from bots.telegram.webhook import PATH, SECRET_HEADER
from gateway.channels import Attachment, Button, Failure, Outbound, Sent
from gateway.sandbox.telegram import TelegramEmulator, TelegramLimits, WebhookPolicy
from tests.conftest import free_port
from tests.fakes import RecordingSink

BOT_ID = 777001
TOKEN = f"{BOT_ID}:AAHsecret-token"
USER = 5001
OTHER = 5002
SECRET = "hook_s3cret-XYZ"


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for something the bot does in the background."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the bot")
        await asyncio.sleep(0.01)


async def settle(seconds: float = 0.3) -> None:
    """Give a duplicate time to (wrongly) arrive."""
    await asyncio.sleep(seconds)


def last_update_id(emu: TelegramEmulator) -> int:
    update_id: int = emu.bot(BOT_ID).updates.history[-1]["update_id"]
    return update_id


@pytest.fixture
async def emu() -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator(
        limits=TelegramLimits.disabled(),
        webhook_policy=WebhookPolicy(timeout=5.0, initial_backoff=0.05, max_backoff=0.2),
    )
    emulator.add_bot(TOKEN, username="shop_bot")
    emulator.add_user(USER, "Anna", "Petrova", username="anna", phone="79991234567")
    emulator.add_user(OTHER, "Boris", phone="+7 999 000-11-22")
    yield emulator
    await emulator.aclose()


@pytest.fixture
async def api_url(emu: TelegramEmulator) -> AsyncIterator[str]:
    server = TestServer(emu.app, host="127.0.0.1", port=0)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def group_messages() -> list[str]:
    return []


@pytest.fixture
async def polling_bot(
    api_url: str, sink: RecordingSink, group_messages: list[str]
) -> AsyncIterator[TelegramBot]:
    async def on_group(message: Message) -> None:
        group_messages.append(message.text or "")

    bot = TelegramBot(
        token=TOKEN,
        sink=sink,
        api_url=api_url,
        mode="polling",
        group_handler=on_group,
        poll_timeout=1,
    )
    await bot.start()
    yield bot
    await bot.aclose()


@pytest.fixture
async def sender(api_url: str, sink: RecordingSink) -> AsyncIterator[TelegramBot]:
    """A bot used only for its adapter (not started), with a short request timeout."""
    bot = TelegramBot(token=TOKEN, sink=sink, api_url=api_url, timeout=1.0)
    yield bot
    await bot.aclose()


WebhookFactory = Callable[[], Awaitable[tuple[TelegramBot, str]]]


@pytest.fixture
async def webhook_bot(api_url: str, sink: RecordingSink) -> AsyncIterator[WebhookFactory]:
    """Start a webhook-mode bot on its own server; call again for a 'restarted' one."""
    running: list[tuple[TelegramBot, TestServer]] = []

    async def start() -> tuple[TelegramBot, str]:
        for old_bot, old_server in running:
            await old_bot.aclose()
            await old_server.close()
        running.clear()
        port = free_port()
        public_url = f"http://127.0.0.1:{port}"
        bot = TelegramBot(
            token=TOKEN,
            sink=sink,
            api_url=api_url,
            mode="webhook",
            webhook_secret=SECRET,
            public_url=public_url,
        )
        app = web.Application()
        bot.setup_routes(app)
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server()
        running.append((bot, server))
        await bot.start()
        return bot, public_url

    yield start
    for bot, server in running:
        await bot.aclose()
        await server.close()


def outbound(**fields: Any) -> Outbound:
    values: dict[str, Any] = {
        "delivery_id": 1,
        "channel": "telegram",
        "account": str(BOT_ID),
        "address": str(USER),
        "text": "Hello",
    }
    values.update(fields)
    return Outbound(**values)


# --- inbound through polling -------------------------------------------------------


async def test_facade_account_is_the_bot_id(sink: RecordingSink) -> None:
    bot = TelegramBot(token=TOKEN, sink=sink, api_url="http://127.0.0.1:9")
    try:
        assert bot.account == str(BOT_ID)
        assert bot.adapter.account == str(BOT_ID)
        assert bot.adapter.channel == "telegram"
    finally:
        await bot.aclose()


async def test_webhook_mode_requires_secret_and_public_url(sink: RecordingSink) -> None:
    with pytest.raises(ValueError, match="webhook_secret"):
        TelegramBot(token=TOKEN, sink=sink, mode="webhook", public_url="https://x.example")


async def test_text_message_becomes_inbound(
    emu: TelegramEmulator, sink: RecordingSink, polling_bot: TelegramBot
) -> None:
    sent = emu.user_sends_text(USER, "Привет, где мой заказ?")
    await until(lambda: len(sink.inbounds) == 1)
    got = sink.inbounds[0]
    assert got.channel == "telegram"
    assert got.account == str(BOT_ID)
    assert got.address == str(USER)
    assert got.text == "Привет, где мой заказ?"
    assert got.external_id == f"{USER}:{sent['message_id']}"
    assert got.name == "Anna Petrova"
    assert got.username == "anna"
    assert got.sent_at == datetime.fromtimestamp(sent["date"], UTC)
    assert got.sent_at is not None
    assert got.sent_at.tzinfo is not None
    assert got.verified_phone is None
    assert got.link_token is None
    assert got.button is None
    assert got.attachments == ()
    assert sink.seen_keys == {(f"telegram:{BOT_ID}", str(last_update_id(emu)))}
    # polling mode removed any webhook
    assert [method for method, _ in emu.calls(BOT_ID)][:2] == ["deleteWebhook", "getUpdates"]


async def test_media_messages_map_to_attachments(
    emu: TelegramEmulator, sink: RecordingSink, polling_bot: TelegramBot
) -> None:
    photo = emu.user_sends_photo(USER, caption="вот фото")
    doc = emu.user_sends_document(
        USER, b"%PDF", file_name="invoice.pdf", mime_type="application/pdf"
    )
    voice = emu.user_sends_voice(USER, duration=3)
    emu.user_sends_location(USER, 55.75, 37.62)
    sticker = emu.user_sends_sticker(USER, "🔥")
    await until(lambda: len(sink.inbounds) == 5)
    by_kind = {m.attachments[0].kind: m for m in sink.inbounds}
    assert set(by_kind) == {"photo", "document", "voice", "location", "sticker"}

    assert by_kind["photo"].text == "вот фото"  # the caption is the text
    assert by_kind["photo"].attachments[0].file_id == photo["photo"][-1]["file_id"]
    assert by_kind["document"].attachments[0] == Attachment(
        "document",
        file_id=doc["document"]["file_id"],
        name="invoice.pdf",
        mime="application/pdf",
        size=4,
    )
    assert by_kind["voice"].attachments[0].file_id == voice["voice"]["file_id"]
    assert by_kind["voice"].attachments[0].data == {"duration": 3}
    assert by_kind["location"].attachments[0].data == {"latitude": 55.75, "longitude": 37.62}
    assert by_kind["sticker"].attachments[0].file_id == sticker["sticker"]["file_id"]
    assert by_kind["sticker"].attachments[0].data == {"emoji": "🔥"}
    assert all(m.verified_phone is None for m in sink.inbounds)


async def test_own_contact_is_a_verified_phone(
    emu: TelegramEmulator, sink: RecordingSink, polling_bot: TelegramBot
) -> None:
    emu.user_shares_contact(USER)
    await until(lambda: len(sink.inbounds) == 1)
    got = sink.inbounds[0]
    assert got.verified_phone == "+79991234567"
    assert got.attachments[0].kind == "contact"
    assert got.attachments[0].data["user_id"] == USER


async def test_someone_elses_contact_proves_nothing(
    emu: TelegramEmulator, sink: RecordingSink, polling_bot: TelegramBot
) -> None:
    emu.user_sends_contact(USER, "79990001122", "Boris", contact_user_id=OTHER)
    emu.user_sends_contact(USER, "79993334455", "Vera")  # no Telegram account at all
    await until(lambda: len(sink.inbounds) == 2)
    assert [m.verified_phone for m in sink.inbounds] == [None, None]
    assert [m.attachments[0].data["phone"] for m in sink.inbounds] == [
        "79990001122",
        "79993334455",
    ]


async def test_deep_link_start_payload_is_the_link_token(
    emu: TelegramEmulator, sink: RecordingSink, polling_bot: TelegramBot
) -> None:
    emu.user_starts(USER, "abc123")
    emu.user_starts(OTHER)
    await until(lambda: len(sink.inbounds) == 2)
    deep, plain = sink.inbounds
    assert deep.link_token == "abc123"
    assert deep.text == "/start"  # the token is a proof: kept out of the stored text
    assert plain.link_token is None
    assert plain.text == "/start"


def test_split_start_only_takes_deep_link_payloads() -> None:
    assert split_start("/start abc-_123") == ("/start", "abc-_123")
    assert split_start("/start@shop_bot abc") == ("/start", "abc")
    assert split_start("/start привет всем") == ("/start привет всем", None)
    assert split_start("/start " + "a" * 65) == ("/start " + "a" * 65, None)
    assert split_start("/starter abc") == ("/starter abc", None)


async def test_polling_drops_a_redelivered_update(
    emu: TelegramEmulator, sink: RecordingSink, polling_bot: TelegramBot
) -> None:
    emu.user_sends_text(USER, "one")
    await until(lambda: len(sink.inbounds) == 1)
    emu.redeliver(last_update_id(emu))
    emu.user_sends_text(USER, "two")
    await until(lambda: len(sink.inbounds) == 2)
    await settle()
    assert [m.text for m in sink.inbounds] == ["one", "two"]


async def test_group_messages_go_to_the_group_handler_only(
    emu: TelegramEmulator,
    sink: RecordingSink,
    polling_bot: TelegramBot,
    group_messages: list[str],
) -> None:
    group = emu.create_group("Managers", members=[USER], bot_ids=[BOT_ID])
    emu.member_writes(group.id, USER, "/take")
    await until(lambda: group_messages == ["/take"])
    emu.user_sends_text(USER, "private")
    await until(lambda: len(sink.inbounds) == 1)
    assert [m.text for m in sink.inbounds] == ["private"]
    assert sink.reach == []  # the bot being added to the group is no customer's business


async def test_a_redelivered_group_message_reaches_the_group_handler_once(
    emu: TelegramEmulator,
    sink: RecordingSink,
    polling_bot: TelegramBot,
    group_messages: list[str],
) -> None:
    group = emu.create_group("Managers", members=[USER], bot_ids=[BOT_ID])
    emu.member_writes(group.id, USER, "/take")
    await until(lambda: group_messages == ["/take"])
    emu.redeliver(last_update_id(emu))
    emu.member_writes(group.id, USER, "/done")
    await until(lambda: len(group_messages) == 2)
    await settle()
    assert group_messages == ["/take", "/done"]


async def press_a_button(
    emu: TelegramEmulator, sink: RecordingSink, bot: TelegramBot
) -> tuple[str, str]:
    """The customer starts, is offered "Доставка" and presses it: (message, query id)."""
    emu.user_starts(USER)
    await until(lambda: len(sink.inbounds) == 1)
    result = await bot.adapter.send(
        outbound(text="Выберите", buttons=((Button("Доставка", payload="menu:delivery"),),))
    )
    assert isinstance(result, Sent)
    assert result.external_id is not None
    message_id = int(result.external_id.split(":")[1])
    query_id = emu.user_presses_button(USER, message_id, "menu:delivery")
    await until(lambda: len(sink.inbounds) == 2)
    return result.external_id, query_id


async def test_a_redelivered_button_press_is_handed_over_once(
    emu: TelegramEmulator, sink: RecordingSink, polling_bot: TelegramBot
) -> None:
    await press_a_button(emu, sink, polling_bot)
    emu.redeliver(last_update_id(emu))
    emu.user_sends_text(USER, "after")
    await until(lambda: len(sink.inbounds) == 3)
    await settle()
    assert [m.text for m in sink.inbounds] == ["/start", "Доставка", "after"]
    assert len(sink.signals) == 1  # one click, not two


async def test_button_press_is_answered_and_handed_over(
    emu: TelegramEmulator, sink: RecordingSink, polling_bot: TelegramBot
) -> None:
    message, query_id = await press_a_button(emu, sink, polling_bot)
    press = sink.inbounds[1]
    assert press.button == "menu:delivery"
    assert press.text == "Доставка"  # the label the person saw, for the history
    assert press.external_id == f"cb:{query_id}"
    assert press.address == str(USER)
    assert press.meta["message"] == message
    assert emu.callback_answer(query_id) is not None
    # The press counts as a click on the message that carried the button.
    assert [(s.kind, s.external_id) for s in sink.signals] == [("clicked", message)]


async def test_polling_stops_cleanly_and_a_new_poller_resumes(
    emu: TelegramEmulator, sink: RecordingSink, api_url: str
) -> None:
    first = TelegramBot(token=TOKEN, sink=sink, api_url=api_url, poll_timeout=1)
    await first.start()
    emu.user_sends_text(USER, "before")
    await until(lambda: len(sink.inbounds) == 1)
    await first.aclose()
    emu.user_sends_text(USER, "while down")
    emu.redeliver(last_update_id(emu) - 1)  # "before" again: seen in the store already
    second = TelegramBot(token=TOKEN, sink=sink, api_url=api_url, poll_timeout=1)
    try:
        await second.start()
        await until(lambda: len(sink.inbounds) == 2)
        await settle()
    finally:
        await second.aclose()
    assert [m.text for m in sink.inbounds] == ["before", "while down"]


# --- inbound through the webhook ---------------------------------------------------


async def test_webhook_delivers_updates_and_sets_itself(
    emu: TelegramEmulator, sink: RecordingSink, webhook_bot: WebhookFactory
) -> None:
    bot, public_url = await webhook_bot()
    hook = emu.bot(BOT_ID).webhook
    assert hook is not None
    assert hook.url == public_url + PATH
    assert hook.secret_token == SECRET
    emu.user_sends_text(USER, "через вебхук")
    await until(lambda: len(sink.inbounds) == 1)
    assert sink.inbounds[0].text == "через вебхук"
    assert sink.inbounds[0].account == bot.account


async def test_webhook_rejects_a_wrong_or_missing_secret(
    emu: TelegramEmulator, sink: RecordingSink, webhook_bot: WebhookFactory
) -> None:
    _, public_url = await webhook_bot()
    update = {
        "update_id": 900,
        "message": {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": {"id": USER, "type": "private", "first_name": "Anna"},
            "from": {"id": USER, "is_bot": False, "first_name": "Anna"},
            "text": "forged",
        },
    }
    async with aiohttp.ClientSession() as http:
        for headers in ({SECRET_HEADER: "wrong"}, {}, {SECRET_HEADER: "hook_s3cret-XYZ-"}):
            async with http.post(public_url + PATH, json=update, headers=headers) as response:
                assert response.status == 401
        async with http.post(
            public_url + PATH, json=update, headers={SECRET_HEADER: SECRET}
        ) as response:
            assert response.status == 200
    assert [m.text for m in sink.inbounds] == ["forged"]
    assert sink.seen_keys == {(f"telegram:{BOT_ID}", "900")}


@pytest.mark.parametrize(
    "body",
    [b"not json{", b"[1, 2]", b'{"update_id": "abc"}', b'{"message": {"text": "hi"}}', b""],
)
async def test_webhook_garbage_is_a_400(
    sink: RecordingSink, webhook_bot: WebhookFactory, body: bytes
) -> None:
    _, public_url = await webhook_bot()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            public_url + PATH,
            data=body,
            headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 400
        payload = await response.json()
    assert set(payload) == {"error"}
    assert "Traceback" not in payload["error"]
    assert sink.inbounds == []
    assert sink.seen_keys == set()


async def test_webhook_redelivery_is_handed_over_once_even_after_a_restart(
    emu: TelegramEmulator, sink: RecordingSink, webhook_bot: WebhookFactory
) -> None:
    await webhook_bot()
    emu.user_sends_text(USER, "once")
    await until(lambda: len(sink.inbounds) == 1)
    update_id = last_update_id(emu)
    emu.redeliver(update_id)
    await until(lambda: not emu.pending_updates(BOT_ID))
    await settle()
    assert len(sink.inbounds) == 1

    await webhook_bot()  # a new TelegramBot instance, the same store
    emu.redeliver(update_id)
    emu.user_sends_text(USER, "after restart")
    await until(lambda: len(sink.inbounds) == 2)
    await settle()
    assert [m.text for m in sink.inbounds] == ["once", "after restart"]
    deliveries = [a for a in emu.delivery.attempts if a[1] == update_id]
    assert [result for *_, result in deliveries] == ["ok", "ok", "ok"]  # acknowledged


async def test_webhook_failed_handling_is_retried_not_deduped(
    emu: TelegramEmulator, sink: RecordingSink, webhook_bot: WebhookFactory
) -> None:
    await webhook_bot()
    sink.fail_inbounds = 1
    emu.user_sends_text(USER, "survives a hiccup")
    await until(lambda: len(sink.inbounds) == 1)
    await until(lambda: not emu.pending_updates(BOT_ID))  # the 200 reached Telegram
    assert [m.text for m in sink.inbounds] == ["survives a hiccup"]
    results = [result for _, _, result in emu.delivery.attempts]
    assert results[0].startswith("Wrong response from the webhook: 500")
    assert results[-1] == "ok"


async def test_block_and_unblock_change_reachability(
    emu: TelegramEmulator, sink: RecordingSink, webhook_bot: WebhookFactory
) -> None:
    await webhook_bot()
    emu.user_starts(USER)
    emu.user_blocks_bot(USER)
    emu.user_unblocks_bot(USER)
    await until(lambda: len(sink.reach) == 2)
    assert sink.reach == [
        ("telegram", str(BOT_ID), str(USER), False, "blocked"),
        ("telegram", str(BOT_ID), str(USER), True, "unblocked"),
    ]


# --- outbound ----------------------------------------------------------------------


async def test_html_with_inline_keyboard_arrives(
    emu: TelegramEmulator, sender: TelegramBot
) -> None:
    emu.user_starts(USER)
    result = await sender.adapter.send(
        outbound(
            text="Ваш заказ готов",
            html="<b>Ваш заказ</b> готов",
            buttons=(
                (Button("Оплатить", payload="pay:17"), Button("Сайт", url="https://shop.example")),
                (Button("Связаться", payload="contact"),),
            ),
        )
    )
    assert isinstance(result, Sent)
    [message] = emu.sent_messages(USER)
    assert result.external_id == f"{USER}:{message.message_id}"
    seen = message.inspect()
    assert seen["html"] == "<b>Ваш заказ</b> готов"
    assert seen["text"] == "Ваш заказ готов"
    assert seen["reply_markup"] == {
        "inline_keyboard": [
            [
                {"text": "Оплатить", "callback_data": "pay:17"},
                {"text": "Сайт", "url": "https://shop.example"},
            ],
            [{"text": "Связаться", "callback_data": "contact"}],
        ]
    }


async def test_plain_text_goes_without_parse_mode(
    emu: TelegramEmulator, sender: TelegramBot
) -> None:
    emu.user_starts(USER)
    result = await sender.adapter.send(outbound(text="1 < 2 & <b>not bold</b>"))
    assert isinstance(result, Sent)
    [message] = emu.sent_messages(USER)
    assert message.text == "1 < 2 & <b>not bold</b>"
    assert message.html is None
    assert message.reply_markup is None


async def test_reply_keyboard_with_contact_request_and_its_removal(
    emu: TelegramEmulator, sender: TelegramBot
) -> None:
    emu.user_starts(USER)
    asked = await sender.adapter.send(
        outbound(
            text="Поделитесь телефоном",
            inline=False,
            buttons=((Button("📱 Отправить номер", request_contact=True),), (Button("Позже"),)),
        )
    )
    thanked = await sender.adapter.send(outbound(text="Спасибо!", inline=False))
    assert isinstance(asked, Sent)
    assert isinstance(thanked, Sent)
    first, second = emu.sent_messages(USER)
    assert first.reply_markup == {
        "keyboard": [
            [{"text": "📱 Отправить номер", "request_contact": True}],
            [{"text": "Позже"}],
        ],
        "resize_keyboard": True,
        "one_time_keyboard": True,
    }
    assert second.reply_markup == {"remove_keyboard": True}


async def test_photo_attachment_carries_the_text_as_caption(
    emu: TelegramEmulator, sender: TelegramBot
) -> None:
    emu.user_starts(USER)
    result = await sender.adapter.send(
        outbound(
            text="Новая коллекция",
            attachments=(Attachment("photo", url="https://cdn.example/summer.jpg"),),
            buttons=((Button("Смотреть", payload="look"),),),
        )
    )
    long = await sender.adapter.send(
        outbound(
            text="д" * 1500, attachments=(Attachment("document", url="https://x.example/a.pdf"),)
        )
    )
    assert isinstance(result, Sent)
    assert isinstance(long, Sent)
    photo, document, text = emu.sent_messages(USER)
    assert photo.method == "sendPhoto"
    assert photo.caption == "Новая коллекция"
    assert photo.reply_markup == {
        "inline_keyboard": [[{"text": "Смотреть", "callback_data": "look"}]]
    }
    assert document.method == "sendDocument"
    assert document.caption is None
    assert text.text == "д" * 1500
    assert long.external_id == f"{USER}:{text.message_id}"


async def test_blocked_user_is_a_final_unreachable_failure(
    emu: TelegramEmulator, sender: TelegramBot
) -> None:
    emu.user_starts(USER)
    emu.user_blocks_bot(USER)
    result = await sender.adapter.send(outbound())
    assert isinstance(result, Failure)
    assert not result.retryable
    assert result.unreachable
    assert "blocked" in result.reason


@pytest.mark.parametrize(
    ("address", "why"),
    [(str(OTHER), "can't initiate conversation"), ("424242", "chat not found")],
)
async def test_unknown_or_unstarted_chat_is_final_and_unreachable(
    sender: TelegramBot, address: str, why: str
) -> None:
    result = await sender.adapter.send(outbound(address=address))
    assert isinstance(result, Failure)
    assert (result.retryable, result.unreachable) == (False, True)
    assert why in result.reason


async def test_429_is_retryable_with_retry_after(
    emu: TelegramEmulator, sender: TelegramBot
) -> None:
    emu.user_starts(USER)
    emu.fail_next("sendMessage", retry_after=3)
    result = await sender.adapter.send(outbound())
    assert isinstance(result, Failure)
    assert result.retryable
    assert result.retry_after == 3
    assert not result.lane_wide
    assert not result.unreachable
    assert emu.error_counts(BOT_ID) == {429: 1}
    assert isinstance(await sender.adapter.send(outbound()), Sent)


async def test_real_flood_control_is_retryable(sink: RecordingSink) -> None:
    # A fresh emulator with flood control on: the 4th quick message to a chat is a 429.
    emulator = TelegramEmulator(limits=TelegramLimits(per_chat_burst=3), clock=lambda: 1000.0)
    emulator.add_bot(TOKEN)
    emulator.add_user(USER, "Anna")
    emulator.user_starts(USER)
    server = TestServer(emulator.app, host="127.0.0.1", port=0)
    await server.start_server()
    bot = TelegramBot(token=TOKEN, sink=sink, api_url=str(server.make_url("")))
    try:
        results = [await bot.adapter.send(outbound()) for _ in range(4)]
    finally:
        await bot.aclose()
        await server.close()
    assert [type(r) for r in results] == [Sent, Sent, Sent, Failure]
    assert isinstance(results[3], Failure)
    assert results[3].retryable
    assert results[3].retry_after is not None
    assert results[3].retry_after >= 1


@pytest.mark.parametrize(
    "fields",
    [
        {"text": "x" * 5000},
        {"text": "broken", "html": "<b>unclosed"},
        {"thread_id": 77},
    ],
    ids=["too-long", "bad-html", "no-thread"],
)
async def test_bad_message_is_final_but_not_unreachable(
    emu: TelegramEmulator, sender: TelegramBot, fields: dict[str, Any]
) -> None:
    emu.user_starts(USER)
    result = await sender.adapter.send(outbound(**fields))
    assert isinstance(result, Failure)
    assert (result.retryable, result.unreachable) == (False, False)
    assert emu.sent_messages(USER) == []


@pytest.mark.parametrize(
    "payload", ["x" * 65, "д" * 33], ids=["65-ascii-bytes", "66-cyrillic-bytes"]
)
async def test_oversized_callback_data_is_refused_before_sending(
    emu: TelegramEmulator, sender: TelegramBot, payload: str
) -> None:
    emu.user_starts(USER)
    result = await sender.adapter.send(outbound(buttons=((Button("Go", payload=payload),),)))
    assert isinstance(result, Failure)
    assert (result.retryable, result.unreachable) == (False, False)
    assert "64" in result.reason
    assert all(method != "sendMessage" for method, _ in emu.calls(BOT_ID))


def test_callback_data_limit_counts_bytes() -> None:
    assert callback_data(Button("ok", payload="д" * 32)) == "д" * 32
    with pytest.raises(RenderError, match="66 bytes"):
        callback_data(Button("no", payload="д" * 33))


@pytest.mark.parametrize(
    ("kind", "error_code", "description"),
    [
        ("error", 500, "Internal Server Error"),
        ("error", 502, "Bad Gateway"),
        ("disconnect", 500, "Internal Server Error"),
        ("timeout", 500, "Internal Server Error"),
    ],
    ids=["500", "502", "disconnect", "timeout"],
)
async def test_server_and_network_trouble_is_retryable(
    emu: TelegramEmulator, sender: TelegramBot, kind: Any, error_code: int, description: str
) -> None:
    emu.user_starts(USER)
    emu.fail_next("sendMessage", kind=kind, error_code=error_code, description=description, delay=3)
    result = await sender.adapter.send(outbound())
    assert isinstance(result, Failure)
    assert result.retryable
    assert result.retry_after is None
    assert not result.unreachable


async def test_unsupported_attachment_is_refused_not_dropped(
    emu: TelegramEmulator, sender: TelegramBot
) -> None:
    emu.user_starts(USER)
    result = await sender.adapter.send(
        outbound(attachments=(Attachment("location", data={"latitude": 1, "longitude": 2}),))
    )
    assert isinstance(result, Failure)
    assert not result.retryable
    assert emu.sent_messages(USER) == []

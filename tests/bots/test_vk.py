"""The VK community bot against the VK emulator, through the real vkbottle client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bots.vk import VKBot
from bots.vk.inbound import button_of
from bots.vk.render import MAX_LABEL, random_id, render
from gateway.channels import Button, Failure, Outbound, Sent, Signal
from gateway.sandbox.vk import VKEmulator, VKLimits
from tests.fakes import RecordingSink

GROUP = 4242
USER = 7001
SECRET = "s3cret-key"
CODE = "c0nfirm-me"


async def eventually(check: Callable[[], bool]) -> None:
    """Wait up to about five seconds for `check()` to hold."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def emu() -> AsyncIterator[VKEmulator]:
    limits = VKLimits(callback_retry_delays=(0.01,), requests_per_second=1000)
    emulator = VKEmulator(group_id=GROUP, group_name="Chatgate", limits=limits)
    emulator.add_user(USER, "Ivan", "Petrov")
    server = TestServer(emulator.make_app(), host="127.0.0.1", port=0)
    await server.start_server()
    emulator.public_url = str(server.make_url("")).rstrip("/")
    yield emulator
    await server.close()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def _bot(emu: VKEmulator, sink: RecordingSink, **kwargs: Any) -> VKBot:
    assert emu.public_url is not None
    return VKBot(
        token=emu.token(),
        group_id=GROUP,
        sink=sink,
        api_url=f"{emu.public_url}/method/",
        **kwargs,
    )


@pytest.fixture
async def polled(emu: VKEmulator, sink: RecordingSink) -> AsyncIterator[VKBot]:
    """A long-poll bot, started and already waiting on its first poll."""
    bot = _bot(emu, sink, mode="longpoll")
    await bot.start()
    await eventually(lambda: emu.longpoll.polls >= 1)
    yield bot
    await bot.aclose()


@dataclass
class Hooked:
    bot: VKBot
    url: str


@pytest.fixture
async def hooked(emu: VKEmulator, sink: RecordingSink) -> AsyncIterator[Hooked]:
    """A Callback API bot on its own server, registered with the emulator."""
    bot = _bot(emu, sink, mode="callback", secret=SECRET, confirmation=CODE)
    app = web.Application()
    bot.setup_routes(app)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    url = str(server.make_url("/webhooks/vk"))
    emu.set_callback(url, SECRET, CODE)
    yield Hooked(bot, url)
    await emu.callback_drain()
    await server.close()
    await bot.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _outbound(delivery_id: int = 1, text: str = "Здравствуйте!", **kwargs: Any) -> Outbound:
    return Outbound(
        delivery_id=delivery_id,
        channel="vk",
        account=str(GROUP),
        address=str(USER),
        text=text,
        **kwargs,
    )


def _event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "message_new",
        "group_id": GROUP,
        "event_id": "e" * 40,
        "v": "5.199",
        "object": {"message": {"id": 9, "peer_id": USER, "from_id": USER, "text": "hi"}},
        "secret": SECRET,
    }
    body.update(overrides)
    return body


# -- Bots Long Poll -----------------------------------------------------------------


async def test_longpoll_message_becomes_inbound(
    emu: VKEmulator, sink: RecordingSink, polled: VKBot
) -> None:
    message = emu.user_writes(USER, "Привет", ref="promo42")
    await eventually(lambda: len(sink.inbounds) == 1)
    got = sink.inbounds[0]
    assert got.channel == "vk"
    assert got.account == str(GROUP)
    assert got.address == str(USER)
    assert got.external_id == str(message.message_id)
    assert got.text == "Привет"
    assert got.name == "Ivan Petrov"
    assert got.link_token == "promo42"
    assert got.button is None
    assert got.sent_at == datetime.fromtimestamp(message.date, UTC)
    # vkbottle's BotPolling would have left its ts in the working directory.
    assert not (Path.cwd() / ".vkbottle" / "bot-polling" / f"{GROUP}.json").exists()


async def test_longpoll_button_attachments_and_cached_name(
    emu: VKEmulator, sink: RecordingSink, polled: VKBot
) -> None:
    photo = {
        "type": "photo",
        "photo": {
            "id": 5,
            "owner_id": USER,
            "access_key": "k",
            "sizes": [
                {"type": "s", "url": "https://vk.test/s.jpg", "width": 75, "height": 75},
                {"type": "x", "url": "https://vk.test/x.jpg", "width": 604, "height": 604},
            ],
        },
    }
    voice = {
        "type": "audio_message",
        "audio_message": {"id": 6, "owner_id": USER, "duration": 3, "link_ogg": "https://o.ogg"},
    }
    doc = {"type": "doc", "doc": {"id": 7, "owner_id": USER, "title": "a.pdf", "size": 10}}
    sticker = {"type": "sticker", "sticker": {"sticker_id": 77, "images": []}}
    emu.user_writes(USER, "Меню", payload={"button": "menu"})
    emu.user_writes(USER, "", attachments=[photo, voice, doc, sticker])
    await eventually(lambda: len(sink.inbounds) == 2)
    pressed, media = sink.inbounds
    assert pressed.button == "menu"
    assert [a.kind for a in media.attachments] == ["photo", "voice", "document", "sticker"]
    assert media.attachments[0].url == "https://vk.test/x.jpg"
    assert media.attachments[0].file_id == f"photo{USER}_5_k"
    assert media.attachments[1].url == "https://o.ogg"
    assert media.attachments[2].name == "a.pdf"
    assert media.attachments[3].file_id == "77"
    assert emu.stats.calls["users.get"] == 1  # the second message used the cached name


async def test_longpoll_recovers_from_expired_key_and_lost_history(
    emu: VKEmulator, sink: RecordingSink, polled: VKBot
) -> None:
    emu.expire_longpoll_key()  # failed: 2 — new key, same ts: the next message is kept
    emu.user_writes(USER, "one")
    await eventually(lambda: [m.text for m in sink.inbounds] == ["one"])
    servers = emu.stats.calls["groups.getLongPollServer"]
    polls = emu.longpoll.polls
    emu.lose_longpoll_history()  # failed: 3 — new key and ts
    await eventually(lambda: emu.stats.calls["groups.getLongPollServer"] == servers + 1)
    await eventually(lambda: emu.longpoll.polls > polls)  # polling again with the new ts
    emu.user_writes(USER, "two")
    await eventually(lambda: [m.text for m in sink.inbounds] == ["one", "two"])


async def test_longpoll_repeated_event_is_handed_over_once(
    emu: VKEmulator, sink: RecordingSink, polled: VKBot
) -> None:
    emu.user_writes(USER, "once")
    await eventually(lambda: len(sink.inbounds) == 1)
    repeated = emu.longpoll.events(GROUP)[-1]  # as after `failed: 1` with an older ts
    await polled.events.process(repeated)
    assert len(sink.inbounds) == 1


async def test_longpoll_ignores_group_chats(sink: RecordingSink, polled: VKBot) -> None:
    chat = {"message": {"id": 0, "peer_id": 2_000_000_001, "from_id": USER, "text": "hi"}}
    await polled.events.process({"type": "message_new", "group_id": GROUP, "object": chat})
    assert sink.inbounds == []


async def test_aclose_stops_polling_at_once(emu: VKEmulator, sink: RecordingSink) -> None:
    bot = _bot(emu, sink, mode="longpoll", poll_wait=25)
    await bot.start()
    await eventually(lambda: emu.longpoll.polls >= 1)
    started = time.monotonic()
    await bot.aclose()
    assert time.monotonic() - started < 1.0
    emu.user_writes(USER, "after close")
    await asyncio.sleep(0.1)
    assert sink.inbounds == []


# -- Callback API ---------------------------------------------------------------------


async def test_confirmation_handshake(
    emu: VKEmulator, hooked: Hooked, http: aiohttp.ClientSession
) -> None:
    assert await emu.confirm_callback()
    [attempt] = emu.callback_attempts()
    assert (attempt.event_type, attempt.body) == ("confirmation", CODE)
    other = {"type": "confirmation", "group_id": GROUP + 1, "secret": SECRET}
    async with http.post(hooked.url, json=other) as response:
        assert response.status == 403
        assert CODE not in await response.text()


@pytest.mark.parametrize("version", ["5.199", "5.80"])
async def test_callback_event_is_handed_over(
    emu: VKEmulator, sink: RecordingSink, hooked: Hooked, version: str
) -> None:
    emu.set_events_version(version)
    message = emu.user_writes(USER, "Хочу заказ", payload={"command": "start"}, ref="tok")
    await emu.callback_drain()
    shape = emu.callback_attempts()[-1]
    assert shape.ok
    raw = emu.event(str(shape.event_id))["object"]
    assert ("message" in raw) is (version == "5.199")
    [got] = sink.inbounds
    assert got.external_id == str(message.message_id)
    assert (got.address, got.text, got.name) == (str(USER), "Хочу заказ", "Ivan Petrov")
    assert (got.button, got.link_token) == ("start", "tok")
    assert got.sent_at == datetime.fromtimestamp(message.date, UTC)


async def test_redelivered_event_is_handed_over_once(
    emu: VKEmulator, sink: RecordingSink, hooked: Hooked
) -> None:
    emu.user_writes(USER, "один раз")
    await emu.callback_drain()
    event_id = emu.callback_attempts()[-1].event_id
    assert event_id is not None
    emu.redeliver(event_id)
    await emu.callback_drain()
    attempts = emu.callback_attempts(event_id)
    assert [a.ok for a in attempts] == [True, True]  # VK hears `ok` both times
    assert len(sink.inbounds) == 1


async def test_failed_handling_is_retried_by_vk_not_lost(
    emu: VKEmulator, sink: RecordingSink, hooked: Hooked
) -> None:
    sink.fail_inbounds = 1
    emu.user_writes(USER, "не потеряйся")
    await emu.callback_drain()
    first, second = emu.callback_attempts()[-2:]
    assert (first.status, first.ok) == (500, False)
    assert second.ok
    assert [m.text for m in sink.inbounds] == ["не потеряйся"]


@pytest.mark.parametrize("secret", ["wrong", None])
async def test_bad_secret_is_403_and_nothing_is_stored(
    sink: RecordingSink, hooked: Hooked, http: aiohttp.ClientSession, secret: str | None
) -> None:
    body = _event(secret=secret)
    if secret is None:
        del body["secret"]
    async with http.post(hooked.url, json=body) as response:
        assert response.status == 403
    assert (sink.inbounds, sink.seen_keys) == ([], set())


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"\xff\xfe",
        b"[1, 2]",
        json.dumps({"group_id": GROUP, "secret": SECRET}).encode(),
        json.dumps({"type": "message_new", "group_id": GROUP, "secret": SECRET}).encode(),
    ],
)
async def test_malformed_body_is_400(
    sink: RecordingSink, hooked: Hooked, http: aiohttp.ClientSession, body: bytes
) -> None:
    async with http.post(hooked.url, data=body) as response:
        assert response.status == 400
        assert "error" in await response.json()
    assert (sink.inbounds, sink.seen_keys) == ([], set())


async def test_unknown_event_type_is_ok(
    sink: RecordingSink, hooked: Hooked, http: aiohttp.ClientSession
) -> None:
    body = _event(type="wall_post_new", object={"id": 1})
    async with http.post(hooked.url, json=body) as response:
        assert response.status == 200
        assert await response.text() == "ok"
    assert sink.inbounds == []


async def press_a_button(emu: VKEmulator, hooked: Hooked) -> str:
    """The customer is offered "Меню" and presses it; the press's event_id."""
    emu.add_user(USER, "Ivan", "Petrov", allowed=True)
    menu = (Button("Меню", payload="menu"),)
    assert isinstance(await hooked.bot.adapter.send(_outbound(buttons=(menu,))), Sent)
    event_id = emu.press_callback_button(USER, {"button": "menu"})
    await emu.callback_drain()
    return event_id


async def test_callback_button_is_answered_and_handed_over(
    emu: VKEmulator, sink: RecordingSink, hooked: Hooked
) -> None:
    event_id = await press_a_button(emu, hooked)
    assert [a["event_id"] for a in emu.event_answers] == [event_id]
    [got] = sink.inbounds
    assert (got.button, got.external_id, got.address) == ("menu", f"event:{event_id}", str(USER))


async def test_a_redelivered_button_press_is_answered_and_handed_over_once(
    emu: VKEmulator, sink: RecordingSink, hooked: Hooked
) -> None:
    await press_a_button(emu, hooked)
    envelope = emu.callback_attempts()[-1].event_id
    assert envelope is not None
    emu.redeliver(envelope)
    await emu.callback_drain()
    assert [a.ok for a in emu.callback_attempts(envelope)] == [True, True]
    assert len(emu.event_answers) == 1  # the spinner is stopped once
    assert [m.button for m in sink.inbounds] == ["menu"]


async def test_allow_deny_and_read(emu: VKEmulator, sink: RecordingSink, hooked: Hooked) -> None:
    emu.allow_messages(USER)
    sent = await hooked.bot.adapter.send(_outbound())
    assert isinstance(sent, Sent)
    read = emu.user_reads(USER)
    emu.deny_messages(USER)
    await emu.callback_drain()
    account = str(GROUP)
    assert sink.reach == [
        ("vk", account, str(USER), True, "message_allow"),
        ("vk", account, str(USER), False, "message_deny"),
    ]
    assert sink.signals == [
        Signal(kind="read", channel="vk", account=account, address=str(USER), external_id=str(read))
    ]
    assert sent.external_id == str(read)


# -- outbound -----------------------------------------------------------------------------


async def test_send_with_keyboard_arrives(emu: VKEmulator, sink: RecordingSink) -> None:
    emu.add_user(USER, "Ivan", "Petrov", allowed=True)
    bot = _bot(emu, sink)
    rows = (
        (Button("Доставка", payload="delivery"), Button("Оплата", payload="pay")),
        (Button("Сайт", url="https://shop.test/"),),
    )
    try:
        result = await bot.adapter.send(_outbound(buttons=rows))
    finally:
        await bot.aclose()
    [message] = emu.sent_to(USER)
    assert result == Sent(external_id=str(message.message_id))
    assert message.text == "Здравствуйте!"
    assert message.keyboard is not None
    assert message.keyboard["inline"] is True
    first, link = message.keyboard["buttons"]
    assert [b["action"]["type"] for b in first] == ["callback", "callback"]
    assert json.loads(first[0]["action"]["payload"]) == {"button": "delivery"}
    assert link[0]["action"] == {"type": "open_link", "link": "https://shop.test/", "label": "Сайт"}


async def test_reply_keyboard_uses_text_buttons(emu: VKEmulator, sink: RecordingSink) -> None:
    emu.add_user(USER, "Ivan", "Petrov", allowed=True)
    bot = _bot(emu, sink)
    try:
        await bot.adapter.send(_outbound(buttons=((Button("Да", payload="yes"),),), inline=False))
    finally:
        await bot.aclose()
    keyboard = emu.sent_to(USER)[0].keyboard
    assert keyboard is not None
    assert keyboard["inline"] is False
    action = keyboard["buttons"][0][0]["action"]
    assert (action["type"], button_of(action["payload"])) == ("text", "yes")


async def test_same_delivery_twice_is_one_message(emu: VKEmulator, sink: RecordingSink) -> None:
    emu.add_user(USER, "Ivan", "Petrov", allowed=True)
    bot = _bot(emu, sink)
    try:
        first = await bot.adapter.send(_outbound(delivery_id=41))
        again = await bot.adapter.send(_outbound(delivery_id=41))
        other = await bot.adapter.send(_outbound(delivery_id=42))
    finally:
        await bot.aclose()
    assert first == again
    assert other != first
    assert len(emu.sent_to(USER)) == 2


async def test_user_without_permission_is_unreachable(emu: VKEmulator, sink: RecordingSink) -> None:
    bot = _bot(emu, sink)  # USER never wrote and never allowed messages
    try:
        result = await bot.adapter.send(_outbound())
    finally:
        await bot.aclose()
    assert isinstance(result, Failure)
    assert (result.retryable, result.unreachable) == (False, True)
    assert "901" in result.reason
    assert emu.sent_to(USER) == []


@pytest.mark.parametrize(
    ("fault", "retryable", "lane_wide", "unreachable"),
    [
        ({"error_code": 6}, True, True, False),
        ({"error_code": 9}, True, False, False),
        ({"error_code": 10}, True, False, False),
        ({"error_code": 902}, False, False, True),
        ({"error_code": 900}, False, False, True),
        ({"error_code": 911}, False, False, False),
        ({"http_status": 500}, True, False, False),
        ({"drop": True}, True, False, False),
    ],
)
async def test_errors_become_failures(
    emu: VKEmulator,
    sink: RecordingSink,
    fault: dict[str, Any],
    retryable: bool,
    lane_wide: bool,
    unreachable: bool,
) -> None:
    emu.add_user(USER, "Ivan", "Petrov", allowed=True)
    emu.fail_next("messages.send", **fault)
    bot = _bot(emu, sink)
    started = time.monotonic()
    try:
        result = await bot.adapter.send(_outbound())
    finally:
        await bot.aclose()
    assert time.monotonic() - started < 1.0  # no hidden retry loop, no blocking sleep
    assert isinstance(result, Failure)
    assert (result.retryable, result.lane_wide, result.unreachable) == (
        retryable,
        lane_wide,
        unreachable,
    )
    if fault.get("error_code") in (6, 9):
        assert result.retry_after is not None
        assert result.retry_after > 0
    assert emu.sent_to(USER) == []


async def test_too_long_is_final(emu: VKEmulator, sink: RecordingSink) -> None:
    emu.add_user(USER, "Ivan", "Petrov", allowed=True)
    bot = _bot(emu, sink)
    try:
        result = await bot.adapter.send(_outbound(text="я" * 5000))
    finally:
        await bot.aclose()
    assert isinstance(result, Failure)
    assert (result.retryable, result.unreachable) == (False, False)
    assert "914" in result.reason


# -- rendering ------------------------------------------------------------------------------


def test_random_id_is_stable_distinct_and_int32() -> None:
    assert random_id(7) == random_id(7)
    assert random_id(7) != random_id(8)
    for delivery_id in (1, 2**31 - 1, 2**31, 2**40 + 3):
        assert 0 < random_id(delivery_id) < 2**31


def test_layout_over_vk_limits_degrades_to_numbered_options() -> None:
    rows = tuple((Button(f"Вариант {n}", payload=str(n)),) for n in range(7))  # inline: 6 rows
    rendered = render(_outbound(buttons=rows))
    assert rendered.keyboard is None
    assert "1. Вариант 0" in rendered.text
    assert "7. Вариант 6" in rendered.text


def test_long_label_is_cut_and_long_payload_refused() -> None:
    rendered = render(_outbound(buttons=((Button("x" * 60, payload="p"),),)))
    assert rendered.keyboard is not None
    label = json.loads(rendered.keyboard)["buttons"][0][0]["action"]["label"]
    assert len(label) == MAX_LABEL
    with pytest.raises(ValueError, match="255"):
        render(_outbound(buttons=((Button("x", payload="я" * 200),),)))


async def test_long_payload_is_a_final_failure(emu: VKEmulator, sink: RecordingSink) -> None:
    bot = _bot(emu, sink)
    try:
        result = await bot.adapter.send(_outbound(buttons=((Button("x", payload="я" * 200),),)))
    finally:
        await bot.aclose()
    assert isinstance(result, Failure)
    assert not result.retryable
    assert emu.stats.calls["messages.send"] == 0


def test_callback_mode_needs_a_confirmation_code(sink: RecordingSink) -> None:
    with pytest.raises(ValueError, match="confirmation"):
        VKBot(token="t", group_id=GROUP, sink=sink, mode="callback")


@dataclass
class MemoryCursors:
    values: dict[str, str] = field(default_factory=dict)

    async def load(self, name: str) -> str | None:
        return self.values.get(name)

    async def save(self, name: str, value: str) -> None:
        self.values[name] = value


async def test_longpoll_resumes_after_a_restart_without_losing_messages(
    emu: VKEmulator, sink: RecordingSink
) -> None:
    cursors = MemoryCursors()
    first = _bot(emu, sink, mode="longpoll", cursors=cursors)
    await first.start()
    emu.user_writes(USER, "before the restart")
    await eventually(lambda: len(sink.inbounds) == 1)
    await eventually(lambda: bool(cursors.values))
    await first.aclose()

    emu.user_writes(USER, "while chatgate was down")  # VK keeps it for the next poll

    second = _bot(emu, sink, mode="longpoll", cursors=cursors)
    await second.start()
    try:
        await eventually(lambda: len(sink.inbounds) == 2)
        assert sink.inbounds[1].text == "while chatgate was down"
    finally:
        await second.aclose()

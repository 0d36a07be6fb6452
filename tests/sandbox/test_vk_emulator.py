"""The VK emulator, driven through the real vkbottle 4 client over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from vkbottle import API, Bot, BotPolling, VKAPIError
from vkbottle.callback import BotCallback
from vkbottle.http import AiohttpClient

from gateway.sandbox.vk import VKEmulator, VKLimits

GROUP_ID = 4242
USER_ID = 7001


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    emulator: VKEmulator
    base_url: str
    clock: FakeClock


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    clock = FakeClock()
    limits = VKLimits(callback_retry_delays=(0.01,), requests_per_second=20)
    emulator = VKEmulator(group_id=GROUP_ID, group_name="Chatgate", clock=clock, limits=limits)
    emulator.add_user(USER_ID, "Ivan", "Petrov")
    runner, base = await _serve(emulator.make_app())
    yield Served(emulator, base, clock)
    await runner.cleanup()


@pytest.fixture
async def api(served: Served) -> AsyncIterator[API]:
    http = AiohttpClient()
    client = API(served.emulator.token(), http_client=http)
    client.API_URL = f"{served.base_url}/method/"
    yield client
    await http.close()


async def test_send_is_recorded_with_keyboard_and_attachment(served: Served, api: API) -> None:
    emu = served.emulator
    emu.user_writes(USER_ID, "hi")
    keyboard = {
        "inline": True,
        "buttons": [[{"action": {"type": "callback", "label": "Menu", "payload": '{"c":"m"}'}}]],
    }
    message_id = await api.messages.send(
        peer_id=USER_ID,
        random_id=11,
        message="Привет",
        keyboard=json.dumps(keyboard),
        attachment="photo1_2,doc3_4",
    )
    sent = emu.sent_to(USER_ID)
    assert [m.message_id for m in sent] == [message_id]
    assert sent[0].text == "Привет"
    assert sent[0].keyboard == keyboard
    assert sent[0].attachments == ["photo1_2", "doc3_4"]
    assert sent[0].random_id == 11
    assert sent[0].from_id == -GROUP_ID
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{served.base_url}/control/peers/{USER_ID}/sent") as response,
    ):
        items = (await response.json())["items"]
    assert [(i["message_id"], i["text"]) for i in items] == [(message_id, "Привет")]
    assert emu.stats.calls["messages.send"] == 1


async def test_peer_ids_returns_objects_and_reports_per_peer_errors(
    served: Served, api: API
) -> None:
    served.emulator.user_writes(USER_ID, "hi")
    stranger = served.emulator.add_user(first_name="No", last_name="Permission").user_id
    raw = await api.request(
        "messages.send", {"peer_ids": f"{USER_ID},{stranger}", "random_id": 5, "message": "x"}
    )
    ok, failed = raw["response"]
    assert ok["peer_id"] == USER_ID
    assert ok["message_id"] == served.emulator.sent_to(USER_ID)[0].message_id
    assert ok["conversation_message_id"] == 2
    assert failed == {
        "peer_id": stranger,
        "error": {"code": 901, "description": "Can't send messages for users without permission"},
    }


async def test_repeated_random_id_sends_once(served: Served, api: API) -> None:
    served.emulator.user_writes(USER_ID, "hi")
    first = await api.messages.send(peer_id=USER_ID, random_id=777, message="once")
    second = await api.messages.send(peer_id=USER_ID, random_id=777, message="once")
    assert first == second
    assert len(served.emulator.sent_to(USER_ID)) == 1
    served.clock.now += 3601
    third = await api.messages.send(peer_id=USER_ID, random_id=777, message="once")
    assert third != first
    assert len(served.emulator.sent_to(USER_ID)) == 2


async def test_random_id_zero_never_dedupes_and_is_required(served: Served, api: API) -> None:
    served.emulator.user_writes(USER_ID, "hi")
    await api.messages.send(peer_id=USER_ID, random_id=0, message="a")
    await api.messages.send(peer_id=USER_ID, random_id=0, message="a")
    assert len(served.emulator.sent_to(USER_ID)) == 2
    with pytest.raises(VKAPIError[100], match="random_id is a required parameter"):
        await api.messages.send(peer_id=USER_ID, message="no random id")


async def test_user_without_permission_gets_901(served: Served, api: API) -> None:
    with pytest.raises(VKAPIError[901]) as caught:
        await api.messages.send(peer_id=USER_ID, random_id=1, message="cold message")
    assert caught.value.request_params["peer_id"] == str(USER_ID)
    assert served.emulator.sent_to(USER_ID) == []
    served.emulator.allow_messages(USER_ID, key="promo")
    assert await api.messages.send(peer_id=USER_ID, random_id=2, message="now ok") > 0
    served.emulator.deny_messages(USER_ID)
    with pytest.raises(VKAPIError[901]):
        await api.messages.send(peer_id=USER_ID, random_id=3, message="denied again")


async def test_rate_limit_error_6_per_token(served: Served, api: API) -> None:
    served.emulator.user_writes(USER_ID, "hi")
    for i in range(20):
        await api.messages.send(peer_id=USER_ID, random_id=100 + i, message=f"m{i}")
    with pytest.raises(VKAPIError[6], match="Too many requests per second"):
        await api.messages.send(peer_id=USER_ID, random_id=200, message="too fast")
    assert served.emulator.error_count(6) == 1
    served.clock.now += 1.0
    await api.messages.send(peer_id=USER_ID, random_id=201, message="after a second")
    assert len(served.emulator.sent_to(USER_ID)) == 21


@pytest.mark.parametrize(
    ("keyboard", "code"),
    [
        ("{not json", 100),
        ('{"buttons": [[{"action": {"type": "teleport", "label": "x"}}]]}', 911),
        ('{"inline": true, "buttons": [[{"action": {"type": "text"}}]]}', 911),
    ],
)
async def test_bad_keyboard(served: Served, api: API, keyboard: str, code: int) -> None:
    served.emulator.user_writes(USER_ID, "hi")
    with pytest.raises(VKAPIError[code]):
        await api.messages.send(peer_id=USER_ID, random_id=1, message="k", keyboard=keyboard)
    assert served.emulator.sent_to(USER_ID) == []


async def test_message_too_long_914(served: Served, api: API) -> None:
    served.emulator.user_writes(USER_ID, "hi")
    await api.messages.send(peer_id=USER_ID, random_id=1, message="x" * 4096)
    with pytest.raises(VKAPIError[914], match="Message is too long"):
        await api.messages.send(peer_id=USER_ID, random_id=2, message="x" * 4097)


async def test_bad_token_and_unknown_method(served: Served, api: API) -> None:
    other = AiohttpClient()
    bad = API("wrong-token", http_client=other)
    bad.API_URL = api.API_URL
    try:
        with pytest.raises(VKAPIError[5], match="invalid access_token"):
            await bad.request("users.get", {"user_ids": USER_ID})
    finally:
        await other.close()
    with pytest.raises(VKAPIError[3]):
        await api.request("messages.teleport", {})


async def test_injected_faults_and_flood_control(served: Served, api: API) -> None:
    emu = served.emulator
    emu.user_writes(USER_ID, "hi")
    emu.fail_next("messages.send", 2, error_code=10)
    for _ in range(2):
        with pytest.raises(VKAPIError[10]):
            await api.messages.send(peer_id=USER_ID, random_id=0, message="x")
    emu.flood_next(USER_ID)
    with pytest.raises(VKAPIError[9], match="Flood control"):
        await api.messages.send(peer_id=USER_ID, random_id=0, message="x")
    await api.messages.send(peer_id=USER_ID, random_id=0, message="x")
    assert len(emu.sent_to(USER_ID)) == 1
    emu.fail_next("users.get", http_status=500)
    emu.fail_next("users.get", drop=True)
    url = f"{api.API_URL}users.get?access_token={emu.token()}&v=5.199&user_ids={USER_ID}"
    async with aiohttp.ClientSession() as http:
        async with http.post(url) as response:
            assert response.status == 500
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.post(url) as response:
                await response.read()
        async with http.post(url) as response:
            assert (await response.json())["response"][0]["first_name"] == "Ivan"


async def test_identical_messages_trigger_flood_when_configured() -> None:
    emu = VKEmulator(limits=VKLimits(identical_messages_per_peer=2))
    emu.add_user(USER_ID, allowed=True)
    runner, base = await _serve(emu.make_app())
    http = AiohttpClient()
    client = API(emu.token(), http_client=http)
    client.API_URL = f"{base}/method/"
    try:
        await client.messages.send(peer_id=USER_ID, random_id=0, message="same")
        await client.messages.send(peer_id=USER_ID, random_id=0, message="same")
        with pytest.raises(VKAPIError[9]):
            await client.messages.send(peer_id=USER_ID, random_id=0, message="same")
        await client.messages.send(peer_id=USER_ID, random_id=0, message="different")
    finally:
        await http.close()
        await runner.cleanup()


async def test_group_lookup_users_get_and_event_answer(served: Served, api: API) -> None:
    groups = await api.groups.get_by_id()
    assert groups.groups is not None
    assert (groups.groups[0].id, groups.groups[0].name) == (GROUP_ID, "Chatgate")
    users = await api.users.get(user_ids=[USER_ID])
    assert (users[0].id, users[0].first_name, users[0].last_name) == (USER_ID, "Ivan", "Petrov")
    event_id = served.emulator.press_callback_button(USER_ID, {"cmd": "menu"})
    answer = json.dumps({"type": "show_snackbar", "text": "ok"})
    await api.messages.send_message_event_answer(
        event_id=event_id, user_id=USER_ID, peer_id=USER_ID, event_data=answer
    )
    assert served.emulator.event_answers[-1]["event_data"]["text"] == "ok"
    served.clock.now += 61
    with pytest.raises(VKAPIError[100]):
        await api.messages.send_message_event_answer(
            event_id=event_id, user_id=USER_ID, peer_id=USER_ID, event_data=answer
        )


# -- Bots Long Poll ---------------------------------------------------------------------


async def test_long_poll_delivers_message_new_and_advances_ts(served: Served, api: API) -> None:
    polling = BotPolling(api, wait=2)
    server = await polling.get_server()
    assert polling.group_id == GROUP_ID  # vkbottle's own groups.getById lookup worked
    assert server["server"] == f"{served.base_url}/lp/{GROUP_ID}"
    start = int(server["ts"])

    pending = asyncio.create_task(polling.get_event(server))
    await asyncio.sleep(0.05)
    assert not pending.done()  # the poll hangs until something happens
    served.emulator.user_writes(
        USER_ID, "start", payload={"command": "start"}, ref="promo", ref_source="site"
    )
    event = await pending
    assert event["ts"] == str(start + 1)
    [update] = event["updates"]
    assert update["type"] == "message_new"
    assert update["group_id"] == GROUP_ID
    assert len(update["event_id"]) == 40
    message = update["object"]["message"]
    assert (message["from_id"], message["peer_id"], message["text"]) == (USER_ID, USER_ID, "start")
    assert json.loads(message["payload"]) == {"command": "start"}
    assert (message["ref"], message["ref_source"]) == ("promo", "site")
    assert update["object"]["client_info"]["inline_keyboard"] is True

    served.emulator.user_reads(USER_ID)
    served.emulator.press_callback_button(USER_ID, {"b": 1})
    server["ts"] = event["ts"]
    event = await polling.get_event(server)
    assert event["ts"] == str(start + 3)
    assert [u["type"] for u in event["updates"]] == ["message_read", "message_event"]
    assert event["updates"][1]["object"]["payload"] == {"b": 1}

    server["ts"] = event["ts"]
    started = asyncio.get_running_loop().time()
    empty = await BotPolling(api, wait=1).get_event(server)
    assert empty == {"ts": event["ts"], "updates": []}
    assert asyncio.get_running_loop().time() - started >= 0.9


async def test_long_poll_failures(served: Served, api: API) -> None:
    polling = BotPolling(api, wait=1)
    server = await polling.get_server()
    current = int(server["ts"])

    future = {**server, "ts": str(current + 50)}
    assert await polling.get_event(future) == {"failed": 1, "ts": current}

    served.emulator.expire_longpoll_key()
    assert await polling.get_event(server) == {"failed": 2}
    served.emulator.user_writes(USER_ID, "while the key was expired")
    recovered = await polling.handle_failed_event(dict(server), {"failed": 2})
    assert recovered["ts"] == server["ts"]  # failed 2 keeps the old ts, so nothing is lost
    event = await polling.get_event(recovered)
    assert event["updates"][0]["object"]["message"]["text"] == "while the key was expired"

    served.emulator.lose_longpoll_history()
    assert await polling.get_event(recovered) == {"failed": 3}
    fresh = await polling.handle_failed_event(dict(recovered), {"failed": 3})
    assert int(fresh["ts"]) == current + 1
    assert (await polling.get_event({**fresh, "ts": fresh["ts"]}))["updates"] == []


async def test_vkbottle_listen_survives_key_expiry(
    served: Served, api: API, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # listen() persists its ts under ./.vkbottle
    polling = BotPolling(api, wait=1)
    texts: list[str] = []

    async def collect() -> None:
        async for event in polling.listen():
            texts.extend(u["object"]["message"]["text"] for u in event["updates"])
            if len(texts) == 2:
                polling.stop()
                return

    task = asyncio.create_task(collect())
    await asyncio.sleep(0.1)
    served.emulator.user_writes(USER_ID, "one")
    await asyncio.sleep(0.1)
    served.emulator.expire_longpoll_key()
    served.emulator.user_writes(USER_ID, "two")
    await asyncio.wait_for(task, timeout=10)
    assert texts == ["one", "two"]


async def test_pre_5_103_event_shape(served: Served, api: API) -> None:
    served.emulator.set_events_version("5.80")
    polling = BotPolling(api, wait=1)
    server = await polling.get_server()
    served.emulator.user_writes(USER_ID, "old style")
    [update] = (await polling.get_event(server))["updates"]
    assert "message" not in update["object"]
    assert update["object"]["text"] == "old style"
    assert update["object"]["from_id"] == USER_ID
    assert update["v"] == "5.80"


# -- Callback API ------------------------------------------------------------------------


@dataclass
class Receiver:
    """A test server that records Callback API posts and answers from a script."""

    confirmation: str
    answers: list[str] = field(default_factory=list)
    posts: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.append((body, request.headers.get("X-Retry-Counter")))
        if body["type"] == "confirmation":
            return web.Response(text=self.confirmation)
        return web.Response(text=self.answers.pop(0) if self.answers else "ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(confirmation="c0nf1rm")
    app = web.Application()
    app.router.add_post("/vk", rec.handle)
    runner, base = await _serve(app)
    rec.url = f"{base}/vk"
    yield rec
    await runner.cleanup()


async def test_callback_confirmation_then_event_with_secret(
    served: Served, receiver: Receiver
) -> None:
    emu = served.emulator
    emu.set_callback(receiver.url, secret="s3cret", confirmation_code="c0nf1rm")
    message = emu.user_writes(USER_ID, "hello callback")
    await emu.callback_drain()
    (confirm, _), (event, retry) = receiver.posts
    assert confirm == {"type": "confirmation", "group_id": GROUP_ID, "secret": "s3cret"}
    assert event["type"] == "message_new"
    assert event["secret"] == "s3cret"
    assert event["group_id"] == GROUP_ID
    assert event["v"] == "5.199"
    assert event["object"]["message"]["id"] == message.message_id
    assert retry is None
    assert emu.community().callback is not None
    assert emu.community().callback.status == "ok"


async def test_callback_wrong_confirmation_drops_events(served: Served, receiver: Receiver) -> None:
    served.emulator.set_callback(receiver.url, confirmation_code="something-else")
    served.emulator.user_writes(USER_ID, "lost")
    await served.emulator.callback_drain()
    assert [p[0]["type"] for p in receiver.posts] == ["confirmation"]
    assert len(served.emulator.callback.dropped) == 1


async def test_callback_retries_with_same_event_id(served: Served, receiver: Receiver) -> None:
    emu = served.emulator
    emu.set_callback(receiver.url, confirmation_code="c0nf1rm")
    assert await emu.confirm_callback()
    receiver.answers = ["error", "OK?"]
    emu.user_writes(USER_ID, "retry me")
    await emu.callback_drain()
    events = [(body["event_id"], retry) for body, retry in receiver.posts[1:]]
    assert len({event_id for event_id, _ in events}) == 1
    assert [retry for _, retry in events] == [None, "1", "2"]
    assert [a.ok for a in emu.callback_attempts(events[0][0])] == [False, False, True]


async def test_callback_gives_up_after_five_retries(served: Served, receiver: Receiver) -> None:
    emu = served.emulator
    emu.set_callback(receiver.url, confirmation_code="c0nf1rm")
    receiver.answers = ["nope"] * 10
    emu.user_writes(USER_ID, "never acknowledged")
    await emu.callback_drain()
    assert len(receiver.posts) == 1 + 6
    assert len(emu.callback.dropped) == 1


async def test_callback_duplicate_hook_resends_same_event(
    served: Served, receiver: Receiver
) -> None:
    emu = served.emulator
    emu.set_callback(receiver.url, confirmation_code="c0nf1rm")
    message = emu.user_writes(USER_ID, "twice")
    await emu.callback_drain()
    first_id = receiver.posts[-1][0]["event_id"]
    emu.redeliver(first_id)
    await emu.callback_drain()
    bodies = [body for body, _ in receiver.posts if body["type"] == "message_new"]
    assert [b["event_id"] for b in bodies] == [first_id, first_id]
    assert bodies[1]["object"]["message"]["id"] == message.message_id


async def test_vkbottle_setup_webhook_registers_server(
    served: Served, api: API, receiver: Receiver
) -> None:
    bot = Bot(api=api, callback=BotCallback(url=receiver.url, title="chatgate"))
    code, secret = await bot.setup_webhook()
    assert code == served.emulator.community().confirmation_code
    receiver.confirmation = code
    served.emulator.user_writes(USER_ID, "via vkbottle setup")
    served.emulator.allow_messages(USER_ID)  # not enabled by setup_webhook: not sent
    await served.emulator.callback_drain()
    types = [body["type"] for body, _ in receiver.posts]
    assert types == ["confirmation", "message_new"]
    assert receiver.posts[1][0]["secret"] == secret


# -- control API and mounting --------------------------------------------------------------


async def test_http_control_api_mounted_under_prefix() -> None:
    emu = VKEmulator(group_id=GROUP_ID)
    parent = web.Application()
    parent.add_subapp("/sandbox/vk", emu.make_app())
    runner, base = await _serve(parent)
    prefix = f"{base}/sandbox/vk"
    http_client = AiohttpClient()
    client = API(emu.token(), http_client=http_client)
    client.API_URL = f"{prefix}/method/"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{prefix}/control/users", json={"first_name": "Olga"}) as r:
                user_id = (await r.json())["id"]
            async with http.post(
                f"{prefix}/control/users/{user_id}/messages",
                json={"text": "menu", "payload": {"cmd": "menu"}},
            ) as r:
                assert (await r.json())["payload"] == '{"cmd": "menu"}'
            await client.messages.send(peer_id=user_id, random_id=9, message="answer")
            server = (await client.groups.get_long_poll_server(group_id=GROUP_ID)).server
            assert server == f"{prefix}/lp/{GROUP_ID}"
            async with http.get(f"{prefix}/control/peers/{user_id}/sent") as r:
                assert [m["random_id"] for m in (await r.json())["items"]] == [9]
            async with http.post(
                f"{prefix}/control/faults", json={"method": "messages.send", "error_code": 6}
            ) as r:
                assert r.status == 200
            with pytest.raises(VKAPIError[6]):
                await client.messages.send(peer_id=user_id, random_id=10, message="again")
            async with http.get(f"{prefix}/control/stats") as r:
                stats = await r.json()
            assert (stats["send_calls"], stats["error_6_count"]) == (2, 1)
            async with http.post(f"{prefix}/control/users/999999/allow", json={}) as r:
                assert r.status == 404
    finally:
        await http_client.close()
        await runner.cleanup()

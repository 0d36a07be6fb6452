"""The sandbox's Twilio speaks Twilio: chatgate's real adapter and webhook checker agree.

The emulator is served on a real port with chatgate's Twilio webhook beside it:
the real `TwilioAdapter` sends through the Messages API, and every StatusCallback
and inbound SMS the emulator posts must pass `TwilioHooks` (X-Twilio-Signature
over the public URL and the sorted form) exactly as a request from Twilio would.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.bridge.sms.inbound import Received
from gateway.bridge.sms.twilio import TwilioAdapter, TwilioHooks
from gateway.channels import Failure, Inbound, Outbound, Sent, Signal
from gateway.sandbox.sms import TwilioEmulator, twilio_signature
from tests.conftest import free_port
from tests.e2e.conftest import eventually

SID = "AC" + "1f" * 16
TOKEN = "twilio-auth-token"
NUMBER = "+15005550006"
PHONE = "+79161234567"


@dataclass
class World:
    """The emulator at /twilio and chatgate's Twilio webhook, on one server."""

    base: str
    emulator: TwilioEmulator
    adapter: TwilioAdapter
    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"{self.base}/twilio/2010-04-01/Accounts/{SID}/Messages.json"

    def signals(self) -> list[Signal]:
        return [r.item for r in self.received if isinstance(r.item, Signal)]

    def inbound(self) -> list[Inbound]:
        return [r.item for r in self.received if isinstance(r.item, Inbound)]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    emulator = TwilioEmulator(
        account_sid=SID,
        auth_token=TOKEN,
        number=NUMBER,
        sms_url=f"{base}/webhooks/sms/twilio",
        report_delay=0.01,
    )
    hooks = TwilioHooks(account=NUMBER, region="RU", auth_token=TOKEN, public_url=base)
    adapter = TwilioAdapter(
        account_sid=SID,
        auth_token=TOKEN,
        sender=NUMBER,
        public_url=base,
        api_url=f"{base}/twilio",
    )
    state = World(base, emulator, adapter)

    async def webhook(request: web.Request) -> web.StreamResponse:
        items, answer = await hooks.receive(request)  # raises 403 on a bad signature
        state.received.extend(items)
        return answer

    app = web.Application()
    app.router.add_post("/webhooks/sms/twilio", webhook)
    app.add_subapp("/twilio", emulator.app)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield state
    finally:
        await adapter.aclose()
        await emulator.aclose()
        await runner.cleanup()


def _outbound(text: str, address: str = PHONE, delivery_id: int = 7) -> Outbound:
    return Outbound(
        delivery_id=delivery_id, channel="sms", account=NUMBER, address=address, text=text
    )


def test_signature_matches_twilios_documented_example() -> None:
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature(url, params, "12345") == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    # Order of arrival does not matter; Twilio sorts by name.
    assert twilio_signature(url, params[::-1], "12345") == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


async def test_the_real_adapter_sends_into_the_phone_and_reports_come_back(world: World) -> None:
    result = await world.adapter.send(_outbound("Ваш заказ собран и ждёт вас."))

    assert isinstance(result, Sent)
    assert result.external_id is not None
    assert result.external_id.startswith("SM")
    assert len(result.external_id) == 34
    assert result.segments == 1  # 28 Cyrillic characters: one UCS-2 part
    phone = world.emulator.phones.phone(PHONE)
    assert [m.body for m in phone.messages] == ["Ваш заказ собран и ждёт вас."]
    assert phone.messages[0].direction == "received"

    await eventually(lambda: len(phone.messages[0].callbacks) == 2)
    signals = world.signals()
    # "sent" is not final, so chatgate keeps nothing for it; "delivered" carries our id.
    assert [(s.kind, s.external_id, s.delivery_id) for s in signals] == [
        ("delivered", result.external_id, 7)
    ]
    assert phone.messages[0].status == "delivered"
    assert phone.messages[0].callbacks == ["sent:200", "delivered:200"]


async def test_a_switched_off_phone_gets_undelivered_with_30003(world: World) -> None:
    world.emulator.phones.phone(PHONE).reachable = False
    result = await world.adapter.send(_outbound("Hello"))
    assert isinstance(result, Sent)

    signals = await eventually(lambda: world.signals())
    assert [s.kind for s in signals] == ["failed"]
    assert signals[0].detail == "twilio undelivered 30003"
    # 30003 is a handset switched off, not a dead number: the identity stays reachable.
    assert world.received[0].unreachable is None
    assert world.emulator.phones.phone(PHONE).messages[0].error_code == 30003


async def test_long_cyrillic_text_counts_its_segments_like_twilio(world: World) -> None:
    text = "Скидка 20% на всё до воскресенья! " * 3  # 102 UCS-2 characters: two parts
    result = await world.adapter.send(_outbound(text))
    assert isinstance(result, Sent)
    assert result.segments == 2
    assert world.emulator.phones.phone(PHONE).messages[0].segments == 2


async def test_a_text_from_the_phone_reaches_chatgate_signed(world: World) -> None:
    sms = await world.emulator.text_from("+7 916 123-45-67", "СТОП")

    assert sms.webhook_status == 200
    [inbound] = world.inbound()
    assert inbound.channel == "sms"
    assert inbound.account == NUMBER
    assert inbound.address == PHONE
    assert inbound.text == "СТОП"
    assert inbound.external_id == sms.sid
    assert world.emulator.phones.phone(PHONE).messages == [sms]


async def test_chatgate_refuses_a_text_signed_with_another_token(world: World) -> None:
    world.emulator.auth_token = "not-the-shops-token"
    sms = await world.emulator.text_from(PHONE, "hello")
    assert sms.webhook_status == 403
    assert world.received == []


async def _post(
    world: World, form: dict[str, str], *, auth: str | None = None
) -> tuple[int, dict[str, Any]]:
    credentials = auth or base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(world.api, data=form, headers={"Authorization": f"Basic {credentials}"}) as r,
    ):
        return r.status, await r.json()


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"From": NUMBER, "Body": "hi"}, 400, 21604),
        ({"To": "12", "From": NUMBER, "Body": "hi"}, 400, 21211),
        ({"To": PHONE, "From": NUMBER}, 400, 21602),
        ({"To": PHONE, "From": "+15005550001", "Body": "hi"}, 400, 21606),
        ({"To": PHONE, "From": NUMBER, "Body": "x" * 1601}, 400, 21617),
    ],
)
async def test_messages_api_refuses_bad_forms_with_twilio_error_codes(
    world: World, form: dict[str, str], status: int, code: int
) -> None:
    got_status, body = await _post(world, form)
    assert (got_status, body["code"], body["status"]) == (status, code, status)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert world.emulator.phones.known() == []  # nothing was filed


async def test_wrong_credentials_get_20003_and_the_adapter_does_not_retry(world: World) -> None:
    wrong = base64.b64encode(f"{SID}:wrong".encode()).decode()
    status, body = await _post(world, {"To": PHONE, "From": NUMBER, "Body": "hi"}, auth=wrong)
    assert (status, body["code"]) == (401, 20003)

    adapter = TwilioAdapter(
        account_sid=SID,
        auth_token="wrong",
        sender=NUMBER,
        public_url=world.base,
        api_url=f"{world.base}/twilio",
    )
    try:
        result = await adapter.send(_outbound("hi"))
    finally:
        await adapter.aclose()
    assert isinstance(result, Failure)
    assert not result.retryable
    assert "20003" in result.reason


async def test_the_message_resource_shows_the_current_status(world: World) -> None:
    status, created = await _post(world, {"To": PHONE, "From": NUMBER, "Body": "hi"})
    assert status == 201
    assert created["status"] == "queued"
    assert created["direction"] == "outbound-api"
    assert created["num_segments"] == "1"
    await world.emulator.settled()
    credentials = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{world.base}/twilio{created['uri']}",
            headers={"Authorization": f"Basic {credentials}"},
        ) as r,
    ):
        assert (await r.json())["status"] == "delivered"


async def test_control_api_texts_from_a_phone_and_lists_its_thread(world: World) -> None:
    async with aiohttp.ClientSession() as http:
        control = f"{world.base}/twilio/control/phones/%2B79161234567"
        async with http.post(f"{control}/messages", json={"text": "Где мой заказ?"}) as r:
            assert r.status == 200
            sent = await r.json()
        assert sent["direction"] == "sent"
        assert sent["webhook_status"] == 200
        async with http.post(f"{control}/messages", json={"text": "  "}) as r:
            assert r.status == 400
            assert "empty" in (await r.json())["error"]
        async with http.post(
            f"{world.base}/twilio/control/phones/12ab/messages", json={"text": "hi"}
        ) as r:
            assert r.status == 400
        async with http.post(f"{control}/state", json={"reachable": False}) as r:
            assert (await r.json())["reachable"] is False
        async with http.get(f"{control}/messages") as r:
            thread = await r.json()
    assert thread["phone"] == PHONE
    assert thread["reachable"] is False
    assert [m["body"] for m in thread["items"]] == ["Где мой заказ?"]
    assert [i.text for i in world.inbound()] == ["Где мой заказ?"]


async def test_control_reports_a_webhook_chatgate_refused(world: World) -> None:
    world.emulator.auth_token = "stolen"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{world.base}/twilio/control/phones/%2B79161234567/messages", json={"text": "hi"}
        ) as r,
    ):
        assert r.status == 502
        assert "403" in (await r.json())["error"]


async def test_a_429_fault_makes_the_adapter_pause_the_lane_and_files_nothing(
    world: World,
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{world.base}/twilio/control/faults",
            json={"status": 429, "code": 20429, "times": 1, "retry_after": 7},
        ) as r,
    ):
        assert r.status == 200

    refused = await world.adapter.send(_outbound("first"))
    assert isinstance(refused, Failure)
    assert refused.retryable
    assert refused.lane_wide
    assert refused.retry_after == 7
    assert world.emulator.phones.known() == []
    # The fault was for one send: the retry goes through.
    assert isinstance(await world.adapter.send(_outbound("first")), Sent)
    assert [m.body for m in world.emulator.phones.phone(PHONE).messages] == ["first"]


async def test_a_5xx_fault_is_retryable_for_the_adapter(world: World) -> None:
    world.emulator.fail_next(1, 503, 20503)
    result = await world.adapter.send(_outbound("hi"))
    assert isinstance(result, Failure)
    assert result.retryable
    assert not result.lane_wide
    with pytest.raises(ValueError, match="HTTP error"):
        world.emulator.fail_next(1, 200, 0)

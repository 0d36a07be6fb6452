"""Twilio: Messages API as documented, signed webhooks, StatusCallback with our id."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from gateway.bridge.sms import TwilioAdapter, setup_sms_routes
from gateway.bridge.sms.twilio import signature, signature_ok
from gateway.channels import Failure, Outbound, Sent
from tests.bridge.sms.conftest import FakeProvider, RecordingSink, webhook_client

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "tw-token"
PUBLIC = "https://chat.example.com"
HOOK = "/webhooks/sms/twilio"


def twilio(provider: FakeProvider, session: aiohttp.ClientSession) -> TwilioAdapter:
    return TwilioAdapter(
        account_sid=SID,
        auth_token=TOKEN,
        sender="+15005550006",
        public_url=PUBLIC,
        api_url=provider.url,
        session=session,
    )


def outbound(address: str = "+1 415 555 2671", text: str = "Your order shipped") -> Outbound:
    return Outbound(
        delivery_id=99, channel="sms", account="+15005550006", address=address, text=text
    )


def test_signature_matches_twilios_documented_example() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signature(url, params.items(), "12345") == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert signature_ok(url, params.items(), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "12345")
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert signature_ok(with_port, params.items(), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "12345")
    assert not signature_ok(
        url, {**params, "Digits": "1235"}.items(), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "12345"
    )


def test_multi_valued_parameters_sort_by_value() -> None:
    one = signature("https://x/y", [("A", "2"), ("A", "1"), ("B", "0")], "t")
    assert one == signature("https://x/y", [("B", "0"), ("A", "1"), ("A", "2")], "t")


async def test_send_posts_form_with_basic_auth(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.reply(201, {"sid": "SM123", "status": "queued", "num_segments": "1"})
    result = await twilio(provider, session).send(outbound())
    assert result == Sent(external_id="SM123", segments=1)
    (seen,) = provider.requests
    assert (seen.method, seen.path) == ("POST", f"/2010-04-01/Accounts/{SID}/Messages.json")
    assert (
        seen.headers["Authorization"]
        == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    )
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(seen.form) == {
        "To": "+14155552671",
        "From": "+15005550006",
        "Body": "Your order shipped",
        "StatusCallback": f"{PUBLIC}{HOOK}?delivery=99",
    }


def error(code: int, status: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@pytest.mark.parametrize(
    ("status", "body", "retryable", "unreachable", "lane_wide"),
    [
        (
            400,
            error(21211, 400, "The 'To' number +14155550000 is not a valid phone number."),
            False,
            True,
            False,
        ),
        (400, error(21610, 400, "Attempt to send to unsubscribed recipient"), False, True, False),
        (429, error(20429, 429, "Too Many Requests"), True, False, True),
        (503, error(20500, 503, "Service unavailable"), True, False, False),
        (401, error(20003, 401, "Authenticate"), False, False, False),
        (
            400,
            error(21408, 400, "Permission to send an SMS has not been enabled for the region"),
            False,
            False,
            False,
        ),
    ],
)
async def test_error_answers_map_to_failures(
    provider: FakeProvider,
    session: aiohttp.ClientSession,
    status: int,
    body: dict[str, Any],
    retryable: bool,
    unreachable: bool,
    lane_wide: bool,
) -> None:
    provider.reply(status, body, **({"Retry-After": "2"} if status == 429 else {}))
    result = await twilio(provider, session).send(outbound())
    assert isinstance(result, Failure)
    assert (result.retryable, result.unreachable, result.lane_wide) == (
        retryable,
        unreachable,
        lane_wide,
    )
    assert str(body["code"]) in result.reason
    if status == 429:
        assert result.retry_after == 2.0


async def test_impossible_number_is_refused_locally(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    result = await twilio(provider, session).send(outbound(address="+1 000"))
    assert isinstance(result, Failure)
    assert result.unreachable
    assert not result.retryable
    assert provider.requests == []


# --- webhooks ---------------------------------------------------------------------


async def twilio_hook(sink: RecordingSink):  # type: ignore[no-untyped-def]
    app = web.Application()
    setup_sms_routes(
        app,
        provider="twilio",
        sink=sink,
        public_url=PUBLIC,
        account="+15005550006",
        auth_token=TOKEN,
    )
    return await webhook_client(app)


def signed(path: str, form: dict[str, str], token: str = TOKEN) -> dict[str, Any]:
    return {
        "data": urlencode(form),
        "headers": {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature(PUBLIC + path, form.items(), token),
        },
    }


INBOUND = {
    "ToCountry": "US",
    "SmsMessageSid": "SMaaa",
    "NumMedia": "1",
    "SmsSid": "SMaaa",
    "SmsStatus": "received",
    "Body": "STOP",
    "To": "+15005550006",
    "MessageSid": "SMaaa",
    "AccountSid": SID,
    "From": "+14155552671",
    "MediaUrl0": "https://api.twilio.com/media/ME1",
    "MediaContentType0": "image/jpeg",
    "ApiVersion": "2010-04-01",
}


async def test_signed_inbound_is_handed_over_once(sink: RecordingSink) -> None:
    client = await twilio_hook(sink)
    try:
        for _ in range(2):  # Twilio retried the webhook
            response = await client.post(HOOK, **signed(HOOK, INBOUND))
            assert response.status == 200
            assert "<Response></Response>" in await response.text()
    finally:
        await client.close()
    (message,) = sink.inbounds
    assert message.external_id == "SMaaa"
    assert message.address == "+14155552671"
    assert message.account == "+15005550006"
    assert message.text == "STOP"
    assert message.meta["sms_keyword"] == "stop"
    assert message.attachments[0].url == "https://api.twilio.com/media/ME1"
    assert message.attachments[0].kind == "photo"


@pytest.mark.parametrize(
    "forge",
    ["no header", "wrong token", "tampered body", "internal url"],
)
async def test_forged_webhook_is_403_and_changes_nothing(sink: RecordingSink, forge: str) -> None:
    request = signed(HOOK, INBOUND)
    if forge == "no header":
        del request["headers"]["X-Twilio-Signature"]
    elif forge == "wrong token":
        request = signed(HOOK, INBOUND, token="other")
    elif forge == "tampered body":
        request["data"] = urlencode({**INBOUND, "Body": "hello"})
    else:
        sig = signature("http://127.0.0.1:8080" + HOOK, INBOUND.items(), TOKEN)
        request["headers"]["X-Twilio-Signature"] = sig
    client = await twilio_hook(sink)
    try:
        response = await client.post(HOOK, **request)
        assert response.status == 403
    finally:
        await client.close()
    assert sink.untouched


@pytest.mark.parametrize(
    ("status", "kind"),
    [("delivered", "delivered"), ("undelivered", "failed"), ("failed", "failed"), ("read", "read")],
)
async def test_status_callback_carries_our_delivery_id(
    sink: RecordingSink, status: str, kind: str
) -> None:
    path = f"{HOOK}?delivery=99"
    form = {
        "MessageSid": "SM123",
        "SmsSid": "SM123",
        "MessageStatus": status,
        "SmsStatus": status,
        "To": "+14155552671",
        "From": "+15005550006",
        "AccountSid": SID,
        "ApiVersion": "2010-04-01",
    }
    client = await twilio_hook(sink)
    try:
        response = await client.post(path, **signed(path, form))
        assert response.status == 200
    finally:
        await client.close()
    (signal,) = sink.signals
    assert (signal.kind, signal.delivery_id, signal.external_id) == (kind, 99, "SM123")
    assert signal.address == "+14155552671"
    assert sink.reach == []


async def test_interim_statuses_give_no_signal(sink: RecordingSink) -> None:
    client = await twilio_hook(sink)
    try:
        for status in ("queued", "sending", "sent", "accepted"):
            path = f"{HOOK}?delivery=99"
            form = {"MessageSid": "SM123", "MessageStatus": status, "To": "+14155552671"}
            assert (await client.post(path, **signed(path, form))).status == 200
    finally:
        await client.close()
    assert sink.signals == []


async def test_dead_number_report_marks_unreachable(sink: RecordingSink) -> None:
    path = f"{HOOK}?delivery=5"
    form = {
        "MessageSid": "SM9",
        "MessageStatus": "undelivered",
        "ErrorCode": "30006",
        "To": "+14155552671",
    }
    client = await twilio_hook(sink)
    try:
        assert (await client.post(path, **signed(path, form))).status == 200
    finally:
        await client.close()
    assert sink.signals[0].detail == "twilio undelivered 30006"
    assert sink.reach == [
        (
            "sms",
            "+15005550006",
            "+14155552671",
            False,
            "twilio 30006: landline or unreachable carrier",
        )
    ]


async def test_json_body_is_signed_through_its_hash(sink: RecordingSink) -> None:
    import hashlib

    body = b'{"MessageSid": "SMjson"}'
    path = f"{HOOK}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Signature": signature(PUBLIC + path, [], TOKEN),
    }
    client = await twilio_hook(sink)
    try:
        tampered = await client.post(path, data=b'{"MessageSid": "SMother"}', headers=headers)
        assert tampered.status == 403
    finally:
        await client.close()
    assert sink.untouched

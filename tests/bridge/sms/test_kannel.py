"""Kannel: sendsms as its HTTP interface documents it, get-url MO and dlr-url reports."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from gateway.bridge.sms import KannelAdapter, setup_sms_routes
from gateway.bridge.sms.kannel import decode_text
from gateway.channels import Failure, Outbound, Sent
from tests.bridge.sms.conftest import FakeProvider, RecordingSink, webhook_client

PUBLIC = "https://chat.example.com"


def kannel(provider: FakeProvider, session: aiohttp.ClientSession, **kw: object) -> KannelAdapter:
    return KannelAdapter(
        sendsms_url=f"{provider.url}/cgi-bin/sendsms",
        username="tester",
        password="foobar",
        sender="12345",
        public_url=PUBLIC,
        session=session,
        **kw,  # type: ignore[arg-type]
    )


def outbound(text: str, address: str = "8 (916) 123-45-67", delivery_id: int = 42) -> Outbound:
    return Outbound(
        delivery_id=delivery_id, channel="sms", account="12345", address=address, text=text
    )


async def test_sendsms_carries_every_documented_parameter(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.reply(202, "0: Accepted for delivery")
    result = await kannel(provider, session).send(outbound("Привет! " * 10))
    assert result == Sent(external_id=None, segments=2)
    (seen,) = provider.requests
    assert seen.method == "GET"
    assert seen.path == "/cgi-bin/sendsms"
    assert dict(seen.query) == {
        "username": "tester",
        "password": "foobar",
        "from": "12345",
        "to": "79161234567",
        "text": "Привет! " * 10,
        "charset": "UTF-8",
        "coding": "2",
        "dlr-mask": "19",
        "dlr-url": f"{PUBLIC}/webhooks/sms/kannel?delivery=42&type=%d&to=%p&fid=%F&reply=%A&ts=%T",
    }


async def test_gsm_text_goes_as_coding_0(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.reply(202, "3: Queued for later delivery")
    result = await kannel(provider, session, dlr_mask=31).send(outbound("Your code: 1234 {ok}"))
    assert result == Sent(external_id=None, segments=1)
    assert provider.requests[0].query["coding"] == "0"
    assert provider.requests[0].query["dlr-mask"] == "31"


@pytest.mark.parametrize(
    ("status", "body", "retryable", "unreachable"),
    [
        (503, "Temporal failure, try again later.", True, False),
        (500, "oops", True, False),
        (403, "Authorization failed for sendsms", False, False),
        (400, "Missing receiver number", False, False),
        (403, "Number(s) has/have been denied by white- and/or black-lists.", False, True),
    ],
)
async def test_refusals_map_to_failures(
    provider: FakeProvider,
    session: aiohttp.ClientSession,
    status: int,
    body: str,
    retryable: bool,
    unreachable: bool,
) -> None:
    provider.reply(status, body)
    result = await kannel(provider, session).send(outbound("hi"))
    assert isinstance(result, Failure)
    assert (result.retryable, result.unreachable) == (retryable, unreachable)
    assert str(status) in result.reason


async def test_invalid_number_is_refused_before_sending(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    result = await kannel(provider, session).send(outbound("hi", address="+7 123"))
    assert isinstance(result, Failure)
    assert (result.retryable, result.unreachable) == (False, True)
    assert provider.requests == []


async def test_too_long_is_refused_not_cut(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    result = await kannel(provider, session, max_segments=2).send(outbound("Ж" * 135))
    assert isinstance(result, Failure)
    assert not result.retryable
    assert not result.unreachable
    assert provider.requests == []


async def test_timeout_is_retryable(provider: FakeProvider, session: aiohttp.ClientSession) -> None:
    provider.delay = 1.0
    provider.reply(202, "0: Accepted for delivery")
    result = await kannel(provider, session, timeout=0.1).send(outbound("hi"))
    assert isinstance(result, Failure)
    assert result.retryable


async def test_connection_refused_is_retryable(session: aiohttp.ClientSession) -> None:
    adapter = KannelAdapter(
        sendsms_url="http://127.0.0.1:9/cgi-bin/sendsms",
        username="u",
        password="p",
        sender="12345",
        public_url=PUBLIC,
    )
    try:
        result = await adapter.send(outbound("hi"))
    finally:
        await adapter.aclose()
    assert isinstance(result, Failure)
    assert result.retryable


# --- webhooks ---------------------------------------------------------------------


async def kannel_hook(sink: RecordingSink, secret: str | None = None):  # type: ignore[no-untyped-def]
    app = web.Application()
    setup_sms_routes(
        app, provider="kannel", sink=sink, public_url=PUBLIC, account="12345", webhook_secret=secret
    )
    return await webhook_client(app)


async def test_mo_utf16be_cyrillic_as_kannel_sends_it(sink: RecordingSink) -> None:
    client = await kannel_hook(sink)
    try:
        # The get-url request observed from Kannel 1.4.5 + fakesmsc (sms-email.md §2.4).
        url = (
            "/webhooks/sms/kannel?from=79161234567&to=12345"
            "&text=%04%1F%04%40%048%042%045%04B&ts=1700000000&coding=2&charset=UTF-16BE"
            "&smsc=fake1&id=5f0c6a4e-0000-4000-8000-000000000001"
        )
        response = await client.get(url)
        assert response.status == 200
        again = await client.get(url)
        assert again.status == 200
    finally:
        await client.close()
    (message,) = sink.inbounds
    assert message.text == "Привет"
    assert message.channel == "sms"
    assert message.account == "12345"
    assert message.address == "+79161234567"
    assert message.external_id == "5f0c6a4e-0000-4000-8000-000000000001"
    assert message.sent_at is not None
    assert message.sent_at.timestamp() == 1700000000
    assert "sms_keyword" not in message.meta


async def test_mo_7bit_stop_is_marked(sink: RecordingSink) -> None:
    client = await kannel_hook(sink)
    try:
        response = await client.get(
            "/webhooks/sms/kannel?from=79161234567&to=12345&text=Stop%21&coding=0&charset=UTF-8"
        )
        assert response.status == 200
    finally:
        await client.close()
    assert sink.inbounds[0].text == "Stop!"
    assert sink.inbounds[0].meta["sms_keyword"] == "stop"


async def test_mo_ucs2_stop_in_cyrillic(sink: RecordingSink) -> None:
    raw = "СТОП".encode("utf-16-be")
    text = "".join(f"%{b:02X}" for b in raw)
    client = await kannel_hook(sink)
    try:
        response = await client.post(
            "/webhooks/sms/kannel",
            data=f"from=%2B79161234567&text={text}&coding=2&charset=UTF-16BE",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status == 200
    finally:
        await client.close()
    assert sink.inbounds[0].text == "СТОП"
    assert sink.inbounds[0].meta["sms_keyword"] == "stop"


def test_decode_text_by_charset_not_utf8() -> None:
    raw = "Жёлтый".encode("utf-16-be")
    assert decode_text(raw, charset="UTF-16BE", coding="2") == "Жёлтый"
    assert decode_text(raw, charset=None, coding="2") == "Жёлтый"
    assert decode_text("Жёлтый".encode(), charset="UTF-8", coding="0") == "Жёлтый"
    assert decode_text(b"\xe9t\xe9", charset="ISO-8859-1", coding="1") == "été"


@pytest.mark.parametrize(
    ("dlr_type", "kind"), [("1", "delivered"), ("2", "failed"), ("16", "failed")]
)
async def test_dlr_becomes_signal_for_our_delivery(
    sink: RecordingSink, dlr_type: str, kind: str
) -> None:
    client = await kannel_hook(sink)
    try:
        response = await client.get(
            f"/webhooks/sms/kannel?delivery=42&type={dlr_type}&to=79161234567"
            "&fid=abc-1&reply=NACK%2F0x0000000b&ts=1700000000"
        )
        assert response.status == 200
    finally:
        await client.close()
    (signal,) = sink.signals
    assert signal.kind == kind
    assert signal.delivery_id == 42
    assert signal.channel == "sms"
    assert signal.address == "+79161234567"
    assert signal.external_id == "abc-1"


async def test_late_smsc_ack_after_delivered_is_no_regression(sink: RecordingSink) -> None:
    client = await kannel_hook(sink)
    try:
        # Kannel's fake SMSC posts type 1 before type 8 (observed).
        for dlr_type in ("1", "8", "4"):
            response = await client.get(
                f"/webhooks/sms/kannel?delivery=42&type={dlr_type}&to=79161234567&reply=ACK%2F"
            )
            assert response.status == 200
    finally:
        await client.close()
    assert [s.kind for s in sink.signals] == ["delivered"]


async def test_secret_guards_both_hooks(sink: RecordingSink) -> None:
    client = await kannel_hook(sink, secret="s3cret")
    try:
        forged = await client.get("/webhooks/sms/kannel?delivery=42&type=2&secret=nope")
        assert forged.status == 403
        missing = await client.get("/webhooks/sms/kannel?from=79161234567&text=hi")
        assert missing.status == 403
        assert sink.untouched
        ok = await client.get("/webhooks/sms/kannel?delivery=42&type=1&secret=s3cret")
        assert ok.status == 200
    finally:
        await client.close()
    assert [s.kind for s in sink.signals] == ["delivered"]


async def test_adapter_puts_secret_in_dlr_url(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.reply(202, "0: Accepted for delivery")
    await kannel(provider, session, webhook_secret="s3cret").send(outbound("hi"))
    assert provider.requests[0].query["dlr-url"].endswith("&secret=s3cret")


async def test_sink_failure_answers_500_and_the_resend_is_handed_over(sink: RecordingSink) -> None:
    sink.fail_inbounds = 1
    client = await kannel_hook(sink)
    try:
        url = "/webhooks/sms/kannel?from=79161234567&text=hi&coding=0&charset=UTF-8&id=m-1"
        assert (await client.get(url)).status == 500
        assert (await client.get(url)).status == 200
        assert (await client.get(url)).status == 200
    finally:
        await client.close()
    assert [m.text for m in sink.inbounds] == ["hi"]


@pytest.mark.parametrize("query", ["delivery=x&type=1", "delivery=42&type=3", "text=hi"])
async def test_malformed_hooks_are_400(sink: RecordingSink, query: str) -> None:
    client = await kannel_hook(sink)
    try:
        response = await client.get(f"/webhooks/sms/kannel?{query}")
        assert response.status == 400
    finally:
        await client.close()
    assert sink.untouched

"""SMS.ru: sms/send as documented (form, json=1) and its status callbacks."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.bridge.sms import SmsRuAdapter, setup_sms_routes
from gateway.channels import Failure, Outbound, Sent
from tests.bridge.sms.conftest import FakeProvider, RecordingSink, webhook_client


def smsru(provider: FakeProvider, session: aiohttp.ClientSession, **kw: Any) -> SmsRuAdapter:
    return SmsRuAdapter(api_id="API-1", api_url=provider.url, session=session, **kw)


def outbound(text: str = "Ваш заказ готов", address: str = "+7 916 123-45-67") -> Outbound:
    return Outbound(delivery_id=7, channel="sms", account="sms.ru", address=address, text=text)


def answer_for(number: str, **entry: Any) -> dict[str, Any]:
    return {"status": "OK", "status_code": 100, "sms": {number: entry}, "balance": 4122.56}


async def test_send_posts_the_documented_form(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    provider.reply(
        200, answer_for("79161234567", status="OK", status_code=100, sms_id="000000-10000000")
    )
    result = await smsru(provider, session, sender="Shop").send(outbound())
    assert result == Sent(external_id="000000-10000000", segments=1)
    (seen,) = provider.requests
    assert (seen.method, seen.path) == ("POST", "/sms/send")
    assert dict(seen.form) == {
        "api_id": "API-1",
        "to": "79161234567",
        "msg": "Ваш заказ готов",
        "json": "1",
        "from": "Shop",
    }


async def test_no_sender_no_from(provider: FakeProvider, session: aiohttp.ClientSession) -> None:
    provider.reply(200, answer_for("79161234567", status="OK", status_code=100, sms_id="1-2"))
    adapter = smsru(provider, session)
    assert adapter.account == "sms.ru"
    await adapter.send(outbound())
    assert "from" not in provider.requests[0].form


@pytest.mark.parametrize(
    ("code", "retryable", "unreachable"),
    [
        (207, False, True),
        (202, False, True),
        (209, False, True),
        (206, True, False),
        (231, True, False),
        (220, True, False),
        (204, False, False),
        (201, False, False),
    ],
)
async def test_per_number_error_inside_overall_ok(
    provider: FakeProvider,
    session: aiohttp.ClientSession,
    code: int,
    retryable: bool,
    unreachable: bool,
) -> None:
    provider.reply(
        200, answer_for("79161234567", status="ERROR", status_code=code, status_text="Нельзя")
    )
    result = await smsru(provider, session).send(outbound())
    assert isinstance(result, Failure)
    assert (result.retryable, result.unreachable) == (retryable, unreachable)
    assert f"sms.ru {code}" in result.reason


async def test_whole_request_error(provider: FakeProvider, session: aiohttp.ClientSession) -> None:
    provider.reply(
        200, {"status": "ERROR", "status_code": 200, "status_text": "Неправильный api_id"}
    )
    result = await smsru(provider, session).send(outbound())
    assert result == Failure("sms.ru 200: Неправильный api_id", retryable=False)


@pytest.mark.parametrize(("status", "retryable"), [(502, True), (429, True), (404, False)])
async def test_http_errors(
    provider: FakeProvider, session: aiohttp.ClientSession, status: int, retryable: bool
) -> None:
    provider.reply(status, "nope", **{"Retry-After": "7"})
    result = await smsru(provider, session).send(outbound())
    assert isinstance(result, Failure)
    assert result.retryable == retryable
    if retryable:
        assert result.retry_after == 7.0


async def test_invalid_number_never_reaches_sms_ru(
    provider: FakeProvider, session: aiohttp.ClientSession
) -> None:
    result = await smsru(provider, session).send(outbound(address="12"))
    assert isinstance(result, Failure)
    assert result.unreachable
    assert not result.retryable
    assert provider.requests == []


# --- callbacks --------------------------------------------------------------------


async def smsru_hook(sink: RecordingSink, api_id: str | None = None):  # type: ignore[no-untyped-def]
    app = web.Application()
    setup_sms_routes(
        app,
        provider="smsru",
        sink=sink,
        public_url="https://x",
        account="Shop",
        smsru_api_id=api_id,
    )
    return await webhook_client(app)


async def test_callback_records_become_signals_and_answer_is_100(sink: RecordingSink) -> None:
    form = {
        "data[0]": "sms_status\n000000-10000001\n103\n1700000000",
        "data[1]": "sms_status\n000000-10000002\n106\n1700000001",
        "data[2]": "sms_status\n000000-10000003\n102\n1700000002",
        "data[3]": "something_else\nx\ny",
    }
    client = await smsru_hook(sink)
    try:
        response = await client.post("/webhooks/sms/smsru", data=form)
        assert response.status == 200
        assert await response.text() == "100"
        again = await client.post("/webhooks/sms/smsru", data=form)
        assert await again.text() == "100"
    finally:
        await client.close()
    assert [(s.kind, s.external_id) for s in sink.signals] == [
        ("delivered", "000000-10000001"),
        ("failed", "000000-10000002"),
    ]
    assert sink.signals[0].at is not None
    assert sink.signals[0].at.timestamp() == 1700000000
    assert sink.signals[0].account == "Shop"


async def test_callback_hash_checked_when_api_id_given(sink: RecordingSink) -> None:
    record = "sms_status\n000000-10000001\n103\n1700000000"
    good = hashlib.sha256(("API-1" + record).encode()).hexdigest()
    client = await smsru_hook(sink, api_id="API-1")
    try:
        forged = await client.post("/webhooks/sms/smsru", data={"data[0]": record, "hash": "00"})
        assert forged.status == 403
        assert sink.untouched
        ok = await client.post("/webhooks/sms/smsru", data={"data[0]": record, "hash": good})
        assert await ok.text() == "100"
    finally:
        await client.close()
    assert [s.kind for s in sink.signals] == ["delivered"]

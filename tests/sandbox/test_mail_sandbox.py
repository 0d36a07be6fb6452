"""The sandbox's mail behaves like mail: chatgate's real SMTP adapter, receiver and parser agree.

chatgate's `EmailAdapter` relays through the sandbox server, which files each
message in the recipient's mailbox as a mail client shows it; what a person
writes back is a real RFC 5322 reply (In-Reply-To, References, quoted text) that
chatgate's own SMTP receiver accepts and its parser threads; one-click
unsubscribe is the RFC 8058 POST a mail provider makes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from aiohttp import web

from gateway.bridge.email import EmailAdapter, SmtpReceiver
from gateway.bridge.email.parsing import parse_message
from gateway.bridge.email.quotes import strip_reply
from gateway.channels import Failure, Outbound, Sent
from gateway.sandbox.mail import Mail, MailRefused, PostOffice
from gateway.sandbox.platforms import rebase
from tests.conftest import free_port
from tests.e2e.conftest import eventually

SHOP = "support@shop.example"
CUSTOMER = "maria@example.org"
PUBLIC = "https://shop.example"


@dataclass
class Mx:
    """What chatgate's receiver was handed."""

    received: list[tuple[bytes, list[str]]] = field(default_factory=list)

    async def handle(self, raw: bytes, *, envelope_to: list[str] | None = None) -> bool:
        self.received.append((raw, list(envelope_to or ())))
        return True


@dataclass
class World:
    office: PostOffice
    adapter: EmailAdapter
    mx: Mx
    base: str  # where the web server listens (the unsubscribe endpoint, the control API)
    unsubscribes: list[tuple[str, str, str]]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    mx = Mx()
    receiver = SmtpReceiver(
        mx, host="127.0.0.1", port=0, accept_domain="shop.example", accept_addresses=[SHOP]
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    office = PostOffice(
        shop_address=SHOP,
        shop_domain="shop.example",
        mx_host="127.0.0.1",
        mx_port=0,  # known once the receiver listens
        deliver_to=rebase(PUBLIC, base),
    )
    adapter = EmailAdapter(
        smtp_url=office.server.url,
        from_addr=f"Shop <{SHOP}>",
        domain="shop.example",
        verp_secret="secret",
        public_url=PUBLIC,
    )
    unsubscribes: list[tuple[str, str, str]] = []

    async def unsubscribe(request: web.Request) -> web.StreamResponse:
        body = (await request.read()).decode()
        unsubscribes.append((request.path, request.content_type, body))
        return web.Response(text="unsubscribed")

    app = web.Application()
    app.router.add_post("/unsubscribe/{token}", unsubscribe)
    app.add_subapp("/mail", office.app)
    runner = web.AppRunner(app, shutdown_timeout=1)
    try:
        await receiver.start()
        office.mx_port = receiver.port
        await office.start()
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield World(office, adapter, mx, base, unsubscribes)
    finally:
        await runner.cleanup()
        await office.aclose()
        await receiver.aclose()


async def _relay(world: World, *, reply_to: str = "reply+conv42@shop.example") -> Mail:
    """A message from the shop with a per-conversation Reply-To, relayed like chatgate's."""
    message = EmailMessage()
    message["From"] = f"Shop <{SHOP}>"
    message["To"] = CUSTOMER
    message["Reply-To"] = reply_to
    message["Subject"] = "Ваш вопрос о доставке"
    message["Message-ID"] = "<chatgate.11.x@shop.example>"
    message["In-Reply-To"] = "<q1@example.org>"
    message["References"] = "<q1@example.org>"
    message.set_content("Доставка занимает 2-3 дня.")
    await aiosmtplib.send(
        message,
        sender="bounce+11-sig@shop.example",
        hostname="127.0.0.1",
        port=world.office.server.port,
    )
    return world.office.mailboxes.of(CUSTOMER)[-1]


def _outbound(**kw: Any) -> Outbound:
    fields: dict[str, Any] = {
        "delivery_id": 11,
        "channel": "email",
        "account": SHOP,
        "address": CUSTOMER,
        "text": "Доставка занимает 2-3 дня.",
        "subject": "Ваш вопрос о доставке",
    }
    fields.update(kw)
    return Outbound(**fields)


async def test_chatgates_mail_is_filed_in_the_recipients_mailbox(world: World) -> None:
    html = '<p>Доставка занимает <b>2-3 дня</b>. <a href="https://shop.example/t/c/1">Трек</a></p>'
    result = await world.adapter.send(_outbound(html=html))
    assert isinstance(result, Sent)

    [mail] = world.office.mailboxes.of(CUSTOMER)
    assert mail.folder == "inbox"
    assert mail.sender == SHOP
    assert mail.recipients == [CUSTOMER]
    assert mail.subject == "Ваш вопрос о доставке"
    assert mail.message_id == result.external_id
    assert mail.answer_to == SHOP  # without a Reply-To, a reply goes to From
    assert mail.text.strip() == "Доставка занимает 2-3 дня."
    assert mail.html is not None
    assert 'href="https://shop.example/t/c/1"' in mail.html
    assert mail.envelope_from.startswith("bounce+11-")  # the VERP sender the relay saw
    assert mail.unsubscribe == []
    assert not mail.one_click
    assert ("Subject", "Ваш вопрос о доставке") in mail.headers
    assert world.office.mailboxes.of(SHOP) == []  # nothing else was filed


async def test_the_answer_threads_under_the_question(world: World) -> None:
    await world.adapter.send(_outbound(meta={"in_reply_to": "<q1@example.org>"}))
    [answer] = world.office.mailboxes.of(CUSTOMER)
    assert answer.in_reply_to == "<q1@example.org>"
    assert answer.references == ["<q1@example.org>"]


async def test_a_reply_threads_and_reaches_chatgates_receiver(world: World) -> None:
    answer = await _relay(world)
    assert (answer.reply_to, answer.envelope_from) == (
        "reply+conv42@shop.example",
        "bounce+11-sig@shop.example",
    )

    sent = await world.office.reply(answer.id, "А в Казань тоже?")

    assert sent.folder == "sent"
    assert world.office.mailboxes.of(CUSTOMER)[-1] is sent
    [(raw, rcpts)] = world.mx.received
    assert rcpts == ["reply+conv42@shop.example"]  # the Reply-To, not From
    parsed = parse_message(raw)
    assert parsed.subject == "Re: Ваш вопрос о доставке"
    assert parsed.in_reply_to == answer.message_id
    assert parsed.references == ("<q1@example.org>", answer.message_id)
    assert parsed.sender is not None
    assert parsed.sender.address == CUSTOMER
    assert parsed.message_id is not None
    assert parsed.message_id.endswith("@example.org>")
    # The reply quotes the answer under an attribution line; chatgate cuts it off.
    assert "> Доставка занимает 2-3 дня." in parsed.text
    assert strip_reply(parsed.text, own_addresses=[SHOP]).strip() == "А в Казань тоже?"


async def test_replying_twice_does_not_stack_re(world: World) -> None:
    await world.adapter.send(_outbound(subject="Re: Доставка"))
    [answer] = world.office.mailboxes.of(CUSTOMER)
    await world.office.reply(answer.id, "Спасибо")
    assert parse_message(world.mx.received[0][0]).subject == "Re: Доставка"


async def test_new_mail_goes_to_the_shop_and_is_kept_in_sent(world: World) -> None:
    sent = await world.office.write(CUSTOMER, "Сколько идёт доставка?", subject="Доставка")
    [(raw, rcpts)] = world.mx.received
    assert rcpts == [SHOP]
    parsed = parse_message(raw)
    assert (parsed.subject, parsed.text.strip()) == ("Доставка", "Сколько идёт доставка?")
    assert parsed.in_reply_to is None
    assert sent.folder == "sent"
    assert sent.message_id == parsed.message_id


async def test_chatgates_receiver_refusing_a_recipient_is_reported(world: World) -> None:
    with pytest.raises(MailRefused, match="550"):
        await world.office.write(CUSTOMER, "hello", to="sales@shop.example")
    assert world.mx.received == []
    assert world.office.mailboxes.of(CUSTOMER) == []  # nothing pretends it was sent


async def test_mail_to_another_sandbox_address_stays_in_the_sandbox(world: World) -> None:
    await world.office.write(CUSTOMER, "Привет", subject="hi", to="ivan@example.net")
    [mail] = world.office.mailboxes.of("ivan@example.net")
    assert (mail.folder, mail.sender, mail.text.strip()) == ("inbox", CUSTOMER, "Привет")
    assert world.mx.received == []


async def test_one_click_unsubscribe_is_the_rfc_8058_post(world: World) -> None:
    result = await world.adapter.send(_outbound(purpose="marketing"))
    assert isinstance(result, Sent)
    [promo] = world.office.mailboxes.of(CUSTOMER)
    assert promo.one_click
    assert promo.unsubscribe[0].startswith(f"{PUBLIC}/unsubscribe/11.")

    status = await world.office.unsubscribe(promo.id)

    assert status == 200
    [(path, content_type, body)] = world.unsubscribes
    assert path == promo.unsubscribe[0].removeprefix(PUBLIC)
    assert content_type == "application/x-www-form-urlencoded"
    assert body == "List-Unsubscribe=One-Click"


async def test_service_mail_offers_no_one_click(world: World) -> None:
    await world.adapter.send(_outbound())
    [mail] = world.office.mailboxes.of(CUSTOMER)
    with pytest.raises(ValueError, match="no one-click"):
        await world.office.unsubscribe(mail.id)
    assert world.unsubscribes == []


async def test_control_api_reads_writes_and_replies(world: World) -> None:
    await _relay(world)
    control = f"{world.base}/mail/control"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{control}/mailboxes/Maria@Example.org/messages") as r:
            box = await r.json()
        [mail] = box["items"]
        assert (mail["subject"], mail["answer_to"]) == (
            "Ваш вопрос о доставке",
            "reply+conv42@shop.example",
        )
        async with http.post(f"{control}/messages/{mail['id']}/reply", json={"text": "Ок"}) as r:
            assert r.status == 200
            assert (await r.json())["in_reply_to"] == mail["message_id"]
        async with http.post(f"{control}/messages/{mail['id']}/reply", json={"text": " "}) as r:
            assert r.status == 400
        async with http.post(f"{control}/messages/999/reply", json={"text": "x"}) as r:
            assert r.status == 404
        async with http.post(f"{control}/mailboxes/not-an-address/messages", json={}) as r:
            assert r.status == 400
        async with http.post(f"{control}/messages/{mail['id']}/unsubscribe") as r:
            assert r.status == 400
        async with http.get(f"{control}/messages/{mail['id']}/raw") as r:
            raw = await r.text()
        async with http.post(
            f"{control}/mailboxes/{CUSTOMER}/messages",
            json={"text": "x", "to": "sales@shop.example"},
        ) as r:
            assert r.status == 502
    assert "Message-ID: " + mail["message_id"] in raw
    await eventually(lambda: world.mx.received)
    assert len(world.mx.received) == 1


async def test_a_deleted_mailbox_is_a_hard_failure_that_marks_the_address(world: World) -> None:
    control = f"{world.base}/mail/control/mailboxes/{CUSTOMER}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{control}/state", json={"exists": False}) as r:
            assert r.status == 200
        result = await world.adapter.send(_outbound())
        async with http.get(f"{control}/messages") as r:
            box = await r.json()
        async with http.post(f"{control}/state", json={"exists": "no"}) as r:
            assert r.status == 400
        async with http.post(f"{control}/state", json={"exists": True}) as r:
            assert r.status == 200

    assert isinstance(result, Failure)
    assert not result.retryable
    assert result.unreachable  # 5.1.1: the address is dead, cascades skip it
    assert "5.1.1" in result.reason
    assert (box["exists"], box["items"]) == (False, [])
    assert isinstance(await world.adapter.send(_outbound()), Sent)

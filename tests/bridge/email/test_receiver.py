"""gateway/bridge/email/receiver.py + inbound.py: real SMTP in, Inbound/Signal out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest

from gateway.bridge.email.bounces import verp_address
from gateway.bridge.email.inbound import EmailEvents
from gateway.bridge.email.receiver import SmtpReceiver
from tests.fakes import RecordingSink

SECRET = "verp-test-secret"
ACCOUNT = "shop@shop.example"
CORPUS = Path(__file__).parent / "corpus"

REPLY = """\
From: Anna Petrova <Anna@Mail.Example>
To: reply+tok@shop.example
Subject: Re: Order 17
Message-ID: <{mid}>
In-Reply-To: <chatgate.42.Aa1Bb2Cc3Dd4@shop.example>
Content-Type: text/plain; charset=utf-8

Yes please, deliver on Friday.

On Mon, 23 Nov 2026 at 10:00, Shop <shop@shop.example> wrote:
> Your order has shipped.
"""

DSN = """\
From: MAILER-DAEMON@mx.mail.example (Mail Delivery System)
To: {verp}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-{status}-{verp}>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.mail.example

Final-Recipient: rfc822; gone@mail.example
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} user unknown

--B
Content-Type: text/rfc822-headers

From: shop@shop.example
To: gone@mail.example
Message-ID: <chatgate.42.Aa1Bb2Cc3Dd4@shop.example>

--B--
"""


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def receiver(sink: RecordingSink) -> AsyncIterator[SmtpReceiver]:
    events = EmailEvents(sink, ACCOUNT, domain="shop.example", verp_secret=SECRET)
    mx = SmtpReceiver(
        events,
        host="127.0.0.1",
        port=0,
        accept_domain="shop.example",
        accept_addresses=[ACCOUNT],
    )
    async with mx:
        yield mx


async def deliver(mx: SmtpReceiver, rcpts: list[str], raw: str | bytes, sender: str = "") -> None:
    data = raw.encode() if isinstance(raw, str) else raw
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=mx.port, local_hostname="client.test", timeout=5
    ) as client:
        await client.sendmail(sender, rcpts, data)


async def test_a_reply_becomes_an_inbound_with_its_token_and_stripped_text(
    receiver: SmtpReceiver, sink: RecordingSink
) -> None:
    raw = REPLY.format(mid="r1@mail.example")
    await deliver(receiver, ["reply+tok@shop.example"], raw, "anna@mail.example")

    [got] = sink.inbounds
    assert (got.channel, got.account, got.address) == ("email", ACCOUNT, "anna@mail.example")
    assert got.link_token == "tok"
    assert got.text == "Yes please, deliver on Friday."
    assert got.external_id == "<r1@mail.example>"
    assert got.name == "Anna Petrova"
    assert not got.auto_reply
    assert got.meta["subject"] == "Re: Order 17"
    assert got.meta["in_reply_to"] == "<chatgate.42.Aa1Bb2Cc3Dd4@shop.example>"
    assert "Your order has shipped." in got.meta["full_text"]
    assert sink.signals == []


async def test_relaying_is_refused_and_nothing_is_handed_over(
    receiver: SmtpReceiver, sink: RecordingSink
) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await deliver(receiver, ["someone@else.example"], REPLY.format(mid="r2@mail.example"))

    assert refused.value.recipients[0].code == 550
    assert sink.untouched


async def test_a_dsn_to_our_verp_address_signals_a_hard_bounce(
    receiver: SmtpReceiver, sink: RecordingSink
) -> None:
    verp = verp_address(42, "shop.example", SECRET)
    await deliver(receiver, [verp], DSN.format(verp=verp, status="5.1.1", action="failed"))

    [signal] = sink.signals
    assert (signal.kind, signal.channel, signal.account) == ("bounced", "email", ACCOUNT)
    assert (signal.delivery_id, signal.address, signal.detail) == (42, "gone@mail.example", "5.1.1")
    assert sink.reach == [("email", ACCOUNT, "gone@mail.example", False, "hard bounce 5.1.1")]
    assert sink.inbounds == []


async def test_a_soft_bounce_fails_the_delivery_but_keeps_the_address(
    receiver: SmtpReceiver, sink: RecordingSink
) -> None:
    verp = verp_address(43, "shop.example", SECRET)
    await deliver(receiver, [verp], DSN.format(verp=verp, status="5.2.2", action="failed"))

    [signal] = sink.signals
    assert (signal.kind, signal.delivery_id, signal.detail) == ("failed", 43, "5.2.2")
    assert sink.reach == []


async def test_a_forged_verp_address_signals_nothing(
    receiver: SmtpReceiver, sink: RecordingSink
) -> None:
    forged = "bounce+42-aaaaaaaaaaaaaaaa@shop.example"
    await deliver(receiver, [forged], DSN.format(verp=forged, status="5.1.1", action="failed"))

    assert sink.signals == []
    assert sink.reach == []
    assert sink.inbounds == []


async def test_the_same_message_id_is_handed_over_once(
    receiver: SmtpReceiver, sink: RecordingSink
) -> None:
    raw = REPLY.format(mid="twice@mail.example")
    await deliver(receiver, ["reply+tok@shop.example"], raw, "anna@mail.example")
    await deliver(receiver, ["reply+tok@shop.example"], raw, "anna@mail.example")

    assert [m.external_id for m in sink.inbounds] == ["<twice@mail.example>"]


async def test_a_failing_sink_answers_451_and_the_resend_is_handled(
    receiver: SmtpReceiver, sink: RecordingSink
) -> None:
    raw = REPLY.format(mid="retry@mail.example")
    sink.fail_inbounds = 1
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await deliver(receiver, ["reply+tok@shop.example"], raw, "anna@mail.example")
    assert refused.value.code == 451
    assert sink.inbounds == []

    await deliver(receiver, ["reply+tok@shop.example"], raw, "anna@mail.example")
    assert [m.external_id for m in sink.inbounds] == ["<retry@mail.example>"]


async def test_an_out_of_office_reply_is_stored_as_auto_reply(
    receiver: SmtpReceiver, sink: RecordingSink
) -> None:
    raw = (CORPUS / "out_of_office.eml").read_bytes()
    await deliver(receiver, ["reply+ooo1@shop.example"], raw, "m.sidorova@corp.test")

    [got] = sink.inbounds
    assert got.auto_reply
    assert got.link_token == "ooo1"
    assert got.address == "m.sidorova@corp.test"
    assert sink.signals == []


async def test_the_company_address_is_accepted_without_a_token(
    receiver: SmtpReceiver, sink: RecordingSink
) -> None:
    raw = REPLY.format(mid="direct@mail.example").replace("reply+tok@", "shop@")
    await deliver(receiver, [ACCOUNT.upper()], raw, "anna@mail.example")

    [got] = sink.inbounds
    assert got.link_token is None
    assert got.address == "anna@mail.example"

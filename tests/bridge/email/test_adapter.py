"""gateway/bridge/email/adapter.py: EmailAdapter against an in-process SMTP relay."""

from __future__ import annotations

import socket

import pytest

from gateway.bridge.email.adapter import (
    EmailAdapter,
    parse_smtp_url,
    parse_unsubscribe_token,
    smtp_failure,
    unsubscribe_token,
)
from gateway.bridge.email.bounces import parse_verp, verp_address
from gateway.bridge.email.headers import header_text
from gateway.bridge.email.parsing import parse_message
from gateway.bridge.email.replies import ReplyTokens
from gateway.bridge.email.threads import OutgoingThread
from gateway.channels import Failure, Outbound, Sent
from tests.fakes import FakeRelay

SECRET = "verp-test-secret"
PARENT = "<chatgate.1.Aa1Bb2Cc3Dd4@shop.example>"


class Conversation42:
    """Every delivery belongs to conversation 42 (the store's answer is tested in test_threads)."""

    async def outgoing(self, delivery_id: int) -> OutgoingThread | None:
        return OutgoingThread(conversation_id=42)


class StoreDown:
    async def outgoing(self, delivery_id: int) -> OutgoingThread | None:
        raise RuntimeError("store down")


def adapter(port: int, **changes: object) -> EmailAdapter:
    kwargs: dict[str, object] = {
        "smtp_url": f"smtp://127.0.0.1:{port}",
        "from_addr": "Shop <shop@shop.example>",
        "domain": "shop.example",
        "verp_secret": SECRET,
        "public_url": "https://chat.shop.example/",
        "threads": Conversation42(),
        "timeout": 5.0,
        **changes,
    }
    return EmailAdapter(**kwargs)  # type: ignore[arg-type]


def outbound(**changes: object) -> Outbound:
    fields: dict[str, object] = {
        "delivery_id": 42,
        "channel": "email",
        "account": "shop@shop.example",
        "address": "Customer@Mail.Example",
        "text": "Your order has shipped.",
        "html": "<p>Your order has <b>shipped</b>.</p>",
        "subject": "Order 17",
        **changes,
    }
    return Outbound(**fields)  # type: ignore[arg-type]


async def test_service_mail_reaches_the_relay_with_verp_sender_and_threading(
    relay: FakeRelay,
) -> None:
    email = adapter(relay.port)
    meta = {"in_reply_to": PARENT, "references": [PARENT]}
    result = await email.send(outbound(meta=meta))
    await email.aclose()

    assert isinstance(result, Sent)
    assert email.account == "shop@shop.example"
    [got] = relay.received
    assert got.mail_from == verp_address(42, "shop.example", SECRET)
    assert parse_verp(got.mail_from, SECRET) == 42
    assert got.rcpt_tos == ["customer@mail.example"]
    mail = parse_message(got.content)
    assert mail.message_id == result.external_id
    assert mail.message.get_content_type() == "multipart/alternative"
    assert mail.in_reply_to == PARENT
    assert mail.references == (PARENT,)
    token = ReplyTokens(SECRET).issue(42)
    assert [a.address for a in mail.reply_to] == [f"reply+{token}@shop.example"]
    assert header_text(mail.message, "List-Unsubscribe") is None
    assert header_text(mail.message, "List-Unsubscribe-Post") is None


async def test_marketing_mail_has_one_click_unsubscribe(relay: FakeRelay) -> None:
    email = adapter(relay.port, threads=None)
    result = await email.send(outbound(delivery_id=7, purpose="marketing"))

    assert isinstance(result, Sent)
    mail = parse_message(relay.received[0].content)
    target = header_text(mail.message, "List-Unsubscribe")
    assert target == f"<https://chat.shop.example/unsubscribe/{unsubscribe_token(7, SECRET)}>"
    assert header_text(mail.message, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert parse_unsubscribe_token(target.strip("<>").rsplit("/", 1)[1], SECRET) == 7
    assert not mail.reply_to


@pytest.mark.parametrize(
    ("reply", "unreachable"),
    [
        ("550 5.1.1 <customer@mail.example>: user unknown", True),
        ("550 mailbox unavailable", True),
        ("552 5.2.2 mailbox full", False),
        ("550 5.7.1 message refused as spam", False),
    ],
)
async def test_permanent_rcpt_refusal_is_final(
    relay: FakeRelay, reply: str, unreachable: bool
) -> None:
    relay.rcpt_reply = reply
    result = await adapter(relay.port).send(outbound())

    assert isinstance(result, Failure)
    assert not result.retryable
    assert result.unreachable is unreachable
    assert reply.split()[0] in result.reason
    assert relay.received == []


async def test_temporary_rcpt_refusal_is_retryable(relay: FakeRelay) -> None:
    relay.rcpt_reply = "451 4.7.1 greylisted, try again later"
    result = await adapter(relay.port).send(outbound())

    assert isinstance(result, Failure)
    assert result.retryable
    assert not result.unreachable
    assert relay.received == []


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await adapter(port).send(outbound())

    assert isinstance(result, Failure)
    assert result.retryable
    assert not result.unreachable


async def test_malformed_address_is_unreachable_without_connecting(relay: FakeRelay) -> None:
    result = await adapter(relay.port).send(outbound(address="not an address"))

    assert isinstance(result, Failure)
    assert (result.retryable, result.unreachable) == (False, True)
    assert relay.received == []


async def test_marketing_without_https_public_url_fails_final(relay: FakeRelay) -> None:
    email = adapter(relay.port, public_url="http://shop.example:8080")
    result = await email.send(outbound(purpose="marketing"))

    assert isinstance(result, Failure)
    assert not result.retryable
    assert relay.received == []


async def test_a_failing_thread_lookup_is_retried_later(relay: FakeRelay) -> None:
    result = await adapter(relay.port, threads=StoreDown()).send(outbound())

    assert isinstance(result, Failure)
    assert result.retryable
    assert "store down" in result.reason
    assert relay.received == []


def test_unsubscribe_token_rejects_forgeries() -> None:
    token = unsubscribe_token(42, SECRET)
    assert parse_unsubscribe_token(token, SECRET) == 42
    assert parse_unsubscribe_token(token, "other-secret") is None
    assert parse_unsubscribe_token(token.replace("42.", "43.", 1), SECRET) is None
    assert parse_unsubscribe_token("42", SECRET) is None
    # The VERP signature of the same delivery does not pass as an unsubscribe token.
    verp_sig = verp_address(42, "shop.example", SECRET).split("-", 1)[1].split("@")[0]
    assert parse_unsubscribe_token(f"42.{verp_sig}", SECRET) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mx.test", ("mx.test", 25, False, None, None, None)),
        ("smtp+starttls://u%40x:p%3As@mx.test", ("mx.test", 587, False, True, "u@x", "p:s")),
        ("smtps://u:p@mx.test:2465", ("mx.test", 2465, True, False, "u", "p")),
    ],
)
def test_parse_smtp_url(url: str, expected: tuple[object, ...]) -> None:
    relay = parse_smtp_url(url)
    got = (relay.host, relay.port, relay.use_tls, relay.start_tls, relay.username, relay.password)
    assert got == expected


@pytest.mark.parametrize("url", ["http://mx.test", "smtp://", "smtp://mx.test:port"])
def test_parse_smtp_url_refuses_malformed(url: str) -> None:
    with pytest.raises(ValueError, match="smtp url"):
        parse_smtp_url(url)


def test_unknown_errors_become_final_failures() -> None:
    failure = smtp_failure(KeyError("boom"))
    assert (failure.retryable, failure.unreachable) == (False, False)

"""gateway/bridge/email/compose.py: compose -> bytes -> parse round trips."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.bridge.email.bounces import delivery_from_message_id
from gateway.bridge.email.compose import compose, make_message_id, reply_address, reply_token
from gateway.bridge.email.headers import header_text
from gateway.bridge.email.parsing import parse_message
from gateway.channels import Outbound

FIRST = "<chatgate.1.Aa1Bb2Cc3Dd4@shop.test>"


def outbound(**changes: object) -> Outbound:
    fields: dict[str, object] = {
        "delivery_id": 42,
        "channel": "email",
        "account": "shop",
        "address": "Иван Петров <ivan@example.test>",
        "text": "Ваш заказ №1042 готов.",
        "html": "<p>Ваш заказ <b>№1042</b> готов.</p>",
        "subject": "Заказ №1042 — готов",
    }
    fields.update(changes)
    return Outbound(**fields)  # type: ignore[arg-type]


def test_round_trip_threading_and_alternative() -> None:
    msg = compose(
        outbound(),
        from_addr='"Магазин «Ромашка»" <shop@shop.test>',
        reply_to="abc123",
        domain="shop.test",
        in_reply_to=FIRST,
        references=[FIRST],
        date=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    )
    raw = msg.as_bytes()
    assert raw.isascii()  # encoded words and quoted-printable: no 8BITMIME needed
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    mail = parse_message(raw)
    assert mail.sender is not None
    assert (mail.sender.address, mail.sender.name) == ("shop@shop.test", "Магазин «Ромашка»")
    assert mail.to[0].name == "Иван Петров"
    assert mail.subject == "Заказ №1042 — готов"
    assert mail.text == "Ваш заказ №1042 готов."
    assert mail.html is not None
    assert "<b>№1042</b>" in mail.html
    assert mail.in_reply_to == FIRST
    assert mail.references == (FIRST,)
    assert mail.reply_to[0].address == "reply+abc123@shop.test"
    assert mail.message_id is not None
    assert delivery_from_message_id(mail.message_id) == 42
    assert mail.message["X-Chatgate-Delivery"] == "42"
    assert mail.date == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert "List-Unsubscribe" not in mail.message
    assert "Auto-Submitted" not in mail.message


def test_marketing_mail_has_one_click_unsubscribe() -> None:
    msg = compose(
        outbound(purpose="marketing"),
        from_addr="shop@shop.test",
        reply_to=None,
        domain="shop.test",
        list_unsubscribe_url="https://shop.test/u/tok123",
        list_unsubscribe_mailto="unsub+tok123@shop.test",
        marketing=True,
    )
    mail = parse_message(msg.as_bytes())
    assert header_text(mail.message, "List-Unsubscribe") == (
        "<https://shop.test/u/tok123>, <mailto:unsub+tok123@shop.test>"
    )
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert mail.reply_to == ()
    assert mail.in_reply_to is None


def test_the_sandbox_may_unsubscribe_over_plain_http_on_this_machine() -> None:
    msg = compose(
        outbound(),
        from_addr="shop@shop.test",
        reply_to=None,
        domain="shop.test",
        list_unsubscribe_url="http://127.0.0.1:8080/u/tok",
        marketing=True,
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize(
    "url", [None, "http://shop.test/u/tok", "http://127.0.0.1.shop.test/u/tok", "ftp://127.0.0.1/u"]
)
def test_marketing_mail_without_https_unsubscribe_is_refused(url: str | None) -> None:
    with pytest.raises(ValueError, match="unsubscribe"):
        compose(
            outbound(),
            from_addr="shop@shop.test",
            reply_to=None,
            domain="shop.test",
            list_unsubscribe_url=url,
            marketing=True,
        )
    with pytest.raises(ValueError, match="unsubscribe"):
        compose(outbound(purpose="marketing"), from_addr="shop@shop.test", reply_to=None,
                domain="shop.test", list_unsubscribe_url=url)  # fmt: skip


def test_html_only_outbound_gets_a_text_part() -> None:
    msg = compose(
        outbound(text="", html="<h1>Скидка</h1><p>Только<br>сегодня</p><style>p{}</style>"),
        from_addr="shop@shop.test",
        reply_to="t1",
        domain="shop.test",
    )
    mail = parse_message(msg.as_bytes())
    assert mail.text == "Скидка\n\nТолько\nсегодня"
    assert mail.html is not None


def test_text_only_outbound_is_single_part() -> None:
    msg = compose(outbound(html=None), from_addr="shop@shop.test", reply_to="t1",
                  domain="shop.test")  # fmt: skip
    assert msg.get_content_type() == "text/plain"
    assert parse_message(msg.as_bytes()).text == "Ваш заказ №1042 готов."


def test_references_chain_grows_and_is_capped() -> None:
    chain = [f"<m{i}@shop.test>" for i in range(30)]
    msg = compose(outbound(), from_addr="shop@shop.test", reply_to=None, domain="shop.test",
                  in_reply_to="<parent@x.test>", references=chain)  # fmt: skip
    mail = parse_message(msg.as_bytes())
    assert mail.in_reply_to == "<parent@x.test>"
    assert mail.references[0] == "<m0@shop.test>"
    assert mail.references[-1] == "<parent@x.test>"
    assert len(mail.references) == 20


def test_header_injection_is_neutralised() -> None:
    msg = compose(outbound(subject="Hi\r\nBcc: victim@example.test"), from_addr="shop@shop.test",
                  reply_to=None, domain="shop.test")  # fmt: skip
    mail = parse_message(msg.as_bytes())
    assert "Bcc" not in mail.message
    assert mail.subject == "Hi Bcc: victim@example.test"


def test_empty_outbound_is_refused() -> None:
    with pytest.raises(ValueError, match="neither"):
        compose(outbound(text=" ", html=None), from_addr="shop@shop.test", reply_to=None,
                domain="shop.test")  # fmt: skip


def test_message_ids_are_unique_and_ours() -> None:
    first, second = make_message_id(7, "Shop.Test"), make_message_id(7, "shop.test")
    assert first != second
    assert first.endswith("@shop.test>")
    assert delivery_from_message_id(first) == 7


@pytest.mark.parametrize(
    ("address", "domain", "token"),
    [
        ("reply+abc123@shop.test", None, "abc123"),
        ("Reply+ABC123@Shop.Test", "shop.test", "abc123"),
        ('"Магазин" <reply+abc123@shop.test>', "shop.test", "abc123"),
        ("<reply+abc123@shop.test>", None, "abc123"),
        ("reply+abc123@other.test", "shop.test", None),
        ("reply@shop.test", None, None),
        ("noreply+abc@shop.test", None, None),
        ("reply+bad!token@shop.test", None, None),
        ("ivan@example.test", None, None),
    ],
)
def test_reply_token(address: str, domain: str | None, token: str | None) -> None:
    assert reply_token(address, domain) == token


def test_reply_address_round_trip_and_validation() -> None:
    assert reply_token(reply_address("k7x2m9", "Shop.Test"), "shop.test") == "k7x2m9"
    with pytest.raises(ValueError, match="token"):
        reply_address("Bad Token", "shop.test")

"""gateway/bridge/email/bounces.py: RFC 3464 reports, prose bounces, VERP."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.bridge.email.bounces import (
    delivery_from_message_id,
    parse_bounce,
    parse_verp,
    verp_address,
)
from gateway.bridge.email.parsing import parse_message

CORPUS = Path(__file__).parent / "corpus"
SECRET = b"test-secret"


def bounce_of(name: str):  # type: ignore[no-untyped-def]
    return parse_bounce(parse_message((CORPUS / name).read_bytes()))


# file, standard, recipient, status, hard, delivery id, original Message-ID
EXPECTED = [
    ("postfix_dsn.eml", True, "gone@example.test", "5.1.1", True, 42,
     "<chatgate.42.Qx7bT2mW9aLp@shop.test>"),
    ("gmail_dsn.eml", True, "no.such.user@gmail.com", "5.1.1", True, 44,
     "<chatgate.44.Ii9Jj0Kk1Ll2@shop.test>"),
    ("soft_bounce_422.eml", True, "full@example.test", "4.2.2", False, 45,
     "<chatgate.45.Mm3Nn4Oo5Pp6@shop.test>"),
    ("exim_bounce.eml", False, "nobody@example.org", "5.1.1", True, 43,
     "<chatgate.43.Ee5Ff6Gg7Hh8@shop.test>"),
    ("qmail_bounce.eml", False, "olduser@example.net", "5.1.1", True, 46,
     "<chatgate.46.Qq7Rr8Ss9Tt0@shop.test>"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "standard", "address", "status", "hard", "delivery_id", "message_id"), EXPECTED
)
def test_corpus_bounces(
    name: str,
    standard: bool,
    address: str,
    status: str,
    hard: bool,
    delivery_id: int,
    message_id: str,
) -> None:
    bounce = bounce_of(name)
    assert bounce is not None
    assert bounce.standard is standard
    (recipient,) = bounce.recipients
    assert recipient.address == address
    assert recipient.status == status
    assert recipient.hard is hard
    assert recipient.soft is not hard
    assert bounce.hard is hard
    assert bounce.failed == (recipient,)
    assert bounce.delivery_id == delivery_id
    assert bounce.original_message_id == message_id


def test_dsn_details() -> None:
    bounce = bounce_of("postfix_dsn.eml")
    assert bounce is not None
    assert bounce.reporting_mta == "mx.shop.test"
    (recipient,) = bounce.recipients
    assert recipient.action == "failed"
    assert recipient.original == "gone@example.test"
    assert recipient.diagnostic is not None
    assert "User unknown" in recipient.diagnostic
    assert parse_verp(parse_message((CORPUS / "postfix_dsn.eml").read_bytes()).to[0].address,
                      SECRET) == 42  # fmt: skip


@pytest.mark.parametrize(
    "name",
    [
        "gmail_ru_reply.eml",
        "out_of_office.eml",
        "html_only_newsletter.eml",
        "no_content_type.eml",
        "forward_nested.eml",
    ],
)
def test_ordinary_mail_is_not_a_bounce(name: str) -> None:
    assert bounce_of(name) is None


def test_multiple_recipients_in_one_report() -> None:
    raw = b"""From: MAILER-DAEMON@mx.test
To: bounce+1-aaaaaaaaaaaaaaaa@shop.test
Subject: Delivery report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

report
--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.test

Final-Recipient: rfc822; gone@example.test
Action: failed
Status: 5.1.1

Final-Recipient: rfc822; full@example.test
Action: delayed
Status: 4.2.2

Final-Recipient: rfc822; ok@example.test
Action: delivered
Status: 2.0.0
--b--
"""
    bounce = parse_bounce(raw)
    assert bounce is not None
    assert [(r.address, r.hard, r.soft) for r in bounce.recipients] == [
        ("gone@example.test", True, False),
        ("full@example.test", False, True),
        ("ok@example.test", False, False),
    ]
    assert [r.address for r in bounce.failed] == ["gone@example.test", "full@example.test"]
    assert bounce.delivery_id is None


def test_exchange_prose_bounce() -> None:
    raw = b"""From: postmaster@corp.test
To: bounce+9-aaaaaaaaaaaaaaaa@shop.test
Subject: Undeliverable: Your order
Return-Path: <>

Delivery has failed to these recipients or groups:

left.company@corp.test
The email address you entered couldn't be found.

Diagnostic information for administrators:

Generating server: EX01.corp.test

left.company@corp.test
Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found'

Original message headers:

Message-ID: <chatgate.9.Abc_def-123@shop.test>
"""
    bounce = parse_bounce(raw)
    assert bounce is not None
    (recipient,) = bounce.recipients
    assert recipient.address == "left.company@corp.test"
    assert recipient.status == "5.1.10"
    assert recipient.hard
    assert bounce.delivery_id == 9


def test_verp_round_trip() -> None:
    address = verp_address(42, "Shop.Test", SECRET)
    assert address.startswith("bounce+42-")
    assert address.endswith("@shop.test")
    assert parse_verp(address, SECRET) == 42
    assert parse_verp(address.upper(), SECRET) == 42  # local parts may be case-folded
    assert parse_verp(f"<{address}>", SECRET) == 42
    assert parse_verp(address, "test-secret") == 42  # str and bytes secrets agree


def test_verp_forgery_is_refused() -> None:
    mine = verp_address(42, "shop.test", SECRET)
    signature = mine.split("-", 1)[1].split("@")[0]
    assert parse_verp(f"bounce+43-{signature}@shop.test", SECRET) is None  # someone else's id
    assert parse_verp(mine, b"another-secret") is None
    tampered = mine.replace(signature, ("b" if signature[0] != "b" else "c") + signature[1:])
    assert parse_verp(tampered, SECRET) is None
    assert parse_verp("bounce+42@shop.test", SECRET) is None
    assert parse_verp("reply+42-abc@shop.test", SECRET) is None
    assert parse_verp("bounce+42-aaaaaaaaaaaaaaaa@shop.test", SECRET) is None


def test_verp_rejects_empty_secret_and_negative_ids() -> None:
    with pytest.raises(ValueError, match="secret"):
        verp_address(1, "shop.test", b"")
    with pytest.raises(ValueError, match="negative"):
        verp_address(-1, "shop.test", SECRET)


@pytest.mark.parametrize(
    ("message_id", "delivery_id"),
    [
        ("<chatgate.42.Qx7bT2mW9aLp@shop.test>", 42),
        ("<chatgate.x.Qx7b@shop.test>", None),
        ("<CAF7k2Yv3d@mail.gmail.com>", None),
        (None, None),
    ],
)
def test_delivery_from_message_id(message_id: str | None, delivery_id: int | None) -> None:
    assert delivery_from_message_id(message_id) == delivery_id

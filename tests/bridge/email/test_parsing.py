"""gateway/bridge/email/parsing.py against a corpus of real-world-shaped mail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.bridge.email.charsets import decode_bytes
from gateway.bridge.email.html_text import html_to_text
from gateway.bridge.email.parsing import parse_message

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.eml"))
MSK = timezone(timedelta(hours=3))


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_corpus_is_there() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_corpus_file_parses(path: Path) -> None:
    mail = parse_message(path.read_bytes())
    assert mail.sender is not None
    assert "@" in mail.sender.address
    assert mail.message_id is not None
    assert mail.date is not None
    assert mail.date.tzinfo is not None
    assert mail.text.strip()
    assert "\ufffd" not in mail.text
    assert "\ufffd" not in mail.subject
    assert "=?" not in mail.subject


# file, sender address, sender name, subject, start of text, in_reply_to
EXPECTED = [
    ("gmail_ru_reply.eml", "ivan.petrov@gmail.com", "Иван Петров", "Re: Ваш заказ №1042",
     "Добрый день! Да, доставку на завтра подтверждаю.", "<chatgate.42.Qx7bT2mW9aLp@shop.test>"),
    ("outlook_cp1251.eml", "a.smirnova@vector.test", "Анна Смирнова", "RE: Счёт на оплату №77",
     "Здравствуйте.\nОплату провели сегодня", "<chatgate.77.Zr4tY8uI0oPa@shop.test>"),
    ("apple_mail_reply.eml", "john.doe@icloud.com", "John Doe", "Re: Your order #1042",
     "Yes, please deliver tomorrow after 6 pm.", "<chatgate.42.Qx7bT2mW9aLp@shop.test>"),
    ("thunderbird_koi8r.eml", "sergey@yandex.test", "Сергей Иванов", "Re: синий или чёрный?",
     "Добрый вечер. Размер M подойдёт, но хотелось бы синий цвет, если он есть в наличии.",
     "<chatgate.51.Aa1Bb2Cc3Dd4@shop.test>"),
    ("yandex_reply.eml", "p.kuznetsov@yandex.ru", "Павел Кузнецов", "Re: Оцените покупку",
     "Спасибо, получил.", "<chatgate.60.Yy1Zz2Xx3Ww4@shop.test>"),
    ("mailru_reply.eml", "olga.ivanova@mail.ru", "Ольга Иванова", "Re: Заказ в пункте выдачи",
     "Хорошо, заберу из пункта выдачи в среду.", "<chatgate.61.Mm1Nn2Oo3Pp4@shop.test>"),
    ("iso2022jp.eml", "tanaka@example.jp", "田中", "注文 #1042",
     "お世話になっております。\n注文の件、了解しました。", None),
    ("html_only_newsletter.eml", "news@coffee.test", "Coffee Club", "Новинки недели",
     "Новинки недели\n\nПривет! Вот что нового в магазине:", None),
    ("no_content_type.eml", "backup@legacy.test", None, "nightly export",
     "Export finished: 1042 orders, 0 errors.", None),
    ("pdf_rfc2231.eml", "ivan@example.test", "Ivan Petrov", "Счёт", "Счёт во вложении.", None),
    ("mislabelled_charset.eml", "petr@oldmail.test", "Петр", "Re: order",
     "Привет, когда будет доставка?", None),
    ("unknown_charset.eml", "gleb@example.test", "Глеб", "Вопрос по заказу",
     "Можно оплатить картой при получении?", None),
    ("8bit_no_charset.eml", "kassa@shop-old.test", None, "Чек №55", "Оплата получена.", None),
    ("forward_nested.eml", "ivan@example.test", "Ivan Petrov", "Fwd: Доставка отложена",
     "Смотрите, что пишет курьер.", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "address", "display", "subject", "text", "parent"), EXPECTED, ids=lambda v: str(v)
)
def test_corpus_fields(
    name: str, address: str, display: str | None, subject: str, text: str, parent: str | None
) -> None:
    mail = parse_message(load(name))
    assert mail.sender is not None
    assert mail.sender.address == address
    assert mail.sender.name == display
    assert mail.subject == subject
    assert mail.text.startswith(text)
    assert mail.in_reply_to == parent
    if parent is not None:
        assert mail.references[-1] == parent
        assert mail.thread_ids[0] == parent
    assert not mail.auto_reply or name == "html_only_newsletter.eml"
    assert not mail.bounce


def test_gmail_reply_recipients_and_date() -> None:
    mail = parse_message(load("gmail_ru_reply.eml"))
    assert mail.delivered_to == ("reply+abc123@shop.test",)
    assert mail.to[0].name == "Магазин Ромашка"
    assert mail.recipients == ("reply+abc123@shop.test",)
    assert mail.date == datetime(2026, 11, 23, 10, 15, 42, tzinfo=MSK)
    assert mail.html is not None
    assert "gmail_quote" in mail.html
    assert mail.return_path == "ivan.petrov@gmail.com"


def test_format_flowed_is_joined() -> None:
    mail = parse_message(load("thunderbird_koi8r.eml"))
    assert "если он есть в наличии." in mail.text.splitlines()[0]


def test_html_only_mail_becomes_readable_text() -> None:
    mail = parse_message(load("html_only_newsletter.eml"))
    assert mail.auto_reply  # Precedence: bulk is not a person writing
    assert "track" not in mail.text
    assert "font-family" not in mail.text
    assert "Weekly digest" not in mail.text  # <title> is not content
    assert "- Кофе «Эфиопия» — 450 ₽\n- Чай улун & мёд" in mail.text
    assert "Первая строка\nВторая строка" in mail.text
    assert mail.html is not None
    assert mail.html.startswith("<!DOCTYPE html>")


def test_rfc2231_filename_and_bytes() -> None:
    mail = parse_message(load("pdf_rfc2231.eml"))
    (pdf,) = mail.attachments
    assert pdf.filename == "Счёт № 12.pdf"
    assert pdf.content_type == "application/pdf"
    assert pdf.data.startswith(b"%PDF-1.4")
    assert pdf.size == len(pdf.data)
    assert not pdf.inline


def test_nested_multiparts_and_forwarded_message() -> None:
    mail = parse_message(load("forward_nested.eml"))
    assert mail.text == "Смотрите, что пишет курьер."  # the forwarded text stays in its file
    assert mail.html is not None
    assert "cid:logo@local" in mail.html
    image, forwarded = mail.attachments
    assert (image.content_type, image.content_id, image.inline) == ("image/png", "logo@local", True)
    assert image.data.startswith(b"\x89PNG")
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.filename == "Доставка отложена.eml"
    inner = parse_message(forwarded.data)
    assert inner.sender is not None
    assert inner.sender.address == "noreply@courier.test"
    assert inner.text == "Доставка отложена на сутки."


def test_out_of_office_is_an_auto_reply() -> None:
    mail = parse_message(load("out_of_office.eml"))
    assert mail.auto_reply
    assert not mail.bounce
    assert mail.in_reply_to == "<chatgate.88.Oo0Pp1Qq2Rr3@shop.test>"


@pytest.mark.parametrize(
    ("headers", "auto"),
    [
        ("Auto-Submitted: no\n", False),
        ("Auto-Submitted: auto-generated\n", True),
        ("Precedence: junk\n", True),
        ("Precedence: first-class\n", False),
        ("X-Autorespond: yes\n", True),
        ("Subject: Out of Office: your order\n", True),
        ("Subject: Automatic reply: order\n", True),
        ("Subject: Автоответ: заказ\n", True),
        ("Subject: Re: out of stock?\n", False),
    ],
)
def test_auto_reply_detection(headers: str, auto: bool) -> None:
    raw = f"From: a@example.test\nTo: b@example.test\n{headers}\nhello\n".encode()
    assert parse_message(raw).auto_reply is auto


def test_broken_mail_does_not_raise() -> None:
    raw = (
        b"From: =?utf-8?B?broken\nSubject: =?nonsense?Q?=ZZ?=\n"
        b'Content-Type: multipart/mixed; boundary="nope"\n'
        b"Content-Transfer-Encoding: base64\nDate: yesterday\n\n\xff\xfe garbage ===\n"
    )
    mail = parse_message(raw)
    assert mail.date is None
    assert mail.message_id is None


def test_parse_message_wants_bytes() -> None:
    with pytest.raises(TypeError):
        parse_message("From: a@b\n\nx")  # type: ignore[arg-type]


def test_naive_date_is_taken_as_utc() -> None:
    raw = b"From: a@example.test\nDate: 25 Nov 2026 03:00:01 -0000\n\nx\n"
    assert parse_message(raw).date == datetime(2026, 11, 25, 3, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "label", "text"),
    [
        ("привет".encode("koi8-r"), "koi8-r", "привет"),
        ("привет".encode("iso-8859-5"), "ISO-8859-5", "привет"),
        ("привет".encode(), "us-ascii", "привет"),  # mislabelled UTF-8
        ("café".encode(), "iso-8859-1", "café"),
        ("café".encode("latin-1"), "iso-8859-1", "café"),
        ("привет".encode("cp1251"), "utf-8", "привет"),  # mislabelled cp1251
        ("привет".encode(), "x-no-such-charset", "привет"),
        ("привет".encode("cp1251"), None, "привет"),
        ("привет".encode("cp1251"), "utf8mb4", "привет"),
    ],
)
def test_decode_bytes_falls_back(data: bytes, label: str | None, text: str) -> None:
    assert decode_bytes(data, label) == text


def test_html_to_text_blockquote_and_pre() -> None:
    html = "<p>Ok</p><blockquote><p>old</p><p>older</p></blockquote><pre>a  b\nc</pre>"
    assert html_to_text(html) == "Ok\n\n> old\n>\n> older\n\na  b\nc"

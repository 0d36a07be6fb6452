"""gateway/bridge/email/quotes.py: attribution lines, quotes, signatures, footers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.bridge.email.parsing import parse_message
from gateway.bridge.email.quotes import strip_reply

CORPUS = Path(__file__).parent / "corpus"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gmail_ru_reply.eml", "Добрый день! Да, доставку на завтра подтверждаю."),
        (
            "outlook_cp1251.eml",
            "Здравствуйте.\nОплату провели сегодня, платёжку прикладываю позже.\n\n"
            'С уважением,\nАнна Смирнова\nООО "Вектор"',
        ),
        (
            "apple_mail_reply.eml",
            "Yes, please deliver tomorrow after 6 pm. The code for the gate is 1234.",
        ),
        (
            "thunderbird_koi8r.eml",
            "Добрый вечер. Размер M подойдёт, но хотелось бы синий цвет, если он есть в наличии.",
        ),
        ("yandex_reply.eml", "Спасибо, получил. Всё отлично!"),
        ("mailru_reply.eml", "Хорошо, заберу из пункта выдачи в среду."),
        ("iso2022jp.eml", "お世話になっております。\n注文の件、了解しました。\n\n田中"),
        ("out_of_office.eml", "Я в отпуске до 1 декабря. По срочным вопросам пишите коллеге."),
    ],
)
def test_corpus_replies_are_stripped(name: str, expected: str) -> None:
    assert strip_reply(parse_message((CORPUS / name).read_bytes()).text) == expected


def test_html_only_reply_is_stripped_through_blockquote() -> None:
    raw = (CORPUS / "yandex_reply.eml").read_bytes()
    mail = parse_message(raw)
    assert mail.html is not None
    from gateway.bridge.email.html_text import html_to_text

    assert strip_reply(html_to_text(mail.html)) == "Спасибо, получил. Всё отлично!"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thanks, works now!\n\nOn Mon, Nov 23, 2026 at 10:00 AM Shop <\nreply+abc@shop.test> "
         "wrote:\n\n> Hello\n> there\n", "Thanks, works now!"),
        ("Ok\n\nOn 23/11/2026 10:00, Shop wrote:\n> Hi\n", "Ok"),
        ("Ок\n\n23 нояб. 2026 г., в 10:00, Магазин <reply+abc@shop.test> написал(а):\n\n> Привет\n",
         "Ок"),
        ("Да\n\nИван Петров написал 23.11.2026 в 10:00:\n> Привет\n", "Да"),
        ("Принято\n\n-----Исходное сообщение-----\nОт: Магазин\nОтправлено: 23 ноября 2026 г.\n"
         "Тема: Заказ\n\nТекст\n", "Принято"),
        ("Sure\n\n________________________________\nFrom: Shop <reply+a@shop.test>\n"
         "Sent: Monday, November 23, 2026 10:00\nTo: me\n\nOld text\n", "Sure"),
        ("Да\n\nОт: Магазин <reply+a@shop.test>\nОтправлено: 23 ноября 2026 г. 10:00\n"
         "Кому: Иван\nТема: Заказ\n\nСтарый текст\n", "Да"),
        ("Yes\n\nSent from my iPad", "Yes"),
        ("Да\n\nОтправлено с iPhone", "Да"),
        ("Да\n\nОтправлено из мобильной Почты Mail.ru", "Да"),
        ("Hello\n\n-- \nJohn Doe\nACME Inc.\n+1 555 0100\n", "Hello"),
        ("Answer one\n> question two?\nAnswer two\n", "Answer one\nAnswer two"),
    ],
)  # fmt: skip
def test_attribution_styles(text: str, expected: str) -> None:
    assert strip_reply(text) == expected


def test_own_address_cuts_an_unknown_attribution_style() -> None:
    text = "Ок\n\nКогда-то давно reply+abc@shop.test сообщил:\nстарое без кавычек\n"
    assert strip_reply(text) == text.strip()
    assert strip_reply(text, own_addresses=["reply+abc@shop.test"]) == "Ок"


@pytest.mark.parametrize(
    "text",
    [
        "> everything is quoted\n> here",
        "On Mon, Nov 23, 2026 at 10:00 AM Shop <a@b.test> wrote:\n> x",
        "-- \nonly a signature",
        "Sent from my iPhone",
    ],
)
def test_never_strips_everything(text: str) -> None:
    assert strip_reply(text) == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "Here is what I wrote:\nmy own text",  # "wrote:" without date or address
        "Please call me at 10:00 tomorrow:\nthe door code is 1234",
        "Line one\n--\nnot a signature, the rest is long\n" + "line\n" * 20,
        "Regards,\nIvan",
    ],
)
def test_keeps_what_the_customer_wrote(text: str) -> None:
    assert strip_reply(text) == text.strip()

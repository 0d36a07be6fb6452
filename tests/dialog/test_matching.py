"""Normalising and fuzzy matching; slot answers; numbered rendering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bots.dialog.answers import clean_answer, normalise_phone
from bots.dialog.matching import Matcher, asks_for_person, normalise
from bots.dialog.render import render_numbered
from gateway.channels import Button

MATCHER = Matcher(
    [
        ("delivery", "когда доставка"),
        ("delivery", "delivery time"),
        ("returns", "как вернуть товар"),
        ("hours", "когда вы работаете"),
    ],
    threshold=0.62,
)


def test_normalise() -> None:
    assert normalise("  Ещё, РАЗ!!! ") == "еще раз"
    assert normalise("доставкa") == "доставка"  # Latin "a" inside a Russian word
    assert normalise("delivery") == "delivery"


@given(st.text())
def test_normalise_is_idempotent(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("Когда доставка?", "delivery"),
        ("доставку когда ждать", "delivery"),
        ("Delivery time?", "delivery"),
        ("как вернуть", "returns"),
        ("когда работаете", "hours"),
        ("какая погода", None),
        ("", None),
    ],
)
def test_match(text: str, target: str | None) -> None:
    assert MATCHER.match(text) == target


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("позовите оператора", True),
        ("дайте менеджера", True),
        ("живой человек", True),
        ("опреатор", True),
        ("managers", True),
        ("real person", True),
        ("доставка", False),
        ("personal data", False),
        ("спасибо", False),
        ("человек", True),
        ("нужен человек", True),
        ("Позовите человека!", True),
        ("talk to a person", True),
        ("на сколько человек этот торт?", False),
        ("сколько человек наестся этим тортом", False),
        ("is this cake enough for one person", False),
    ],
)
def test_asks_for_person(text: str, asks: bool) -> None:
    assert asks_for_person(text) is asks


def test_extra_person_words() -> None:
    assert asks_for_person("нужна поддержка", ["поддержка"])
    assert not asks_for_person("нужна поддержка")


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("number", "10234", "10234"),
        ("number", "№ 10234", "10234"),
        ("number", "заказ 10-234", "10234"),
        ("number", "не помню", None),
        ("number", "12 и 13 заказы", None),
        ("phone", "+7 (900) 123-45-67", "+79001234567"),
        ("phone", "89001234567", "+79001234567"),
        ("phone", "9001234567", "+79001234567"),
        ("phone", "12", None),
        ("phone", "позвоните мне", None),
        ("email", "Ann@Example.ru", "ann@example.ru"),
        ("email", "ann at example", None),
        ("text", "  что угодно ", "что угодно"),
        ("text", "   ", None),
    ],
)
def test_clean_answer(kind: str, text: str, value: str | None) -> None:
    assert clean_answer(kind, text) == value


def test_shared_contact_without_plus() -> None:
    assert normalise_phone("79001234567") == "+79001234567"


def test_render_numbered() -> None:
    rows = (
        (Button("Доставка", payload="goto:delivery"), Button("Возврат", payload="goto:returns")),
        (Button("Сайт", url="https://example.ru"), Button("Телефон", request_contact=True)),
    )
    assert render_numbered("Чем помочь?", rows, hint="Ответьте цифрой.") == (
        "Чем помочь?\n\n1. Доставка\n2. Возврат\nСайт: https://example.ru\nОтветьте цифрой."
    )
    assert render_numbered("Просто текст", ()) == "Просто текст"

"""STOP / START keywords: the whole message, case and punctuation aside."""

from __future__ import annotations

import pytest

from gateway.bridge.sms.keywords import stop_keyword


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop",
        " Stop! ",
        "СТОП",
        "стоп.",
        "Стоп!!!",
        "ОТПИСКА",
        "отписаться",
        "UNSUBSCRIBE",
        "STOPALL",
        "Stop all",
        "opt-out",
        "ОТПИСАТЬСЯ",
        "cancel",
        "quit",
    ],
)
def test_stop_words(text: str) -> None:
    assert stop_keyword(text) == "stop"


@pytest.mark.parametrize("text", ["START", "start", "Старт", "ПОДПИСАТЬСЯ", "unstop"])
def test_start_words(text: str) -> None:
    assert stop_keyword(text) == "start"


@pytest.mark.parametrize(
    "text",
    ["STOP PLEASE", "не стоп", "stopping", "где мой заказ", "", "   ", "1", "стоп-кран сорвали"],
)
def test_sentences_are_not_keywords(text: str) -> None:
    assert stop_keyword(text) is None

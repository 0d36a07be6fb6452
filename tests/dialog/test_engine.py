"""A walk through the example shop script."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bots.dialog import Dialog, Reply, Turn, load_script, parse_script
from bots.dialog.render import choices

SHOP = Path(__file__).parents[2] / "bots" / "dialog" / "scripts" / "shop.yaml"
MSK = ZoneInfo("Europe/Moscow")
WEDNESDAY_NOON = datetime(2026, 5, 13, 12, 0, tzinfo=MSK)
SATURDAY_5PM = datetime(2026, 5, 16, 17, 0, tzinfo=MSK)


@pytest.fixture(scope="module")
def dialog() -> Dialog:
    return Dialog(load_script(SHOP))


def say(
    dialog: Dialog,
    state: Mapping[str, Any],
    turn: Turn,
    now: datetime = WEDNESDAY_NOON,
) -> Reply:
    return dialog.handle(state, turn, now=now, context={"name": "Анна"})


def text(reply: Reply) -> str:
    return "\n".join(m.text for m in reply.messages)


def labels(reply: Reply) -> list[str]:
    return [b.text for m in reply.messages for row in m.buttons for b in row]


def kinds(reply: Reply) -> list[str]:
    return [a.kind for a in reply.actions]


def start(dialog: Dialog, *, channel: str = "telegram", has_buttons: bool = True) -> Reply:
    return say(dialog, {}, Turn(first_contact=True, channel=channel, has_buttons=has_buttons))


def payload(reply: Reply, label_part: str) -> str:
    for message in reply.messages:
        for button in choices(message.buttons):
            if label_part in button.text and button.payload:
                return button.payload
    raise AssertionError(f"no button {label_part!r} in {labels(reply)}")


def test_first_contact_greets_by_name_and_shows_the_menu(dialog: Dialog) -> None:
    reply = start(dialog)
    assert "Здравствуйте, Анна!" in reply.messages[0].text
    assert "Уютная лавка" in reply.messages[0].text
    assert labels(reply) == [
        "📦 Где мой заказ?", "🚚 Доставка", "↩️ Возврат",
        "🕘 Часы работы", "📱 Оставить телефон", "👤 Позвать менеджера",
    ]  # fmt: skip
    assert reply.actions == []


def test_missing_context_falls_back_to_the_script_default(dialog: Dialog) -> None:
    reply = dialog.handle({}, Turn(first_contact=True), now=WEDNESDAY_NOON, context={})
    assert "Здравствуйте, покупатель!" in reply.messages[0].text


def test_button_press_answers_the_faq(dialog: Dialog) -> None:
    menu = start(dialog)
    reply = say(dialog, menu.state, Turn(button=payload(menu, "Доставка")))
    assert "курьером за 1–2 дня" in text(reply)
    assert "Главное меню" in labels(reply)


def test_opening_hours_answer_lists_the_hours(dialog: Dialog) -> None:
    menu = start(dialog)
    reply = say(dialog, menu.state, Turn(button=payload(menu, "Часы работы")))
    assert "пн–пт 09:00–20:00, сб 10:00–16:00, вс выходной" in text(reply)


@pytest.mark.parametrize(
    "question",
    [
        "когда доставка?",
        "Сколько идёт доставка",
        "сколько дней идет доставка???",
        "delivery time",
        "How long is delivery?",
        "доставкa",  # a Latin "a" at the end
        "доствка",
        "ДОСТАВКИ",
    ],
)
def test_free_text_reaches_the_delivery_faq(dialog: Dialog, question: str) -> None:
    reply = say(dialog, start(dialog).state, Turn(text=question))
    assert reply.understood
    assert "курьером за 1–2 дня" in text(reply)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("как вернуть товар", "в течение 14 дней"),
        ("refund", "в течение 14 дней"),
        ("когда вы работаете?", "пн–пт 09:00–20:00"),
        ("where is my order", "Напишите номер заказа"),
        ("возврат", "в течение 14 дней"),
    ],
)
def test_free_text_reaches_other_answers(dialog: Dialog, question: str, expected: str) -> None:
    reply = say(dialog, start(dialog).state, Turn(text=question))
    assert expected in text(reply)


def test_unrelated_text_is_not_matched(dialog: Dialog) -> None:
    reply = say(dialog, start(dialog).state, Turn(text="какая погода на марсе"))
    assert not reply.understood
    assert "не понял" in text(reply)


def test_numbered_reply_on_a_channel_without_buttons(dialog: Dialog) -> None:
    menu = start(dialog, channel="sms", has_buttons=False)
    shown = menu.messages[-1]
    assert shown.buttons == ()
    assert "1. 📦 Где мой заказ?" in shown.text
    assert "2. 🚚 Доставка" in shown.text
    assert "6. 👤 Позвать менеджера" in shown.text
    for answer in ("2", "2.", " 2) "):
        reply = say(dialog, menu.state, Turn(text=answer, channel="sms", has_buttons=False))
        assert "курьером за 1–2 дня" in text(reply), answer


def test_number_picks_from_the_last_menu_not_the_first(dialog: Dialog) -> None:
    menu = start(dialog, channel="sms", has_buttons=False)
    faq = say(dialog, menu.state, Turn(text="3", channel="sms", has_buttons=False))
    assert "в течение 14 дней" in text(faq)
    assert "3. Нет, спасибо" in faq.messages[-1].text
    bye = say(dialog, faq.state, Turn(text="3", channel="sms", has_buttons=False))
    assert kinds(bye) == ["stop"]


def test_order_number_then_order_status_action(dialog: Dialog) -> None:
    menu = start(dialog)
    ask = say(dialog, menu.state, Turn(button=payload(menu, "Где мой заказ")))
    assert "номер заказа" in text(ask)
    wrong = say(dialog, ask.state, Turn(text="не помню"))
    assert "Номер заказа — это цифры" in text(wrong)
    done = say(dialog, wrong.state, Turn(text="№ 10234"))
    assert "заказ №10234" in text(done)
    assert [(a.kind, dict(a.data)) for a in done.actions] == [("order_status", {"order": "10234"})]
    assert done.state["slots"]["order_number"] == "10234"


def test_phone_by_contact_button_on_telegram(dialog: Dialog) -> None:
    menu = start(dialog)
    ask = say(dialog, menu.state, Turn(button=payload(menu, "Оставить телефон")))
    message = ask.messages[-1]
    assert message.request_contact
    contact = [b for row in message.buttons for b in row if b.request_contact]
    assert [b.text for b in contact] == ["📱 Поделиться номером"]
    assert kinds(ask) == ["ask_contact"]
    shared = say(dialog, ask.state, Turn(phone="79001234567"))
    assert "Записал номер +79001234567" in text(shared)
    assert ("phone_captured", {"phone": "+79001234567"}) in [
        (a.kind, dict(a.data)) for a in shared.actions
    ]


def test_phone_typed_where_there_is_no_contact_button(dialog: Dialog) -> None:
    vk = Turn(first_contact=True, channel="vk")
    menu = dialog.handle({}, vk, now=WEDNESDAY_NOON)
    ask = say(dialog, menu.state, Turn(button=payload(menu, "Оставить телефон"), channel="vk"))
    assert not ask.messages[-1].request_contact
    assert "Напишите, пожалуйста, ваш номер" in text(ask)
    assert all(not b.request_contact for row in ask.messages[-1].buttons for b in row)
    bad = say(dialog, ask.state, Turn(text="12", channel="vk"))
    assert "Не похоже на номер телефона" in text(bad)
    typed = say(dialog, bad.state, Turn(text="8 (900) 123-45-67", channel="vk"))
    assert "Записал номер +79001234567" in text(typed)


@pytest.mark.parametrize(
    "words",
    [
        "позовите оператора",
        "Позовите человека!",
        "хочу с живым человеком",
        "менеджер",
        "operator",
        "I want a real person",
        "agent please",
        "Human",
    ],
)
def test_asking_for_a_person_hands_off_from_anywhere(dialog: Dialog, words: str) -> None:
    menu = start(dialog)
    deep = say(dialog, menu.state, Turn(button=payload(menu, "Где мой заказ")))
    assert deep.state["node"] == "order_ask"
    reply = say(dialog, deep.state, Turn(text=words))
    assert kinds(reply) == ["handoff"]
    assert reply.actions[0].data["reason"] == "asked"
    assert reply.actions[0].data["open"] is True
    assert "Зову менеджера" in text(reply)
    assert reply.state["handed_off"] is True


def test_two_misunderstandings_offer_a_person(dialog: Dialog) -> None:
    menu = start(dialog)
    first = say(dialog, menu.state, Turn(text="ываыва"))
    assert not first.understood
    assert "не понял" in text(first)
    assert first.actions == []
    second = say(dialog, first.state, Turn(text="фывфыв"))
    assert "Позвать менеджера?" in text(second)
    assert "Да, позовите менеджера" in labels(second)
    yes = say(dialog, second.state, Turn(text="да"))
    assert kinds(yes) == ["handoff"]


def test_understanding_in_between_resets_the_count(dialog: Dialog) -> None:
    menu = start(dialog)
    first = say(dialog, menu.state, Turn(text="ываыва"))
    understood = say(dialog, first.state, Turn(text="меню"))
    again = say(dialog, understood.state, Turn(text="фывфыв"))
    assert "Позвать менеджера?" not in text(again)


def test_script_limit_without_offer_node_hands_off_directly() -> None:
    dialog = Dialog(
        parse_script(
            "start: hi\n"
            "fallback: {limit: 3}\n"
            "nodes:\n  hi: {say: hi, buttons: [{text: a, goto: hi}]}\n"
        )
    )
    state = dialog.handle({}, Turn(first_contact=True), now=WEDNESDAY_NOON).state
    for _ in range(2):
        reply = dialog.handle(state, Turn(text="zzz"), now=WEDNESDAY_NOON)
        assert reply.actions == []
        state = reply.state
    reply = dialog.handle(state, Turn(text="zzz"), now=WEDNESDAY_NOON)
    assert kinds(reply) == ["handoff"]
    assert reply.actions[0].data["reason"] == "misunderstood"


def test_handoff_on_saturday_evening_names_monday_morning(dialog: Dialog) -> None:
    menu = start(dialog)
    reply = say(dialog, menu.state, Turn(button=payload(menu, "Позвать менеджера")), SATURDAY_5PM)
    assert "Менеджер ответит в понедельник после 09:00" in text(reply)
    data = reply.actions[0].data
    assert data["open"] is False
    assert data["next_open"] == "2026-05-18T09:00:00+03:00"


def test_handoff_on_a_weekday_night_names_tomorrow(dialog: Dialog) -> None:
    night = datetime(2026, 5, 13, 21, 30, tzinfo=MSK)
    reply = say(dialog, start(dialog).state, Turn(text="оператор"), night)
    assert "Менеджер ответит завтра после 09:00" in text(reply)


def test_handoff_early_morning_names_today_and_other_zones_convert() -> None:
    dialog = Dialog(load_script(SHOP))
    early_utc = datetime(2026, 5, 13, 4, 0, tzinfo=ZoneInfo("UTC"))  # 07:00 in Moscow
    reply = dialog.handle({}, Turn(text="оператор"), now=early_utc)
    assert "сегодня после 09:00" in text(reply)


def test_state_survives_json_and_the_dialog_continues(dialog: Dialog) -> None:
    menu = start(dialog)
    ask = say(dialog, menu.state, Turn(button=payload(menu, "Где мой заказ")))
    stored = json.loads(json.dumps(ask.state))
    restarted = Dialog(load_script(SHOP))  # a new process
    done = restarted.handle(stored, Turn(text="555", channel="vk"), now=WEDNESDAY_NOON)
    assert "заказ №555" in text(done)
    numbered = start(dialog, channel="sms", has_buttons=False)
    again = restarted.handle(
        json.loads(json.dumps(numbered.state)),
        Turn(text="2", channel="email", has_buttons=False),
        now=WEDNESDAY_NOON,
    )
    assert "курьером" in text(again)


def test_damaged_or_foreign_state_starts_over(dialog: Dialog) -> None:
    reply = say(dialog, {"v": 99, "node": "nowhere"}, Turn(text="привет"))
    assert "Здравствуйте" in text(reply)
    stale = say(dialog, {"v": 1, "node": "deleted_node", "menu": "junk"}, Turn(text="доставка"))
    assert "курьером" in text(stale)


def test_first_message_with_a_question_greets_and_answers(dialog: Dialog) -> None:
    reply = say(dialog, {}, Turn(first_contact=True, text="сколько идет доставка?"))
    assert "Здравствуйте" in reply.messages[0].text
    assert "курьером" in text(reply)


def test_stale_button_from_an_old_message_still_works(dialog: Dialog) -> None:
    menu = start(dialog)
    faq = say(dialog, menu.state, Turn(button=payload(menu, "Доставка")))
    old = say(dialog, faq.state, Turn(button=payload(menu, "Возврат")))
    assert "в течение 14 дней" in text(old)
    forged = say(dialog, faq.state, Turn(button="goto:nonexistent"))
    assert not forged.understood


def test_customer_braces_are_not_templates(dialog: Dialog) -> None:
    reply = dialog.handle(
        {}, Turn(first_contact=True), now=WEDNESDAY_NOON, context={"name": "{shop}"}
    )
    assert "Здравствуйте, {shop}!" in reply.messages[0].text


def test_naive_now_is_refused(dialog: Dialog) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        dialog.handle({}, Turn(first_contact=True), now=datetime(2026, 5, 13, 12, 0))

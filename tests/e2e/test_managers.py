"""The managers' group end to end: emulated Telegram forum + VK, the real clients, the store."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
import sqlalchemy as sa
from sqlmodel import col

import bots.telegram  # noqa: F401  (aiogram's first import is slow: paid at collection)
from gateway.app import App
from gateway.sandbox.telegram import TelegramLimits
from gateway.sandbox.telegram.desk import MANAGER_USER_ID, MANAGERS_CHAT_ID
from gateway.sandbox.telegram.state import StoredMessage
from storage.models import Conversation, Delivery
from tests.e2e.conftest import SandboxFactory, eventually

# The group's pace, ours and the emulated Telegram's alike: 20/min as in production
# would make a 30-conversation burst take minutes; the shape of the test is the same.
GROUP_PER_MIN = 600


def _paced_like_us(app: App) -> None:
    """Telegram a little more lenient than our pace, as it should be in production."""
    assert app.sandbox is not None
    app.sandbox.telegram.bot().flood.limits = TelegramLimits(
        group_per_minute=GROUP_PER_MIN * 1.5, per_chat_per_second=GROUP_PER_MIN / 40
    )


@pytest.fixture
async def desk_app(sandbox_factory: SandboxFactory) -> App:
    """The sandbox with its managers' group, paced at GROUP_PER_MIN on both sides."""
    return await sandbox_factory(telegram_group_rate_per_min=GROUP_PER_MIN, prepare=_paced_like_us)


def _hands_over(text: str) -> bool:
    """The bot's hand-over words: "calling a manager" in working hours, "a manager will
    answer <when>" outside them (the shop's script keeps Moscow office hours, and the
    tests run at any hour)."""
    return "Зову менеджера" in text or "Менеджер ответит" in text


def _texts(messages: list[StoredMessage]) -> list[str]:
    return [m.text or "" for m in messages]


async def test_vk_customer_handed_to_a_manager_who_takes_replies_and_releases(
    desk_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox_app = desk_app
    assert sandbox_app.sandbox is not None
    telegram, vk = sandbox_app.sandbox.telegram, sandbox_app.sandbox.vk
    vk.add_user(7101, "Анна", "Петрова")
    vk.user_writes(7101, "Привет")
    await eventually(lambda: vk.sent_to(7101))
    vk.user_writes(7101, "позовите человека")
    await eventually(lambda: [m for m in vk.sent_to(7101) if "менеджер" in m.text.lower()])

    # A topic named after the customer, opened by the card with the history so far.
    topics = await eventually(lambda: telegram.topics(MANAGERS_CHAT_ID))
    assert len(topics) == 1
    assert topics[0].name.startswith("Анна Петрова")
    assert "VK" in topics[0].name
    thread = topics[0].thread_id
    in_topic = await eventually(lambda: telegram.sent_messages(MANAGERS_CHAT_ID, thread_id=thread))
    card = in_topic[0].text or ""
    assert "Анна Петрова" in card
    assert "позовите человека" in card

    telegram.member_writes(MANAGERS_CHAT_ID, MANAGER_USER_ID, "/take", thread_id=thread)
    joined = await eventually(
        lambda: [m for m in vk.sent_to(7101) if "подключился менеджер" in m.text]
    )
    assert "Мария" in joined[0].text

    telegram.member_writes(
        MANAGERS_CHAT_ID, MANAGER_USER_ID, "Здравствуйте, Анна! Чем помочь?", thread_id=thread
    )
    await eventually(lambda: [m for m in vk.sent_to(7101) if "Чем помочь?" in m.text])

    # While the manager owns it, the bot says nothing; the topic sees the customer.
    before = len(vk.sent_to(7101))
    vk.user_writes(7101, "где мой заказ?")
    await eventually(
        lambda: [
            t
            for t in _texts(telegram.sent_messages(MANAGERS_CHAT_ID, thread_id=thread))
            if "где мой заказ?" in t and "[VK]" in t
        ]
    )
    assert len(vk.sent_to(7101)) == before

    # /link: the customer gets continuation links and follows the Telegram one.
    telegram.member_writes(MANAGERS_CHAT_ID, MANAGER_USER_ID, "/link", thread_id=thread)
    offer = await eventually(lambda: [m for m in vk.sent_to(7101) if "t.me/" in m.text])
    found = re.search(r"t\.me/\w+\?start=([\w-]+)", offer[0].text)
    assert found is not None
    telegram.add_user(7102, first_name="Анна", last_name="П.")
    telegram.user_starts(7102, found.group(1))
    telegram.user_sends_text(7102, "я теперь в телеграме")

    def topic_lines() -> list[str]:
        return _texts(telegram.sent_messages(MANAGERS_CHAT_ID, thread_id=thread))

    await eventually(lambda: [t for t in topic_lines() if "[Telegram]" in t and "телеграме" in t])
    assert len(telegram.topics(MANAGERS_CHAT_ID)) == 1  # the same topic, the same dialogue
    telegram.member_writes(MANAGERS_CHAT_ID, MANAGER_USER_ID, "/card", thread_id=thread)
    await eventually(lambda: [t for t in telegram.topics(MANAGERS_CHAT_ID) if "Telegram" in t.name])
    assert telegram.topics(MANAGERS_CHAT_ID)[0].name == "Анна Петрова · VK · Telegram"
    telegram.member_writes(MANAGERS_CHAT_ID, MANAGER_USER_ID, "/history 50", thread_id=thread)
    history = await eventually(lambda: [t for t in topic_lines() if t.startswith("Последние")])
    assert "позовите человека" in history[-1]
    assert "телеграме" in history[-1]

    vk_before = len(vk.sent_to(7101))
    telegram.member_writes(
        MANAGERS_CHAT_ID, MANAGER_USER_ID, "Вижу вас в Telegram", thread_id=thread
    )
    await eventually(lambda: [t for t in _texts(telegram.sent_messages(7102)) if "Вижу вас" in t])
    assert not [m for m in vk.sent_to(7101)[vk_before:] if "Вижу вас" in m.text]

    telegram.member_writes(MANAGERS_CHAT_ID, MANAGER_USER_ID, "/release", thread_id=thread)
    await eventually(lambda: [t for t in _texts(telegram.sent_messages(7102)) if "снова бот" in t])
    before = len(telegram.sent_messages(7102))
    telegram.user_sends_text(7102, "сколько идёт доставка?")
    answer = await eventually(lambda: telegram.sent_messages(7102)[before:])
    assert "доставк" in (answer[0].text or "").lower()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def _handed_over(app: App, vk_user: int, name: str) -> int:
    """A VK customer asks for a person; returns their topic's thread id."""
    assert app.sandbox is not None
    app.sandbox.vk.add_user(vk_user, *name.split())
    app.sandbox.vk.user_writes(vk_user, "позовите оператора")
    telegram = app.sandbox.telegram
    topics = await eventually(
        lambda: [t for t in telegram.topics(MANAGERS_CHAT_ID) if t.name.startswith(name)]
    )
    thread = topics[0].thread_id
    # Settled: the bot's hand-over words reached the customer and were mirrored.
    await eventually(lambda: [m for m in app.sandbox.vk.sent_to(vk_user) if _hands_over(m.text)])
    await eventually(
        lambda: [
            m
            for m in telegram.sent_messages(MANAGERS_CHAT_ID, thread_id=thread)
            if _hands_over(m.text or "")
        ]
    )
    return thread


async def _conversation(app: App, thread: int) -> Conversation:
    async with app.db.session() as session:
        found = await session.scalar(
            sa.select(Conversation).where(col(Conversation.topic_id) == thread)
        )
    assert found is not None
    return found


async def test_a_non_manager_is_refused_and_nothing_happens(desk_app: App) -> None:
    assert desk_app.sandbox is not None
    telegram, vk = desk_app.sandbox.telegram, desk_app.sandbox.vk
    thread = await _handed_over(desk_app, 7201, "Олег Сидоров")
    telegram.add_user(7299, first_name="Посторонний")
    telegram.set_member(MANAGERS_CHAT_ID, 7299, "member")
    told = len(vk.sent_to(7201))

    telegram.member_writes(MANAGERS_CHAT_ID, 7299, "/take", thread_id=thread)
    telegram.member_writes(MANAGERS_CHAT_ID, 7299, "купите у меня слона", thread_id=thread)
    telegram.member_writes(MANAGERS_CHAT_ID, 7299, "/queue")
    refusals = await eventually(
        lambda: [
            m
            for m in telegram.sent_messages(MANAGERS_CHAT_ID)
            if "Только менеджеры" in (m.text or "")
        ]
    )
    await eventually(lambda: len(refusals) >= 1)
    await asyncio.sleep(1.0)  # had anything been done, it would be queued by now
    conversation = await _conversation(desk_app, thread)
    assert conversation.mode == "waiting"
    assert conversation.assignee_id is None
    assert len(vk.sent_to(7201)) == told
    assert not [m for m in vk.sent_to(7201) if "слона" in m.text]


async def test_thirty_new_conversations_in_one_second_get_thirty_topics(
    desk_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    assert desk_app.sandbox is not None
    telegram, vk = desk_app.sandbox.telegram, desk_app.sandbox.vk
    names = [f"Клиент{i:02d} Пачка" for i in range(30)]
    caplog.set_level(logging.INFO)
    for index, name in enumerate(names):
        vk.add_user(7300 + index, *name.split())
        vk.user_writes(7300 + index, "позовите оператора")
    topics = await eventually(
        lambda: (t := telegram.topics(MANAGERS_CHAT_ID)) and len(t) >= 30 and t, within=50
    )
    assert len(topics) == 30  # one each: never two for one conversation
    # In the order the customers wrote: the group's copies leave one at a time, in order.
    async with desk_app.db.session() as session:
        rows = list(
            await session.scalars(
                sa.select(Conversation)
                .where(col(Conversation.topic_id).is_not(None))
                .order_by(col(Conversation.topic_id))
            )
        )
    assert sorted(r.topic_id or 0 for r in rows) == sorted(t.thread_id for t in topics)
    assert [r.customer_id for r in rows] == sorted(r.customer_id for r in rows)
    # Every copy is sent in the end, none failed; each topic opens with its card.
    for _ in range(300):
        async with desk_app.db.session() as session:
            desk = list(
                await session.scalars(sa.select(Delivery).where(col(Delivery.purpose) == "desk"))
            )
        if desk and all(d.status not in {"queued", "sending"} for d in desk):
            break
        await asyncio.sleep(0.1)
    assert {d.status for d in desk} <= {"sent", "replied"}
    for row in rows:
        first = telegram.sent_messages(MANAGERS_CHAT_ID, thread_id=row.topic_id)
        assert f"диалог #{row.id}" in (first[0].text or "")
    assert not [d for d in desk if d.status == "failed"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert telegram.error_counts().get(429, 0) <= 2  # stray ones from timing jitter at most


async def test_a_deleted_topic_is_recreated_on_the_next_message(desk_app: App) -> None:
    assert desk_app.sandbox is not None
    telegram, vk = desk_app.sandbox.telegram, desk_app.sandbox.vk
    thread = await _handed_over(desk_app, 7401, "Вера Новикова")
    await eventually(lambda: telegram.sent_messages(MANAGERS_CHAT_ID, thread_id=thread))
    telegram.delete_topic(MANAGERS_CHAT_ID, thread)

    vk.user_writes(7401, "есть кто-нибудь?")
    topics = await eventually(
        lambda: [t for t in telegram.topics(MANAGERS_CHAT_ID) if t.name.startswith("Вера")]
    )
    assert len(topics) == 1
    assert topics[0].thread_id != thread

    def lines() -> list[str]:
        return _texts(telegram.sent_messages(MANAGERS_CHAT_ID, thread_id=topics[0].thread_id))

    await eventually(lambda: [t for t in lines() if "есть кто-нибудь?" in t])
    assert "позовите оператора" in lines()[0]  # the card again, with the history
    assert "Вера" in lines()[0]
    assert "есть кто-нибудь?" in lines()[-1]
    assert (await _conversation(desk_app, topics[0].thread_id)).mode == "waiting"


async def test_a_reply_to_a_channel_that_failed_finally_goes_to_the_next_one(
    desk_app: App,
) -> None:
    assert desk_app.sandbox is not None
    telegram, vk = desk_app.sandbox.telegram, desk_app.sandbox.vk
    thread = await _handed_over(desk_app, 7501, "Пётр Орлов")
    telegram.member_writes(MANAGERS_CHAT_ID, MANAGER_USER_ID, "/link", thread_id=thread)
    offer = await eventually(lambda: [m for m in vk.sent_to(7501) if "t.me/" in m.text])
    found = re.search(r"t\.me/\w+\?start=([\w-]+)", offer[0].text)
    assert found is not None
    telegram.add_user(7502, first_name="Пётр")
    telegram.user_starts(7502, found.group(1))

    def topic_lines() -> list[str]:
        return _texts(telegram.sent_messages(MANAGERS_CHAT_ID, thread_id=thread))

    await eventually(lambda: [t for t in topic_lines() if "[Telegram]" in t])
    vk.user_writes(7501, "напишите мне")  # VK is the channel of the last message again

    await eventually(lambda: [t for t in topic_lines() if "напишите мне" in t])
    telegram.member_writes(MANAGERS_CHAT_ID, MANAGER_USER_ID, "/take", thread_id=thread)
    await eventually(lambda: [m for m in vk.sent_to(7501) if "подключился" in m.text])
    # VK refuses the next send for good (901: the user does not allow messages).
    vk.fail_next("messages.send", error_code=901)
    telegram.member_writes(MANAGERS_CHAT_ID, MANAGER_USER_ID, "Ответ менеджера", thread_id=thread)

    await eventually(
        lambda: [t for t in _texts(telegram.sent_messages(7502)) if "Ответ менеджера" in t]
    )
    assert not [m for m in vk.sent_to(7501) if "Ответ менеджера" in m.text]
    notice = await eventually(lambda: [t for t in topic_lines() if "не доставлено" in t])
    assert "[VK]" in notice[0]
    assert "[Telegram]" in notice[0]

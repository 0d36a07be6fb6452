"""The managers' group commands (bots/telegram/managers/group.py) through the emulator.

The app's sandbox: a forum supergroup, the real aiogram client, the store; the
customers write on VK.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import col

from gateway.app import App
from gateway.clock import FakeClock
from gateway.desk import Reminders
from gateway.sandbox.telegram.desk import MANAGER_USER_ID, MANAGERS_CHAT_ID
from storage.models import Conversation, Message
from tests.e2e.conftest import eventually, sandbox_factory  # noqa: F401
from tests.e2e.test_managers import _handed_over, _texts, desk_app  # noqa: F401


def _topic(app: App, thread: int) -> list[str]:
    assert app.sandbox is not None
    return _texts(app.sandbox.telegram.sent_messages(MANAGERS_CHAT_ID, thread_id=thread))


def _write(app: App, text: str, thread: int | None = None) -> None:
    assert app.sandbox is not None
    app.sandbox.telegram.member_writes(MANAGERS_CHAT_ID, MANAGER_USER_ID, text, thread_id=thread)


async def _row(app: App, thread: int) -> Conversation:
    async with app.db.session() as session:
        found = await session.scalar(
            sa.select(Conversation).where(col(Conversation.topic_id) == thread)
        )
    assert found is not None
    return found


async def test_note_history_via_and_card_stay_with_the_managers(
    desk_app: App,  # noqa: F811
) -> None:
    assert desk_app.sandbox is not None
    vk = desk_app.sandbox.vk
    thread = await _handed_over(desk_app, 7601, "Ирина Белова")
    told = len(vk.sent_to(7601))

    _write(desk_app, "/note клиентка из Казани, VIP", thread)
    await eventually(lambda: [t for t in _topic(desk_app, thread) if "заметка сохранена" in t])
    async with desk_app.db.session() as session:
        notes = list(await session.scalars(sa.select(Message).where(col(Message.kind) == "note")))
    assert [n.text for n in notes] == ["клиентка из Казани, VIP"]

    _write(desk_app, "/via sms", thread)  # she has no phone with us
    await eventually(lambda: [t for t in _topic(desk_app, thread) if "нет доступного" in t])
    _write(desk_app, "/via pigeon", thread)
    await eventually(lambda: [t for t in _topic(desk_app, thread) if "канал один из" in t])
    _write(desk_app, "/history 5", thread)
    history = await eventually(
        lambda: [t for t in _topic(desk_app, thread) if t.startswith("Последние")]
    )
    assert "позовите оператора" in history[0]
    _write(desk_app, "/card", thread)
    await eventually(
        lambda: [t for t in _topic(desk_app, thread)[1:] if t.startswith("👤 Ирина Белова")]
    )
    assert len(vk.sent_to(7601)) == told  # none of it reached the customer
    assert (await _row(desk_app, thread)).reply_via is None


async def test_close_then_a_new_message_reopens_it_with_the_bot(
    desk_app: App,  # noqa: F811
) -> None:
    assert desk_app.sandbox is not None
    telegram, vk = desk_app.sandbox.telegram, desk_app.sandbox.vk
    thread = await _handed_over(desk_app, 7701, "Глеб Фролов")
    _write(desk_app, "/queue")
    queue = await eventually(
        lambda: [
            m.text or "" for m in telegram.sent_messages(MANAGERS_CHAT_ID) if m.thread_id is None
        ]
    )
    assert "Глеб Фролов" in queue[-1]
    _write(desk_app, "/take", thread)
    await eventually(lambda: [m for m in vk.sent_to(7701) if "подключился" in m.text])
    _write(desk_app, "/mine", thread)
    await eventually(lambda: [t for t in _topic(desk_app, thread) if t.startswith("Ваши диалоги")])

    _write(desk_app, "/close", thread)
    await eventually(lambda: [t for t in _topic(desk_app, thread) if "закрыл(а) диалог" in t])
    assert (await _row(desk_app, thread)).mode == "closed"
    before = len(vk.sent_to(7701))
    vk.user_writes(7701, "сколько идёт доставка?")
    answer = await eventually(lambda: vk.sent_to(7701)[before:])
    assert "доставк" in answer[0].text.lower()  # the bot again
    row = await _row(desk_app, thread)
    assert row.mode == "bot"
    assert row.assignee_id is None


async def test_the_group_is_reminded_once_of_a_conversation_nobody_took(
    desk_app: App,  # noqa: F811
) -> None:
    assert desk_app.desk is not None
    thread = await _handed_over(desk_app, 7801, "Лев Зимин")
    since = (await _row(desk_app, thread)).waiting_since
    assert since is not None
    clock = FakeClock(since + timedelta(minutes=5))
    reminders = Reminders(
        desk_app.db, desk_app.outbox, desk_app.desk.mirror, clock=clock, after_s=600
    )
    assert await reminders.remind_due() == 0  # not yet
    await clock.advance(6 * 60)
    assert await reminders.remind_due() == 1
    assert await reminders.remind_due() == 0  # once per waiting spell
    reminder = await eventually(lambda: [t for t in _topic(desk_app, thread) if "⏰" in t])
    assert "11 мин" in reminder[0]

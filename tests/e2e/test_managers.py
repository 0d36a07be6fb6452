"""The managers' group end to end: emulated Telegram forum + VK, the real clients, the store."""

from __future__ import annotations

from gateway.app import App
from gateway.sandbox.telegram.desk import MANAGER_USER_ID, MANAGERS_CHAT_ID
from gateway.sandbox.telegram.state import StoredMessage
from tests.e2e.conftest import eventually


def _texts(messages: list[StoredMessage]) -> list[str]:
    return [m.text or "" for m in messages]


async def test_vk_customer_handed_to_a_manager_who_takes_replies_and_releases(
    sandbox_app: App,
) -> None:
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

    telegram.member_writes(MANAGERS_CHAT_ID, MANAGER_USER_ID, "/release", thread_id=thread)
    await eventually(lambda: [m for m in vk.sent_to(7101) if "снова бот" in m.text])
    before = len(vk.sent_to(7101))
    vk.user_writes(7101, "сколько идёт доставка?")
    answer = await eventually(lambda: vk.sent_to(7101)[before:])
    assert "доставк" in answer[0].text.lower()

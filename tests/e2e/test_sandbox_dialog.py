"""A customer talks to the bot on Telegram and on VK through the real clients."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp

from gateway.app import App
from tests.e2e.conftest import eventually


def _texts(messages: Sequence[object]) -> list[str]:
    return [getattr(m, "text", None) or getattr(m, "caption", None) or "" for m in messages]


async def test_telegram_customer_gets_the_bot_first_and_everything_is_stored(
    sandbox_app: App,
) -> None:
    assert sandbox_app.sandbox is not None
    telegram = sandbox_app.sandbox.telegram
    telegram.add_user(501, first_name="Анна", last_name="Петрова")
    telegram.user_starts(501)

    greeting = await eventually(lambda: telegram.sent_messages(501))
    assert "Здравствуйте" in _texts(greeting)[0]
    menu = await eventually(lambda: [m for m in telegram.sent_messages(501) if m.reply_markup])
    keyboard = menu[-1].reply_markup
    assert keyboard is not None
    buttons = [b for row in keyboard["inline_keyboard"] for b in row]
    delivery = next(b for b in buttons if "Доставка" in b["text"])

    def answered(after: int) -> list[str]:
        return [t for t in _texts(telegram.sent_messages(501)[after:]) if "доставк" in t.lower()]

    before = len(telegram.sent_messages(501))
    telegram.user_presses_button(501, menu[-1].message_id, delivery["callback_data"])
    await eventually(lambda: answered(before))

    # Free text with a typo finds the same answer.
    before = len(telegram.sent_messages(501))
    telegram.user_sends_text(501, "сколько идёт доставкa?")
    await eventually(lambda: answered(before))

    async with aiohttp.ClientSession(headers={"Authorization": "Bearer test-key"}) as http:
        found = await (await http.get(f"{sandbox_app.url}/api/customers?q=Анна")).json()
        assert len(found["items"]) == 1
        url = f"{sandbox_app.url}/api/customers/{found['items'][0]['id']}/messages?limit=200"
        for _ in range(200):  # until the outbox, paced at 1/s per chat, has sent it all
            items = (await (await http.get(url)).json())["items"]
            statuses = {i["delivery_status"] for i in items if i["direction"] == "out"}
            if statuses <= {"sent", "clicked", "replied"}:
                break
            await asyncio.sleep(0.1)
    assert statuses <= {"sent", "clicked", "replied"}
    # The menu whose button was pressed shows as clicked; nothing else does.
    clicked = [i["text"] for i in items if i["delivery_status"] == "clicked"]
    assert len(clicked) == 1
    assert "Чем могу помочь" in clicked[0]
    assert items[0]["direction"] == "in"
    assert items[0]["text"] == "/start"
    assert {i["author"] for i in items} == {"customer", "bot"}
    assert all(i["channel"] == "telegram" for i in items)
    # Every bot message the customer saw in Telegram is in the history, once.
    bot_texts = [i["text"] for i in items if i["author"] == "bot"]
    assert len(bot_texts) == len(telegram.sent_messages(501))


async def test_vk_customer_gets_the_bot_and_asks_for_a_person(sandbox_app: App) -> None:
    assert sandbox_app.sandbox is not None
    vk = sandbox_app.sandbox.vk
    vk.add_user(7001, "Иван", "Смирнов")
    vk.user_writes(7001, "Привет")
    greeting = await eventually(lambda: vk.sent_to(7001))
    assert "Здравствуйте" in greeting[0].text
    await eventually(lambda: [m for m in vk.sent_to(7001) if m.keyboard])

    before = len(vk.sent_to(7001))
    vk.user_writes(7001, "позовите оператора")
    after = await eventually(lambda: vk.sent_to(7001)[before:])
    assert "менеджер" in after[0].text.lower()

    # The conversation is now waiting for a person: the bot keeps quiet.
    before = len(vk.sent_to(7001))
    vk.user_writes(7001, "алло?")
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer test-key"}) as http:

        async def stored() -> int:
            found = await (await http.get(f"{sandbox_app.url}/api/customers?channel=vk")).json()
            customer = found["items"][0]
            history = await (
                await http.get(f"{sandbox_app.url}/api/customers/{customer['id']}/messages")
            ).json()
            return sum(1 for i in history["items"] if i["text"] == "алло?")

        for _ in range(100):
            if await stored():
                break
            await asyncio.sleep(0.05)
        assert await stored() == 1
    assert len(vk.sent_to(7001)) == before

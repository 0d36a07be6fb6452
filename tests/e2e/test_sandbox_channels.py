"""The sandbox's SMS phone and mailbox, end to end through chatgate's real adapters.

A sandbox phone texts the shop's Twilio number; the bot's answer goes out through
the real Twilio adapter into that phone, and Twilio's reports mark it delivered.
A sandbox mailbox writes to the shop; the answer arrives by mail, and a reply to
that answer (In-Reply-To, References, quoted text) lands in the same conversation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from gateway.app import App
from gateway.sandbox.mail import PostOffice
from gateway.sandbox.sms import TwilioEmulator
from tests.e2e.conftest import eventually

PHONE = "+79161234567"
MAILBOX = "maria@example.org"


async def _api(app: App, path: str) -> Any:
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bearer test-key"}) as http,
        http.get(f"{app.url}/api{path}") as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def _history(app: App, query: str) -> tuple[int, list[dict[str, Any]]]:
    found = await _api(app, f"/customers?q={query.replace('+', '%2B')}")
    assert len(found["items"]) == 1, found
    customer = found["items"][0]["id"]
    return customer, (await _api(app, f"/customers/{customer}/messages?limit=200"))["items"]


async def test_a_text_from_the_sandbox_phone_is_answered_by_sms_into_it(
    sandbox_app: App,
) -> None:
    assert sandbox_app.sandbox is not None
    twilio = sandbox_app.sandbox.sms
    assert isinstance(twilio, TwilioEmulator)
    phone = twilio.phones.phone(PHONE)

    sent = await twilio.text_from(PHONE, "Сколько идёт доставка?")
    assert sent.webhook_status == 200  # chatgate checked the signature and stored it

    def answers() -> list[str]:
        return [m.body for m in phone.messages if m.direction == "received"]

    replies = await eventually(answers, within=20)
    assert any("доставк" in text.lower() for text in replies), replies
    answer = next(m for m in phone.messages if m.direction == "received")
    await eventually(lambda: len(answer.callbacks) == 2)  # each recorded once chatgate answered
    assert answer.status == "delivered"
    assert [c.split(":")[0] for c in answer.callbacks] == ["sent", "delivered"]
    assert all(c.endswith(":200") for c in answer.callbacks)

    for _ in range(100):  # the report is stored as the webhook answers; the API reads after
        _, items = await _history(sandbox_app, PHONE)
        outbound = [m for m in items if m["direction"] == "out" and m["channel"] == "sms"]
        if outbound and outbound[0]["delivery_status"] == "delivered":
            break
        await asyncio.sleep(0.1)
    assert [m["text"] for m in items if m["direction"] == "in"] == ["Сколько идёт доставка?"]
    assert outbound[0]["text"] == answer.body
    assert outbound[0]["delivery_status"] == "delivered"


async def test_mail_from_the_sandbox_mailbox_is_answered_and_the_reply_threads(
    sandbox_app: App,
) -> None:
    assert sandbox_app.sandbox is not None
    office = sandbox_app.sandbox.mail
    assert isinstance(office, PostOffice)
    assert sandbox_app.settings.email_address == "support@shop.example"

    await office.write(MAILBOX, "Здравствуйте! Сколько идёт доставка?", subject="Доставка")

    def inbox() -> list[Any]:
        return [m for m in office.mailboxes.of(MAILBOX) if m.folder == "inbox"]

    first = (await eventually(inbox, within=20))[0]
    assert first.sender == "support@shop.example"
    assert first.message_id is not None
    assert first.message_id.startswith("<chatgate.")
    assert "доставк" in first.text.lower()
    assert first.envelope_from.startswith("bounce+")  # VERP, as the relay saw it

    reply = await office.reply(first.id, "А в Казань тоже?")
    assert reply.in_reply_to == first.message_id
    assert reply.references[-1] == first.message_id
    assert reply.recipients == [first.answer_to]

    await eventually(lambda: len(inbox()) >= 2, within=20)
    customer, items = await _history(sandbox_app, MAILBOX)
    inbound = [m for m in items if m["direction"] == "in"]
    assert [m["channel"] for m in inbound] == ["email", "email"]
    # The quoted answer is cut off; the reply is in the first mail's conversation.
    assert inbound[1]["text"].strip() == "А в Казань тоже?"
    assert len({m["conversation_id"] for m in items}) == 1
    profile = await _api(sandbox_app, f"/customers/{customer}")
    assert profile["email"] == MAILBOX or any(
        i["channel"] == "email" and i["address"] == MAILBOX for i in profile["identities"]
    )


async def test_console_config_offers_every_pane_of_the_running_sandbox(sandbox_app: App) -> None:
    assert sandbox_app.sandbox is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{sandbox_app.url}/sandbox/config") as response,
    ):
        config = await response.json()
    assert config["sms"] == {"number": "+15005550006", "control": "/sandbox/sms/control"}
    assert config["mail"] == {
        "shop_address": "support@shop.example",
        "control": "/sandbox/mail/control",
    }
    managers = config["managers"]
    assert managers is not None
    group = sandbox_app.sandbox.telegram.world.groups[managers["chat_id"]]
    assert group.is_forum
    assert group.members[managers["manager_id"]] in ("creator", "administrator")


async def test_a_manager_in_the_console_answers_an_sms_customer(sandbox_app: App) -> None:
    """What the console's panes do, over their HTTP endpoints: SMS phone ↔ managers' topic."""
    assert sandbox_app.sandbox is not None
    twilio = sandbox_app.sandbox.sms
    assert twilio is not None
    telegram = sandbox_app.sandbox.telegram
    base = f"{sandbox_app.url}/sandbox"
    async with aiohttp.ClientSession() as http:
        config = await (await http.get(f"{base}/config")).json()
        chat, manager = config["managers"]["chat_id"], config["managers"]["manager_id"]

        async def text(body: str) -> None:
            url = f"{base}/sms/control/phones/%2B79161234567/messages"
            async with http.post(url, json={"text": body}) as r:
                assert r.status == 200, await r.text()

        async def topics() -> list[dict[str, Any]]:
            async with http.get(f"{base}/telegram/control/groups/{chat}/topics") as r:
                return list((await r.json())["result"])

        async def as_manager(body: str, thread: int) -> None:
            url = f"{base}/telegram/control/groups/{chat}/messages"
            payload = {"user_id": manager, "text": body, "thread_id": thread}
            async with http.post(url, json=payload) as r:
                assert r.status == 200, await r.text()

        await text("Здравствуйте")
        phone = twilio.phones.phone(PHONE)
        await eventually(lambda: [m for m in phone.messages if m.direction == "received"])
        await text("позовите оператора")
        for _ in range(200):
            found = await topics()
            if found:
                break
            await asyncio.sleep(0.1)
        [topic] = found
        assert "SMS" in topic["name"]
        thread = topic["message_thread_id"]

        await as_manager("/take", thread)
        await as_manager("Добрый день! Я проверю ваш заказ.", thread)

        def replied() -> list[str]:
            return [m.body for m in phone.messages if "проверю ваш заказ" in m.body]

        await eventually(replied, within=20)
        # The customer's next SMS shows in the topic, marked as SMS, and the bot stays quiet.
        before = len([m for m in phone.messages if m.direction == "received"])
        await text("Спасибо, жду")

        def mirrored() -> list[str]:
            sent = telegram.sent_messages(chat, thread_id=thread)
            return [m.text or "" for m in sent if "Спасибо, жду" in (m.text or "")]

        lines = await eventually(mirrored, within=20)
        assert "SMS" in lines[0]
        await asyncio.sleep(0.5)
        assert len([m for m in phone.messages if m.direction == "received"]) == before

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
    await eventually(lambda: answer.status == "delivered")
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

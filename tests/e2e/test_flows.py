"""The abandoned-cart chain end to end: emulated Telegram, real SMTP and an HTTP Twilio.

A customer with an email address, a Telegram chat and a phone leaves a cart. The
email goes first; nobody opens it, so after `next_channel_after` the Telegram
message follows; a tap on its tracked button stops the chain (no SMS is ever
sent) and a purchase within the window is credited to that Telegram step.
Time is a FakeClock started at the wall time (the outbox and the tracking pages
compare it with real send times), so "4h later" takes milliseconds; the customer
lives where it is noon, under the default quiet hours and caps.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from sqlmodel import col

from gateway.app import App
from gateway.clock import FakeClock
from storage.customers import ConsentIn, Customers
from storage.models import Customer, Delivery, Identity
from tests.e2e.conftest import SandboxFactory, eventually

HOUR = 3600.0
CART = {
    "cart_id": "c-77",
    "items": [{"title": "Кроссовки", "price": 4990}],
    "total": 4990,
    "currency": "RUB",
    "url": "https://shop.example.com/cart/c-77",
}
PUBLIC = "https://shop.example"
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile"


@pytest.fixture
async def flows_app(sandbox_factory: SandboxFactory) -> App:
    """The sandbox (Telegram, VK, Twilio, mail) with the shipped flows, on a FakeClock."""
    return await sandbox_factory(
        clock=FakeClock(datetime.now(UTC).replace(microsecond=0)),
        email_secret="flow-tracking-secret",
        public_url=PUBLIC,  # marketing mail needs an https unsubscribe link (RFC 8058)
    )


async def _api(
    app: App, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bearer test-key"}) as http,
        http.request(method, f"{app.url}{path}", json=body) as response,
    ):
        return response.status, await response.json()


async def _telegram_customer(app: App, chat_id: int) -> int:
    for _ in range(200):
        async with app.db.session() as session:
            identity = await session.scalar(
                sa.select(Identity).where(col(Identity.address) == str(chat_id))
            )
        if identity is not None:
            return identity.customer_id
        await _pause()
    raise AssertionError("the Telegram customer was never stored")


async def _pause() -> None:
    await asyncio.sleep(0.05)


async def _deliveries(app: App, customer_id: int) -> list[Delivery]:
    async with app.db.session() as session:
        return list(
            await session.scalars(
                sa.select(Delivery)
                .where(
                    col(Delivery.customer_id) == customer_id, col(Delivery.purpose) == "marketing"
                )
                .order_by(col(Delivery.id))
            )
        )


def _noon_zone(now: datetime) -> str:
    offset = (12 - now.hour + 11) % 24 - 11  # UTC-11 .. UTC+12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


async def _later(app: App, clock: FakeClock, seconds: float) -> None:
    await clock.advance(seconds)
    await app.flow_engine.tick()
    await app.flow_engine.tick()


async def test_abandoned_cart_email_then_telegram_click_stops_and_purchase_credits(
    flows_app: App,
) -> None:
    app = flows_app
    clock = app.clock
    assert isinstance(clock, FakeClock)
    assert app.sandbox is not None
    assert app.sandbox.mail is not None
    assert app.sandbox.sms is not None
    telegram = app.sandbox.telegram
    telegram.add_user(701, first_name="Анна")
    telegram.user_starts(701)
    customer_id = await _telegram_customer(app, 701)
    async with app.db.session() as session:
        customer = await session.get(Customer, customer_id)
        assert customer is not None
        customer.email = "anna@example.org"
        customer.phone = "+79990001122"
        # Noon where the customer lives, so the default quiet hours (21-09) stay out of it.
        customer.timezone = _noon_zone(clock.now())
        await Customers(session).set_consent(
            customer_id, ConsentIn("*", "marketing", True, source="checkout form")
        )
    await eventually(lambda: telegram.sent_messages(701))  # the bot's greeting
    await eventually(lambda: len(telegram.sent_messages(701)) >= 2 or None)
    greeted = len(telegram.sent_messages(701))

    status, answer = await _api(
        app,
        "POST",
        "/api/events",
        {
            "type": "cart_abandoned",
            "customer": {"id": customer_id},
            "data": CART,
            "occurred_at": clock.now().isoformat(),
        },
    )
    assert status == 202, answer
    # A retried webhook for the same cart starts nothing more.
    await _api(
        app,
        "POST",
        "/api/events",
        {"type": "cart_abandoned", "customer": {"id": customer_id}, "data": CART},
    )

    await _later(app, clock, HOUR)  # the flow's first wait
    mail = await eventually(lambda: app.sandbox.mail.mailboxes.of("anna@example.org"), within=20)
    assert len(mail) == 1
    assert "забыли" in mail[0].subject
    assert len(telegram.sent_messages(701)) == greeted  # nothing on Telegram yet

    await _later(app, clock, 4 * HOUR - 60)
    assert len(telegram.sent_messages(701)) == greeted  # not before next_channel_after
    await _later(app, clock, 60)  # the email was not opened: Telegram is next
    await eventually(lambda: len(telegram.sent_messages(701)) > greeted or None, within=20)
    nudge = telegram.sent_messages(701)[-1]
    assert nudge.reply_markup is not None
    button = nudge.reply_markup["inline_keyboard"][0][0]
    assert "/t/c/" in button["url"]  # a tracked link, leading to the cart

    async def telegram_sent() -> Delivery | None:
        found = [d for d in await _deliveries(app, customer_id) if d.channel == "telegram"]
        return found[0] if found and found[0].sent_at is not None else None

    for _ in range(200):
        if await telegram_sent():
            break
        await _pause()
    await clock.advance(120)  # the customer reads, then taps the button
    async with (
        aiohttp.ClientSession(headers={"User-Agent": BROWSER}) as http,
        # The customer's browser reaches the public URL; here, the process itself.
        http.get(button["url"].replace(PUBLIC, app.url), allow_redirects=False) as response,
    ):
        assert response.status == 302
        assert response.headers["Location"] == CART["url"]

    await _later(app, clock, 5 * HOUR)  # past next_channel_after again: no SMS follows
    channels = [d.channel for d in await _deliveries(app, customer_id)]
    assert channels == ["email", "telegram"]
    assert all(not phone.messages for phone in app.sandbox.sms.phones.known())

    status, answer = await _api(
        app,
        "POST",
        "/api/events",
        {
            "type": "purchase",
            "customer": {"id": customer_id},
            "data": {"amount": 4990, "currency": "RUB"},
            "occurred_at": clock.now().isoformat(),
        },
    )
    assert status == 202, answer
    status, flows = await _api(app, "GET", f"/api/customers/{customer_id}/flows")
    assert status == 200
    [run] = [r for r in flows["runs"] if r["flow"] == "abandoned_cart"]
    assert run["status"] == "converted"
    assert run["conversion"]["channel"] == "telegram"
    assert run["conversion"]["step"] == "cart_nudge"
    assert run["conversion"]["amount"] == "4990.0000"
    outcomes = [(s["channel"], s["outcome"]) for s in run["steps"] if s["channel"]]
    assert outcomes == [
        ("email", "sent"),
        ("email", "expired"),
        ("telegram", "sent"),
        ("telegram", "engaged"),
    ]

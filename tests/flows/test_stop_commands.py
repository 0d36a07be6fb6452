"""/stop and /start in Telegram and VK stop and restore messages on that channel, confirmed."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import col

from flows.policies import consent_refusal
from gateway.broker.memory import MemoryBroker
from gateway.channels import Inbound
from gateway.outbox import Outbox
from gateway.router import Router
from gateway.stop_commands import COMMAND_REPLIES
from storage.db import Database
from storage.models import Consent, Delivery, Identity
from tests.flows.engine_world import ACCOUNTS, StubAdapter


def _router(db: Database) -> Router:
    outbox = Outbox(db, MemoryBroker(), [StubAdapter(c, a) for c, a in ACCOUNTS.items()])
    return Router(db, outbox=outbox)


async def _customer(db: Database, channel: str, address: str) -> int:
    async with db.session() as session:
        identity = await session.scalar(
            sa.select(Identity).where(
                col(Identity.channel) == channel, col(Identity.address) == address
            )
        )
        assert identity is not None
        return identity.customer_id


async def _replies(db: Database, address: str) -> list[str]:
    async with db.session() as session:
        rows = await session.scalars(
            sa.select(Delivery).where(col(Delivery.address) == address).order_by(col(Delivery.id))
        )
        return [d.payload["text"] for d in rows]


async def test_telegram_stop_and_start(database: Database) -> None:
    router = _router(database)
    await router.inbound(
        Inbound("telegram", ACCOUNTS["telegram"], "501", text="/stop", external_id="501:1")
    )
    customer = await _customer(database, "telegram", "501")
    assert await _replies(database, "501") == [COMMAND_REPLIES["stop"]]
    async with database.session() as session:
        assert await consent_refusal(session, customer, "telegram", "transactional") == (
            "the customer stopped all messages on telegram"
        )
        assert await consent_refusal(session, customer, "email", "transactional") is None
        consents = {
            (c.channel, c.purpose): c.granted
            for c in await session.scalars(
                sa.select(Consent).where(col(Consent.customer_id) == customer)
            )
        }
    assert consents == {("telegram", "marketing"): False, ("telegram", "transactional"): False}

    await router.inbound(
        Inbound("telegram", ACCOUNTS["telegram"], "501", text="/start", external_id="501:2")
    )
    assert (await _replies(database, "501"))[-1] == COMMAND_REPLIES["start"]
    async with database.session() as session:
        assert await consent_refusal(session, customer, "telegram", "marketing") is None


async def test_a_first_start_is_a_greeting_not_a_subscription(database: Database) -> None:
    router = _router(database)
    await router.inbound(
        Inbound("telegram", ACCOUNTS["telegram"], "502", text="/start", external_id="502:1")
    )
    customer = await _customer(database, "telegram", "502")
    async with database.session() as session:
        count = await session.scalar(
            sa.select(sa.func.count())
            .select_from(Consent)
            .where(col(Consent.customer_id) == customer)
        )
    assert count == 0
    assert COMMAND_REPLIES["start"] not in await _replies(database, "502")


async def test_vk_stop_is_confirmed_and_sms_stop_still_works(database: Database) -> None:
    router = _router(database)
    await router.inbound(Inbound("vk", ACCOUNTS["vk"], "9001", text=" /Stop ", external_id="1"))
    assert await _replies(database, "9001") == [COMMAND_REPLIES["stop"]]
    await router.inbound(
        Inbound(
            "sms",
            ACCOUNTS["sms"],
            "+79990000003",
            text="STOP",
            external_id="s1",
            meta={"sms_keyword": "stop"},
        )
    )
    sms_customer = await _customer(database, "sms", "+79990000003")
    async with database.session() as session:
        assert await consent_refusal(session, sms_customer, "sms", "marketing") is not None
        assert await consent_refusal(session, sms_customer, "sms", "transactional") is None

"""/api/conversations: list, read, and act as a manager from a CRM (gateway/api/conversations.py).

A real outbox stages what the desk decides (nothing is started, so nothing is
sent): the tests read the stored messages and deliveries a customer and the
managers' topic would get.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col

from gateway.api import API_APP, setup_api
from gateway.api.conversations import DESK
from gateway.broker import make_broker
from gateway.clock import SystemClock
from gateway.desk import Desk, Mirror
from gateway.outbox import Outbox
from storage.conversations import Conversations
from storage.db import Database
from storage.identities import Identities
from storage.models import ConversationMode, Delivery, Identity, Message, utcnow
from tests.api.conftest import AUTH, Client, add_message, create

GROUP = -1001234567890


@pytest.fixture
async def desk_api(database: Database) -> AsyncIterator[Client]:
    """The API with a desk whose managers' group copies are staged in the store."""
    outbox = Outbox(database, make_broker(None))
    mirror = Mirror(outbox, chat_id=GROUP, account="bot", clock=SystemClock())
    outbox.on_stage(mirror.outbound)
    app = web.Application()
    setup_api(app, db=database, api_key="s3cret-api-key", region="RU")
    app[API_APP][DESK] = Desk(database, outbox, mirror, clock=SystemClock())
    async with TestClient(TestServer(app), headers=AUTH) as client:
        yield client


async def _customer_on_vk_and_telegram(db: Database, api: Client) -> tuple[int, int]:
    """A customer who wrote on VK last and is known on Telegram too; (customer, conversation)."""
    customer = await create(api, name="Анна Петрова", external_id="crm-1")
    async with db.session() as s:
        for channel, address in (("telegram", "501"), ("vk", "7001")):
            s.add(
                Identity(
                    customer_id=customer["id"], channel=channel, account="bot", address=address
                )
            )
    await add_message(
        db,
        customer["id"],
        channel="vk",
        direction="in",
        author="customer",
        text="нужна помощь",
        sent_at=utcnow(),
    )
    async with db.session() as s:
        conversation = await Conversations(s).open_for(customer["id"])
    assert conversation.id is not None
    return customer["id"], conversation.id


async def _deliveries(db: Database, **where: Any) -> list[tuple[Delivery, Message]]:
    async with db.session() as s:
        rows = await s.execute(
            sa.select(Delivery, Message)
            .join(Message, col(Message.id) == col(Delivery.message_id))
            .where(*(getattr(Delivery, k) == v for k, v in where.items()))
            .order_by(col(Delivery.id))
        )
        return [(d, m) for d, m in rows.all()]


async def test_assign_takes_it_tells_the_customer_and_opens_the_topic(
    database: Database, desk_api: Client
) -> None:
    _, conversation_id = await _customer_on_vk_and_telegram(database, desk_api)
    listed = await (await desk_api.get("/api/conversations?status=bot")).json()
    assert [c["id"] for c in listed["items"]] == [conversation_id]

    response = await desk_api.post(
        f"/api/conversations/{conversation_id}/assign",
        json={"telegram_user_id": 42, "name": "Мария Иванова"},
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["status"] == "manager"
    assert body["assignee_id"] is not None
    mine = await (
        await desk_api.get(f"/api/conversations?status=manager&assignee={body['assignee_id']}")
    ).json()
    assert [c["id"] for c in mine["items"]] == [conversation_id]
    assert (await (await desk_api.get("/api/conversations?status=bot")).json())["items"] == []

    told = await _deliveries(database, channel="vk", address="7001")
    assert [m.text for _, m in told] == [
        "К диалогу подключился менеджер Мария. Он видит всю переписку — продолжайте здесь."
    ]
    topic = [d.payload["text"] for d, _ in await _deliveries(database, address=str(GROUP))]
    assert "Анна Петрова" in topic[0]  # the card opens the topic...
    assert "нужна помощь" in topic[0]  # ...with the history
    assert any("подключился менеджер" in t for t in topic)
    assert any("взял(а) диалог" in t for t in topic)


async def test_a_crm_message_goes_to_the_last_channel_or_the_next_reachable_one(
    database: Database, desk_api: Client
) -> None:
    customer_id, conversation_id = await _customer_on_vk_and_telegram(database, desk_api)
    url = f"/api/conversations/{conversation_id}/messages"
    response = await desk_api.post(url, json={"telegram_user_id": 42, "text": "Добрый день!"})
    assert response.status == 201, await response.text()
    sent = await response.json()
    assert sent["conversation"]["status"] == "manager"  # a reply takes the conversation
    on_vk = await _deliveries(database, channel="vk", address="7001")
    assert [m.text for _, m in on_vk][-1] == "Добрый день!"
    assert on_vk[-1][1].author == "manager"

    # VK failed finally (the customer blocked us there): the next reply goes to Telegram.
    async with database.session() as s:
        identities = Identities(s)
        vk = next(i for i in await identities.for_customer(customer_id) if i.channel == "vk")
        assert vk.id is not None
        await identities.mark_unreachable(vk.id, "blocked")
    response = await desk_api.post(url, json={"telegram_user_id": 42, "text": "Вы тут?"})
    assert response.status == 201, await response.text()
    on_telegram = await _deliveries(database, channel="telegram", address="501")
    assert [m.text for _, m in on_telegram] == ["Вы тут?"]
    topic = [d.payload["text"] for d, _ in await _deliveries(database, address=str(GROUP))]
    assert any("blocked" in t and "[Telegram]" in t for t in topic)


async def test_release_and_close(database: Database, desk_api: Client) -> None:
    _, conversation_id = await _customer_on_vk_and_telegram(database, desk_api)
    who = {"telegram_user_id": 42}
    await desk_api.post(f"/api/conversations/{conversation_id}/assign", json=who)
    released = await desk_api.post(f"/api/conversations/{conversation_id}/release", json=who)
    assert (await released.json())["status"] == "bot"
    told = [m.text for _, m in await _deliveries(database, channel="vk", address="7001")]
    assert "с вами снова бот" in told[-1]
    closed = await desk_api.post(f"/api/conversations/{conversation_id}/close", json=who)
    assert (await closed.json())["status"] == "closed"
    detail = await (await desk_api.get(f"/api/conversations/{conversation_id}")).json()
    assert detail["status"] == "closed"
    assert detail["messages"][0]["text"] == "нужна помощь"
    async with database.session() as s:
        assert (await Conversations(s).get(conversation_id)).mode == ConversationMode.closed


async def test_clear_errors_and_nothing_done(database: Database, desk_api: Client) -> None:
    _, conversation_id = await _customer_on_vk_and_telegram(database, desk_api)
    url = f"/api/conversations/{conversation_id}"
    no_key = await desk_api.post(
        url + "/assign", json={"telegram_user_id": 1}, headers={"Authorization": "Bearer nope"}
    )
    assert no_key.status == 401
    nobody = await desk_api.post(url + "/messages", json={"text": "hi"})
    assert nobody.status == 422
    assert "manager_id or telegram_user_id" in (await nobody.json())["message"] + str(
        (await nobody.json())["detail"]
    )
    empty = await desk_api.post(url + "/messages", json={"telegram_user_id": 1, "text": "  "})
    assert empty.status == 422
    missing = await desk_api.post("/api/conversations/999999/assign", json={"telegram_user_id": 1})
    assert missing.status == 404
    assert (await missing.json())["error"] == "not_found"
    bad = await desk_api.get("/api/conversations?status=sleeping")
    assert bad.status == 422
    async with database.session() as s:
        assert (await Conversations(s).get(conversation_id)).mode == ConversationMode.bot
    assert await _deliveries(database, channel="vk") == []


async def test_the_endpoints_are_in_the_openapi_document(desk_api: Client) -> None:
    paths = (await (await desk_api.get("/api/openapi.json")).json())["paths"]
    assert "/api/conversations" in paths
    assert "post" in paths["/api/conversations/{id}/messages"]
    for action in ("assign", "release", "close"):
        assert "post" in paths[f"/api/conversations/{{id}}/{action}"]

"""An API client on a fresh store: the app the composition root builds, minus the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.api import setup_api
from storage.conversations import Conversations
from storage.db import Database
from storage.messages import Messages, NewMessage
from storage.models import Delivery, Identity, utcnow

API_KEY = "s3cret-api-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}

Client = TestClient[web.Request, web.Application]


def make_app(db: Database) -> web.Application:
    app = web.Application()
    setup_api(app, db=db, api_key=API_KEY, region="RU")
    return app


async def _client(db: Database) -> AsyncIterator[Client]:
    async with TestClient(TestServer(make_app(db)), headers=AUTH) as client:
        yield client


@pytest.fixture
async def api(database: Database) -> AsyncIterator[Client]:
    """An authenticated client, on SQLite and on PostgreSQL."""
    async for client in _client(database):
        yield client


@pytest.fixture
async def sqlite_api(sqlite_database: Database) -> AsyncIterator[Client]:
    """An authenticated client on SQLite, for tests about the HTTP surface."""
    async for client in _client(sqlite_database):
        yield client


async def create(api: Client, **fields: Any) -> dict[str, Any]:
    """A new customer's profile; fails the test unless it was created."""
    response = await api.post("/api/customers", json=fields)
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def add_identity(
    db: Database, customer_id: int, channel: str, address: str, name: str | None = None
) -> None:
    """An address of `channel` linked to the customer, as linking on proof would."""
    async with db.session() as s:
        s.add(
            Identity(
                customer_id=customer_id,
                channel=channel,
                account="bot",
                address=address,
                display_name=name,
                last_seen_at=utcnow(),
            )
        )


async def add_message(
    db: Database,
    customer_id: int,
    *,
    channel: str,
    direction: str,
    author: str,
    text: str,
    sent_at: datetime,
    delivery_status: str | None = None,
) -> int:
    """A stored message (and its delivery, for outbound ones); its id."""
    async with db.session() as s:
        conversation = await Conversations(s).open_for(customer_id)
        assert conversation.id is not None
        message, _ = await Messages(s).append(
            NewMessage(
                conversation_id=conversation.id,
                customer_id=customer_id,
                channel=channel,
                direction=direction,
                author=author,
                text=text,
                sent_at=sent_at,
                attachments=[{"type": "photo", "url": "https://example.com/a.jpg"}]
                if channel == "telegram"
                else [],
            )
        )
        assert message.id is not None
        if delivery_status is not None:
            s.add(
                Delivery(
                    message_id=message.id,
                    customer_id=customer_id,
                    channel=channel,
                    address="x",
                    status=delivery_status,
                )
            )
        return message.id

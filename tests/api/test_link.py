"""POST /api/customers/{id}/link: continuation links, and merges made by following one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from gateway.api.state import API_APP, LINKER
from gateway.broker.memory import MemoryBroker
from gateway.channels import Inbound
from gateway.clock import FakeClock
from gateway.linking import ContinuationChannels, Linker
from gateway.outbox import Outbox
from gateway.router import Router
from storage.db import Database
from storage.models import Merge
from tests.api.conftest import AUTH, Client, create, make_app

CHANNELS = ContinuationChannels(telegram_username="shop_bot", vk_group_id=42)


def _linker(db: Database, channels: ContinuationChannels = CHANNELS) -> Linker:
    return Linker(Outbox(db, MemoryBroker()), clock=FakeClock(), channels=channels)


@pytest.fixture
async def linked_api(database: Database) -> AsyncIterator[Client]:
    """The API with a linker for a Telegram bot and a VK community, on both stores."""
    app = make_app(database)
    app[API_APP][LINKER] = _linker(database)
    async with TestClient(TestServer(app), headers=AUTH) as client:
        yield client


async def test_links_come_keyed_by_configured_channel(linked_api: Client) -> None:
    anna = await create(linked_api, name="Anna", phone="+79991234567")
    response = await linked_api.post(f"/api/customers/{anna['id']}/link")
    assert response.status == 200
    assert response.content_type == "application/json"
    links = await response.json()
    assert set(links) == {"telegram", "vk"}  # exactly the channels the company has
    assert re.fullmatch(r"https://t\.me/shop_bot\?start=[A-Za-z0-9_-]{22,64}", links["telegram"])
    assert re.fullmatch(r"https://vk\.me/club42\?ref=[A-Za-z0-9_-]{22,}", links["vk"])

    again = await (await linked_api.post(f"/api/customers/{anna['id']}/link")).json()
    assert again["telegram"] != links["telegram"]  # each call a fresh single-use token


async def test_every_channel_the_company_has_gets_a_link(sqlite_database: Database) -> None:
    app = make_app(sqlite_database)
    app[API_APP][LINKER] = _linker(
        sqlite_database,
        ContinuationChannels(
            telegram_username="shop_bot",
            vk_group_id=42,
            email_domain="shop.example",
            sms_number="+79990000000",
        ),
    )
    async with TestClient(TestServer(app), headers=AUTH) as api:
        anna = await create(api, name="Anna", email="anna@example.ru")
        links = await (await api.post(f"/api/customers/{anna['id']}/link")).json()
    assert list(links) == ["telegram", "vk", "email", "sms"]
    assert re.fullmatch(r"mailto:reply\+[0-9a-f]{32}@shop\.example\?subject=.+", links["email"])
    sms = urlsplit(links["sms"])
    assert (sms.scheme, sms.path) == ("sms", "+79990000000")
    assert re.search(r"[0-9a-f]{32}", parse_qs(sms.query)["body"][0])


async def test_an_unknown_customer_is_404_and_the_key_is_required(linked_api: Client) -> None:
    response = await linked_api.post("/api/customers/999999/link")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
    anna = await create(linked_api, name="Anna", email="anna@example.ru")
    anonymous = await linked_api.post(
        f"/api/customers/{anna['id']}/link", headers={"Authorization": "Bearer wrong"}
    )
    assert anonymous.status == 401


async def test_without_a_linker_the_endpoint_says_so(sqlite_api: Client) -> None:
    anna = await create(sqlite_api, name="Anna", email="anna@example.ru")
    response = await sqlite_api.post(f"/api/customers/{anna['id']}/link")
    assert response.status == 503
    assert "linking" in (await response.json())["message"]


async def test_the_openapi_document_describes_the_endpoint(linked_api: Client) -> None:
    document = await (await linked_api.get("/api/openapi.json")).json()
    operation = document["paths"]["/api/customers/{id}/link"]["post"]
    assert operation["operationId"] == "customerLinks"
    assert {"200", "404"} <= set(operation["responses"])
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    ref = schema["$ref"].rsplit("/", 1)[1]
    assert set(document["components"]["schemas"][ref]["properties"]) == {
        "telegram",
        "vk",
        "email",
        "sms",
    }


async def test_a_merge_made_by_following_a_link_is_seen_and_undone_through_the_api(
    database: Database,
) -> None:
    app = make_app(database)
    linker = _linker(database)
    app[API_APP][LINKER] = linker
    router = Router(database, clock=FakeClock(), outbox=Outbox(database, MemoryBroker()))
    router.link_with(linker)

    async def write(
        channel: str, address: str, text: str, n: int, token: str | None = None
    ) -> None:
        await router.inbound(
            Inbound(channel, "bot", address, text=text, external_id=str(n), link_token=token)
        )

    async with TestClient(TestServer(app), headers=AUTH) as api:
        await write("vk", "1001", "Где мой заказ?", 1)
        await write("telegram", "555", "Есть доставка в Казань?", 2)
        found = (await (await api.get("/api/customers?channel=vk")).json())["items"]
        anna = found[0]["id"]
        stranger = (await (await api.get("/api/customers?channel=telegram")).json())["items"][0]
        links = await (await api.post(f"/api/customers/{anna}/link")).json()
        token = parse_qs(urlsplit(links["telegram"]).query)["start"][0]
        await write("telegram", "555", "/start", 3, token)

        profile = await (await api.get(f"/api/customers/{anna}")).json()
        assert sorted(i["channel"] for i in profile["identities"]) == ["telegram", "vk"]
        assert next(i for i in profile["identities"] if i["channel"] == "telegram")["verified"]
        history = await (await api.get(f"/api/customers/{anna}/messages")).json()
        texts = [m["text"] for m in history["items"] if m["direction"] == "in"]
        assert texts == ["Где мой заказ?", "Есть доставка в Казань?", "/start"]
        # The absorbed id answers with the survivor.
        assert (await (await api.get(f"/api/customers/{stranger['id']}")).json())["id"] == anna

        again = await api.post(f"/api/customers/{anna}/merge", json={"other": stranger["id"]})
        assert again.status == 409  # already one customer: the link merged them

        async with database.session() as s:
            [merge] = list(await s.scalars(sa.select(Merge)))
        assert merge.actor == "link:token"
        undo = await api.post(f"/api/merges/{merge.id}/undo")
        assert undo.status == 200, await undo.text()
        body = await undo.json()
        assert body["merge"]["survivor"] == anna
        assert [i["channel"] for i in body["survivor"]["identities"]] == ["vk"]
        assert [i["channel"] for i in body["absorbed"]["identities"]] == ["telegram"]
        back = await (await api.get(f"/api/customers/{stranger['id']}/messages")).json()
        # What came before the merge goes back; the message that proved it stays.
        assert [m["text"] for m in back["items"]] == ["Есть доставка в Казань?"]

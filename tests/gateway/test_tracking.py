"""Open pixel, click redirect and one-click unsubscribe, over HTTP against a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.bridge.email.adapter import unsubscribe_token
from gateway.channels import Signal
from gateway.clock import FakeClock
from gateway.router import Router
from gateway.tracking import (
    click_token,
    click_url,
    machine_agent,
    open_token,
    open_url,
    parse_click_token,
    parse_open_token,
    setup_tracking,
)
from gateway.tracking.routes import PIXEL
from storage.customers import ConsentIn, Customers
from storage.db import Database
from storage.models import Consent, Conversation, Customer, Delivery, Message
from tests.fakes import RecordingSink

SECRET = "tracking-secret-for-tests"
TARGET = "https://shop.example/sale?utm_source=email&item=42#top"
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)
MACHINE_AGENTS = [
    "Mozilla/5.0",  # Apple Mail Privacy Protection
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
    "Mozilla/5.0 (compatible; Barracuda Sentinel)",
    "Proofpoint URL Defense",
    "Mimecast-Url-Protect/1.0",
    "Mozilla/5.0 (compatible; TelegramBot (like TwitterBot))",
    "curl/8.5.0",
    "",
]

Client = TestClient[web.Request, web.Application]


@dataclass
class Shop:
    client: Client
    db: Database
    sink: Any  # RecordingSink or the real Router
    clock: FakeClock
    delivery_id: int
    customer_id: int


async def _seed(db: Database, clock: FakeClock, channel: str) -> tuple[int, int]:
    """A customer subscribed to marketing, and one marketing message sent a minute ago."""
    async with db.session() as session:
        customer = Customer(name="Анна", email="anna@example.com")
        session.add(customer)
        await session.flush()
        assert customer.id is not None
        conversation = Conversation(customer_id=customer.id)
        session.add(conversation)
        await session.flush()
        assert conversation.id is not None
        message = Message(
            conversation_id=conversation.id,
            customer_id=customer.id,
            channel=channel,
            direction="out",
            author="flow",
            text="Распродажа!",
        )
        session.add(message)
        await session.flush()
        assert message.id is not None
        delivery = Delivery(
            message_id=message.id,
            customer_id=customer.id,
            channel=channel,
            account="shop",
            address="anna@example.com" if channel == "email" else "77",
            purpose="marketing",
            status="sent",
            sent_at=clock.now() - timedelta(minutes=1),
        )
        session.add(delivery)
        await Customers(session).set_consent(
            customer.id, ConsentIn(channel, "marketing", True, source="checkout")
        )
        await session.flush()
        assert delivery.id is not None
        return delivery.id, customer.id


@pytest.fixture(params=["email"])
def channel(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _shop(db: Database, sink: Any, clock: FakeClock, channel: str) -> AsyncIterator[Shop]:
    delivery_id, customer_id = await _seed(db, clock, channel)
    app = web.Application()
    setup_tracking(app, db=db, sink=sink, secret=SECRET, clock=clock)
    async with TestClient(TestServer(app)) as client:
        yield Shop(client, db, sink, clock, delivery_id, customer_id)


@pytest.fixture
async def shop(sqlite_database: Database, channel: str) -> AsyncIterator[Shop]:
    """The endpoints with a recording sink: what they hand the router, exactly."""
    async for shop in _shop(sqlite_database, RecordingSink(), FakeClock(), channel):
        yield shop


@pytest.fixture
async def routed(sqlite_database: Database, channel: str) -> AsyncIterator[Shop]:
    """The endpoints with the real router: what becomes of the delivery row."""
    clock = FakeClock()
    router = Router(sqlite_database, clock=clock)
    async for shop in _shop(sqlite_database, router, clock, channel):
        yield shop


async def _delivery(shop: Shop) -> Delivery:
    async with shop.db.session() as session:
        row = await session.get(Delivery, shop.delivery_id)
    assert row is not None
    return row


async def _consent(shop: Shop, channel: str = "email") -> Consent:
    async with shop.db.session() as session:
        consents = await Customers(session).consents(shop.customer_id)
    [found] = [c for c in consents if (c.channel, c.purpose) == (channel, "marketing")]
    return found


def _signals(shop: Shop) -> list[Signal]:
    assert isinstance(shop.sink, RecordingSink)
    return shop.sink.signals


# Tokens


def test_tokens_round_trip_and_never_pass_for_one_another() -> None:
    assert parse_open_token(open_token(7, SECRET), SECRET) == 7
    click = parse_click_token(click_token(7, TARGET, SECRET), SECRET)
    assert click is not None
    assert (click.delivery_id, click.target) == (7, TARGET)
    assert parse_open_token(open_token(7, SECRET), "another secret") is None
    assert parse_open_token(unsubscribe_token(7, SECRET), SECRET) is None
    assert parse_click_token(open_token(7, SECRET), SECRET) is None


@pytest.mark.parametrize(
    "target", ["javascript:alert(1)", "data:text/html,hi", "/relative", "//host/x", "ftp://h/f"]
)
def test_only_absolute_http_links_can_be_tracked(target: str) -> None:
    with pytest.raises(ValueError, match="absolute http"):
        click_token(7, target, SECRET)


@pytest.mark.parametrize("agent", MACHINE_AGENTS)
def test_proxies_and_scanners_are_machines(agent: str) -> None:
    assert machine_agent(agent)


@pytest.mark.parametrize(
    "agent",
    [
        BROWSER,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
        "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 Chrome/120.0 Mobile",
    ],
)
def test_people_are_not_machines(agent: str) -> None:
    assert not machine_agent(agent)


# Open pixel


@pytest.mark.parametrize(
    "token",
    [
        "nonsense",
        "1.AAAAAAAAAAAAAAAAAAAAAA",  # the right shape, a forged signature
        "999999",
        "%00",
    ],
)
async def test_the_pixel_is_a_gif_whatever_the_token(shop: Shop, token: str) -> None:
    response = await shop.client.get(f"/t/o/{token}", headers={"User-Agent": BROWSER})
    assert response.status == 200
    assert response.content_type == "image/gif"
    assert await response.read() == PIXEL
    assert "no-store" in response.headers["Cache-Control"]
    assert _signals(shop) == []


async def test_the_pixel_of_an_unknown_delivery_is_a_gif_too(shop: Shop) -> None:
    response = await shop.client.get(f"/t/o/{open_token(shop.delivery_id + 100, SECRET)}")
    assert (response.status, await response.read()) == (200, PIXEL)
    assert _signals(shop) == []


def test_the_pixel_is_a_transparent_one_by_one_gif() -> None:
    assert PIXEL.startswith(b"GIF89a\x01\x00\x01\x00")
    assert PIXEL.endswith(b";")


async def test_a_person_opening_records_a_read(shop: Shop) -> None:
    url = open_url("https://t.shop.example/", shop.delivery_id, SECRET)
    path = url.removeprefix("https://t.shop.example")
    response = await shop.client.get(path, headers={"User-Agent": BROWSER})
    assert (response.status, await response.read()) == (200, PIXEL)
    assert response.headers["Cache-Control"].startswith("no-store")
    [signal] = _signals(shop)
    assert (signal.kind, signal.channel, signal.delivery_id) == ("read", "email", shop.delivery_id)
    assert signal.machine is False
    assert signal.at == shop.clock.now()


async def test_an_open_seconds_after_sending_is_a_machine(shop: Shop) -> None:
    async with shop.db.session() as session:
        row = await session.get(Delivery, shop.delivery_id)
        assert row is not None
        row.sent_at = shop.clock.now() - timedelta(seconds=3)
    await shop.client.get(
        f"/t/o/{open_token(shop.delivery_id, SECRET)}", headers={"User-Agent": BROWSER}
    )
    [signal] = _signals(shop)
    assert (signal.kind, signal.machine) == ("read", True)


@pytest.mark.parametrize("agent", MACHINE_AGENTS[:4])
async def test_a_mail_proxy_opening_is_a_machine(shop: Shop, agent: str) -> None:
    response = await shop.client.get(
        f"/t/o/{open_token(shop.delivery_id, SECRET)}",
        headers={"User-Agent": agent},
        skip_auto_headers=["User-Agent"],
    )
    assert await response.read() == PIXEL
    [signal] = _signals(shop)
    assert (signal.kind, signal.machine) == ("read", True)


async def test_the_router_records_a_proxy_open_without_counting_it(routed: Shop) -> None:
    token = open_token(routed.delivery_id, SECRET)
    await routed.client.get(f"/t/o/{token}", headers={"User-Agent": "Mozilla/5.0"})
    row = await _delivery(routed)
    assert (row.status, row.read_at) == ("sent", None)
    assert "machine_read_at" in row.payload
    await routed.client.get(f"/t/o/{token}", headers={"User-Agent": BROWSER})
    row = await _delivery(routed)
    assert (row.status, row.read_at) == ("read", routed.clock.now())


# Click redirect


@pytest.mark.parametrize("channel", ["telegram"], indirect=True)
async def test_a_click_redirects_to_exactly_the_signed_url(shop: Shop) -> None:
    url = click_url("https://t.shop.example", shop.delivery_id, TARGET, SECRET)
    path = url.removeprefix("https://t.shop.example")
    response = await shop.client.get(path, headers={"User-Agent": BROWSER}, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == TARGET
    [signal] = _signals(shop)
    assert (signal.kind, signal.channel, signal.delivery_id) == (
        "clicked",
        "telegram",  # the delivery's channel: tracked links go out in messengers too
        shop.delivery_id,
    )
    assert signal.machine is False


async def test_a_tampered_link_is_not_found_and_records_nothing(shop: Shop) -> None:
    good = click_token(shop.delivery_id, TARGET, SECRET)
    evil = click_token(shop.delivery_id, "https://evil.example/", SECRET)
    delivery, _, signature = good.split(".")
    _, evil_target, _ = evil.split(".")
    tampered = [
        f"{delivery}.{evil_target}.{signature}",  # another target under our signature
        f"{int(delivery) + 1}.{good.split('.')[1]}.{signature}",  # another delivery
        f"{delivery}.{good.split('.')[1]}.{'A' * 22}",  # a forged signature
        open_token(shop.delivery_id, SECRET),
        "nonsense",
    ]
    for token in tampered:
        response = await shop.client.get(f"/t/c/{token}", allow_redirects=False)
        assert response.status == 404, token
        assert "Location" not in response.headers
    assert _signals(shop) == []


async def test_a_head_request_is_a_scanner(shop: Shop) -> None:
    response = await shop.client.head(
        f"/t/c/{click_token(shop.delivery_id, TARGET, SECRET)}",
        headers={"User-Agent": BROWSER},
        allow_redirects=False,
    )
    assert response.status == 302
    [signal] = _signals(shop)
    assert (signal.kind, signal.machine) == ("clicked", True)


async def test_a_click_seconds_after_sending_is_a_scanner(shop: Shop) -> None:
    async with shop.db.session() as session:
        row = await session.get(Delivery, shop.delivery_id)
        assert row is not None
        row.sent_at = shop.clock.now() - timedelta(seconds=2)
    await shop.client.get(
        f"/t/c/{click_token(shop.delivery_id, TARGET, SECRET)}",
        headers={"User-Agent": BROWSER},
        allow_redirects=False,
    )
    [signal] = _signals(shop)
    assert signal.machine is True


async def test_the_router_moves_a_clicked_delivery_forward(routed: Shop) -> None:
    response = await routed.client.get(
        f"/t/c/{click_token(routed.delivery_id, TARGET, SECRET)}",
        headers={"User-Agent": BROWSER},
        allow_redirects=False,
    )
    assert response.status == 302
    row = await _delivery(routed)
    assert (row.status, row.clicked_at) == ("clicked", routed.clock.now())


class BrokenSink(RecordingSink):
    async def signal(self, signal: Signal) -> None:
        raise RuntimeError("the store is down")


async def test_a_failing_router_never_breaks_the_pixel_or_the_link(
    sqlite_database: Database,
) -> None:
    async for shop in _shop(sqlite_database, BrokenSink(), FakeClock(), "email"):
        pixel = await shop.client.get(f"/t/o/{open_token(shop.delivery_id, SECRET)}")
        assert (pixel.status, await pixel.read()) == (200, PIXEL)
        click = await shop.client.get(
            f"/t/c/{click_token(shop.delivery_id, TARGET, SECRET)}", allow_redirects=False
        )
        assert (click.status, click.headers["Location"]) == (302, TARGET)


# Unsubscribe


async def test_opening_the_unsubscribe_link_only_shows_a_button(shop: Shop) -> None:
    response = await shop.client.get(f"/unsubscribe/{unsubscribe_token(shop.delivery_id, SECRET)}")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert '<form method="post">' in page
    assert 'type="submit"' in page
    consent = await _consent(shop)
    assert (consent.granted, consent.source) == (True, "checkout")
    assert _signals(shop) == []


async def test_one_click_post_withdraws_marketing_consent(shop: Shop) -> None:
    response = await shop.client.post(
        f"/unsubscribe/{unsubscribe_token(shop.delivery_id, SECRET)}",
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 200
    assert "отписались" in await response.text()
    consent = await _consent(shop)
    assert (consent.granted, consent.source) == (False, "unsubscribe link")
    [signal] = _signals(shop)
    assert (signal.kind, signal.channel, signal.delivery_id) == (
        "unsubscribed",
        "email",
        shop.delivery_id,
    )


@pytest.mark.parametrize("channel", ["sms"], indirect=True)
async def test_the_button_withdraws_consent_on_the_deliverys_channel(shop: Shop) -> None:
    token = unsubscribe_token(shop.delivery_id, SECRET)
    response = await shop.client.post(
        f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status == 200
    again = await shop.client.post(f"/unsubscribe/{token}")
    assert again.status == 200  # a second press changes nothing and still says done
    assert (await _consent(shop, "sms")).granted is False


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_bad_unsubscribe_token_is_not_found(shop: Shop, method: str) -> None:
    for token in [
        "nonsense",
        f"{shop.delivery_id}.AAAAAAAAAAAAAAAAAAAAAA",
        open_token(shop.delivery_id, SECRET),
        unsubscribe_token(shop.delivery_id, "another secret"),
        unsubscribe_token(shop.delivery_id + 100, SECRET),  # signed, but no such delivery
    ]:
        response = await shop.client.request(method, f"/unsubscribe/{token}")
        assert response.status == 404, token
        assert response.content_type == "text/html"
    assert (await _consent(shop)).granted is True
    assert _signals(shop) == []


def test_an_empty_secret_fails_at_start(sqlite_database: Database) -> None:
    with pytest.raises(ValueError, match="secret"):
        setup_tracking(web.Application(), db=sqlite_database, sink=RecordingSink(), secret="")

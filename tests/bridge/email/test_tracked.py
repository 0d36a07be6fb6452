"""tracked.py: outgoing mail's links and pixel, followed through the real /t/ endpoints.

A mail goes out through the outbox and the adapter to the relay; its links are
then opened over HTTP against setup_tracking's routes, and the delivery row
tells what the shop would see: machine hits kept apart, people counted.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from email.message import Message as MailMessage

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.bridge.email.tracked import Tracker
from gateway.tracking import parse_click_token, setup_tracking
from storage.customers import ConsentIn, Customers
from storage.models import Delivery, Message
from tests.bridge.email.conftest import ROOM_PUBLIC_URL, ROOM_SECRET, Mailroom
from tests.bridge.email.test_threads import letter

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
APPLE_PROXY = "Mozilla/5.0"
SAFE_LINKS = "Mozilla/5.0 (compatible; Microsoft SafeLinks scanner)"
SALE = "https://shop.example/sale?item=42&utm_source=email"
PROMO_HTML = (
    "<html><body><h1>Скидки!</h1>"
    f'<p><a href="{html.escape(SALE)}">Смотреть</a> или '
    "<a href='mailto:help@shop.example'>написать нам</a></p></body></html>"
)
PROMO_TEXT = f"Скидки! Смотреть: {SALE}."


def parts(mail: MailMessage) -> tuple[str, str]:
    plain = mail.get_body(preferencelist=("plain",))
    rich = mail.get_body(preferencelist=("html",))
    assert plain is not None
    assert rich is not None
    return str(plain.get_content()), str(rich.get_content())


@pytest.fixture
async def web_of(mailroom: Mailroom) -> AsyncIterator[str]:
    """The tracking endpoints on a real HTTP server; the public URL is mapped to it."""
    app = web.Application()
    setup_tracking(
        app, db=mailroom.db, sink=mailroom.router, secret=ROOM_SECRET, clock=mailroom.clock
    )
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def hit(base: str, url: str, agent: str, method: str = "GET") -> aiohttp.ClientResponse:
    assert url.startswith(ROOM_PUBLIC_URL)
    local = base + url[len(ROOM_PUBLIC_URL) :]
    async with aiohttp.ClientSession() as http:
        response = await http.request(
            method, local, headers={"User-Agent": agent}, allow_redirects=False
        )
        await response.read()
        return response


async def row(mailroom: Mailroom, delivery_id: int | None) -> Delivery:
    async with mailroom.db.session() as session:
        found = await session.get(Delivery, delivery_id)
    assert found is not None
    return found


async def promo(mailroom: Mailroom) -> tuple[Delivery, str, str]:
    await mailroom.receive(letter("anna@mail.example", "<hi@mail.example>", "Здравствуйте"))
    async with mailroom.db.session() as session:
        first = await session.get(Message, 1)
        assert first is not None
        await Customers(session).set_consent(
            first.customer_id, ConsentIn("email", "marketing", True, source="checkout")
        )
    delivery, mail = await mailroom.answer(
        first.conversation_id, text=PROMO_TEXT, html=PROMO_HTML, purpose="marketing"
    )
    text, rich = parts(mail)
    return delivery, text, rich


async def test_links_and_pixel_are_tracked_and_people_are_told_from_machines(
    mailroom: Mailroom, web_of: str
) -> None:
    delivery, text, rich = await promo(mailroom)
    [click] = re.findall(r'href="([^"]*/t/c/[^"]*)"', rich)
    [pixel] = re.findall(r'<img src="([^"]*/t/o/[^"]*)"', rich)
    [text_click] = [u.rstrip(".") for u in re.findall(r"https://\S*/t/c/[\w.-]+", text)]
    click, pixel = html.unescape(click), html.unescape(pixel)
    assert "mailto:help@shop.example" in rich  # not a web link: left alone
    assert SALE not in rich  # the target travels signed, never in the clear
    assert text.rstrip().splitlines()[-1].startswith("Отписаться от рассылки: https://")

    # Seconds after sending: a scanner or a proxy, whatever it claims to be.
    await hit(web_of, pixel, BROWSER)
    assert (await row(mailroom, delivery.id)).status == "sent"
    await mailroom.clock.advance(120)
    for agent in (APPLE_PROXY, SAFE_LINKS):
        await hit(web_of, pixel, agent)
        answer = await hit(web_of, click, agent)
        assert answer.status == 302
    machine = await row(mailroom, delivery.id)
    assert machine.status == "sent"
    assert machine.read_at is None
    assert "machine_read_at" in machine.payload
    assert "machine_clicked_at" in machine.payload

    # A person opens the mail, then follows the link: read, then clicked.
    gif = await hit(web_of, pixel, BROWSER)
    assert gif.content_type == "image/gif"
    assert (await row(mailroom, delivery.id)).status == "read"
    answer = await hit(web_of, text_click, BROWSER)
    assert answer.status == 302
    assert answer.headers["Location"] == SALE
    clicked = await row(mailroom, delivery.id)
    assert clicked.status == "clicked"
    assert clicked.clicked_at == mailroom.clock.now()


async def test_the_unsubscribe_link_in_the_body_asks_before_it_unsubscribes(
    mailroom: Mailroom, web_of: str
) -> None:
    delivery, text, rich = await promo(mailroom)
    link = text.rstrip().splitlines()[-1].split(": ", 1)[1]
    assert f'href="{html.escape(link)}"' in rich  # the same link, not a tracked redirect

    page = await hit(web_of, link, SAFE_LINKS)  # a scanner follows it: nothing happens
    assert page.status == 200
    assert await _marketing(mailroom, delivery) is True
    done = await hit(web_of, link, BROWSER, method="POST")
    assert done.status == 200
    assert await _marketing(mailroom, delivery) is False


async def _marketing(mailroom: Mailroom, delivery: Delivery) -> bool:
    async with mailroom.db.session() as session:
        consents = await Customers(session).consents(delivery.customer_id)
    [found] = [c for c in consents if (c.channel, c.purpose) == ("email", "marketing")]
    return found.granted


def test_html_links_are_rewritten_with_entities_and_quotes_handled() -> None:
    tracker = Tracker("https://t.example", "secret")
    body = (
        '<p><a class="b" href="https://a.example/x?p=1&amp;q=2">one</a>'
        "<A HREF='http://b.example/'>two</A>"
        '<a href="https://t.example/unsubscribe/1.x">own page</a>'
        '<a href="#top">anchor</a> <a href="javascript:alert(1)">js</a></p>'
    )
    out = tracker.html(7, body)
    targets = [
        parse_click_token(html.unescape(u).rsplit("/", 1)[1], "secret")
        for u in re.findall(r'href="(https://t\.example/t/c/[^"]*)"', out, re.IGNORECASE)
    ]
    assert [(t.delivery_id, t.target) for t in targets if t] == [
        (7, "https://a.example/x?p=1&q=2"),
        (7, "http://b.example/"),
    ]
    assert 'href="https://t.example/unsubscribe/1.x"' in out
    assert 'href="#top"' in out
    assert 'href="javascript:alert(1)"' in out
    # No </body>: the pixel goes at the end.
    assert re.search(r'<img src="https://t\.example/t/o/7\.[^"]+" width="1" height="1"[^>]*>$', out)


def test_text_links_keep_their_trailing_punctuation_outside() -> None:
    tracker = Tracker("https://t.example", "secret")
    out = tracker.text(3, "See https://a.example/x. Or (https://b.example/wiki_(a)), ok?")
    urls = re.findall(r"https://t\.example/t/c/[A-Za-z0-9._-]+", out)
    tokens = [parse_click_token(u.rstrip(".").rsplit("/", 1)[1], "secret") for u in urls]
    assert [t.target for t in tokens if t] == ["https://a.example/x", "https://b.example/wiki_(a)"]
    assert out.count(". Or (") == 1
    assert out.endswith("), ok?")  # the wrapping bracket stays outside the link

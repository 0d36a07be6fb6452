"""The tracking endpoints: open pixel, click redirect, one-click unsubscribe.

Scanners fetch every image and follow every link, so nothing here changes
anything on GET except a flagged signal: unsubscribing takes a POST (RFC 8058).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from gateway.channels import Signal, SignalKind, Sink
from gateway.clock import Clock, SystemClock
from gateway.tracking.machines import is_machine
from gateway.tracking.tokens import parse_click_token, parse_open_token, parse_unsubscribe_token
from storage.customers import ConsentIn, Customers
from storage.db import Database
from storage.errors import NotFound
from storage.models import Delivery

__all__ = ["PIXEL", "setup_tracking"]

log = logging.getLogger("chatgate.tracking")

# The smallest transparent GIF: 1×1, one transparent colour.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00"
    b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private",
    "Pragma": "no-cache",
    "Expires": "0",
}
PAGE_HEADERS = {**NO_CACHE, "X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}

_PAGE = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto; padding: 0 1em">
<h1 style="font-size: 1.4em">{title}</h1>
{body}
</body></html>
"""
_FORM = """<p>Вы больше не будете получать рекламные рассылки на этот адрес.
Сервисные сообщения о ваших заказах продолжат приходить.</p>
<form method="post">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit" style="font-size: 1em; padding: .5em 1.2em">Отписаться</button>
</form>"""


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    return web.Response(
        text=_PAGE.format(title=title, body=body),
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=PAGE_HEADERS,
    )


def _not_found() -> web.Response:
    return _page(
        "Ссылка не работает",
        "<p>Ссылка устарела или повреждена. Скопируйте её из письма целиком.</p>",
        status=404,
    )


@dataclass(frozen=True, slots=True)
class _Hit:
    """What we know of the delivery a hit is about."""

    channel: str
    machine: bool


class Tracking:
    """The endpoints' shared state: the store, the router, the secret, the clock."""

    def __init__(
        self,
        db: Database,
        sink: Sink,
        secret: str,
        clock: Clock,
        machine_window: timedelta,
    ) -> None:
        self.db = db
        self.sink = sink
        self.secret = secret
        self.clock = clock
        self.machine_window = machine_window

    async def open_pixel(self, request: web.Request) -> web.Response:
        """A transparent GIF for every token, valid or not; a valid one records a read."""
        delivery_id = parse_open_token(request.match_info["token"], self.secret)
        if delivery_id is not None:
            await self._record("read", delivery_id, request)
        return web.Response(body=PIXEL, content_type="image/gif", headers=NO_CACHE)

    async def click(self, request: web.Request) -> web.Response:
        """302 to the signed target, recording the click; anything tampered with is a 404."""
        click = parse_click_token(request.match_info["token"], self.secret)
        if click is None:
            return _not_found()
        await self._record("clicked", click.delivery_id, request)
        return web.Response(
            status=302,
            headers={**NO_CACHE, "Location": click.target, "Referrer-Policy": "no-referrer"},
        )

    async def unsubscribe_page(self, request: web.Request) -> web.Response:
        """A page with a button: scanners follow links, so GET never unsubscribes."""
        delivery = await self._delivery(request)
        if delivery is None:
            return _not_found()
        return _page("Отписаться от рассылки?", _FORM)

    async def unsubscribe(self, request: web.Request) -> web.Response:
        """RFC 8058 one-click, or the page's button: withdraw marketing consent."""
        delivery_id = parse_unsubscribe_token(request.match_info["token"], self.secret)
        if delivery_id is None:
            return _not_found()
        async with self.db.session() as session:
            delivery = await session.get(Delivery, delivery_id)
            if delivery is None:
                return _not_found()
            channel = delivery.channel
            customers = Customers(session)
            try:
                # A merged customer's consent lives on the one it was merged into.
                customer = await customers.get(delivery.customer_id)
            except NotFound:
                customer = None  # erased: nothing left to send to
            if customer is not None and customer.id is not None:
                await customers.set_consent(
                    customer.id,
                    ConsentIn(channel, "marketing", False, source="unsubscribe link"),
                )
        log.info("tracking.unsubscribed", extra={"delivery_id": delivery_id, "channel": channel})
        await self._signal(
            Signal(
                kind="unsubscribed",
                channel=channel,
                delivery_id=delivery_id,
                at=self.clock.now(),
            )
        )
        return _page(
            "Вы отписались",
            "<p>Мы больше не будем присылать вам рекламные рассылки на этот адрес.</p>",
        )

    async def _delivery(self, request: web.Request) -> Delivery | None:
        delivery_id = parse_unsubscribe_token(request.match_info["token"], self.secret)
        if delivery_id is None:
            return None
        async with self.db.session() as session:
            return await session.get(Delivery, delivery_id)

    async def _record(self, kind: SignalKind, delivery_id: int, request: web.Request) -> None:
        """Hand the signal to the router; a failure here never breaks the pixel or link."""
        try:
            hit = await self._hit(delivery_id, request)
            if hit is None:
                log.info("tracking.unknown_delivery", extra={"delivery_id": delivery_id})
                return
            await self.sink.signal(
                Signal(
                    kind=kind,
                    channel=hit.channel,
                    delivery_id=delivery_id,
                    at=self.clock.now(),
                    machine=hit.machine,
                    detail=request.headers.get("User-Agent", "")[:200] or None,
                )
            )
        except Exception:
            log.exception("tracking.record_failed", extra={"delivery_id": delivery_id})

    async def _hit(self, delivery_id: int, request: web.Request) -> _Hit | None:
        async with self.db.session() as session:
            delivery = await session.get(Delivery, delivery_id)
            if delivery is None:
                return None
            channel, sent_at = delivery.channel, delivery.sent_at
        machine = is_machine(
            user_agent=request.headers.get("User-Agent"),
            method=request.method,
            now=self.clock.now(),
            sent_at=sent_at,
            window=self.machine_window,
        )
        return _Hit(channel, machine)

    async def _signal(self, signal: Signal) -> None:
        try:
            await self.sink.signal(signal)
        except Exception:
            # The consent is withdrawn and committed; a lost signal is only a statistic.
            log.exception("tracking.signal_failed", extra={"delivery_id": signal.delivery_id})


def setup_tracking(
    app: web.Application,
    *,
    db: Database,
    sink: Sink,
    secret: str,
    clock: Clock | None = None,
    machine_window_s: float = 10.0,
) -> None:
    """Register the open pixel, click redirect and unsubscribe routes on `app`.

    `secret` must be the one the email adapter signs unsubscribe tokens with and
    the one passed to `open_url` / `click_url` when rendering messages.
    """
    if not secret:
        raise ValueError("the tracking secret must not be empty")
    tracking = Tracking(
        db, sink, secret, clock or SystemClock(), timedelta(seconds=machine_window_s)
    )
    app.router.add_get("/t/o/{token}", tracking.open_pixel)
    app.router.add_get("/t/c/{token}", tracking.click)
    app.router.add_get("/unsubscribe/{token}", tracking.unsubscribe_page)
    app.router.add_post("/unsubscribe/{token}", tracking.unsubscribe)

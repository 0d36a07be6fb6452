"""`POST /api/events`: what happened to a customer, stored once per idempotency key."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api.errors import ApiError
from gateway.api.inputs import read_body
from gateway.api.replies import json_reply
from gateway.api.routes import Reply, Route
from gateway.api.schemas import CustomerRef, EventBody, EventOut
from gateway.api.state import DATABASE, REGION
from storage.customers import Customers
from storage.errors import Conflict, InvalidAddress
from storage.events import Events
from storage.models import Customer

__all__ = ["EVENT_LISTENERS", "EventListener", "routes"]

log = logging.getLogger("chatgate.api")

EventListener = Callable[[int], Awaitable[None]]
# Told the id of each newly stored event once it is committed (the flow engine).
EVENT_LISTENERS = web.AppKey("chatgate_event_listeners", list[EventListener])


async def _customer(session: AsyncSession, ref: CustomerRef, region: str) -> Customer:
    """The customer the event names; one named by a key and unknown yet is created.

    An event only finds or creates its customer: it never adds keys to a profile,
    which is what `POST /api/customers` is for.
    """
    customers = Customers(session, region=region)
    if ref.id is not None:
        return await customers.get(ref.id)
    try:
        found = await customers.find(external_id=ref.external_id, phone=ref.phone, email=ref.email)
        if found is not None:
            return found
        customer, _ = await customers.upsert(
            external_id=ref.external_id, phone=ref.phone, email=ref.email
        )
    except InvalidAddress as exc:
        field = f"customer.{exc.field}"
        raise ApiError.field(422, "validation", field, str(exc)) from exc
    except Conflict as exc:
        raise ApiError.field(409, "conflict", f"customer.{exc.field}", exc.message) from exc
    return customer


async def record_event(request: web.Request) -> web.Response:
    body = await read_body(request, EventBody)
    async with request.config_dict[DATABASE].session() as session:
        customer = await _customer(session, body.customer, request.config_dict[REGION])
        assert customer.id is not None
        event, created = await Events(session).record(
            customer_id=customer.id,
            type=body.type,
            data=body.data,
            occurred_at=body.occurred_at,
            idempotency_key=body.idempotency_key,
            source="api",
        )
        assert event.id is not None
        out = EventOut(id=event.id, customer_id=event.customer_id, duplicate=not created)
    if created:
        # After the commit: the flow engine starts runs, cancels, credits goals. Its
        # cursor catches up on an event whose call here was lost to a crash.
        for listener in request.config_dict.get(EVENT_LISTENERS, ()):
            try:
                await listener(event.id)
            except Exception:
                log.exception("api.event_listener_failed", extra={"event": event.id})
    return json_reply(out, status=202)


routes = [
    Route(
        "POST",
        "/api/events",
        record_event,
        "recordEvent",
        "Record an event (cart_abandoned, order_placed, purchase, …) for flows to react to",
        body=EventBody,
        replies={
            202: Reply("Accepted; a repeated idempotency key answers the first event", EventOut)
        },
        errors=(400, 404, 409, 422),
    ),
]

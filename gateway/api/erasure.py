"""A customer's data: export everything stored, or erase it."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic_core import to_json

from gateway.api.customers import CUSTOMER_ID
from gateway.api.inputs import path_id
from gateway.api.routes import Reply, Route
from gateway.api.state import DATABASE
from storage.customers import Customers
from storage.erasure import Erasure

__all__ = ["routes"]

EXPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "profile, tags, identities, consents, conversations, messages, events, "
    "deliveries: every stored row about the customer, as stored.",
    "additionalProperties": True,
}


async def export_customer(request: web.Request) -> web.Response:
    async with request.config_dict[DATABASE].session() as session:
        customer = await Customers(session).get(path_id(request))
        assert customer.id is not None
        data = await Erasure(session).export(customer.id)
    return web.Response(body=to_json(data), content_type="application/json")


async def erase_customer(request: web.Request) -> web.Response:
    async with request.config_dict[DATABASE].session() as session:
        customer = await Customers(session).get(path_id(request))
        assert customer.id is not None
        await Erasure(session).erase(customer.id)
    return web.Response(status=204)


routes = [
    Route(
        "GET",
        f"/api/customers/{CUSTOMER_ID}/export",
        export_customer,
        "exportCustomer",
        "Everything stored about the customer (a data subject access request)",
        replies={200: Reply("Every stored row about the customer", EXPORT_SCHEMA)},
        errors=(404,),
    ),
    Route(
        "DELETE",
        f"/api/customers/{CUSTOMER_ID}",
        erase_customer,
        "eraseCustomer",
        "Erase the customer: personal data blanked, counts kept for statistics",
        replies={204: Reply("Erased")},
        errors=(404,),
    ),
]

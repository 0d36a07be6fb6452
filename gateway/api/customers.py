"""Customer endpoints: create or update, search, profile, history."""

from __future__ import annotations

from aiohttp import web

from gateway.api.errors import ApiError
from gateway.api.inputs import bad_cursor, path_id, read_body, read_query
from gateway.api.profiles import profile, summary
from gateway.api.replies import json_reply
from gateway.api.routes import Reply, Route
from gateway.api.schemas import (
    ContinuationLinksOut,
    CustomerBody,
    CustomerList,
    CustomerOut,
    CustomerQuery,
    HistoryQuery,
    MessageList,
    MessageOut,
)
from gateway.api.state import DATABASE, LINKER, REGION
from storage.customers import ConsentIn, Customers
from storage.errors import InvalidAddress
from storage.messages import Messages

__all__ = ["CUSTOMER_ID", "routes"]

# Ids are BIGINTs; longer digit strings could only overflow the database's integer.
CUSTOMER_ID = r"{id:\d{1,18}}"


async def upsert_customer(request: web.Request) -> web.Response:
    body = await read_body(request, CustomerBody)
    async with request.config_dict[DATABASE].session() as session:
        customers = Customers(session, region=request.config_dict[REGION])
        try:
            customer, created = await customers.upsert(
                external_id=body.external_id,
                phone=body.phone,
                email=body.email,
                name=body.name,
                timezone=body.timezone,
                locale=body.locale,
                attributes=body.attributes,
                tags=body.tags,
                consents=[
                    ConsentIn(c.channel, c.purpose.strip(), c.granted, c.source)
                    for c in body.consents or ()
                ],
            )
        except InvalidAddress:
            raise
        except ValueError as exc:
            # The store's own checks, "field: problem"; the schema catches most first.
            field, _, message = str(exc).partition(": ")
            raise ApiError.field(
                422, "validation", field if message else "body", message or str(exc)
            ) from exc
        out = await profile(session, customer)
    return json_reply(out, status=201 if created else 200)


async def search_customers(request: web.Request) -> web.Response:
    query = read_query(request, CustomerQuery)
    async with request.config_dict[DATABASE].session() as session:
        customers = Customers(session, region=request.config_dict[REGION])
        try:
            page = await customers.search(
                q=query.q,
                channel=query.channel,
                tag=query.tag,
                limit=query.limit,
                cursor=query.cursor,
            )
        except ValueError as exc:
            raise bad_cursor() from exc
        items = [await summary(session, c) for c in page.items]
    return json_reply(CustomerList(items=items, next_cursor=page.next_cursor))


async def get_customer(request: web.Request) -> web.Response:
    async with request.config_dict[DATABASE].session() as session:
        customer = await Customers(session).get(path_id(request))
        out = await profile(session, customer)
    return json_reply(out)


async def customer_messages(request: web.Request) -> web.Response:
    query = read_query(request, HistoryQuery)
    async with request.config_dict[DATABASE].session() as session:
        customer = await Customers(session).get(path_id(request))
        assert customer.id is not None
        try:
            page = await Messages(session).history(
                customer.id, limit=query.limit, cursor=query.cursor
            )
        except ValueError as exc:
            raise bad_cursor() from exc
    items = [MessageOut.model_validate(m, from_attributes=True) for m in page.items]
    return json_reply(MessageList(items=items, next_cursor=page.next_cursor))


async def continuation_links(request: web.Request) -> web.Response:
    linker = request.config_dict.get(LINKER)
    if linker is None:
        raise ApiError(503, "unavailable", "linking is not set up in this process")
    async with request.config_dict[DATABASE].session() as session:
        links = await linker.continuation_links(session, path_id(request))
    body = ContinuationLinksOut.model_validate(links)
    return web.Response(
        text=body.model_dump_json(exclude_none=True), content_type="application/json"
    )


routes = [
    Route(
        "POST",
        "/api/customers",
        upsert_customer,
        "upsertCustomer",
        "Create a customer, or update the one its external_id, phone or email points at",
        body=CustomerBody,
        replies={
            200: Reply("Updated; the profile", CustomerOut),
            201: Reply("Created; the profile", CustomerOut),
        },
        errors=(400, 409, 422),
    ),
    Route(
        "GET",
        "/api/customers",
        search_customers,
        "searchCustomers",
        "List customers matching every filter given, a page at a time",
        query=CustomerQuery,
        replies={200: Reply("One page", CustomerList)},
        errors=(400, 422),
    ),
    Route(
        "GET",
        f"/api/customers/{CUSTOMER_ID}",
        get_customer,
        "getCustomer",
        "The profile, with identities, consents and tags (a merged-away id gives the survivor)",
        replies={200: Reply("The profile", CustomerOut)},
        errors=(404,),
    ),
    Route(
        "GET",
        f"/api/customers/{CUSTOMER_ID}/messages",
        customer_messages,
        "customerMessages",
        "The whole cross-channel history, oldest first",
        query=HistoryQuery,
        replies={200: Reply("One page", MessageList)},
        errors=(400, 404, 422),
    ),
    Route(
        "POST",
        f"/api/customers/{CUSTOMER_ID}/link",
        continuation_links,
        "customerLinks",
        "Fresh single-use continuation links, one per channel the company has "
        '(put "continue in Telegram" into emails and pages)',
        replies={200: Reply("Links keyed by channel", ContinuationLinksOut)},
        errors=(404, 503),
    ),
]

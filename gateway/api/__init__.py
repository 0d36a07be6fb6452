"""The JSON API v1 under `/api`: customers, history, merges, erasure, events, OpenAPI.

The composition root calls `setup_api`; everything under `/api` runs in a
sub-application with its own middlewares (JSON errors, then the bearer key), so
webhooks and the console on the parent application are untouched.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import broadcasts as broadcast_routes
from gateway.api import conversations, customers, erasure, events, flows_customer, merges
from gateway.api import flows as flow_routes
from gateway.api.auth import auth_middleware
from gateway.api.errors import error_middleware
from gateway.api.openapi import with_openapi
from gateway.api.routes import Route
from gateway.api.state import API_APP, API_KEY, DATABASE, REGION
from storage.db import Database

__all__ = ["API_APP", "api_routes", "setup_api"]

PREFIX = "/api"
VERSION = "1.0.0"


def api_routes() -> list[Route]:
    """Every API endpoint, the OpenAPI document's own included."""
    return with_openapi(
        [
            *customers.routes,
            *conversations.routes,
            *merges.routes,
            *erasure.routes,
            *events.routes,
            *flow_routes.routes,
            *broadcast_routes.routes,
            *flows_customer.routes,
        ],
        title="chatgate API",
        version=VERSION,
    )


def setup_api(app: web.Application, *, db: Database, api_key: str, region: str) -> None:
    """Mount the API on `app` at /api; every request needs `Bearer <api_key>`.

    `region` is where phone numbers written without a country code are read.
    """
    if not api_key:
        raise ValueError("api_key must not be empty")
    api = web.Application(middlewares=[error_middleware, auth_middleware])
    api[DATABASE] = db
    api[API_KEY] = api_key
    api[REGION] = region
    for route in api_routes():
        path = route.path.removeprefix(PREFIX)
        api.router.add_route(route.method, path, route.handler, name=route.operation_id)
    app.add_subapp(PREFIX, api)
    app[API_APP] = api

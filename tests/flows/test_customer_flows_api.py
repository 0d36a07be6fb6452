"""POST /api/events drives the engine; GET /api/customers/{id}/flows says what happened and why."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.api import API_APP, setup_api
from gateway.api.events import EVENT_LISTENERS, EventListener
from storage.db import Database
from tests.flows.engine_world import HOUR, make_world

KEY = "flows-api-key"


async def test_an_api_event_starts_a_run_whose_steps_explain_themselves(
    database: Database, tmp_path: Path
) -> None:
    world = await make_world(database, tmp_path)
    ann = await world.customer(email="ann@example.org", consent=("email",))
    app = web.Application()
    setup_api(app, db=database, api_key=KEY, region="RU")
    listeners: list[EventListener] = [world.engine.on_event]
    app[API_APP][EVENT_LISTENERS] = listeners
    async with TestClient(TestServer(app), headers={"Authorization": f"Bearer {KEY}"}) as api:
        event = {
            "type": "cart_abandoned",
            "customer": {"id": ann},
            "data": {"cart_id": "c-5"},
            "occurred_at": world.clock.now().isoformat(),
            "idempotency_key": "shop-event-1",
        }
        assert (await api.post("/api/events", json=event)).status == 202
        assert (await api.post("/api/events", json=event)).status == 202  # a retry
        await world.advance(HOUR)
        await world.advance(4 * HOUR)

        response = await api.get(f"/api/customers/{ann}/flows")
        assert response.status == 200
        body = await response.json()
        [run] = body["runs"]
        assert run["flow"] == "abandoned_cart"
        assert run["trigger_key"] == "c-5"
        assert run["status"] == "done"
        why = [(s["channel"], s["outcome"], s["reason"]) for s in run["steps"] if s["channel"]]
        assert why == [
            ("email", "sent", None),
            ("email", "expired", "no clicked, replied on email within 4h"),
            ("telegram", "skipped", "no telegram address"),
            ("sms", "skipped", "no sms address"),
        ]

        assert (await api.get("/api/customers/999999/flows")).status == 404
        async with TestClient(TestServer(app)) as anonymous:
            assert (await anonymous.get(f"/api/customers/{ann}/flows")).status == 401

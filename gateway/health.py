"""`/healthz`: each dependency reported up or down, 200 only when all are up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["Health", "setup_health"]

Probe = Callable[[], Awaitable[bool]]


class Health:
    """Named probes; a probe that raises or takes over two seconds counts as down."""

    def __init__(self) -> None:
        self._probes: dict[str, Probe] = {}

    def add(self, name: str, probe: Probe) -> None:
        self._probes[name] = probe

    async def check(self) -> dict[str, bool]:
        async def run(probe: Probe) -> bool:
            try:
                return await asyncio.wait_for(probe(), timeout=2)
            except Exception:
                return False

        results = await asyncio.gather(*(run(p) for p in self._probes.values()))
        return dict(zip(self._probes, results, strict=True))


HEALTH = web.AppKey("health", Health)


async def healthz(request: web.Request) -> web.Response:
    results = await request.app[HEALTH].check()
    healthy = all(results.values())
    body = {
        "status": "ok" if healthy else "degraded",
        **{name: "up" if up else "down" for name, up in results.items()},
    }
    return web.json_response(body, status=200 if healthy else 503)


def setup_health(app: web.Application, health: Health) -> None:
    app[HEALTH] = health
    app.router.add_get("/healthz", healthz)

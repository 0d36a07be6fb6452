"""Callback API delivery: confirmation handshake, events POSTed in order, resends."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.sandbox.vk.limits import Sleeper, VKLimits
from gateway.sandbox.vk.state import Community


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One POST to a community's callback URL, for inspection by tests."""

    group_id: int
    event_id: str | None  # None for the confirmation request
    event_type: str
    attempt: int
    status: int | None
    body: str
    ok: bool
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "group_id": self.group_id,
            "event_id": self.event_id,
            "type": self.event_type,
            "attempt": self.attempt,
            "status": self.status,
            "body": self.body,
            "ok": self.ok,
            "error": self.error,
        }


class CallbackSender:
    """One worker per community sends events one at a time, as VK does."""

    def __init__(self, limits: VKLimits, sleeper: Sleeper = asyncio.sleep) -> None:
        self._limits = limits
        self._sleep = sleeper
        self._queues: dict[int, asyncio.Queue[tuple[Community, dict[str, Any]]]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.attempts: list[DeliveryAttempt] = []
        self.dropped: list[dict[str, Any]] = []

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self._limits.callback_timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def _post(
        self, community: Community, body: dict[str, Any], retry: int
    ) -> tuple[int | None, str, str | None]:
        server = community.callback
        if server is None:
            return None, "", "no callback server"
        payload = dict(body)
        if server.secret:
            payload["secret"] = server.secret
        headers = {"Content-Type": "application/json"}
        if retry:
            headers["X-Retry-Counter"] = str(retry)
        data = json.dumps(payload, ensure_ascii=False)
        try:
            async with self._http().post(server.url, data=data, headers=headers) as response:
                return response.status, await response.text(), None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, "", f"{type(exc).__name__}: {exc}"

    async def confirm(self, community: Community) -> bool:
        """Send `{"type": "confirmation"}` and mark the server confirmed if the code matches."""
        server = community.callback
        if server is None:
            return False
        body = {"type": "confirmation", "group_id": community.group_id}
        status, text, error = await self._post(community, body, retry=0)
        ok = status == 200 and text.strip() == community.confirmation_code
        self.attempts.append(
            DeliveryAttempt(community.group_id, None, "confirmation", 1, status, text, ok, error)
        )
        server.status = "ok" if ok else "failed"
        return ok

    def enqueue(self, community: Community, event: dict[str, Any]) -> None:
        """Queue an event for delivery; the worker starts with the running loop."""
        server = community.callback
        if server is None:
            return
        if server.events is not None and not server.events.get(event["type"], False):
            return
        queue = self._queues.setdefault(community.group_id, asyncio.Queue())
        queue.put_nowait((community, event))
        worker = self._workers.get(community.group_id)
        if worker is None or worker.done():
            self._workers[community.group_id] = asyncio.get_running_loop().create_task(
                self._work(queue), name=f"vk-callback-{community.group_id}"
            )

    async def _work(self, queue: asyncio.Queue[tuple[Community, dict[str, Any]]]) -> None:
        while True:
            community, event = await queue.get()
            try:
                await self._deliver(community, event)
            finally:
                queue.task_done()

    async def _deliver(self, community: Community, event: dict[str, Any]) -> None:
        server = community.callback
        if server is None:
            self.dropped.append(event)
            return
        if server.status != "ok" and not await self.confirm(community):
            self.dropped.append(event)
            return
        delays = self._limits.callback_retry_delays or (0.0,)
        for retry in range(self._limits.callback_retries + 1):
            if retry:
                await self._sleep(delays[min(retry - 1, len(delays) - 1)])
            status, text, error = await self._post(community, event, retry)
            ok = status == 200 and text.strip() == "ok"
            self.attempts.append(
                DeliveryAttempt(
                    community.group_id,
                    event["event_id"],
                    event["type"],
                    retry + 1,
                    status,
                    text,
                    ok,
                    error,
                )
            )
            if ok:
                return
        self.dropped.append(event)

    async def drain(self) -> None:
        """Wait until every queued event is delivered or given up on."""
        await asyncio.gather(*(queue.join() for queue in self._queues.values()))

    async def aclose(self) -> None:
        for worker in self._workers.values():
            worker.cancel()
        for worker in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

"""Bots Long Poll: per-community event history, keys, `ts` and the a_check endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.sandbox.vk.limits import VKLimits


@dataclass(slots=True)
class _Feed:
    key: str
    first_ts: int = 1
    events: deque[dict[str, Any]] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    lose_next: bool = False

    @property
    def next_ts(self) -> int:
        """The ts a client passes to get the next event that has not happened yet."""
        return self.first_ts + len(self.events)


class LongPoll:
    """Event history per community and the `GET|POST {server}?act=a_check` handler."""

    def __init__(self, limits: VKLimits) -> None:
        self._limits = limits
        self._feeds: dict[int, _Feed] = {}
        self._closing = False
        self.polls = 0

    def _feed(self, group_id: int) -> _Feed:
        if group_id not in self._feeds:
            self._feeds[group_id] = _Feed(key=secrets.token_hex(20))
        return self._feeds[group_id]

    def server(self, group_id: int, base_url: str) -> dict[str, str]:
        """The groups.getLongPollServer answer; the server URL points back at us."""
        feed = self._feed(group_id)
        return {
            "key": feed.key,
            "server": f"{base_url}/lp/{group_id}",
            "ts": str(feed.next_ts),
        }

    def current_ts(self, group_id: int) -> int:
        return self._feed(group_id).next_ts

    def events(self, group_id: int) -> list[dict[str, Any]]:
        return list(self._feed(group_id).events)

    def publish(self, group_id: int, event: dict[str, Any]) -> None:
        feed = self._feed(group_id)
        feed.events.append(event)
        while len(feed.events) > self._limits.longpoll_history:
            feed.events.popleft()
            feed.first_ts += 1
        self._wake(feed)

    def expire_key(self, group_id: int) -> None:
        """Hook: the current key stops working, so the next poll gets `failed: 2`."""
        self._feed(group_id).key = secrets.token_hex(20)

    def lose_information(self, group_id: int) -> None:
        """Hook: the next poll gets `failed: 3` and the client must refetch key and ts."""
        feed = self._feed(group_id)
        feed.lose_next = True
        feed.key = secrets.token_hex(20)
        self._wake(feed)

    def close(self) -> None:
        """Release every hanging poll, so the server can shut down at once."""
        self._closing = True
        for feed in self._feeds.values():
            self._wake(feed)

    @staticmethod
    def _wake(feed: _Feed) -> None:
        feed.changed.set()
        feed.changed = asyncio.Event()

    def check(self, group_id: int, key: str, raw_ts: str) -> dict[str, Any] | None:
        """The immediate answer to a poll, or None when the client has to wait."""
        feed = self._feeds.get(group_id)
        if feed is None or key != feed.key:
            if feed is not None and feed.lose_next:
                feed.lose_next = False
                return {"failed": 3}
            return {"failed": 2}
        try:
            ts = int(raw_ts)
        except ValueError:
            return {"failed": 1, "ts": feed.next_ts}
        if ts < feed.first_ts or ts > feed.next_ts:
            return {"failed": 1, "ts": feed.next_ts}
        if ts < feed.next_ts:
            updates = list(feed.events)[ts - feed.first_ts :]
            return {"ts": str(feed.next_ts), "updates": updates}
        return None

    async def handle(self, request: web.Request) -> web.Response:
        params: dict[str, str] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        self.polls += 1
        if params.get("act") != "a_check":
            return web.json_response({"failed": 2})
        try:
            group_id = int(request.match_info["group_id"])
            wait = min(float(params.get("wait", "25")), self._limits.longpoll_max_wait)
        except ValueError:
            return web.json_response({"failed": 2})
        key, ts = params.get("key", ""), params.get("ts", "")
        answer = self.check(group_id, key, ts)
        if answer is None and not self._closing and wait > 0:
            waiter = self._feed(group_id).changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout=wait)
            answer = self.check(group_id, key, ts)
        if answer is None:
            answer = {"ts": ts, "updates": []}
        return web.json_response(answer)

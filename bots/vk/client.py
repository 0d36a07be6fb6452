"""The vkbottle API client we use: our own HTTP session, no hidden retries.

vkbottle hands a response that is not JSON (an HTML 500 page, an empty body) to its
request rescheduler, which by default retries the same call forever with growing
sleeps. The outbox owns retries and back-off, so ours fails the call at once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import ClientTimeout
from vkbottle import API, AiohttpClient
from vkbottle.api import ABCAPI
from vkbottle.api.request_rescheduler import ABCRequestRescheduler

__all__ = ["VKTransportError", "make_api"]


class VKTransportError(Exception):
    """VK answered with something that is not an API response (proxy page, empty body)."""

    def __init__(self, method: str, response: Any) -> None:
        snippet = str(response)[:200] if response is not None else "nothing"
        super().__init__(f"{method}: VK answered {snippet!r}")
        self.method = method


class _FailFast(ABCRequestRescheduler):
    """Turn an unparseable answer into an exception instead of a retry loop."""

    async def reschedule(
        self, ctx_api: ABCAPI | API, method: str, data: dict[str, Any], recent_response: Any
    ) -> dict[str, Any]:
        raise VKTransportError(method, recent_response)


def make_api(token: str, api_url: str, *, timeout: float = 15.0) -> API:
    """A vkbottle API aimed at `api_url` ("…/method/") with its own aiohttp session.

    The session is created lazily inside the running loop; close it with
    `await api.http_client.close()`.
    """
    client = AiohttpClient(timeout=ClientTimeout(total=timeout))
    api = API(token, http_client=client, request_rescheduler=_FailFast())
    api.API_URL = api_url if api_url.endswith("/") else api_url + "/"
    return api

"""The VK community's outbound side: Outbound → messages.send → Sent | Failure."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from vkbottle import API
from vkbottle.exception_factory import VKAPIError

from bots.vk.client import VKTransportError
from bots.vk.render import random_id, render
from gateway.channels import Failure, Outbound, Sent

__all__ = ["VKAdapter", "failure_for"]

log = logging.getLogger(__name__)

# Codes from VKCOM/vk-api-schema errors.json (5.199).
# Final and about the person: they blocked us, never allowed messages, hid from
# communities, or are gone; cascades should skip this identity until they write.
UNREACHABLE = {
    7: "permission denied",
    18: "user deleted or banned",
    113: "invalid user id",
    900: "user blacklisted the community",
    901: "user has not allowed messages from the community",
    902: "user's privacy settings forbid messages",
    932: "community can't interact with this peer",
    936: "contact not found",
    950: "reply window has closed",
    3610: "user is deactivated",
}
# Worth another try later: VK had a hiccup.
TRANSIENT = {1: "unknown error", 10: "internal server error"}


def failure_for(code: int, message: str) -> Failure:
    """What a VK API error on messages.send means for the outbox."""
    reason = f"vk {code}: {message}"
    if code == 6:
        # Too many requests per second: the whole community token is over its rate.
        return Failure(reason, retryable=True, retry_after=1.0, lane_wide=True)
    if code == 9:
        # Flood control: too many (identical) messages; back off this chat for a while.
        return Failure(reason, retryable=True, retry_after=5.0)
    if code in TRANSIENT:
        return Failure(reason, retryable=True)
    if code in UNREACHABLE:
        return Failure(reason, retryable=False, unreachable=True)
    # 100 bad parameter, 911 bad keyboard, 914 too long, 5 bad token, ...: retrying
    # the same request can't help, and the person is not to blame.
    return Failure(reason, retryable=False)


class VKAdapter:
    """Sends through one community's token; never raises for a platform refusal."""

    channel = "vk"

    def __init__(self, api: API, group_id: int) -> None:
        self.account = str(group_id)
        self._api = api

    async def send(self, message: Outbound) -> Sent | Failure:
        try:
            peer_id = int(message.address)
        except ValueError:
            return Failure(f"not a VK peer id: {message.address!r}", retryable=False)
        if not 0 < peer_id < 2_000_000_000:
            return Failure(f"not a VK user: {peer_id}", retryable=False, unreachable=True)
        try:
            rendered = render(message)
        except ValueError as exc:
            return Failure(str(exc), retryable=False)
        params: dict[str, Any] = {
            "peer_id": peer_id,
            "message": rendered.text,
            "random_id": random_id(message.delivery_id),
        }
        if rendered.keyboard is not None:
            params["keyboard"] = rendered.keyboard
        try:
            answer = await self._api.request("messages.send", params)
        except VKAPIError as exc:
            failure = failure_for(exc.code, exc.error_msg)
        except VKTransportError as exc:
            failure = Failure(str(exc), retryable=True)
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = Failure(f"vk unreachable: {type(exc).__name__}: {exc}", retryable=True)
        else:
            return Sent(external_id=str(answer["response"]))
        log.info(
            "vk.send_failed",
            extra={"delivery": message.delivery_id, "peer": peer_id, "why": failure.reason},
        )
        return failure

    async def aclose(self) -> None:
        await self._api.http_client.close()

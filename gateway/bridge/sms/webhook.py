"""`/webhooks/sms/<provider>`: inbound SMS and delivery reports, for one provider.

Each provider's `Hooks` checks and reads the request (a forged or malformed one is
refused before anything reaches the sink); `SmsEvents` then hands the result to
the router once. We answer only after the sink took it, so a 2xx means "stored";
if the sink fails we answer 500 and the provider sends the callback again.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web

from gateway.bridge.sms.inbound import Received, SmsEvents
from gateway.bridge.sms.kannel import KannelHooks
from gateway.bridge.sms.smsru import SmsRuHooks
from gateway.bridge.sms.twilio import TwilioHooks
from gateway.channels import Sink

__all__ = ["PROVIDERS", "SmsHooks", "SmsWebhook", "setup_sms_routes"]

log = logging.getLogger(__name__)

PROVIDERS = ("kannel", "smsru", "twilio")


class SmsHooks(Protocol):
    """One provider's webhook reader."""

    name: str

    async def receive(self, request: web.Request) -> tuple[list[Received], web.Response]:
        """What the request carries and the answer the provider expects; raises HTTPError."""
        ...


class SmsWebhook:
    """Serves one provider's webhook path."""

    def __init__(self, hooks: SmsHooks, sink: Sink) -> None:
        self.hooks = hooks
        self.path = f"/webhooks/sms/{hooks.name}"
        self._events = SmsEvents(sink, f"sms.{hooks.name}")

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self.handle)
        app.router.add_get(self.path, self.handle)  # Kannel's get-url, Twilio's GET option

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            items, answer = await self.hooks.receive(request)
        except web.HTTPForbidden:
            log.warning(
                "sms.webhook_forged", extra={"provider": self.hooks.name, "peer": request.remote}
            )
            raise
        try:
            await self._events.hand_over(items)
        except Exception:
            log.exception("sms.webhook_failed", extra={"provider": self.hooks.name})
            return web.Response(status=500, text="retry")
        return answer


def setup_sms_routes(
    app: web.Application,
    *,
    provider: str,
    sink: Sink,
    public_url: str,
    account: str,
    auth_token: str | None = None,
    region: str = "RU",
    webhook_secret: str | None = None,
    smsru_api_id: str | None = None,
) -> SmsWebhook:
    """Add `POST`/`GET /webhooks/sms/<provider>` to `app`.

    `account` is the adapter's account (the sender number or name), so replies go
    out the way the message came in. Twilio needs `auth_token` and the public URL
    Twilio calls; Kannel checks `webhook_secret` when set (a `secret=` query
    parameter in its get-url and our dlr-url); SMS.ru checks the callback `hash`
    when `smsru_api_id` is given.
    """
    hooks: SmsHooks
    if provider == "kannel":
        hooks = KannelHooks(account=account, region=region, secret=webhook_secret)
    elif provider == "smsru":
        hooks = SmsRuHooks(account=account, api_id=smsru_api_id)
    elif provider == "twilio":
        if not auth_token:
            raise ValueError("the Twilio webhook needs CHATGATE_TWILIO_AUTH_TOKEN")
        hooks = TwilioHooks(
            account=account, region=region, auth_token=auth_token, public_url=public_url
        )
    else:
        raise ValueError(
            f"CHATGATE_SMS_PROVIDER must be one of {', '.join(PROVIDERS)}, not {provider!r}"
        )
    webhook = SmsWebhook(hooks, sink)
    webhook.setup_routes(app)
    return webhook

"""The SMS bridge: Kannel, SMS.ru or Twilio behind one ChannelAdapter.

Inside, as in every channel package: `adapter` (the steps every provider shares),
one module per provider (`kannel`, `smsru`, `twilio`: the request, its answers
and the provider's webhooks), `inbound` (webhook items → Inbound/Signal, once),
`render` (plain text), `webhook` (`/webhooks/sms/<provider>`), plus `segments`
(GSM-7/UCS-2 part counting) and `keywords` (STOP/START). Provider payloads stay
in this package.
"""

from __future__ import annotations

import aiohttp

from gateway.bridge.sms.adapter import DEFAULT_MAX_SEGMENTS
from gateway.bridge.sms.kannel import DEFAULT_DLR_MASK, KannelAdapter
from gateway.bridge.sms.keywords import stop_keyword
from gateway.bridge.sms.segments import Segments, TooManySegments, check_segments, count_segments
from gateway.bridge.sms.smsru import SmsRuAdapter
from gateway.bridge.sms.twilio import TwilioAdapter
from gateway.bridge.sms.webhook import PROVIDERS, SmsWebhook, setup_sms_routes

__all__ = [
    "PROVIDERS",
    "KannelAdapter",
    "Segments",
    "SmsAdapter",
    "SmsRuAdapter",
    "SmsWebhook",
    "TooManySegments",
    "TwilioAdapter",
    "check_segments",
    "count_segments",
    "make_sms_provider",
    "setup_sms_routes",
    "stop_keyword",
]

SmsAdapter = KannelAdapter | SmsRuAdapter | TwilioAdapter


def _need(name: str, value: str | None) -> str:
    if not value:
        raise ValueError(f"CHATGATE_SMS_PROVIDER needs CHATGATE_{name.upper()}")
    return value


def make_sms_provider(
    name: str,
    *,
    public_url: str,
    region: str = "RU",
    session: aiohttp.ClientSession | None = None,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    timeout: float = 15.0,
    webhook_secret: str | None = None,
    kannel_url: str | None = None,
    kannel_username: str | None = None,
    kannel_password: str | None = None,
    kannel_from: str | None = None,
    kannel_dlr_mask: int = DEFAULT_DLR_MASK,
    smsru_api_id: str | None = None,
    smsru_from: str | None = None,
    smsru_api_url: str = "https://sms.ru",
    twilio_account_sid: str | None = None,
    twilio_auth_token: str | None = None,
    twilio_from: str | None = None,
    twilio_api_url: str = "https://api.twilio.com",
) -> SmsAdapter:
    """The adapter `CHATGATE_SMS_PROVIDER` names, from settings-named keyword arguments.

    Raises ValueError naming the missing setting. `session` is shared and not
    closed by the adapter; without it the adapter opens and closes its own.
    """
    if name == "kannel":
        return KannelAdapter(
            sendsms_url=_need("kannel_url", kannel_url),
            username=_need("kannel_username", kannel_username),
            password=_need("kannel_password", kannel_password),
            sender=_need("kannel_from", kannel_from),
            public_url=public_url,
            webhook_secret=webhook_secret,
            dlr_mask=kannel_dlr_mask,
            region=region,
            session=session,
            max_segments=max_segments,
            timeout=timeout,
        )
    if name == "smsru":
        return SmsRuAdapter(
            api_id=_need("smsru_api_id", smsru_api_id),
            sender=smsru_from,
            api_url=smsru_api_url,
            region=region,
            session=session,
            max_segments=max_segments,
            timeout=timeout,
        )
    if name == "twilio":
        return TwilioAdapter(
            account_sid=_need("twilio_account_sid", twilio_account_sid),
            auth_token=_need("twilio_auth_token", twilio_auth_token),
            sender=_need("twilio_from", twilio_from),
            public_url=public_url,
            api_url=twilio_api_url,
            region=region,
            session=session,
            max_segments=max_segments,
            timeout=timeout,
        )
    raise ValueError(f"CHATGATE_SMS_PROVIDER must be one of {', '.join(PROVIDERS)}, not {name!r}")

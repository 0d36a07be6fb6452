"""Kannel: HTTP `sendsms` out, its `get-url` (MO) and our `dlr-url` (reports) in.

Kannel's sendsms answers `202 0: Accepted for delivery` and no message id, and the
`%I` in a report is a fresh id per report (sms-email.md §2.4), so reports are
matched by our delivery id, which we put into each message's `dlr-url`.

Configure the MO service as (`%b` is the raw text; `%a` squeezes spaces, which
can eat bytes of UTF-16BE text):

    get-url = "https://<public>/webhooks/sms/kannel?from=%p&to=%P&text=%b&coding=%c&charset=%C&id=%I&ts=%T"

and append `&secret=<CHATGATE_SMS_WEBHOOK_SECRET>` when a secret is set.
"""

from __future__ import annotations

import codecs
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from gateway.bridge.sms.adapter import DEFAULT_MAX_SEGMENTS, Prepared, SmsHttp, prepare
from gateway.bridge.sms.inbound import Received, phone_or_raw, sms_inbound, unix_time
from gateway.channels import Failure, Outbound, Sent, Signal, SignalKind

__all__ = [
    "DLR_KINDS",
    "KannelAdapter",
    "KannelHooks",
    "decode_text",
    "failure_for",
    "raw_params",
]

PATH = "/webhooks/sms/kannel"

# dlr-mask bits (userguide ch.10). 4 (buffered) and 8 (SMSC accepted) say nothing
# final and can arrive after 1 (observed), so they give no signal at all.
DLR_KINDS: dict[str, SignalKind | None] = {
    "1": "delivered",
    "2": "failed",
    "4": None,
    "8": None,
    "16": "failed",
}
DEFAULT_DLR_MASK = 1 + 2 + 16


def failure_for(status: int, body: str) -> Failure:
    """What a sendsms answer other than 2xx means for the outbox."""
    reason = f"kannel {status}: {body.strip()[:200]}"
    if status >= 500 or status == 429:
        return Failure(reason, retryable=True)  # 503 is Kannel's "Temporal failure"
    if "denied" in body.lower():
        # "Number(s) has/have been denied by white- and/or black-lists"
        return Failure(reason, retryable=False, unreachable=True)
    return Failure(reason, retryable=False)


class KannelAdapter:
    """Sends through one Kannel smsbox `sendsms` user; never raises for a refusal."""

    channel = "sms"

    def __init__(
        self,
        *,
        sendsms_url: str,
        username: str,
        password: str,
        sender: str,
        public_url: str,
        region: str = "RU",
        session: aiohttp.ClientSession | None = None,
        dlr_mask: int = DEFAULT_DLR_MASK,
        max_segments: int = DEFAULT_MAX_SEGMENTS,
        webhook_secret: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.account = sender
        self._url = sendsms_url
        self._username = username
        self._password = password
        self._public_url = public_url.rstrip("/")
        self._region = region
        self._dlr_mask = dlr_mask
        self._max_segments = max_segments
        self._secret = webhook_secret
        self._http = SmsHttp(session, timeout=timeout)

    def dlr_url(self, delivery_id: int) -> str:
        """Where Kannel reports on one message; `%d` etc. are Kannel's escapes."""
        url = f"{self._public_url}{PATH}?delivery={delivery_id}&type=%d&to=%p&fid=%F&reply=%A&ts=%T"
        return f"{url}&secret={self._secret}" if self._secret else url

    async def send(self, message: Outbound) -> Sent | Failure:
        prepared = prepare(message, region=self._region, max_segments=self._max_segments)
        if isinstance(prepared, Failure):
            return prepared
        return await self._http.guarded("kannel", prepared, lambda: self._post(prepared))

    async def _post(self, prepared: Prepared) -> Sent | Failure:
        params = {
            "username": self._username,
            "password": self._password,
            "from": self.account,
            "to": prepared.digits,
            "text": prepared.text,
            "charset": "UTF-8",
            "coding": "2" if prepared.segments.encoding == "ucs2" else "0",
            "dlr-mask": str(self._dlr_mask),
            "dlr-url": self.dlr_url(prepared.delivery_id),
        }
        async with self._http.session.get(
            self._url, params=params, timeout=self._http.timeout
        ) as response:
            body = await response.text(errors="replace")
            if 200 <= response.status < 300:
                return Sent(external_id=None, segments=prepared.segments.count)
            return failure_for(response.status, body)

    async def aclose(self) -> None:
        await self._http.aclose()


def raw_params(query: str) -> dict[str, bytes]:
    """Form/query parameters as bytes: Kannel percent-encodes text in its own charset."""
    pairs = parse_qsl(query, keep_blank_values=True, encoding="latin-1")
    return {name: value.encode("latin-1") for name, value in pairs}


def decode_text(raw: bytes, *, charset: str | None, coding: str | None) -> str:
    """The MO text, decoded by the charset Kannel names (`%C`), never assumed UTF-8."""
    name = (charset or "").strip()
    if not name or name.upper() == "GSM":
        # Kannel hands GSM text over in its internal UTF-8; UCS-2 without a
        # charset is still UTF-16BE (userguide: the charset default for coding 2).
        name = "UTF-16BE" if coding == "2" else "UTF-8"
    elif name.lower() == "binary":
        name = "latin-1"
    try:
        codecs.lookup(name)
    except LookupError:
        name = "UTF-8"
    return raw.decode(name, errors="replace")


class KannelHooks:
    """Reads Kannel's get-url (an SMS came in) and dlr-url (a report) requests."""

    name = "kannel"

    def __init__(self, *, account: str, region: str, secret: str | None) -> None:
        self.account = account
        self._region = region
        self._secret = secret

    async def receive(self, request: web.Request) -> tuple[list[Received], web.Response]:
        params = raw_params(request.rel_url.raw_query_string)
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            params.update(raw_params((await request.read()).decode("latin-1")))
        if self._secret and not hmac.compare_digest(
            params.get("secret", b""), self._secret.encode()
        ):
            raise web.HTTPForbidden(text="bad secret")
        text = {k: v.decode("utf-8", errors="replace") for k, v in params.items() if k != "text"}
        if "delivery" in text:
            received = self._report(text)
        else:
            received = self._message(text, params.get("text", b""))
        return ([received] if received else []), web.Response(text="")

    def _report(self, p: Mapping[str, str]) -> Received | None:
        try:
            delivery_id = int(p["delivery"])
        except ValueError:
            raise web.HTTPBadRequest(text="delivery must be our numeric delivery id") from None
        dlr_type = p.get("type", "")
        if dlr_type not in DLR_KINDS:
            raise web.HTTPBadRequest(text=f"unknown dlr type {dlr_type!r}")
        kind = DLR_KINDS[dlr_type]
        if kind is None:
            return None
        signal = Signal(
            kind=kind,
            channel="sms",
            account=self.account,
            external_id=p.get("fid") or None,
            delivery_id=delivery_id,
            address=phone_or_raw(p["to"], self._region) if p.get("to") else None,
            at=unix_time(p.get("ts")),
            detail=f"kannel dlr {dlr_type}: {p.get('reply', '')}".rstrip(": "),
        )
        return Received(signal, key=f"dlr:{delivery_id}:{dlr_type}")

    def _message(self, p: Mapping[str, str], raw_text: bytes) -> Received:
        sender = p.get("from", "").strip()
        if not sender:
            raise web.HTTPBadRequest(text="from is missing")
        kannel_id = p.get("id") or None
        inbound = sms_inbound(
            account=self.account,
            sender=sender,
            text=decode_text(raw_text, charset=p.get("charset"), coding=p.get("coding")),
            region=self._region,
            external_id=kannel_id,
            sent_at=unix_time(p.get("ts")),
            meta={"provider": "kannel", "to": p.get("to", "")},
        )
        return Received(inbound, key=f"mo:{kannel_id}" if kannel_id else None)

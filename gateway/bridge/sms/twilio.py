"""Twilio Programmable Messaging: Messages API out, inbound and StatusCallback in.

Each message's StatusCallback carries our delivery id (`?delivery=<id>`), so
reports match the delivery even before the outbox has stored Twilio's sid.
Every webhook must carry a valid `X-Twilio-Signature`, computed exactly as Twilio
does (sms-email.md §1.4): over our *public* URL as Twilio requested it, then every
form parameter that arrived, sorted; both with and without the default port.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from gateway.bridge.sms.adapter import (
    DEFAULT_MAX_SEGMENTS,
    Prepared,
    SmsHttp,
    prepare,
    retry_after,
)
from gateway.bridge.sms.inbound import Received, phone_or_raw, sms_inbound
from gateway.channels import Attachment, Failure, Outbound, Sent, Signal, SignalKind

__all__ = [
    "STATUS_KINDS",
    "TwilioAdapter",
    "TwilioHooks",
    "failure_for",
    "signature",
    "signature_ok",
]

PATH = "/webhooks/sms/twilio"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

STATUS_KINDS: dict[str, SignalKind] = {
    "delivered": "delivered",
    "undelivered": "failed",
    "failed": "failed",
    "read": "read",
}
# Delivery error codes that say the number itself is no good (twilio.com/docs/api/errors);
# 30003 "unreachable handset" is left out: a phone switched off comes back.
_DEAD_NUMBER = {
    "30004": "message blocked by the recipient or carrier",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
}
# Send error codes that are about the recipient: final, and mark the identity.
_UNREACHABLE = {
    21211: "invalid 'To' number",
    21610: "the recipient replied STOP",
    21612: "no route to this number",
    21614: "'To' is not a mobile number",
}


def failure_for(status: int, code: int | None, message: str, after: float | None) -> Failure:
    """What a Messages API error answer means for the outbox."""
    reason = f"twilio {code or status}: {message}".rstrip(": ")
    if status == 429 or code == 20429:
        # Too many concurrent requests for the account: the whole lane waits.
        return Failure(reason, retryable=True, retry_after=after or 1.0, lane_wide=True)
    if status >= 500:
        return Failure(reason, retryable=True, retry_after=after)
    if code in _UNREACHABLE:
        return Failure(f"{reason} ({_UNREACHABLE[code]})", retryable=False, unreachable=True)
    return Failure(reason, retryable=False)


def _with_port(url: str) -> str:
    parts = urlsplit(url)
    if parts.port is not None or not parts.hostname:
        return url
    port = 443 if parts.scheme == "https" else 80
    netloc = parts.netloc + f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _without_port(url: str) -> str:
    parts = urlsplit(url)
    if parts.port is None:
        return url
    netloc = parts.netloc.rsplit(":", 1)[0]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def signature(url: str, params: Iterable[tuple[str, str]], auth_token: str) -> str:
    """base64(HMAC-SHA1(token, url + name+value for each sorted name, sorted values))."""
    values: dict[str, list[str]] = {}
    for name, value in params:
        values.setdefault(name, []).append(value)
    data = url + "".join(name + v for name in sorted(values) for v in sorted(values[name]))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_ok(url: str, params: Iterable[tuple[str, str]], given: str, auth_token: str) -> bool:
    """True if `given` signs the request, with or without the default port in `url`."""
    pairs = list(params)
    return any(
        hmac.compare_digest(signature(variant, pairs, auth_token).encode(), given.encode())
        for variant in {_with_port(url), _without_port(url)}
    )


class TwilioAdapter:
    """Sends from one Twilio number; never raises for a refusal."""

    channel = "sms"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        public_url: str,
        api_url: str = "https://api.twilio.com",
        region: str = "RU",
        session: aiohttp.ClientSession | None = None,
        max_segments: int = DEFAULT_MAX_SEGMENTS,
        timeout: float = 15.0,
    ) -> None:
        self.account = sender
        # aiohttp 3.14 deprecates BasicAuth; the header is one line of stdlib anyway.
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._headers = {"Authorization": f"Basic {credentials}"}
        self._url = f"{api_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._public_url = public_url.rstrip("/")
        self._region = region
        self._max_segments = max_segments
        self._http = SmsHttp(session, timeout=timeout)

    def status_callback(self, delivery_id: int) -> str:
        return f"{self._public_url}{PATH}?delivery={delivery_id}"

    async def send(self, message: Outbound) -> Sent | Failure:
        prepared = prepare(message, region=self._region, max_segments=self._max_segments)
        if isinstance(prepared, Failure):
            return prepared
        return await self._http.guarded("twilio", prepared, lambda: self._post(prepared))

    async def _post(self, prepared: Prepared) -> Sent | Failure:
        form = {
            "To": prepared.phone,
            "From": self.account,
            "Body": prepared.text,
            "StatusCallback": self.status_callback(prepared.delivery_id),
        }
        async with self._http.session.post(
            self._url, data=form, headers=self._headers, timeout=self._http.timeout
        ) as response:
            try:
                answer: Any = await response.json(content_type=None)
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                answer = {}
            if response.status in (200, 201) and answer.get("sid"):
                return Sent(external_id=str(answer["sid"]), segments=prepared.segments.count)
            code = answer.get("code")
            return failure_for(
                response.status,
                code if isinstance(code, int) else None,
                str(answer.get("message", "")),
                retry_after(response.headers.get("Retry-After")),
            )

    async def aclose(self) -> None:
        await self._http.aclose()


def _attachments(fields: Mapping[str, str]) -> tuple[Attachment, ...]:
    try:
        count = int(fields.get("NumMedia", "0"))
    except ValueError:
        count = 0
    out = []
    for n in range(count):
        url = fields.get(f"MediaUrl{n}")
        mime = fields.get(f"MediaContentType{n}")
        if url:
            kind = "photo" if (mime or "").startswith("image/") else "document"
            out.append(Attachment(kind, url=url, mime=mime))
    return tuple(out)


class TwilioHooks:
    """Checks the signature of, then reads, Twilio's inbound and status webhooks."""

    name = "twilio"

    def __init__(self, *, account: str, region: str, auth_token: str, public_url: str) -> None:
        self.account = account
        self._region = region
        self._token = auth_token
        self._public_url = public_url.rstrip("/")

    async def receive(self, request: web.Request) -> tuple[list[Received], web.Response]:
        body = await request.read()
        url = self._public_url + request.raw_path
        query = parse_qs(request.rel_url.raw_query_string)
        if "bodySHA256" in query:
            # JSON bodies: the body is signed through its hash in the URL.
            expected = hashlib.sha256(body).hexdigest()
            if not hmac.compare_digest(query["bodySHA256"][0].encode(), expected.encode()):
                raise web.HTTPForbidden(text="bad body hash")
            params: list[tuple[str, str]] = []
        elif request.method == "POST":
            params = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        else:
            params = []
        given = request.headers.get("X-Twilio-Signature", "")
        if not given or not signature_ok(url, params, given, self._token):
            raise web.HTTPForbidden(text="bad signature")
        fields = dict(params) if params else {k: v[0] for k, v in query.items()}
        status = fields.get("MessageStatus") or fields.get("SmsStatus")
        sid = fields.get("MessageSid") or fields.get("SmsSid")
        if not sid:
            raise web.HTTPBadRequest(text="MessageSid is missing")
        if status in (None, "received", "receiving"):
            return [self._message(sid, fields)], web.Response(
                text=EMPTY_TWIML, content_type="text/xml"
            )
        report = self._report(sid, status, fields, query.get("delivery", [""])[0])
        return ([report] if report else []), web.Response(text="")

    def _message(self, sid: str, fields: Mapping[str, str]) -> Received:
        sender = fields.get("From", "")
        if not sender:
            raise web.HTTPBadRequest(text="From is missing")
        inbound = sms_inbound(
            account=self.account,
            sender=sender,
            text=fields.get("Body", ""),
            region=self._region,
            external_id=sid,
            attachments=_attachments(fields),
            meta={"provider": "twilio", "to": fields.get("To", "")},
        )
        return Received(inbound, key=sid)

    def _report(
        self, sid: str, status: str, fields: Mapping[str, str], delivery: str
    ) -> Received | None:
        kind = STATUS_KINDS.get(status)
        if kind is None:
            return None  # queued, sending, sent, accepted, ...: nothing final yet
        error = fields.get("ErrorCode", "")
        signal = Signal(
            kind=kind,
            channel="sms",
            account=self.account,
            external_id=sid,
            delivery_id=int(delivery) if delivery.isdigit() else None,
            address=phone_or_raw(fields["To"], self._region) if fields.get("To") else None,
            detail=f"twilio {status} {error}".strip(),
        )
        dead = _DEAD_NUMBER.get(error) if kind == "failed" else None
        return Received(
            signal, key=f"{sid}:{status}", unreachable=dead and f"twilio {error}: {dead}"
        )

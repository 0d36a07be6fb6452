"""TwilioEmulator: Twilio's Messages API, its StatusCallbacks and inbound webhooks, in-process.

chatgate's real Twilio adapter posts `Messages.json` here (Basic auth, form body,
Twilio's JSON errors); each accepted message lands in the phone's thread, and the
statuses Twilio reports after the initial one (sent, then delivered or
undelivered) are posted to its StatusCallback. A phone "texting" the shop becomes
the form Twilio posts to the number's SMS URL. Every webhook is signed with
`X-Twilio-Signature` over the URL as configured (chatgate's public URL) and is
delivered to where chatgate actually listens.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import phonenumbers
from aiohttp import web

from gateway.bridge.sms.segments import count_segments
from gateway.sandbox.sms.control import add_control_routes
from gateway.sandbox.sms.phones import PhoneBook, Sms, e164
from gateway.sandbox.sms.signing import twilio_signature

__all__ = ["TwilioEmulator", "TwilioError"]

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
MAX_BODY = 1600  # characters, Twilio's limit for one (concatenated) message
_FAULT_MESSAGES = {
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
}


class TwilioError(Exception):
    """A Messages API refusal, answered with Twilio's JSON error body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.json_response(
            {
                "code": self.code,
                "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
                "status": self.status,
            },
            status=self.status,
        )


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class TwilioEmulator:
    """One Twilio account with one SMS number, and the sandbox's phones around it."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        number: str,
        sms_url: str,
        deliver_to: Callable[[str], str] | None = None,
        report_delay: float = 0.2,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`sms_url` is the number's "A message comes in" webhook, as Twilio would sign it.

        `deliver_to` maps a webhook URL to where the request is really sent (the app's
        loopback address when the public URL points elsewhere); identity by default.
        """
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.number = number
        self.sms_url = sms_url
        self.phones = PhoneBook()
        self._deliver_to = deliver_to or (lambda url: url)
        self._report_delay = report_delay
        self._clock = clock or time.time  # wall-clock seconds: the console shows them
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._faults: list[tuple[int, int, int | None]] = []
        self.app = self.make_app()

    def make_app(self) -> web.Application:
        app = web.Application()
        base = f"/{API_VERSION}/Accounts/{{account}}/Messages"
        app.router.add_post(f"{base}.json", self._create_message)
        app.router.add_get(f"{base}/{{sid}}.json", self._fetch_message)
        add_control_routes(app, self)
        return app

    # ------------------------------------------------------------ Messages API

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        good = (
            scheme.lower() == "basic"
            and hmac.compare_digest(user.encode(), self.account_sid.encode())
            and hmac.compare_digest(password.encode(), self.auth_token.encode())
            and request.match_info["account"] == self.account_sid
        )
        if not good:
            raise TwilioError(401, 20003, "Authenticate")

    def fail_next(self, times: int, status: int, code: int, retry_after: int | None = None) -> None:
        """Answer the next `times` Messages API sends with this Twilio error.

        429/20429 is Twilio's "too many requests" (with Retry-After when given), 5xx an
        outage; what was refused is not filed, as with Twilio.
        """
        if times < 1 or not 400 <= status <= 599:
            raise ValueError("times must be at least 1 and status an HTTP error (4xx/5xx)")
        self._faults = [(status, code, retry_after)] * times

    async def _create_message(self, request: web.Request) -> web.Response:
        try:
            self._authenticate(request)
            if self._faults:
                status, code, after = self._faults.pop(0)
                answer = TwilioError(status, code, _FAULT_MESSAGES.get(code, "Error")).response()
                if after is not None:
                    answer.headers["Retry-After"] = str(after)
                return answer
            form = await request.post()
            fields = {k: str(v) for k, v in form.items()}
            sms = self.accept(fields)
        except TwilioError as exc:
            return exc.response()
        return web.json_response(self._resource(sms, fields.get("To", "")), status=201)

    async def _fetch_message(self, request: web.Request) -> web.Response:
        try:
            self._authenticate(request)
            sms = self.phones.by_sid(request.match_info["sid"])
        except TwilioError as exc:
            return exc.response()
        except KeyError:
            return TwilioError(
                404, 20404, f"The requested resource {request.path} was not found"
            ).response()
        return web.json_response(self._resource(sms, sms.phone))

    def accept(self, fields: dict[str, str]) -> Sms:
        """Check a Messages API form as Twilio does, file the message, schedule its reports."""
        to_raw = fields.get("To", "").strip()
        if not to_raw:
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        sender = fields.get("From", "").strip()
        if not sender and not fields.get("MessagingServiceSid"):
            raise TwilioError(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if sender and e164(sender) != self.number:
            raise TwilioError(
                400,
                21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone "
                "number or short code for your account.",
            )
        to = e164(to_raw)
        if to is None:
            raise TwilioError(400, 21211, f"The 'To' number {to_raw} is not a valid phone number.")
        body = fields.get("Body", "")
        if not body and not fields.get("MediaUrl"):
            raise TwilioError(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            raise TwilioError(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        segments = count_segments(body)
        sms = self.phones.add(
            Sms(
                sid=_sid("SM"),
                phone=to,
                direction="received",
                body=body,
                date=self._clock(),
                status="queued",
                segments=segments.count,
                encoding=segments.encoding,
            )
        )
        self._spawn(self._progress(sms, fields.get("StatusCallback")))
        return sms

    def _resource(self, sms: Sms, to: str) -> dict[str, Any]:
        now = formatdate(usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sms.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": sms.body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": sms.error_code,
            "error_message": None,
            "from": self.number,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(sms.segments),
            "price": None,
            "price_unit": "USD",
            "sid": sms.sid,
            "status": sms.status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }

    async def _progress(self, sms: Sms, callback: str | None) -> None:
        """queued → sent → delivered, or undelivered (30003) to a switched-off phone.

        Twilio sends no callback for the initial status, only for the changes after it.
        """
        await asyncio.sleep(self._report_delay)
        await self._report(sms, "sent", callback)
        await asyncio.sleep(self._report_delay)
        if self.phones.phone(sms.phone).reachable:
            await self._report(sms, "delivered", callback)
        else:
            sms.error_code = 30003
            await self._report(sms, "undelivered", callback)

    async def _report(self, sms: Sms, status: str, callback: str | None) -> None:
        sms.status = status
        if not callback:
            return
        params = [
            ("AccountSid", self.account_sid),
            ("ApiVersion", API_VERSION),
            ("From", self.number),
            ("MessageSid", sms.sid),
            ("MessageStatus", status),
            ("SmsSid", sms.sid),
            ("SmsStatus", status),
            ("To", sms.phone),
        ]
        if sms.error_code is not None:
            params.append(("ErrorCode", str(sms.error_code)))
        answer = await self.post_webhook(callback, params)
        sms.callbacks.append(f"{status}:{answer}")

    # ------------------------------------------------------------ inbound

    async def text_from(self, phone: str, body: str) -> Sms:
        """A phone texts the shop's number: the form Twilio posts to the SMS URL.

        Raises ValueError for a number that is not E.164 or an empty text.
        """
        number = e164(phone)
        if number is None:
            raise ValueError(f"{phone!r} is not a phone number in international form (+7…)")
        if not body.strip():
            raise ValueError("the text is empty")
        if len(body) > MAX_BODY:
            raise ValueError(f"a text is at most {MAX_BODY} characters")
        segments = count_segments(body)
        sms = self.phones.add(
            Sms(
                sid=_sid("SM"),
                phone=number,
                direction="sent",
                body=body,
                date=self._clock(),
                status="received",
                segments=segments.count,
                encoding=segments.encoding,
            )
        )
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number))
        params = [
            ("ToCountry", "US"),
            ("SmsMessageSid", sms.sid),
            ("NumMedia", "0"),
            ("SmsSid", sms.sid),
            ("SmsStatus", "received"),
            ("Body", body),
            ("FromCountry", region or ""),
            ("To", self.number),
            ("NumSegments", str(segments.count)),
            ("MessageSid", sms.sid),
            ("AccountSid", self.account_sid),
            ("From", number),
            ("ApiVersion", API_VERSION),
        ]
        sms.webhook_status = await self.post_webhook(self.sms_url, params)
        return sms

    async def post_webhook(self, url: str, params: list[tuple[str, str]]) -> int:
        """POST a signed form as Twilio does; the HTTP status, or 0 if nothing answered."""
        headers = {
            "X-Twilio-Signature": twilio_signature(url, params, self.auth_token),
            "User-Agent": "TwilioProxy/1.1",
            "Content-Type": "application/x-www-form-urlencoded",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        target = self._deliver_to(url)
        try:
            async with self._http().post(target, data=urlencode(params), headers=headers) as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("sandbox sms: webhook %s unreachable: %s", urlsplit(url).path, exc)
            return 0
        if status >= 400:
            log.warning("sandbox sms: webhook %s answered %s", urlsplit(url).path, status)
        return status

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._session

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait until every scheduled status report has been sent (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

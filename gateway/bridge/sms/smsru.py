"""SMS.ru: `sms/send` (form post, `json=1`) out, status callbacks (`data[]`) in.

SMS.ru registers one callback URL per account (`callback/add`), not one per
message, so its reports carry only SMS.ru's `sms_id`: the signals name it as
`external_id`, the id `Sent.external_id` returned when the message went out.
A callback must be answered with the body `100`, or SMS.ru sends it again.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import aiohttp
from aiohttp import web

from gateway.bridge.sms.adapter import (
    DEFAULT_MAX_SEGMENTS,
    Prepared,
    SmsHttp,
    prepare,
    retry_after,
)
from gateway.bridge.sms.inbound import Received, unix_time
from gateway.channels import Failure, Outbound, Sent, Signal, SignalKind

__all__ = ["STATUS_KINDS", "SmsRuAdapter", "SmsRuHooks", "failure_for"]

# Callback status codes (sms-email.md §1.1): 100-102 are on the way, no signal.
STATUS_KINDS: dict[int, SignalKind] = {
    103: "delivered",
    104: "failed",  # lifetime expired
    105: "failed",  # deleted by the operator
    106: "failed",  # phone failure
    107: "failed",  # unknown reason
    108: "failed",  # rejected
    110: "read",
}

# Send error codes from SMS.ru's API page as commonly quoted; only 206 is confirmed
# by the reference notes, so an unknown code falls through to "final".
_UNREACHABLE = {
    202: "invalid recipient number",
    207: "no route to this number",
    209: "the number is on the account's stop list",
}
_RETRY: dict[int, tuple[float | None, bool]] = {  # code: (retry_after, lane_wide)
    206: (3600.0, True),  # the account's daily limit
    220: (60.0, True),  # service temporarily unavailable
    230: (3600.0, False),  # daily limit for this number
    231: (60.0, False),  # same text to this number within a minute
    232: (3600.0, False),  # same text to this number within a day
    500: (None, True),  # server error
}


def failure_for(code: int, text: str) -> Failure:
    """What an SMS.ru status_code other than 100 means for the outbox."""
    reason = f"sms.ru {code}: {text}".rstrip(": ")
    if code in _RETRY:
        after, lane_wide = _RETRY[code]
        return Failure(reason, retryable=True, retry_after=after, lane_wide=lane_wide)
    if code in _UNREACHABLE:
        return Failure(f"{reason} ({_UNREACHABLE[code]})", retryable=False, unreachable=True)
    return Failure(reason, retryable=False)


class SmsRuAdapter:
    """Sends through one SMS.ru account (`api_id`); never raises for a refusal."""

    channel = "sms"

    def __init__(
        self,
        *,
        api_id: str,
        sender: str | None = None,
        api_url: str = "https://sms.ru",
        region: str = "RU",
        session: aiohttp.ClientSession | None = None,
        max_segments: int = DEFAULT_MAX_SEGMENTS,
        timeout: float = 15.0,
    ) -> None:
        self.account = sender or "sms.ru"
        self._sender = sender
        self._api_id = api_id
        self._url = api_url.rstrip("/") + "/sms/send"
        self._region = region
        self._max_segments = max_segments
        self._http = SmsHttp(session, timeout=timeout)

    async def send(self, message: Outbound) -> Sent | Failure:
        prepared = prepare(message, region=self._region, max_segments=self._max_segments)
        if isinstance(prepared, Failure):
            return prepared
        return await self._http.guarded("sms.ru", prepared, lambda: self._post(prepared))

    async def _post(self, prepared: Prepared) -> Sent | Failure:
        form = {"api_id": self._api_id, "to": prepared.digits, "msg": prepared.text, "json": "1"}
        if self._sender:
            form["from"] = self._sender
        async with self._http.session.post(
            self._url, data=form, timeout=self._http.timeout
        ) as response:
            if response.status != 200:
                body = (await response.text(errors="replace")).strip()[:200]
                reason = f"sms.ru http {response.status}: {body}"
                if response.status >= 500 or response.status == 429:
                    after = retry_after(response.headers.get("Retry-After"))
                    return Failure(reason, retryable=True, retry_after=after)
                return Failure(reason, retryable=False)
            try:
                answer = await response.json(content_type=None)
            except ValueError:
                return Failure("sms.ru answered something that is not JSON", retryable=True)
        return self._result(answer, prepared)

    def _result(self, answer: Any, prepared: Prepared) -> Sent | Failure:
        if not isinstance(answer, dict):
            return Failure("sms.ru answered an unexpected JSON shape", retryable=True)
        if answer.get("status") != "OK":
            return failure_for(_code(answer), str(answer.get("status_text", "")))
        # Per-number errors sit inside an overall "OK" (sms-email.md §1.1).
        numbers = answer.get("sms")
        entry = numbers.get(prepared.digits) if isinstance(numbers, dict) else None
        if entry is None and isinstance(numbers, dict) and len(numbers) == 1:
            entry = next(iter(numbers.values()))
        if not isinstance(entry, dict):
            return Failure("sms.ru answered OK without this number's result", retryable=False)
        if _code(entry) != 100:
            return failure_for(_code(entry), str(entry.get("status_text", "")))
        sms_id = entry.get("sms_id")
        return Sent(external_id=str(sms_id) if sms_id else None, segments=prepared.segments.count)

    async def aclose(self) -> None:
        await self._http.aclose()


def _code(obj: dict[str, Any]) -> int:
    try:
        return int(obj.get("status_code", -1))
    except (TypeError, ValueError):
        return -1


class SmsRuHooks:
    """Reads SMS.ru's status callbacks: a form with `data[N]` records, answered `100`."""

    name = "smsru"

    def __init__(self, *, account: str, api_id: str | None = None) -> None:
        self.account = account
        # The `hash` check (sha256(api_id + data...)) comes from a third-party client,
        # not SMS.ru's docs, so it is applied only when an api_id is given.
        self._api_id = api_id

    async def receive(self, request: web.Request) -> tuple[list[Received], web.Response]:
        form = await request.post()
        records = [str(v) for k, v in form.items() if k == "data" or k.startswith("data[")]
        if self._api_id is not None:
            expected = hashlib.sha256((self._api_id + "".join(records)).encode()).hexdigest()
            if not hmac.compare_digest(str(form.get("hash", "")).encode(), expected.encode()):
                raise web.HTTPForbidden(text="bad hash")
        items = [r for r in map(self._record, records) if r is not None]
        return items, web.Response(text="100", content_type="text/plain")

    def _record(self, record: str) -> Received | None:
        lines = record.replace("\r\n", "\n").split("\n")
        if lines[0].strip() != "sms_status" or len(lines) < 3:
            return None  # other record kinds (incoming SMS?) are undocumented
        sms_id, code = lines[1].strip(), lines[2].strip()
        kind = STATUS_KINDS.get(int(code)) if code.lstrip("-").isdigit() else None
        if not sms_id or kind is None:
            return None
        signal = Signal(
            kind=kind,
            channel="sms",
            account=self.account,
            external_id=sms_id,
            at=unix_time(lines[3].strip() if len(lines) > 3 else None),
            detail=f"sms.ru status {code}",
        )
        return Received(signal, key=f"status:{sms_id}:{code}")
